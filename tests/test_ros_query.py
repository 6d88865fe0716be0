"""``~/query`` -> ``~/query/voxels`` under a real ROS 2 (issue 23), driven by launch_pytest.

The launch file starts the node with models/demo.ckpt exported by ``occ export --queries`` (its features output and
the class prompts' embeddings); the test publishes ``car`` on ``/occupancy_node/query`` (``std_msgs/String``), then
plays a synthetic recording frame by frame (tests/ros_harness.py) and listens on ``/occupancy_node/query/voxels``:
one cloud per frame after the query, in ``base_link``, with the fields ``x, y, z, score, label``, whose voxels are
the ones ``occ replay --query car`` writes for the same frames. An unknown prompt is warned about on /rosout.

Skipped with the reason where ROS 2 is not sourced (see tests/test_ros_launch.py for how to run it).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from ros_harness import bag_frames, occupancy_launch_description, require_ros, running_player

require_ros()

import launch_pytest  # noqa: E402

QUERY_FIELDS = ["x", "y", "z", "score", "label"]  # docs/node.md, QUERY_CLOUD_DTYPE


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """3 synthetic frames, the model exported with --queries, and ``occ replay --query car``'s answer per stamp."""
    from rosbags.highlevel import AnyReader

    from occ_ros.core.resources import models_dir
    from occ_ros.io.rosbag import typestore
    from occ_ros.replay import replay
    from occ_tools.cli import main
    from occ_training.synth.sequence import generate

    work = tmp_path_factory.mktemp("ros_query")
    sequence = generate(work / "seq", frames=3, seed=21, progress=False)
    model = work / "queries.onnx"
    assert main(["export", "--checkpoint", str(models_dir() / "demo.ckpt"), "--out", str(model), "--queries"]) == 0
    replay(sequence / "bag", model, work / "replayed", query="car", progress=False)
    widths = {}
    with AnyReader([work / "replayed"], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.topic == "/occupancy_node/query/voxels"]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            widths[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = int(msg.width)
    return {"bag": sequence / "bag", "model": model, "widths": widths}


player = pytest.fixture(scope="module", name="player")(running_player)


@launch_pytest.fixture(scope="module")
def query_launch(recording):
    return occupancy_launch_description(model=str(recording["model"]), use_sim_time="true")


@pytest.mark.launch(fixture=query_launch)
def test_a_query_is_answered_every_frame_with_a_score_field(recording, player):
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String

    answers: list[Any] = []
    lock = threading.Lock()

    def heard(msg: Any) -> None:
        with lock:
            answers.append(msg)

    player.node.create_subscription(PointCloud2, "/occupancy_node/query/voxels", heard, 10)
    query = player.node.create_publisher(String, "/occupancy_node/query", 10)
    assert player.wait_for(lambda: query.get_subscription_count() > 0, 60), "the node never subscribed ~/query"
    static, frames = bag_frames(recording["bag"])
    stamps = sorted(frames)
    assert player.advertise(static + frames[stamps[0]]), "the node did not subscribe to every input"
    for topic, msgtype, raw in static:
        player.publish_raw(topic, msgtype, raw)
    query.publish(String(data="bus_stop"))  # unknown: a warning naming the known prompts
    assert player.wait_for(lambda: any("unknown prompt" in text for _, text in player.heard.logs), 15)
    query.publish(String(data="car"))
    assert player.wait_for(lambda: any("query 'car'" in text for _, text in player.heard.logs), 15)
    time.sleep(0.5)  # the latched /tf_static reaches the node's listener
    for stamp in stamps:
        assert player.play_frame(stamp, frames[stamp], wait_s=60), f"no cloud for frame {stamp}"
    assert player.wait_for(lambda: len(answers) >= len(stamps), 30), f"{len(answers)} answers for {len(stamps)}"
    with lock:
        by_stamp = {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec: m for m in answers}
    assert sorted(by_stamp) == stamps
    for stamp, msg in by_stamp.items():
        assert [f.name for f in msg.fields] == QUERY_FIELDS and msg.header.frame_id == "base_link"
        assert msg.width == recording["widths"][stamp], stamp  # the voxels occ replay --query car writes
        assert len(msg.data) == msg.width * msg.point_step
