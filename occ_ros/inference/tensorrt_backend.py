"""TensorRT backend: runs a serialized engine (``.engine`` / ``.plan``) with its sidecar JSON on an NVIDIA GPU.

Thin by design: everything that can be decided without TensorRT (sidecar, cache key, runtime checks, I/O shape
checks, dtype mapping) lives in :mod:`.engine_meta` and is tested there. This module only

* imports ``tensorrt`` lazily (missing: :class:`BackendError` with an install hint);
* refuses an engine built for another TensorRT version or GPU (:func:`~.engine_meta.check_engine_runtime`);
* deserializes it and drives it with the named I/O tensor API (``num_io_tensors``, ``get_tensor_name`` /
  ``_mode`` / ``_shape`` / ``_dtype``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``), which
  exists unchanged in TensorRT 8.6, 10.x and 11.x (the binding-index API is gone since 10.0);
* moves data with cuda-python (pinned host buffers, one stream), or torch CUDA tensors when cuda-python is absent.
"""

from __future__ import annotations

import ctypes
import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .backend import BackendError, InferenceBackend, InferenceTiming
from .engine_meta import (
    check_engine_runtime,
    check_io_shapes,
    parse_cuda_device,
    provider_string,
    read_sidecar,
    sidecar_path,
    trt_dtype_to_numpy,
)
from .model_info import INPUT_NAMES

TENSORRT_INSTALL_HINT = (
    "install TensorRT's Python bindings: on Jetson they come with JetPack (apt install python3-libnvinfer), on x86 "
    "`pip install tensorrt` (wheels from NVIDIA's index, https://pypi.nvidia.com) matching your CUDA; or use the "
    "onnxruntime backend"
)
CUDA_INSTALL_HINT = "`pip install cuda-python` (matching your CUDA major version), or a CUDA build of torch"


def import_tensorrt(source: str | Path = "tensorrt backend") -> ModuleType:
    """The ``tensorrt`` module.

    Raises:
        BackendError: TensorRT is not installed (with the install hint).
    """
    try:
        import tensorrt
    except ImportError as err:
        raise BackendError(f"{source}: TensorRT is not installed ({err}); {TENSORRT_INSTALL_HINT}") from None
    return tensorrt


# ---------------------------------------------------------------------------------------------- CUDA memory
class CudaDevice(ABC):
    """One GPU, one stream, and the device / pinned host memory allocated through it.

    Attributes:
        index: CUDA device ordinal.
        name: the GPU's name (e.g. ``Orin``).
        compute_capability: ``"major.minor"``.
        kind: ``cuda-python`` or ``torch``.
    """

    kind: str = ""

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = ""
        self.compute_capability = ""

    @property
    @abstractmethod
    def stream_handle(self) -> int:
        """The stream as an integer handle (``execute_async_v3(stream_handle)``)."""

    @abstractmethod
    def alloc(self, nbytes: int) -> int:
        """Device memory of ``nbytes``; its address."""

    @abstractmethod
    def free(self, ptr: int) -> None:
        """Release device memory from :meth:`alloc`."""

    @abstractmethod
    def host_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A pinned (page-locked) host array, valid until :meth:`close`."""

    @abstractmethod
    def h2d_async(self, ptr: int, array: np.ndarray) -> None:
        """Queue a copy of the contiguous ``array`` to device address ``ptr`` on the stream."""

    @abstractmethod
    def d2h_async(self, array: np.ndarray, ptr: int) -> None:
        """Queue a copy from device address ``ptr`` into the contiguous, writable ``array`` on the stream."""

    @abstractmethod
    def synchronize(self) -> None:
        """Wait for everything queued on the stream."""

    @abstractmethod
    def close(self) -> None:
        """Free every buffer and the stream (idempotent)."""

    def upload(self, ptr: int, array: np.ndarray) -> None:
        """Copy ``array`` to ``ptr`` and wait (calibration batches)."""
        self.h2d_async(ptr, np.ascontiguousarray(array))
        self.synchronize()


def _import_cudart() -> Any:
    """cuda-python's runtime module (``cuda.bindings.runtime``, or ``cuda.cudart`` before cuda-python 12.6), or None."""
    try:
        from cuda.bindings import runtime as cudart

        return cudart
    except ImportError:
        pass
    try:
        from cuda import cudart

        return cudart
    except ImportError:
        return None


class CudaPythonDevice(CudaDevice):
    """:class:`CudaDevice` over cuda-python's runtime API (``cudaMalloc``, ``cudaMallocHost``, ``cudaMemcpyAsync``)."""

    kind = "cuda-python"

    def __init__(self, cudart: Any, index: int) -> None:
        super().__init__(index)
        self._rt = cudart
        self._device_ptrs: set[int] = set()
        self._host_ptrs: list[int] = []
        self._call(cudart.cudaSetDevice(index), f"cudaSetDevice({index})")
        props = self._call(cudart.cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
        raw = props.name
        self.name = (bytes(raw).split(b"\0")[0].decode(errors="replace") if not isinstance(raw, str) else raw).strip()
        self.compute_capability = f"{int(props.major)}.{int(props.minor)}"
        self._stream: Any = self._call(cudart.cudaStreamCreate(), "cudaStreamCreate")

    def _call(self, result: Any, what: str) -> Any:
        """Unpack cuda-python's ``(error, value...)`` tuples; raise BackendError on an error."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self._rt.cudaError_t.cudaSuccess:
            raise BackendError(f"CUDA error in {what} on device {self.index}: {err}")
        return values[0] if len(values) == 1 else tuple(values) if values else None

    @property
    def stream_handle(self) -> int:
        return int(self._stream)

    def alloc(self, nbytes: int) -> int:
        ptr = int(self._call(self._rt.cudaMalloc(max(1, int(nbytes))), f"cudaMalloc({nbytes})"))
        self._device_ptrs.add(ptr)
        return ptr

    def free(self, ptr: int) -> None:
        if ptr in self._device_ptrs:
            self._device_ptrs.discard(ptr)
            self._call(self._rt.cudaFree(ptr), "cudaFree")

    def host_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(1, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        ptr = int(self._call(self._rt.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})"))
        self._host_ptrs.append(ptr)
        raw = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8)), shape=(nbytes,))
        count = int(np.prod(shape, dtype=np.int64))
        return raw[: count * dtype.itemsize].view(dtype).reshape(shape)

    def h2d_async(self, ptr: int, array: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self._rt.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, kind, self._stream), "H2D copy")

    def d2h_async(self, array: np.ndarray, ptr: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self._rt.cudaMemcpyAsync(array.ctypes.data, ptr, array.nbytes, kind, self._stream), "D2H copy")

    def synchronize(self) -> None:
        self._call(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        for ptr in list(self._device_ptrs):
            self.free(ptr)
        for ptr in self._host_ptrs:
            self._rt.cudaFreeHost(ptr)
        self._host_ptrs.clear()
        if self._stream is not None:
            self._rt.cudaStreamDestroy(self._stream)
            self._stream = None


class TorchCudaDevice(CudaDevice):
    """:class:`CudaDevice` over torch CUDA tensors (the fallback without cuda-python)."""

    kind = "torch"

    def __init__(self, torch: Any, index: int) -> None:
        super().__init__(index)
        self._torch = torch
        self._device = torch.device("cuda", index)
        torch.cuda.set_device(self._device)
        self.name = str(torch.cuda.get_device_name(index))
        major, minor = torch.cuda.get_device_capability(index)
        self.compute_capability = f"{int(major)}.{int(minor)}"
        self._stream: Any = torch.cuda.Stream(device=self._device)
        self._tensors: dict[int, Any] = {}
        self._host: list[Any] = []

    @property
    def stream_handle(self) -> int:
        return int(self._stream.cuda_stream)

    def alloc(self, nbytes: int) -> int:
        tensor = self._torch.empty(max(1, int(nbytes)), dtype=self._torch.uint8, device=self._device)
        ptr = int(tensor.data_ptr())
        self._tensors[ptr] = tensor
        return ptr

    def free(self, ptr: int) -> None:
        self._tensors.pop(ptr, None)

    def host_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        tensor = self._torch.empty(max(1, count * dtype.itemsize), dtype=self._torch.uint8, pin_memory=True)
        self._host.append(tensor)
        return tensor.numpy()[: count * dtype.itemsize].view(dtype).reshape(shape)

    def _bytes(self, array: np.ndarray) -> Any:
        return self._torch.from_numpy(array.reshape(-1).view(np.uint8))

    def h2d_async(self, ptr: int, array: np.ndarray) -> None:
        src = self._bytes(array)
        with self._torch.cuda.stream(self._stream):
            self._tensors[ptr][: src.numel()].copy_(src, non_blocking=True)

    def d2h_async(self, array: np.ndarray, ptr: int) -> None:
        dst = self._bytes(array)
        with self._torch.cuda.stream(self._stream):
            dst.copy_(self._tensors[ptr][: dst.numel()], non_blocking=True)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def close(self) -> None:
        self._tensors.clear()
        self._host.clear()


def open_cuda(index: int = 0) -> CudaDevice:
    """GPU ``index`` through cuda-python, else through torch.

    Raises:
        BackendError: neither cuda-python nor a CUDA-enabled torch is installed, or no such GPU.
    """
    cudart = _import_cudart()
    if cudart is not None:
        return CudaPythonDevice(cudart, index)
    torch: Any
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        if index >= torch.cuda.device_count():
            raise BackendError(f"no CUDA device {index}: torch sees {torch.cuda.device_count()} GPU(s)")
        return TorchCudaDevice(torch, index)
    raise BackendError(
        f"no way to reach the GPU: cuda-python is not installed and torch has no CUDA device; {CUDA_INSTALL_HINT}"
    )


# ---------------------------------------------------------------------------------------------- the backend
class TensorRTBackend(InferenceBackend):
    """A TensorRT engine with its sidecar (``<engine>.json``), on one GPU.

    Args:
        path: the engine (``.engine`` / ``.plan``); its sidecar must lie beside it.
        device: ``cuda`` or ``cuda:N`` (``cpu`` is refused).
        options: none are accepted (the engine fixes precision and shapes at build time; the CPU settings
            ``threads`` / ``spinning`` do not apply to it, and :func:`~.backend.backend_options` leaves them out).
    Raises:
        BackendError: TensorRT / CUDA access missing, no or bad sidecar, an engine built for another TensorRT
            version or GPU, a corrupt engine, or I/O shapes that differ from the model's.
    """

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda", **options: Any) -> None:
        path = Path(path)
        if options:
            raise BackendError(f"{path}: the tensorrt backend takes no options, got {sorted(options)}")
        index = parse_cuda_device(device)
        trt = import_tensorrt(path)
        sidecar = read_sidecar(path)
        info = sidecar.model_info(str(sidecar_path(path)))
        self._trt_version = str(trt.__version__)
        self._cuda: CudaDevice | None = open_cuda(index)
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._device_ptrs: dict[str, int] = {}
        self._host: dict[str, np.ndarray] = {}
        super().__init__(path, info)
        self.sidecar = sidecar
        try:
            check_engine_runtime(sidecar, self._trt_version, self._cuda.compute_capability, path)
            self._load(trt)
        except BaseException:
            self.close()
            raise

    def _load(self, trt: Any) -> None:
        assert self._cuda is not None
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        data = self.path.read_bytes()
        recorded = self.sidecar.engine_sha256
        if recorded and hashlib.sha256(data).hexdigest() != recorded:
            raise BackendError(
                f"{self.path}: the engine file is not the one its sidecar {sidecar_path(self.path).name} describes "
                "(engine sha256 differs); rebuild it with `occ export --engine`"
            )
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise BackendError(
                f"{self.path}: TensorRT {self._trt_version} could not deserialize the engine: the file is corrupt "
                "or built by another TensorRT (rebuild it with `occ export --engine` on this machine)"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"{self.path}: TensorRT could not create an execution context (GPU out of memory?)")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {name: self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT for name in names}
        shapes = {name: tuple(int(d) for d in self._engine.get_tensor_shape(name)) for name in names}
        check_io_shapes(
            {n: s for n, s in shapes.items() if is_input[n]},
            {n: s for n, s in shapes.items() if not is_input[n]},
            self.info,
            str(self.path),
        )
        expected = self.info.input_shapes()
        for name in names:
            if is_input[name] and -1 in shapes[name]:
                self._context.set_input_shape(name, expected[name])
        for name in names:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
            dtype = trt_dtype_to_numpy(self._engine.get_tensor_dtype(name))
            self._host[name] = self._cuda.host_buffer(shape, dtype)
            self._device_ptrs[name] = self._cuda.alloc(self._host[name].nbytes)
            if not self._context.set_tensor_address(name, self._device_ptrs[name]):
                raise BackendError(f"{self.path}: TensorRT refused the device address of tensor {name!r}")

    @property
    def provider(self) -> str:
        cuda = self._cuda
        return provider_string(self._trt_version, cuda.name if cuda else "", cuda.compute_capability if cuda else "0.0")

    def _run(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], InferenceTiming]:
        cuda = self._cuda
        if cuda is None or self._context is None:
            raise BackendError(f"{self.path}: the tensorrt backend is closed")
        start = time.perf_counter()
        for name in INPUT_NAMES:
            np.copyto(self._host[name], feeds[name], casting="same_kind")  # float32 -> the engine's type
            cuda.h2d_async(self._device_ptrs[name], self._host[name])
        cuda.synchronize()
        copied_in = time.perf_counter()
        if not self._context.execute_async_v3(cuda.stream_handle):
            raise BackendError(f"{self.path}: TensorRT execute_async_v3 failed (see the TensorRT log)")
        cuda.synchronize()
        computed = time.perf_counter()
        for name in self.info.outputs:
            cuda.d2h_async(self._host[name], self._device_ptrs[name])
        cuda.synchronize()
        outputs = {
            name: self._host[name].astype(np.uint8 if name == "labels" else np.float32, copy=True)
            for name in self.info.outputs
        }
        done = time.perf_counter()
        return outputs, InferenceTiming(h2d=copied_in - start, compute=computed - copied_in, d2h=done - computed)

    def close(self) -> None:
        """Free the buffers, the context and the engine (idempotent)."""
        self._context = None
        self._engine = None
        self._runtime = None
        if self._cuda is not None:
            self._cuda.close()
            self._cuda = None
        self._device_ptrs.clear()
        self._host.clear()
