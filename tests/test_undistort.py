"""Lens distortion: the one preprocessing undoes it, on real geometry; the camera model carries it everywhere.

The distorted test images are made independently of the code under test: for every pixel of the distorted image,
where it comes from in a known pinhole image is computed with ``cv2.undistortPointsIter`` (plumb_bob) or
``cv2.fisheye.undistortPoints`` (equidistant), checked against the forward models (hand-written Brown-Conrady,
``cv2.fisheye.distortPoints``), and the pinhole image is sampled there.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml

from occ_ros.core.frames import SkipReason
from occ_ros.core.preprocess import PreprocessConfig, adjust_intrinsics, preprocess
from occ_ros.core.rig import Camera, CameraRig, UnsupportedDistortion
from occ_ros.core.undistort import MAPS, UndistortCache
from occ_ros.io import rosbag as rio

W, H = 640, 480
K = np.array([[400.0, 0.0, 319.5], [0.0, 400.0, 239.5], [0.0, 0.0, 1.0]])
OPTICAL_FROM_EGO = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
PLUMB_BOB = np.array([-0.35, 0.12, 0.0012, -0.0008, -0.02])  # strong barrel, like a wide-angle machine-vision lens
EQUIDISTANT = np.array([0.08, -0.03, 0.01, -0.002])
PATTERN = (9, 7)  # inner corners
SQUARE = 30  # pixels in the pinhole image


def _camera(model: str = "", D: np.ndarray | None = None, name: str = "CAM_FRONT") -> Camera:
    return Camera(name, "cam_front_optical_frame", W, H, K, OPTICAL_FROM_EGO, model, np.zeros(0) if D is None else D)


def _checkerboard() -> tuple[np.ndarray, np.ndarray]:
    """The pinhole image: a checkerboard centred in a white frame (RGB uint8), and its (N, 2) inner corners."""
    cols, rows = PATTERN[0] + 1, PATTERN[1] + 1
    x0 = (W - cols * SQUARE) // 2
    y0 = (H - rows * SQUARE) // 2
    img = np.full((H, W), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                img[y0 + r * SQUARE : y0 + (r + 1) * SQUARE, x0 + c * SQUARE : x0 + (c + 1) * SQUARE] = 0
    # pixel centres at integers: the edge between pixel x0 + k*S - 1 and x0 + k*S lies at x0 + k*S - 0.5
    xs = x0 + SQUARE * np.arange(1, cols) - 0.5
    ys = y0 + SQUARE * np.arange(1, rows) - 0.5
    corners = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    return np.repeat(img[..., None], 3, axis=-1), corners


def _brown_conrady(xy: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Forward plumb_bob on normalised coordinates (N, 2), written out by hand."""
    k1, k2, p1, p2, k3 = D
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], -1)


def _undistort_points(distorted_px: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Normalised coordinates of distorted pixels (N, 1, 2), iterated to convergence (OpenCV 4 and 5)."""
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4
        return cv2.undistortPointsIter(distorted_px, K, D, None, None, criteria)
    return cv2.undistortPoints(distorted_px, K, D, criteria=criteria)


def _distort(pinhole: np.ndarray, model: str, D: np.ndarray) -> np.ndarray:
    """The image a camera with (model, D) and intrinsics K takes of the scene whose pinhole image is ``pinhole``."""
    vv, uu = np.mgrid[0:H, 0:W].astype(np.float64)
    distorted_px = np.stack([uu, vv], -1).reshape(-1, 1, 2)
    if model == "equidistant":
        norm = cv2.fisheye.undistortPoints(distorted_px, K, D).reshape(-1, 2)
        back = cv2.fisheye.distortPoints(norm.reshape(-1, 1, 2), K, D).reshape(-1, 2)  # forward model
    else:
        norm = _undistort_points(distorted_px, D).reshape(-1, 2)
        back = _brown_conrady(norm, D) @ K[:2, :2].T + K[:2, 2]
    # The test data is right where the forward model takes it back. Beyond the radius where a strong barrel model
    # stops being monotonic (the outer corners here) no scene point lands: those pixels stay white.
    ok = np.linalg.norm(back - distorted_px.reshape(-1, 2), axis=1) < 1e-3
    assert ok.mean() > 0.95 and ok.reshape(H, W)[60:-60, 80:-80].all()
    src = norm @ K[:2, :2].T + K[:2, 2]  # where in the pinhole image each distorted pixel looks
    src[~ok] = -100.0
    map_x = src[:, 0].reshape(H, W).astype(np.float32)
    map_y = src[:, 1].reshape(H, W).astype(np.float32)
    return cv2.remap(pinhole, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(255,) * 3)


def _corners(image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    found, corners = cv2.findChessboardCorners(gray, PATTERN)
    assert found
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-3)
    corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), criteria).reshape(-1, 2)
    if np.linalg.norm(corners[0] - [0, 0]) > np.linalg.norm(corners[-1] - [0, 0]):
        corners = corners[::-1]  # OpenCV may return the grid from either end
    return corners


@pytest.mark.parametrize("scale", [1.0, 0.5])
@pytest.mark.parametrize(("model", "D"), [("plumb_bob", PLUMB_BOB), ("equidistant", EQUIDISTANT)])
def test_preprocess_undoes_a_known_distortion(model, D, scale):
    pinhole, truth = _checkerboard()
    raw = _distort(pinhole, model, D)
    cam = _camera(model, D)
    # the network input (full size, or half: then undistorted at the network's scale), back to uint8 RGB
    w, h = int(W * scale), int(H * scale)
    config = PreprocessConfig(height=h, width=w)
    net = preprocess({cam.name: raw}, CameraRig((cam,)), config)
    rgb = (net.images[0].transpose(1, 2, 0) * np.array(config.std) + np.array(config.mean)) * 255.0
    undistorted = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    np.testing.assert_allclose(net.K[0], adjust_intrinsics(K, scale, 0), atol=1e-4)  # pinhole: the rig's K, scaled
    truth = (truth + 0.5) * scale - 0.5  # pixel centres at integers
    reference = cv2.resize(pinhole, (w, h), interpolation=cv2.INTER_AREA)

    np.testing.assert_allclose(_corners(reference), truth, atol=0.1)  # the detector is accurate here
    err = np.linalg.norm(_corners(undistorted) - truth, axis=1)
    assert err.max() < 1.0 * scale, err.max()  # within a source pixel
    # without undistortion (the old behaviour) the corners are many pixels off
    plain = cv2.resize(raw, (w, h), interpolation=cv2.INTER_AREA)
    assert np.linalg.norm(_corners(plain) - truth, axis=1).max() > 5.0 * scale
    # and the pictures agree away from the square edges (where resampling twice blurs)
    edges = cv2.dilate(cv2.Canny(reference[..., 0], 50, 150), np.ones((5, 5), np.uint8)) > 0
    valid = ~edges
    m = int(40 * scale)
    valid[:m], valid[-m:], valid[:, :m], valid[:, -m:] = False, False, False, False
    diff = np.abs(undistorted.astype(int) - reference.astype(int))[valid]
    assert np.mean(diff) < 2.0 and np.percentile(diff, 99) <= 10


def test_rational_polynomial_is_undistorted_like_opencv():
    D = np.array([-0.3, 0.1, 0.001, -0.001, 0.0, 0.02, -0.01, 0.005])
    cam = _camera("rational_polynomial", D)
    pinhole, _ = _checkerboard()
    vv, uu = np.mgrid[0:H, 0:W].astype(np.float64)
    norm = _undistort_points(np.stack([uu, vv], -1).reshape(-1, 1, 2), D)
    src = norm.reshape(-1, 2) @ K[:2, :2].T + K[:2, 2]
    raw = cv2.remap(pinhole, *(src[:, i].reshape(H, W).astype(np.float32) for i in (0, 1)), cv2.INTER_LINEAR)
    err = np.linalg.norm(_corners(UndistortCache().undistort(raw, cam)) - _corners(pinhole), axis=1)
    assert err.max() < 1.0


def test_the_map_is_built_once_per_calibration_and_zero_d_costs_nothing():
    cache = UndistortCache(capacity=2)
    cam = _camera("plumb_bob", PLUMB_BOB)
    raw = np.zeros((H, W, 3), np.uint8)
    for _ in range(3):
        cache.undistort(raw, cam)
    assert cache.builds == 1
    cache.undistort(raw, _camera("plumb_bob", PLUMB_BOB.copy(), name="CAM_BACK"))  # same calibration, other camera
    assert cache.builds == 1
    cache.undistort(raw, _camera("plumb_bob", PLUMB_BOB * 0.5))  # a new calibration: a new map
    assert cache.builds == 2
    # an all-zero D (what most rectified drivers publish) and no model at all: the image itself, no map
    for pinhole_cam in (_camera("plumb_bob", np.zeros(5)), _camera(), _camera("none"), _camera("equidistant", [])):
        assert not pinhole_cam.is_distorted
        assert cache.undistort(raw, pinhole_cam) is raw
    assert cache.builds == 2
    # preprocess uses the process-wide cache: a second frame of the same rig builds nothing
    rig = CameraRig((cam,))
    config = PreprocessConfig(height=120, width=160)
    preprocess({cam.name: raw}, rig, config)
    before = MAPS.builds
    preprocess({cam.name: raw}, rig, config)
    assert MAPS.builds == before


def test_unknown_models_and_bad_coefficients_are_refused():
    with pytest.raises(UnsupportedDistortion, match="CAM_FRONT.*unsupported distortion_model 'foo'"):
        _camera("foo", PLUMB_BOB)
    with pytest.raises(UnsupportedDistortion, match="without a distortion_model"):
        _camera("", PLUMB_BOB)
    with pytest.raises(ValueError, match=r"'equidistant' takes 4 coefficients, D = \[-0.35"):
        _camera("equidistant", PLUMB_BOB)
    with pytest.raises(ValueError, match="finite"):
        _camera("plumb_bob", np.full(5, np.nan))
    assert _camera("Plumb_Bob ", PLUMB_BOB).distortion_model == "plumb_bob"


def test_the_rig_keeps_its_distortion_through_yaml_resizing_and_camera_info(tmp_path):
    cam = _camera("plumb_bob", PLUMB_BOB)
    rig = CameraRig((cam, _camera(name="CAM_BACK")))
    (tmp_path / "rig.yaml").write_text(yaml.safe_dump(rig.to_dict(), sort_keys=False))
    back = CameraRig.from_file(tmp_path / "rig.yaml")
    assert back == rig and back[0].distortion_model == "plumb_bob"
    np.testing.assert_array_equal(back[0].D, PLUMB_BOB)
    assert not back[1].is_distorted
    assert back[0] != _camera("plumb_bob", PLUMB_BOB * 0.5)  # D is part of the calibration
    np.testing.assert_array_equal(cam.resized(320, 240).D, PLUMB_BOB)  # D is in normalised coordinates
    # a rig written before distortion existed has none
    old = {k: v for k, v in cam.to_dict().items() if k not in ("distortion_model", "D")}
    assert not Camera.from_dict(old).is_distorted
    with pytest.raises(UnsupportedDistortion, match="rig.yaml.*'foo'"):
        Camera.from_dict({**cam.to_dict(), "distortion_model": "foo"}, source="rig.yaml")
    # CameraInfo: the node's and the bag reader's source
    info = rio.camera_info_msg(cam, 1)
    assert info.distortion_model == "plumb_bob" and list(info.d) == list(PLUMB_BOB)
    from_info = CameraRig.from_camera_infos([cam.name], [info], [cam.ego_from_cam])
    assert from_info[0] == cam
    assert list(rio.camera_info_msg(_camera(), 1).d) == [0.0] * 5


def test_the_node_pipeline_skips_an_unknown_model_and_undistorts_a_known_one():
    from occ_ros.core.frames import CameraMessage, FrameSkipped
    from occ_ros.pipeline.rig_cache import RigCache

    cam = _camera("plumb_bob", PLUMB_BOB)
    info = rio.camera_info_msg(cam, 1)
    message = CameraMessage(cam.name, None, info, cam.ego_from_cam)
    cache = RigCache()
    assert cache.rig_for([message])[0] == cam and cache.rebuilds == 1
    info.distortion_model = "foo"
    with pytest.raises(FrameSkipped) as err:
        cache.rig_for([message])
    assert err.value.reason == SkipReason.UNSUPPORTED_DISTORTION and "'foo'" in err.value.detail
    info.distortion_model = "plumb_bob"
    info.d = np.zeros(5)  # a new calibration (a rectified stream): the rig is rebuilt, without distortion
    assert not cache.rig_for([message])[0].is_distorted and cache.rebuilds == 2
