"""The node's lifecycle and its processing-time topics.

Without ROS: the session's per-stage processing times and latency for a processed frame (hand-computed from
injected clocks), their switch, and a session that stops and starts again (a lifecycle node's deactivate and
activate). With ROS 2 sourced: the rclpy lifecycle node through its transitions (launch tests of the same under a
real ``ros2 launch``: tests/test_ros_lifecycle.py).
"""

from __future__ import annotations

import types
from dataclasses import replace
from typing import Any

import pytest
from test_node import NO_ROS, T0, FakeBackend, _ros_available, feed, images, infos, make_core

from occ_ros.pipeline import pipeline as pipeline_module
from occ_ros.session import (
    LATENCY_TOPIC,
    PROCESSING_TIME_STAGES,
    OccupancySession,
    debug_topics,
    processing_time_topic,
)
from occ_ros.session import session as session_module


class DebugSink:
    """``OutputSinks.processing_time``: keeps ``(topic, value)`` in arrival order."""

    def __init__(self) -> None:
        self.got: list[tuple[str, float]] = []

    def __call__(self, topic: str, msg: Any) -> None:
        assert type(msg).__msgtype__ == "std_msgs/msg/Float64"  # rosbags' class: the node's type
        self.got.append((topic, msg.data))


def steps(*values: float) -> Any:
    """A clock answering ``values`` one call after the other."""
    it = iter(values)
    return lambda: next(it)


def test_the_topics_are_autowares_names_one_per_stage() -> None:
    assert PROCESSING_TIME_STAGES == (
        "decode",
        "calibration",
        "preprocess",
        "inference",
        "postprocess",
        "total",
        "wait",
        "publish",
    )
    assert set(pipeline_module.STAGES) < set(PROCESSING_TIME_STAGES)  # every pipeline stage has its topic
    assert processing_time_topic("inference") == "debug/processing_time/inference_ms"
    assert LATENCY_TOPIC == "debug/pipeline_latency_ms"
    assert debug_topics()[-1] == LATENCY_TOPIC and len(set(debug_topics())) == len(PROCESSING_TIME_STAGES) + 1


def _frame_with_clocks(monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> tuple[OccupancySession, DebugSink]:
    """A session whose clocks are scripted: the pipeline's perf_counter at its six stage boundaries
    (0, 0.5, 1.5, 3, 5, 7.5 s), the session's around publishing (100, 100.25 s), the worker pick-up 2 s after the
    frame was synchronized, and the stamp clock 42.5 ms after the frame's stamp. (Binary-exact values.)"""
    core, sink, _ = make_core(**overrides)
    debug = DebugSink()
    core.sinks.processing_time = debug
    core._stamp_clock = lambda: T0 + 42_500_000
    monkeypatch.setattr(
        pipeline_module, "time", types.SimpleNamespace(perf_counter=steps(0.0, 0.5, 1.5, 3.0, 5.0, 7.5))
    )
    monkeypatch.setattr(
        session_module,
        "time",
        types.SimpleNamespace(perf_counter=steps(100.0, 100.25), monotonic_ns=lambda: 7_000_000_000),
    )
    for camera, info in infos(T0).items():
        core.assembler.update_info(camera, info)
    frame = replace(core.assembler.assemble(images(T0)), received_ns=5_000_000_000)
    assert core.process(frame) is not None
    assert len(sink.msgs["cloud"]) == 1  # the outputs went out first
    return core, debug


def test_a_processed_frame_publishes_each_stage_time_and_its_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    _, debug = _frame_with_clocks(monkeypatch)
    assert debug.got == [
        ("debug/processing_time/decode_ms", 500.0),
        ("debug/processing_time/calibration_ms", 1000.0),
        ("debug/processing_time/preprocess_ms", 1500.0),
        ("debug/processing_time/inference_ms", 2000.0),
        ("debug/processing_time/postprocess_ms", 2500.0),
        ("debug/processing_time/total_ms", 7500.0),  # decode .. postprocess
        ("debug/processing_time/wait_ms", 2000.0),  # 7 s - 5 s in the latest-frame slot
        ("debug/processing_time/publish_ms", 250.0),
        ("debug/pipeline_latency_ms", 42.5),  # stamp clock now - frame stamp, after publishing
    ]


def test_processing_times_are_off_with_the_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    _, debug = _frame_with_clocks(monkeypatch, **{"outputs.processing_time": False})
    assert debug.got == []


def test_a_skipped_frame_publishes_no_processing_time() -> None:
    core, sink, _ = make_core()
    debug = DebugSink()
    core.sinks.processing_time = debug
    core.start()
    feed(core, T0, CAM_BACK=None)  # a camera missing: skipped
    assert sink.msgs["cloud"] == [] and debug.got == []
    feed(core, T0 + 10**8)
    assert [topic for topic, _ in debug.got] == list(debug_topics())  # wait known: the assembler stamped it


def test_the_latency_follows_the_stamp_clock_default_wall_clock() -> None:
    core, _, _ = make_core()
    assert core._stamp_clock is session_module.time.time_ns  # ROS time without use_sim_time
    debug = DebugSink()
    core.sinks.processing_time = debug
    core._stamp_clock = lambda: T0 - 5_000_000  # a sim clock behind the images: negative, not hidden
    core.start()
    feed(core, T0)
    assert debug.got[-1] == (LATENCY_TOPIC, -5.0)


# ---------------------------------------------------------------------- deactivate / activate: stop, start again
def test_a_stopped_session_starts_again_with_a_new_worker() -> None:
    backend = FakeBackend()
    core, sink, _ = make_core(backend=backend)
    core.start()
    feed(core, T0)
    assert len(sink.msgs["cloud"]) == 1 and len(sink.msgs["grid_description"]) == 1
    assert core.stop()  # deactivate
    feed(core, T0 + 10**8)  # a late synchronizer callback: dropped, not processed
    assert len(sink.msgs["cloud"]) == 1 and backend.calls == 1
    assert core.worker.dropped == 1
    core.start()  # activate again: a new worker, the description again (transient-local: harmless)
    assert core.worker.running and core.worker.submitted == 0
    assert len(sink.msgs["grid_description"]) == 2
    feed(core, T0 + 2 * 10**8)
    assert len(sink.msgs["cloud"]) == 2 and backend.calls == 2
    assert core.close()  # cleanup


def test_a_threaded_session_stops_and_starts_again() -> None:
    core, sink, _ = make_core(run_inline=False)
    core.start()
    first = core.worker
    feed(core, T0)
    assert first.wait_idle(30) and len(sink.msgs["cloud"]) == 1
    assert core.stop(timeout=10) and not first.running
    core.start()
    assert core.worker is not first and core.worker.running
    feed(core, T0 + 10**8)
    assert core.worker.wait_idle(30) and len(sink.msgs["cloud"]) == 2
    assert core.close(timeout=10)


# ---------------------------------------------------------------------- the rclpy lifecycle node (ROS 2 only)
@pytest.mark.skipif(not _ros_available(), reason=NO_ROS)
def test_the_lifecycle_node_goes_through_its_transitions() -> None:  # pragma: no cover - needs ROS 2
    pytest.importorskip("torch")  # the default model is the shipped demo checkpoint
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from occ_ros.node.occupancy_node import OccupancyLifecycleNode

    rclpy.init()
    try:
        bad = OccupancyLifecycleNode(parameter_overrides=[Parameter("model", value="/no/such/model.onnx")])
        assert bad.core is None and bad._pubs == []  # unconfigured: nothing loaded, nothing advertised
        assert bad.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert bad.core is None and bad._pubs == [] and bad.tf_listener is None  # still alive, unconfigured
        bad.shutdown()

        node = OccupancyLifecycleNode()

        def state() -> str:
            return str(node._state_machine.current_state[1])

        assert state() == "unconfigured" and node.core is None
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and state() == "inactive"
        core = node.core
        assert core is not None and not core.worker.running and node._subs == []  # loaded, not subscribed
        advertised = {pub.topic_name for pub in node._pubs}
        assert {"/occupancy_node/voxels", "/occupancy_node/debug/pipeline_latency_ms"} <= advertised
        assert "/occupancy_node/debug/processing_time/inference_ms" in advertised
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS and state() == "active"
        assert core.worker.running and len(node._subs) == 2 * len(core.config.cameras)
        assert core.published["grid_description"] == 1
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS and state() == "inactive"
        assert node._subs == [] and not core.worker.running
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS and core.worker.running  # a new worker
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS and state() == "unconfigured"
        assert node.core is None and node._pubs == [] and node.tf_listener is None
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS  # again: parameters declared once
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS and state() == "finalized"
        assert node.core is None
        node.shutdown()
    finally:
        rclpy.try_shutdown()
