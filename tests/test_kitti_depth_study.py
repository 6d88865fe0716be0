"""scripts/kitti_depth_study.py: the LiDAR depth image and the oracle scalings, against hand-computed values."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import kitti_depth_study as study  # noqa: E402

from occ_ros.core.rig import Camera  # noqa: E402

K = np.array([[100.0, 0.0, 10.0], [0.0, 100.0, 5.0], [0.0, 0.0, 1.0]])
# Velodyne (x forward, y left, z up) -> optical (x right, y down, z forward)
CAM_FROM_VELO = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def test_lidar_points_land_on_their_pixels_and_the_nearest_wins() -> None:
    points = np.array(
        [
            [10.0, 0.0, 0.0, 0.5],  # straight ahead: pixel (u, v) = (10, 5), depth 10
            [4.0, 0.0, 0.0, 0.5],  # same pixel, nearer: it wins
            [5.0, -0.2, 0.1, 0.5],  # x_cam = 0.2, y_cam = -0.1 -> u = 10 + 100 * 0.2 / 5 = 14, v = 5 - 2 = 3
            [-3.0, 0.0, 0.0, 0.5],  # behind the camera
            [2.0, 1.0, 0.0, 0.5],  # u = 10 - 50 = -40: outside
        ]
    )
    depth = study.lidar_depth_image(points, Camera("CAM2", "cam2", 20, 10, K, CAM_FROM_VELO))
    expected = np.zeros((10, 20), np.float32)
    expected[5, 10] = 4.0
    expected[3, 14] = 5.0
    np.testing.assert_array_equal(depth, expected)


def test_the_oracles_recover_an_exact_affine_and_a_scale() -> None:
    gt = np.array([[2.0, 4.0, 8.0, 0.0]], np.float32)  # 0 = no LiDAR there
    rel = np.where(gt > 0, (1.0 / np.maximum(gt, 1e-9) - 0.05) / 0.5, 0.7).astype(np.float32)  # 1/d = 0.5 r + 0.05
    np.testing.assert_allclose(study.oracle_lsq(rel, gt)[gt > 0], gt[gt > 0], rtol=1e-5)
    scaled = np.array([[1.0, 0.5, 0.25, 0.1]], np.float32)  # depth = 2 / r
    np.testing.assert_allclose(study.oracle_median(scaled, gt)[gt > 0], gt[gt > 0], rtol=1e-6)
    abs_rel, delta1 = study.frame_scores(np.array([[2.2, 4.0, 8.0, 9.0]], np.float32), gt)
    assert abs_rel == pytest.approx(0.2 / 2.0 / 3, rel=1e-6) and delta1 == 1.0
