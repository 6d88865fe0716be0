"""Monocular depth metrics (Eigen et al. 2014) in torchmetrics' update/compute/reset/merge shape.

Evaluated pixels: ground truth ``gt > 0`` (0 = no surface / no measurement), prediction ``pred > 0``
(0 = the model gives no answer there), both finite, inside the optional ``mask`` and, when given,
with ``min_depth <= gt <= max_depth``. The prediction is *not* clipped into that range (some
benchmarks clip it; say so where you compare against them).

* AbsRel = mean(|pred - gt| / gt), SqRel = mean((pred - gt)^2 / gt), RMSE = sqrt(mean((pred - gt)^2)) (metres);
* delta_k = fraction of pixels with max(pred / gt, gt / pred) < 1.25^k, k = 1, 2, 3.

Every pixel of every frame weighs the same (the metrics are accumulated as sums over pixels, not
averaged per image: the sum-states of :class:`~occ_ros.eval.metric.Metric`), so :meth:`DepthMetric.merge` of
two halves equals one pass over all frames (up to float summation order).
With no evaluated pixel every score is NaN (``to_dict`` writes None), as an empty class is in
:mod:`occ_ros.eval.occ3d`; nothing raises, so a frame without ground truth cannot stop an evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from occ_ros.core.rig import Camera

from .metric import Metric, nan_to_none

DELTA_BASE = 1.25


@dataclass(frozen=True)
class DepthResult:
    """The outcome of :meth:`DepthMetric.compute` (NaN everywhere when ``pixels == 0``).

    Attributes:
        abs_rel: mean |pred - gt| / gt.
        sq_rel: mean (pred - gt)^2 / gt, metres.
        rmse: sqrt(mean (pred - gt)^2), metres.
        delta1, delta2, delta3: fractions (0..1) of pixels with max(pred/gt, gt/pred) < 1.25, 1.25^2, 1.25^3.
        pixels: number of pixels evaluated.
        samples: number of ``update`` calls (images).
    """

    abs_rel: float
    sq_rel: float
    rmse: float
    delta1: float
    delta2: float
    delta3: float
    pixels: int
    samples: int

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-friendly: every score (NaN -> None), pixels and samples."""
        return {
            "abs_rel": nan_to_none(self.abs_rel),
            "sq_rel": nan_to_none(self.sq_rel),
            "rmse": nan_to_none(self.rmse),
            "delta1": nan_to_none(self.delta1),
            "delta2": nan_to_none(self.delta2),
            "delta3": nan_to_none(self.delta3),
            "pixels": self.pixels,
            "samples": self.samples,
        }


class DepthMetric(Metric[DepthResult]):
    """Accumulates depth errors image by image.

    States: ``pixels``, ``samples`` (int), ``abs_rel_sum``, ``sq_rel_sum``, ``sq_err_sum`` (float) and
    ``delta_counts`` ((3,) int64, pixels below 1.25, 1.25^2, 1.25^3).

    Args:
        min_depth, max_depth: evaluate only pixels whose ground truth lies in ``[min_depth, max_depth]``
            metres (defaults: every positive depth).
    """

    pixels: int
    samples: int
    abs_rel_sum: float
    sq_rel_sum: float
    sq_err_sum: float
    delta_counts: np.ndarray

    def __init__(self, min_depth: float = 0.0, max_depth: float = math.inf) -> None:
        if not (min_depth >= 0 and max_depth > min_depth):
            raise ValueError(f"need 0 <= min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}")
        super().__init__()
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.add_state("pixels", 0)
        self.add_state("samples", 0)
        self.add_state("abs_rel_sum", 0.0)
        self.add_state("sq_rel_sum", 0.0)
        self.add_state("sq_err_sum", 0.0)
        self.add_state("delta_counts", np.zeros(3, dtype=np.int64))

    def update(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add one image.

        Args:
            pred: (H, W) predicted depth, metres (<= 0 or non-finite = no prediction, not evaluated).
            gt: (H, W) ground-truth depth, metres (0 = no ground truth).
            mask: optional (H, W) bool, pixels to evaluate.
        Raises:
            ValueError: shape mismatch.
        """
        pred = np.asarray(pred, dtype=np.float64)
        gt = np.asarray(gt, dtype=np.float64)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
        keep = np.isfinite(gt) & np.isfinite(pred) & (gt > 0) & (pred > 0)
        keep &= (gt >= self.min_depth) & (gt <= self.max_depth)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != gt.shape:
                raise ValueError(f"mask shape {mask.shape} differs from ground truth {gt.shape}")
            keep &= mask.astype(bool, copy=False)
        p, g = pred[keep], gt[keep]
        diff = p - g
        ratio = np.maximum(p / g, g / p)
        self.abs_rel_sum += float(np.sum(np.abs(diff) / g))
        self.sq_rel_sum += float(np.sum(diff * diff / g))
        self.sq_err_sum += float(np.sum(diff * diff))
        self.delta_counts += np.array([np.count_nonzero(ratio < DELTA_BASE**k) for k in (1, 2, 3)], dtype=np.int64)
        self.pixels += int(p.size)
        self.samples += 1

    def _check_mergeable(self, other: DepthMetric) -> None:
        if (other.min_depth, other.max_depth) != (self.min_depth, self.max_depth):
            raise ValueError("can only merge depth metrics with the same min_depth / max_depth")

    def compute(self) -> DepthResult:
        """The metrics over every pixel accumulated so far (NaN scores when there is none)."""
        n = self.pixels
        if n == 0:
            nan = math.nan
            return DepthResult(nan, nan, nan, nan, nan, nan, pixels=0, samples=self.samples)
        d1, d2, d3 = (float(c) / n for c in self.delta_counts)
        return DepthResult(
            abs_rel=self.abs_rel_sum / n,
            sq_rel=self.sq_rel_sum / n,
            rmse=math.sqrt(self.sq_err_sum / n),
            delta1=d1,
            delta2=d2,
            delta3=d3,
            pixels=n,
            samples=self.samples,
        )


def lidar_depth_image(points_velo: np.ndarray, camera: Camera) -> np.ndarray:
    """(H, W) float32 camera depth of the LiDAR points that project into the image (0 = no point; the nearest
    point where several share a pixel), through :meth:`Camera.project` (the reader's CAM2: ego = Velodyne).

    Args:
        points_velo: (N, 3+) points in the Velodyne frame.
    """
    uv, depth = camera.project(np.asarray(points_velo, dtype=np.float64)[:, :3])
    keep = (depth > 1e-6) & camera.in_image(uv)
    px = np.floor(uv[keep] + 0.5).astype(np.int64)  # pixel centres at integers
    order = np.argsort(-depth[keep])  # far first, so the nearest point of a pixel is written last
    image = np.zeros((camera.height, camera.width), dtype=np.float32)
    image[px[order, 1], px[order, 0]] = depth[keep][order]
    return image
