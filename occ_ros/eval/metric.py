"""The metric core every evaluation metric is built on: declared sum-states and one confusion matrix.

:class:`Metric` is a small numpy version of ``torchmetrics.Metric``. A metric declares its states in
``__init__`` with :meth:`Metric.add_state` (a numpy array, or an int / float scalar); every state is a
*sum*, so two metrics that saw different data combine by adding their states. The base class gives,
for every metric alike:

* :meth:`~Metric.reset` -- every state back to its default;
* :meth:`~Metric.merge` -- add another metric's states (a worker process, a shard of the data set);
* :meth:`~Metric.state_dict` / :meth:`~Metric.merge_state` / :meth:`~Metric.load_state_dict` -- the states as a
  plain ``{name: np.ndarray}`` dict, for sharded and DDP evaluation: each rank exports its states, the dicts
  are summed element-wise (:func:`sum_states`, or ``torch.distributed.all_reduce(SUM)`` on each array),
  and one metric loads the sum and computes.

Subclasses implement ``update(...)`` (add one frame) and ``compute()`` (scores from the states only), so
``merge`` of two halves of the data equals one metric over all of it.

Confusion matrices have ONE orientation everywhere, as sklearn and torchmetrics: **ground truth rows x
prediction columns**, ``conf[g, p]`` = number of elements of class ``g`` predicted as ``p``. Row sums are the
ground-truth counts, column sums the prediction counts. :func:`confusion_matrix`, :func:`iou_per_class`,
:func:`precision_per_class`, :func:`recall_per_class` and :func:`binary_confusion` are the shared helpers;
:class:`ConfusionMetric` is the base of every IoU metric (Occ3D mIoU and geometric IoU, RayIoU per depth
threshold, SemanticKITTI SSC semantic and completion IoU), :class:`ConfusionMatrix` the plain metric.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

import numpy as np

#: A state: an array (int or float dtype), or a Python int / float.
State = np.ndarray | int | float
ResultT = TypeVar("ResultT")


class Metric(ABC, Generic[ResultT]):
    """Base of the evaluation metrics: declared sum-states, ``reset``, ``merge`` and state export.

    Subclasses call ``super().__init__()``, declare their states with :meth:`add_state`, and implement
    :meth:`update` and :meth:`compute`. States are plain attributes (``metric.confusion``), updated in place.
    """

    def __init__(self) -> None:
        self._defaults: dict[str, State] = {}

    # ------------------------------------------------------------------------------------------ states
    def add_state(self, name: str, default: State) -> None:
        """Declare a sum-state ``name`` (also set as the attribute ``self.<name>``) with its reset value.

        Args:
            default: a numpy array (any shape, integer or float dtype) or an int / float scalar.
        Raises:
            ValueError: a name declared twice, or a default that is no number.
        """
        if name in self._defaults or not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"state {name!r}: already declared or not a public attribute name")
        if isinstance(default, np.ndarray):
            if default.dtype.kind not in "iuf":
                raise ValueError(f"state {name!r}: arrays must be integer or float, got {default.dtype}")
            default = default.copy()
        elif isinstance(default, bool) or not isinstance(default, (int, float)):
            raise ValueError(f"state {name!r}: default must be a numpy array, int or float, got {type(default)}")
        self._defaults[name] = default
        setattr(self, name, _copy(default))

    @property
    def state_names(self) -> tuple[str, ...]:
        """The declared states, in declaration order."""
        return tuple(self._defaults)

    def reset(self) -> None:
        """Every state back to its default (an empty metric)."""
        for name, default in self._defaults.items():
            setattr(self, name, _copy(default))

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every state as an array (scalars as 0-d arrays): what shards exchange and sum."""
        return {name: np.array(getattr(self, name)) for name in self._defaults}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace every state by ``state`` (e.g. the sum of all ranks' :meth:`state_dict`).

        Raises:
            ValueError: missing or unknown names, a wrong shape, or float values for an integer state.
        """
        values = self._checked(state)
        for name, value in values.items():
            setattr(self, name, value)

    def merge_state(self, state: Mapping[str, Any]) -> None:
        """Add ``state`` (another metric's :meth:`state_dict`, same configuration) to this metric's states.

        Raises:
            ValueError: as :meth:`load_state_dict`.
        """
        values = self._checked(state)
        for name, value in values.items():
            current = getattr(self, name)
            if isinstance(current, np.ndarray):
                current += value
            else:
                setattr(self, name, current + value)

    def merge(self, other: Metric[ResultT]) -> None:
        """Add the states of ``other``, a metric of the same class and configuration (e.g. from a worker).

        Raises:
            ValueError: ``other`` is another kind of metric or configured differently.
        """
        if type(other) is not type(self):
            raise ValueError(f"cannot merge a {type(other).__name__} into a {type(self).__name__}")
        self._check_mergeable(other)
        self.merge_state(other.state_dict())

    def _check_mergeable(self, other: Any) -> None:
        """Raise ValueError when ``other`` (same class) is configured differently; subclasses extend it."""

    def _checked(self, state: Mapping[str, Any]) -> dict[str, State]:
        """``state`` converted to this metric's state types (arrays of the default dtype, Python scalars)."""
        missing = [n for n in self._defaults if n not in state]
        unknown = [n for n in state if n not in self._defaults]
        if missing or unknown:
            raise ValueError(f"{type(self).__name__} state: missing {missing}, unknown {unknown}")
        out: dict[str, State] = {}
        for name, default in self._defaults.items():
            value = np.asarray(state[name])
            want = default.dtype if isinstance(default, np.ndarray) else np.dtype(type(default))
            shape = default.shape if isinstance(default, np.ndarray) else ()
            if value.shape != shape:
                raise ValueError(f"{type(self).__name__} state {name!r}: shape {value.shape}, expected {shape}")
            if value.dtype.kind not in "iuf" or (want.kind in "iu" and value.dtype.kind == "f"):
                raise ValueError(f"{type(self).__name__} state {name!r}: cannot take {value.dtype} values as {want}")
            if isinstance(default, np.ndarray):
                out[name] = value.astype(default.dtype, copy=True)
            else:
                out[name] = type(default)(value.item())
        return out

    # ------------------------------------------------------------------------------------------ the metric
    @abstractmethod
    def update(self, *args: Any, **kwargs: Any) -> None:
        """Add one frame (or batch) to the states."""

    @abstractmethod
    def compute(self) -> ResultT:
        """The scores of everything accumulated since the last :meth:`reset`, from the states alone."""


def _copy(value: State) -> State:
    return value.copy() if isinstance(value, np.ndarray) else value


def sum_states(states: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Element-wise sum of :meth:`Metric.state_dict` exports (one per shard or rank), to load with
    :meth:`Metric.load_state_dict`.

    Raises:
        ValueError: no dict, or dicts with different names.
    """
    total: dict[str, np.ndarray] | None = None
    for state in states:
        if total is None:
            total = {name: np.array(value) for name, value in state.items()}
            continue
        if set(state) != set(total):
            raise ValueError(f"cannot sum states with names {sorted(state)} and {sorted(total)}")
        for name, value in state.items():
            total[name] = total[name] + np.asarray(value)
    if total is None:
        raise ValueError("sum_states needs at least one state dict")
    return total


# ---------------------------------------------------------------------------------------------- confusion core
def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts, ground truth rows x prediction columns: ``conf[g, p]`` = #(gt == g and pred == p).

    Args:
        gt, pred: integer label arrays of the same shape, values in ``0..num_classes-1`` (not checked here).
    """
    g = np.asarray(gt).reshape(-1).astype(np.int64)
    p = np.asarray(pred).reshape(-1).astype(np.int64)
    return np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(conf: np.ndarray, tp: np.ndarray | None = None) -> np.ndarray:
    """(C,) float64 IoU = TP / (GT + Pred - TP) of a (C, C) gt-rows x pred-columns matrix.

    Args:
        conf: (C, C) counts; GT = row sums, Pred = column sums.
        tp: (..., C) true positives to use instead of the diagonal (RayIoU: the diagonal rays whose depth error
            is also within a threshold, one row per threshold; ``tp[..., c] <= conf[c, c]``).
    Returns:
        (C,) or (..., C): NaN where the class is in neither ground truth nor prediction, 0 where it is only in
        one of them.
    """
    conf = np.asarray(conf)
    tp = np.diag(conf) if tp is None else np.asarray(tp)
    union = conf.sum(axis=1) + conf.sum(axis=0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / union


def precision_per_class(conf: np.ndarray) -> np.ndarray:
    """(C,) float64 TP / Pred (column sums); NaN for a class never predicted."""
    conf = np.asarray(conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(conf) / conf.sum(axis=0)


def recall_per_class(conf: np.ndarray) -> np.ndarray:
    """(C,) float64 TP / GT (row sums); NaN for a class absent from the ground truth."""
    conf = np.asarray(conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(conf) / conf.sum(axis=1)


def binary_confusion(conf: np.ndarray, positive: np.ndarray | list[int]) -> np.ndarray:
    """(2, 2) matrix of ``conf`` with the classes folded into negative (0) and positive (1), same orientation.

    E.g. geometric / completion IoU: ``positive`` = the occupied classes, then ``[1, 1]`` is TP, ``[0, 1]`` FP
    (free in the ground truth, occupied predicted) and ``[1, 0]`` FN.

    Args:
        conf: (C, C) gt rows x pred columns.
        positive: (C,) bool mask or a list of class indices.
    """
    conf = np.asarray(conf)
    pos = np.zeros(conf.shape[0], dtype=bool)
    pos[positive] = True
    out = np.empty((2, 2), dtype=conf.dtype)
    for i, rows in enumerate((~pos, pos)):
        for j, cols in enumerate((~pos, pos)):
            out[i, j] = conf[np.ix_(rows, cols)].sum()
    return out


class ConfusionMetric(Metric[ResultT]):
    """Base of the IoU metrics: states ``confusion`` ((C, C) int64, gt rows x pred columns) and ``samples``.

    Args:
        num_classes: C; labels are ``0..C-1``.
        ignore_index: ground-truth value that is never counted (e.g. 255), or None.
    """

    confusion: np.ndarray
    samples: int

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.add_state("confusion", np.zeros((self.num_classes, self.num_classes), dtype=np.int64))
        self.add_state("samples", 0)

    def _accumulate(
        self, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None, check: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Count the pairs where ``valid`` (and gt != ignore_index) into ``confusion``; returns those (gt, pred).

        Args:
            pred, gt: integer labels of the same shape.
            valid: optional bool mask of the same shape.
            check: verify that the counted labels lie in ``0..C-1`` (callers that checked already skip it).
        Raises:
            ValueError: shape mismatch, or a counted label outside ``0..C-1``.
        """
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
        keep = None if valid is None else np.asarray(valid, dtype=bool)
        if self.ignore_index is not None:
            not_ignored = gt != self.ignore_index
            keep = not_ignored if keep is None else keep & not_ignored
        if keep is not None:
            gt, pred = gt[keep], pred[keep]
        if check:
            for name, arr in (("prediction", pred), ("ground truth", gt)):
                if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= self.num_classes):
                    raise ValueError(
                        f"{name} labels must lie in 0..{self.num_classes - 1}, got {int(arr.min())}..{int(arr.max())}"
                    )
        self.confusion += confusion_matrix(gt, pred, self.num_classes)
        return gt, pred

    def _check_mergeable(self, other: Any) -> None:
        super()._check_mergeable(other)
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(f"can only merge {type(self).__name__} metrics with the same classes")

    def iou_per_class(self) -> np.ndarray:
        """(C,) IoU fractions of the accumulated matrix (NaN: class in neither ground truth nor prediction)."""
        return iou_per_class(self.confusion)

    def precision_per_class(self) -> np.ndarray:
        """(C,) TP / predicted (NaN: never predicted)."""
        return precision_per_class(self.confusion)

    def recall_per_class(self) -> np.ndarray:
        """(C,) TP / ground truth (NaN: absent from the ground truth)."""
        return recall_per_class(self.confusion)


class ConfusionMatrix(ConfusionMetric[np.ndarray]):
    """The plain confusion-matrix metric: ``update(pred, gt[, valid])``, ``compute()`` -> (C, C) int64 copy.

    Args:
        num_classes: C.
        ignore_index: ground-truth value never counted, or None.
    """

    def update(self, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one frame: ``pred`` and ``gt`` integer labels of any equal shape, ``valid`` an optional bool mask.

        Raises:
            ValueError: shape mismatch, or a counted label outside ``0..C-1``.
        """
        self._accumulate(pred, gt, valid)
        self.samples += 1

    def compute(self) -> np.ndarray:
        """(C, C) int64, ground truth rows x prediction columns."""
        return self.confusion.copy()


# ---------------------------------------------------------------------------------------------- score helpers
def nan_to_none(value: float) -> float | None:
    """JSON-friendly score: NaN (undefined) becomes None."""
    return None if math.isnan(value) else float(value)


def nanmean(values: np.ndarray) -> float:
    """Mean ignoring NaN; NaN (without a warning) when every value is NaN."""
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else math.nan


def percent(fraction: float) -> float:
    """A score fraction as percent rounded to 2 decimals, as the official scripts print it (NaN stays NaN)."""
    return math.nan if math.isnan(fraction) else float(np.round(fraction * 100, 2))


__all__ = [
    "ConfusionMatrix",
    "ConfusionMetric",
    "Metric",
    "binary_confusion",
    "confusion_matrix",
    "iou_per_class",
    "nan_to_none",
    "nanmean",
    "percent",
    "precision_per_class",
    "recall_per_class",
    "sum_states",
]
