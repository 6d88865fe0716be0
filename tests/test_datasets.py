"""The synthetic-sequence reader, dataset auto-detection, label resampling and ``occ eval --rayiou``.

The reader is checked against an independent path: the rosbag2 recording of the same sequence
(images and poses decoded from the real ROS 2 messages with rosbags) and the raw npz arrays.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from occ_ros.core.grid import GridSpec, resample_labels
from occ_ros.core.rig import CameraRig
from occ_ros.core.transforms import make_transform, yaw_transform
from occ_ros.datasets import LabelFileError, OccupancyLabels, load_labels, open_dataset
from occ_ros.datasets.sample import save_labels
from occ_ros.datasets.synth import SynthReader
from occ_ros.eval.runner import evaluate
from occ_ros.io.rosbag import image_to_rgb, matrix_from_transform, ns_from_stamp, read_messages
from occ_tools.cli import main


@pytest.fixture(scope="module")
def sequence(synth_world: Path) -> Path:
    return synth_world  # 3 frames, seed 3, demo preset (tests/conftest.py)


def test_synth_reader_matches_the_bag_and_the_files(sequence: Path) -> None:
    reader = SynthReader(sequence)
    assert len(reader) == 3 and reader.kind == "synth"
    assert reader.rig == CameraRig.nuscenes().resized(200, 112)
    assert reader.grid == GridSpec.demo()
    images: dict[tuple[int, str], np.ndarray] = {}
    poses: dict[int, np.ndarray] = {}
    for topic, _, _, msg in read_messages(sequence / "bag", None):
        if topic.endswith("/image_raw"):
            images[(ns_from_stamp(msg.header.stamp), msg.header.frame_id)] = image_to_rgb(msg)
        elif topic == "/tf":
            for tf in msg.transforms:
                poses[ns_from_stamp(tf.header.stamp)] = matrix_from_transform(tf.transform)
    for i in range(3):
        s = reader[i]
        assert (s.scene, s.frame, s.index, s.dataset) == ("synth_0003", f"{i:06d}", i, "synth")
        assert s.key == f"synth_0003/{i:06d}"
        np.testing.assert_allclose(s.world_from_ego, poses[s.stamp_ns], atol=1e-9)
        for cam in s.rig:
            np.testing.assert_array_equal(s.images[cam.name], images[(s.stamp_ns, cam.frame_id)])
            assert s.image_stamps_ns[cam.name] == s.stamp_ns
        raw = np.load(sequence / "gts" / s.scene / s.frame / "labels.npz")
        assert s.gt is not None
        np.testing.assert_array_equal(s.gt.semantics, raw["semantics"])
        np.testing.assert_array_equal(s.gt.mask_camera, raw["mask_camera"].astype(bool))
        assert [s.images[cam.name].shape for cam in s.rig] == [(112, 200, 3)] * 6
    light = reader.load(1, images=False)
    assert light.images == {} and light.gt is not None
    assert list(reader.poses()) == ["synth_0003"] and reader.poses()["synth_0003"].shape == (3, 4, 4)
    depth = reader.depth(0)
    assert depth["CAM_FRONT"].dtype == np.float32 and depth["CAM_FRONT"].max() > 5.0
    with pytest.raises(IndexError):
        reader[3]


def test_synthetic_ground_truth_stores_its_grid_and_the_reader_checks_it(sequence: Path, tmp_path: Path) -> None:
    demo = GridSpec((-32.0, -32.0, -1.0), (32.0, 32.0, 5.4), (0.8, 0.8, 0.8))  # written out by hand
    with np.load(sequence / "gts" / "synth_0003" / "000000" / "labels.npz", allow_pickle=False) as npz:
        assert GridSpec.from_dict(json.loads(str(npz["grid"]))) == demo
    gt = SynthReader(sequence).load(0, images=False).gt
    assert gt is not None and gt.grid == demo
    # a copy whose meta.json claims another grid of the same shape: its ground-truth files disagree
    copy = tmp_path / "seq"
    shutil.copytree(sequence / "gts", copy / "gts")
    meta = json.loads((sequence / "meta.json").read_text())
    meta["grid"] = GridSpec((-30.0, -32.0, -1.0), (34.0, 32.0, 5.4), (0.8, 0.8, 0.8)).to_dict()
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(LabelFileError) as info:
        SynthReader(copy).load(0, images=False)
    text = str(info.value)
    assert str(copy / "gts" / "synth_0003" / "000000" / "labels.npz") in text
    assert "80x80x8 voxels of 0.8 m over x [-32, 32] y [-32, 32] z [-1, 5.4] m" in text
    assert "80x80x8 voxels of 0.8 m over x [-30, 34] y [-32, 32] z [-1, 5.4] m" in text


def test_grid_descriptions_name_shape_voxel_size_and_bounds() -> None:
    assert GridSpec.occ3d().describe() == "200x200x16 voxels of 0.4 m over x [-40, 40] y [-40, 40] z [-1, 5.4] m"
    odd = GridSpec((0, 0, 0), (1, 1, 1), (0.5, 0.5, 0.25))
    assert odd.describe() == "2x2x4 voxels of 0.5x0.5x0.25 m over x [0, 1] y [0, 1] z [0, 1] m"


def test_open_dataset_detects_kinds_and_explains_failures(sequence: Path, tmp_path: Path) -> None:
    assert isinstance(open_dataset(sequence), SynthReader)
    with pytest.raises(FileNotFoundError, match="no such dataset"):
        open_dataset(tmp_path / "nothing")
    with pytest.raises(ValueError, match="cannot tell the dataset kind"):
        open_dataset(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match=r"meta.json: format is 'something-else'"):
        open_dataset(tmp_path)


def test_resample_labels_by_hand() -> None:
    grid = GridSpec((0, 0, 0), (4, 4, 1), (1, 1, 1))
    labels = np.zeros(grid.shape, np.uint8)
    labels[1, 2, 0] = 5
    # destination ego is 1 m ahead (+x) of the source: the voxel moves to x index 0
    moved = resample_labels(labels, grid, make_transform(np.eye(3), [1.0, 0.0, 0.0]), fill=9)
    assert moved[0, 2, 0] == 5 and moved[1, 2, 0] == 0
    assert np.all(moved[3, :, 0] == 9)  # x = 4.5 in the source: outside
    # 90 degree yaw about the grid centre (2, 2): destination c -> source R (c - 2) + 2; the source
    # centre (1.5, 2.5) comes from destination (2.5, 2.5), i.e. voxel (2, 2)
    about_centre = make_transform(np.eye(3), [2, 2, 0]) @ yaw_transform(0, 0, 0, np.pi / 2)
    about_centre = about_centre @ make_transform(np.eye(3), [-2, -2, 0])
    rot = resample_labels(labels, grid, about_centre, fill=9)
    assert rot[2, 2, 0] == 5 and np.count_nonzero(rot == 5) == 1 and 9 not in rot


def test_coarsened_grid_and_pooled_labels_by_hand() -> None:
    from occ_ros.core.grid import pool_labels
    from occ_ros.datasets.semantickitti import SEMANTICKITTI_GRID

    coarse = SEMANTICKITTI_GRID.coarsened(2)
    assert coarse.shape == (128, 128, 16) and coarse.voxel_size == (0.4, 0.4, 0.4)
    assert coarse.coarsening_of(SEMANTICKITTI_GRID) == 2 and SEMANTICKITTI_GRID.coarsening_of(coarse) is None
    assert SEMANTICKITTI_GRID.coarsening_of(SEMANTICKITTI_GRID) == 1
    assert coarse.coarsening_of(GridSpec.demo()) is None
    with pytest.raises(ValueError, match="every axis must divide"):
        GridSpec((0, 0, 0), (3, 2, 2), (1, 1, 1)).coarsened(2)

    free, ignore = 9, 255
    labels = np.full((4, 2, 2), free, np.uint8)  # two coarse voxels along x
    labels[0, 0, 0] = labels[1, 1, 1] = 3  # coarse 0: two 3s, one 5 -> 3
    labels[0, 1, 0] = 5
    labels[2:, :, :] = ignore  # coarse 1: nothing observed ...
    pooled, observed = pool_labels(labels, 2, free)
    assert pooled[:, 0, 0].tolist() == [3, ignore] and observed[:, 0, 0].tolist() == [True, False]
    labels[3, 1, 1] = free  # ... one free child observed -> free
    labels[2, 0, 0] = 7  # an occupied child outside the mask does not count
    mask = np.ones(labels.shape, bool)
    mask[2, 0, 0] = False
    pooled, observed = pool_labels(labels, 2, free, mask=mask)
    assert pooled[:, 0, 0].tolist() == [3, free] and observed.all()
    labels[1, 0, 0] = labels[1, 0, 1] = 5  # now 5 x3 vs 3 x2 -> 5; a tie would go to the lower index
    assert pool_labels(labels, 2, free)[0][0, 0, 0] == 5


def test_occ_eval_rayiou_on_a_synthetic_sequence(sequence: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    code = main(
        ["eval", "--pred", str(sequence / "gts"), "--gt", str(sequence / "gts"), "--rayiou", "--json", str(out)]
    )
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["miou"] == 100.0 and doc["rayiou"]["rayiou"] == 100.0 and doc["rayiou"]["samples"] == 3
    assert set(doc["rayiou"]) >= {"rayiou@1", "rayiou@2", "rayiou@4", "per_class"}
    # predicting the previous frame's map without motion compensation loses accuracy
    pred = tmp_path / "pred"
    frames = sorted((sequence / "gts" / "synth_0003").iterdir())
    for i, f in enumerate(frames):
        previous = load_labels(frames[max(i - 1, 0)] / "labels.npz")
        moved = OccupancyLabels(previous.semantics, grid=previous.grid)
        save_labels(pred / "synth_0003" / f.name / "labels.npz", moved)
    code = main(["eval", "--pred", str(pred), "--gt", str(sequence / "gts"), "--rayiou", "--json", str(out), "--quiet"])
    doc = json.loads(out.read_text())
    assert code == 0 and 0 < doc["miou"] < 100 and 0 < doc["rayiou"]["rayiou"] < 100
    assert main(["eval", "--pred", str(pred), "--gt", str(pred), "--rayiou", "--quiet"]) == 1


def test_occ_eval_gt_takes_a_dataset_folder_or_its_label_folder(sequence: Path, tmp_path: Path) -> None:
    """`occ eval --gt` takes the label folder (DIR/gts) or, as `occ replay --gt` does, the dataset folder DIR; RayIoU
    then finds its ego poses in --gt itself."""
    docs = []
    for gt in (sequence / "gts", sequence):
        out = tmp_path / f"{gt.name}.json"
        args = ["eval", "--pred", str(sequence / "gts"), "--gt", str(gt), "--rayiou", "--json", str(out), "--quiet"]
        assert main(args) == 0
        docs.append(json.loads(out.read_text()))
    assert docs[0] == docs[1] and docs[1]["miou"] == 100.0 and docs[1]["rayiou"]["samples"] == 3
    bare = tmp_path / "bare"  # a dataset folder without ground truth
    bare.mkdir()
    shutil.copy(sequence / "meta.json", bare / "meta.json")
    with pytest.raises(LabelFileError, match=f"{bare} is a dataset folder without ground truth: no gts/ folder"):
        evaluate(sequence / "gts", bare)


def test_a_folder_of_unknown_kind_names_the_kind_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"occ inspect: error: {tmp_path}: cannot tell the dataset kind (expected meta.json")
    assert err.rstrip().endswith("name the kind with --kind (synth, nuscenes, semantickitti or rosbag)")
    assert "pass kind" not in err


def test_occ_inspect_synth_and_bag(sequence: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from occ_ros.core.rig import config_path

    assert main(["inspect", str(sequence)]) == 0
    out = capsys.readouterr().out
    assert "synth dataset" in out and "3 samples" in out and "CAM_BACK_RIGHT" in out
    assert main(["inspect", str(sequence / "bag"), "--config", str(config_path("datasets", "synth_bag.yaml"))]) == 0
    out = capsys.readouterr().out
    assert "rosbag dataset" in out and "3 samples from 3 CAM_FRONT messages" in out
    assert main(["inspect", str(sequence / "bag")]) == 1
    err = capsys.readouterr().err  # names the flag, not the Python argument
    assert "camera/topic YAML: pass --dataset-config YAML (a template: config/datasets/rosbag_example.yaml)" in err
    assert "config=" not in err
    synth_bag = str(config_path("datasets", "synth_bag.yaml"))
    assert main(["inspect", str(sequence / "bag"), "--dataset-config", synth_bag]) == 0  # the other commands' flag
    assert "rosbag dataset" in capsys.readouterr().out
    wrong = config_path("datasets", "rosbag_example.yaml")
    assert main(["inspect", str(sequence / "bag"), "--config", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert (
        "lacks topic(s)" in err
        and "/cam_left/image_raw" in err
        and "/cam_front/image_raw  [sensor_msgs/msg/Image]" in err
    )
