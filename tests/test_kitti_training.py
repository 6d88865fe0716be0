"""Training on a SemanticKITTI-layout folder with a coarser model grid, and ``occ predict`` writing the official
prediction files from it: labels pooled 2x2x2 by hand, predictions upsampled by hand, sequences chosen per split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from test_semantickitti import IDENTITY_POSE, SIMPLE_P, write_sequence

from occ_ros.core.grid import GridSpec
from occ_ros.core.preprocess import PreprocessConfig
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.datasets.sample import LABELS_FILE, OccupancyLabels, load_labels, save_labels
from occ_ros.datasets.semantickitti import SEMANTICKITTI_GRID, semantickitti_vocabulary
from occ_ros.model.checkpoint import checkpoint_dict, save_checkpoint
from occ_ros.model.network import ModelConfig, OccupancyNetwork
from occ_tools.cli import main
from occ_training.trainer.config import config_from_mapping
from occ_training.trainer.data import DataError, FrameDataset

VOCAB = semantickitti_vocabulary()
INV = {
    int(k): int(v)
    for k, v in yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "config" / "datasets" / "semantic-kitti.yaml").read_text()
    )["learning_map_inv"].items()
}
CAR, ROAD, FREE = VOCAB.index("car"), VOCAB.index("road"), VOCAB.free_index


def _kitti(root: Path) -> Path:
    for name in ("03", "04"):
        write_sequence(root, name, SIMPLE_P, [IDENTITY_POSE] * 2, [0.0, 0.1], 2, (64, 32), {})
    return root


def _labels(root: Path, sequence: str, frame: str) -> None:
    """Pseudo-labels at 0.2 m: coarse voxel (0, 0, 0) gets two car children and one road child; coarse (1, 0, 0)
    only free children; coarse (2, 0, 0) a car child outside the camera mask."""
    semantics = np.full(SEMANTICKITTI_GRID.shape, FREE, np.uint8)
    mask = np.zeros(SEMANTICKITTI_GRID.shape, bool)
    mask[:4, :2, :2] = True
    semantics[0, 0, 0] = semantics[1, 1, 1] = CAR
    semantics[0, 1, 0] = ROAD
    semantics[4, 0, 0] = CAR
    labels = OccupancyLabels(semantics, mask_camera=mask, grid=SEMANTICKITTI_GRID)
    save_labels(root / sequence / frame / LABELS_FILE, labels)


def _config(root: Path, labels: Path, **data: object) -> object:
    model = ModelConfig(
        image_height=32, image_width=64, num_cameras=1, num_classes=20, grid=SEMANTICKITTI_GRID.coarsened(2).to_dict()
    )
    return config_from_mapping(
        {
            "vocabulary": "semantickitti",
            "model": {k: v for k, v in model.to_dict().items()},
            "data": {"kind": "semantickitti", "train": [str(root)], "labels": str(labels), **data},
            "loss": {"voxel_ce": 1.0, "voxel_lovasz": 0.0, "depth": 0.0, "semantic": 0.0},
        },
        where="test",
    )


def test_vocabulary_loads_by_shipped_name() -> None:
    assert Vocabulary.load("semantickitti").names == VOCAB.names


def test_dataset_pools_finer_labels_and_takes_its_sequences(tmp_path: Path) -> None:
    root = _kitti(tmp_path / "kitti")
    labels = tmp_path / "labels"
    for frame in ("000000", "000001"):
        _labels(labels, "04", frame)
    config = _config(root, labels, train_sequences=["04"])
    data = FrameDataset(config, VOCAB, "train")  # type: ignore[arg-type]
    assert len(data) == 2 and data.pool == [2]
    item = data[0]
    assert item["labels"].shape == (128, 128, 16) and item["label_mask"].shape == (128, 128, 16)
    assert item["labels"][0, 0, 0] == CAR and item["labels"][1, 0, 0] == FREE
    assert item["label_mask"][0, 0, 0] and item["label_mask"][1, 0, 0]
    assert item["labels"][2, 0, 0] == 255 and not item["label_mask"][2, 0, 0]  # the car child was not observed
    # label_mask camera_and_occupied: the occupied child outside the camera mask is supervised too
    wide = FrameDataset(_config(root, labels, train_sequences=["04"], label_mask="camera_and_occupied"), VOCAB, "train")  # type: ignore[arg-type]
    assert wide[0]["labels"][2, 0, 0] == CAR and wide[0]["label_mask"][2, 0, 0]
    assert wide[0]["labels"][0, 0, 0] == CAR and wide[0]["labels"][3, 0, 0] == 255
    with pytest.raises(DataError, match="no pseudo-labels"):  # sequence 03 has none
        FrameDataset(_config(root, labels), VOCAB, "train")  # type: ignore[arg-type]
    wrong = _config(root, labels, train_sequences=["04"])
    object.__setattr__(wrong.model, "grid", GridSpec.demo())  # another volume: no whole-factor coarsening
    with pytest.raises(DataError, match="neither the model's grid"):
        FrameDataset(wrong, VOCAB, "train")  # type: ignore[arg-type]


def test_predict_writes_official_files_upsampled_from_a_coarse_model(tmp_path: Path) -> None:
    root = _kitti(tmp_path / "kitti")
    cfg = ModelConfig(
        image_height=32, image_width=64, num_cameras=1, num_classes=20, grid=SEMANTICKITTI_GRID.coarsened(4)
    )
    net = OccupancyNetwork(cfg).eval()
    ckpt = save_checkpoint(
        tmp_path / "kitti.ckpt", checkpoint_dict(net, VOCAB, PreprocessConfig(32, 64), step=0, cameras=["CAM2"])
    )
    out = tmp_path / "pred"
    argv = ["predict", "--model", str(ckpt), "--data", str(root), "--out", str(out), "--quiet"]
    assert main([*argv, "--sequences", "4"]) == 0
    assert sorted(p.name for p in (out / "sequences").iterdir()) == ["04"]
    for frame in ("000000", "000001"):
        coarse = load_labels(out / "04" / frame / LABELS_FILE).semantics
        assert coarse.shape == (64, 64, 8)
        raw = np.fromfile(out / "sequences" / "04" / "predictions" / f"{frame}.label", dtype="<u2").reshape(
            256, 256, 32
        )
        # expected raw ids straight from the shipped YAML: vocabulary index v -> learning id v + 1 (free -> 0)
        for a, b, c in np.random.default_rng(0).integers(0, [256, 256, 32], size=(200, 3)):
            v = int(coarse[a // 4, b // 4, c // 4])
            assert raw[a, b, c] == INV[0 if v == FREE else v + 1], (a, b, c, v)
        # every 4x4x4 block of the official file holds one value: its coarse parent's
        blocks = raw.reshape(64, 4, 64, 4, 8, 4)
        assert np.all(blocks == blocks[:, :1, :, :1, :, :1])


def _coarse_model(tmp_path: Path, grid: GridSpec) -> Path:
    """An untrained one-camera network on ``grid`` for the KITTI layout's 64x32 images."""
    cfg = ModelConfig(image_height=32, image_width=64, num_cameras=1, num_classes=20, grid=grid)
    net = OccupancyNetwork(cfg).eval()
    path = tmp_path / f"model_{grid.shape[0]}.ckpt"
    return save_checkpoint(path, checkpoint_dict(net, VOCAB, PreprocessConfig(32, 64), step=0, cameras=["CAM2"]))


def test_coarse_predictions_store_their_grid_and_eval_scores_them_upsampled(tmp_path: Path) -> None:
    from occ_ros.core.grid import upsample_labels
    from occ_ros.eval.occ3d import Occ3DMetric
    from occ_ros.eval.runner import evaluate

    root = _kitti(tmp_path / "kitti")
    ckpt = _coarse_model(tmp_path, SEMANTICKITTI_GRID.coarsened(4))
    out, labels = tmp_path / "pred", tmp_path / "labels"
    argv = ["predict", "--model", str(ckpt), "--data", str(root), "--out", str(out), "--quiet"]
    assert main([*argv, "--sequences", "4"]) == 0
    expected = Occ3DMetric(VOCAB, mask="none")
    for frame in ("000000", "000001"):
        coarse = load_labels(out / "04" / frame / LABELS_FILE)
        assert coarse.grid == GridSpec((0.0, -25.6, -2.0), (51.2, 25.6, 4.4), (0.8, 0.8, 0.8))  # by hand
        _labels(labels, "04", frame)  # "ground truth" at 0.2 m
        gt = load_labels(labels / "04" / frame / LABELS_FILE)
        assert gt.grid == SEMANTICKITTI_GRID
        expected.update(upsample_labels(coarse.semantics, 4), gt.semantics)
    report = evaluate(out / "04", labels / "04", mask="none", vocabulary=VOCAB, workers=1)
    np.testing.assert_array_equal(report.occ3d.confusion, expected.compute().confusion)
    assert report.occ3d.samples == 2


def test_predict_refuses_a_model_whose_grid_is_no_coarsening_of_the_datasets(tmp_path: Path, capsys) -> None:
    root = _kitti(tmp_path / "kitti")
    ckpt = _coarse_model(tmp_path, GridSpec.demo())
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(ckpt), "--data", str(root), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"grid mismatch: the model {ckpt} has grid 80x80x8 voxels of 0.8 m over x [-32, 32] y [-32, 32]" in err
    assert f"the data {root} has grid 256x256x32 voxels of 0.2 m over x [0, 51.2] y [-25.6, 25.6] z [-2, 4.4] m" in err
    assert not out.exists()
