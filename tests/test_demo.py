"""``occ demo`` end to end on a short sequence: every stage runs, reports sane numbers and writes what it says."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from occ_tools.demo import DEFAULT_FIXTURES, run_demo

HAS_FIXTURES = (DEFAULT_FIXTURES / "nuscenes_sample" / "calib.json").exists()


def _picture(path: str, min_width: int = 300) -> tuple[int, int]:
    image = cv2.imread(path)
    assert image is not None, f"{path} is not a readable image"
    assert image.shape[1] >= min_width and image.std() > 5, f"{path} looks empty"
    return image.shape[1], image.shape[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    """``occ demo`` on 3 frames: every stage end to end (minutes; the tests using it are marked ``slow``)."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    summary = run_demo(out, frames=3, seed=3)
    return out, summary


@pytest.mark.slow
def test_the_metrics_file_is_the_summary_and_every_stage_wrote_its_outputs(demo) -> None:
    out, summary = demo
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["readers"] == summary["readers"]
    assert metrics["readers"]["bag_samples"] == metrics["readers"]["file_samples"] == 3
    assert metrics["readers"]["max_pose_difference_m"] < 1e-9
    labels = metrics["pseudo_labels"]
    assert labels["depth"] == "relative" and labels["calibration"] == "frame"
    for folder in ("baseline", "pseudo_labels", "predictions", "predictions_onnx"):
        assert len(list((out / folder).rglob("labels.npz"))) == 3, folder
    network = metrics["network"]
    # the shipped checkpoint (trained on other seeds) predicts every frame; make demo never trains
    assert network["frames"] == 3 and network["model"].endswith("demo.ckpt")
    assert network["query"]["voxels"] > 0 and network["query"]["frames"] == 3
    assert network["query"]["picture_frame"]["scope"] == "camera-visible voxels"  # the same mask on every panel
    assert set(metrics["seconds"]) >= {"synth", "labels", "predict", "export", "replay", "eval", "pictures", "total"}


@pytest.mark.slow
def test_evaluation_scores_baseline_pseudo_labels_and_network_against_the_ground_truth(demo) -> None:
    out, _ = demo
    evaluation = json.loads((out / "metrics.json").read_text())["evaluation"]
    # the neighbour frame's map moved by the true ego motion is good but not perfect; the pseudo-labels and the
    # network (trained on other seeds, from pseudo-labels only) are well above chance on the 17 classes
    assert 30 < evaluation["baseline"]["miou"] < 100 and 50 < evaluation["baseline"]["iou"] < 100
    assert 10 < evaluation["pseudo_labels"]["miou"] < 100 and 30 < evaluation["pseudo_labels"]["iou"] < 100
    assert 20 < evaluation["network"]["miou"] < 100 and 40 < evaluation["network"]["iou"] < 100
    for row in evaluation.values():
        report = json.loads(Path(row["report"]).read_text())
        assert report["miou"] == row["miou"] and report["samples"] == 3 and report["mask"] == "camera"
        assert 0 < row["rayiou"] < 100


@pytest.mark.slow
def test_export_and_replay_reproduce_the_checkpoint_through_onnx_runtime_and_the_node_pipeline(demo) -> None:
    out, _ = demo
    metrics = json.loads((out / "metrics.json").read_text())
    exported = metrics["export"]
    assert Path(exported["onnx"]).stat().st_size > 100_000
    assert exported["parity_agreement"] >= 0.999 and exported["trt_compat_ok"]
    assert exported["predict_agreement"] >= 0.999
    replayed = metrics["replay"]
    assert replayed["synchronized"] == replayed["processed"] == 3
    assert replayed["frames_equal_to_predict"] == replayed["frames"] == 3
    assert replayed["query_voxels_messages"] == 3  # the replay asks the node's ~/query for "car"
    # the replay's accuracy is the network's: same labels, same ground truth
    assert replayed["accuracy"]["miou"] == pytest.approx(metrics["evaluation"]["network"]["miou"], abs=0.01)
    assert any(Path(replayed["bag"]).glob("*.mcap"))
    assert len(Path(replayed["timings"]).read_text().splitlines()) == 1 + 3
    assert replayed["total_p50_ms"] >= replayed["inference_p50_ms"] > 0
    # the replay's MCAP holds one nav_msgs/OccupancyGrid per frame on the node's ~/costmap
    costmap = replayed["costmap"]
    assert costmap["topic"] == "/occupancy_node/costmap" and costmap["messages"] == 3
    assert 0 < costmap["occupied"] < 1 and 0 < costmap["free"] < 1
    assert costmap["occupied"] + costmap["free"] + costmap["unknown"] == pytest.approx(1.0)


@pytest.mark.slow
def test_every_picture_is_a_real_image(demo) -> None:
    _, summary = demo
    pictures = summary["pictures"]
    names = {"cameras", "depth", "semantics", "bev", "voxels_3d", "overlay", "latency", "query", "costmap"}
    assert names <= set(pictures)
    for path in pictures.values():
        _picture(path)
    # overlays are drawn at 3x the 200x112 synthetic cameras, in the 3 x 2 mosaic
    assert _picture(pictures["overlay"]) == (3 * 3 * 200, 2 * 3 * 112)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_FIXTURES, reason="../shared/fixtures/nuscenes_sample not present")
def test_the_real_keyframe_runs_through_the_pipeline_at_full_size(demo) -> None:
    out, summary = demo
    real = json.loads((out / "real" / "metrics.json").read_text())
    assert real == summary["real_data"]
    assert real["image_size"] == [1600, 900] and real["occupied_voxels"] > 0
    # nuScenes' fixture README: about 2,900-4,900 LiDAR points fall inside each image at depth > 1 m
    assert all(2_900 <= n <= 4_900 for n in real["lidar_points_in_image"].values())
    assert {"decode", "preprocess", "inference"} <= set(real["stages_p50_ms"])
    # six 1600x900 images in a 3 x 2 mosaic at half size
    assert _picture(real["pictures"]["overlay"]) == (2400, 900)
    assert _picture(real["pictures"]["lidar"]) == (2400, 900)
    _picture(real["pictures"]["voxels_3d"])


@pytest.mark.slow
@pytest.mark.skipif(HAS_FIXTURES, reason="the fixtures are present: the real-data stage runs")
def test_without_fixtures_the_real_data_stage_says_it_was_skipped(demo) -> None:
    _, summary = demo
    assert str(DEFAULT_FIXTURES) in summary["real_data"]["skipped"]


@pytest.mark.slow
def test_the_train_path_makes_its_data_trains_and_resumes(tmp_path: Path, monkeypatch) -> None:
    """``occ demo --train``'s training step on a tiny recipe: sequences made where missing, a checkpoint that loads,
    and a rerun that resumes the finished run instead of refusing the existing folder."""
    import torch

    from occ_tools import demo as demo_module

    monkeypatch.setattr(demo_module, "DEMO_TRAIN_SEQUENCES", {61: 3})
    monkeypatch.setattr(demo_module, "DEMO_VAL_SEQUENCES", {62: 2})
    overrides = ["steps=2", "ckpt_every=1", "val_every=0", "log_every=1"]
    model = demo_module.train_demo_network(tmp_path / "run", tmp_path / "data", overrides)
    assert (tmp_path / "data" / "seq_61" / "meta.json").exists()
    assert len(list((tmp_path / "data" / "seq_61" / "pseudo_labels").rglob("labels.npz"))) == 3
    assert len(list((tmp_path / "data" / "seq_62" / "pseudo_labels").rglob("labels.npz"))) == 2
    state = torch.load(model, map_location="cpu", weights_only=False)
    assert state["step"] == 2
    again = demo_module.train_demo_network(tmp_path / "run", tmp_path / "data", overrides)
    assert again == model and torch.load(again, map_location="cpu", weights_only=False)["step"] == 2


def test_overrides_without_train_are_refused(capsys) -> None:
    from occ_tools.cli import main

    assert main(["demo", "steps=3"]) != 0
    assert "KEY=VALUE overrides apply to --train only" in capsys.readouterr().err


HAS_KITTI = (DEFAULT_FIXTURES / "kitti_mini" / "sequences").is_dir()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_KITTI, reason="../shared/fixtures/kitti_mini not present")
def test_the_kitti_stage_labels_scores_and_draws_a_real_sequence(demo) -> None:
    out, summary = demo
    kitti = summary["kitti"]
    assert kitti["sequence"] == "04"
    frustum = kitti["frustum"]
    assert frustum["samples"] == 10 and "road" in frustum["present"]
    assert 0 < frustum["miou_present"] < 100 and 0 < frustum["iou_completion"] < 100
    # the official formats: ten raw-id prediction files of 256 * 256 * 32 uint16 next to the ground truth
    predictions = sorted((out / "kitti" / "labels" / "sequences" / "04" / "predictions").glob("*.label"))
    assert len(predictions) == 10 and all(p.stat().st_size == 256 * 256 * 32 * 2 for p in predictions)
    assert len(list((out / "kitti" / "gt" / "sequences" / "04" / "voxels").glob("*.camera_mask"))) == 10
    assert kitti["calibration"]["scale"] > 0
    if "network" in kitti:
        assert kitti["network"]["frustum"]["samples"] == 10
    for name in ("kitti_teachers", "kitti_depth_error", "kitti_bev"):
        _picture(summary["pictures"][name])


@pytest.mark.slow
@pytest.mark.skipif(HAS_KITTI, reason="the KITTI fixture is present: the KITTI stage runs")
def test_without_kitti_the_stage_says_it_was_skipped(demo) -> None:
    _, summary = demo
    assert "kitti_mini" in summary["kitti"]["skipped"]
