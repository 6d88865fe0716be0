"""``occ replay``: the node's pipeline over a recorded rosbag2, offline, with latency and accuracy metrics.

The bag is read with rosbags (MCAP or sqlite3) in recording order. Messages go through the same stages the node
runs: ApproximateTime synchronization of the cameras (:class:`~occ_ros.pipeline.sync.ApproximateTimeSync`, the
algorithm of message_filters' ApproximateTimeSynchronizer), the latest CameraInfo per camera, extrinsics from
``/tf`` + ``/tf_static`` at the image stamp, the stamp-order guard,
:class:`~occ_ros.pipeline.pipeline.OccupancyPipeline` and the output messages (:mod:`occ_ros.pipeline.messages`,
built with rosbags' ROS 2 message classes). The outputs are written into a new MCAP bag that Foxglove and
``ros2 bag play`` open, together with the input's tf.

Rates: ``max`` processes every synchronized frame; ``realtime`` replays with the recording's timing through the
node's :class:`~occ_ros.pipeline.worker.LatestFrameWorker`, so a backend slower than the cameras drops frames as on
the vehicle (counted as ``superseded``).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.core.tf_buffer import TransformBuffer, TransformError, add_tf_message
from occ_ros.datasets.rosbag_reader import BagConfig
from occ_ros.inference.backend import InferenceBackend, open_backend
from occ_ros.io.atomic import atomic_savez_compressed, atomic_write_text
from occ_ros.io.rosbag import BagWriter, ns_from_stamp, typestore
from occ_ros.pipeline.frames import CameraMessage, FrameSet, FrameSkipped, SkipReason
from occ_ros.pipeline.messages import (
    dense_grid_msg,
    grid_description_msg,
    marker_array_msg,
    pointcloud2_msg,
    rosbags_message_types,
)
from occ_ros.pipeline.outputs import RateLimiter, class_cubes, grid_description
from occ_ros.pipeline.pipeline import FrameResult, OccupancyPipeline, PipelineConfig
from occ_ros.pipeline.stats import PipelineStats
from occ_ros.pipeline.sync import ApproximateTimeSync, StampGuard, slop_ns_from_seconds
from occ_ros.pipeline.worker import LatestFrameWorker

RATES = ("max", "realtime")
OUTPUT_TOPICS = {
    "voxels": "/occupancy/voxels",
    "markers": "/occupancy/markers",
    "grid": "/occupancy/grid",
    "grid_description": "/occupancy/grid_description",
}


class ReplayError(ValueError):
    """A replay that cannot start (bag, config, model or output problems; names the file)."""


def default_bag_config(cameras: tuple[str, ...]) -> BagConfig:
    """Topics by the node's convention: ``/<camera lower-case>/image_raw`` and ``/<camera lower-case>/camera_info``."""
    entries = [
        {"name": c, "image_topic": f"/{c.lower()}/image_raw", "info_topic": f"/{c.lower()}/camera_info"}
        for c in cameras
    ]
    return BagConfig.from_dict({"cameras": entries, "sync": {"slop_s": 0.02}}, "default bag config (from the model)")


@dataclass
class ReplaySummary:
    """What a replay did; :meth:`to_dict` is the ``--json`` metrics file."""

    bag: str
    model: str
    backend: str
    provider: str
    rate: str
    out: str
    messages: int = 0
    synchronized: int = 0
    processed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    sync_evicted: dict[str, int] = field(default_factory=dict)
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    accuracy: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
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
    """Occ3D mIoU / IoU of the replayed frames against a ground-truth dataset, matched by stamp."""

    def __init__(self, gt_dir: str | Path, vocabulary: Any, slop_ns: int) -> None:
        from occ_ros.datasets import open_dataset
        from occ_ros.eval.occ3d import Occ3DMetric

        # stamps from a reader without ground truth; a frame's ground truth is read only when a replayed frame
        # matches it (a long dataset's label volumes are never all in memory)
        stamps = open_dataset(gt_dir, load_gt=False)
        self.stamps = np.asarray([stamps.load(i, images=False).stamp_ns for i in range(len(stamps))], dtype=np.int64)
        self.reader = open_dataset(gt_dir, load_gt=True)
        self.slop_ns = slop_ns
        self.metric = Occ3DMetric(vocabulary, mask="camera")
        self.matched = 0
        self.unmatched = 0

    def update(self, stamp_ns: int, labels: np.ndarray) -> None:
        d = np.abs(self.stamps - stamp_ns)
        i = int(np.argmin(d)) if len(d) else -1
        gt = self.reader.load(i, images=False).gt if i >= 0 and d[i] <= self.slop_ns else None
        if gt is None:
            self.unmatched += 1
            return
        self.metric.update(labels, gt.semantics, mask_camera=gt.mask_camera)
        self.matched += 1

    def result(self) -> dict[str, Any]:
        r = self.metric.compute()
        return {"frames": self.matched, "unmatched": self.unmatched, "miou": r.miou, "iou": r.iou, "mask": "camera"}


class _Outputs:
    """Writes the node's output topics for each result into the output bag (thread-safe)."""

    def __init__(
        self, bag: BagWriter, pipeline: OccupancyPipeline, marker_period_s: float, max_marker_voxels: int
    ) -> None:
        self.bag = bag
        self.pipeline = pipeline
        self.types = rosbags_message_types()
        self.frame_id = pipeline.config.base_frame
        self.markers = RateLimiter(marker_period_s)
        self.max_marker_voxels = max_marker_voxels
        self.lock = threading.Lock()
        self.described = False

    def write(self, result: FrameResult) -> None:
        info, t = self.pipeline.info, result.stamp_ns
        msgs: list[tuple[str, Any]] = []
        if not self.described:
            description = grid_description(info)
            msgs.append((OUTPUT_TOPICS["grid_description"], grid_description_msg(self.types, description)))
            self.described = True
        msgs.append((OUTPUT_TOPICS["voxels"], pointcloud2_msg(self.types, result.cloud, t, self.frame_id)))
        msgs.append((OUTPUT_TOPICS["grid"], dense_grid_msg(self.types, result.labels)))
        if self.markers.ready(t / 1e9):
            cubes, _ = class_cubes(result.cloud, info.vocabulary, self.max_marker_voxels)
            voxel = tuple(float(v) for v in info.grid.voxel_size)
            msgs.append((OUTPUT_TOPICS["markers"], marker_array_msg(self.types, cubes, t, self.frame_id, voxel)))
        with self.lock:
            for topic, msg in msgs:
                self.bag.write(topic, msg, t)

    def copy(self, topic: str, msg: Any, log_ns: int) -> None:
        with self.lock:
            self.bag.write(topic, msg, log_ns)


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
) -> ReplaySummary:
    """Replay ``bag`` through the pipeline into the MCAP bag ``out`` (a new folder) and measure it.

    Args:
        config: the bag's camera topics and frames (the ``occ inspect`` bag YAML); default: the model's cameras on
            the node's default topics.
        gt: a dataset with ground truth (any reader, e.g. the synthetic folder the bag was recorded from), matched
            to the replayed frames by stamp, for mIoU / IoU.
        rate: ``max`` or ``realtime`` (see the module docstring).
        predictions: also write Occ3D ``<dir>/<stamp>/labels.npz`` per processed frame (for ``occ eval``).
    Raises:
        ReplayError: a missing / unreadable bag, a bad config, a model that cannot load, an existing output.
    """
    from rosbags.highlevel import AnyReader

    if rate not in RATES:
        raise ReplayError(f"rate must be one of {RATES}, got {rate!r}")
    bag, out = Path(bag), Path(out)
    if not bag.exists():
        raise ReplayError(f"{bag}: no such bag")
    if out.exists():
        raise ReplayError(f"{out} already exists; rosbag2 writes new bags only (remove it or choose another --out)")
    loaded = model if isinstance(model, InferenceBackend) else open_backend(model, backend, device=device)
    cfg = (
        config
        if isinstance(config, BagConfig)
        else (BagConfig.from_yaml(config) if config is not None else default_bag_config(loaded.info.cameras))
    )
    stats = PipelineStats()
    pipeline = OccupancyPipeline(loaded, PipelineConfig(tuple(cfg.names), cfg.base_frame, min_confidence), stats=stats)
    slop_ns = slop_ns_from_seconds(cfg.slop_s)
    # Images and CameraInfo of every camera are synchronized together (2N inputs), as image_transport's
    # CameraSubscriber pairs them and as the node's ApproximateTimeSynchronizer does.
    sync = ApproximateTimeSync([*cfg.names, *(info_key(n) for n in cfg.names)], slop_ns)
    guard = StampGuard()
    tf = TransformBuffer(tolerance_ns=cfg.tf_tolerance_ns)
    image_topics = {c.image_topic: c.name for c in cfg.cameras}
    info_topics = {c.info_topic: c.name for c in cfg.cameras}
    frame_ids = {c.name: c.frame_id for c in cfg.cameras}
    accuracy = _Accuracy(gt, loaded.info.vocabulary, slop_ns) if gt is not None else None
    summary = ReplaySummary(str(bag), str(getattr(loaded, "path", model)), loaded.name, loaded.provider, rate, str(out))
    store = typestore()

    def on_result(result: FrameResult) -> None:
        outputs.write(result)
        summary.frame_timings.append((result.stamp_ns, {k: 1000.0 * v for k, v in result.timings.items()}))
        if accuracy is not None:
            accuracy.update(result.stamp_ns, result.labels)
        if predictions is not None:
            atomic_savez_compressed(Path(predictions) / f"{result.stamp_ns}" / "labels.npz", semantics=result.labels)

    def process(frame: FrameSet) -> None:
        try:
            result = pipeline.process(frame)
        except FrameSkipped:
            return  # counted by the pipeline's stats
        on_result(result)

    def on_drop(frame: FrameSet) -> None:
        stats.record_skip(SkipReason.SUPERSEDED, f"frame {frame.stamp_ns} replaced by a newer one")

    worker: LatestFrameWorker[FrameSet] = LatestFrameWorker(process, on_drop=on_drop, run_inline=rate == "max")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="replay", unit="frame")
    start = time.perf_counter()
    try:
        reader = AnyReader([bag], default_typestore=store)
        reader.open()
    except Exception as err:  # rosbags raises several types for unreadable bags
        raise ReplayError(f"{bag}: cannot open the bag: {err}") from None
    with BagWriter(out) as writer:
        outputs = _Outputs(
            writer, pipeline, 1.0 / marker_rate_hz if marker_rate_hz > 0 else float("inf"), max_marker_voxels
        )
        worker.start()
        first_log: int | None = None
        try:
            wanted = set(image_topics) | set(info_topics) | {cfg.tf_topic, cfg.tf_static_topic}
            connections = [c for c in reader.connections if c.topic in wanted]
            for conn, log_ns, raw in reader.messages(connections=connections):
                summary.messages += 1
                if rate == "realtime":
                    first_log = log_ns if first_log is None else first_log
                    delay = (log_ns - first_log) / 1e9 - (time.perf_counter() - start)
                    if delay > 0:
                        time.sleep(delay)
                try:
                    msg: Any = reader.deserialize(raw, conn.msgtype)
                except Exception as err:  # a corrupt record: count it, skip it, go on
                    stats.record_skip(SkipReason.CORRUPT_RECORD, f"{conn.topic} record at {log_ns} ns: {err}")
                    continue
                topic = conn.topic
                if topic in (cfg.tf_topic, cfg.tf_static_topic):
                    _add_transforms(tf, msg, topic == cfg.tf_static_topic, stats)
                    outputs.copy(topic, msg, log_ns)
                elif topic in info_topics or topic in image_topics:
                    key = image_topics[topic] if topic in image_topics else info_key(info_topics[topic])
                    done = sync.add(key, ns_from_stamp(msg.header.stamp), msg)
                    if done is None:
                        continue
                    summary.synchronized += 1
                    frame = _frame_set(done, tf, cfg.base_frame, frame_ids, cfg.reference)
                    try:
                        guard.check(frame.stamp_ns)
                    except FrameSkipped as skip:
                        stats.record_skip(skip.reason, skip.detail)
                        continue
                    guard.accept(frame.stamp_ns)
                    worker.submit(frame)
                    if bar is not None:
                        bar.update(1)
        finally:
            worker.stop()
            reader.close()
            if bar is not None:
                bar.close()
    summary.wall_seconds = time.perf_counter() - start
    snap = stats.snapshot()
    summary.processed = snap.processed
    summary.skipped = dict(snap.skipped)
    summary.stages_ms = {k: v.to_dict() for k, v in snap.stages.items()}
    summary.sync_evicted = dict(sync.evicted)
    if accuracy is not None:
        summary.accuracy = accuracy.result()
    return summary


def _add_transforms(buffer: TransformBuffer, msg: Any, static: bool, stats: PipelineStats) -> None:
    try:
        add_tf_message(buffer, msg, static)
    except ValueError as err:  # a bad transform is reported; lookups that need it fail as NO_TF
        stats.record_skip(SkipReason.NO_TF, f"{'/tf_static' if static else '/tf'}: {err}")


def info_key(camera: str) -> str:
    """The synchronizer input of a camera's CameraInfo."""
    return f"{camera}/camera_info"


def _frame_set(
    done: dict[str, tuple[int, Any]],
    tf: TransformBuffer,
    base_frame: str,
    frame_ids: dict[str, str | None],
    reference: str,
) -> FrameSet:
    cameras = {}
    for name, (stamp, image) in done.items():
        if name.endswith("/camera_info"):
            continue
        frame = frame_ids.get(name) or str(image.header.frame_id).lstrip("/")
        info = done[info_key(name)][1]
        try:
            pose: np.ndarray | None = tf.lookup(base_frame, frame, stamp)
            error = ""
        except TransformError as err:
            pose, error = None, str(err)
        cameras[name] = CameraMessage(name, image, info, pose, error)
    return FrameSet(done[reference][0], cameras, time.monotonic_ns())


def write_metrics(summary: ReplaySummary, path: str | Path) -> None:
    atomic_write_text(path, json.dumps(summary.to_dict(), indent=1))


def write_timings(summary: ReplaySummary, path: str | Path) -> None:
    """Per-frame stage latencies as CSV: ``stamp_ns`` then one ``<stage>_ms`` column per stage (and ``total_ms``)."""
    stamps, series = summary.stamps_and_stages()
    lines = [",".join(["stamp_ns", *(f"{k}_ms" for k in series)])]
    lines += [",".join([str(t), *(f"{series[k][i]:.3f}" for k in series)]) for i, t in enumerate(stamps)]
    atomic_write_text(path, "\n".join(lines) + "\n")
