"""The metric core (occ_ros/eval/metric.py): sum-states, merge / state export, and the one confusion matrix.

Every metric class is checked the same way: two shards of hand-split data merged (``merge`` and the
``state_dict`` round trip) give exactly the states and the result of one metric over all the data.
"""

from __future__ import annotations

import dataclasses
import math
import pickle

import numpy as np
import pytest

from occ_ros.core.grid import GridSpec
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.eval.depth import DepthMetric
from occ_ros.eval.metric import (
    ConfusionMatrix,
    Metric,
    binary_confusion,
    confusion_matrix,
    iou_per_class,
    precision_per_class,
    recall_per_class,
    sum_states,
)
from occ_ros.eval.occ3d import Occ3DMetric
from occ_ros.eval.rayiou import RayIoUMetric
from occ_ros.eval.ssc import SSCMetric


def tiny_vocab() -> Vocabulary:
    classes = [{"name": n, "color": [10 * i, 0, 0], "prompts": [n]} for i, n in enumerate("abc")]
    return Vocabulary.from_dict({"name": "tiny", "classes": [*classes, {"name": "free", "color": [255] * 3}]})


def results_equal(a: object, b: object) -> None:
    """Two result dataclasses hold the same values (arrays exactly, NaN == NaN)."""
    da, db = dataclasses.asdict(a), dataclasses.asdict(b)  # type: ignore[call-overload]
    assert da.keys() == db.keys()
    for key in da:
        x, y = da[key], db[key]
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=key)
        elif isinstance(x, float) and math.isnan(x):
            assert isinstance(y, float) and math.isnan(y), key
        else:
            assert x == y, key


def assert_states_equal(a: Metric, b: Metric) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        np.testing.assert_array_equal(sa[name], sb[name], err_msg=name)


# ----------------------------------------------------------------------------- confusion core
def test_confusion_hand_computed_rows_are_ground_truth() -> None:
    gt = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 2, 2, 0, 2])
    # conf[g, p], counted by hand: gt 0 -> pred 0 once, pred 1 twice; gt 1 -> 1, 2; gt 2 -> 2, 2, 0, 2
    expected = np.array([[1, 2, 0], [0, 1, 1], [1, 0, 3]])
    np.testing.assert_array_equal(confusion_matrix(gt, pred, 3), expected)
    metric = ConfusionMatrix(3)
    metric.update(pred, gt)
    np.testing.assert_array_equal(metric.compute(), expected)
    assert metric.compute().dtype == np.int64 and metric.samples == 1
    # rows sum to the ground-truth counts, columns to the prediction counts
    np.testing.assert_array_equal(expected.sum(axis=1), [3, 2, 4])
    np.testing.assert_array_equal(expected.sum(axis=0), [2, 3, 4])
    # IoU = tp / (gt + pred - tp): 1/(3+2-1), 1/(2+3-1), 3/(4+4-3)
    np.testing.assert_allclose(metric.iou_per_class(), [1 / 4, 1 / 4, 3 / 5], rtol=0, atol=0)
    np.testing.assert_allclose(metric.precision_per_class(), [1 / 2, 1 / 3, 3 / 4], rtol=0, atol=0)
    np.testing.assert_allclose(metric.recall_per_class(), [1 / 3, 1 / 2, 3 / 4], rtol=0, atol=0)
    # folded into negative {0} / positive {1, 2}: TP 5 (both 1..2), FP 2 (gt 0 -> 1), FN 1 (gt 2 -> 0), TN 1
    np.testing.assert_array_equal(binary_confusion(expected, [1, 2]), [[1, 2], [1, 5]])
    np.testing.assert_array_equal(binary_confusion(expected, np.array([False, True, True])), [[1, 2], [1, 5]])


def test_iou_nan_zero_rules_and_tp_override() -> None:
    conf = np.array([[2, 0, 1], [0, 0, 0], [0, 0, 0]])  # class 1 nowhere, class 2 only predicted
    iou = iou_per_class(conf)
    assert iou[0] == 2 / 3 and math.isnan(iou[1]) and iou[2] == 0.0
    assert math.isnan(precision_per_class(conf)[1]) and math.isnan(recall_per_class(conf)[2])
    # a (T, C) true-positive override (RayIoU's depth-gated diagonal) broadcasts per row
    got = iou_per_class(conf, tp=np.array([[1, 0, 0], [2, 0, 0]]))
    assert got.shape == (2, 3) and got[0, 0] == 1 / 4 and got[1, 0] == 2 / 3 and math.isnan(got[1, 1])


def test_ignore_index_and_valid_mask() -> None:
    gt = np.array([0, 1, 255, 2, 255, 1])
    pred = np.array([0, 1, 2, 2, 7, 0])  # 7 sits only where the ground truth is ignored: never counted
    metric = ConfusionMatrix(3, ignore_index=255)
    metric.update(pred, gt)
    np.testing.assert_array_equal(metric.compute(), [[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    metric.update(pred, gt, valid=np.array([1, 0, 1, 0, 1, 0], bool))
    assert metric.confusion.sum() == 4 + 1 and metric.samples == 2
    with pytest.raises(ValueError, match=r"ground truth labels must lie in 0\.\.2"):
        ConfusionMatrix(3).update(np.zeros(6, int), gt)  # no ignore_index: 255 is a bad label
    with pytest.raises(ValueError, match=r"prediction labels must lie in 0\.\.2"):
        metric.update(np.array([3]), np.array([0]))
    with pytest.raises(ValueError, match="shape"):
        metric.update(np.zeros(2, int), np.zeros(3, int))


# ----------------------------------------------------------------------------- base class
def test_state_dict_round_trip_and_sum() -> None:
    a, b = DepthMetric(), DepthMetric()
    a.update(np.array([[1.0, 2.0]]), np.array([[1.0, 4.0]]))
    b.update(np.array([[3.0]]), np.array([[2.0]]))
    state = a.state_dict()
    assert set(state) == set(a.state_names) == {
        "pixels", "samples", "abs_rel_sum", "sq_rel_sum", "sq_err_sum", "delta_counts",
    }  # fmt: skip
    assert all(isinstance(v, np.ndarray) for v in state.values()) and state["pixels"].shape == ()
    state["delta_counts"][:] = 99  # an export is a copy
    assert a.delta_counts.tolist() == [1, 1, 1]  # ratios 1 and 2 (2 > 1.25^3)
    # what DDP does: export on every rank, sum, load into one metric
    total = DepthMetric()
    total.load_state_dict(sum_states([a.state_dict(), b.state_dict()]))
    a.merge(b)
    assert_states_equal(total, a)
    results_equal(total.compute(), a.compute())
    assert isinstance(total.pixels, int) and isinstance(total.abs_rel_sum, float)
    # merge_state is the in-place form
    c = DepthMetric()
    c.merge_state(a.state_dict())
    assert_states_equal(c, a)
    # pickles (worker processes) with its states
    assert_states_equal(pickle.loads(pickle.dumps(a)), a)


def test_state_checks() -> None:
    m = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="missing"):
        m.load_state_dict({"confusion": np.zeros((3, 3), np.int64)})
    with pytest.raises(ValueError, match="shape"):
        m.merge_state({"confusion": np.zeros((2, 2), np.int64), "samples": 0})
    with pytest.raises(ValueError, match="float64"):
        m.merge_state({"confusion": np.zeros((3, 3)), "samples": 0})
    with pytest.raises(ValueError, match="cannot merge"):
        m.merge(DepthMetric())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same classes"):
        m.merge(ConfusionMatrix(4))
    with pytest.raises(ValueError, match="already declared"):
        m.add_state("samples", 0)
    with pytest.raises(ValueError):
        sum_states([])


def test_reset_restores_defaults_and_does_not_alias() -> None:
    m = ConfusionMatrix(2)
    m.update(np.array([0, 1]), np.array([1, 1]))
    kept = m.compute()
    m.reset()
    assert m.confusion.sum() == 0 and m.samples == 0 and kept.sum() == 2
    m.update(np.array([0]), np.array([0]))
    m.reset()
    assert m.confusion.sum() == 0  # the default was not modified in place


# ----------------------------------------------------------------------------- merge == one pass, per metric
def _split_check(make, frames, update) -> tuple:
    """Update one metric with every frame, two shards with halves; check merge and state sums agree exactly."""
    single, first, second = make(), make(), make()
    for i, frame in enumerate(frames):
        update(single, frame)
        update(first if i < len(frames) // 2 else second, frame)
    via_dicts = make()
    via_dicts.load_state_dict(sum_states([first.state_dict(), second.state_dict()]))
    first.merge(second)
    assert_states_equal(first, single)
    assert_states_equal(via_dicts, single)
    return single.compute(), first.compute(), via_dicts.compute()


def test_occ3d_merge_of_shards_equals_one_metric() -> None:
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(4):
        gt = rng.integers(0, 4, (6, 5, 3)).astype(np.uint8)
        pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 4, gt.shape)).astype(np.uint8)
        frames.append((pred, gt, rng.random(gt.shape) < 0.7))
    for a, b, c in [_split_check(lambda: Occ3DMetric(tiny_vocab(), "camera"), frames, lambda m, f: m.update(*f))]:
        results_equal(a, b)
        results_equal(a, c)
        assert a.samples == 4
    with pytest.raises(ValueError, match="same vocabulary and mask"):
        Occ3DMetric(tiny_vocab(), "camera").merge(Occ3DMetric(tiny_vocab(), "none"))


def test_rayiou_merge_of_shards_equals_one_metric() -> None:
    grid = GridSpec((0, 0, 0), (12, 12, 4), (1, 1, 1))
    rng = np.random.default_rng(1)
    dirs = rng.normal(size=(40, 3))
    dirs[:, 2] = -np.abs(dirs[:, 2]) * 0.3
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origins = np.array([[6.0, 6.0, 2.5], [4.0, 7.0, 2.5]])
    frames = []
    for _ in range(4):
        gt = np.full(grid.shape, 3, np.uint8)
        gt[:, :, 0] = rng.integers(0, 3, grid.shape[:2])
        gt[rng.random(grid.shape) < 0.05] = 1
        pred = np.where(rng.random(grid.shape) < 0.8, gt, 3).astype(np.uint8)
        frames.append((np.roll(pred, int(rng.integers(0, 2)), axis=0), gt, origins))
    a, b, c = _split_check(lambda: RayIoUMetric(grid, tiny_vocab(), directions=dirs), frames, lambda m, f: m.update(*f))
    results_equal(a, b)
    results_equal(a, c)
    assert a.samples == 4 and 0 < a.rayiou < 100
    # the ray confusion's row / column sums are the per-class ray counts
    m = RayIoUMetric(grid, tiny_vocab(), directions=dirs)
    m.update(*frames[0])
    assert m.gt_count.sum() == m.pred_count.sum() == m.confusion.sum() > 0
    assert np.all(m.tp_count <= np.diag(m.confusion))
    with pytest.raises(ValueError, match="same thresholds"):
        m.merge(RayIoUMetric(grid, tiny_vocab(), thresholds=(1.0,), directions=dirs))


def test_ssc_merge_of_shards_equals_one_metric() -> None:
    rng = np.random.default_rng(2)
    frames = []
    for _ in range(4):
        gt = rng.integers(0, 20, (8, 8, 4))
        gt[rng.random(gt.shape) < 0.1] = 255
        pred = np.where(rng.random(gt.shape) < 0.6, np.where(gt == 255, 0, gt), rng.integers(0, 20, gt.shape))
        frames.append((pred, gt, (rng.random(gt.shape) < 0.1).astype(np.uint8)))
    a, b, c = _split_check(SSCMetric, frames, lambda m, f: m.update(*f))
    results_equal(a, b)
    results_equal(a, c)
    assert a.samples == 4
    # the state is gt rows x pred columns; the result keeps the official conf[pred, gt]
    m = SSCMetric()
    m.update(np.array([2]), np.array([1]))
    assert m.confusion[1, 2] == 1 and m.compute().confusion[1, 2] == 1
    with pytest.raises(ValueError, match="same class names"):
        m.merge(SSCMetric([f"c{i}" for i in range(19)]))


def test_depth_merge_of_shards_equals_one_metric() -> None:
    rng = np.random.default_rng(3)
    frames = [(rng.uniform(0.5, 30, (5, 6)), rng.uniform(0, 30, (5, 6)), rng.random((5, 6)) < 0.8) for _ in range(4)]
    a, b, c = _split_check(lambda: DepthMetric(0.5, 80.0), frames, lambda m, f: m.update(*f))
    assert a.pixels == b.pixels == c.pixels and a.samples == 4
    assert a.delta1 == b.delta1 == c.delta1
    for name in ("abs_rel", "sq_rel", "rmse"):  # float sums: equal up to summation order
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-12)
        assert getattr(b, name) == getattr(c, name)


# ----------------------------------------------------------------------------- empty metrics
def test_empty_metrics_compute_nan_as_before() -> None:
    occ = Occ3DMetric(tiny_vocab(), "none").compute()
    assert math.isnan(occ.miou) and math.isnan(occ.iou) and set(occ.per_class.values()) == {None}
    assert occ.samples == 0 and occ.confusion.sum() == 0
    ray = RayIoUMetric(GridSpec((0, 0, 0), (4, 4, 4), (1, 1, 1)), tiny_vocab(), directions=np.eye(3)).compute()
    assert math.isnan(ray.rayiou) and all(math.isnan(v) for v in ray.per_threshold.values())
    assert ray.per_class["a"] == [None, None, None]
    ssc = SSCMetric().compute()
    # the official formulas: IoU 0 (1e-15 guard), precision / recall 0 (eps guard), completion undefined
    assert ssc.miou == 0.0 and ssc.precision == 0.0 and ssc.recall == 0.0
    assert math.isnan(ssc.iou_completion) and math.isnan(ssc.miou_present) and ssc.present == ()
    depth = DepthMetric().compute()
    assert depth.pixels == 0 and math.isnan(depth.abs_rel) and depth.to_dict()["rmse"] is None
    assert ConfusionMatrix(2).compute().tolist() == [[0, 0], [0, 0]]
    assert all(math.isnan(v) for v in ConfusionMatrix(2).iou_per_class())
