"""INT8 calibration data for TensorRT 8.6 / 10.x: frames of any dataset or rosbag, preprocessed as at deployment.

:func:`calibration_feeds` reads evenly spaced frames of a dataset folder (``occ synth`` output, nuScenes,
SemanticKITTI) or a rosbag2 bag through :func:`~occ_ros.datasets.open_dataset` and turns each into the model's
batched feeds with the one :func:`~occ_ros.core.preprocess.preprocess` and the model's own preprocessing settings,
so calibration sees exactly the pixels the engine will see.

:func:`make_entropy_calibrator` wraps such feeds in a ``tensorrt.IInt8EntropyCalibrator2``. TensorRT is imported
lazily by the caller, so the subclass is defined at call time from the module it is given; device memory goes
through an injected :class:`DeviceAllocator`, which lets tests check the feeding with a stub module and a fake
allocator. (TensorRT 11 removed calibration: INT8 there needs an ONNX with Q/DQ nodes, see
:mod:`occ_export.tensorrt_build`.)
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from occ_ros.core.preprocess import preprocess
from occ_ros.datasets import DatasetReader, open_dataset
from occ_ros.inference.model_info import INPUT_NAMES, ModelInfo, ModelInfoError
from occ_ros.io.atomic import atomic_write_bytes, atomic_write_text

DEFAULT_FRAMES = 64


class CalibrationError(ValueError):
    """Calibration data that does not fit the model (names the source and both sides)."""


def calibration_indices(count: int, limit: int) -> list[int]:
    """Frame indices to calibrate on: all ``count`` frames, or ``limit`` evenly spaced ones (first and last included).

    Raises:
        CalibrationError: ``limit`` < 1.
    """
    if int(limit) < 1:
        raise CalibrationError(f"the number of calibration frames must be at least 1, got {limit}")
    if count <= limit:
        return list(range(count))
    if limit == 1:
        return [0]
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, int(limit))})


def _check_rig(reader: DatasetReader, info: ModelInfo, source: str) -> None:
    """The data's cameras must be as many as the model's, and tall enough for its input
    (:meth:`ModelInfo.check_data`, without the vocabulary: calibration reads images only)."""
    try:
        info.check_data(None, reader.load(0, images=False).rig, source)
    except ModelInfoError as err:
        raise CalibrationError(f"{err}; calibrate with data from the rig the model was trained for") from None


def calibration_feeds(
    source: str | Path,
    info: ModelInfo,
    limit: int = DEFAULT_FRAMES,
    kind: str = "auto",
    dataset_config: str | Path | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Batched model feeds from up to ``limit`` evenly spaced frames of a dataset or bag.

    The source is opened and checked at call time (errors surface before any TensorRT work); frames are read and
    preprocessed lazily while iterating.

    Args:
        source: a dataset directory or a rosbag2 bag (anything :func:`~occ_ros.datasets.open_dataset` reads).
        info: the model: camera count, ``preprocess`` settings.
        limit: at most this many frames (evenly spaced over the source when it has more).
        kind: dataset kind for ``open_dataset`` (``auto``, ``synth``, ``nuscenes``, ``semantickitti``, ``rosbag``).
        dataset_config: the camera / topic YAML of a rosbag2 bag.
    Yields:
        ``{"images": (1, N, 3, H, W), "K": (1, N, 3, 3), "cam_from_ego": (1, N, 4, 4)}``, float32, C-contiguous
        (the model's I/O contract, camera order = the data's rig order).
    Raises:
        FileNotFoundError / ValueError: the source cannot be opened.
        CalibrationError: no frames, or a camera count / image size that does not fit the model.
    """
    options: dict[str, Any] = {"config": str(dataset_config)} if dataset_config else {}
    reader = open_dataset(source, kind, load_gt=False, **options)
    try:
        if len(reader) == 0:
            raise CalibrationError(f"{source}: the calibration data has no frames")
        _check_rig(reader, info, str(source))
        indices = calibration_indices(len(reader), limit)
    except BaseException:
        _close(reader)
        raise
    return _feeds(reader, indices, info, str(source))


def _close(reader: DatasetReader) -> None:
    close = getattr(reader, "close", None)
    if callable(close):
        close()


def _feeds(reader: DatasetReader, indices: list[int], info: ModelInfo, source: str) -> Iterator[dict[str, np.ndarray]]:
    try:
        for index in indices:
            sample = reader.load(index)
            if len(sample.rig) != info.num_cameras:
                raise CalibrationError(
                    f"{source}: frame {sample.key} has {len(sample.rig)} cameras, the model takes {info.num_cameras}"
                )
            net = preprocess(sample.images, sample.rig, info.preprocess)
            yield {
                "images": np.ascontiguousarray(net.images[None], dtype=np.float32),
                "K": np.ascontiguousarray(net.K[None], dtype=np.float32),
                "cam_from_ego": np.ascontiguousarray(net.cam_from_ego[None], dtype=np.float32),
            }
    finally:
        _close(reader)


def write_calibration_npz(feeds: Iterable[dict[str, np.ndarray]], path: str | Path) -> Path:
    """Stack feeds along the batch axis into an ``.npz`` keyed by input name (written atomically).

    The format NVIDIA TensorRT Model Optimizer takes as ``--calibration_data`` to insert Q/DQ nodes, which is how
    INT8 works on TensorRT 11+ (no calibrator there). Arrays: ``images`` (F, N, 3, H, W), ``K`` (F, N, 3, 3),
    ``cam_from_ego`` (F, N, 4, 4), float32, F = number of feeds.

    Raises:
        CalibrationError: no feeds.
    """
    batches: dict[str, list[np.ndarray]] = {name: [] for name in INPUT_NAMES}
    for feed in feeds:
        for name in INPUT_NAMES:
            batches[name].append(np.asarray(feed[name], dtype=np.float32))
    if not batches[INPUT_NAMES[0]]:
        raise CalibrationError(f"{path}: no calibration frames to write")
    buffer = io.BytesIO()
    stacked = {name: np.concatenate(arrays, axis=0) for name, arrays in batches.items()}
    np.savez(buffer, **stacked)  # type: ignore[arg-type]  # numpy stubs type **kwds too narrowly
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


# ---------------------------------------------------------------------------------------------- cache provenance
def calibration_meta_path(cache_path: str | Path) -> Path:
    """The provenance file of a calibration cache: ``<cache>.json`` (which ONNX the scales belong to)."""
    cache_path = Path(cache_path)
    return cache_path.with_name(cache_path.name + ".json")


def calibration_cache_onnx(cache_path: str | Path) -> str | None:
    """sha256 of the ONNX a calibration cache was made for, or None when unknown (no or unreadable provenance)."""
    try:
        data = json.loads(calibration_meta_path(cache_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("onnx_sha256") if isinstance(data, dict) else None
    return str(value) if value else None


def write_calibration_meta(cache_path: str | Path, onnx_sha256: str, source: str | Path, frames: int) -> Path:
    """Record (atomically) which ONNX and data a calibration cache was made from."""
    path = calibration_meta_path(cache_path)
    meta = {"onnx_sha256": onnx_sha256, "source": str(source), "frames": int(frames)}
    atomic_write_text(path, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- calibrator
class DeviceAllocator(Protocol):
    """Device memory for calibration batches (the tensorrt backend's ``CudaDevice`` fits; tests pass a fake)."""

    def alloc(self, nbytes: int) -> int:
        """Device memory of ``nbytes``; its address."""
        ...

    def upload(self, ptr: int, array: np.ndarray) -> None:
        """Copy the contiguous ``array`` to ``ptr`` and wait."""
        ...

    def free(self, ptr: int) -> None:
        """Release memory from :meth:`alloc`."""
        ...


def make_entropy_calibrator(
    trt_module: Any,
    feeds: Iterable[dict[str, np.ndarray]] | None,
    cache_path: str | Path,
    device_alloc: DeviceAllocator,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` of ``trt_module`` that feeds ``feeds`` and caches its scales in ``cache_path``.

    Args:
        trt_module: the imported ``tensorrt`` module (or a stub with an ``IInt8EntropyCalibrator2`` base class).
        feeds: batches from :func:`calibration_feeds` (None: only an existing cache can be used).
        cache_path: the calibration cache; read when it exists (TensorRT then skips the batches), written
            atomically after calibration. ``trtexec --int8 --calib=<cache_path>`` reads the same file.
        device_alloc: where the batches go (one buffer per input, allocated on the first batch).
    Returns:
        The calibrator. Beyond TensorRT's interface it has ``batches`` (batches fed), ``error`` (the exception that
        stopped the feeding, or None; TensorRT only sees "no more batches") and ``free()``.
    """
    base = trt_module.IInt8EntropyCalibrator2
    cache_file = Path(cache_path)

    class EntropyCalibrator(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self._feeds: Iterator[dict[str, np.ndarray]] | None = iter(feeds) if feeds is not None else None
            self._ptrs: dict[str, tuple[int, int]] = {}
            self.batches = 0
            self.error: BaseException | None = None
            self.cache_file = cache_file

        def get_batch_size(self) -> int:
            return 1  # explicit-batch networks: the batch dimension is part of the input shapes

        def get_batch(self, names: list[str], *_: Any) -> list[int] | None:
            if self._feeds is None or self.error is not None:
                return None
            try:
                feed = next(self._feeds)
            except StopIteration:
                return None
            except Exception as err:  # TensorRT cannot carry it across the callback: build_engine re-raises it
                self.error = err
                return None
            try:
                pointers = [self._upload(str(name), feed) for name in names]
            except Exception as err:  # likewise
                self.error = err
                return None
            self.batches += 1
            return pointers

        def _upload(self, name: str, feed: dict[str, np.ndarray]) -> int:
            if name not in feed:
                raise CalibrationError(f"calibration: the network input {name!r} is not a model input {INPUT_NAMES}")
            array = np.ascontiguousarray(feed[name], dtype=np.float32)
            if name not in self._ptrs:
                self._ptrs[name] = (device_alloc.alloc(array.nbytes), array.nbytes)
            ptr, nbytes = self._ptrs[name]
            if array.nbytes != nbytes:
                raise CalibrationError(
                    f"calibration: input {name!r} batch {self.batches} has shape {array.shape} ({array.nbytes} "
                    f"bytes), the first batch had {nbytes} bytes"
                )
            device_alloc.upload(ptr, array)
            return int(ptr)

        def read_calibration_cache(self, *_: Any) -> bytes | None:
            if self.cache_file.is_file():
                return self.cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any, *_: Any) -> None:
            atomic_write_bytes(self.cache_file, bytes(cache))

        def free(self) -> None:
            for ptr, _ in self._ptrs.values():
                device_alloc.free(ptr)
            self._ptrs.clear()

    return EntropyCalibrator()
