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

:class:`Preprocessor` is the same function with what depends only on the rig and config computed once (the node
keeps one per calibration). A JPEG may come decoded ``r`` times smaller (libjpeg's DCT scaling,
:func:`decode_reduction`): the ``reductions`` argument says so, and the resize takes it from there with the full
image's geometry and intrinsics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .rig import Camera, CameraRig
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


def resize(image: np.ndarray, width: int, height: int, first_row: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3): area averaging for downscaling, bilinear otherwise.

    Downscaling by a factor ``f = W / width`` averages ``k x k`` pixel blocks first, ``k = floor(f)`` (OpenCV's
    INTER_AREA to ``(W // k, H // k)``, an exact box filter when ``k`` divides the size), then resamples the
    remaining factor ``f / k < 2`` bilinearly. For an integer factor (e.g. 800x450 -> 200x112) that is exactly
    OpenCV's INTER_AREA; for a fractional one (1600x900 -> 704x396) it stays anti-aliased at a fraction of
    INTER_AREA's cost on fractional ratios (about 1 ms instead of 8-14 ms per nuScenes image on 2 cores). Both
    steps keep pixel centres at ``(u + 0.5) * s - 0.5`` (:func:`adjust_intrinsics`).

    ``first_row``: only output rows from this one on are wanted (the rest is cropped away); when ``k`` divides
    ``W`` and ``H`` the box step then skips the source rows that only feed the rows above (left black there). The
    wanted rows are bit-identical to a full resize: block averages of different rows are independent, and the
    bilinear step reads intermediate rows ``floor((row + 0.5) * H_k / height - 0.5)`` and the next, which
    stay computed (with a row of margin).
    """
    import cv2

    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image
    k = int(src_w // width) if width < src_w else 1
    if k >= 2:
        box_w, box_h = src_w // k, src_h // k
        if (box_w, box_h) == (width, height):
            start = first_row
        else:  # the first intermediate row the bilinear step reads for output row first_row, less a margin
            start = int(np.floor((first_row + 0.5) * box_h / height - 0.5)) - 1
        start = min(max(start, 0), box_h - 1)
        if start > 0 and src_w % k == 0 and src_h % k == 0:
            boxed = np.zeros((box_h, box_w, 3), dtype=np.uint8)
            cv2.resize(image[start * k :], (box_w, box_h - start), dst=boxed[start:], interpolation=cv2.INTER_AREA)
            image = boxed
        else:
            image = cv2.resize(image, (box_w, box_h), interpolation=cv2.INTER_AREA)
        if image.shape[1] == width and image.shape[0] == height:
            return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


#: The reduced-size decodes libjpeg offers (DCT scaling; OpenCV ``IMREAD_REDUCED_COLOR_2/4/8``).
JPEG_REDUCTIONS = (8, 4, 2)


def decode_reduction(src_width: int, src_height: int, config: PreprocessConfig) -> int:
    """Factor ``r`` (1, 2, 4 or 8) by which a JPEG of ``src_width`` x ``src_height`` may be decoded smaller for
    ``config`` so that the rest of :func:`preprocess` stays the full-size path (see :func:`preprocess`'s
    ``reductions``).

    :func:`resize` averages ``k x k`` blocks first, ``k = src_width // config.width``; libjpeg's DCT scaling by
    ``r`` stands in for the first ``r x r`` of them, so ``r`` is the largest of 8, 4, 2 that divides ``k``,
    ``src_width`` and ``src_height`` (an exact ``W / r`` x ``H / r`` image, pixel centres at
    ``(u + 0.5) / r - 0.5``, so the remaining resize and the intrinsics are the full path's). 1 when none does.
    """
    k = src_width // config.width if config.width < src_width else 1
    for r in JPEG_REDUCTIONS:
        if k % r == 0 and src_width % r == 0 and src_height % r == 0:
            return r
    return 1


@dataclass(frozen=True)
class _CameraPlan:
    """What :class:`Preprocessor` needs per camera, from the calibration alone."""

    name: str
    width: int
    height: int
    scaled_h: int
    crop_top: int
    undistort_cam: Camera | None  # the camera at the scaled size when its images need undistorting
    undistort_K: np.ndarray


class Preprocessor:
    """:func:`preprocess` for one rig and config, with everything that depends only on them computed once.

    The node builds one per calibration (:class:`~occ_ros.pipeline.pipeline.OccupancyPipeline` keeps it while the
    rig stays the same): geometry per camera, the network intrinsics (N, 3, 3) and extrinsics (N, 4, 4), and the
    normalisation as one 256-entry float32 table per channel (``(v / 255 - mean) / std`` with the same float32
    operations as before, so the output is bit-identical to computing it per pixel).
    """

    def __init__(self, rig: CameraRig, config: PreprocessConfig) -> None:
        self.rig = rig
        self.config = config
        plans = []
        Ks = np.zeros((len(rig), 3, 3), dtype=np.float32)
        extrinsics = np.zeros((len(rig), 4, 4), dtype=np.float32)
        for i, cam in enumerate(rig):
            scale, crop_top = config.scale_and_crop(cam.width, cam.height)
            scaled_h = int(round(cam.height * scale))
            undistort_cam = cam.resized(config.width, scaled_h) if cam.is_distorted else None
            plans.append(
                _CameraPlan(
                    cam.name,
                    cam.width,
                    cam.height,
                    scaled_h,
                    crop_top,
                    undistort_cam,
                    adjust_intrinsics(cam.K, scale, 0),
                )
            )
            Ks[i] = adjust_intrinsics(cam.K, scale, crop_top)
            extrinsics[i] = cam.cam_from_ego
        self._plans = tuple(plans)
        self._Ks = Ks
        self._extrinsics = extrinsics
        levels = np.arange(256, dtype=np.uint8)
        self._tables = []
        for c in range(3):  # (rgb / 255 - mean) / std: the float32 operations of the per-pixel formula
            table = np.divide(levels, np.float32(255.0), dtype=np.float32)
            table -= np.float32(config.mean[c])
            table /= np.float32(config.std[c])
            self._tables.append(table.reshape(1, 256))

    def __call__(self, images: Mapping[str, np.ndarray], reductions: Mapping[str, int] | None = None) -> NetworkInput:
        """Camera images -> network input; see :func:`preprocess`."""
        import cv2

        config = self.config
        reductions = reductions or {}
        out_images = np.empty((len(self._plans), 3, config.height, config.width), dtype=np.float32)
        for i, plan in enumerate(self._plans):
            if plan.name not in images:
                raise ValueError(f"preprocess: no image for camera {plan.name!r} (have {sorted(images)})")
            image = np.asarray(images[plan.name])
            r = int(reductions.get(plan.name, 1))
            if r < 1 or plan.width % r or plan.height % r:
                raise ValueError(
                    f"preprocess: camera {plan.name!r}: reduction {r} does not divide its {plan.width}x{plan.height}"
                )
            expected = (plan.height // r, plan.width // r, 3)
            if image.shape != expected or image.dtype != np.uint8:
                reduced = f" (decoded at 1/{r})" if r > 1 else ""
                raise ValueError(
                    f"preprocess: camera {plan.name!r} image is {image.dtype} {image.shape}, "
                    f"expected uint8 {expected}{reduced} as its calibration says"
                )
            # the rows above the crop are not needed, unless the undistortion may move pixels from there
            first_row = 0 if plan.undistort_cam is not None else plan.crop_top
            scaled = resize(image, config.width, plan.scaled_h, first_row)
            if plan.undistort_cam is not None:  # same lens at the scaled size: undistort it to the network's K
                scaled = undistort(scaled, plan.undistort_cam, plan.undistort_K)
            rows = scaled[plan.crop_top : plan.crop_top + config.height]
            planes = cv2.split(rows)
            for c in range(3):  # the per-channel table, straight into the output plane
                cv2.LUT(planes[c], self._tables[c], dst=out_images[i, c, : rows.shape[0]])
            out_images[i, :, rows.shape[0] :] = 0.0  # a short image: zero-padded at the bottom (the mean colour)
        return NetworkInput(out_images, self._Ks.copy(), self._extrinsics.copy())


def preprocess(
    images: Mapping[str, np.ndarray],
    rig: CameraRig,
    config: PreprocessConfig,
    reductions: Mapping[str, int] | None = None,
) -> NetworkInput:
    """Camera images -> network input (the one function every stage uses).

    Args:
        images: camera name -> (H_src, W_src, 3) uint8 RGB, sized as the rig says.
        rig: the cameras; their order is the network's camera order. Images of cameras with lens distortion are
            undistorted to their ``K`` (the returned intrinsics are pinhole).
        config: network input size and normalisation.
        reductions: camera name -> ``r`` for images that were decoded ``r`` times smaller (a JPEG's DCT scaling,
            :func:`decode_reduction`): such an image is ``(H_src / r, W_src / r, 3)`` and stands for the
            ``r x r`` block average of the full image, so the resize takes it from there; the intrinsics are the
            full image's (identical). Absent cameras: 1.
    Raises:
        ValueError: naming the camera, for a missing image, one whose size differs from the rig's (divided by its
            reduction), or a reduction that does not divide the camera's size.
    """
    return Preprocessor(rig, config)(images, reductions)
