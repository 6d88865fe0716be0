"""Semantic voxel ground truth from labelled LiDAR scans (SemanticKITTI layout). Evaluation only.

Training never reads LiDAR: this module exists to *score* camera-only occupancy on real KITTI data
that has labelled scans but no official SSC voxels (e.g. ``shared/fixtures/kitti_mini``).

For every frame t of a sequence, in frame t's Velodyne frame, on the SemanticKITTI grid
(:data:`~occ_ros.datasets.semantickitti.SEMANTICKITTI_GRID`: 256 x 256 x 32 voxels of 0.2 m over
x [0, 51.2), y [-25.6, 25.6), z [-2, 4.4) m, arrays indexed [x, y, z]):

* **accumulate** the labelled scans k of the sequence (all frames, or ``|k - t| <= window``):
  ``velo_t <- velo_k = inv(Tr4) @ inv(Pose_t) @ Pose_k @ Tr4`` (= ``inv(W_t) @ W_k`` with the reader's
  ``world_from_ego`` W); raw ids -> learning ids (0..19) through ``learning_map``;
* **moving objects** (raw 252..259) come from frame t's own scan only (no smear);
* **occupied** voxels hold >= 1 point; their class is the majority learning class of their points,
  class 0 (unlabeled / outlier / other-structure / other-object) ignored in the vote unless the voxel
  has nothing else; ties go to the lower learning id;
* **free** voxels are crossed by a LiDAR ray (sensor origin of scan k in frame t -> each point of
  scan k) strictly before the voxel of its endpoint, and are not occupied; the traversal is the
  project's one exact DDA (:func:`occ_ros.core.raycast.carve`);
* **unknown** voxels (neither) are written as ``invalid`` (not scored);
* the **camera mask** holds the voxels whose centre projects into image_2 with positive depth
  (P2 and Tr, the reader's CAM2).

Output (official SemanticKITTI voxel formats, :func:`~occ_ros.datasets.semantickitti.write_voxels`),
``OUT/sequences/NN/voxels/F.*``:

* ``F.label``: uint16 raw ids; free = 0; occupied = ``learning_map_inv[class]`` (car 10, road 40, ...),
  or :data:`UNLABELED_OCCUPIED_RAW` (1, "outlier": learning 0, ignored by the SSC metric) when only
  class-0 points fell in the voxel; unknown = 0 with ``invalid`` set;
* ``F.invalid``: bit-packed, 1 = unknown (with ``camera_only``: also outside the camera mask);
* ``F.camera_mask``: bit-packed like ``.invalid``, 1 = inside the camera frustum;
* ``F.bin``: bit-packed, the voxels holding a point of frame t's own scan (the official ``.bin`` is
  the voxelised input scan);
* ``OUT/sequences/NN/lidar_gt.json``: the parameters used (a rerun with other parameters refuses to
  mix them into the same folder).

``SemanticKittiReader(DATA, every="labels", gt_root=OUT)`` and ``occ eval --benchmark semantickitti
--gt OUT`` read these files. Every file is written atomically and ``.label`` last, so a frame is
complete when its ``.label`` exists; finished frames are skipped on a rerun (resume).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.raycast import carve
from occ_ros.core.rig import Camera
from occ_ros.datasets.sample import LabelFileError
from occ_ros.datasets.semantickitti import (
    MOVING_RAW_IDS,
    NUM_LEARNING_CLASSES,
    SEMANTICKITTI_GRID,
    VOXEL_SHAPE,
    SemanticKittiConfig,
    SemanticKittiReader,
    check_scan_pair,
    load_semantickitti_config,
    pack_bits,
    read_scan,
    read_scan_labels,
)
from occ_ros.io.atomic import atomic_write_bytes, atomic_write_text

__all__ = [
    "UNLABELED_OCCUPIED_RAW",
    "FrameGt",
    "LidarGtParams",
    "LidarGtReport",
    "Scan",
    "accumulate_frame",
    "build_lidar_gt",
    "camera_frustum_mask",
    "learning_lut",
    "load_scan",
]

#: Raw id written for occupied voxels whose points all have learning class 0 (SemanticKITTI "outlier").
UNLABELED_OCCUPIED_RAW = 1
#: Written beside the voxels of each sequence: the parameters the ground truth was built with.
PARAMS_FILE = "lidar_gt.json"
#: Files of one finished frame, ``.label`` last (its presence marks the frame as done).
FRAME_SUFFIXES = (".bin", ".invalid", ".camera_mask", ".label")


# ---------------------------------------------------------------------------------------------- scans
@dataclass(frozen=True)
class Scan:
    """One labelled LiDAR scan in its own Velodyne frame.

    Attributes:
        points: (N, 3) float64 x, y, z, metres, Velodyne frame of its frame.
        learning: (N,) uint8 learning ids 0..19 (``learning_map`` of the raw semantic ids).
        moving: (N,) bool, raw id in 252..259 (moving objects).
    """

    points: np.ndarray
    learning: np.ndarray
    moving: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.points)
        if np.shape(self.points) != (n, 3) or np.shape(self.learning) != (n,) or np.shape(self.moving) != (n,):
            raise ValueError(
                f"Scan: points {np.shape(self.points)}, learning {np.shape(self.learning)} and moving "
                f"{np.shape(self.moving)} must be (N, 3), (N,) and (N,)"
            )


def learning_lut(config: SemanticKittiConfig | str | Path | None = None) -> np.ndarray:
    """Raw semantic id -> learning id table (int16, -1 for raw ids ``learning_map`` does not know).

    Unlike :func:`~occ_ros.datasets.semantickitti.completion_lut` this is the plain ``learning_map``
    (raw 1 / 52 / 99 -> 0), as for per-point labels.
    """
    cfg = load_semantickitti_config(config)
    lut = np.full(max(cfg.learning_map) + 1, -1, dtype=np.int16)
    lut[list(cfg.learning_map)] = list(cfg.learning_map.values())
    return lut


def load_scan(
    scan_path: str | Path, label_path: str | Path, config: SemanticKittiConfig | str | Path | None = None
) -> Scan:
    """Read ``velodyne/F.bin`` and ``labels/F.label`` into a :class:`Scan`.

    Raises:
        LabelFileError: naming the file when one is missing, their lengths differ, or a raw id is unknown.
    """
    pts = read_scan(scan_path)
    labels = read_scan_labels(label_path, num_points=len(pts), scan=scan_path)
    raw = (labels & 0xFFFF).astype(np.int64)
    lut = learning_lut(config)
    learning = lut[np.clip(raw, 0, lut.size - 1)]
    bad = (raw >= lut.size) | (learning < 0)
    if bad.any():
        unknown = np.unique(raw[bad]).tolist()
        raise LabelFileError(f"{label_path}: unknown SemanticKITTI raw label ids {unknown[:20]} (not in learning_map)")
    moving = (raw >= MOVING_RAW_IDS.start) & (raw < MOVING_RAW_IDS.stop)
    return Scan(pts[:, :3].astype(np.float64), learning.astype(np.uint8), moving)


# ---------------------------------------------------------------------------------------------- one frame
@dataclass(frozen=True)
class FrameGt:
    """Ground truth of one frame, (X, Y, Z) arrays indexed [x, y, z] on the grid (frame t's Velodyne frame).

    Attributes:
        learning: uint8 learning ids: 0 = free, 1..19 = occupied class, 255 = unknown or occupied by
            class-0 points only.
        occupied: bool, >= 1 accumulated point in the voxel.
        free: bool, crossed by a ray before its endpoint voxel and not occupied.
        scan_occupied: bool, >= 1 point of frame t's own scan (the official ``.bin``).
        stats: counts (points, rays, occupied, free, unknown voxels) and seconds.
    """

    learning: np.ndarray
    occupied: np.ndarray
    free: np.ndarray
    scan_occupied: np.ndarray
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def unknown(self) -> np.ndarray:
        """bool, neither occupied nor free (written as invalid)."""
        return ~(self.occupied | self.free)

    def raw_labels(self, config: SemanticKittiConfig | str | Path | None = None) -> np.ndarray:
        """uint16 raw ids for a ``.label`` file: free/unknown 0, occupied ``learning_map_inv[class]``
        (or :data:`UNLABELED_OCCUPIED_RAW` for class-0-only voxels)."""
        cfg = load_semantickitti_config(config)
        to_raw = np.zeros(256, dtype=np.uint16)
        for learning_id in range(1, NUM_LEARNING_CLASSES):
            to_raw[learning_id] = cfg.learning_map_inv[learning_id]
        raw = to_raw[self.learning]
        raw[self.occupied & (self.learning == 255)] = UNLABELED_OCCUPIED_RAW
        raw[~self.occupied] = 0
        return raw


def _vote(flat: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority class per voxel.

    Args:
        flat: (M,) int64 flat voxel index of each point.
        classes: (M,) uint8 learning id of each point.
    Returns:
        voxels: (V,) int64 distinct flat indices; winner: (V,) uint8 majority class, class 0 only where
        the voxel has no other class, ties to the lower id.
    """
    key = flat * NUM_LEARNING_CLASSES + classes.astype(np.int64)
    uniq, counts = np.unique(key, return_counts=True)
    vox, cls = uniq // NUM_LEARNING_CLASSES, uniq % NUM_LEARNING_CLASSES
    order = np.lexsort((-cls, counts, cls > 0, vox))  # last per voxel = max (non-zero, count, -class)
    vox, cls = vox[order], cls[order]
    last = np.flatnonzero(np.append(vox[1:] != vox[:-1], True))
    return vox[last], cls[last].astype(np.uint8)


def accumulate_frame(
    scans: Sequence[Scan],
    world_from_velo: np.ndarray,
    t: int,
    grid: GridSpec = SEMANTICKITTI_GRID,
    max_rays: int | None = None,
    rng: np.random.Generator | None = None,
) -> FrameGt:
    """Semantic occupancy of frame ``t`` from the scans of a window of frames.

    Args:
        scans: K scans, each in its own Velodyne frame.
        world_from_velo: (K, 4, 4) pose of each scan's Velodyne frame in one fixed frame (the reader's
            ``world_from_ego`` = inv(Tr4) @ Pose_k @ Tr4); velo_t <- velo_k = inv(W_t) @ W_k.
        t: index (into ``scans``) of the frame whose Velodyne frame the grid lives in.
        grid: the voxel grid, in frame t's Velodyne frame.
        max_rays: trace at most this many rays (a uniform random subset; None: every point's ray).
            Occupancy always uses every point.
        rng: random generator for that subset (default: seeded with 0).
    Returns:
        the frame's :class:`FrameGt`.
    """
    start = time.perf_counter()
    poses = np.asarray(world_from_velo, dtype=np.float64)
    if poses.shape != (len(scans), 4, 4):
        raise ValueError(f"world_from_velo has shape {poses.shape}, expected ({len(scans)}, 4, 4)")
    if not 0 <= t < len(scans):
        raise ValueError(f"frame index t={t} out of range 0..{len(scans) - 1}")
    t_from_world = np.linalg.inv(poses[t])
    ends, origins, flats, classes = [], [], [], []
    scan_flat = np.zeros(0, dtype=np.int64)
    for k, scan in enumerate(scans):
        # Frame t's own scan is used as is (exact: no round trip through the pose inverse).
        t_from_k = np.eye(4) if k == t else t_from_world @ poses[k]
        pts = scan.points if k == t else scan.points @ t_from_k[:3, :3].T + t_from_k[:3, 3]
        ends.append(pts)
        origins.append(np.broadcast_to(t_from_k[:3, 3], pts.shape))
        keep = np.ones(len(pts), dtype=bool) if k == t else ~scan.moving
        idx, inside = grid.points_to_indices(pts)
        sel = keep & inside
        flat = grid.flat_index(idx[sel])
        flats.append(flat)
        classes.append(scan.learning[sel])
        if k == t:
            scan_flat = flat
    n = grid.num_voxels
    occupied = np.zeros(n, dtype=bool)
    learning = np.full(n, 255, dtype=np.uint8)
    all_flat = np.concatenate(flats) if flats else np.zeros(0, dtype=np.int64)
    if all_flat.size:
        vox, winner = _vote(all_flat, np.concatenate(classes))
        occupied[vox] = True
        learning[vox] = np.where(winner > 0, winner, 255)
    scan_occupied = np.zeros(n, dtype=bool)
    scan_occupied[scan_flat] = True

    ray_ends = np.concatenate(ends) if ends else np.zeros((0, 3))
    ray_origins = np.concatenate(origins) if origins else np.zeros((0, 3))
    n_points = len(ray_ends)
    if max_rays is not None and n_points > max_rays:
        rng = rng if rng is not None else np.random.default_rng(0)
        pick = np.sort(rng.choice(n_points, size=max_rays, replace=False))
        ray_ends, ray_origins = ray_ends[pick], ray_origins[pick]
    carved, _ = carve(grid, ray_origins, ray_ends)
    free = carved.reshape(-1) & ~occupied
    learning[free] = 0
    shape = grid.shape
    stats = {
        "points": float(n_points),
        "points_in_grid": float(all_flat.size),
        "rays": float(len(ray_ends)),
        "occupied": float(occupied.sum()),
        "free": float(free.sum()),
        "unknown": float(n - occupied.sum() - free.sum()),
        "seconds": time.perf_counter() - start,
    }
    return FrameGt(
        learning.reshape(shape), occupied.reshape(shape), free.reshape(shape), scan_occupied.reshape(shape), stats
    )


def camera_frustum_mask(camera: Camera, grid: GridSpec = SEMANTICKITTI_GRID) -> np.ndarray:
    """(X, Y, Z) bool: voxel centres in front of ``camera`` (depth > 0) that project inside its image.

    ``camera.cam_from_ego`` maps the grid's frame (the Velodyne frame) to the optical frame; for KITTI
    CAM2, ``K @ cam_from_ego = P2 @ Tr4``.
    """
    # = camera.project of every voxel centre, written out per axis (separable: ~20x faster on 2 M centres).
    axes = [
        lo + (np.arange(n) + 0.5) * size
        for lo, n, size in zip(grid.range_min, grid.shape, grid.voxel_size, strict=True)
    ]
    x, y, z = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    M = camera.cam_from_ego
    cam = [M[r, 0] * x + M[r, 1] * y + M[r, 2] * z + M[r, 3] for r in range(3)]  # optical x, y, z: (X, Y, Z)
    depth = cam[2]
    front = depth > 0
    K = camera.K
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(front, (K[0, 0] * cam[0] + K[0, 1] * cam[1] + K[0, 2] * depth) / depth, -1.0)
        v = np.where(front, (K[1, 1] * cam[1] + K[1, 2] * depth) / depth, -1.0)
    uv = np.stack([u.reshape(-1), v.reshape(-1)], axis=1)
    return front & camera.in_image(uv).reshape(grid.shape)


# ---------------------------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class LidarGtParams:
    """What the ground truth of a sequence was built with (``OUT/sequences/NN/lidar_gt.json``)."""

    window: int | None = None
    max_rays: int | None = None
    seed: int = 0
    camera_only: bool = False
    moving_from_frame_only: bool = True
    version: int = 1


@dataclass
class LidarGtReport:
    """Summary of a :func:`build_lidar_gt` run."""

    written: int = 0
    skipped: int = 0
    seconds: float = 0.0
    frames: dict[str, dict[str, float]] = field(default_factory=dict)  # "NN/FFFFFF" -> stats of written frames

    @property
    def seconds_per_frame(self) -> float:
        return self.seconds / self.written if self.written else 0.0


def _frame_done(voxel_dir: Path, frame: str) -> bool:
    return all((voxel_dir / f"{frame}{suffix}").is_file() for suffix in FRAME_SUFFIXES)


def _check_params(seq_out: Path, params: LidarGtParams) -> None:
    """Refuse to mix parameters or to overwrite voxel files that ``occ gt`` did not write."""
    path = seq_out / PARAMS_FILE
    wanted = asdict(params)
    if path.is_file():
        try:
            have = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: unreadable ({err}); remove it or choose another output") from None
        if have != wanted:
            raise ValueError(
                f"{path}: this sequence's ground truth was built with {have}, not {wanted}; "
                "use the same options to resume, or another output folder"
            )
    elif any((seq_out / "voxels").glob("*.label")):
        raise ValueError(
            f"{seq_out / 'voxels'}: holds .label files that `occ gt` did not write (no {PARAMS_FILE}); "
            "refusing to overwrite them: choose another output folder"
        )


def build_lidar_gt(
    data: str | Path,
    out: str | Path,
    sequences: Sequence[int | str] | None = None,
    frames: Sequence[int] | None = None,
    window: int | None = None,
    max_rays: int | None = None,
    camera_only: bool = False,
    seed: int = 0,
    config: SemanticKittiConfig | str | Path | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    log: Callable[[str], None] | None = None,
) -> LidarGtReport:
    """Build LiDAR ground truth for every frame (with an image) of the selected sequences.

    Args:
        data: SemanticKITTI-layout root (``sequences/NN/{image_2, calib.txt, poses.txt, times.txt,
            velodyne, labels}``).
        out: output root; files go to ``OUT/sequences/NN/voxels/`` (see the module docstring). May be
            ``data`` itself when it has no official voxels.
        sequences: sequence numbers or names (default: every sequence of ``data``).
        frames: frame numbers to build in each sequence (default: all; the accumulation still uses
            the scans of the whole sequence / window).
        window: accumulate scans k with ``|k - t| <= window`` (default None: the whole sequence).
        max_rays: trace at most this many rays per frame (random subset, seeded by ``seed`` and the frame).
        camera_only: also mark voxels outside the camera frustum invalid (so ``occ eval`` scores the
            camera's view only).
        progress: wraps the frame iterable (e.g. tqdm); log: receives one line per sequence.
    Raises:
        LabelFileError / ValueError / FileNotFoundError: naming the file, before any frame is built, for
        a missing or short scan / label file, calibration without Tr, pose counts not matching the images.
    """
    if window is not None and window < 0:
        raise ValueError(f"window must be >= 0 frames or None, got {window}")
    if max_rays is not None and max_rays < 1:
        raise ValueError(f"max_rays must be >= 1 or None, got {max_rays}")
    data, out = Path(data), Path(out)
    cfg = load_semantickitti_config(config)
    reader = SemanticKittiReader(data, sequences=sequences, every="all", config=cfg, load_gt=False)
    params = LidarGtParams(window=window, max_rays=max_rays, seed=seed, camera_only=camera_only)

    # Validate everything cheap first (file presence and sizes), so odd input fails before long work.
    plan: list[tuple[str, Path, list[int], list[int], np.ndarray, Camera]] = []
    for name, indices in reader.scenes().items():
        samples = [reader.load(i, images=False) for i in indices]
        numbers = [int(s.frame) for s in samples]
        seq_dir = data / "sequences" / name
        wanted = [i for i, f in enumerate(numbers) if frames is None or f in frames]
        if frames is not None and len(wanted) != len(set(frames)):
            absent = sorted(set(frames) - set(numbers))
            raise ValueError(f"{seq_dir / 'image_2'}: no frames {absent[:10]} (sequence {name} has {len(numbers)})")
        for number in numbers:
            check_scan_pair(seq_dir / "velodyne" / f"{number:06d}.bin", seq_dir / "labels" / f"{number:06d}.label")
        poses = np.stack([s.world_from_ego for s in samples])
        plan.append((name, seq_dir, numbers, wanted, poses, samples[0].rig[0]))
        _check_params(out / "sequences" / name, params)

    report = LidarGtReport()
    for name, seq_dir, numbers, wanted, poses, camera in plan:
        seq_out = out / "sequences" / name
        voxel_dir = seq_out / "voxels"
        todo = [i for i in wanted if not _frame_done(voxel_dir, f"{numbers[i]:06d}")]
        report.skipped += len(wanted) - len(todo)
        if not todo:
            continue
        atomic_write_text(seq_out / PARAMS_FILE, json.dumps(asdict(params), indent=2) + "\n")
        frustum = camera_frustum_mask(camera)
        frustum_bytes = pack_bits(frustum).tobytes()
        cache: dict[int, Scan] = {}
        seq_start = time.perf_counter()
        iterable: Iterable[int] = progress(todo) if progress is not None else todo
        for t in iterable:
            lo, hi = (0, len(numbers)) if window is None else (max(0, t - window), min(len(numbers), t + window + 1))
            for k in [k for k in cache if not lo <= k < hi]:
                del cache[k]  # frames leave the window in order: memory stays bounded by the window
            for k in range(lo, hi):
                if k not in cache:
                    f = f"{numbers[k]:06d}"
                    cache[k] = load_scan(seq_dir / "velodyne" / f"{f}.bin", seq_dir / "labels" / f"{f}.label", cfg)
            rng = np.random.default_rng([seed, int(name), numbers[t]])
            gt = accumulate_frame([cache[k] for k in range(lo, hi)], poses[lo:hi], t - lo, max_rays=max_rays, rng=rng)
            invalid = gt.unknown
            if camera_only:
                invalid = invalid | ~frustum
            frame = f"{numbers[t]:06d}"
            atomic_write_bytes(voxel_dir / f"{frame}.bin", pack_bits(gt.scan_occupied).tobytes())
            atomic_write_bytes(voxel_dir / f"{frame}.invalid", pack_bits(invalid).tobytes())
            atomic_write_bytes(voxel_dir / f"{frame}.camera_mask", frustum_bytes)
            raw = gt.raw_labels(cfg)
            assert raw.shape == VOXEL_SHAPE
            atomic_write_bytes(voxel_dir / f"{frame}.label", raw.astype("<u2").tobytes())
            stats = dict(gt.stats)
            stats["in_camera_mask"] = float((frustum & ~gt.unknown).sum())
            report.frames[f"{name}/{frame}"] = stats
            report.written += 1
        seconds = time.perf_counter() - seq_start
        report.seconds += seconds
        if log is not None:
            log(f"  {name}: {len(todo)} frames in {seconds:.1f} s ({seconds / len(todo):.2f} s/frame) -> {voxel_dir}")
    return report
