"""Shared parts of the launch tests under a real ROS 2 (``tests/test_ros_*.py``): the skip rules, the test data,
and an rclpy bag player / listener that stands in for ``ros2 bag play`` (rosbag2 is not part of a minimal core).

Nothing here imports ROS at module level: the test modules call :func:`require_ros` first, which skips them
with the reason where ROS 2 or the built ``occ_ros`` overlay is missing.
"""

from __future__ import annotations

import importlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
NO_ROS = (
    "needs a sourced ROS 2 Jazzy or Humble (rclpy, launch_pytest, message_filters, tf2_ros, diagnostic_updater) "
    "and occ_ros built into a sourced colcon overlay (colcon build; source install/setup.bash): "
)
STATUS_NAME = "occupancy_node: occupancy"
#: The node's camera inputs for a recording of :func:`make_recording` (the synthetic surround rig, the
#: launch file's default topics): every image and CameraInfo topic it subscribes to.
CAMERAS = ("cam_front", "cam_front_right", "cam_front_left", "cam_back", "cam_back_left", "cam_back_right")
CAMERA_INPUTS = [f"/{c}/image_raw" for c in CAMERAS] + [f"/{c}/camera_info" for c in CAMERAS]


def require_ros() -> None:
    """Skip the calling test module unless ROS 2 and the ``occ_ros`` overlay are sourced."""
    needed = ("rclpy.node", "launch_pytest", "message_filters", "tf2_ros", "diagnostic_updater", "sensor_msgs.msg")
    for module in needed:
        try:
            importlib.import_module(module)
        except ImportError as err:
            pytest.skip(NO_ROS + f"cannot import {module} ({err})", allow_module_level=True)
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        prefix = Path(get_package_prefix("occ_ros"))
    except PackageNotFoundError:
        pytest.skip(NO_ROS + "occ_ros is not in the ament index", allow_module_level=True)
    if not (prefix / "lib" / "occ_ros" / "occupancy_node").exists():
        pytest.skip(NO_ROS + f"no {prefix}/lib/occ_ros/occupancy_node", allow_module_level=True)
    if shutil.which("ros2") is None:
        pytest.skip(NO_ROS + "the ros2 command is not on PATH", allow_module_level=True)


# ---------------------------------------------------------------------- test data
@dataclass
class Recording:
    """A synthetic recording, its exported model and ``occ predict``'s occupied-voxel count per frame stamp."""

    sequence: Path
    bag: Path
    model: Path
    voxels_by_stamp: dict[int, int]

    @property
    def stamps(self) -> list[int]:
        return sorted(self.voxels_by_stamp)


def make_recording(work: Path, frames: int = 5, seed: int = 21) -> Recording:
    """``occ synth`` + ``occ export`` + ``occ predict`` (all in this process, no ROS involved)."""
    from occ_ros.core.resources import models_dir
    from occ_ros.core.vocabulary import Vocabulary
    from occ_ros.datasets.synth import SynthReader
    from occ_tools.cli import main
    from occ_training.synth.sequence import generate

    sequence = generate(work / "seq", frames=frames, seed=seed, progress=False)
    model = work / "demo.onnx"
    assert main(["export", "--checkpoint", str(models_dir() / "demo.ckpt"), "--out", str(model)]) == 0
    assert main(["predict", "--model", str(model), "--data", str(sequence), "--out", str(work / "pred")]) == 0
    free = Vocabulary.occ3d().free_index
    reader = SynthReader(sequence)
    counts = {}
    for i in range(len(reader)):
        sample = reader.load(i, images=False)
        labels = np.load(work / "pred" / sample.scene / sample.frame / "labels.npz")["semantics"]
        counts[sample.stamp_ns] = int(np.count_nonzero(labels != free))
    return Recording(sequence, sequence / "bag", model, counts)


def bag_frames(bag: Path) -> tuple[list[tuple[str, str, bytes]], dict[int, list[tuple[str, str, bytes]]]]:
    """The MCAP bag's records as raw CDR: ``(static tf records, {frame stamp: [(topic, type, raw), ...]})``.

    A frame is every image, CameraInfo and /tf record whose header (or first transform) carries that stamp.
    """
    from rosbags.highlevel import AnyReader

    from occ_ros.io.rosbag import ns_from_stamp, typestore

    static: list[tuple[str, str, bytes]] = []
    frames: dict[int, list[tuple[str, str, bytes]]] = {}
    with AnyReader([bag], default_typestore=typestore()) as reader:
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            record = (conn.topic, conn.msgtype, bytes(raw))
            if conn.topic == "/tf_static":
                static.append(record)
                continue
            header = msg.transforms[0].header if conn.topic == "/tf" else msg.header
            frames.setdefault(ns_from_stamp(header.stamp), []).append(record)
    return static, frames


# ---------------------------------------------------------------------- rclpy player / listener
@dataclass
class Heard:
    """What the listener received (thread-safe appends from the executor thread)."""

    clouds: list[Any] = field(default_factory=list)
    statuses: list[tuple[float, Any]] = field(default_factory=list)  # (wall time, our DiagnosticStatus)
    logs: list[tuple[int, str]] = field(default_factory=list)  # (level, text) of the node's /rosout lines
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cloud_stamps(self) -> list[int]:
        with self.lock:
            return [c.header.stamp.sec * 10**9 + c.header.stamp.nanosec for c in self.clouds]

    def last_status(self) -> Any | None:
        with self.lock:
            return self.statuses[-1][1] if self.statuses else None

    def logged(self, text: str) -> list[tuple[int, str]]:
        with self.lock:
            return [(level, msg) for level, msg in self.logs if text in msg]

    def status_count(self) -> int:
        with self.lock:
            return len(self.statuses)


class Player:
    """An rclpy node that publishes a recording's messages and ``/clock``, and listens to the node's outputs.

    It spins on its own executor thread; :meth:`play_frame` publishes one frame (``/clock`` first, at the frame
    stamp, so the node's sim time has reached it) and waits until the node's cloud of that stamp arrives.
    """

    def __init__(self, namespace_outputs: str = "/occupancy_node") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.msg import Log
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import PointCloud2

        if not rclpy.ok():
            rclpy.init()
        self.node = rclpy.create_node("occ_test_player")
        self.heard = Heard()
        self._publishers: dict[str, Any] = {}
        self._latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.clock = self.node.create_publisher(Clock, "/clock", 10)
        self.node.create_subscription(PointCloud2, f"{namespace_outputs}/voxels", self._on_cloud, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.node.create_subscription(Log, "/rosout", self._on_log, 100)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop spinning (the executor thread ends), destroy the node and shut rclpy down."""
        import rclpy

        self.executor.shutdown()
        self._thread.join(timeout=10)
        self.node.destroy_node()
        rclpy.try_shutdown()

    # ------------------------------------------------------------------ listening
    def _on_cloud(self, msg: Any) -> None:
        with self.heard.lock:
            self.heard.clouds.append(msg)

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            # the updater's first status ("Node starting up", no values) is its own, not the node's report
            if status.name == STATUS_NAME and status.values:
                with self.heard.lock:
                    self.heard.statuses.append((time.monotonic(), status))

    def _on_log(self, msg: Any) -> None:
        if msg.name.endswith("occupancy_node"):
            with self.heard.lock:
                self.heard.logs.append((int(msg.level), str(msg.msg)))

    def wait_for(self, what: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what():
                return True
            time.sleep(0.05)
        return what()

    def wait_for_subscribers(self, topics: list[str], timeout: float = 30.0) -> bool:
        """Until the node subscribes to every topic in ``topics`` (discovery done)."""
        return self.wait_for(lambda: all(self.node.count_subscribers(t) > 0 for t in topics), timeout)

    # ------------------------------------------------------------------ publishing
    def advertise(self, records: list[tuple[str, str, bytes]], timeout: float = 30.0) -> bool:
        """Create the publishers of these records' topics and wait until the node subscribes to each: a message
        published before discovery has matched the subscription is lost (volatile QoS), as with any publisher."""
        from rosidl_runtime_py.utilities import get_message

        for topic, msgtype, _ in records:
            if topic not in self._publishers:
                qos = self._latched if topic == "/tf_static" else self._reliable
                self._publishers[topic] = self.node.create_publisher(get_message(msgtype), topic, qos)
        topics = {topic for topic, _, _ in records}
        return self.wait_for(lambda: all(self._publishers[t].get_subscription_count() > 0 for t in topics), timeout)

    def publish_raw(self, topic: str, msgtype: str, raw: bytes, edit: Callable[[Any], None] | None = None) -> None:
        from rclpy.serialization import deserialize_message
        from rosidl_runtime_py.utilities import get_message

        cls = get_message(msgtype)
        if topic not in self._publishers:
            self.advertise([(topic, msgtype, raw)])
        msg = deserialize_message(raw, cls)
        if edit is not None:
            edit(msg)
        self._publishers[topic].publish(msg)

    def publish_clock(self, stamp_ns: int) -> None:
        from rosgraph_msgs.msg import Clock

        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(int(stamp_ns), 10**9)
        self.clock.publish(msg)

    def play_frame(
        self,
        stamp_ns: int,
        records: list[tuple[str, str, bytes]],
        skip_topics: tuple[str, ...] = (),
        edits: dict[str, Callable[[Any], None]] | None = None,
        wait_s: float | None = 30.0,
    ) -> bool:
        """Publish one frame's records (``/clock`` at its stamp first); with ``wait_s``, wait for its cloud."""
        self.publish_clock(stamp_ns)
        for topic, msgtype, raw in records:
            if topic not in skip_topics:
                self.publish_raw(topic, msgtype, raw, (edits or {}).get(topic))
        if wait_s is None:
            return True
        return self.wait_for(lambda: stamp_ns in self.heard.cloud_stamps(), wait_s)


def status_values(status: Any) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def level_of(status: Any) -> int:
    level = status.level
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)


def ros2(*args: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the ``ros2`` command line with this interpreter (the one that has occ_ros' dependencies, whatever the
    script's shebang says); ``(exit code, stdout + stderr)``."""
    import subprocess
    import sys

    command = [sys.executable, str(shutil.which("ros2")), *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout + proc.stderr


def iter_frames(frames: dict[int, list[tuple[str, str, bytes]]]) -> Iterator[tuple[int, list[tuple[str, str, bytes]]]]:
    yield from sorted(frames.items())


def occupancy_launch_description(**arguments: str) -> Any:
    """The installed ``occupancy.launch.py`` with these launch arguments, then launch_pytest's ``ReadyToTest``: what
    a ``@launch_pytest.fixture`` of the launch tests returns (call :func:`require_ros` first)."""
    import launch
    import launch_pytest
    from ament_index_python.packages import get_package_share_directory
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    launch_file = Path(get_package_share_directory("occ_ros")) / "launch" / "occupancy.launch.py"
    return launch.LaunchDescription(
        [
            launch.actions.IncludeLaunchDescription(
                PythonLaunchDescriptionSource(str(launch_file)), launch_arguments=arguments.items()
            ),
            launch_pytest.actions.ReadyToTest(),
        ]
    )


def running_player() -> Iterator[Player]:
    """A :class:`Player` for the module's tests, closed after them (``player = pytest.fixture(scope="module")(
    running_player)``)."""
    player = Player()
    yield player
    player.close()
