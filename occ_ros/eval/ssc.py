"""SemanticKITTI semantic scene completion (SSC) metric, as the official evaluation computes it.

Reproduces semantic-kitti-api ``evaluate_completion.py`` + ``auxiliary/np_ioueval.py``:

* voxels are evaluated where ground truth != 255 and not ``invalid``;
* a 20x20 confusion ``conf[pred, gt]`` over learning ids (0 = empty, 1..19 = classes) is summed
  over all frames;
* per-class IoU = tp / (tp + fp + fn + 1e-15) (a class absent from GT and prediction scores 0);
  mIoU = mean over classes 1..19;
* precision = sum(conf[1:, 1:]) / (sum(conf[1:, :]) + eps),
  recall = sum(conf[1:, 1:]) / (sum(conf[:, 1:]) + eps), eps = float32 eps;
* completion IoU = sum(conf[1:, 1:]) / (sum(conf) - conf[0, 0]).

Beyond the official numbers: ``miou_present``, the mean over the classes that occur in the evaluated
ground truth (a few short sequences hold only some of the 19 classes, and the official mean counts every
absent class as 0), and an optional camera-frustum mask (``mask="camera"``: voxels outside
``F.camera_mask`` beside the ground truth, as ``occ gt --from-lidar`` writes it, are not evaluated).

Labels here are *learning* ids (see :mod:`occ_ros.datasets.semantickitti`); convert vocabulary
predictions with :func:`~occ_ros.datasets.semantickitti.vocab_to_learning` first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.datasets.sample import IGNORE_LABEL, LabelFileError
from occ_ros.datasets.semantickitti import (
    LEARNING_CLASS_NAMES,
    NUM_LEARNING_CLASSES,
    SemanticKittiConfig,
    read_voxels,
    remap_completion,
)

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
        per_class: class name (``LEARNING_CLASS_NAMES``, learning ids 1..19 in order) -> IoU.
        samples: number of frames accumulated.
        confusion: (20, 20) int64 ``conf[pred, gt]`` over learning ids.
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


class SSCMetric:
    """Accumulates the official SemanticKITTI SSC confusion matrix over frames.

    ``update`` takes learning ids (any equal shapes, e.g. (256, 256, 32) [x, y, z]);
    ``compute`` returns an :class:`SSCResult`; ``reset`` clears everything.
    """

    num_classes = NUM_LEARNING_CLASSES

    def __init__(self, class_names: Sequence[str] = LEARNING_CLASS_NAMES) -> None:
        if len(class_names) != self.num_classes - 1:
            raise ValueError(f"need {self.num_classes - 1} class names (learning ids 1..19), got {len(class_names)}")
        self.class_names = tuple(class_names)
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.samples = 0

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
        p = pred[mask].astype(np.int64)
        g = gt[mask].astype(np.int64)
        counts = np.bincount(p * self.num_classes + g, minlength=self.num_classes**2)
        self.confusion += counts.reshape(self.num_classes, self.num_classes)
        self.samples += 1

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
        conf = self.confusion.copy()
        tp = np.diag(conf).astype(np.float64)
        fp = conf.sum(axis=1) - tp
        fn = conf.sum(axis=0) - tp
        iou = tp / (tp + fp + fn + IOU_EPSILON)
        occupied_tp = float(conf[1:, 1:].sum())
        precision = occupied_tp / (float(conf[1:, :].sum()) + EPSILON)
        recall = occupied_tp / (float(conf[:, 1:].sum()) + EPSILON)
        union = float(conf.sum() - conf[0, 0])
        completion = occupied_tp / union if union > 0 else math.nan
        present = conf.sum(axis=0)[1:] > 0
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


def _label_stems(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.iterdir() if p.suffix == ".label"}


def _progress(items: list[tuple[Path, Path]], enabled: bool) -> Iterable[tuple[Path, Path]]:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return items
    return tqdm(items, desc="SSC eval", unit="frame")


def evaluate_semantickitti(
    pred_root: str | Path,
    gt_root: str | Path,
    sequences: Sequence[int | str] | None = None,
    progress: bool = True,
    config: SemanticKittiConfig | str | Path | None = None,
    mask: str = "lidar",
) -> SSCResult:
    """Official SSC evaluation over a folder of predictions.

    Pairs every ``GT_ROOT/sequences/NN/voxels/F.label`` (with ``F.invalid`` beside it) with
    ``PRED_ROOT/sequences/NN/predictions/F.label`` (raw uint16 ids, the official submission layout).

    Args:
        sequences: sequence numbers or names (default: every GT sequence with ``voxels/*.label``).
        mask: ``lidar`` (official: every voxel not ``invalid``) or ``camera`` (also only voxels of
            ``F.camera_mask``, the image_2 frustum).
    Raises:
        LabelFileError: listing missing prediction files or prediction files without ground truth,
            or naming a file of the wrong size or with unknown label ids.
    """
    if mask not in ("lidar", "camera"):
        raise ValueError(f"mask must be 'lidar' or 'camera', got {mask!r}")
    pred_root, gt_root = Path(pred_root), Path(gt_root)
    gt_seq_root = gt_root / "sequences"
    if sequences is None:
        if not gt_seq_root.is_dir():
            raise LabelFileError(f"{gt_seq_root}: not found (expected GT_ROOT/sequences/NN/voxels/*.label)")
        names = sorted(
            p.name for p in gt_seq_root.iterdir() if p.is_dir() and p.name.isdigit() and _label_stems(p / "voxels")
        )
    else:
        names = [f"{int(s):02d}" for s in sequences]
    pairs: list[tuple[Path, Path]] = []
    missing: list[str] = []
    extra: list[str] = []
    for name in names:
        gt_dir = gt_seq_root / name / "voxels"
        pred_dir = pred_root / "sequences" / name / "predictions"
        gt_stems = _label_stems(gt_dir)
        if not gt_stems:
            raise LabelFileError(f"{gt_dir}: no ground-truth .label files for sequence {name}")
        pred_stems = _label_stems(pred_dir)
        missing.extend(str(pred_dir / f"{s}.label") for s in sorted(gt_stems - pred_stems))
        extra.extend(str(pred_dir / f"{s}.label") for s in sorted(pred_stems - gt_stems))
        pairs.extend((gt_dir / f"{s}.label", pred_dir / f"{s}.label") for s in sorted(gt_stems))
    if not pairs:
        raise LabelFileError(f"{gt_seq_root}: no sequences with voxels/*.label ground truth")
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing prediction file(s): " + ", ".join(missing[:10]))
    if extra:
        problems.append(f"{len(extra)} prediction file(s) without ground truth: " + ", ".join(extra[:10]))
    if mask == "camera":
        no_mask = [str(g.with_suffix(".camera_mask")) for g, _ in pairs if not g.with_suffix(".camera_mask").is_file()]
        if no_mask:
            problems.append(
                f"{len(no_mask)} ground-truth frame(s) without a camera mask (build them with `occ gt --from-lidar`, "
                "or evaluate with mask 'lidar'): " + ", ".join(no_mask[:10])
            )
    if problems:
        raise LabelFileError("; ".join(problems) + (" ..." if len(missing) > 10 or len(extra) > 10 else ""))

    metric = SSCMetric()
    for gt_path, pred_path in _progress(pairs, progress):
        gt_raw = read_voxels(gt_path, "label")
        invalid = read_voxels(gt_path.with_suffix(".invalid"), "invalid")
        if mask == "camera":
            invalid = invalid | (read_voxels(gt_path.with_suffix(".camera_mask"), "camera_mask") == 0)
        pred_raw = read_voxels(pred_path, "label")
        try:
            metric.update_raw(pred_raw, gt_raw, invalid, config=config)
        except ValueError as err:
            raise LabelFileError(f"{pred_path} (ground truth {gt_path}): {err}") from None
    return metric.compute()


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


__all__ = ["EPSILON", "SSCMetric", "SSCResult", "evaluate_semantickitti", "format_table"]
