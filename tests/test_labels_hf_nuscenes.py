"""`occ labels --teacher hf` end to end on the real nuScenes keyframe images, with tiny local checkpoints.

The models have random weights, so nothing here is about accuracy: it proves the path a user runs
(local Hugging Face folders -> teachers on real 1600x900 images -> lifting on the Occ3D grid ->
Occ3D files that `occ eval` reads) works on real data and real calibration.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="transformers is not installed")

from test_nuscenes_reader import NUSC, OCC3D_GT, build_nuscenes  # noqa: E402
from tiny_hf import save_tiny_clipseg, save_tiny_depth_anything  # noqa: E402

from occ_ros.datasets.sample import load_labels  # noqa: E402
from occ_tools.cli import main  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (NUSC / "calib.json").is_file() or not OCC3D_GT.is_file(),
    reason="../shared/fixtures (nuscenes_sample, occ3d_sample) not present",
)


def test_hf_teachers_label_real_nuscenes_frames(tmp_path: Path, capsys) -> None:
    root = tmp_path / "nuscenes"
    root.mkdir()
    build_nuscenes(root)
    seg = save_tiny_clipseg(tmp_path / "clipseg")
    depth = save_tiny_depth_anything(tmp_path / "da2_metric", "metric")
    # Random weights are never confident: lift every 8th pixel whatever its confidence.
    settings = tmp_path / "labels.yaml"
    settings.write_text("lifting: {window: 1, min_confidence: 0.0, pixel_stride: 8, ray_stride: 8, min_support: 1}\n")
    out = tmp_path / "labels"
    args = ["labels", "--data", str(root), "--out", str(out), "--teacher", "hf", "--seg-model", str(seg)]
    args += ["--depth-model", str(depth), "--config", str(settings), "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    assert "4 frames written" in capsys.readouterr().out
    files = sorted(out.rglob("labels.npz"))
    assert [f.parent.parent.name for f in files].count("scene-0061") == 3
    labels = load_labels(files[0], num_classes=18, shape=(200, 200, 16))
    assert labels.mask_camera is not None and labels.mask_camera.any()
    assert (labels.semantics != 17).any()  # something was lifted into the grid
    manifest = json.loads((out / "labels.json").read_text())
    assert manifest["teachers"]["kind"] == "hf" and manifest["teachers"]["depth_model"] == str(depth)
    assert main(["eval", "--pred", str(out), "--gt", str(root / "gts"), "--quiet"]) == 0
    # A relative checkpoint where metric depth is asked for is refused, naming the folder.
    relative = save_tiny_depth_anything(tmp_path / "da2_rel", "relative")
    bad = ["labels", "--data", str(root), "--out", str(tmp_path / "o"), "--teacher", "hf", "--seg-model", str(seg)]
    assert main([*bad, "--depth-model", str(relative), "--depth", "metric", "--quiet"]) == 1
    assert str(relative) in capsys.readouterr().err
    np.testing.assert_array_equal(load_labels(files[0]).semantics.shape, (200, 200, 16))
