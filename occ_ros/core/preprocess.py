"""The one image preprocessing function: camera images -> network input, with matching intrinsics.

Training, export, the ROS node and rosbag replay all call :func:`preprocess`, so the network sees
the same pixels and the same camera model everywhere (train/deploy skew is the classic bug of this
field). It is numpy + OpenCV only, so the runtime needs no torch.

Lens distortion: the image of a camera with distortion (:attr:`~.rig.Camera.is_distorted`) is undistorted to the
pinhole image of the camera's own ``K`` (:mod:`.undistort`, maps cached per calibration), at the network's scale
(scaled first, then remapped straight to the scaled ``K`` below); the geometry below is pinhole throughout.

Geometry (BEVDet-style "resize then crop"): each image is scaled by ``s = width / W_src`` to
``W_src * s`` x ``round(H_src * s)``, then ``crop_top`` rows are cut from the top and the image is
cut (or zero-padded at the bottom) to ``height`` rows. The default crops all excess rows from the
top (sky), keeping the road. Pixel centres sit at integers, so a source pixel ``(u, v)`` lands at
``((u + 0.5) * s - 0.5, (v + 0.5) * s - 0.5 - crop_top)``, and the returned intrinsics are the
source ones with exactly that map applied: projecting with them gives coordinates in the network
image. Extrinsics (``cam_from_ego``) do not change.

Normalisation: ``(rgb / 255 - mean) / std`` per channel (ImageNet statistics by default), channels
first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .rig import CameraRig
from .undistort import undistort

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """Network input size and normalisation.

    Attributes:
        height, width: network input image size in pixels.
        crop: where the rows beyond ``height`` (after scaling to ``width``) are cut: 1.0 all from the
            top (default: the sky goes), 0.0 all from the bottom, 0.5 evenly.
        mean, std: per-channel RGB normalisation of intensities in [0, 1].
    """

    height: int
    width: int
    crop: float = 1.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if int(self.height) < 1 or int(self.width) < 1:
            raise ValueError(f"PreprocessConfig: image size must be positive, got {self.width}x{self.height}")
        if not 0.0 <= self.crop <= 1.0:
            raise ValueError(f"PreprocessConfig.crop must lie in [0, 1], got {self.crop}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"PreprocessConfig: mean and std need 3 values, std > 0; got {self.mean}, {self.std}")

    def scale_and_crop(self, src_width: int, src_height: int) -> tuple[float, int]:
        """(scale, rows cut from the top) for a source image of ``src_width`` x ``src_height``.

        When the scaled image is shorter than ``height`` nothing is cut and the bottom rows are zero
        after normalisation (the mean colour).
        """
        scale = self.width / src_width
        scaled_h = int(round(src_height * scale))
        excess = max(0, scaled_h - self.height)
        return scale, int(round(excess * self.crop))


def adjust_intrinsics(K: np.ndarray, scale: float, crop_top: int) -> np.ndarray:
    """(3, 3) intrinsics of the scaled and cropped image (pixel centres at integers)."""
    out = np.array(K, dtype=np.float64)
    out[0, :] *= scale
    out[1, :] *= scale
    out[0, 2] = (K[0, 2] + 0.5) * scale - 0.5
    out[1, 2] = (K[1, 2] + 0.5) * scale - 0.5 - crop_top
    return out


def source_pixels(
    u: np.ndarray, v: np.ndarray, src_width: int, src_height: int, config: PreprocessConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Network-image pixel coordinates -> source-image pixel coordinates (the inverse of the preprocessing map).

    For reading per-camera 2D maps of the source image (teacher depth, labels, features) at network pixels;
    rows in the zero-padded bottom of the network image map below the source image.
    """
    scale, crop_top = config.scale_and_crop(src_width, src_height)
    us = (np.asarray(u, dtype=np.float64) + 0.5) / scale - 0.5
    vs = (np.asarray(v, dtype=np.float64) + 0.5 + crop_top) / scale - 0.5
    return us, vs


@dataclass(frozen=True)
class NetworkInput:
    """What the network takes for one multi-camera frame (camera order = the rig's).

    Attributes:
        images: (N, 3, H, W) float32, normalised, channels first.
        K: (N, 3, 3) float32 intrinsics of the network images.
        cam_from_ego: (N, 4, 4) float32 extrinsics.
    """

    images: np.ndarray
    K: np.ndarray
    cam_from_ego: np.ndarray


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3): area averaging for downscaling, bilinear otherwise.

    Downscaling by a factor ``f = W / width`` averages ``k x k`` pixel blocks first, ``k = floor(f)`` (OpenCV's
    INTER_AREA to ``(W // k, H // k)``, an exact box filter when ``k`` divides the size), then resamples the
    remaining factor ``f / k < 2`` bilinearly. For an integer factor (e.g. 800x450 -> 200x112) that is exactly
    OpenCV's INTER_AREA; for a fractional one (1600x900 -> 704x396) it stays anti-aliased at a fraction of
    INTER_AREA's cost on fractional ratios (about 1 ms instead of 8-14 ms per nuScenes image on 2 cores). Both
    steps keep pixel centres at ``(u + 0.5) * s - 0.5`` (:func:`adjust_intrinsics`).
    """
    import cv2

    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image
    k = int(src_w // width) if width < src_w else 1
    if k >= 2:
        image = cv2.resize(image, (src_w // k, src_h // k), interpolation=cv2.INTER_AREA)
        if image.shape[1] == width and image.shape[0] == height:
            return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def preprocess(images: Mapping[str, np.ndarray], rig: CameraRig, config: PreprocessConfig) -> NetworkInput:
    """Camera images -> network input (the one function every stage uses).

    Args:
        images: camera name -> (H_src, W_src, 3) uint8 RGB, sized as the rig says.
        rig: the cameras; their order is the network's camera order. Images of cameras with lens distortion are
            undistorted to their ``K`` (the returned intrinsics are pinhole).
        config: network input size and normalisation.
    Raises:
        ValueError: naming the camera, for a missing image or one whose size differs from the rig's.
    """
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    out_images = np.zeros((len(rig), 3, config.height, config.width), dtype=np.float32)
    Ks = np.zeros((len(rig), 3, 3), dtype=np.float32)
    extrinsics = np.zeros((len(rig), 4, 4), dtype=np.float32)
    for i, cam in enumerate(rig):
        if cam.name not in images:
            raise ValueError(f"preprocess: no image for camera {cam.name!r} (have {sorted(images)})")
        image = np.asarray(images[cam.name])
        if image.shape != (cam.height, cam.width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"preprocess: camera {cam.name!r} image is {image.dtype} {image.shape}, "
                f"expected uint8 ({cam.height}, {cam.width}, 3) as its calibration says"
            )
        scale, crop_top = config.scale_and_crop(cam.width, cam.height)
        scaled_h = int(round(cam.height * scale))
        scaled = resize(image, config.width, scaled_h)
        if cam.is_distorted:  # the scaled image is one of the same lens: undistort it to the network's pinhole K
            scaled = undistort(scaled, cam.resized(config.width, scaled_h), adjust_intrinsics(cam.K, scale, 0))
        rows = scaled[crop_top : crop_top + config.height]
        for c in range(3):  # (rgb / 255 - mean) / std in float32, in place per channel: no full-size temporaries
            plane = out_images[i, c, : rows.shape[0]]
            np.divide(rows[:, :, c], np.float32(255.0), out=plane, dtype=np.float32)
            plane -= mean[c]
            plane /= std[c]
        Ks[i] = adjust_intrinsics(cam.K, scale, crop_top)
        extrinsics[i] = cam.cam_from_ego
    return NetworkInput(out_images, Ks, extrinsics)
