"""A real keyframe folder (JPEGs + LiDAR + nuScenes-style calib.json) read into the node's input: hand-made folders
with known geometry, and the real nuScenes fixture when it is present."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from occ_ros.core.rig import NUSCENES_CAMERAS
from occ_ros.datasets.keyframe import load_keyframe
from occ_ros.io.images import image_to_rgb
from occ_tools.demo import DEFAULT_FIXTURES

NUSC = DEFAULT_FIXTURES / "nuscenes_sample"

# A forward camera at 1.5 m height: optical z = ego x, optical x = -ego y, optical y = -ego z.
CAM_TO_EGO = [[0, 0, 1, 0.0], [-1, 0, 0, 0.0], [0, -1, 0, 1.5], [0, 0, 0, 1]]
K = [[100.0, 0, 80.0], [0, 100.0, 60.0], [0, 0, 1]]
LIDAR_TO_EGO = np.array([[1, 0, 0, 1.0], [0, 1, 0, 0], [0, 0, 1, 2.0], [0, 0, 0, 1]], dtype=float)


def _folder(tmp_path: Path, lidar_values: np.ndarray | None = None) -> Path:
    image = np.zeros((120, 160, 3), np.uint8)
    image[:, :80] = (200, 30, 30)  # left half red (RGB)
    cv2.imwrite(str(tmp_path / "front.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    points = np.array([[9.0, 0.0, -0.5, 0.3, 1.0], [19.0, 2.0, -2.0, 0.1, 7.0]], dtype=np.float32)
    (lidar_values if lidar_values is not None else points).tofile(tmp_path / "lidar.bin")
    lidar2cam = np.linalg.inv(np.asarray(CAM_TO_EGO, float)) @ LIDAR_TO_EGO
    calib = {
        "timestamp_s": 1532402927.647951,
        "lidar": {"file": "lidar.bin", "lidar2ego": LIDAR_TO_EGO.tolist()},
        "cameras": {
            "CAM_FRONT": {
                "file": "front.jpg",
                "image_size_wh": [160, 120],
                "cam2img": K,
                "cam2ego": CAM_TO_EGO,
                "lidar2cam": lidar2cam.tolist(),
            }
        },
    }
    (tmp_path / "calib.json").write_text(json.dumps(calib))
    return tmp_path


def test_lidar_points_project_where_the_pinhole_model_puts_them(tmp_path):
    keyframe = load_keyframe(_folder(tmp_path))
    assert keyframe.stamp_ns == 1_532_402_927_647_951_000  # microseconds kept exactly, not float-rounded
    (cam,) = keyframe.rig
    uv, depth = cam.project(keyframe.lidar_points_for(cam))
    # LiDAR (9, 0, -0.5) -> ego (10, 0, 1.5): on the optical axis at 10 m, 0 m above the camera -> the principal point
    # LiDAR (19, 2, -2) -> ego (20, 2, 0): 20 m ahead, 2 m left, 1.5 m below -> u = 80 - 100*2/20, v = 60 + 100*1.5/20
    np.testing.assert_allclose(depth, [10.0, 20.0], atol=1e-9)
    np.testing.assert_allclose(uv, [[80.0, 60.0], [70.0, 67.5]], atol=1e-9)


def test_the_frame_set_carries_the_original_jpeg_and_decodes_to_the_same_pixels(tmp_path):
    keyframe = load_keyframe(_folder(tmp_path))
    frame = keyframe.frame_set()
    message = frame.cameras["CAM_FRONT"]
    assert bytes(message.image.data) == (tmp_path / "front.jpg").read_bytes()
    assert message.info.width == 160 and message.info.height == 120 and message.info.k[0] == 100.0
    np.testing.assert_allclose(message.base_from_optical, CAM_TO_EGO, atol=1e-12)
    decoded = image_to_rgb(message.image)
    np.testing.assert_array_equal(decoded, keyframe.images()["CAM_FRONT"])
    # the JPEG keeps the left half red and the right half black
    assert decoded[60, 20, 0] > 150 and decoded[60, 20, 1] < 80 and decoded[60, 140].max() < 30


def test_bad_folders_get_errors_naming_the_file_and_field(tmp_path):
    with pytest.raises(ValueError, match="calib.json"):
        load_keyframe(tmp_path)
    folder = tmp_path / "a"
    folder.mkdir()
    _folder(folder)
    (folder / "front.jpg").unlink()
    with pytest.raises(ValueError, match=r"cameras\.CAM_FRONT\.file 'front\.jpg' not found"):
        load_keyframe(folder)
    odd = tmp_path / "b"
    odd.mkdir()
    _folder(odd, lidar_values=np.zeros(7, np.float32))
    with pytest.raises(ValueError, match=r"lidar\.bin: 7 float32 values is not a whole number of 5-value"):
        load_keyframe(odd)


@pytest.mark.skipif(not (NUSC / "calib.json").exists(), reason="../shared/fixtures/nuscenes_sample not present")
def test_the_real_nuscenes_keyframe_lands_its_lidar_on_every_image():
    keyframe = load_keyframe(NUSC)
    assert keyframe.rig.names == list(NUSCENES_CAMERAS)
    assert keyframe.lidar.shape == (34_688, 3)
    images = keyframe.images()
    for cam in keyframe.rig:
        assert images[cam.name].shape == (900, 1600, 3)
        uv, depth = cam.project(keyframe.lidar_points_for(cam))
        inside = cam.in_image(uv) & (depth > 1.0)
        # the fixture's README: about 2,900-4,900 points fall inside each image at depth > 1 m
        assert 2_900 <= inside.sum() <= 4_900, cam.name
