"""Faults under a real ROS 2: a silent camera, a stalled ``/clock``, a bad parameter file, a bad model path, and
``rviz:=true`` without rviz2. Each was a defect seen when the node first ran under ROS 2 Jazzy.

Skipped with the reason where ROS 2 and the built ``occ_ros`` overlay are not sourced (see test_ros_launch.py).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from ros_harness import (
    Player,
    bag_frames,
    level_of,
    make_recording,
    occupancy_launch_description,
    require_ros,
    ros2,
    status_values,
)

require_ros()

import launch_pytest  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402

SILENT = "/cam_back/image_raw"


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory):
    return make_recording(tmp_path_factory.mktemp("ros_faults"), frames=4)


def _launch_file() -> Path:
    return Path(get_package_share_directory("occ_ros")) / "launch" / "occupancy.launch.py"


@launch_pytest.fixture(scope="module")
def occupancy_launch(recording):
    return occupancy_launch_description(model=str(recording.model), use_sim_time="true")


@pytest.mark.launch(fixture=occupancy_launch)
def test_a_silent_camera_is_named_and_diagnostics_go_on_when_clock_stops(recording):
    """One image topic never publishes: the node names it (a throttled warning on /rosout and the diagnostics'
    'silent inputs'), instead of "camera_info missing" for every camera. Then everything stops, /clock included:
    /diagnostics keeps coming on its wall-clock timer and shows every input stale."""
    player = Player()
    try:
        assert player.wait_for_subscribers([SILENT], timeout=60)
        static, frames = bag_frames(recording.bag)
        assert player.advertise(static + frames[recording.stamps[0]])
        for topic, msgtype, raw in static:
            player.publish_raw(topic, msgtype, raw)
        deadline = time.monotonic() + 4.0  # past input_timeout_s (2 s) with the other 11 inputs flowing
        while time.monotonic() < deadline:
            for stamp in recording.stamps:
                player.play_frame(stamp, frames[stamp], skip_topics=(SILENT,), wait_s=None)
                time.sleep(0.1)
        warning = f"silent input(s): {SILENT} (no message yet, 0 so far)"
        assert player.wait_for(lambda: player.heard.logged(warning), 10), player.heard.logs
        after = time.monotonic()
        assert player.wait_for(lambda: player.heard.statuses[-1][0] > after + 0.1, 10)
        status = player.heard.last_status()
        values = status_values(status)
        assert values["silent inputs"] == SILENT, values
        assert values[f"input {SILENT}"] == "never received"
        assert values["input /cam_front/image_raw"].endswith("s ago")
        assert level_of(status) == 1 and SILENT in status.message
        assert player.heard.cloud_stamps() == []
        # everything stops, /clock included: the diagnostics go on (wall-clock timer) and report every input
        stopped = time.monotonic()
        count = player.heard.status_count()

        def two_more_after_input_timeout() -> bool:  # waits on events, not a fixed sleep: a busy machine is only slower
            return player.heard.status_count() >= count + 2 and player.heard.statuses[-1][0] > stopped + 2.0

        assert player.wait_for(two_more_after_input_timeout, 60), "/diagnostics stopped with /clock"
        values = status_values(player.heard.last_status())
        assert "/cam_front/image_raw" in values["silent inputs"], values
    finally:
        player.close()


def _launch(namespace: str, *arguments: str, timeout: float = 90.0) -> tuple[int, str]:
    """``ros2 launch occ_ros occupancy.launch.py`` in its own namespace (to tell its node from any other)."""
    return ros2("launch", "occ_ros", "occupancy.launch.py", f"namespace:=/{namespace}", *arguments, timeout=timeout)


def _node_processes(namespace: str) -> list[str]:
    """Running occupancy_node processes of that namespace (``-r __ns:=/<namespace>`` on their command line)."""
    out = subprocess.run(["pgrep", "-af", "lib/occ_ros/occupancy_node"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f"__ns:=/{namespace}" in line]


def test_a_bad_model_path_fails_the_launch(tmp_path):
    code, out = _launch("bad_model", f"model:={tmp_path / 'missing.onnx'}")
    assert code != 0, out
    assert "cannot start" in out and "missing.onnx" in out, out
    assert not _node_processes("bad_model")


def test_a_bad_parameter_file_fails_the_launch_and_names_the_parameter(tmp_path, recording):
    bad = tmp_path / "bad.param.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    sync:\n      slop_s: -1.0\n")
    code, out = _launch("bad_params", f"config:={bad}", f"model:={recording.model}")
    assert code != 0, out
    assert "sync.slop_s" in out, out
    assert not _node_processes("bad_params")


def test_rviz_without_rviz2_fails_before_starting_the_node(recording):
    try:
        get_package_share_directory("rviz2")
        pytest.skip("rviz2 is installed here")
    except Exception:
        pass
    code, out = _launch("no_rviz", "rviz:=true", f"model:={recording.model}", timeout=60)
    assert code != 0, out
    assert "rviz2" in out, out
    assert not _node_processes("no_rviz"), "the node was left running"
