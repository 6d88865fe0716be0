"""One synchronized frame -> semantic voxels: the stages the node and ``occ replay`` both run.

:meth:`OccupancyPipeline.process` times every stage into :class:`~.stats.PipelineStats` and turns every problem
with the input into :class:`~.frames.FrameSkipped` (a reason from :class:`~.frames.SkipReason` and a detail naming
the camera or field), so callers warn, count and go on; nothing about a bad frame can stop the pipeline. A backend
that raises while running a frame (any :class:`Exception`: an onnxruntime, CUDA or TensorRT error, or outputs
without ``labels`` / ``confidence``) skips that frame as ``backend``.

Stages (``timings`` keys, seconds): ``decode`` (messages -> RGB), ``calibration`` (rig from CameraInfo + tf, cached),
``preprocess`` (the one :func:`~occ_ros.core.preprocess.preprocess`, the model's own settings), ``inference`` (the
backend), ``postprocess`` (occupied voxels, colours); ``total`` is their sum.

Work that depends only on the calibration is done once per rig: :class:`~.rig_cache.RigCache` returns the same rig
while CameraInfo and tf do not change, and the pipeline keeps the rig's
:class:`~occ_ros.core.preprocess.Preprocessor` (geometry, intrinsics, normalisation tables) and its model check.

Decode: a frame's compressed images are decoded side by side on a small process-wide thread pool (as many
threads as CPUs, at most 8; libjpeg and libpng release the GIL); raw ones are read in place. A JPEG
CompressedImage whose camera is downscaled by 2 or more for the network is decoded smaller by libjpeg's DCT
scaling (:func:`~occ_ros.core.preprocess.decode_reduction`; 1/2 for 1600x900 -> 704 wide), and the preprocess
takes it from there: the intrinsics are the same, and the network input stays within the tolerance
``tests/test_reduced_decode.py`` states of the full decode's. Other formats (PNG) decode at full size.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from occ_ros.core.frames import CameraMessage, FrameSet, FrameSkipped, SkipReason
from occ_ros.core.preprocess import NetworkInput, PreprocessConfig, Preprocessor, decode_reduction
from occ_ros.core.resources import usable_cpus
from occ_ros.core.rig import CameraRig
from occ_ros.inference.backend import BackendError, InferenceBackend
from occ_ros.inference.model_info import ModelInfo, ModelInfoError
from occ_ros.io.images import UnsupportedEncodingError, image_to_rgb, is_jpeg

from .outputs import VoxelCloud, occupied_voxels
from .rig_cache import RigCache
from .stats import PipelineStats

STAGES = ("decode", "calibration", "preprocess", "inference", "postprocess")
LOG = logging.getLogger(__name__)

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _decode_threads() -> int:
    """Threads for decoding a frame's compressed images: the CPUs this process may use, at most 8."""
    return min(8, usable_cpus())


def _decode_pool() -> ThreadPoolExecutor:
    """The process-wide decode pool (threads start on first use and idle between frames)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=_decode_threads(), thread_name_prefix="occ_decode")
        return _POOL


def _reduction(cam: CameraMessage, config: PreprocessConfig) -> int:
    """DCT-scaling factor to decode this camera's image at (1 unless a JPEG whose CameraInfo allows more)."""
    info: Any = cam.info
    if info is None or not is_jpeg(cam.image):
        return 1
    try:
        return decode_reduction(int(info.width), int(info.height), config)
    except (TypeError, ValueError, ZeroDivisionError):  # a malformed CameraInfo: the rig reports it
        return 1


def _decode(cam: CameraMessage, config: PreprocessConfig) -> tuple[np.ndarray, int]:
    """One camera's image as RGB (a read-only view for raw ``rgb8``) and the reduction it was decoded at
    (:func:`_reduction`); every failure a FrameSkipped naming the camera."""
    try:
        reduction = _reduction(cam, config)
        return image_to_rgb(cam.image, copy=False, reduction=reduction), reduction  # preprocess only reads it
    except UnsupportedEncodingError as err:
        raise FrameSkipped(SkipReason.ENCODING, f"camera {cam.name!r}: {err}") from None
    except ValueError as err:  # damaged data: truncated, wrong length, undecodable
        raise FrameSkipped(SkipReason.CORRUPT_IMAGE, f"camera {cam.name!r}: {err}") from None
    except Exception as err:  # a malformed message object (missing fields, wrong types)
        raise FrameSkipped(SkipReason.CORRUPT_IMAGE, f"camera {cam.name!r}: {type(err).__name__}: {err}") from None


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of :class:`OccupancyPipeline`.

    Attributes:
        cameras: camera names in the model's input order (empty: the model's own ``ModelInfo.cameras``).
        base_frame: the frame the voxels are expressed in (the grid's ego frame, e.g. ``base_link``).
        min_confidence: publish only voxels at least this confident; None (default) publishes every non-free
            voxel, exactly what ``occ predict`` writes.
    """

    cameras: tuple[str, ...] = ()
    base_frame: str = "base_link"
    min_confidence: float | None = None


@dataclass
class FrameResult:
    """The pipeline's output for one frame.

    Attributes:
        stamp_ns: the frame's stamp.
        labels: (X, Y, Z) uint8 classes (the model's vocabulary; last = free), indexed [x, y, z] in the grid.
        confidence: (X, Y, Z) float32 probability of that class.
        cloud: the occupied voxels (:func:`~.outputs.occupied_voxels`).
        timings: stage -> seconds (:data:`STAGES` and ``total``).
        outputs: every raw backend output (e.g. ``features``), batch axis removed.
        rig: the camera rig of the frame (base frame; the same object while the calibration does not change).
    """

    stamp_ns: int
    labels: np.ndarray
    confidence: np.ndarray
    cloud: VoxelCloud
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    rig: CameraRig | None = None


class OccupancyPipeline:
    """Decode -> rig -> preprocess -> backend -> voxels, for one model.

    Args:
        backend: a loaded model (any backend).
        config: camera order, base frame, confidence filter.
        stats: where timings and skips are recorded (a new one by default).
    Raises:
        ValueError: a camera list whose length differs from the model's.
    """

    def __init__(
        self, backend: InferenceBackend, config: PipelineConfig | None = None, stats: PipelineStats | None = None
    ) -> None:
        self.backend = backend
        config = config or PipelineConfig()
        if not config.cameras:
            config = PipelineConfig(backend.info.cameras, config.base_frame, config.min_confidence)
        if len(config.cameras) != backend.info.num_cameras:
            raise ValueError(
                f"the pipeline is configured for cameras {list(config.cameras)}, the model {backend.path} takes "
                f"{backend.info.num_cameras} ({list(backend.info.cameras)})"
            )
        self.config = config
        self.stats = stats or PipelineStats()
        self.rigs = RigCache()
        self._preprocessor: Preprocessor | None = None  # of the rig last checked against the model

    @property
    def info(self) -> ModelInfo:
        return self.backend.info

    def process(self, frame: FrameSet) -> FrameResult:
        """Run every stage on one frame; record the timings, or the skip, in :attr:`stats`.

        Raises:
            FrameSkipped: the frame cannot be processed (reason and detail); the pipeline stays usable.
        """
        try:
            result = self._process(frame)
        except FrameSkipped as skip:
            self.stats.record_skip(skip.reason, skip.detail)
            LOG.warning("frame %d skipped (%s): %s", frame.stamp_ns, skip.reason.value, skip.detail)
            raise
        for stage in STAGES:
            self.stats.record_stage(stage, result.timings[stage])
        self.stats.record_processed(result.timings["total"])
        return result

    def _process(self, frame: FrameSet) -> FrameResult:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        missing = [name for name in self.config.cameras if name not in frame.cameras]
        if missing:
            have = sorted(frame.cameras)
            raise FrameSkipped(SkipReason.MISSING_CAMERA, f"no image from cameras {missing} (have {have})")
        cameras = [frame.cameras[name] for name in self.config.cameras]
        pre = self.info.preprocess
        if sum(hasattr(c.image, "format") for c in cameras) > 1 and _decode_threads() > 1:
            # compressed images: libjpeg / libpng release the GIL, so decode side by side (errors in camera order)
            decoded = list(_decode_pool().map(lambda c: _decode(c, pre), cameras))
        else:
            decoded = [_decode(c, pre) for c in cameras]
        images = {cam.name: image for cam, (image, _) in zip(cameras, decoded, strict=True)}
        reductions = {cam.name: r for cam, (_, r) in zip(cameras, decoded, strict=True)}
        t1 = time.perf_counter()
        rig = self.rigs.rig_for(cameras)
        for cam in rig:
            h, w = images[cam.name].shape[:2]
            r = reductions[cam.name]
            if (w * r, h * r) != (cam.width, cam.height):
                at = f" (decoded at 1/{r}; full size about {w * r}x{h * r})" if r > 1 else ""
                raise FrameSkipped(
                    SkipReason.IMAGE_SIZE,
                    f"camera {cam.name!r}: image is {w}x{h}{at}, its CameraInfo says {cam.width}x{cam.height}",
                )
        if self._preprocessor is None or self._preprocessor.rig is not rig:
            try:
                self.info.check_data(None, rig, str(self.backend.path))
            except ModelInfoError as err:
                raise FrameSkipped(SkipReason.IMAGE_SIZE, str(err)) from None
            self._preprocessor = Preprocessor(rig, self.info.preprocess)
        t2 = time.perf_counter()
        net: NetworkInput = self._preprocessor(images, reductions)
        t3 = time.perf_counter()
        try:
            outputs = self.backend(net)
            labels = outputs["labels"]
            confidence = outputs["confidence"]
        except BackendError as err:
            raise FrameSkipped(SkipReason.BACKEND, str(err)) from None
        except Exception as err:  # the runtime's own errors (onnxruntime, CUDA, TensorRT): this frame only
            raise FrameSkipped(SkipReason.BACKEND, f"{self.backend.name} {type(err).__name__}: {err}") from None
        t4 = time.perf_counter()
        cloud = occupied_voxels(labels, confidence, self.info.grid, self.info.vocabulary, self.config.min_confidence)
        t5 = time.perf_counter()
        timings = {
            "decode": t1 - t0,
            "calibration": t2 - t1,
            "preprocess": t3 - t2,
            "inference": t4 - t3,
            "postprocess": t5 - t4,
            "total": t5 - t0,
        }
        return FrameResult(frame.stamp_ns, labels, confidence, cloud, timings, outputs, rig=rig)
