"""One occupancy session: everything ``occupancy_node`` and ``occ replay`` do between the synchronizer and the
outputs, without ROS.

Both are thin drivers of :class:`OccupancySession`; only the clock, the message source and the sinks differ:

=============================================  ======================================  ==============================
session                                        rclpy node (:mod:`occ_ros.node`)        ``occ replay``
=============================================  ======================================  ==============================
:meth:`~OccupancySession.on_input`             2nd callback of each message_filters    each bag record of an input
                                               Subscriber                              topic
:meth:`~OccupancySession.on_synchronized`      ApproximateTimeSynchronizer callback    :class:`ApproximateTimeSync`
worker (:class:`LatestFrameWorker`)            its own thread                          inline (``max``) or thread
                                                                                       (``realtime``)
tf lookup                                      ``tf2_ros.Buffer``                      :class:`TransformBuffer`
:class:`OutputSinks`                           rclpy publishers                        the output MCAP
:meth:`~OccupancySession.diagnostics`          diagnostic_updater task (wall timer)    the replay summary
=============================================  ======================================  ==============================

The frame flow: the images and CameraInfo of a synchronized set become one
:class:`~occ_ros.core.frames.FrameSet` (:class:`~.assembler.FrameAssembler`, tf looked up at each image's
stamp), the stamp guard drops duplicates and out-of-order sets, the latest-frame worker runs
:class:`~occ_ros.pipeline.pipeline.OccupancyPipeline`, and the enabled outputs are built
(:mod:`occ_ros.pipeline.messages`) and handed to the sinks. Markers are rate-limited on frame stamps (message
time), so the node under sim time and the replay of the same bag publish markers on the same frames.

**Processing times** (Autoware's ``~/debug/processing_time/<stage>_ms`` convention): after a frame's outputs,
each stage of :data:`PROCESSING_TIME_STAGES` goes to :attr:`OutputSinks.processing_time` in milliseconds as a
``std_msgs/Float64`` on :func:`processing_time_topic`, and the frame's age ``now - stamp`` on :data:`LATENCY_TOPIC`,
``now`` read from the ``stamp_clock`` (the node's ROS clock, so ``/clock`` under ``use_sim_time``; ``occ replay``'s
bag clock).

Every bad message or frame ends as a :class:`~occ_ros.core.frames.FrameSkipped`: counted in
:class:`~occ_ros.pipeline.stats.PipelineStats` (diagnostics), warned about (throttled per reason), and the frame
is skipped. Nothing a message contains can raise out of these callbacks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from occ_ros.core.frames import FrameSet, FrameSkipped, SkipReason
from occ_ros.inference.backend import InferenceBackend
from occ_ros.pipeline.costmap import CostmapBuilder
from occ_ros.pipeline.messages import (
    MessageTypes,
    costmap_msg,
    dense_grid_msg,
    float64_msg,
    grid_description_msg,
    marker_array_msg,
    pointcloud2_msg,
    query_pointcloud2_msg,
)
from occ_ros.pipeline.outputs import RateLimiter, class_cubes, grid_description
from occ_ros.pipeline.pipeline import STAGES, FrameResult, OccupancyPipeline, PipelineConfig
from occ_ros.pipeline.query import QueryEngine
from occ_ros.pipeline.stats import DIAG_ERROR, DIAG_OK, DIAG_WARN, PipelineStats
from occ_ros.pipeline.sync import StampGuard
from occ_ros.pipeline.worker import LatestFrameWorker

from .assembler import FrameAssembler, TransformLookup
from .config import MARKER_NAMESPACE, SessionConfig
from .inputs import InputMonitor, InputState

PROCESSING_TIME_STAGES: tuple[str, ...] = (*STAGES, "total", "wait", "publish")
"""The stages published as ``~/debug/processing_time/<stage>_ms``: the pipeline's (``decode`` ... ``postprocess``,
and ``total``, their sum: :attr:`FrameResult.timings <occ_ros.pipeline.pipeline.FrameResult>`), ``wait`` (the frame
in the latest-frame slot, from synchronized to picked up by the worker) and ``publish`` (building and publishing the
frame's outputs)."""

LATENCY_TOPIC = "debug/pipeline_latency_ms"
"""From the frame's stamp (its first image's header) to its outputs published, ms, on the stamp clock."""


def processing_time_topic(stage: str) -> str:
    """The topic of one stage's time, relative to the node (``debug/processing_time/inference_ms``)."""
    return f"debug/processing_time/{stage}_ms"


def debug_topics() -> tuple[str, ...]:
    """Every processing-time topic and :data:`LATENCY_TOPIC`, relative to the node (``~/`` + name in the node)."""
    return (*(processing_time_topic(stage) for stage in PROCESSING_TIME_STAGES), LATENCY_TOPIC)


def processing_times_ms(timings: dict[str, float], wait_s: float | None, publish_s: float) -> dict[str, float]:
    """Topic (:func:`processing_time_topic`) -> milliseconds for one frame, in :data:`PROCESSING_TIME_STAGES` order.

    Args:
        timings: the pipeline's stage -> seconds (``FrameResult.timings``).
        wait_s: the time in the latest-frame slot, s (None: unknown, a frame without ``received_ns``; left out).
        publish_s: building and publishing the outputs, s.
    """
    seconds = {**timings, "publish": publish_s}
    if wait_s is not None:
        seconds["wait"] = wait_s
    return {processing_time_topic(s): 1e3 * seconds[s] for s in PROCESSING_TIME_STAGES if s in seconds}


LogFn = Callable[[str, str], None]
"""``log(level, text)``; level is ``debug``, ``info``, ``warn``, ``error`` or ``fatal``."""


def _no_log(level: str, text: str) -> None:
    """A :data:`LogFn` that drops everything."""


def _one_subscriber() -> int:
    return 1


class WarnThrottle:
    """At most one message per key every ``period_s`` seconds; counts what it suppressed in between.

    Throttling per key (the skip reason) keeps one noisy problem from hiding another, which rclpy's
    per-call-site ``throttle_duration_sec`` would do here (one call site logs every reason).
    """

    def __init__(self, period_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.period_s = float(period_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, key: str) -> tuple[bool, int]:
        """``(emit, suppressed)``: whether to log now, and how many messages of ``key`` were held back since."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is None or now - last >= self.period_s or now < last:
                self._last[key] = now
                return True, self._suppressed.pop(key, 0)
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0


PIPELINE_SKIP_LOGGER = "occ_ros.pipeline.pipeline"
"""The pipeline logs every skipped frame at WARNING; NodeCore reports those itself (throttled, per reason)."""

_LEVELS = ((logging.ERROR, "error"), (logging.WARNING, "warn"), (logging.INFO, "info"))


class LogForwarder(logging.Handler):
    """Python ``logging`` records of occ_ros -> a :data:`LogFn` (the node's rclpy logger, so they reach /rosout).

    The pipeline's per-frame skip warnings are dropped: NodeCore already counts and reports them throttled.
    """

    def __init__(self, log: LogFn) -> None:
        super().__init__(logging.INFO)
        self._log = log

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == PIPELINE_SKIP_LOGGER and record.levelno == logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        level = next((name for number, name in _LEVELS if record.levelno >= number), "debug")
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            self._log(level, f"[{record.name}] {text}")
        except Exception:
            self.handleError(record)


def forward_python_logging(log: LogFn, logger_name: str = "occ_ros") -> Callable[[], None]:
    """Send ``logger_name``'s records (INFO and above) to ``log`` instead of stderr; returns the undo function."""
    logger = logging.getLogger(logger_name)
    handler = LogForwarder(log)
    propagate, level = logger.propagate, logger.level
    logger.addHandler(handler)
    logger.propagate = False
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.propagate = propagate
        logger.setLevel(level)

    return undo


@dataclass(frozen=True)
class LoadedModel:
    """The backend a session runs, and how it got there.

    Attributes:
        backend: the loaded, warmed-up model.
        fallback: True when the node's ``fallback_model`` is running because ``model`` failed.
        reasons: why the candidates before it failed (empty when ``model`` loaded).
        warnings: non-fatal notes (precision not what was asked for).
    """

    backend: InferenceBackend
    fallback: bool = False
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass
class OutputSinks:
    """Where a session sends its messages: rclpy ``Publisher.publish`` in the node, the MCAP writer in
    ``occ replay``, lists in tests.

    A None sink is an output that is turned off. ``marker_subscribers`` tells whether anyone listens to
    ``~/markers`` (the MarkerArray is built only then; a recording always listens). ``processing_time`` takes
    ``(topic relative to the node, std_msgs/Float64)`` for each of :func:`debug_topics`.
    """

    cloud: Callable[[Any], None] | None = None
    markers: Callable[[Any], None] | None = None
    grid: Callable[[Any], None] | None = None
    grid_description: Callable[[Any], None] | None = None
    costmap: Callable[[Any], None] | None = None
    marker_subscribers: Callable[[], int] = _one_subscriber
    query: Callable[[Any], None] | None = None
    processing_time: Callable[[str, Any], None] | None = None


@dataclass(frozen=True)
class DiagnosticReport:
    """One diagnostic status: ``level`` 0 OK / 1 WARN / 2 ERROR, a summary and key-value pairs."""

    level: int
    message: str
    values: list[tuple[str, str]]


class OccupancySession:
    """The frame flow of the node and of ``occ replay`` (see the module docstring).

    Args:
        config: cameras, frames and outputs.
        loaded: the model.
        types: message classes for the outputs (rclpy's in the node, rosbags' in replay and tests).
        sinks: where outputs go.
        lookup: the tf lookup for camera extrinsics.
        log: where warnings go.
        stats: shared statistics (a new one by default).
        clock: monotonic seconds (warning throttle, input ages, diagnostics).
        run_inline: process frames on the calling thread (``occ replay --rate max``, tests); otherwise on the
            latest-frame worker's thread.
        on_result: called with each published frame's result on the processing thread (``occ replay``'s
            accuracy, timings and predictions).
        stamp_clock: now on the clock of the message stamps, ns, for ``~/debug/pipeline_latency_ms``: the node's
            ROS clock (``/clock`` under ``use_sim_time``), ``occ replay``'s bag clock; default the wall clock.
    Raises:
        ValueError: the camera count differs from the model's (names both lists); the costmap's configuration does
            not fit the model's grid or vocabulary (an unknown obstacle class, a band outside the grid).
    """

    def __init__(
        self,
        config: SessionConfig,
        loaded: LoadedModel | InferenceBackend,
        types: MessageTypes,
        sinks: OutputSinks,
        lookup: TransformLookup,
        log: LogFn = _no_log,
        *,
        stats: PipelineStats | None = None,
        clock: Callable[[], float] = time.monotonic,
        run_inline: bool = False,
        on_result: Callable[[FrameResult], None] | None = None,
        stamp_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self._on_result = on_result
        self.loaded = loaded if isinstance(loaded, LoadedModel) else LoadedModel(loaded)
        self.backend = self.loaded.backend
        self.types = types
        self.sinks = sinks
        self.log = log
        self.stats = stats or PipelineStats(clock=clock)
        self._clock = clock
        self._stamp_clock = stamp_clock
        info = self.backend.info
        if len(config.cameras) != info.num_cameras:
            raise ValueError(
                f"parameter 'cameras' lists {len(config.cameras)} cameras {list(config.camera_names)}, the model "
                f"{self.backend.path} takes {info.num_cameras} ({list(info.cameras)}) in that order"
            )
        self.pipeline = OccupancyPipeline(
            self.backend, PipelineConfig(config.camera_names, config.base_frame, config.min_confidence), self.stats
        )
        self.assembler = FrameAssembler(config.cameras, config.base_frame, lookup, config.tf_timeout_s, clock=clock)
        self.inputs = InputMonitor(config.input_topics(), config.input_timeout_s, clock)
        self.guard = StampGuard(on_jump=self._on_jump)
        self._run_inline = run_inline
        self._stopped = False
        self.worker = self._new_worker()
        self.marker_limiter = RateLimiter(config.markers_period_s)
        self._throttle = WarnThrottle(config.warn_period_s, clock)
        self._lock = threading.Lock()
        self.published = dict.fromkeys(("voxels", "markers", "grid", "grid_description", "costmap"), 0)
        # ~/costmap: checked against the model's grid and vocabulary now, so a bad parameter stops the start-up
        self.costmap: CostmapBuilder | None = None
        if config.costmap:
            self.costmap = CostmapBuilder(info.grid, info.vocabulary, config.costmap_config)
        self.markers_left_out = 0
        # open-vocabulary queries (issue 23): the prompt asked on ~/query, answered on ~/query/voxels every frame
        self.query_engine, self.query_off = query_engine(info, config)
        if self.query_engine is not None:
            self.published["query/voxels"] = 0
        self.query: str | None = None
        self.queries_rejected = 0

    # ------------------------------------------------------------------ lifecycle
    def startup_notes(self) -> list[tuple[str, str]]:
        """``(level, text)`` lines for the log at startup: the model, and anything about it worth a warning."""
        info, backend = self.backend.info, self.backend
        notes = [
            (
                "info",
                f"model {backend.path} ({backend.name}, {_provider(backend)}): grid {info.grid.shape}, "
                f"{len(info.vocabulary)} classes, cameras {list(info.cameras)}",
            )
        ]
        if self.loaded.fallback:
            reasons = "; ".join(self.loaded.reasons)
            notes.append(("warn", f"running the FALLBACK model; the configured model failed: {reasons}"))
        notes.extend(("warn", note) for note in self.loaded.warnings)
        if self.query_engine is not None:
            notes.append(("info", f"open-vocabulary queries on ~/query: prompts {self.query_engine.names}"))
        else:
            notes.append(("info", f"open-vocabulary queries are off: {self.query_off}"))
        if tuple(info.cameras) != self.config.camera_names:
            notes.append(
                (
                    "warn",
                    f"parameter 'cameras' {list(self.config.camera_names)} is fed to the model as its cameras "
                    f"{list(info.cameras)}, position by position",
                )
            )
        return notes

    def _new_worker(self) -> LatestFrameWorker[FrameSet]:
        return LatestFrameWorker(
            self._process_item,
            on_drop=self._on_drop,
            on_error=self._on_error,
            name="occ-inference",
            run_inline=self._run_inline,
        )

    def start(self) -> None:
        """Start the worker and publish the (latched) grid description. After :meth:`stop` (a lifecycle node's
        deactivate, then activate) a new worker starts: its counts in the diagnostics start again from 0."""
        with self._lock:
            if self._stopped:
                self.worker = self._new_worker()
                self._stopped = False
        self.worker.start()
        self.publish_description()

    def stop(self, timeout: float | None = 5.0, drain: bool = False) -> bool:
        """Stop the worker (the frame in progress finishes and is published); ``drain``: the pending frame is
        processed first (the end of a bag) instead of dropped (shutdown, deactivate). A frame submitted after this
        is dropped. False if it was still busy after ``timeout``."""
        with self._lock:
            self._stopped = True
        return self.worker.stop(timeout, drain=drain)

    def close(self, timeout: float = 5.0) -> bool:
        """:meth:`stop`, then release the backend (GPU memory, sessions) unless a frame is still running on it."""
        stopped = self.stop(timeout)
        if stopped:
            self.backend.close()
        return stopped

    # ------------------------------------------------------------------ inputs (executor threads)
    def on_input(self, topic: str) -> None:
        """A message arrived on the input ``topic`` (before synchronization): counted for the silent-input check."""
        self.inputs.arrived(topic)

    def on_synchronized(self, *messages: Any) -> None:
        """A synchronized set of 2N messages (the images of the N cameras in camera order, then their CameraInfo
        in the same order), as the node's ApproximateTimeSynchronizer and ``occ replay`` pair them: each image
        carries its own calibration. Assemble, check the stamp, submit."""
        count = len(self.config.cameras)
        self.stats.record_received()
        try:
            if len(messages) != 2 * count:
                raise ValueError(f"expected {2 * count} messages (images, then CameraInfo), got {len(messages)}")
            for camera, info in zip(self.config.camera_names, messages[count:], strict=True):
                self.assembler.update_info(camera, info)
            frame = self.assembler.assemble(messages[:count])
            self.guard.admit(frame.stamp_ns)
        except FrameSkipped as skip:
            self.stats.record_skip(skip.reason, skip.detail)
            self._warn_skip(skip, None)
            return
        except Exception as err:  # a malformed message object; never let it escape into the executor
            bad = FrameSkipped(SkipReason.CORRUPT_IMAGE, f"cannot assemble the frame: {type(err).__name__}: {err}")
            self.stats.record_skip(bad.reason, bad.detail)
            self._warn_skip(bad, None)
            return
        self.worker.submit(frame)

    # ------------------------------------------------------------------ worker thread
    def _process_item(self, frame: FrameSet) -> None:
        self.process(frame)

    def process(self, frame: FrameSet) -> FrameResult | None:
        """Run the pipeline on ``frame`` and publish its outputs, then its processing times (None: the frame was
        skipped)."""
        wait_s = None
        if frame.received_ns:
            wait_s = max(0, time.monotonic_ns() - frame.received_ns) / 1e9
            self.stats.record_stage("wait", wait_s)
        try:
            result = self.pipeline.process(frame)  # records the skip itself
        except FrameSkipped as skip:
            self._warn_skip(skip, frame.stamp_ns)
            return None
        start = time.perf_counter()
        self.publish(result)
        publish_s = time.perf_counter() - start
        self.stats.record_stage("publish", publish_s)
        self.publish_processing_times(result, wait_s, publish_s)
        if self._on_result is not None:
            self._on_result(result)
        return result

    def publish(self, result: FrameResult) -> list[str]:
        """Build and publish the enabled outputs of one frame; returns the outputs published (``voxels``, ...)."""
        cfg, sinks, types = self.config, self.sinks, self.types
        stamp, frame_id = result.stamp_ns, cfg.output_frame
        done = []
        if cfg.cloud and sinks.cloud is not None:
            sinks.cloud(pointcloud2_msg(types, result.cloud, stamp, frame_id))
            done.append("voxels")
        if cfg.grid and sinks.grid is not None:
            sinks.grid(dense_grid_msg(types, result.labels))
            done.append("grid")
        if self.costmap is not None and sinks.costmap is not None:
            cells = self.costmap(result.labels, result.confidence, result.rig)
            sinks.costmap(costmap_msg(types, cells, self.costmap.info, stamp, frame_id))
            done.append("costmap")
        if self.markers_due(stamp):
            assert sinks.markers is not None
            cubes, left_out = class_cubes(result.cloud, self.backend.info.vocabulary, cfg.max_marker_voxels)
            voxel_size = self.backend.info.grid.voxel_size
            sinks.markers(marker_array_msg(types, cubes, stamp, frame_id, voxel_size, namespace=MARKER_NAMESPACE))
            with self._lock:
                self.markers_left_out = left_out
            done.append("markers")
        with self._lock:
            query = self.query
        if query is not None and self.query_engine is not None and sinks.query is not None:
            features = result.outputs.get("features")
            if features is not None:
                cloud = self.query_engine(query, features, result.labels)
                sinks.query(query_pointcloud2_msg(types, cloud, stamp, frame_id))
                done.append("query/voxels")
        with self._lock:
            for topic in done:
                self.published[topic] += 1
        return done

    # ------------------------------------------------------------------ open-vocabulary queries (executor thread)
    def on_query(self, name: str) -> bool:
        """A prompt name arrived on ``~/query``: from the next frame on, every frame's matching voxels go to
        ``~/query/voxels`` (an empty name stops). An unknown name (or queries being off) is warned about, naming
        the known prompts, counted (``queries rejected`` in the diagnostics), and stops the current query: nothing
        is published for it. Returns whether the query is now set."""
        name = str(name).strip()
        accepted: str | None = None
        if not name:
            self.log("info", "query cleared: ~/query/voxels stops")
        elif self.query_engine is None:
            self.log("warn", f"query {name!r} ignored: open-vocabulary queries are off ({self.query_off})")
        elif name not in self.query_engine.table:
            known = ", ".join(self.query_engine.names)
            self.log("warn", f"query {name!r} ignored: unknown prompt; this model knows: {known}")
        else:
            accepted = name
            threshold = self.query_engine.threshold(name)
            self.log("info", f"query {name!r} (threshold {threshold:g}): ~/query/voxels from the next frame")
        with self._lock:
            self.query = accepted
            if name and accepted is None:
                self.queries_rejected += 1
        return accepted is not None

    def publish_processing_times(self, result: FrameResult, wait_s: float | None, publish_s: float) -> dict[str, float]:
        """Publish one frame's stage times (:func:`processing_times_ms`) and its latency ``stamp clock now -
        stamp`` (:data:`LATENCY_TOPIC`), each a ``std_msgs/Float64`` in ms; returns them by topic ({} when off).

        Under sim time the latency is in the bag's time: 0 while ``/clock`` stands at the frame's stamp, and
        negative if ``/clock`` lags behind the images."""
        if not self.config.processing_time or self.sinks.processing_time is None:
            return {}
        values = processing_times_ms(result.timings, wait_s, publish_s)
        values[LATENCY_TOPIC] = (int(self._stamp_clock()) - result.stamp_ns) / 1e6
        for topic, ms in values.items():
            self.sinks.processing_time(topic, float64_msg(self.types, ms))
        return values

    def markers_due(self, stamp_ns: int) -> bool:
        """Markers are on, someone subscribes, and the rate limit allows one at this frame stamp (taking the slot)."""
        if not self.config.markers or self.sinks.markers is None:
            return False
        try:
            listening = self.sinks.marker_subscribers() > 0
        except Exception:  # the graph query failed (shutting down): do not build markers
            return False
        return listening and self.marker_limiter.ready(stamp_ns / 1e9)

    def publish_description(self) -> bool:
        """Publish ``~/grid_description`` (once: its QoS is transient-local); False when the grid is off."""
        if not self.config.grid or self.sinks.grid_description is None:
            return False
        description = grid_description(self.backend.info, self.config.output_frame)
        self.sinks.grid_description(grid_description_msg(self.types, description))
        with self._lock:
            self.published["grid_description"] += 1
        return True

    # ------------------------------------------------------------------ callbacks of the worker / guard
    def _on_drop(self, frame: FrameSet) -> None:
        self.stats.record_drop(SkipReason.SUPERSEDED, f"frame {frame.stamp_ns} ns replaced by a newer one")

    def _on_error(self, frame: FrameSet, err: BaseException) -> None:
        """An unexpected error (a bug, not bad input): logged as an error, counted by the worker (``failed``)."""
        emit, suppressed = self._throttle("error")
        if emit:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            self.log("error", f"frame {frame.stamp_ns} ns failed: {type(err).__name__}: {err}{more}")

    def _on_jump(self, last_ns: int, new_ns: int) -> None:
        self.marker_limiter.reset()
        self.log("info", f"time jumped back from {last_ns} ns to {new_ns} ns (bag loop / restart): starting over")

    def _warn_skip(self, skip: FrameSkipped, stamp: int | None) -> None:
        emit, suppressed = self._throttle(skip.reason.value)
        if not emit:
            return
        where = f"frame {stamp} ns" if stamp is not None else "frame"
        more = f" ({suppressed} more {skip.reason.value} skips since the last report)" if suppressed else ""
        level = "warn"
        if skip.reason is SkipReason.BACKEND:  # not the input's fault: the model failed to run
            level = "error"
            failures, _ = self.stats.backend_failures()
            more += f" ({failures} frame(s) in a row)" if failures > 1 else ""
        self.log(level, f"{where} skipped ({skip.reason.value}): {skip.detail}{more}")

    # ------------------------------------------------------------------ diagnostics
    def check_inputs(self) -> list[str]:
        """Warn (throttled: one line every ``warn_period_s`` naming them all) about the silent input topics;
        returns them."""
        silent = self.inputs.silent()
        if silent:
            emit, _ = self._throttle("silent inputs")
            if emit:
                self.log("warn", _silence_warning(silent, len(self.inputs.topics)))
        return [s.topic for s in silent]

    def diagnostics(self) -> DiagnosticReport:
        """Level, summary and values for the diagnostic_updater task (stats + inputs + worker + backend +
        outputs); warns about silent inputs (:meth:`check_inputs`)."""
        level, message = self.stats.diagnostic_level()
        silent = self.check_inputs()
        backend = self.backend
        values: list[tuple[str, str]] = [
            ("backend", backend.name),
            ("provider", _provider(backend)),
            ("model", str(backend.path)),
            ("fallback model", "yes" if self.loaded.fallback else "no"),
            ("cameras", ", ".join(self.config.camera_names)),
            ("silent inputs", ", ".join(silent) or "none"),
        ]
        values += [(f"input {s.topic}", s.describe()) for s in self.inputs.states()]
        values += [
            ("worker submitted", str(self.worker.submitted)),
            ("worker processed", str(self.worker.processed)),
            ("worker failed", str(self.worker.failed)),
            ("worker dropped", str(self.worker.dropped)),
            ("worker pending", str(self.worker.pending)),
            ("stamp jumps back", str(self.guard.jumps)),
        ]
        with self._lock:
            values += [(f"published {topic}", str(n)) for topic, n in self.published.items()]
            values.append(("markers left out (last)", str(self.markers_left_out)))
            values.append(("query", self.query or ("none" if self.query_engine else f"off: {self.query_off}")))
            values.append(("queries rejected", str(self.queries_rejected)))
        values += self.stats.diagnostic_values()
        if silent and level <= DIAG_WARN:
            level, message = DIAG_WARN, f"silent input(s): {', '.join(silent)}"
        if self.loaded.fallback and level == DIAG_OK:
            level, message = DIAG_WARN, f"running the fallback model {backend.path}; {message}"
        level, message = self._backend_level(level, message)
        return DiagnosticReport(level, message, values)

    def _backend_level(self, level: int, message: str) -> tuple[int, str]:
        """WARN from the first frame the backend failed on, ERROR from ``backend_error_after`` in a row (the
        parameter ``diagnostics.backend_error_after``); a processed frame resets the count."""
        failures, error = self.stats.backend_failures()
        after = self.config.backend_error_after
        if failures >= after:
            return DIAG_ERROR, (
                f"the inference backend failed on the last {failures} frames (ERROR from {after} in a row): {error}"
            )
        if failures and level <= DIAG_WARN:
            return DIAG_WARN, f"the inference backend failed on the last {failures} frame(s): {error}"
        return level, message


def query_engine(info: Any, config: SessionConfig) -> tuple[QueryEngine | None, str]:
    """The query engine of a model (``ModelInfo``) under ``config``, or None and why queries are off."""
    if not config.query:
        return None, "parameter query.enabled is false"
    if "features" not in info.outputs:
        return None, "the model has no 'features' output (export it with `occ export --queries`)"
    if info.prompts is None or not len(info.prompts):
        return None, "the model carries no prompt embeddings (export it with `occ export --queries`)"
    engine = QueryEngine(
        info.prompts, list(info.vocabulary.names), info.vocabulary.free_index, info.grid, config.query_threshold
    )
    return engine, ""


def _silence_warning(silent: list[InputState], watched: int) -> str:
    """One warning line for the silent inputs: each named, or, when every input is silent (a stopped bag, a dead
    driver node), a summary."""
    if len(silent) == watched:
        ages = [s.age_s for s in silent if s.age_s is not None]
        since = f"for {min(ages):.1f} s" if ages else "yet"
        return (
            f"every input is silent: no message on any of the {watched} input topics {since} (e.g. {silent[0].topic}); "
            "is the camera driver or the bag running, and are the topic names right (ros2 topic list)?"
        )
    each = "; ".join(
        f"{s.topic} ({'no message yet' if s.age_s is None else f'no message for {s.age_s:.1f} s'}, {s.count} so far)"
        for s in silent
    )
    return (
        f"silent input(s): {each}. No frame can be synchronized without them: is the driver running and the topic "
        "name right (ros2 topic info)?"
    )


def _provider(backend: InferenceBackend) -> str:
    try:
        return str(backend.provider)
    except Exception as err:  # a runtime that cannot describe itself must not break diagnostics
        return f"unknown ({type(err).__name__})"


def diagnostic_level_bytes(level: int) -> bytes:
    """``diagnostic_msgs/DiagnosticStatus.level`` (a ``byte`` field: ``bytes`` of length 1 in rclpy)."""
    return bytes([max(0, min(3, int(level)))])
