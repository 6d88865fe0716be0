"""The shared preprocessing: resampled pixels and adjusted intrinsics describe the same geometry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from occ_ros.core.preprocess import PreprocessConfig, preprocess
from occ_ros.core.rig import Camera, CameraRig

OPTICAL_FROM_EGO = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])


def _rig(width: int = 64, height: int = 36) -> CameraRig:
    K = np.array([[40.0, 0, 31.5], [0, 40.0, 17.5], [0, 0, 1]])
    return CameraRig((Camera("CAM_FRONT", "cam_front", width, height, K, OPTICAL_FROM_EGO),))


def _coordinate_image(width: int, height: int) -> np.ndarray:
    """R = 4u, G = 4v: each pixel stores its own source coordinates (exactly, for u, v < 64)."""
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    return np.stack([4 * u, 4 * v, np.zeros_like(u)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("crop", [1.0, 0.0, 0.5])
def test_network_pixels_come_from_where_the_adjusted_intrinsics_say(crop):
    rig = _rig()
    config = PreprocessConfig(height=16, width=32, crop=crop)  # scale 0.5 -> 32 x 18, 2 rows cut
    net = preprocess({"CAM_FRONT": _coordinate_image(64, 36)}, rig, config)
    rgb = (net.images[0].transpose(1, 2, 0) * np.array(config.std) + np.array(config.mean)) * 255.0
    src_u, src_v = rgb[..., 0] / 4.0, rgb[..., 1] / 4.0  # what the pixels show
    # Where the geometry says they come from: back-project with the new K, project with the old.
    vv, uu = np.mgrid[0:16, 0:32]
    rays = np.stack([uu, vv, np.ones_like(uu)], -1).reshape(-1, 3) @ np.linalg.inv(net.K[0].astype(np.float64)).T
    src = rays @ rig["CAM_FRONT"].K.T
    np.testing.assert_allclose(src_u.reshape(-1), src[:, 0] / src[:, 2], atol=1e-3)
    np.testing.assert_allclose(src_v.reshape(-1), src[:, 1] / src[:, 2], atol=1e-3)
    assert net.K[0, 1, 2] == pytest.approx((17.5 + 0.5) * 0.5 - 0.5 - round(2 * crop))
    np.testing.assert_array_equal(net.cam_from_ego[0], OPTICAL_FROM_EGO)


def test_a_short_image_is_padded_at_the_bottom():
    config = PreprocessConfig(height=20, width=32)
    net = preprocess({"CAM_FRONT": _coordinate_image(64, 36)}, _rig(), config)
    assert net.images.shape == (1, 3, 20, 32)
    assert np.all(net.images[0, :, 18:] == 0)  # mean colour
    assert net.K[0, 1, 2] == pytest.approx(8.5)


def test_bad_images_name_the_camera():
    config = PreprocessConfig(height=16, width=32)
    with pytest.raises(ValueError, match="no image for camera 'CAM_FRONT'"):
        preprocess({}, _rig(), config)
    with pytest.raises(ValueError, match="CAM_FRONT.*expected uint8 \\(36, 64, 3\\)"):
        preprocess({"CAM_FRONT": np.zeros((30, 64, 3), np.uint8)}, _rig(), config)
    with pytest.raises(ValueError, match="crop"):
        PreprocessConfig(height=16, width=32, crop=2.0)


def test_the_normalisation_is_the_per_pixel_formula_bit_for_bit():
    """The per-channel lookup tables give exactly ``(rgb / 255 - mean) / std`` in float32, pixel by pixel."""
    config = PreprocessConfig(height=16, width=32, mean=(0.5, 0.25, 0.125), std=(0.2, 0.3, 0.7))
    image = np.random.default_rng(3).integers(0, 256, (36, 64, 3), dtype=np.uint8)
    net = preprocess({"CAM_FRONT": image}, _rig(), config)
    small = cv2.resize(image, (32, 18), interpolation=cv2.INTER_AREA)[2:]  # scale 1/2, the 2 excess rows from the top
    expected = (small.astype(np.float32) / np.float32(255.0) - np.float32(config.mean)) / np.float32(config.std)
    np.testing.assert_array_equal(net.images[0], expected.transpose(2, 0, 1))


@pytest.mark.parametrize(
    ("size", "net", "crop"),
    [
        ((160, 90), (70, 26), 1.0),  # k = 2, then bilinear 80x45 -> 70x39, 13 rows cut from the top
        ((160, 90), (70, 26), 0.5),
        ((160, 90), (40, 16), 1.0),  # k = 4, box only: 40x22 (22.5 rounds to 22), 6 rows cut
        ((161, 90), (70, 26), 1.0),  # k = 2 does not divide the width: the full box step
        ((1600, 900), (704, 256), 1.0),  # nuScenes -> Occ3D input
    ],
)
def test_the_resize_is_box_then_bilinear_exactly_whatever_rows_it_skips(size, net, crop):
    """Against OpenCV called the plain way: INTER_AREA by the integer factor, then INTER_LINEAR, then the crop."""
    w, h = size
    K = np.array([[w / 2, 0, w / 2 - 0.5], [0, w / 2, h / 2 - 0.5], [0, 0, 1]])
    rig = CameraRig((Camera("CAM_FRONT", "cam_front", w, h, K, OPTICAL_FROM_EGO),))
    config = PreprocessConfig(height=net[1], width=net[0], crop=crop, mean=(0, 0, 0), std=(1, 1, 1))
    image = np.random.default_rng(w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    got = preprocess({"CAM_FRONT": image}, rig, config).images[0]
    k = w // net[0]
    scaled_h = round(h * net[0] / w)
    crop_top = round((scaled_h - net[1]) * crop)
    boxed = cv2.resize(image, (w // k, h // k), interpolation=cv2.INTER_AREA)
    if boxed.shape[:2] != (scaled_h, net[0]):
        boxed = cv2.resize(boxed, (net[0], scaled_h), interpolation=cv2.INTER_LINEAR)
    expected = boxed[crop_top : crop_top + net[1]].astype(np.float32) / np.float32(255.0)
    np.testing.assert_array_equal(got, expected.transpose(2, 0, 1))
