"""Occ3D-nuScenes semantic occupancy metric (mIoU, per-class IoU, geometric IoU).

Computed exactly as the official Occ3D / CVPR 2023 occupancy challenge code (``Metric_mIoU``):

* one global C x C confusion matrix over all samples, ground truth as rows and prediction as
  columns, restricted to the chosen visibility mask (``camera`` by default, ``lidar``, or ``none``
  for the full-scene evaluation EasyOcc reports);
* per-class IoU = diag / (row + col - diag): NaN when a class is absent from both ground truth
  and prediction, 0 when it is predicted but absent from the ground truth;
* mIoU = nanmean of the IoU over the non-free classes (0..16 for Occ3D), x100, rounded to 2
  decimals.

Geometric IoU treats every non-free class as "occupied": TP / (TP + FP + FN) over the same voxels.

The metric follows torchmetrics' shape: :meth:`Occ3DMetric.update` per frame, :meth:`compute`
at the end, :meth:`reset` to start over; :meth:`merge` adds another metric's state (workers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from occ_ros.core.vocabulary import OCC3D, Vocabulary

MASKS = ("camera", "lidar", "none")


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts of (gt row, pred column) pairs.

    Args:
        gt, pred: integer label arrays of the same shape, values in ``0..num_classes-1``.
    """
    g = np.asarray(gt).reshape(-1).astype(np.int64)
    p = np.asarray(pred).reshape(-1).astype(np.int64)
    return np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU = diag / (row + col - diag); NaN where the class is in neither GT nor prediction."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(axis=1) + conf.sum(axis=0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / union


@dataclass(frozen=True)
class Occ3DResult:
    """The outcome of :meth:`Occ3DMetric.compute`.

    Attributes:
        miou: mean IoU over the non-free classes, percent, 2 decimals (NaN if no class is present).
        iou: geometric (occupied vs free) IoU, percent, 2 decimals.
        per_class: class name -> IoU percent (2 decimals) or None (absent from GT and prediction),
            for the non-free classes in vocabulary order.
        mask: ``camera``, ``lidar`` or ``none``.
        samples: number of frames accumulated.
        confusion: (C, C) int64 global confusion matrix (GT rows, prediction columns).
    """

    miou: float
    iou: float
    per_class: dict[str, float | None]
    mask: str
    samples: int
    confusion: np.ndarray

    def to_dict(self) -> dict[str, object]:
        """The ``occ eval --json`` document: miou, iou, per_class, mask, samples (NaN -> None)."""
        return {
            "miou": nan_to_none(self.miou),
            "iou": nan_to_none(self.iou),
            "per_class": dict(self.per_class),
            "mask": self.mask,
            "samples": self.samples,
        }

    def format_table(self, title: str = "Occ3D") -> str:
        """A plain-text per-class table for the terminal."""
        width = max([len(n) for n in self.per_class] + [len("geometric IoU")])
        lines = [f"{title} ({self.samples} samples, mask={self.mask})", f"{'class':<{width}}  IoU (%)"]
        lines.append("-" * (width + 9))
        for name, value in self.per_class.items():
            lines.append(f"{name:<{width}}  {'n/a' if value is None else f'{value:7.2f}'}")
        lines.append("-" * (width + 9))
        lines.append(f"{'mIoU':<{width}}  {_fmt(self.miou)}")
        lines.append(f"{'geometric IoU':<{width}}  {_fmt(self.iou)}")
        return "\n".join(lines)


def _fmt(value: float) -> str:
    return "    n/a" if math.isnan(value) else f"{value:7.2f}"


def nan_to_none(value: float) -> float | None:
    """JSON-friendly score: NaN (undefined) becomes None."""
    return None if math.isnan(value) else float(value)


def nanmean(values: np.ndarray) -> float:
    """Mean ignoring NaN; NaN (without a warning) when every value is NaN."""
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else math.nan


def percent(fraction: float) -> float:
    """A score fraction as percent rounded to 2 decimals, as the official scripts print it (NaN stays NaN)."""
    return math.nan if math.isnan(fraction) else float(np.round(fraction * 100, 2))


class Occ3DMetric:
    """Accumulates the global confusion matrix frame by frame.

    Args:
        vocabulary: label vocabulary (default Occ3D's 18 classes); its last class is free.
        mask: which visibility mask restricts the evaluation: ``camera``, ``lidar`` or ``none``.
    """

    def __init__(self, vocabulary: Vocabulary = OCC3D, mask: str = "camera") -> None:
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {mask!r}")
        self.vocabulary = vocabulary
        self.mask = mask
        self.num_classes = len(vocabulary)
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.samples = 0

    def update(
        self,
        pred: np.ndarray,
        gt: np.ndarray,
        mask_camera: np.ndarray | None = None,
        mask_lidar: np.ndarray | None = None,
    ) -> None:
        """Add one frame.

        Args:
            pred: (X, Y, Z) integer labels in ``0..C-1``.
            gt: (X, Y, Z) integer labels in ``0..C-1``.
            mask_camera, mask_lidar: (X, Y, Z) bool/uint8 visibility masks of the ground truth; the one
                selected by ``mask`` is required.
        Raises:
            ValueError: shape mismatch, labels outside ``0..C-1``, or the selected mask missing.
        """
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
        selected = {"camera": mask_camera, "lidar": mask_lidar, "none": None}[self.mask]
        if self.mask != "none":
            if selected is None:
                raise ValueError(f"mask={self.mask!r} needs mask_{self.mask} for every ground-truth frame")
            selected = np.asarray(selected)
            if selected.shape != gt.shape:
                raise ValueError(f"mask_{self.mask} shape {selected.shape} differs from ground truth {gt.shape}")
            sel = selected.astype(bool, copy=False)
            gt, pred = gt[sel], pred[sel]
        for name, arr in (("prediction", pred), ("ground truth", gt)):
            if arr.size and (int(arr.max()) >= self.num_classes or int(arr.min()) < 0):
                raise ValueError(
                    f"{name} labels must lie in 0..{self.num_classes - 1}, got {int(arr.min())}..{int(arr.max())}"
                )
        self.confusion += confusion_matrix(gt, pred, self.num_classes)
        self.samples += 1

    def merge(self, other: Occ3DMetric) -> None:
        """Add the state of another metric with the same vocabulary and mask (e.g. from a worker)."""
        if other.num_classes != self.num_classes or other.mask != self.mask:
            raise ValueError("can only merge Occ3D metrics with the same vocabulary and mask")
        self.confusion += other.confusion
        self.samples += other.samples

    def compute(self) -> Occ3DResult:
        """mIoU, geometric IoU and per-class IoU of everything accumulated so far."""
        iou = iou_from_confusion(self.confusion)
        free = self.vocabulary.free_index
        semantic: Sequence[int] = [c for c in range(self.num_classes) if c != free]
        sem_iou = iou[list(semantic)]
        miou = percent(nanmean(sem_iou))
        occ = np.ones(self.num_classes, dtype=bool)
        occ[free] = False
        tp = int(self.confusion[np.ix_(occ, occ)].sum())
        fp = int(self.confusion[free, occ].sum())
        fn = int(self.confusion[occ, free].sum())
        geo = float(np.round(100.0 * tp / (tp + fp + fn), 2)) if tp + fp + fn else math.nan
        names = self.vocabulary.names
        per_class = {names[c]: nan_to_none(percent(v)) for c, v in zip(semantic, sem_iou, strict=True)}
        return Occ3DResult(
            miou=miou,
            iou=geo,
            per_class=per_class,
            mask=self.mask,
            samples=self.samples,
            confusion=self.confusion.copy(),
        )
