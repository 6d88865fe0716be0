"""``occ demo`` end to end on a short sequence: every stage runs and reports sane numbers."""

from __future__ import annotations

import json
from pathlib import Path

from occ_training.demo import run_demo


def test_demo_stages(tmp_path: Path) -> None:
    summary = run_demo(tmp_path / "demo", frames=3, seed=3)
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["readers"] == summary["readers"]
    assert metrics["readers"]["bag_samples"] == metrics["readers"]["file_samples"] == 3
    assert metrics["readers"]["max_pose_difference_m"] < 1e-9
    baseline = metrics["eval_baseline"]
    assert baseline["samples"] == 3 and baseline["mask"] == "camera"
    # the neighbour frame's map, moved by the true ego motion, is good but not perfect
    assert 30 < baseline["miou"] < 100 and 50 < baseline["iou"] < 100
    assert 30 < baseline["rayiou"]["rayiou"] < 100
    for name in ("cameras", "depth", "semantics", "bev_gt"):
        assert Path(metrics["pictures"][name]).stat().st_size > 1000
    assert len(list((tmp_path / "demo" / "baseline").rglob("labels.npz"))) == 3
    labels = metrics["pseudo_labels"]
    assert labels["depth"] == "relative" and labels["calibration"] == "frame"
    assert len(list((tmp_path / "demo" / "pseudo_labels").rglob("labels.npz"))) == 3
    assert 10 < labels["miou"] < 100 and 30 < labels["iou"] < 100
    assert Path(labels["picture"]).stat().st_size > 1000
    network = metrics["network"]
    # the shipped checkpoint (trained on other seeds) predicts every frame; make demo never trains
    assert network["frames"] == 3 and network["model"].endswith("demo.ckpt")
    assert len(list((tmp_path / "demo" / "predictions").rglob("labels.npz"))) == 3
    assert 20 < network["miou"] < 100 and 40 < network["iou"] < 100
    assert Path(network["picture"]).stat().st_size > 1000
    assert network["query"]["voxels"] > 0 and Path(network["query"]["picture"]).stat().st_size > 1000
    exported = metrics["export"]
    # the checkpoint as a verified ONNX: parity with PyTorch, the TensorRT op check, predict through ONNX Runtime
    assert Path(exported["onnx"]).stat().st_size > 100_000
    assert exported["parity_agreement"] >= 0.999 and exported["trt_compat_ok"]
    assert exported["predict_agreement"] >= 0.999
    assert len(list((tmp_path / "demo" / "predictions_onnx").rglob("labels.npz"))) == 3
    assert exported["p50_ms"]["onnxruntime"] > 0 and exported["p50_ms"]["torch"] > 0
    replayed = metrics["replay"]
    # the recorded bag through the node's pipeline gives occ predict's labels, frame by frame
    assert replayed["synchronized"] == replayed["processed"] == 3
    assert replayed["frames_equal_to_predict"] == replayed["frames"] == 3
    assert replayed["accuracy"]["frames"] == 3 and 20 < replayed["accuracy"]["miou"] < 100
    assert any(Path(replayed["bag"]).glob("*.mcap"))
