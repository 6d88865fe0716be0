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

The metric is a :class:`~occ_ros.eval.metric.ConfusionMetric` (torchmetrics' shape): :meth:`Occ3DMetric.update`
per frame, :meth:`compute` at the end, :meth:`reset` to start over; :meth:`merge` / ``state_dict`` combine
workers or shards (states ``confusion`` and ``samples``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from occ_ros.core.vocabulary import OCC3D, Vocabulary

from .metric import ConfusionMetric, binary_confusion, confusion_matrix, iou_per_class, nan_to_none, nanmean, percent

MASKS = ("camera", "lidar", "none")


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU = diag / (row + col - diag); NaN where the class is in neither GT nor prediction."""
    return iou_per_class(conf)


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


class Occ3DMetric(ConfusionMetric[Occ3DResult]):
    """Accumulates the global confusion matrix (state ``confusion``, gt rows x pred columns) frame by frame.

    Args:
        vocabulary: label vocabulary (default Occ3D's 18 classes); its last class is free.
        mask: which visibility mask restricts the evaluation: ``camera``, ``lidar`` or ``none``.
    """

    def __init__(self, vocabulary: Vocabulary = OCC3D, mask: str = "camera") -> None:
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {mask!r}")
        super().__init__(len(vocabulary))
        self.vocabulary = vocabulary
        self.mask = mask

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
        valid = None
        if self.mask != "none":
            if selected is None:
                raise ValueError(f"mask={self.mask!r} needs mask_{self.mask} for every ground-truth frame")
            selected = np.asarray(selected)
            if selected.shape != gt.shape:
                raise ValueError(f"mask_{self.mask} shape {selected.shape} differs from ground truth {gt.shape}")
            valid = selected.astype(bool, copy=False)
        self._accumulate(pred, gt, valid)
        self.samples += 1

    def _check_mergeable(self, other: Occ3DMetric) -> None:
        if other.num_classes != self.num_classes or other.mask != self.mask:
            raise ValueError("can only merge Occ3D metrics with the same vocabulary and mask")

    def compute(self) -> Occ3DResult:
        """mIoU, geometric IoU and per-class IoU of everything accumulated so far."""
        iou = self.iou_per_class()
        free = self.vocabulary.free_index
        semantic: Sequence[int] = [c for c in range(self.num_classes) if c != free]
        sem_iou = iou[list(semantic)]
        miou = percent(nanmean(sem_iou))
        geometry = binary_confusion(self.confusion, list(semantic))  # [free, occupied] x [free, occupied]
        tp, fp, fn = int(geometry[1, 1]), int(geometry[0, 1]), int(geometry[1, 0])
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


__all__ = [
    "MASKS",
    "Occ3DMetric",
    "Occ3DResult",
    "confusion_matrix",
    "iou_from_confusion",
    "nan_to_none",
    "nanmean",
    "percent",
]
