"""``ros2 launch occ_ros occupancy.launch.py lifecycle:=true`` under a real ROS 2, driven by launch_pytest and the
``ros2 lifecycle`` command line.

The node starts unconfigured (nothing subscribed, nothing published); ``configure`` loads the model, ``activate``
subscribes: the recording's frames (published by the rclpy player of tests/ros_harness.py, with ``/clock``) come
back as clouds with ``occ predict``'s voxel counts, and the processing-time topics arrive; ``deactivate``: the
camera subscriptions go and a new frame gives no output; ``cleanup``: unconfigured again. ``ros2 lifecycle get``
shows each state.

Skipped with the reason where ROS 2 and the built ``occ_ros`` overlay are not sourced (see test_ros_launch.py).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from ros_harness import (
    CAMERA_INPUTS,
    NO_ROS,
    Player,
    bag_frames,
    make_recording,
    occupancy_launch_description,
    require_ros,
    ros2,
    running_player,
)

require_ros()

import launch_pytest  # noqa: E402
from ament_index_python.packages import get_package_prefix  # noqa: E402

if not (Path(get_package_prefix("occ_ros")) / "lib" / "occ_ros" / "occupancy_lifecycle_node").exists():
    pytest.skip(NO_ROS + "no occupancy_lifecycle_node in the overlay: build it again", allow_module_level=True)

NODE = "/occupancy_node"
DEBUG = ("debug/processing_time/inference_ms", "debug/processing_time/total_ms", "debug/pipeline_latency_ms")


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory):
    return make_recording(tmp_path_factory.mktemp("ros_lifecycle"), frames=3)


player = pytest.fixture(scope="module", name="player")(running_player)


@launch_pytest.fixture(scope="module")
def lifecycle_launch(recording):
    return occupancy_launch_description(model=str(recording.model), use_sim_time="true", lifecycle="true")


def lifecycle(*args: str, timeout: float = 60.0) -> str:
    """``ros2 lifecycle <args>`` (without the daemon), retried while the node is not discovered yet."""
    deadline = time.monotonic() + timeout
    while True:
        code, out = ros2("lifecycle", *args, "--no-daemon", timeout=timeout)
        if (code == 0 and "Node not found" not in out) or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def state() -> str:
    return lifecycle("get", NODE).strip().splitlines()[-1]


def transition(name: str) -> None:
    out = lifecycle("set", NODE, name, timeout=120)  # configure loads the model
    assert "Transitioning successful" in out, (name, out)


class Floats:
    """An rclpy subscription per debug topic of the node on the player's node: topic -> values received."""

    def __init__(self, player: Player, topics: tuple[str, ...]) -> None:
        from std_msgs.msg import Float64

        self.lock = threading.Lock()
        self.values: dict[str, list[float]] = {t: [] for t in topics}
        for topic in topics:
            player.node.create_subscription(Float64, f"{NODE}/{topic}", lambda m, t=topic: self._add(t, m.data), 10)

    def _add(self, topic: str, value: float) -> None:
        with self.lock:
            self.values[topic].append(value)

    def each_has(self, n: int) -> bool:
        with self.lock:
            return all(len(v) >= n for v in self.values.values())


def restamped(records, stamp_ns: int):
    """``edits`` for Player.play_frame that move a frame's records to ``stamp_ns`` (the stamp guard lets it in)."""

    def restamp(msg):
        header = msg.transforms[0].header if hasattr(msg, "transforms") else msg.header
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 10**9)

    return {topic: restamp for topic, _, _ in records}


@pytest.mark.launch(fixture=lifecycle_launch)
def test_configure_activate_deactivate_cleanup_with_the_ros2_lifecycle_cli(recording, player):
    assert state() == "unconfigured [1]"
    time.sleep(1.0)
    assert all(player.node.count_subscribers(t) == 0 for t in CAMERA_INPUTS), "unconfigured but subscribed"
    assert player.node.count_publishers(f"{NODE}/voxels") == 0, "unconfigured but advertising"

    transition("configure")
    assert state() == "inactive [2]"
    assert player.wait_for(lambda: player.node.count_publishers(f"{NODE}/voxels") == 1, 20)
    assert all(player.node.count_subscribers(t) == 0 for t in CAMERA_INPUTS), "inactive but subscribed"

    floats = Floats(player, DEBUG)
    transition("activate")
    assert state() == "active [3]"
    assert player.wait_for_subscribers(CAMERA_INPUTS, timeout=60), "active but not subscribed to the cameras"
    static, frames = bag_frames(recording.bag)
    assert player.advertise(static + frames[recording.stamps[0]])
    for topic, msgtype, raw in static:
        player.publish_raw(topic, msgtype, raw)
    time.sleep(0.5)  # the latched /tf_static reaches the node's listener
    for stamp in recording.stamps:
        assert player.play_frame(stamp, frames[stamp], wait_s=60), f"no cloud for frame {stamp}"
    clouds = {c.header.stamp.sec * 10**9 + c.header.stamp.nanosec: c.width for c in player.heard.clouds}
    assert clouds == recording.voxels_by_stamp  # exactly occ predict's voxels
    assert player.wait_for(lambda: floats.each_has(len(recording.stamps)), 20), floats.values
    assert all(v > 0 for v in floats.values["debug/processing_time/inference_ms"])

    transition("deactivate")
    assert state() == "inactive [2]"
    assert player.wait_for(lambda: all(player.node.count_subscribers(t) == 0 for t in CAMERA_INPUTS), 20)
    late = max(recording.stamps) + 10**9
    first = frames[min(recording.stamps)]
    player.play_frame(late, first, edits=restamped(first, late), wait_s=None)
    assert not player.wait_for(lambda: late in player.heard.cloud_stamps(), 5), "a deactivated node published"

    transition("cleanup")
    assert state() == "unconfigured [1]"
    assert player.wait_for(lambda: player.node.count_publishers(f"{NODE}/voxels") == 0, 20)
    out = lifecycle("list", NODE)
    assert "configure [1]" in out and "activate" not in out, out
