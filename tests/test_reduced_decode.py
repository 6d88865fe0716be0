"""Reduced JPEG decode (libjpeg DCT scaling) in the node's pipeline: same intrinsics, network input within tolerance.

The documented tolerance (docs/node.md, "Compressed images"): over the six real nuScenes 1600x900 JPEGs at the Occ3D
input (704 wide, decoded at 1/2) and at 352 wide (1/4), the network input of the reduced decode differs from the
full decode's by a mean |difference| <= 0.5 and a 99th percentile <= 2 intensity levels (0-255 units, i.e. after
undoing the normalisation); the intrinsics and extrinsics are identical.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from occ_ros.core.frames import CameraMessage, FrameSet
from occ_ros.core.grid import GridSpec
from occ_ros.core.preprocess import NetworkInput, PreprocessConfig, decode_reduction, preprocess
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.inference.backend import InferenceBackend, InferenceTiming
from occ_ros.inference.model_info import ModelInfo
from occ_ros.io.images import image_to_rgb, is_jpeg
from occ_ros.io.rosbag import compressed_image_from_bytes, image_msg
from occ_ros.pipeline.pipeline import OccupancyPipeline

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
nuscenes = pytest.mark.skipif(not (FIXTURES / "nuscenes_sample").is_dir(), reason="../shared/fixtures not present")

MEAN_TOLERANCE = 0.5  # intensity levels, 0-255
P99_TOLERANCE = 2.0


@pytest.mark.parametrize(
    ("size", "width", "expected"),
    [
        ((1600, 900), 704, 2),  # k = 2 (nuScenes -> Occ3D input)
        ((1600, 900), 800, 2),  # k = 2, the box filter alone
        ((1600, 900), 352, 4),  # k = 4
        ((1600, 900), 200, 4),  # k = 8, but 900 / 8 is not whole: 4
        ((1600, 900), 176, 1),  # k = 9: odd, no power of two divides it
        ((1920, 1080), 704, 2),
        ((1920, 1080), 240, 8),
        ((2112, 1188), 704, 1),  # k = 3
        ((1601, 900), 704, 1),  # the width is not whole at 1/2
        ((1241, 376), 704, 1),  # k = 1: upsampling or a fractional factor below 2
        ((640, 480), 704, 1),
    ],
)
def test_decode_reduction_is_the_largest_power_of_two_dividing_the_box_factor_and_the_size(size, width, expected):
    assert decode_reduction(size[0], size[1], PreprocessConfig(64, width)) == expected


def _keyframe() -> Any:
    from occ_ros.datasets.keyframe import load_keyframe

    return load_keyframe(FIXTURES / "nuscenes_sample")


def _levels(net: NetworkInput, config: PreprocessConfig) -> np.ndarray:
    """The network images back in 0-255 intensity units, float64."""
    std = np.asarray(config.std, dtype=np.float64).reshape(1, 3, 1, 1)
    mean = np.asarray(config.mean, dtype=np.float64).reshape(1, 3, 1, 1)
    return (net.images.astype(np.float64) * std + mean) * 255.0


@nuscenes
@pytest.mark.parametrize(("width", "height", "r"), [(704, 256, 2), (352, 128, 4)])
def test_reduced_jpeg_decode_stays_within_the_documented_tolerance_of_the_full_decode(width, height, r):
    keyframe = _keyframe()
    config = PreprocessConfig(height, width)
    msgs = {cam.name: compressed_image_from_bytes(keyframe.jpeg[cam.name], 0, cam.frame_id) for cam in keyframe.rig}
    assert all(is_jpeg(m) for m in msgs.values())
    assert decode_reduction(1600, 900, config) == r
    full = {name: image_to_rgb(m) for name, m in msgs.items()}
    reduced = {name: image_to_rgb(m, reduction=r) for name, m in msgs.items()}
    assert all(image.shape == (900 // r, 1600 // r, 3) for image in reduced.values())
    a = preprocess(full, keyframe.rig, config)
    b = preprocess(reduced, keyframe.rig, config, {name: r for name in reduced})
    diff = np.abs(_levels(a, config) - _levels(b, config))
    assert diff.mean() <= MEAN_TOLERANCE
    assert np.percentile(diff, 99) <= P99_TOLERANCE
    np.testing.assert_array_equal(a.K, b.K)
    np.testing.assert_array_equal(a.cam_from_ego, b.cam_from_ego)
    # the reduced decode is the r x r block average to within the same tolerance (an independent reference)
    name = keyframe.rig[0].name
    box = cv2.resize(full[name], (1600 // r, 900 // r), interpolation=cv2.INTER_AREA).astype(np.float64)
    assert np.abs(box - reduced[name]).mean() <= MEAN_TOLERANCE


class _CapturingBackend(InferenceBackend):
    """The Occ3D-config model interface; records the network input of every call, predicts all free."""

    name = "onnxruntime"

    def __init__(self, rig: Any) -> None:
        vocabulary = Vocabulary.occ3d()
        info = ModelInfo(GridSpec.named("occ3d"), vocabulary, tuple(c.name for c in rig), PreprocessConfig(256, 704))
        super().__init__("models/capture.onnx", info)
        self.feeds: list[dict[str, np.ndarray]] = []

    @property
    def provider(self) -> str:
        return "capture"

    def _run(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], InferenceTiming]:
        self.feeds.append({k: np.array(v) for k, v in feeds.items()})
        labels = np.full((1, *self.info.grid.shape), self.info.vocabulary.free_index, np.uint8)
        return {"labels": labels, "confidence": np.ones(labels.shape, np.float32)}, InferenceTiming(0, 0, 0)


def _frame(frame: FrameSet, image_of: Any) -> FrameSet:
    cams = {c.name: CameraMessage(c.name, image_of(c), c.info, c.base_from_optical) for c in frame.cameras.values()}
    return FrameSet(frame.stamp_ns, cams)


@nuscenes
def test_the_pipeline_decodes_jpegs_reduced_and_feeds_the_full_decode_intrinsics():
    keyframe = _keyframe()
    backend = _CapturingBackend(keyframe.rig)
    pipeline = OccupancyPipeline(backend)
    jpeg_frame = keyframe.frame_set()
    decoded = keyframe.images()  # full-size decode of the same JPEGs
    raw_frame = _frame(jpeg_frame, lambda c: image_msg(decoded[c.name], jpeg_frame.stamp_ns, c.info.header.frame_id))
    png_frame = _frame(
        jpeg_frame,
        lambda c: compressed_image_from_bytes(
            cv2.imencode(".png", cv2.cvtColor(decoded[c.name], cv2.COLOR_RGB2BGR))[1], 0, c.info.header.frame_id, "png"
        ),
    )
    for frame in (jpeg_frame, raw_frame, png_frame):
        pipeline.process(frame)
    jpeg, raw, png = backend.feeds
    image_key = "images"
    config = backend.info.preprocess
    std = np.asarray(config.std).reshape(1, 1, 3, 1, 1) * 255.0
    diff = np.abs(jpeg[image_key] - raw[image_key]) * std  # normalised -> 0-255 units
    assert diff.mean() <= MEAN_TOLERANCE
    assert np.percentile(diff, 99) <= P99_TOLERANCE
    assert diff.max() > 0  # it really was the reduced decode
    for key in raw:
        if key != image_key:
            np.testing.assert_array_equal(jpeg[key], raw[key])  # intrinsics, extrinsics: identical
    for key in raw:  # PNG has no DCT scaling: decoded at full size, exactly the raw image's input
        np.testing.assert_array_equal(png[key], raw[key])
    assert pipeline.rigs.rebuilds == 1


@nuscenes
def test_a_calibration_change_rebuilds_what_the_pipeline_keeps_per_rig():
    """The per-rig Preprocessor (intrinsics, geometry) follows a CameraInfo change, and goes back with it."""
    from occ_ros.core.rig import Camera, CameraRig
    from occ_ros.io.rosbag import camera_info_msg

    keyframe = _keyframe()
    backend = _CapturingBackend(keyframe.rig)
    pipeline = OccupancyPipeline(backend)
    frame = keyframe.frame_set()
    front = keyframe.rig[0]
    K = front.K.copy()
    K[0, 0] *= 1.01
    moved = Camera(front.name, front.frame_id, front.width, front.height, K, front.cam_from_ego)
    changed = FrameSet(
        frame.stamp_ns,
        {
            **frame.cameras,
            front.name: CameraMessage(
                front.name, frame.cameras[front.name].image, camera_info_msg(moved, 0), front.ego_from_cam
            ),
        },
    )
    for f in (frame, changed, frame):
        pipeline.process(f)
    config = backend.info.preprocess
    blank = {cam.name: np.zeros((cam.height, cam.width, 3), np.uint8) for cam in keyframe.rig}
    expected = [
        preprocess(blank, keyframe.rig, config).K,
        preprocess(blank, CameraRig((moved, *keyframe.rig.cameras[1:])), config).K,
        preprocess(blank, keyframe.rig, config).K,
    ]
    for feeds, K_expected in zip(backend.feeds, expected, strict=True):
        np.testing.assert_allclose(feeds["K"][0], K_expected, rtol=1e-6)
    assert not np.allclose(expected[0], expected[1])
    assert pipeline.rigs.rebuilds == 3


def test_only_jpegs_decode_reduced_and_a_bad_factor_is_named():
    from occ_ros.io.rosbag import compressed_image_msg

    rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    jpeg, png, raw = (
        compressed_image_msg(rgb, 0, "cam"),
        compressed_image_msg(rgb, 0, "cam", "png"),
        image_msg(rgb, 0, "cam"),
    )
    assert is_jpeg(jpeg) and not is_jpeg(png) and not is_jpeg(raw)
    assert image_to_rgb(jpeg, reduction=4).shape == (12, 16, 3)
    np.testing.assert_array_equal(image_to_rgb(png, reduction=2), rgb)  # lossless, full size
    np.testing.assert_array_equal(image_to_rgb(raw, reduction=2), rgb)
    with pytest.raises(ValueError, match="reduction must be 1, 2, 4 or 8, got 3"):
        image_to_rgb(jpeg, reduction=3)
