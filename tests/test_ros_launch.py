"""``ros2 launch occ_ros occupancy.launch.py`` under a real ROS 2, driven by launch_pytest.

The launch file starts the node with an exported model and ``use_sim_time:=true``; an rclpy player in the test
publishes a synthetic recording (the MCAP that ``occ synth`` writes: images, CameraInfo, /tf, /tf_static) plus
``/clock``, frame by frame, and listens to what the node publishes. Checked against ``occ predict`` on the same
frames and against the recording itself:

* every frame's cloud has exactly ``occ predict``'s occupied-voxel count, in ``base_link``, with the documented
  fields; the diagnostics go from WARN (no frames yet) to OK;
* a bad image (unsupported encoding) and a camera without a transform are skipped, counted in /diagnostics, and
  the node goes on;
* ``ros2 param dump`` shows the parameters.

Where ROS 2 is not sourced (CI), the module is skipped with the reason. To run it::

    source /opt/ros/jazzy/setup.bash   # or a source build's install/setup.bash
    colcon build --base-paths . && source install/setup.bash
    python -m pytest tests/test_ros_launch.py tests/test_ros_faults.py
"""

from __future__ import annotations

import time

import pytest
from ros_harness import (
    CAMERA_INPUTS,
    bag_frames,
    level_of,
    make_recording,
    occupancy_launch_description,
    require_ros,
    ros2,
    running_player,
    status_values,
)

require_ros()

import launch_pytest  # noqa: E402

FIELDS = ["x", "y", "z", "rgb", "label", "confidence"]  # docs/node.md, CLOUD_DTYPE


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory):
    return make_recording(tmp_path_factory.mktemp("ros_launch"), frames=5)


player = pytest.fixture(scope="module", name="player")(running_player)


@launch_pytest.fixture(scope="module")
def occupancy_launch(recording):
    return occupancy_launch_description(model=str(recording.model), use_sim_time="true")


@pytest.mark.launch(fixture=occupancy_launch)
def test_every_frame_has_occ_predicts_voxel_count_and_the_diagnostics_turn_ok(recording, player):
    assert player.wait_for_subscribers(CAMERA_INPUTS, timeout=60), "the node never subscribed to the camera topics"
    assert player.wait_for(lambda: player.heard.status_count() > 0, 15), "no /diagnostics from the node"
    assert level_of(player.heard.last_status()) == 1  # WARN: no frames received yet
    static, frames = bag_frames(recording.bag)
    assert player.advertise(static + frames[recording.stamps[0]]), "the node did not subscribe to every input"
    for topic, msgtype, raw in static:
        player.publish_raw(topic, msgtype, raw)
    time.sleep(0.5)  # the latched /tf_static reaches the node's listener
    for stamp in recording.stamps:
        assert player.play_frame(stamp, frames[stamp], wait_s=60), f"no cloud for frame {stamp}"
    clouds = {c.header.stamp.sec * 10**9 + c.header.stamp.nanosec: c for c in player.heard.clouds}
    assert sorted(clouds) == recording.stamps
    for stamp, cloud in clouds.items():
        assert cloud.width == recording.voxels_by_stamp[stamp], stamp  # exactly occ predict's voxels
        assert cloud.height == 1 and cloud.header.frame_id == "base_link"
        assert [f.name for f in cloud.fields] == FIELDS
        assert len(cloud.data) == cloud.width * cloud.point_step
    # diagnostics are published on a wall-clock timer (1 s): wait for one taken after the frames
    after = time.monotonic()
    assert player.wait_for(lambda: player.heard.statuses[-1][0] > after + 0.1, 10)
    status = player.heard.last_status()
    values = status_values(status)
    assert level_of(status) == 0, (status.message, values)
    assert values["frames processed"] == str(len(recording.stamps)) and values["silent inputs"] == "none"


@pytest.mark.launch(fixture=occupancy_launch)
def test_a_bad_image_and_a_missing_transform_are_skipped_counted_and_survived(recording, player):
    _, frames = bag_frames(recording.bag)
    base = max(recording.stamps)
    shift = 10**9  # new stamps, one second after the recording, so the stamp guard lets them in

    def restamp(msg, stamp_ns):
        header = msg.transforms[0].header if hasattr(msg, "transforms") else msg.header
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 10**9)

    first = frames[min(recording.stamps)]

    def play(stamp_ns, extra_edits):
        edits = {}
        for topic, _, _ in first:

            def edit(msg, topic=topic):
                restamp(msg, stamp_ns)
                if topic in extra_edits:
                    extra_edits[topic](msg)

            edits[topic] = edit
        return player.play_frame(stamp_ns, first, edits=edits, wait_s=None)

    def yuv(msg):
        msg.encoding = "yuv422"

    def no_tf(msg):
        msg.header.frame_id = "no_such_optical_frame"

    play(base + shift, {"/cam_back/image_raw": yuv})
    play(base + 2 * shift, {"/cam_front/image_raw": no_tf})
    good = base + 3 * shift
    play(good, {})
    assert player.wait_for(lambda: good in player.heard.cloud_stamps(), 60), "the node stopped after bad frames"
    after = time.monotonic()
    assert player.wait_for(lambda: player.heard.statuses[-1][0] > after + 0.1, 10)
    values = status_values(player.heard.last_status())
    assert values["skipped encoding"] == "1" and values["skipped no_tf"] == "1", values
    assert "no_such_optical_frame" in values["last problem"] or "yuv422" in values["last problem"]


@pytest.mark.launch(fixture=occupancy_launch)
def test_ros2_param_dump_shows_the_nodes_parameters(recording):
    code, out = ros2("param", "dump", "/occupancy_node", "--no-daemon", "--spin-time", "5", "--timeout", "20")
    assert code == 0, out
    for line in ("occupancy_node:", "ros__parameters:", f"model: {recording.model}", "slop_s: 0.05"):
        assert line in out, (line, out)
    code, out = ros2("param", "describe", "/occupancy_node", "sync.slop_s", "--no-daemon", "--spin-time", "5")
    assert code == 0 and "Read only: true" in out.replace("Read only: True", "Read only: true"), out


@pytest.mark.launch(fixture=occupancy_launch)
def test_the_processing_time_topics_arrive_with_each_frame(recording, player):
    """Autoware-style ~/debug topics: every stage's time and the pipeline latency, std_msgs/Float64, one per frame."""
    import threading

    from std_msgs.msg import Float64

    stages = ("decode", "calibration", "preprocess", "inference", "postprocess", "total", "wait", "publish")
    topics = [f"/occupancy_node/debug/processing_time/{s}_ms" for s in stages]
    topics.append("/occupancy_node/debug/pipeline_latency_ms")
    lock = threading.Lock()
    got: dict[str, list[float]] = {t: [] for t in topics}

    def keep(topic, msg):
        with lock:
            got[topic].append(msg.data)

    for topic in topics:
        player.node.create_subscription(Float64, topic, lambda m, t=topic: keep(t, m), 10)
    assert player.wait_for(lambda: all(player.node.count_publishers(t) == 1 for t in topics), 20)
    time.sleep(1.0)  # discovery of the new subscriptions by the node's publishers
    _, frames = bag_frames(recording.bag)
    first = frames[min(recording.stamps)]
    stamp = max(recording.stamps) + 10 * 10**9  # after every frame the other tests sent: the stamp guard takes it

    def restamp(msg):
        header = msg.transforms[0].header if hasattr(msg, "transforms") else msg.header
        header.stamp.sec, header.stamp.nanosec = divmod(stamp, 10**9)

    assert player.play_frame(stamp, first, edits={t: restamp for t, _, _ in first}, wait_s=60)
    assert player.wait_for(lambda: all(got[t] for t in topics), 20), {t: len(v) for t, v in got.items()}
    with lock:
        ms = {t.rsplit("/", 1)[1]: v[-1] for t, v in got.items()}
    assert ms["inference_ms"] > 0 and ms["total_ms"] > 0 and ms["publish_ms"] > 0
    parts = sum(ms[f"{s}_ms"] for s in ("decode", "calibration", "preprocess", "inference", "postprocess"))
    assert ms["total_ms"] == pytest.approx(parts, rel=1e-6)
    # /clock was published at the frame's stamp just before it: the latency is in sim time, 0 or a little more
    assert 0 <= ms["pipeline_latency_ms"] < 60_000, ms
