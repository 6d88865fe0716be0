"""``occ replay``: the node's session over a recorded rosbag2, offline, with latency and accuracy metrics.

``occ replay`` is the second driver of :class:`~occ_ros.session.OccupancySession`, the object the rclpy node runs:
the bag is read with rosbags (MCAP or sqlite3) in recording order; each image and CameraInfo record is counted
(:meth:`~occ_ros.session.OccupancySession.on_input`) and goes into
:class:`~occ_ros.pipeline.sync.ApproximateTimeSync` (the algorithm of message_filters' ApproximateTimeSynchronizer,
2N inputs as the node pairs them); each synchronized set goes to
:meth:`~occ_ros.session.OccupancySession.on_synchronized`, extrinsics come from ``/tf`` + ``/tf_static`` through
:class:`~occ_ros.core.tf_buffer.TransformBuffer`, and the session's outputs (built with rosbags' ROS 2 message
classes) are written into a new MCAP bag on the node's own topics (``/occupancy_node/voxels``, ...), together with
the input's tf, for Foxglove or ``ros2 bag play``. The bag clock is the log time of the last record read.

With ``outputs.processing_time`` (the default) the bag also holds the node's ``/occupancy_node/debug/...`` topics:
each frame's stage times as measured in this replay, and ``pipeline_latency_ms`` = the bag clock when the frame's
outputs were written (the log time of the record that completed its synchronized set, or of the last record read
before a ``realtime`` worker finished it) minus the frame's stamp: the recording's own delay from image stamp to
logged record, plus the synchronizer's wait, not this machine's compute time.

Configuration: the node's parameter file (``--params``, the same file ``ros2 launch`` takes), or an
``occ inspect`` bag YAML (``--config``), or neither: the node's defaults for the model's cameras.

Rates: ``max`` processes every synchronized frame (the session runs inline); ``realtime`` replays with the
recording's timing through the session's latest-frame worker, so a backend slower than the cameras drops frames as
on the vehicle (counted as ``superseded``). At the end of the bag the pending frame is processed, not dropped.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.core.frames import SkipReason
from occ_ros.core.grid import GridSpec, coarsening_factor, upsample_labels
from occ_ros.core.tf_buffer import TransformBuffer, add_tf_message
from occ_ros.datasets.rosbag_reader import BagConfig
from occ_ros.inference.backend import InferenceBackend, backend_for, backend_options, open_backend
from occ_ros.io.atomic import atomic_write_text, check_writable_dir
from occ_ros.io.labels import LABELS_FILE, LabelFileError, OccupancyLabels, load_labels, save_labels
from occ_ros.io.rosbag import BagWriter, ns_from_stamp, typestore
from occ_ros.node.params import ModelParams, NodeParams, ParamError, from_ros_parameters, load_param_file
from occ_ros.pipeline.messages import rosbags_message_types
from occ_ros.pipeline.pipeline import FrameResult
from occ_ros.pipeline.stats import PipelineStats
from occ_ros.pipeline.sync import ApproximateTimeSync, slop_ns_from_seconds
from occ_ros.session import NODE_NAME, CameraInput, OccupancySession, OutputSinks, SessionConfig, output_topics

RATES = ("max", "realtime")
OUTPUT_TOPICS = output_topics()
"""The node's output topics in the root namespace, which the output bag records."""


class ReplayError(ValueError):
    """A replay that cannot start (bag, config, model or output problems; names the file)."""


@dataclass(frozen=True)
class ReplaySetup:
    """What the replay driver needs besides the session: the session's config, the synchronizer's slop and the
    bag's tf topics."""

    session: SessionConfig
    slop_s: float
    queue_size: int = 10
    tf_topic: str = "/tf"
    tf_static_topic: str = "/tf_static"
    tf_tolerance_ns: int = 0

    @classmethod
    def from_params(cls, params: NodeParams) -> ReplaySetup:
        """The node's parameters: exactly the session the node would run (topics, frames, outputs, slop)."""
        return cls(params.session_config(), params.sync.slop_s, params.sync.queue_size)

    @classmethod
    def from_bag_config(cls, cfg: BagConfig, defaults: NodeParams, min_confidence: float | None = None) -> ReplaySetup:
        """An ``occ inspect`` bag YAML (topics, frames, tf topics, slop); outputs as in the node's ``defaults``.
        ``sync.reference`` only matters to the dataset reader: a session stamps a frame with its first camera."""
        session = defaults.session_config()
        cameras = tuple(CameraInput(c.name, c.image_topic, c.info_topic, c.frame_id or "") for c in cfg.cameras)
        session = replace(session, cameras=cameras, base_frame=cfg.base_frame, frame_id="")
        if min_confidence is not None:
            session = replace(session, min_confidence=min_confidence)
        return cls(
            session, cfg.slop_s, defaults.sync.queue_size, cfg.tf_topic, cfg.tf_static_topic, cfg.tf_tolerance_ns
        )


def node_defaults(cameras: tuple[str, ...], **overrides: Any) -> NodeParams:
    """The node's default parameters for these cameras (topics ``/<camera lower-case>/image_raw`` ...)."""
    return from_ros_parameters({"cameras": list(cameras), **overrides})


@dataclass
class ReplaySummary:
    """What a replay did; :meth:`to_dict` is the ``--json`` metrics file."""

    bag: str
    model: str
    backend: str
    provider: str
    rate: str
    out: str
    settings: dict[str, Any] = field(default_factory=dict)  # the backend's CPU settings in effect (threads, ...)
    messages: int = 0
    inputs: dict[str, int] = field(default_factory=dict)
    synchronized: int = 0
    processed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    sync_evicted: dict[str, int] = field(default_factory=dict)
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    accuracy: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    query_published: int = 0  # ~/query/voxels messages written (occ replay --query)
    #: one ``(stamp_ns, stage -> milliseconds)`` per processed frame, in processing order (not in :meth:`to_dict`;
    #: :func:`write_timings` writes them as CSV)
    frame_timings: list[tuple[int, dict[str, float]]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "frame_timings"}

    def stamps_and_stages(self) -> tuple[list[int], dict[str, list[float]]]:
        """The processed frames' stamps in order, and each stage's milliseconds over them (for
        :func:`occ_ros.viz.latency_figure`)."""
        rows = sorted(self.frame_timings, key=lambda row: row[0])
        stages = list(rows[0][1]) if rows else []
        return [stamp for stamp, _ in rows], {k: [ms[k] for _, ms in rows] for k in stages}

    def stage_series(self) -> dict[str, list[float]]:
        """Each stage's milliseconds over the processed frames in stamp order."""
        return self.stamps_and_stages()[1]


class _Accuracy:
    """Occ3D mIoU / IoU of the replayed frames against ground truth, matched by stamp.

    The ground truth (``--gt``) is a dataset folder with ground truth (any reader, e.g. the ``occ synth`` folder the
    bag was recorded from), a dataset's ``gts/`` folder (its reader gives the stamps), or a folder of
    ``<stamp_ns>/labels.npz`` files (what ``occ replay --predictions`` writes; the folder names are the stamps).

    The model's labels are scored on the ground truth's grid: the same grid, or upsampled from a whole-factor
    coarsening of it; any other grid is a :class:`ReplayError` naming both grids, raised here, before the bag is read.
    """

    def __init__(
        self, gt_dir: str | Path, vocabulary: Any, slop_ns: int, grid: GridSpec | None = None, model: str = "model"
    ) -> None:
        from occ_ros.datasets import open_dataset
        from occ_ros.eval.occ3d import Occ3DMetric
        from occ_ros.eval.runner import is_dataset_folder

        gt_dir = Path(gt_dir)
        if gt_dir.name == "gts" and is_dataset_folder(gt_dir.parent):
            gt_dir = gt_dir.parent  # a dataset's own label folder: its reader knows each frame's stamp
        self.reader = None
        self.files: list[Path] = []
        if gt_dir.is_dir() and not is_dataset_folder(gt_dir) and any(gt_dir.rglob(LABELS_FILE)):
            stamped = _stamped_label_files(gt_dir)
            self.stamps = np.asarray([stamp for stamp, _ in stamped], dtype=np.int64)
            self.files = [path for _, path in stamped]
            try:  # checked here, before the bag is read: scoring runs on the session's thread, which goes on
                data_grid = load_labels(self.files[0], require_masks=True).grid
            except LabelFileError as err:
                raise ReplayError(str(err)) from None
        else:
            # stamps from a reader without ground truth; a frame's ground truth is read only when a replayed frame
            # matches it (a long dataset's label volumes are never all in memory)
            stamps = open_dataset(gt_dir, load_gt=False)
            self.stamps = np.asarray(
                [stamps.load(i, images=False).stamp_ns for i in range(len(stamps))], dtype=np.int64
            )
            data_grid = stamps.load(0, images=False).grid if len(stamps) else None
            self.reader = open_dataset(gt_dir, load_gt=True)
        self.factor = 1
        if grid is not None and data_grid is not None:
            try:
                self.factor = coarsening_factor(grid, data_grid, f"the model {model}", f"the ground truth {gt_dir}")
            except ValueError as err:
                raise ReplayError(str(err)) from None
        self.slop_ns = slop_ns
        self.metric = Occ3DMetric(vocabulary, mask="camera")
        self.matched = 0
        self.unmatched = 0

    def update(self, stamp_ns: int, labels: np.ndarray) -> None:
        d = np.abs(self.stamps - stamp_ns)
        i = int(np.argmin(d)) if len(d) else -1
        gt = self._ground_truth(i) if i >= 0 and d[i] <= self.slop_ns else None
        if gt is None:
            self.unmatched += 1
            return
        if self.factor > 1:
            labels = upsample_labels(labels, self.factor)
        self.metric.update(labels, gt.semantics, mask_camera=gt.mask_camera)
        self.matched += 1

    def _ground_truth(self, i: int) -> OccupancyLabels | None:
        if self.reader is not None:
            return self.reader.load(i, images=False).gt
        return load_labels(self.files[i], require_masks=True)

    def result(self) -> dict[str, Any]:
        r = self.metric.compute()
        return {"frames": self.matched, "unmatched": self.unmatched, "miou": r.miou, "iou": r.iou, "mask": "camera"}


def _stamped_label_files(folder: Path) -> list[tuple[int, Path]]:
    """``(stamp_ns, file)`` of every ``<stamp_ns>/labels.npz`` under ``folder``, in stamp order.

    Raises:
        ReplayError: a label file whose folder is not named by a stamp (names both accepted layouts).
    """
    stamped = []
    for path in sorted(folder.rglob(LABELS_FILE)):
        try:
            stamped.append((int(path.parent.name), path))
        except ValueError:
            raise ReplayError(
                f"{path}: a folder of label files is matched to the replayed frames by stamp, so each must be "
                f"<stamp_ns>/{LABELS_FILE} (as `occ replay --predictions` writes); for a dataset's ground truth pass "
                "the dataset folder (or its gts/ folder)"
            ) from None
    return sorted(stamped)


class _McapSink:
    """The session's outputs, written into the output bag on the node's topics at the bag clock (thread-safe)."""

    def __init__(self, bag: BagWriter, topics: dict[str, str]) -> None:
        self.bag = bag
        self.topics = topics
        self.lock = threading.Lock()
        self.now_ns = 0  # the bag clock: log time of the last record read

    def sinks(self) -> OutputSinks:
        return OutputSinks(
            cloud=self._writer("voxels"),
            markers=self._writer("markers"),
            grid=self._writer("grid"),
            grid_description=self._writer("grid_description"),
            costmap=self._writer("costmap"),
            query=self._writer("query/voxels"),
            processing_time=self._write_debug,
        )

    def _write_debug(self, relative: str, msg: Any) -> None:
        """``debug/...`` topics (relative to the node) under the node's name in the root namespace."""
        self.write(f"/{NODE_NAME}/{relative}", msg, self.now_ns)

    def _writer(self, name: str) -> Any:
        topic = self.topics[name]

        def write(msg: Any) -> None:
            self.write(topic, msg, self.now_ns)

        return write

    def write(self, topic: str, msg: Any, log_ns: int) -> None:
        with self.lock:
            self.bag.write(topic, msg, log_ns)


def _setup(
    config: str | Path | BagConfig | None,
    params: str | Path | NodeParams | None,
    cameras: tuple[str, ...],
    min_confidence: float | None,
    marker_rate_hz: float,
    max_marker_voxels: int,
) -> ReplaySetup:
    """The replay's setup from ``--params`` or ``--config`` or the node's defaults (see :func:`replay`)."""
    if config is not None and params is not None:
        raise ReplayError("give the node's parameter file (params) or a bag config (config), not both")
    if params is not None:
        try:
            node = params if isinstance(params, NodeParams) else load_param_file(params)
        except ParamError as err:
            raise ReplayError(str(err)) from None
        setup = ReplaySetup.from_params(node)
        if min_confidence is not None:
            setup = replace(setup, session=replace(setup.session, min_confidence=min_confidence))
        return setup
    defaults = node_defaults(
        cameras, **{"outputs.markers_rate_hz": marker_rate_hz, "outputs.max_marker_voxels": max_marker_voxels}
    )
    if config is None:
        cfg = replace(defaults.session_config(), min_confidence=min_confidence)
        return ReplaySetup(cfg, defaults.sync.slop_s, defaults.sync.queue_size)
    bag_cfg = config if isinstance(config, BagConfig) else BagConfig.from_yaml(config)
    return ReplaySetup.from_bag_config(bag_cfg, defaults, min_confidence)


def replay(
    bag: str | Path,
    model: str | Path | InferenceBackend,
    out: str | Path,
    config: str | Path | BagConfig | None = None,
    gt: str | Path | None = None,
    rate: str = "max",
    backend: str = "auto",
    device: str = "cpu",
    min_confidence: float | None = None,
    marker_rate_hz: float = 2.0,
    max_marker_voxels: int = 50_000,
    predictions: str | Path | None = None,
    progress: bool = True,
    params: str | Path | NodeParams | None = None,
    clock: tuple[Callable[[], float], Callable[[float], None]] = (time.perf_counter, time.sleep),
    threads: int | None = None,
    spinning: bool | None = None,
    query: str | None = None,
) -> ReplaySummary:
    """Replay ``bag`` through the node's session into the MCAP bag ``out`` (a new folder) and measure it.

    Args:
        config: the bag's camera topics and frames (the ``occ inspect`` bag YAML).
        params: the node's parameter file (or parameters) instead: the replay then runs exactly the node's session.
            Neither: the node's defaults for the model's cameras.
        gt: a dataset with ground truth (any reader, e.g. the synthetic folder the bag was recorded from), matched
            to the replayed frames by stamp, for mIoU / IoU.
        rate: ``max`` or ``realtime`` (see the module docstring).
        min_confidence, marker_rate_hz, max_marker_voxels: output settings when no ``params`` gives them
            (``min_confidence`` overrides the params' too).
        predictions: also write Occ3D ``<dir>/<stamp>/labels.npz`` per processed frame (for ``occ eval``), on the
            model's grid (stored in the file).
        clock: ``(now, sleep)`` that paces ``realtime`` (seconds; default the wall clock): tests pass a fake one so
            that what they check does not depend on the machine's speed.
        threads, spinning: the backend's CPU settings (``occ replay --threads / --spinning``,
            :class:`~occ_ros.inference.backend.RuntimeSettings`); None = the ``params``' (parameters ``threads``,
            ``spinning``), else the node's defaults. Not used when ``model`` is an already loaded backend.
        query: a prompt name sent to the session's ``~/query`` before the first frame (``occ replay --query``):
            every frame's matching voxels are written on ``/occupancy_node/query/voxels``.

    The output bag (and ``predictions``) are written under a temporary name beside ``out`` and moved into place
    only when the replay succeeds: a replay that fails or is interrupted leaves no partial output.

    Raises:
        ReplayError: a missing / unreadable bag, a bag without one of the input topics (named, before any message
            is read), a replay in which no frame could be synchronized, a bad config, a model that cannot load, an
            existing output, or a ``gt`` dataset whose grid is neither the model's nor finer by a whole factor
            (naming both grids).
    """
    from rosbags.highlevel import AnyReader

    if rate not in RATES:
        raise ReplayError(f"rate must be one of {RATES}, got {rate!r}")
    bag, out = Path(bag), Path(out)
    if not bag.exists():
        raise ReplayError(f"{bag}: no such bag")
    if out.exists():
        raise ReplayError(f"{out} already exists; rosbag2 writes new bags only (remove it or choose another --out)")
    if params is not None and not isinstance(params, NodeParams):
        try:
            params = load_param_file(params)
        except ParamError as err:
            raise ReplayError(str(err)) from None
    if isinstance(model, InferenceBackend):
        loaded = model
    else:
        settings = (params.model if params is not None else ModelParams()).runtime()
        if threads is not None:
            settings = replace(settings, threads=threads)
        if spinning is not None:
            settings = replace(settings, spinning=spinning)
        name = backend_for(model, backend)
        loaded = open_backend(model, name, device=device, **backend_options(name, settings))
    setup = _setup(config, params, loaded.info.cameras, min_confidence, marker_rate_hz, max_marker_voxels)
    cfg = setup.session
    stats = PipelineStats()
    store = typestore()
    try:
        reader = AnyReader([bag], default_typestore=store)
        reader.open()
    except Exception as err:  # rosbags raises several types for unreadable bags
        raise ReplayError(f"{bag}: cannot open the bag: {err}") from None
    try:
        # from the bag's metadata, before any message is read: a camera topic the bag lacks means no frame at all
        _check_topics(bag, {c.topic: c.msgtype for c in reader.connections}, cfg.input_topics())
        name = str(getattr(loaded, "path", model))
        accuracy = None
        if gt is not None:
            slop_ns = slop_ns_from_seconds(setup.slop_s)
            accuracy = _Accuracy(gt, loaded.info.vocabulary, slop_ns, loaded.info.grid, name)
        summary = ReplaySummary(str(bag), name, loaded.name, loaded.provider, rate, str(out), dict(loaded.settings))
        # everything is written under a temporary name beside `out` and moved into place only on success
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=check_writable_dir(out)))
        try:
            staged = stage / "predictions" if predictions is not None else None
            (stage / "bag").mkdir()
            staged_bag = stage / "bag" / out.name  # rosbag2 names its files after the bag's folder
            _run(reader, staged_bag, staged, summary, stats, setup, loaded, accuracy, store, progress, clock, query)
            if summary.synchronized == 0:
                raise ReplayError(_nothing_synchronized(summary, setup.slop_s))
            os.replace(staged_bag, out)
            if staged is not None and predictions is not None:
                _move_into(staged, Path(predictions))
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    finally:
        reader.close()
    if accuracy is not None:
        summary.accuracy = accuracy.result()
    return summary


def _check_topics(bag: Path, topics: dict[str, str], inputs: list[str]) -> None:
    """Every input topic is in the bag, or a :class:`ReplayError` naming the missing ones and listing the bag's."""
    missing = [topic for topic in inputs if topic not in topics]
    if not missing:
        return
    listing = "\n".join(f"  {topic}  [{msgtype}]" for topic, msgtype in sorted(topics.items()))
    raise ReplayError(
        f"{bag} has no topic {', '.join(missing)}: no frame can be synchronized without every camera's image and "
        f"CameraInfo. Name the bag's topics with --config (the `occ inspect` bag YAML) or --params. The bag's "
        f"topics:\n{listing}"
    )


def _nothing_synchronized(summary: ReplaySummary, slop_s: float) -> str:
    counts = ", ".join(f"{topic} {n}" for topic, n in summary.inputs.items())
    problems = "".join(f"; {p}" for p in summary.problems)
    return (
        f"{summary.bag}: no frame could be synchronized from {summary.messages} messages (messages per input: "
        f"{counts}){problems}; the images and CameraInfo of one frame must have stamps within sync.slop_s "
        f"{slop_s:g} s of each other"
    )


def _move_into(staged: Path, final: Path) -> None:
    """Move the staged prediction folders (``<stamp>/labels.npz``) into ``final``, replacing a frame's old one."""
    if not staged.exists():
        return
    if not final.exists():
        check_writable_dir(final)
        os.replace(staged, final)
        return
    for frame in sorted(staged.iterdir()):
        target = final / frame.name
        if target.exists():
            shutil.rmtree(target)
        os.replace(frame, target)


def _run(
    reader: Any,
    out: Path,
    predictions: Path | None,
    summary: ReplaySummary,
    stats: PipelineStats,
    setup: ReplaySetup,
    loaded: InferenceBackend,
    accuracy: _Accuracy | None,
    store: Any,
    progress: bool,
    clock: tuple[Callable[[], float], Callable[[float], None]],
    query: str | None = None,
) -> None:
    """Read the open bag through a session into the new bag ``out`` (and ``predictions``); fills in ``summary``.

    ``clock`` is ``(now, sleep)`` pacing ``realtime`` (see :func:`replay`)."""
    cfg, rate, grid = setup.session, summary.rate, loaded.info.grid
    # Images and CameraInfo of every camera are synchronized together (2N inputs), as image_transport's
    # CameraSubscriber pairs them and as the node's ApproximateTimeSynchronizer does.
    inputs = cfg.input_topics()
    watched = set(inputs)
    sync = ApproximateTimeSync(inputs, slop_ns_from_seconds(setup.slop_s), setup.queue_size)
    tf = TransformBuffer(tolerance_ns=setup.tf_tolerance_ns)

    def on_result(result: FrameResult) -> None:
        summary.frame_timings.append((result.stamp_ns, {k: 1000.0 * v for k, v in result.timings.items()}))
        if accuracy is not None:
            accuracy.update(result.stamp_ns, result.labels)
        if predictions is not None:
            path = predictions / f"{result.stamp_ns}" / LABELS_FILE
            save_labels(path, OccupancyLabels(result.labels, grid=grid))

    def lookup(target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
        return tf.lookup(target, source, stamp_ns)  # a recording has all its tf already: nothing to wait for

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="replay", unit="frame")
    start = time.perf_counter()
    with BagWriter(out) as writer:
        sink = _McapSink(writer, OUTPUT_TOPICS)
        sink.now_ns = int(getattr(reader, "start_time", 0) or 0)
        session = OccupancySession(
            cfg,
            loaded,
            rosbags_message_types(store),
            sink.sinks(),
            lookup,
            stats=stats,
            run_inline=rate == "max",
            on_result=on_result,
            stamp_clock=lambda: sink.now_ns,
        )
        session.start()  # the grid description, at the bag's start time
        if query is not None and not session.on_query(query):
            why = session.query_off or f"unknown prompt; the model knows {session.query_engine.names}"  # type: ignore[union-attr]
            summary.problems.append(f"query {query!r} not answered: {why}")
        first_log: int | None = None
        paced_from = clock[0]()  # realtime: record time (log - first_log) is paced against clock time since here
        try:
            wanted = set(inputs) | {setup.tf_topic, setup.tf_static_topic}
            connections = [c for c in reader.connections if c.topic in wanted]
            for conn, log_ns, raw in reader.messages(connections=connections):
                summary.messages += 1
                if rate == "realtime":
                    first_log = log_ns if first_log is None else first_log
                    delay = (log_ns - first_log) / 1e9 - (clock[0]() - paced_from)
                    if delay > 0:
                        clock[1](delay)
                sink.now_ns = log_ns
                topic = conn.topic
                if topic in watched:
                    session.on_input(topic)
                try:
                    msg: Any = reader.deserialize(raw, conn.msgtype)
                except Exception as err:  # a corrupt record: count it, skip it, go on
                    stats.record_skip(SkipReason.CORRUPT_RECORD, f"{topic} record at {log_ns} ns: {err}")
                    continue
                if topic in (setup.tf_topic, setup.tf_static_topic):
                    _add_transforms(tf, msg, topic == setup.tf_static_topic, stats)
                    sink.write(topic, msg, log_ns)
                    continue
                try:
                    done = sync.add(topic, ns_from_stamp(msg.header.stamp), msg)
                except (AttributeError, TypeError, ValueError) as err:
                    stats.record_skip(
                        SkipReason.CORRUPT_RECORD, f"{topic} record at {log_ns} ns: no header stamp: {err}"
                    )
                    continue
                if done is None:
                    continue
                summary.synchronized += 1
                session.on_synchronized(*(done[key][1] for key in inputs))
                if bar is not None:
                    bar.update(1)
        finally:
            session.stop(timeout=None, drain=True)  # the end of the bag: the newest frame is processed, not lost
            if bar is not None:
                bar.close()
    summary.wall_seconds = time.perf_counter() - start
    snap = stats.snapshot()
    summary.processed = snap.processed
    summary.query_published = session.published.get("query/voxels", 0)
    summary.skipped = dict(snap.skipped)
    summary.stages_ms = {k: v.to_dict() for k, v in snap.stages.items()}
    summary.sync_evicted = dict(sync.evicted)
    summary.inputs = {state.topic: state.count for state in session.inputs.states()}
    summary.problems += [f"input {topic}: no message in the bag" for topic, n in summary.inputs.items() if n == 0]


def _add_transforms(buffer: TransformBuffer, msg: Any, static: bool, stats: PipelineStats) -> None:
    try:
        add_tf_message(buffer, msg, static)
    except ValueError as err:  # a bad transform is reported; lookups that need it fail as NO_TF
        stats.record_skip(SkipReason.NO_TF, f"{'/tf_static' if static else '/tf'}: {err}")


def write_metrics(summary: ReplaySummary, path: str | Path) -> None:
    atomic_write_text(path, json.dumps(summary.to_dict(), indent=1))


def write_timings(summary: ReplaySummary, path: str | Path) -> None:
    """Per-frame stage latencies as CSV: ``stamp_ns`` then one ``<stage>_ms`` column per stage (and ``total_ms``)."""
    stamps, series = summary.stamps_and_stages()
    lines = [",".join(["stamp_ns", *(f"{k}_ms" for k in series)])]
    lines += [",".join([str(t), *(f"{series[k][i]:.3f}" for k in series)]) for i, t in enumerate(stamps)]
    atomic_write_text(path, "\n".join(lines) + "\n")
