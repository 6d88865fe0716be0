"""SemanticKITTI semantic scene completion (SSC) metric, as the official evaluation computes it.

Reproduces semantic-kitti-api ``evaluate_completion.py`` + ``auxiliary/np_ioueval.py``:

* voxels are evaluated where ground truth != 255 and not ``invalid``;
* a 20x20 confusion matrix over learning ids (0 = empty, 1..19 = classes) is summed over all frames;
  it is ``conf[gt, pred]`` (ground truth rows, prediction columns, as every metric of
  :mod:`occ_ros.eval.metric`); the official code stores its transpose ``conf[pred, gt]``;
* per-class IoU = tp / (tp + fp + fn + 1e-15) (a class absent from GT and prediction scores 0);
  mIoU = mean over classes 1..19;
* with ``conf[gt, pred]``: precision = sum(conf[1:, 1:]) / (sum(conf[:, 1:]) + eps) (predicted occupied),
  recall = sum(conf[1:, 1:]) / (sum(conf[1:, :]) + eps) (occupied in the ground truth), eps = float32 eps;
* completion IoU = sum(conf[1:, 1:]) / (sum(conf) - conf[0, 0]).

Beyond the official numbers: ``miou_present``, the mean over the classes that occur in the evaluated
ground truth (a few short sequences hold only some of the 19 classes, and the official mean counts every
absent class as 0), and an optional camera-frustum mask (``mask="camera"``: voxels outside
``F.camera_mask`` beside the ground truth, as ``occ gt --from-lidar`` writes it, are not evaluated).

Labels here are *learning* ids (see :mod:`occ_ros.core.semantickitti_labels`); convert vocabulary
predictions with :func:`~occ_ros.datasets.semantickitti.vocab_to_learning` first. The metric imports no
dataset reader: the label maps live in :mod:`occ_ros.core.semantickitti_labels`, and the folder driver that
reads voxel files is :func:`occ_ros.eval.runner.evaluate_semantickitti`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.core.semantickitti_labels import (
    NUM_LEARNING_CLASSES,
    OFFICIAL_CLASS_NAMES,
    SemanticKittiConfig,
    remap_completion,
)
from occ_ros.core.vocabulary import IGNORE_LABEL

from .metric import ConfusionMetric, binary_confusion

#: Epsilon of the official precision / recall.
EPSILON = float(np.finfo(np.float32).eps)
#: Epsilon of the official IoU denominators (np_ioueval.py).
IOU_EPSILON = 1e-15


@dataclass(frozen=True)
class SSCResult:
    """SSC scores as fractions (0..1); :meth:`to_dict` gives percent like the official print.

    Attributes:
        iou_completion: geometric completion IoU (occupied vs empty).
        miou: mean semantic IoU over learning classes 1..19 (official).
        miou_present: mean over the classes with ground-truth voxels in the evaluated set (NaN if none).
        precision, recall: completion precision / recall.
        per_class: class name (``OFFICIAL_CLASS_NAMES``, learning ids 1..19 in order: ``other-ground``, the keys of
            the official ``scores.txt`` less its ``iou_`` prefix) -> IoU.
        samples: number of frames accumulated.
        confusion: (20, 20) int64 ``conf[gt, pred]`` over learning ids (ground-truth rows, prediction columns,
            like every result of :mod:`occ_ros.eval.metric`; the official code prints its transpose).
    """

    iou_completion: float
    miou: float
    miou_present: float
    precision: float
    recall: float
    per_class: dict[str, float]
    samples: int
    present: tuple[str, ...] = ()
    confusion: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros((0, 0), np.int64))

    def to_dict(self) -> dict[str, Any]:
        """Scores in percent rounded to 2 decimals (``np.round(x * 100, 2)``), plus ``samples``."""

        def pct(x: float) -> float:
            return float(np.round(x * 100, 2))

        return {
            "iou_completion": pct(self.iou_completion),
            "miou": pct(self.miou),
            "miou_present": pct(self.miou_present),
            "present": list(self.present),
            "precision": pct(self.precision),
            "recall": pct(self.recall),
            "per_class": {name: pct(v) for name, v in self.per_class.items()},
            "samples": self.samples,
        }


def _integer_array(name: str, value: np.ndarray) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr


class SSCMetric(ConfusionMetric[SSCResult]):
    """Accumulates the official SemanticKITTI SSC confusion matrix over frames.

    ``update`` takes learning ids (any equal shapes, e.g. (256, 256, 32) [x, y, z]);
    ``compute`` returns an :class:`SSCResult`; ``reset`` clears everything; ``merge`` / ``state_dict``
    combine workers or shards. States: ``confusion`` ((20, 20) int64, gt rows x pred columns), ``samples``.

    Args:
        class_names: names of learning ids 1..19, the keys of ``per_class`` and ``present`` (default
            :data:`~occ_ros.core.semantickitti_labels.OFFICIAL_CLASS_NAMES`, the official hyphenated names).
    """

    num_classes = NUM_LEARNING_CLASSES

    def __init__(self, class_names: Sequence[str] = OFFICIAL_CLASS_NAMES) -> None:
        if len(class_names) != NUM_LEARNING_CLASSES - 1:
            raise ValueError(
                f"need {NUM_LEARNING_CLASSES - 1} class names (learning ids 1..19), got {len(class_names)}"
            )
        super().__init__(NUM_LEARNING_CLASSES, ignore_index=IGNORE_LABEL)
        self.class_names = tuple(class_names)

    def update(self, pred_learning: np.ndarray, gt_learning: np.ndarray, invalid: np.ndarray | None = None) -> None:
        """Add one frame.

        Args:
            pred_learning: predicted learning ids, each in 0..19.
            gt_learning: ground-truth learning ids 0..19, or 255 (ignored); same shape.
            invalid: optional 0/1 (or bool) mask, same shape; voxels equal to 1 are ignored.
        Raises:
            ValueError: on shape mismatch, non-integer labels, or labels out of range.
        """
        pred = _integer_array("prediction", pred_learning)
        gt = _integer_array("ground truth", gt_learning)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
        mask = gt != IGNORE_LABEL
        if invalid is not None:
            inv = np.asarray(invalid)
            if inv.shape != gt.shape:
                raise ValueError(f"invalid mask shape {inv.shape} != ground truth shape {gt.shape}")
            mask &= inv != 1
        if pred.size:
            if int(pred.min()) < 0 or int(pred.max()) >= self.num_classes:
                bad = np.unique(pred[(pred < 0) | (pred >= self.num_classes)]).tolist()
                raise ValueError(f"prediction values must be learning ids 0..{self.num_classes - 1}, found {bad[:20]}")
            out_of_range = mask & ((gt < 0) | (gt >= self.num_classes))
            if out_of_range.any():
                bad = np.unique(gt[out_of_range]).tolist()
                raise ValueError(
                    f"ground-truth values must be learning ids 0..{self.num_classes - 1} or 255, found {bad[:20]}"
                )
        self._accumulate(pred, gt, mask, check=False)
        self.samples += 1

    def _check_mergeable(self, other: SSCMetric) -> None:
        if other.class_names != self.class_names:
            raise ValueError("can only merge SSC metrics with the same class names")

    def update_raw(
        self,
        pred_raw: np.ndarray,
        gt_raw: np.ndarray,
        invalid: np.ndarray | None = None,
        config: SemanticKittiConfig | str | Path | None = None,
    ) -> None:
        """Add one frame of raw SemanticKITTI ids (uint16, as in ``.label`` files).

        Both are remapped with the official completion table (as ``evaluate_completion.py``).
        An evaluated voxel whose predicted raw id remaps to 255 (e.g. 52 other-structure) is
        rejected with ValueError, as the official script fails on it too.
        """
        pred = remap_completion(_integer_array("prediction", pred_raw), config)
        gt = remap_completion(_integer_array("ground truth", gt_raw), config)
        if pred.shape == gt.shape:
            unevaluable = (pred == IGNORE_LABEL) & (gt != IGNORE_LABEL)
            if invalid is not None and np.shape(invalid) == gt.shape:
                unevaluable &= np.asarray(invalid) != 1
            if unevaluable.any():
                bad = np.unique(np.asarray(pred_raw)[unevaluable]).tolist()
                raise ValueError(f"prediction raw ids {bad[:20]} are not evaluated classes (they remap to 255)")
            pred[pred == IGNORE_LABEL] = 0  # only outside the evaluation mask: never counted
        self.update(pred, gt, invalid)

    def compute(self) -> SSCResult:
        """Scores over everything accumulated since the last :meth:`reset`."""
        conf = self.confusion.copy()  # gt rows x pred columns
        tp = np.diag(conf).astype(np.float64)
        fp = conf.sum(axis=0) - tp
        fn = conf.sum(axis=1) - tp
        iou = tp / (tp + fp + fn + IOU_EPSILON)
        occupied = binary_confusion(conf, list(range(1, self.num_classes)))  # [empty, occupied] squared
        occupied_tp = float(occupied[1, 1])
        precision = occupied_tp / (float(occupied[:, 1].sum()) + EPSILON)
        recall = occupied_tp / (float(occupied[1, :].sum()) + EPSILON)
        union = float(conf.sum() - conf[0, 0])
        completion = occupied_tp / union if union > 0 else math.nan
        present = conf.sum(axis=1)[1:] > 0
        return SSCResult(
            iou_completion=completion,
            miou=float(iou[1:].mean()),
            miou_present=float(iou[1:][present].mean()) if present.any() else math.nan,
            present=tuple(name for name, p in zip(self.class_names, present, strict=True) if p),
            precision=precision,
            recall=recall,
            per_class={name: float(v) for name, v in zip(self.class_names, iou[1:], strict=True)},
            samples=self.samples,
            confusion=conf,
        )


def format_table(result: SSCResult) -> str:
    """A plain-text table: per-class IoU then mIoU, completion IoU, precision, recall (percent)."""
    rows = [(name, value) for name, value in result.per_class.items()]
    summary = [
        ("mIoU (SSC)", result.miou),
        (f"mIoU ({len(result.present)} present)", result.miou_present),
        ("IoU (completion)", result.iou_completion),
        ("precision", result.precision),
        ("recall", result.recall),
    ]
    width = max(len(name) for name, _ in rows + summary)
    lines = [f"{'class':<{width}}  {'IoU %':>7}", "-" * (width + 9)]
    lines += [f"{name:<{width}}  {value * 100:7.2f}" for name, value in rows]
    lines.append("-" * (width + 9))
    lines += [f"{name:<{width}}  {value * 100:7.2f}" for name, value in summary]
    lines.append(f"({result.samples} frames)")
    return "\n".join(lines)


__all__ = ["EPSILON", "SSCMetric", "SSCResult", "format_table"]
