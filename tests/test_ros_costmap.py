"""``~/costmap`` under a real ROS 2: an rclpy subscriber receives the node's ``nav_msgs/OccupancyGrid``.

The launch file starts the node with an exported model and ``use_sim_time:=true``; the rclpy player of
``tests/ros_harness.py`` publishes a synthetic recording frame by frame, and a subscription with Nav2's StaticLayer
QoS (reliable, transient-local) receives the costmaps. Checked against ``occ predict``'s labels of the same frames,
with plain numpy: the header frame and stamp, the map's size, resolution and origin (the demo grid), and that the
cells of the columns holding a predicted obstacle voxel 0.2 to 2.0 m above the ground are exactly the 100 cells
(unknown columns, outside every camera's view, aside).

Skipped where ROS 2 is not sourced. To run it::

    source /work/ros2_jazzy/occ_env.sh        # or /opt/ros/jazzy/setup.bash
    colcon build --symlink-install --paths . && source install/local_setup.bash
    python -m pytest -q tests/test_ros_costmap.py
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from ros_harness import (
    CAMERA_INPUTS,
    bag_frames,
    make_recording,
    occupancy_launch_description,
    require_ros,
    running_player,
)

require_ros()

import launch_pytest  # noqa: E402

# Occ3D classes that are not obstacles (the four surfaces and free); the demo grid's z layers 1..3
# ([-0.2, 0.6), [0.6, 1.4), [1.4, 2.2) m) meet the default band (0.2, 2.0) m.
NOT_OBSTACLES = [11, 12, 13, 14, 17]
BAND_LAYERS = slice(1, 4)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory):
    return make_recording(tmp_path_factory.mktemp("ros_costmap"), frames=3)


player = pytest.fixture(scope="module", name="player")(running_player)


@launch_pytest.fixture(scope="module")
def occupancy_launch(recording):
    return occupancy_launch_description(model=str(recording.model), use_sim_time="true")


def _predicted_labels(recording, stamp: int) -> np.ndarray:
    from occ_ros.datasets.synth import SynthReader

    reader = SynthReader(recording.sequence)
    for i in range(len(reader)):
        sample = reader.load(i, images=False)
        if sample.stamp_ns == stamp:
            return np.load(recording.model.parent / "pred" / sample.scene / sample.frame / "labels.npz")["semantics"]
    raise KeyError(stamp)


@pytest.mark.launch(fixture=occupancy_launch)
def test_the_costmap_reaches_a_transient_local_subscriber_with_the_predicted_obstacles(recording, player):
    from nav_msgs.msg import OccupancyGrid
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    maps: list = []
    lock = threading.Lock()

    def on_map(msg) -> None:
        with lock:
            maps.append(msg)

    nav2_qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    player.node.create_subscription(OccupancyGrid, "/occupancy_node/costmap", on_map, nav2_qos)
    assert player.wait_for_subscribers(CAMERA_INPUTS, timeout=60), "the node never subscribed to the camera topics"
    assert player.wait_for(lambda: player.node.count_publishers("/occupancy_node/costmap") > 0, 30)

    static, frames = bag_frames(recording.bag)
    assert player.advertise(static + frames[recording.stamps[0]])
    for topic, msgtype, raw in static:
        player.publish_raw(topic, msgtype, raw)
    time.sleep(0.5)
    for stamp in recording.stamps:
        assert player.play_frame(stamp, frames[stamp], wait_s=60), f"no cloud for frame {stamp}"

    def stamps() -> list[int]:
        with lock:
            return [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in maps]

    # depth 1: a costmap may be replaced before it is delivered, but the last frame's always arrives
    assert player.wait_for(lambda: recording.stamps[-1] in stamps(), 30), stamps()
    with lock:
        received = list(maps)
    assert received
    for msg in received:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        assert stamp in recording.stamps and msg.header.frame_id == "base_link"
        info = msg.info
        assert (info.width, info.height) == (80, 80) and info.resolution == pytest.approx(0.8)
        assert (info.origin.position.x, info.origin.position.y, info.origin.position.z) == (-32.0, -32.0, 0.0)
        cells = np.array(msg.data, dtype=np.int8).reshape(info.height, info.width)  # [row = y, col = x]
        labels = _predicted_labels(recording, stamp)
        obstacle = ~np.isin(labels[:, :, BAND_LAYERS], NOT_OBSTACLES)
        expected = obstacle.any(axis=2).T  # (Y, X)
        known = cells != -1
        assert expected[known].any()
        np.testing.assert_array_equal(cells[known] == 100, expected[known])
        assert (cells[known & ~expected] == 0).all()
