"""Occ3D metric, RayIoU, label-file pairing and ``occ eval``.

Expected values are hand-computed or come from straightforward per-class loops written here
(independent of the bincount confusion matrix the metric uses).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from occ_ros.core.grid import GridSpec
from occ_ros.core.vocabulary import OCC3D, Vocabulary
from occ_ros.datasets import LabelFileError, OccupancyLabels, load_labels
from occ_ros.datasets.sample import save_labels
from occ_ros.eval.occ3d import Occ3DMetric
from occ_ros.eval.rayiou import RayIoUMetric, cast_labels, lidar_ray_directions, rayiou_origins
from occ_ros.eval.runner import _rayiou_parallel, evaluate, pair_label_files
from occ_tools.cli import main

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
OCC3D_FILE = FIXTURES / "occ3d_sample" / "labels.npz"
needs_occ3d = pytest.mark.skipif(not OCC3D_FILE.exists(), reason=f"real Occ3D fixture missing: {OCC3D_FILE}")

FREE = OCC3D.free_index
CAR, TRUCK = OCC3D.index("car"), OCC3D.index("truck")


def tiny_vocab() -> Vocabulary:
    return Vocabulary.from_dict(
        {
            "name": "tiny",
            "classes": [
                {"name": "a", "color": [255, 0, 0], "prompts": ["a"]},
                {"name": "b", "color": [0, 255, 0], "prompts": ["b"]},
                {"name": "c", "color": [0, 0, 255], "prompts": ["c"]},
                {"name": "free", "color": [255, 255, 255], "prompts": []},
            ],
        }
    )


def vol(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.uint8).reshape(len(values), 1, 1)


# ----------------------------------------------------------------------------- hand-computed matrices
def test_hand_computed_confusion_nan_and_zero_rules() -> None:
    a, b, c, free = 0, 1, 2, 3
    gt = vol([a, a, b, free, free])
    pred = vol([a, b, b, a, c])
    m = Occ3DMetric(tiny_vocab(), mask="none")
    m.update(pred, gt)
    r = m.compute()
    # GT rows: a -> (a, b); b -> (b); free -> (a, c)
    expected_conf = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]])
    np.testing.assert_array_equal(r.confusion, expected_conf)
    # a: 1 / (2 + 2 - 1); b: 1 / (1 + 2 - 1); c predicted but absent from GT: 0 (counts in the mean)
    assert r.per_class == {"a": 33.33, "b": 50.0, "c": 0.0}
    assert r.miou == round((1 / 3 + 1 / 2 + 0) / 3 * 100, 2) == 27.78
    # occupied: TP = 3 (voxels 0-2), FP = 2 (GT free, predicted a / c), FN = 0
    assert r.iou == 60.0
    assert r.to_dict() == {
        "miou": 27.78,
        "iou": 60.0,
        "per_class": {"a": 33.33, "b": 50.0, "c": 0.0},
        "mask": "none",
        "samples": 1,
    }


def test_class_absent_everywhere_is_nan_and_excluded() -> None:
    gt = vol([0, 0, 3, 3])
    pred = vol([0, 3, 3, 3])
    m = Occ3DMetric(tiny_vocab(), mask="none")
    m.update(pred, gt)
    r = m.compute()
    assert r.per_class == {"a": 50.0, "b": None, "c": None}
    assert r.miou == 50.0  # nanmean over the one defined class
    assert r.to_dict()["per_class"]["b"] is None


def test_mask_restricts_and_matrix_is_global_over_samples() -> None:
    vocab = tiny_vocab()
    gt1, pred1, mask1 = vol([0, 0, 1, 3]), vol([0, 1, 1, 0]), vol([1, 1, 1, 0]).astype(bool)
    gt2, pred2, mask2 = vol([1, 1, 1, 1]), vol([1, 1, 1, 1]), vol([1, 1, 0, 0]).astype(bool)
    m = Occ3DMetric(vocab, mask="camera")
    m.update(pred1, gt1, mask_camera=mask1)
    m.update(pred2, gt2, mask_camera=mask2)
    r = m.compute()
    # pooled voxels: gt a,a,b,b,b / pred a,b,b,b,b -> a: 1/2; b: 3/4 (voxel 4 of frame 1 masked out)
    assert r.per_class["a"] == 50.0 and r.per_class["b"] == 75.0
    assert r.miou == 62.5 and r.samples == 2
    # a per-frame average would differ: frame 1 alone gives a=50, b=50
    single = Occ3DMetric(vocab, mask="camera")
    single.update(pred1, gt1, mask_camera=mask1)
    assert single.compute().per_class["b"] == 50.0
    # merge == sequential updates
    other = Occ3DMetric(vocab, mask="camera")
    other.update(pred2, gt2, mask_camera=mask2)
    single.merge(other)
    np.testing.assert_array_equal(single.compute().confusion, r.confusion)


def test_metric_rejects_bad_input() -> None:
    m = Occ3DMetric(tiny_vocab(), mask="camera")
    with pytest.raises(ValueError, match="shape"):
        m.update(vol([0, 1]), vol([0, 1, 2]), mask_camera=np.ones((3, 1, 1), bool))
    with pytest.raises(ValueError, match="mask_camera"):
        m.update(vol([0]), vol([0]))
    with pytest.raises(ValueError, match="0..3"):
        m.update(vol([4]), vol([0]), mask_camera=np.ones((1, 1, 1), bool))
    with pytest.raises(ValueError, match="mask must be"):
        Occ3DMetric(mask="sky")


# ----------------------------------------------------------------------------- real Occ3D file
def reference_scores(preds: list[np.ndarray], gts: list[np.ndarray], masks: list[np.ndarray | None]) -> dict:
    """Per-class IoU by plain set counting over the pooled masked voxels (independent implementation)."""
    g = np.concatenate([(x if m is None else x[m.astype(bool)]).ravel() for x, m in zip(gts, masks, strict=True)])
    p = np.concatenate([(x if m is None else x[m.astype(bool)]).ravel() for x, m in zip(preds, masks, strict=True)])
    per_class = {}
    for c in range(17):
        inter = int(np.sum((g == c) & (p == c)))
        union = int(np.sum((g == c) | (p == c)))
        per_class[OCC3D.names[c]] = None if union == 0 else inter / union
    defined = [v for v in per_class.values() if v is not None]
    occ_g, occ_p = g != FREE, p != FREE
    geo = np.sum(occ_g & occ_p) / np.sum(occ_g | occ_p)
    return {"per_class": per_class, "miou": sum(defined) / len(defined), "iou": float(geo)}


def assert_matches_reference(result, ref: dict) -> None:
    for name, value in ref["per_class"].items():
        got = result.per_class[name]
        if value is None:
            assert got is None, name
        else:
            assert got == pytest.approx(value * 100, abs=0.005), name
    assert result.miou == pytest.approx(ref["miou"] * 100, abs=0.005)
    assert result.iou == pytest.approx(ref["iou"] * 100, abs=0.005)


@needs_occ3d
@pytest.mark.parametrize("mask", ["camera", "lidar", "none"])
def test_real_occ3d_file_perturbed_predictions(mask: str) -> None:
    gt = load_labels(OCC3D_FILE, num_classes=18, shape=(200, 200, 16), require_masks=True)
    rng = np.random.default_rng(7)
    perfect = gt.semantics.copy()
    car_as_truck = np.where(gt.semantics == CAR, TRUCK, gt.semantics).astype(np.uint8)
    noisy = gt.semantics.copy()
    flip = rng.random(noisy.shape) < 0.1
    noisy[flip] = rng.integers(0, 18, size=int(flip.sum()), dtype=np.uint8)
    shifted = np.roll(gt.semantics, 1, axis=0)
    preds = [perfect, car_as_truck, noisy, shifted]
    mask_array = gt.mask(mask)
    for pred in preds:
        m = Occ3DMetric(mask=mask)
        m.update(pred, gt.semantics, gt.mask_camera, gt.mask_lidar)
        assert_matches_reference(m.compute(), reference_scores([pred], [gt.semantics], [mask_array]))
    pooled = Occ3DMetric(mask=mask)
    for pred in preds:
        pooled.update(pred, gt.semantics, gt.mask_camera, gt.mask_lidar)
    n = len(preds)
    assert_matches_reference(pooled.compute(), reference_scores(preds, [gt.semantics] * n, [mask_array] * n))


@needs_occ3d
def test_real_occ3d_known_scores() -> None:
    gt = load_labels(OCC3D_FILE, num_classes=18)
    m = Occ3DMetric(mask="camera")
    m.update(gt.semantics, gt.semantics, gt.mask_camera, gt.mask_lidar)
    r = m.compute()
    present = set(np.unique(gt.semantics[gt.mask_camera])) - {FREE}
    assert r.miou == 100.0 and r.iou == 100.0
    assert {OCC3D.names[c] for c in present} == {k for k, v in r.per_class.items() if v is not None}
    # car relabelled as truck: car -> 0 (missed), truck -> 0 (predicted, absent from GT), the rest 100
    m = Occ3DMetric(mask="camera")
    m.update(np.where(gt.semantics == CAR, TRUCK, gt.semantics), gt.semantics, gt.mask_camera, gt.mask_lidar)
    r = m.compute()
    assert r.per_class["car"] == 0.0 and r.per_class["truck"] == 0.0
    k = len(present)  # car is present in this frame's camera mask
    assert CAR in present and TRUCK not in present
    assert r.miou == round((k - 1) / (k + 1) * 100, 2)
    assert r.iou == 100.0  # geometry unchanged
    # everything free: every present class 0, geometric IoU 0
    m = Occ3DMetric(mask="camera")
    m.update(np.full_like(gt.semantics, FREE), gt.semantics, gt.mask_camera, gt.mask_lidar)
    r = m.compute()
    assert r.miou == 0.0 and r.iou == 0.0


# ----------------------------------------------------------------------------- files and pairing
def unit_grid(shape: tuple[int, ...], origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> GridSpec:
    """1 m voxels of ``shape`` from ``origin``."""
    return GridSpec(origin, tuple(o + n for o, n in zip(origin, shape, strict=True)), (1.0, 1.0, 1.0))  # type: ignore[arg-type]


def write_labels(path: Path, semantics: np.ndarray, masks: bool = True, grid: GridSpec | None = None) -> Path:
    """A label file on ``grid`` (default: Occ3D's for its shape, else 1 m voxels from the origin)."""
    if grid is None:
        grid = GridSpec.occ3d() if semantics.shape == GridSpec.occ3d().shape else unit_grid(semantics.shape)
    ones = np.ones(semantics.shape, np.uint8) if masks else None
    save_labels(path, OccupancyLabels(semantics, mask_camera=ones, mask_lidar=ones, grid=grid))
    return path


@pytest.fixture
def label_dirs(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    gt_root, pred_root = tmp_path / "gts", tmp_path / "pred"
    for scene in ("scene_a", "scene_b"):
        for frame in ("000000", "000001"):
            sem = rng.integers(0, 18, size=(8, 8, 2), dtype=np.uint8)
            write_labels(gt_root / scene / frame / "labels.npz", sem)
            write_labels(pred_root / scene / frame / "labels.npz", sem, masks=False)
    return pred_root, gt_root


def test_directories_pair_by_relative_path(label_dirs: tuple[Path, Path]) -> None:
    pred, gt = label_dirs
    pairs = pair_label_files(pred, gt)
    assert [p.key for p in pairs] == [
        "scene_a/000000/labels.npz",
        "scene_a/000001/labels.npz",
        "scene_b/000000/labels.npz",
        "scene_b/000001/labels.npz",
    ]
    report = evaluate(pred, gt, mask="camera")
    assert report.occ3d.samples == 4 and report.occ3d.miou == 100.0


def test_missing_and_extra_predictions_are_errors(label_dirs: tuple[Path, Path]) -> None:
    pred, gt = label_dirs
    (pred / "scene_b" / "000001" / "labels.npz").unlink()
    expected = r"(?s)1 ground-truth file\(s\) have no prediction.*scene_b/000001/labels.npz"
    with pytest.raises(LabelFileError, match=expected):
        pair_label_files(pred, gt)
    write_labels(pred / "scene_b" / "000001" / "labels.npz", np.zeros((8, 8, 2), np.uint8))
    write_labels(pred / "scene_c" / "000000" / "labels.npz", np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(LabelFileError, match=r"(?s)have no ground truth.*scene_c/000000/labels.npz"):
        pair_label_files(pred, gt)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (np.zeros((8, 8, 3), np.uint8), r"shape \(8, 8, 3\), expected \(8, 8, 2\)"),
        (np.zeros((8, 8, 2), np.int64), "dtype int64, expected uint8"),
        (np.full((8, 8, 2), 18, np.uint8), r"128 labels are outside 0..17"),
        (b"this is not a zip file", "not a readable .npz"),
        (None, "no 'semantics' array"),
    ],
)
def test_bad_prediction_files_name_the_file(label_dirs: tuple[Path, Path], content: object, message: str) -> None:
    pred, gt = label_dirs
    bad = pred / "scene_a" / "000001" / "labels.npz"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    elif content is None:
        np.savez_compressed(bad, labels=np.zeros((8, 8, 2), np.uint8))
    else:
        np.savez_compressed(bad, semantics=content)
    with pytest.raises(LabelFileError, match=message) as info:
        evaluate(pred, gt)
    assert str(bad) in str(info.value)


def test_ground_truth_without_masks_is_an_error_unless_mask_none(label_dirs: tuple[Path, Path]) -> None:
    pred, gt = label_dirs
    f = gt / "scene_a" / "000000" / "labels.npz"
    write_labels(f, load_labels(f).semantics, masks=False)
    with pytest.raises(LabelFileError, match="lacks mask_camera, mask_lidar") as info:
        evaluate(pred, gt, mask="camera")
    assert str(f) in str(info.value)
    assert evaluate(pred, gt, mask="none").occ3d.miou == 100.0


def test_cli_eval_json_and_errors(label_dirs: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    pred, gt = label_dirs
    out = tmp_path / "metrics.json"
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--mask", "lidar", "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert set(doc) == {"miou", "iou", "per_class", "mask", "samples"}
    assert doc["mask"] == "lidar" and doc["samples"] == 4 and doc["miou"] == 100.0
    assert list(doc["per_class"]) == OCC3D.names[:17]
    text = capsys.readouterr().out
    assert "mIoU" in text and "geometric IoU" in text and "driveable_surface" in text
    (pred / "scene_a" / "000000" / "labels.npz").unlink()
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "occ eval: error:" in err and "scene_a/000000/labels.npz" in err


def test_cli_eval_runs_without_importing_scipy_or_torch(label_dirs: tuple[Path, Path]) -> None:
    """``occ eval`` (Occ3D metric) never needs scipy: its start-up skips the import (a fresh interpreter, where
    nothing else has imported it), and torch stays out as everywhere in the runtime."""
    import subprocess
    import sys

    pred, gt = label_dirs
    code = (
        "import sys\n"
        "from occ_tools.cli import main\n"
        f"rc = main(['eval', '--pred', {str(pred)!r}, '--gt', {str(gt)!r}, '--quiet'])\n"
        "print('RESULT', rc, sorted(m for m in ('scipy', 'torch') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "RESULT 0 []" in done.stdout, done.stdout


# ----------------------------------------------------------------------------- grids of label files
def test_label_file_round_trip_keeps_the_grid_and_the_extra_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    semantics = rng.integers(0, 20, size=(128, 128, 16), dtype=np.uint8)
    mask = rng.random(semantics.shape) < 0.5
    grid = GridSpec((0.0, -25.6, -2.0), (51.2, 25.6, 4.4), (0.4, 0.4, 0.4))
    path = tmp_path / "04" / "000000" / "labels.npz"
    extra = {"depth_scale": np.array([1.5], np.float32)}
    save_labels(path, OccupancyLabels(semantics, mask_camera=mask, grid=grid), extra)
    back = load_labels(path, num_classes=20)
    # compared with a hand-written grid: SemanticKITTI's volume at 0.4 m
    assert back.grid == GridSpec((0.0, -25.6, -2.0), (51.2, 25.6, 4.4), (0.4, 0.4, 0.4))
    np.testing.assert_array_equal(back.semantics, semantics)
    np.testing.assert_array_equal(back.mask_camera, mask)
    assert back.mask_lidar is None
    with np.load(path, allow_pickle=False) as npz:  # a plain unicode array: no pickle needed
        assert sorted(npz.files) == ["depth_scale", "grid", "mask_camera", "semantics"]
        assert npz["grid"].dtype.kind == "U" and npz["grid"].shape == ()
        assert json.loads(str(npz["grid"])) == {
            "range_min": [0.0, -25.6, -2.0],
            "range_max": [51.2, 25.6, 4.4],
            "voxel_size": [0.4, 0.4, 0.4],
            "shape": [128, 128, 16],
        }
        np.testing.assert_array_equal(npz["depth_scale"], extra["depth_scale"])
    first = path.read_bytes()
    save_labels(path, OccupancyLabels(semantics, mask_camera=mask, grid=grid), extra)
    assert path.read_bytes() == first  # deterministic bytes
    with pytest.raises(ValueError, match="carries its grid"):
        save_labels(tmp_path / "no_grid.npz", OccupancyLabels(semantics))
    with pytest.raises(ValueError, match=r"extra arrays \['grid'\]"):
        save_labels(tmp_path / "clash.npz", back, {"grid": np.zeros(1)})


@needs_occ3d
def test_official_occ3d_file_has_no_grid_and_loads_on_the_occ3d_grid() -> None:
    with np.load(OCC3D_FILE) as npz:
        assert sorted(npz.files) == ["mask_camera", "mask_lidar", "semantics"]
    labels = load_labels(OCC3D_FILE, num_classes=18, require_masks=True)
    assert labels.grid == GridSpec((-40.0, -40.0, -1.0), (40.0, 40.0, 5.4), (0.4, 0.4, 0.4))
    # the reader's grid, when it vouches for one, must be the file's
    assert load_labels(OCC3D_FILE, grid=GridSpec.occ3d()).grid == GridSpec.occ3d()
    with pytest.raises(LabelFileError, match="expected the"):
        load_labels(OCC3D_FILE, grid=GridSpec.demo())


def test_a_file_without_a_grid_takes_the_readers_or_has_none(tmp_path: Path) -> None:
    path = tmp_path / "labels.npz"
    np.savez_compressed(path, semantics=np.zeros((8, 8, 2), np.uint8))  # written before files stored their grid
    assert load_labels(path).grid is None
    assert load_labels(path, grid=unit_grid((8, 8, 2))).grid == unit_grid((8, 8, 2))


def test_a_stored_grid_that_disagrees_with_the_array_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "scene" / "000000" / "labels.npz"
    path.parent.mkdir(parents=True)
    grid = json.dumps(unit_grid((8, 8, 3)).to_dict())
    np.savez_compressed(path, semantics=np.zeros((8, 8, 2), np.uint8), grid=np.array(grid))
    with pytest.raises(LabelFileError, match=r"shape \(8, 8, 2\), but the file's grid is 8x8x3 voxels") as info:
        load_labels(path)
    assert str(path) in str(info.value)
    np.savez_compressed(path, semantics=np.zeros((8, 8, 2), np.uint8), grid=np.array("no grid"))
    with pytest.raises(LabelFileError, match="'grid' entry is not a grid spec") as info:
        load_labels(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match=r"shape \(8, 8, 2\), but their grid is 8x8x3 voxels"):
        OccupancyLabels(np.zeros((8, 8, 2), np.uint8), grid=unit_grid((8, 8, 3)))


def test_eval_refuses_a_prediction_on_another_grid_naming_both_grids_and_files(
    label_dirs: tuple[Path, Path], capsys
) -> None:
    pred, gt = label_dirs
    bad = pred / "scene_a" / "000001" / "labels.npz"
    # the same shape somewhere else: scored silently when files did not carry their grid
    write_labels(bad, load_labels(bad).semantics, masks=False, grid=unit_grid((8, 8, 2), origin=(-4.0, 0.0, 0.0)))
    with pytest.raises(LabelFileError) as info:
        evaluate(pred, gt)
    text = str(info.value)
    assert text.startswith("grid mismatch: the prediction ")
    assert f"the prediction {bad} has grid 8x8x2 voxels of 1 m over x [-4, 4] y [0, 8] z [0, 2] m" in text
    truth = gt / "scene_a" / "000001" / "labels.npz"
    assert f"the ground truth {truth} has grid 8x8x2 voxels of 1 m over x [0, 8] y [0, 8] z [0, 2] m" in text
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--quiet"]) == 1
    assert "grid mismatch" in capsys.readouterr().err
    # a prediction finer than its ground truth is not pooled: an error too
    write_labels(bad, np.zeros((16, 16, 4), np.uint8), masks=False, grid=GridSpec((0, 0, 0), (8, 8, 2), (0.5,) * 3))
    with pytest.raises(LabelFileError, match=r"grid mismatch: .* 16x16x4 voxels of 0.5 m .* 8x8x2 voxels of 1 m"):
        evaluate(pred, gt)


def test_eval_upsamples_a_prediction_on_a_coarsening_of_the_ground_truth_grid(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    fine = unit_grid((8, 8, 4))
    coarse = fine.coarsened(2)  # as models/kitti.ckpt's 0.4 m under SemanticKITTI's 0.2 m
    gt_sem = rng.integers(0, 18, size=fine.shape, dtype=np.uint8)
    coarse_sem = rng.integers(0, 18, size=coarse.shape, dtype=np.uint8)
    write_labels(tmp_path / "gt" / "f" / "labels.npz", gt_sem, grid=fine)
    write_labels(tmp_path / "pred" / "f" / "labels.npz", coarse_sem, masks=False, grid=coarse)
    report = evaluate(tmp_path / "pred", tmp_path / "gt", mask="camera")
    expected = Occ3DMetric(mask="camera")
    ones = np.ones(fine.shape, bool)
    expected.update(np.repeat(np.repeat(np.repeat(coarse_sem, 2, 0), 2, 1), 2, 2), gt_sem, ones, ones)
    np.testing.assert_array_equal(report.occ3d.confusion, expected.compute().confusion)
    assert report.occ3d.samples == 1 and report.occ3d.miou == expected.compute().miou


def test_eval_rayiou_grid_must_be_the_ground_truths(label_dirs: tuple[Path, Path]) -> None:
    pred, gt = label_dirs
    with pytest.raises(LabelFileError) as info:
        evaluate(pred, gt, rayiou_origins=lambda key: np.zeros((1, 3)), grid=GridSpec.demo())
    text = str(info.value)
    assert "8x8x2 voxels of 1 m over x [0, 8] y [0, 8] z [0, 2] m" in text
    assert "80x80x8 voxels of 0.8 m over x [-32, 32] y [-32, 32] z [-1, 5.4] m" in text


# ----------------------------------------------------------------------------- RayIoU
def test_lidar_ray_pattern_matches_sparseocc() -> None:
    d = lidar_ray_directions()
    pitch = np.unique(np.round(np.arcsin(d[:, 2]), 12))
    assert d.shape == (39 * 360, 3)
    assert pitch[0] == pytest.approx(-math.pi / 4)  # k = 1: -(pi/2 - atan 1)
    assert pitch[9] == pytest.approx(-(math.pi / 2 - math.atan(10)))
    assert pitch[-1] >= 0.21 > pitch[-2]
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)


def test_origins_follow_the_sequence_and_stay_inside() -> None:
    grid = GridSpec.occ3d()
    poses = np.stack([np.eye(4) for _ in range(12)])
    poses[:, 0, 3] = np.arange(12) * 10.0  # driving +x, 10 m per frame
    lidar = (1.0, 0.0, 2.0)
    o = rayiou_origins(poses, 2, lidar, grid)
    # frames 0..5 land at x = -19, -9, 1, 11, 21, 31 (|x| < 39); frame 6 at 41 is outside
    np.testing.assert_allclose(o, [[x, 0, 2] for x in (-19, -9, 1, 11, 21, 31)])
    # 12 frames all inside a long grid: 8 picked evenly, round(linspace(0, 11, 8))
    wide = GridSpec((-200, -40, -1), (200, 40, 5.4), (0.4, 0.4, 0.4))
    o = rayiou_origins(poses, 0, lidar, wide)
    np.testing.assert_allclose(o[:, 0], 1.0 + 10.0 * np.round(np.linspace(0, 11, 8)))


def test_cast_depth_is_where_the_ray_leaves_the_hit_voxel() -> None:
    grid = GridSpec((0, 0, 0), (10, 10, 4), (1, 1, 1))
    labels = np.full(grid.shape, 3, np.uint8)
    labels[6, :, :] = 1  # wall of class b whose near face is x = 6, far face x = 7
    origin = np.array([[0.5, 5.5, 1.5]])
    dirs = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.6, 0.8, 0.0]])
    label, depth = cast_labels(grid, labels, origin, dirs, free_index=3)
    assert label.tolist() == [1, 3, 3]  # the diagonal ray leaves through y = 10 before reaching x = 6
    assert depth[0] == pytest.approx(6.5) and np.isinf(depth[1])


def test_rayiou_hand_computed_wall_offsets() -> None:
    grid = GridSpec((0, 0, 0), (20, 20, 4), (1, 1, 1))
    vocab = tiny_vocab()
    gt = np.full(grid.shape, 3, np.uint8)
    gt[12, :, :] = 0  # class a wall, ray leaves it at x = 13
    pred_near = np.full(grid.shape, 3, np.uint8)
    pred_near[13, :, :] = 0  # 1 m deeper: |err| = 1, not < 1 m but < 2 m
    pred_far = np.full(grid.shape, 3, np.uint8)
    pred_far[15, :, :] = 0  # 3 m deeper: only within 4 m
    dirs = np.array([[1.0, 0.0, 0.0], [1.0, 0.1, 0.0]])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origins = np.array([[2.5, 10.5, 1.5]])
    m = RayIoUMetric(grid, vocab, directions=dirs)
    m.update(pred_near, gt, origins)
    r = m.compute()
    # 2 scored rays, both class a in GT and prediction; distance error 1 m (straight) / 1.005 m (slanted)
    assert r.per_class["a"] == [0.0, 100.0, 100.0]
    assert r.per_class["b"] == [None, None, None]
    assert r.per_threshold == {1.0: 0.0, 2.0: 100.0, 4.0: 100.0}
    assert r.rayiou == 66.67
    m.update(pred_far, gt, origins)  # adds 2 rays with 3 m error: TP only at 4 m
    r = m.compute()
    assert r.per_class["a"] == [0.0, round(2 / 6 * 100, 2), 100.0]  # IoU = TP / (4 + 4 - TP)
    wrong_class = np.where(pred_near == 0, 1, pred_near).astype(np.uint8)
    m.reset()
    m.update(wrong_class, gt, origins)
    r = m.compute()
    assert r.per_class["a"] == [0.0, 0.0, 0.0] and r.per_class["b"] == [0.0, 0.0, 0.0]


def _official_dvr_cast(
    grid: GridSpec, labels: np.ndarray, origin: np.ndarray, dirs: np.ndarray, free: int
) -> tuple[np.ndarray, np.ndarray]:
    """Independent re-implementation of SparseOcc's ``lib/dvr`` ``render_forward`` for RayIoU (isotropic voxels).

    The start voxel is ``int((origin - range_min) / voxel)``; step +1 where the direction component is >= 0;
    ties go to z over y over x (the kernel's ``<`` comparisons); the first occupied voxel of the path is the
    hit and its depth is the distance at which the ray leaves it. Returns labels and depths (metres).
    """
    size = grid.voxel_size[0]
    o = (np.asarray(origin, dtype=np.float64) - np.asarray(grid.range_min)) / size
    out_label = np.full(len(dirs), free, dtype=np.int64)
    out_depth = np.full(len(dirs), np.inf)
    for r, d in enumerate(dirs):
        v = [int(o[i]) for i in range(3)]
        step = [1 if d[i] >= 0 else -1 for i in range(3)]
        t_max = [((v[i] + (step[i] > 0)) - o[i]) / d[i] if d[i] != 0 else math.inf for i in range(3)]
        t_delta = [step[i] / d[i] if d[i] != 0 else math.inf for i in range(3)]
        while all(0 <= v[i] < grid.shape[i] for i in range(3)):
            if t_max[0] < t_max[1]:
                a = 0 if t_max[0] < t_max[2] else 2
            else:
                a = 1 if t_max[1] < t_max[2] else 2
            if labels[v[0], v[1], v[2]] != free:
                out_label[r], out_depth[r] = labels[v[0], v[1], v[2]], t_max[a] * size
                break
            v[a] += step[a]
            t_max[a] += t_delta[a]
    return out_label, out_depth


def test_rayiou_origin_on_a_face_of_its_own_occupied_voxel_matches_the_official_kernel() -> None:
    """The LiDAR sits exactly on the x face of an occupied voxel (issue 21 §3).

    SparseOcc uses the LiDAR position unchanged for the frame's own origin and starts every ray in
    floor(origin / voxel): every ground-truth ray hits that voxel (rays pointing to -x leave it at 0 m).
    A round trip through inv(P) @ P used to put the origin just below the face, and rays pointing to -x
    used to start in the lower neighbour, so they flew on to the wall behind.
    """
    grid = GridSpec((-10, -10, -1), (10, 10, 3), (0.5, 0.5, 0.5))
    vocab = tiny_vocab()
    lidar = (1.0, 0.25, 1.25)  # x on the face between voxels 21 and 22 (exactly: (1 + 10) / 0.5 = 22)
    yaw = 0.5
    pose = np.eye(4)
    pose[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    pose[:3, 3] = (702.1, -53.9, 0.1)
    poses = np.stack([pose, pose])
    poses[0, :3, 3] -= (3.0, 0.0, 0.0)
    # the round trip is not exact for this pose: it lands on the other side of the face
    round_trip = np.einsum("ij,tjk,k->ti", np.linalg.inv(pose), poses, np.append(lidar, 1.0))
    assert round_trip[1, 0] < 1.0
    origins = rayiou_origins(poses, 1, lidar, grid)
    assert origins[-1].tolist() == list(lidar)  # the frame's own origin, exactly as given
    origins = origins[-1:]

    gt = np.full(grid.shape, 3, np.uint8)
    gt[2, :, :] = 0  # class a wall far behind (-x)
    gt[22, 20, 4] = 1  # the LiDAR's own voxel, class b
    pred = gt.copy()
    pred[22, 20, 4] = 3  # the prediction misses it: rays to -x hit the wall instead
    dirs = lidar_ray_directions()[::7]
    for labels in (gt, pred):
        label, depth = cast_labels(grid, labels, origins, dirs, free_index=3)
        ref_label, ref_depth = _official_dvr_cast(grid, labels, origins[0], dirs, free=3)
        np.testing.assert_array_equal(label, ref_label)
        np.testing.assert_allclose(depth, ref_depth, rtol=0, atol=1e-9)
    label, depth = cast_labels(grid, gt, origins, dirs, free_index=3)
    assert (label == 1).all()  # every ground-truth ray hits the LiDAR's voxel...
    assert (depth[dirs[:, 0] < 0] == 0).all()  # ...and those pointing to -x leave it at once
    m = RayIoUMetric(grid, vocab, directions=dirs)
    m.update(pred, gt, origins)
    # official: every scored ray is class b in GT; the prediction has no b, so every class IoU is 0
    r = m.compute()
    assert r.per_class["b"] == [0.0, 0.0, 0.0] and r.per_class["a"] == [0.0, 0.0, 0.0]
    assert r.rayiou == 0.0


@needs_occ3d
def test_cast_labels_agree_with_fine_stepping_on_real_labels() -> None:
    """Independent check: march each ray in 1 mm steps and look the voxel up (real Occ3D file)."""
    gt = load_labels(OCC3D_FILE)
    grid = GridSpec.occ3d()
    rng = np.random.default_rng(3)
    dirs = lidar_ray_directions()[rng.choice(39 * 360, size=60, replace=False)]
    origin = np.array([[0.985793, 0.0, 1.84019]])
    label, depth = cast_labels(grid, gt.semantics, origin, dirs, FREE)
    steps = np.arange(0.0, 60.0, 0.001)
    for i, d in enumerate(dirs):
        pts = origin[0] + steps[:, None] * d
        idx, inside = grid.points_to_indices(pts)
        lab = np.full(steps.size, FREE)
        lab[inside] = gt.semantics[idx[inside, 0], idx[inside, 1], idx[inside, 2]]
        hits = np.flatnonzero(lab != FREE)
        if hits.size == 0:
            assert label[i] == FREE
            continue
        first = hits[0]
        assert label[i] == lab[first]
        same = np.all(idx[first:] == idx[first], axis=1)
        leave = first + np.argmin(same)  # first step outside the voxel hit
        assert depth[i] == pytest.approx(steps[leave], abs=0.002)


@needs_occ3d
def test_rayiou_real_file_perfect_and_shifted() -> None:
    gt = load_labels(OCC3D_FILE)
    grid = GridSpec.occ3d()
    origins = np.array([[0.985793, 0.0, 1.84019], [6.0, 0.2, 1.84]])
    m = RayIoUMetric(grid)
    m.update(gt.semantics, gt.semantics, origins)
    r = m.compute()
    assert r.rayiou == 100.0
    # shift everything 2 voxels (0.8 m) along +x: rays along x err by up to 0.8 m (TP at 1 m);
    # at 4 m, every ray that still hits the same class counts, so IoU@4 >= IoU@1
    m = RayIoUMetric(grid)
    m.update(np.roll(gt.semantics, 2, axis=0), gt.semantics, origins)
    r = m.compute()
    at = r.per_threshold
    assert 0 < at[1.0] <= at[2.0] <= at[4.0] < 100


@needs_occ3d
def test_rayiou_worker_processes_match_serial(tmp_path: Path) -> None:
    gt = load_labels(OCC3D_FILE)
    pred_root, gt_root = tmp_path / "pred", tmp_path / "gts"
    for i in range(8):
        write_labels(gt_root / f"{i:02d}" / "labels.npz", gt.semantics)
        write_labels(pred_root / f"{i:02d}" / "labels.npz", np.roll(gt.semantics, i % 3, axis=0), masks=False)
    pairs = pair_label_files(pred_root, gt_root)
    origins = [np.array([[0.99 + i, 0.0, 1.84], [-3.0, 0.5 * i, 1.84]]) for i in range(8)]
    dirs = lidar_ray_directions()[::97]
    serial = RayIoUMetric(GridSpec.occ3d(), directions=dirs)
    _rayiou_parallel(serial, pairs, origins, workers=1, progress=False)
    parallel = RayIoUMetric(GridSpec.occ3d(), directions=dirs)
    _rayiou_parallel(parallel, pairs, origins, workers=2, progress=False)
    assert serial.samples == parallel.samples == 8
    np.testing.assert_array_equal(serial.tp_count, parallel.tp_count)
    np.testing.assert_array_equal(serial.gt_count, parallel.gt_count)
    assert 0 < serial.compute().rayiou < 100
