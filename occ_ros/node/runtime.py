"""Everything ``occupancy_node`` decides, without ROS: model loading with fallback, the frame flow from the
synchronizer to the worker, what is published when, warnings and diagnostics.

:class:`NodeCore` is the node minus rclpy. The rclpy layer (:mod:`.occupancy_node`) only creates subscriptions,
publishers, the tf buffer and the diagnostic updater, and forwards to it:

=============================================  ===========================================================
rclpy                                          NodeCore
=============================================  ===========================================================
CameraInfo subscription callback               :meth:`NodeCore.on_camera_info`
ApproximateTimeSynchronizer callback           :meth:`NodeCore.on_images` (assemble, stamp guard, submit)
worker thread (:class:`LatestFrameWorker`)      :meth:`NodeCore.process` (pipeline, publish)
diagnostic_updater task                        :meth:`NodeCore.diagnostics`
=============================================  ===========================================================

Every bad message or frame ends as a :class:`~occ_ros.pipeline.frames.FrameSkipped`: counted in
:class:`~occ_ros.pipeline.stats.PipelineStats` (diagnostics), warned about (throttled per reason), and the frame
is skipped. Nothing a message contains can raise out of these callbacks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from occ_ros.inference.backend import BackendError, InferenceBackend, backend_for, open_backend
from occ_ros.pipeline.frames import FrameSet, FrameSkipped, SkipReason
from occ_ros.pipeline.messages import (
    MessageTypes,
    dense_grid_msg,
    grid_description_msg,
    marker_array_msg,
    pointcloud2_msg,
)
from occ_ros.pipeline.outputs import RateLimiter, class_cubes, grid_description
from occ_ros.pipeline.pipeline import FrameResult, OccupancyPipeline, PipelineConfig
from occ_ros.pipeline.stats import DIAG_OK, DIAG_WARN, PipelineStats
from occ_ros.pipeline.sync import StampGuard
from occ_ros.pipeline.worker import LatestFrameWorker

from .frame_builder import FrameAssembler, TransformLookup
from .params import ModelParams, NodeParams, resolve_model_path

LogFn = Callable[[str, str], None]
"""``log(level, text)``; level is ``debug``, ``info``, ``warn``, ``error`` or ``fatal``."""

MARKER_NAMESPACE = "occupancy"


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


# ---------------------------------------------------------------------- model loading
@dataclass(frozen=True)
class LoadedModel:
    """The backend the node runs, and how it got there.

    Attributes:
        backend: the loaded, warmed-up model.
        fallback: True when ``fallback_model`` is running because ``model`` failed.
        reasons: why the candidates before it failed (empty when ``model`` loaded).
        warnings: non-fatal notes (precision not what was asked for).
    """

    backend: InferenceBackend
    fallback: bool = False
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def backend_options(backend: str, precision: str, threads: int) -> dict[str, Any]:
    """``open_backend`` keyword options for a backend name from the node's parameters.

    Raises:
        BackendError: int8 asked of the torch backend.
    """
    if backend == "onnxruntime":
        return {"threads": int(threads)} if threads else {}
    if backend == "torch":
        if precision == "int8":
            raise BackendError("parameter 'precision': int8 is a TensorRT engine's precision; torch runs fp32 or fp16")
        return {"half": precision == "fp16"}
    return {}


def precision_warning(backend: InferenceBackend, precision: str) -> str | None:
    """A note when a file-defined precision (onnxruntime, tensorrt) differs from the ``precision`` parameter."""
    if not precision or backend.name == "torch":
        return None
    actual = getattr(backend, "precision", None)
    if actual is None and backend.name == "onnxruntime":
        return (
            f"parameter 'precision' is {precision!r}, but an ONNX model runs the precision it was exported with "
            f"({backend.path}); the parameter is ignored"
        )
    if actual is not None and str(actual) != precision:
        return f"parameter 'precision' is {precision!r}, but {backend.path} was built for {actual}; running {actual}"
    return None


def open_model(params: ModelParams, opener: Callable[..., InferenceBackend] = open_backend) -> LoadedModel:
    """Load ``model`` (warmed up); if it fails and ``fallback_model`` is set, load that instead.

    Args:
        params: the model parameters.
        opener: :func:`~occ_ros.inference.backend.open_backend` (injectable for tests).
    Raises:
        BackendError: nothing could be loaded; the message names the parameter(s) and every reason.
    """
    candidates = [("model", params.model, params.backend, params.device)]
    if params.fallback_model:
        candidates.append(("fallback_model", params.fallback_model, params.fallback_backend, params.fallback_device))
    reasons: list[str] = []
    for index, (param, model, backend, device) in enumerate(candidates):
        try:
            path: Path = resolve_model_path(model)
            name = backend_for(path, backend)
            options = backend_options(name, params.precision if param == "model" else "", params.threads)
            loaded = opener(path, name, device=device, warmup=params.warmup, **options)
        except (BackendError, OSError, ValueError) as err:
            reasons.append(f"parameter {param!r} ({model or 'the shipped demo checkpoint'}): {err}")
            continue
        note = precision_warning(loaded, params.precision) if param == "model" else None
        return LoadedModel(loaded, fallback=index > 0, reasons=tuple(reasons), warnings=(note,) if note else ())
    hint = "" if params.fallback_model else " (set parameter 'fallback_model' to run another model instead)"
    raise BackendError("no model could be loaded" + hint + ":\n  " + "\n  ".join(reasons))


# ---------------------------------------------------------------------- publishing
@dataclass
class Publishers:
    """Where NodeCore sends messages (rclpy ``Publisher.publish`` in the node; lists in tests).

    A None publisher is an output that is turned off. ``marker_subscribers`` tells whether anyone listens to
    ``~/markers`` (the MarkerArray is built only then).
    """

    cloud: Callable[[Any], None] | None = None
    markers: Callable[[Any], None] | None = None
    grid: Callable[[Any], None] | None = None
    grid_description: Callable[[Any], None] | None = None
    marker_subscribers: Callable[[], int] = _one_subscriber


@dataclass(frozen=True)
class DiagnosticReport:
    """One diagnostic status: ``level`` 0 OK / 1 WARN / 2 ERROR, a summary and key-value pairs."""

    level: int
    message: str
    values: list[tuple[str, str]]


class NodeCore:
    """The node's behaviour on ROS-free inputs (see the module docstring).

    Args:
        params: validated node parameters.
        loaded: the model (from :func:`open_model`).
        types: message classes for the outputs (rclpy's in the node, rosbags' in tests).
        publishers: where outputs go.
        lookup: the tf lookup for camera extrinsics.
        log: where warnings go.
        stats: shared statistics (a new one by default).
        clock: monotonic seconds (marker rate limit, warning throttle).
        run_inline: process frames on the calling thread (tests); the node uses the worker thread.
        warn_period_s: minimum time between two warnings for the same reason.
    Raises:
        ValueError: the camera count differs from the model's (names both lists).
    """

    def __init__(
        self,
        params: NodeParams,
        loaded: LoadedModel,
        types: MessageTypes,
        publishers: Publishers,
        lookup: TransformLookup,
        log: LogFn = _no_log,
        *,
        stats: PipelineStats | None = None,
        clock: Callable[[], float] = time.monotonic,
        run_inline: bool = False,
        warn_period_s: float = 5.0,
    ) -> None:
        self.params = params
        self.loaded = loaded
        self.backend = loaded.backend
        self.types = types
        self.publishers = publishers
        self.log = log
        self.stats = stats or PipelineStats()
        self._clock = clock
        info = self.backend.info
        if len(params.cameras) != info.num_cameras:
            raise ValueError(
                f"parameter 'cameras' lists {len(params.cameras)} cameras {list(params.camera_names)}, the model "
                f"{self.backend.path} takes {info.num_cameras} ({list(info.cameras)}) in that order"
            )
        self.pipeline = OccupancyPipeline(
            self.backend,
            PipelineConfig(params.camera_names, params.base_frame, params.outputs.min_confidence),
            self.stats,
        )
        self.assembler = FrameAssembler(params.cameras, params.base_frame, lookup, params.tf_timeout_s)
        self.guard = StampGuard(on_jump=self._on_jump)
        self.worker: LatestFrameWorker[FrameSet] = LatestFrameWorker(
            self._process_item,
            on_drop=self._on_drop,
            on_error=self._on_error,
            name="occ-inference",
            run_inline=run_inline,
        )
        self.marker_limiter = RateLimiter(params.outputs.markers_period_s)
        self._throttle = WarnThrottle(warn_period_s, clock)
        self._lock = threading.Lock()
        self.published = {"voxels": 0, "markers": 0, "grid": 0, "grid_description": 0}
        self.markers_left_out = 0

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
        if tuple(info.cameras) != self.params.camera_names:
            notes.append(
                (
                    "warn",
                    f"parameter 'cameras' {list(self.params.camera_names)} is fed to the model as its cameras "
                    f"{list(info.cameras)}, position by position",
                )
            )
        return notes

    def start(self) -> None:
        """Start the worker and publish the (latched) grid description."""
        self.worker.start()
        self.publish_description()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the worker (the frame in progress finishes); False if it was still busy after ``timeout``."""
        return self.worker.stop(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """:meth:`stop`, then release the backend (GPU memory, sessions) unless a frame is still running on it."""
        stopped = self.stop(timeout)
        if stopped:
            self.backend.close()
        return stopped

    # ------------------------------------------------------------------ inputs (executor threads)
    def on_camera_info(self, camera: str, msg: Any) -> None:
        """A CameraInfo of ``camera`` arrived: it becomes that camera's calibration for the next frames."""
        self.assembler.update_info(camera, msg)

    def on_synchronized(self, *messages: Any) -> None:
        """A synchronized set of 2N messages (the images of the N cameras in camera order, then their CameraInfo
        in the same order), as the node's ApproximateTimeSynchronizer and ``occ replay`` pair them."""
        count = len(messages) // 2
        for camera, info in zip(self.assembler.names, messages[count:], strict=False):
            self.assembler.update_info(camera, info)
        self.on_images(*messages[:count])

    def on_images(self, *images: Any) -> None:
        """A synchronized set (one image per camera, in camera order): assemble, check the stamp, submit."""
        self.stats.record_received()
        try:
            frame = self.assembler.assemble(images)
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
        """Run the pipeline on ``frame`` and publish its outputs (None: the frame was skipped)."""
        if frame.received_ns:
            self.stats.record_stage("wait", max(0, time.monotonic_ns() - frame.received_ns) / 1e9)
        try:
            result = self.pipeline.process(frame)  # records the skip itself
        except FrameSkipped as skip:
            self._warn_skip(skip, frame.stamp_ns)
            return None
        start = time.perf_counter()
        self.publish(result)
        self.stats.record_stage("publish", time.perf_counter() - start)
        return result

    def publish(self, result: FrameResult) -> list[str]:
        """Build and publish the enabled outputs of one frame; returns the topics published (``voxels``, ...)."""
        out, pubs, types = self.params.outputs, self.publishers, self.types
        stamp, frame_id = result.stamp_ns, self.params.frame_id
        done = []
        if out.cloud and pubs.cloud is not None:
            pubs.cloud(pointcloud2_msg(types, result.cloud, stamp, frame_id))
            done.append("voxels")
        if out.grid and pubs.grid is not None:
            pubs.grid(dense_grid_msg(types, result.labels))
            done.append("grid")
        if self.markers_due():
            assert pubs.markers is not None
            cubes, left_out = class_cubes(result.cloud, self.backend.info.vocabulary, out.max_marker_voxels)
            voxel_size = self.backend.info.grid.voxel_size
            pubs.markers(marker_array_msg(types, cubes, stamp, frame_id, voxel_size, namespace=MARKER_NAMESPACE))
            with self._lock:
                self.markers_left_out = left_out
            done.append("markers")
        with self._lock:
            for topic in done:
                self.published[topic] += 1
        return done

    def markers_due(self) -> bool:
        """Markers are on, someone subscribes, and the rate limit allows one now (taking the slot)."""
        out, pubs = self.params.outputs, self.publishers
        if not out.markers or pubs.markers is None:
            return False
        try:
            listening = pubs.marker_subscribers() > 0
        except Exception:  # the graph query failed (shutting down): do not build markers
            return False
        return listening and self.marker_limiter.ready(self._clock())

    def publish_description(self) -> bool:
        """Publish ``~/grid_description`` (once: its QoS is transient-local); False when the grid is off."""
        if not self.params.outputs.grid or self.publishers.grid_description is None:
            return False
        description = grid_description(self.backend.info, self.params.frame_id)
        self.publishers.grid_description(grid_description_msg(self.types, description))
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
        self.log("warn", f"{where} skipped ({skip.reason.value}): {skip.detail}{more}")

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self) -> DiagnosticReport:
        """Level, summary and values for the diagnostic_updater task (stats + worker + backend + outputs)."""
        level, message = self.stats.diagnostic_level()
        backend = self.backend
        values: list[tuple[str, str]] = [
            ("backend", backend.name),
            ("provider", _provider(backend)),
            ("model", str(backend.path)),
            ("fallback model", "yes" if self.loaded.fallback else "no"),
            ("cameras", ", ".join(self.params.camera_names)),
            ("camera_info missing", ", ".join(self.missing_camera_info()) or "none"),
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
        values += self.stats.diagnostic_values()
        if self.loaded.fallback and level == DIAG_OK:
            level, message = DIAG_WARN, f"running the fallback model {backend.path}; {message}"
        return DiagnosticReport(level, message, values)

    def missing_camera_info(self) -> list[str]:
        """Cameras without a CameraInfo yet."""
        return [name for name in self.params.camera_names if self.assembler.info(name) is None]


def _provider(backend: InferenceBackend) -> str:
    try:
        return str(backend.provider)
    except Exception as err:  # a runtime that cannot describe itself must not break diagnostics
        return f"unknown ({type(err).__name__})"


def diagnostic_level_bytes(level: int) -> bytes:
    """``diagnostic_msgs/DiagnosticStatus.level`` (a ``byte`` field: ``bytes`` of length 1 in rclpy)."""
    return bytes([max(0, min(3, int(level)))])


def subscribed_topics(params: NodeParams) -> Sequence[tuple[str, str, str]]:
    """``(camera, image topic, info topic)`` the node subscribes to (``/compressed`` appended when compressed)."""
    return [(c.name, c.subscribed_topic(params.compressed), c.info_topic) for c in params.cameras]
