"""The pseudo-labelling job: teachers -> (calibrated) depth -> lifted points -> densified Occ3D labels.

:func:`run_labels` walks any :class:`~occ_ros.datasets.sample.DatasetReader` (synthetic world,
nuScenes, SemanticKITTI, rosbag2) scene by scene and writes ``OUT/<scene>/<frame>/labels.npz``
(Occ3D: ``semantics`` + ``mask_camera``, and the dataset's ``grid``), the same relative layout as a
dataset's ``gts/``, so ``occ eval --pred OUT --gt DIR/gts`` scores it and any Occ3D training code reads
it. Datasets with an official prediction format also get that (:meth:`DatasetReader.write_prediction`; SemanticKITTI:
``OUT/sequences/NN/predictions/F.label``, scored by ``occ eval --benchmark semantickitti --pred OUT``).

It is resumable and crash-safe: every label file is written atomically, finished frames are
skipped on a rerun, and ``OUT/labels.json`` records the configuration so a rerun with a different
one is refused instead of mixing two kinds of labels. Under ``torchrun`` (``RANK`` /
``WORLD_SIZE``) every rank takes its own scenes (``sorted(scenes)[rank::world_size]``); the ranks
share nothing but the output folder, so they need no process group and may run on several nodes.

Within a scene, ``workers`` threads run the photometric calibrations (most of a frame's time) a few frames
ahead, and densify each key frame, while the main thread teaches, lifts and writes in frame order (torch and
numpy release the GIL in their kernels). Each calibration is seeded and reads only its own frames, so the
labels are the same for any ``workers``; a failure stops the job after writing the key frames already densified.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from occ_ros.core.config import ConfigError, check_fields, from_mapping, load_yaml_mapping, told_from_file
from occ_ros.core.resources import usable_cpus
from occ_ros.core.rig import CameraRig
from occ_ros.core.transforms import is_rigid
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.datasets.sample import IGNORE_LABEL, LABELS_FILE, DatasetReader, OccupancyLabels, Sample, save_labels
from occ_ros.io.atomic import atomic_write_text
from occ_training.labels.depth_calibration import (
    CalibrationConfig,
    CalibrationFrame,
    ScaleShift,
    fit_scale_shift,
    sequence_targets,
)
from occ_training.labels.lifting import LiftedFrame, LiftingConfig, consistent_depth, densify, lift_frame
from occ_training.teachers.base import DepthMap, DepthTeacher, SegmentationTeacher
from occ_training.teachers.simulated import SimTeacherConfig

MANIFEST = "labels.json"
FORMAT = "occ_ros.pseudo_labels"

Calibration = Literal["frame", "sequence", "none"]


class LabelError(ValueError):
    """The labelling job cannot run on this input (names the sample, file or option)."""


@dataclass(frozen=True)
class LabelConfig:
    """Everything that decides what the labels look like (recorded in ``OUT/labels.json``).

    Attributes:
        lifting: lifting and densification (window, thresholds, free-space rule).
        calibration: how relative depth gets its scale and shift: ``frame`` / ``sequence`` photometric
            calibration, or ``none`` (the naive mapping of :func:`uncalibrated_scale_shift`).
        calibrator: settings of the photometric calibration (its ``mode`` follows ``calibration``).
    """

    lifting: LiftingConfig = field(default_factory=LiftingConfig)
    calibration: Calibration = "frame"
    calibrator: CalibrationConfig = field(default_factory=CalibrationConfig)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.calibration != "none" and self.calibrator.mode != self.calibration:
            object.__setattr__(self, "calibrator", replace(self.calibrator, mode=self.calibration))

    def to_dict(self) -> dict[str, Any]:
        return {"lifting": asdict(self.lifting), "calibration": self.calibration, "calibrator": asdict(self.calibrator)}


def load_label_settings(path: str | Path | None) -> tuple[LabelConfig, SimTeacherConfig]:
    """The label config and the simulated teachers' noise from a YAML file (None: the defaults).

    The file has up to four sections, each overriding the defaults it names::

        lifting: {window: 4, min_support: 4, ...}          # LiftingConfig
        calibration: frame                                  # frame | sequence | none
        calibrator: {neighbours: [-1, 1], max_width: 320}   # CalibrationConfig
        sim: {segmentation: {...}, depth: {...}}            # SimTeacherConfig (the synthetic world)
    """
    if path is None:
        return LabelConfig(), SimTeacherConfig()
    data = load_yaml_mapping(path)
    unknown = sorted(set(data) - {"lifting", "calibration", "calibrator", "sim"})
    if unknown:
        raise ConfigError(f"{path}: unknown sections {unknown}; expected lifting, calibration, calibrator, sim")
    try:
        label = from_mapping(
            LabelConfig,
            {key: data[key] for key in ("lifting", "calibration", "calibrator") if key in data},
            where=str(path),
        )
    except ConfigError as err:  # "labels.yaml: lifting.window must be >= 0, got -1", YAML words as written
        raise told_from_file(err, path) from None
    try:
        sim = from_mapping(SimTeacherConfig, data.get("sim"), where=f"{path}: sim")
    except ConfigError as err:
        if err.key is not None:
            err = ConfigError(str(err), f"sim.{err.key}", err.problem, err.value)
        raise told_from_file(err, path) from None
    return label, sim


def calibration_pixels(labels: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """(H, W) bool: the pixels a photometric depth calibration may fit on, those labelled with a static class
    (not sky or unlabelled, which have no depth, and not a dynamic class, which moves against the ego motion).

    Args:
        labels: (H, W) vocabulary indices, ``IGNORE_LABEL`` where the segmentation gave no class.
    """
    dynamic = vocabulary.dynamic_mask()
    known = labels != IGNORE_LABEL
    return known & ~dynamic[np.where(known, labels, 0)]


def uncalibrated_scale_shift(values: np.ndarray, valid: np.ndarray, min_depth: float, max_depth: float) -> ScaleShift:
    """What a user without calibration would do with a relative map: stretch it over a depth range.

    The 2nd..98th percentile of the map is mapped linearly onto inverse depths ``1/max_depth`` ..
    ``1/min_depth``. This is the "uncalibrated" baseline of docs/results.md.
    """
    v = values[valid]
    lo, hi = np.percentile(v, [2, 98]) if v.size else (0.0, 1.0)
    span = max(float(hi - lo), 1e-9)
    scale = (1.0 / min_depth - 1.0 / max_depth) / span
    return ScaleShift(scale=scale, shift=1.0 / max_depth - scale * float(lo), loss=float("nan"), pixels=int(v.size))


# ---------------------------------------------------------------------------------------- per frame
@dataclass
class _FrameTeaching:
    """What the teachers said about one frame (kept while neighbours still need it)."""

    sample: Sample
    labels: dict[str, np.ndarray]
    confidence: dict[str, np.ndarray]
    depth: dict[str, DepthMap]


def check_sample(sample: Sample) -> None:
    """Raise :class:`LabelError` naming the sample when it has no usable pose or calibration."""
    pose = np.asarray(sample.world_from_ego, dtype=np.float64)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)) or not is_rigid(pose):
        raise LabelError(f"sample {sample.key}: no valid ego pose (world_from_ego must be a rigid 4x4 transform)")
    if len(sample.rig) == 0:
        raise LabelError(f"sample {sample.key}: no camera calibration (empty rig)")


class PseudoLabeller:
    """Turns the samples of one scene into Occ3D-format pseudo-labels.

    Args:
        segmentation: the semantic teacher (its vocabulary is the labels' vocabulary).
        depth: the depth teacher, metric or relative.
        config: lifting, densification and calibration settings.
    """

    def __init__(self, segmentation: SegmentationTeacher, depth: DepthTeacher, config: LabelConfig) -> None:
        self.segmentation = segmentation
        self.depth = depth
        self.config = config
        self.vocabulary = segmentation.vocabulary

    @property
    def reach(self) -> int:
        """How many frames on each side a key frame's labels depend on."""
        lifting = self.config.lifting
        return max(lifting.window, lifting.dynamic_window)

    @property
    def consistency_offsets(self) -> tuple[int, ...]:
        """The frames (offsets) whose depth confirms a frame's before it is lifted (empty: no check)."""
        lifting = self.config.lifting
        return lifting.consistency_neighbours if lifting.consistency_tolerance > 0 else ()

    def teach(self, sample: Sample) -> _FrameTeaching:
        check_sample(sample)
        semantic = self.segmentation.segment(sample)
        depth = self.depth.estimate(sample)
        labels, confidence = {}, {}
        for cam in sample.rig:
            if cam.name not in semantic or cam.name not in depth:
                raise LabelError(f"sample {sample.key}: the teachers gave no answer for camera {cam.name}")
            labels[cam.name], confidence[cam.name] = semantic[cam.name].labels()
            for what, shape in (("segmentation", semantic[cam.name].shape), ("depth", depth[cam.name].shape)):
                if shape != (cam.height, cam.width):
                    raise LabelError(
                        f"sample {sample.key}, camera {cam.name}: {what} is {shape[1]}x{shape[0]}, "
                        f"the image is {cam.width}x{cam.height}"
                    )
        return _FrameTeaching(sample, labels, confidence, depth)

    def calibration_frame(self, taught: _FrameTeaching) -> CalibrationFrame:
        """Images, relative depth and the pixels fit to calibrate on (labelled, static classes)."""
        valid = {
            name: calibration_pixels(lab, self.vocabulary) & taught.depth[name].valid
            for name, lab in taught.labels.items()
        }
        return CalibrationFrame(
            images=taught.sample.images,
            relative={name: d.values for name, d in taught.depth.items()},
            world_from_ego=taught.sample.world_from_ego,
            valid=valid,
        )

    def metric_depth(
        self, taught: _FrameTeaching, scale_shift: Mapping[str, ScaleShift] | None
    ) -> dict[str, np.ndarray]:
        """Camera -> (H, W) metric depth (0 = unknown) from the teacher's map and, if relative, its calibration."""
        lifting = self.config.lifting
        out = {}
        for name, dmap in taught.depth.items():
            if dmap.kind == "metric":
                out[name] = dmap.to_metric(max_depth=lifting.max_depth)
                continue
            if scale_shift is None:
                ss = uncalibrated_scale_shift(dmap.values, dmap.valid, lifting.min_depth, lifting.max_depth)
            else:
                ss = scale_shift[name]
            out[name] = dmap.to_metric(ss.scale, ss.shift, max_depth=lifting.max_depth)
        return out

    def consistent(
        self,
        taught: _FrameTeaching,
        depth: Mapping[str, np.ndarray],
        neighbours: Sequence[tuple[_FrameTeaching, Mapping[str, np.ndarray]]],
    ) -> dict[str, np.ndarray]:
        """``depth`` kept where ``lifting.consistency_views`` of the neighbouring frames' depths confirm it
        (:func:`~occ_training.labels.lifting.consistent_depth`; unchanged when the check is off)."""
        lifting = self.config.lifting
        if lifting.consistency_tolerance <= 0:
            return dict(depth)
        return {
            cam.name: consistent_depth(
                depth[cam.name],
                cam,
                taught.sample.world_from_ego,
                [(d[cam.name], t.sample.world_from_ego) for t, d in neighbours],
                lifting.consistency_tolerance,
                lifting.consistency_views,
            )
            for cam in taught.sample.rig
        }

    def lift(self, taught: _FrameTeaching, depth: Mapping[str, np.ndarray]) -> LiftedFrame:
        """The frame's labelled pixels with metric ``depth`` (camera -> (H, W)) as world-frame points."""
        return lift_frame(
            taught.labels,
            taught.confidence,
            depth,
            taught.sample.rig,
            taught.sample.world_from_ego,
            self.config.lifting,
        )


# ---------------------------------------------------------------------------------------- the job
@dataclass
class LabelSummary:
    """What :func:`run_labels` did."""

    written: int = 0
    skipped: int = 0
    scenes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: scene -> frame -> camera -> scale/shift of every written frame whose relative depth was calibrated.
    calibration: dict[str, dict[str, dict[str, ScaleShift]]] = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else float("nan")


def shard_scenes(scenes: Sequence[str], rank: int, world_size: int) -> list[str]:
    """The scenes of one rank: ``sorted(scenes)[rank::world_size]``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise LabelError(f"shard {rank}/{world_size}: need 0 <= rank < world_size")
    return sorted(scenes)[rank::world_size]


def shard_from_env(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(rank, world size) from torchrun's ``RANK`` / ``WORLD_SIZE`` (default 0, 1)."""
    env = os.environ if environ is None else environ
    try:
        return int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
    except ValueError:
        raise LabelError(f"RANK={env.get('RANK')!r} / WORLD_SIZE={env.get('WORLD_SIZE')!r} are not integers") from None


def default_workers(cores: int | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Label threads of one process: 2 when it has two cores to itself, else 0 (everything in the main thread).

    ``cores``: the CPUs this process may run on (default: its affinity mask); they are shared by torchrun's
    ``LOCAL_WORLD_SIZE`` ranks on the node. One worker is no faster than none (calibration and densification
    then share one thread), and more threads than cores are slower (docs/benchmarks.md).
    """
    env = os.environ if environ is None else environ
    if cores is None:
        cores = usable_cpus()
    try:
        local = max(1, int(env.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        raise LabelError(f"LOCAL_WORLD_SIZE={env.get('LOCAL_WORLD_SIZE')!r} is not an integer") from None
    return 2 if cores // local >= 2 else 0


def calibration_window(position: int, length: int, offsets: Sequence[int]) -> tuple[list[int], int]:
    """The frames a per-frame calibration of ``position`` needs, in time order, and the target's index among them.

    ``fit_scale_shift`` finds a target's sources by frame offset *within the list it is given*, so the
    list is the contiguous run ``position + min(offsets) .. position + max(offsets)`` (clipped to the scene).
    """
    lo = max(0, position + min(0, *offsets))
    hi = min(length - 1, position + max(0, *offsets))
    return list(range(lo, hi + 1)), position - lo


#: Extra arrays of a pseudo-label file (Occ3D readers ignore them): the relative-depth calibration of the
#: frame per camera in rig order, ``1 / depth = scale * relative + shift`` (NaN: not calibrated). Training
#: reads them to turn the depth teacher's relative maps into metric depth targets.
SCALE_KEY, SHIFT_KEY = "depth_scale", "depth_shift"


def calibration_arrays(cameras: Sequence[str], fitted: Mapping[str, ScaleShift] | None) -> dict[str, np.ndarray]:
    """``{depth_scale, depth_shift}`` (N,) float32 in ``cameras`` order; {} without a calibration."""
    if fitted is None:
        return {}
    nan = ScaleShift(math.nan, math.nan, math.nan, 0)
    fits = [fitted.get(name, nan) for name in cameras]
    return {
        SCALE_KEY: np.array([f.scale if f.ok else math.nan for f in fits], dtype=np.float32),
        SHIFT_KEY: np.array([f.shift if f.ok else math.nan for f in fits], dtype=np.float32),
    }


def label_path(out: Path, sample: Sample) -> Path:
    return out / sample.scene / sample.frame / LABELS_FILE


def write_manifest(out: Path, labeller: PseudoLabeller, reader: DatasetReader, teachers: Mapping[str, Any]) -> None:
    """Write ``OUT/labels.json``, or check that an existing one records the same configuration."""
    manifest = {
        "format": FORMAT,
        "config": labeller.config.to_dict(),
        "teachers": dict(teachers),
        "vocabulary": labeller.vocabulary.to_dict(),
    }
    path = out / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise LabelError(f"{path}: unreadable ({err}); remove it or use a new --out") from None
        for key in ("config", "teachers", "vocabulary"):
            if old.get(key) != json.loads(json.dumps(manifest[key])):
                raise LabelError(
                    f"{path}: {out} holds labels made with a different {key} "
                    f"({json.dumps(old.get(key), sort_keys=True)[:200]}...); use a new --out or delete {out}"
                )
        return
    out.mkdir(parents=True, exist_ok=True)
    manifest["dataset"] = {"kind": reader.kind, "scenes": sorted(reader.scenes())}
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def run_labels(
    reader: DatasetReader,
    out: str | Path,
    labeller: PseudoLabeller,
    teachers: Mapping[str, Any] | None = None,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    on_frame: Callable[[Sample, float], None] | None = None,
    workers: int | None = None,
) -> LabelSummary:
    """Write pseudo-labels for every frame of this shard's scenes, skipping finished ones.

    Args:
        reader: any dataset reader (its samples need images, ego poses and the rig).
        out: output folder (``OUT/<scene>/<frame>/labels.npz``, ``OUT/labels.json``, and the dataset's official
            prediction files where it has a format).
        labeller: teachers and configuration.
        teachers: a description of the teachers for the manifest (model paths, noise settings).
        shard: (rank, world size); default from torchrun's environment.
        progress: show a progress bar.
        on_frame: called with (sample, seconds) after each written frame (benchmarks).
        workers: threads that calibrate relative depth ahead of the frame being labelled and densify key
            frames (0: everything in the calling thread, one frame after another; default
            :func:`default_workers`). The labels do not depend on it.
    """
    from tqdm import tqdm

    if workers is None:
        workers = default_workers()
    if workers < 0:
        raise LabelError(f"workers must be >= 0 (0: calibrate in the main thread), got {workers}")
    out = Path(out)
    rank, world = shard if shard is not None else shard_from_env()
    scenes = reader.scenes()
    mine = shard_scenes(list(scenes), rank, world)
    write_manifest(out, labeller, reader, teachers or {})
    summary = LabelSummary(scenes=mine)
    todo: dict[str, list[int]] = {}
    total = 0
    for scene in mine:
        indices = list(scenes[scene])
        pending = [p for p, i in enumerate(indices) if not label_path(out, reader.load(i, images=False)).exists()]
        summary.skipped += len(indices) - len(pending)
        todo[scene] = pending
        total += len(pending)
    start = time.perf_counter()
    bar = tqdm(total=total, desc=f"labels [{rank}/{world}]", unit="frame", disable=not progress)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="occ-labels") if workers > 0 else None
    try:
        for scene in mine:
            if todo[scene]:
                _label_scene(
                    reader, list(scenes[scene]), todo[scene], out, labeller, summary, bar, on_frame, pool, workers
                )
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _label_scene(
    reader: DatasetReader,
    indices: list[int],
    pending: list[int],
    out: Path,
    labeller: PseudoLabeller,
    summary: LabelSummary,
    bar: Any,
    on_frame: Callable[[Sample, float], None] | None,
    pool: Executor | None,
    ahead: int,
) -> None:
    """Label the ``pending`` positions of one scene (``indices``: the scene's dataset indices in order).

    ``pool``: where per-frame calibrations run, ``ahead`` frames beyond what the key frame needs, and where key
    frames are densified, one while the next is lifted (None: all in this thread, when a frame needs it).
    """
    config = labeller.config
    reach = labeller.reach
    relative = labeller.depth.kind == "relative" and config.calibration != "none"
    offsets = config.calibrator.neighbours if relative else ()
    taught: dict[int, _FrameTeaching] = {}
    calibration_frames: dict[int, CalibrationFrame] = {}
    calibrations: dict[int, dict[str, ScaleShift] | None] = {}
    metric: dict[int, dict[str, np.ndarray]] = {}
    lifted: dict[int, LiftedFrame] = {}
    running: dict[int, Future[dict[str, ScaleShift]]] = {}
    sequence_calibration: dict[str, ScaleShift] | None = None
    # how far a key frame's labels reach: its window, and each window frame's consistency neighbours
    back = max((abs(o) for o in labeller.consistency_offsets), default=0)

    def teach(p: int) -> _FrameTeaching:
        if p not in taught:
            # teachers' depth and semantics are lifted with the rig's pinhole K: undistorted pixels
            taught[p] = labeller.teach(reader.load(indices[p], images=True).undistorted())
        return taught[p]

    def calibration_frame(p: int) -> CalibrationFrame:
        if p not in calibration_frames:
            calibration_frames[p] = labeller.calibration_frame(teach(p))
        return calibration_frames[p]

    if relative and config.calibration == "sequence":
        frames = [calibration_frame(p) for p in range(len(indices))]
        targets = sequence_targets(len(indices), config.calibrator.sequence_targets)
        sequence_calibration = fit_scale_shift(frames, targets, teach(0).sample.rig, config.calibrator)

    def per_frame_calibration(p: int) -> tuple[list[CalibrationFrame], list[int], CameraRig]:
        near, target = calibration_window(p, len(indices), offsets)
        return [calibration_frame(q) for q in near], [target], teach(p).sample.rig

    def start_calibration(p: int) -> None:
        """Calibrate position ``p`` in the pool (its frames are taught here first)."""
        if pool is None or not relative or sequence_calibration is not None or p in running or p in metric:
            return
        running[p] = pool.submit(fit_scale_shift, *per_frame_calibration(p), config.calibrator)

    def calibrate(p: int) -> dict[str, ScaleShift] | None:
        if not relative:
            return None
        if sequence_calibration is not None:
            return sequence_calibration
        if p in running:
            return running.pop(p).result()
        return fit_scale_shift(*per_frame_calibration(p), config.calibrator)

    def metric_depth(p: int) -> dict[str, np.ndarray]:
        if p not in metric:
            calibrations[p] = calibrate(p)
            metric[p] = labeller.metric_depth(teach(p), calibrations[p])
        return metric[p]

    def lift(p: int) -> LiftedFrame:
        if p not in lifted:
            near = [p + o for o in labeller.consistency_offsets if 0 <= p + o < len(indices)]
            depth = labeller.consistent(teach(p), metric_depth(p), [(teach(q), metric_depth(q)) for q in near])
            lifted[p] = labeller.lift(teach(p), depth)
        return lifted[p]

    # key frames being densified in the pool, oldest first: (key, its calibration, start time, the labels' future)
    densifying: deque[tuple[Sample, dict[str, ScaleShift] | None, float, Future[OccupancyLabels]]] = deque()

    def write(key: Sample, fitted: dict[str, ScaleShift] | None, t0: float, labels: OccupancyLabels) -> None:
        """Write one key frame's labels (and its calibration) and report it."""
        # The dataset's official prediction format first (SemanticKITTI: sequences/NN/predictions/F.label),
        # then labels.npz, whose presence marks the frame done.
        reader.write_prediction(out, key, labels.semantics)
        save_labels(
            label_path(out, key),
            OccupancyLabels(labels.semantics, mask_camera=labels.mask_camera, grid=key.grid),
            calibration_arrays(key.rig.names, fitted),
        )
        if fitted is not None:
            summary.calibration.setdefault(key.scene, {})[key.frame] = dict(fitted)
        summary.written += 1
        bar.update(1)
        if on_frame is not None:
            on_frame(key, time.perf_counter() - t0)

    def write_oldest() -> None:
        key, fitted, t0, job = densifying.popleft()
        write(key, fitted, t0, job.result())

    try:
        for p in pending:
            t0 = time.perf_counter()
            # what this key frame needs, and the next frames' calibrations to keep the pool busy meanwhile
            for q in range(max(0, p - reach - back), min(len(indices), p + reach + back + ahead + 1)):
                start_calibration(q)
            window = range(max(0, p - reach), min(len(indices), p + reach + 1))
            try:
                frames = {q: lift(q) for q in window}
            except BaseException:
                while densifying:  # the key frames densified before the failure are kept
                    write_oldest()
                raise
            key = taught[p].sample
            args = (p, frames, key.rig, key.grid, labeller.vocabulary, config.lifting)
            if pool is None:
                write(key, calibrations[p], t0, densify(*args))
            else:  # the key frame is densified in the pool while this thread lifts the next one
                densifying.append((key, calibrations[p], t0, pool.submit(densify, *args)))
                if len(densifying) > 1:
                    write_oldest()
            # Forget what no later key frame needs (lifting a frame reads its consistency neighbours' depth, and
            # calibrating one reads its calibration neighbours).
            keep_from = p + 1 - reach - back - max((abs(o) for o in offsets), default=0)
            for q in [q for q in running if q < keep_from]:
                running.pop(q).cancel()
            caches: tuple[dict[int, Any], ...] = (taught, calibration_frames, calibrations, metric, lifted)
            for cache in caches:
                for q in [q for q in cache if q < keep_from]:
                    del cache[q]
        while densifying:
            write_oldest()
    finally:  # an error, or frames ahead that no pending key frame needed
        for future in [*running.values(), *(job for *_, job in densifying)]:
            future.cancel()
