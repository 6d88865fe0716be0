"""RayIoU (SparseOcc, arXiv 2312.17118), on the CPU.

Voxel mIoU punishes a surface predicted one voxel too deep as both a false positive and a
false negative, and rewards thick predictions. RayIoU instead casts LiDAR-like query rays
through prediction and ground truth and scores what each ray hits first:

* Rays: SparseOcc's fixed pattern (:func:`lidar_ray_directions`): 360 azimuths at 1 degree
  times the pitch angles ``-(pi/2 - atan(k))`` for k = 1..10, continued with the last step
  up to 0.21 rad (nuScenes' LiDAR field of view): 39 x 360 = 14,040 directions.
* Origins: the LiDAR positions of the frames of the same sequence, expressed in the current
  ego frame (the frame's own origin is the LiDAR position exactly as given), kept when inside
  the grid's x/y range less a 1 m margin (39 m for Occ3D), at most 8 of them
  picked evenly (:func:`rayiou_origins`, as SparseOcc's ``EgoPoseDataset``).
* Each ray starts in the voxel ``floor(origin)`` (voxel units, as SparseOcc's DVR kernel, even for an
  origin on a face that the ray points away from) and stops at the first non-free voxel; its depth is the
  distance at which it *leaves* that voxel (as the DVR kernel reports it: 0 when it leaves the origin's
  own occupied voxel through the face the origin lies on) and its class is that voxel's label.
  Rays that hit nothing get the free label.
* Only rays whose ground-truth ray hits something are scored. A ray is a true positive for
  class c at threshold t when both hit class c and ``|depth_pred - depth_gt| < t``.
  IoU_c,t = TP / (GT_c + Pred_c - TP), accumulated over the whole evaluation set: the metric keeps one
  confusion matrix of the scored rays' classes (gt rows x pred columns, :mod:`occ_ros.eval.metric`; GT_c and
  Pred_c are its row and column sums) and, per threshold, the depth-gated diagonal ``tp_count``;
  RayIoU@t = nanmean over the non-free classes; RayIoU = nanmean over classes and thresholds
  (1, 2 and 4 m).

The traversal is the exact DDA of :mod:`occ_ros.core.raycast` (float64), so results can differ
from SparseOcc's float32 CUDA kernel only for rays grazing voxel edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.raycast import first_hit
from occ_ros.core.vocabulary import OCC3D, Vocabulary

from .metric import ConfusionMetric, iou_per_class, nan_to_none, nanmean, percent

DEFAULT_THRESHOLDS = (1.0, 2.0, 4.0)
#: nuScenes LIDAR_TOP position in the ego frame (metres); origin of the query rays when no
#: per-dataset value is given.
NUSCENES_LIDAR_IN_EGO = (0.985793, 0.0, 1.84019)


def lidar_ray_directions() -> np.ndarray:
    """SparseOcc's query-ray pattern: (14040, 3) float64 unit directions in the ego frame.

    Pitch angles: ``-(pi/2 - atan(k))`` for k = 1..10, then extended with the last spacing
    while below 0.21 rad; azimuths 0..359 degrees. Rows are ordered pitch-major.
    """
    pitch = [-(math.pi / 2 - math.atan(k + 1)) for k in range(10)]
    while pitch[-1] < 0.21:
        pitch.append(pitch[-1] + (pitch[-1] - pitch[-2]))
    p = np.asarray(pitch)[:, None]
    a = np.deg2rad(np.arange(0, 360, 1, dtype=np.float64))[None, :]
    dirs = np.stack(
        [np.cos(p) * np.cos(a), np.cos(p) * np.sin(a), np.broadcast_to(np.sin(p), (p.shape[0], a.shape[1]))], axis=-1
    )
    return dirs.reshape(-1, 3)


def rayiou_origins(
    world_from_ego: np.ndarray,
    index: int,
    lidar_in_ego: np.ndarray | tuple[float, float, float],
    grid: GridSpec,
    max_origins: int = 8,
    margin: float = 1.0,
) -> np.ndarray:
    """Query-ray origins for frame ``index`` of a sequence, in that frame's ego frame.

    Args:
        world_from_ego: (T, 4, 4) ego poses of every frame of the sequence, time order.
        index: the frame being evaluated.
        lidar_in_ego: (3,) LiDAR (ray origin) position in the ego frame, metres.
        grid: the evaluation grid; origins must lie within its x/y range shrunk by ``margin``.
        max_origins: keep at most this many, picked evenly over time (``round(linspace)``).
    Returns:
        (K, 3) float64 origins, 1 <= K <= max_origins (the current frame's LiDAR is always inside
        for a sensible grid).
    """
    poses = np.asarray(world_from_ego, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"world_from_ego must be (T, 4, 4), got {poses.shape}")
    lidar = np.append(np.asarray(lidar_in_ego, dtype=np.float64), 1.0)
    ref_from_world = np.linalg.inv(poses[index])
    pts = np.einsum("ij,tjk,k->ti", ref_from_world, poses, lidar)[:, :3]
    # The frame's own origin is the LiDAR position as given (SparseOcc: ego_from_lidar @ 0), not its
    # round trip through inv(P) @ P, which can move an origin on a voxel face to the other side of it.
    pts[index] = lidar[:3]
    lo = np.asarray(grid.range_min[:2]) + margin
    hi = np.asarray(grid.range_max[:2]) - margin
    keep = np.all((pts[:, :2] > lo) & (pts[:, :2] < hi), axis=1)
    origins = pts[keep]
    if origins.shape[0] == 0:
        raise ValueError(f"frame {index}: its LiDAR position {pts[index].round(3).tolist()} lies outside the grid")
    if origins.shape[0] > max_origins:
        pick = np.round(np.linspace(0, origins.shape[0] - 1, max_origins)).astype(np.int64)
        origins = origins[pick]
    return origins


def cast_labels(
    grid: GridSpec,
    labels: np.ndarray,
    origins: np.ndarray,
    directions: np.ndarray,
    free_index: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Class and depth of the first non-free voxel along every (origin, direction) ray.

    Args:
        grid: the label grid.
        labels: (X, Y, Z) integer labels.
        origins: (T, 3) ray origins, metres, ego frame.
        directions: (N, 3) unit directions.
        free_index: the free label.
    Returns:
        label: (T*N,) int64 class of the voxel hit, ``free_index`` where nothing is hit.
        depth: (T*N,) float64 metres from the origin to where the ray leaves the voxel hit;
            ``inf`` where nothing is hit. Rows are origin-major.
    """
    origins = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    dirs = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    o = np.repeat(origins, dirs.shape[0], axis=0)
    d = np.tile(dirs, (origins.shape[0], 1))
    occupied = np.asarray(labels) != free_index
    _, voxel, hit = first_hit(grid, o, d, occupied, floor_start=True)
    label = np.full(o.shape[0], free_index, dtype=np.int64)
    depth = np.full(o.shape[0], np.inf)
    h = np.flatnonzero(hit)
    if h.size:
        vox = voxel[h]
        label[h] = np.asarray(labels)[vox[:, 0], vox[:, 1], vox[:, 2]]
        lo = np.asarray(grid.range_min)
        size = np.asarray(grid.voxel_size)
        dh = d[h]
        face = lo + (vox + (dh > 0)) * size  # the face the ray leaves through, per axis
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(dh != 0, (face - o[h]) / dh, np.inf)
        depth[h] = t.min(axis=1)
    return label, depth


@dataclass(frozen=True)
class RayIoUResult:
    """Outcome of :meth:`RayIoUMetric.compute` (percent, 2 decimals; NaN when undefined).

    Attributes:
        rayiou: mean over classes and thresholds.
        per_threshold: threshold (m) -> RayIoU at that threshold.
        per_class: class name -> IoU per threshold (None where undefined), non-free classes.
        samples: frames accumulated.
    """

    rayiou: float
    per_threshold: dict[float, float]
    per_class: dict[str, list[float | None]]
    samples: int

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"rayiou": nan_to_none(self.rayiou)}
        for t, v in self.per_threshold.items():
            out[f"rayiou@{t:g}"] = nan_to_none(v)
        out["per_class"] = {k: list(v) for k, v in self.per_class.items()}
        out["samples"] = self.samples
        return out

    def format_table(self) -> str:
        ths = list(self.per_threshold)
        width = max(len(n) for n in [*self.per_class, "RayIoU"])
        head = f"{'class':<{width}}" + "".join(f"  @{t:g} m".rjust(9) for t in ths)
        lines = [f"RayIoU ({self.samples} samples)", head, "-" * len(head)]
        for name, values in self.per_class.items():
            lines.append(f"{name:<{width}}" + "".join("      n/a" if v is None else f"{v:9.2f}" for v in values))
        lines.append("-" * len(head))
        lines.append(f"{'mean':<{width}}" + "".join(f"{v:9.2f}" for v in self.per_threshold.values()))
        lines.append(f"{'RayIoU':<{width}}{self.rayiou:9.2f}")
        return "\n".join(lines)


class RayIoUMetric(ConfusionMetric[RayIoUResult]):
    """Accumulates RayIoU counts frame by frame (update/compute/reset/merge, like torchmetrics).

    States: ``confusion`` ((C, C) int64, gt rows x pred columns, over the scored rays), ``tp_count``
    ((len(thresholds), C) int64, rays of the diagonal whose depth error is below each threshold), ``samples``.

    Args:
        grid: the label grid (ego frame).
        vocabulary: label vocabulary; its free class ends rays and is not scored.
        thresholds: depth tolerances in metres.
        directions: (N, 3) query directions; SparseOcc's 14,040 by default.
    """

    tp_count: np.ndarray

    def __init__(
        self,
        grid: GridSpec,
        vocabulary: Vocabulary = OCC3D,
        thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
        directions: np.ndarray | None = None,
    ) -> None:
        super().__init__(len(vocabulary))
        self.grid = grid
        self.vocabulary = vocabulary
        self.thresholds = tuple(float(t) for t in thresholds)
        self.directions = lidar_ray_directions() if directions is None else np.asarray(directions, dtype=np.float64)
        self.add_state("tp_count", np.zeros((len(self.thresholds), self.num_classes), dtype=np.int64))

    @property
    def gt_count(self) -> np.ndarray:
        """(C,) int64 scored rays per ground-truth class (the confusion's row sums)."""
        return self.confusion.sum(axis=1)

    @property
    def pred_count(self) -> np.ndarray:
        """(C,) int64 scored rays per predicted class (the confusion's column sums)."""
        return self.confusion.sum(axis=0)

    def update(self, pred: np.ndarray, gt: np.ndarray, origins: np.ndarray) -> None:
        """Add one frame: (X, Y, Z) prediction and ground truth, (T, 3) origins in its ego frame."""
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape or gt.shape != self.grid.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must both be {self.grid.shape}")
        free = self.vocabulary.free_index
        gl, gd = cast_labels(self.grid, gt, origins, self.directions, free)
        pl, pd = cast_labels(self.grid, pred, origins, self.directions, free)
        valid = gl != free
        gl, gd, pl, pd = gl[valid], gd[valid], pl[valid], pd[valid]
        self._accumulate(pl, gl)
        same = gl == pl
        with np.errstate(invalid="ignore"):
            err = np.abs(pd - gd)
        for j, t in enumerate(self.thresholds):
            self.tp_count[j] += np.bincount(gl[same & (err < t)], minlength=self.num_classes)
        self.samples += 1

    def _check_mergeable(self, other: RayIoUMetric) -> None:
        if other.thresholds != self.thresholds or other.num_classes != self.num_classes:
            raise ValueError("can only merge RayIoU metrics with the same thresholds and vocabulary")

    def iou(self) -> np.ndarray:
        """(len(thresholds), C-1) IoU fractions of the non-free classes (NaN where undefined)."""
        free = self.vocabulary.free_index
        keep = [c for c in range(self.num_classes) if c != free]
        return iou_per_class(self.confusion, tp=self.tp_count)[:, keep]

    def compute(self) -> RayIoUResult:
        iou = self.iou()
        names = [n for i, n in enumerate(self.vocabulary.names) if i != self.vocabulary.free_index]

        return RayIoUResult(
            rayiou=percent(nanmean(iou)),
            per_threshold={t: percent(nanmean(iou[j])) for j, t in enumerate(self.thresholds)},
            per_class={n: [nan_to_none(percent(v)) for v in iou[:, i]] for i, n in enumerate(names)},
            samples=self.samples,
        )
