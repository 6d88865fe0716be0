"""One interface over the model formats: PyTorch checkpoint, ONNX (ONNX Runtime) and TensorRT engine.

:func:`open_backend` picks the backend by name (or by the file's suffix with ``"auto"``), loads the model, checks
its :class:`~.model_info.ModelInfo` and warms it up. Every backend takes the same numpy feeds (the I/O contract of
:mod:`.model_info`) and returns numpy outputs, so callers (``occ predict``, ``occ bench``, the ROS node, replay)
never branch on the format. A backend that cannot load raises :class:`BackendError` naming the file and the
reason, so the caller can fall back to another one (the node's ``fallback_model``).

Nothing here imports torch, onnxruntime or tensorrt: backends are found through the ``occ_ros.backends``
entry points (:func:`backend_class`), and each imports its runtime when it opens a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from occ_ros.core.preprocess import NetworkInput
from occ_ros.core.rig import surround_rig

from .model_info import INPUT_NAMES, ModelInfo

BACKEND_GROUP = "occ_ros.backends"
BACKEND_NAMES = ("onnxruntime", "tensorrt", "torch")
SUFFIX_BACKENDS = {".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt", ".ckpt": "torch", ".pt": "torch"}
WARMUP_RUNS = 3


class BackendError(RuntimeError):
    """A model that cannot be loaded or run by a backend (names the file and the mismatch)."""


@dataclass(frozen=True)
class InferenceTiming:
    """Wall-clock seconds of one :meth:`InferenceBackend.run`, split into host->device copies, compute and
    device->host copies (both copies are 0 for a CPU backend)."""

    h2d: float
    compute: float
    d2h: float

    @property
    def total(self) -> float:
        return self.h2d + self.compute + self.d2h

    @property
    def copy_share(self) -> float:
        """Fraction of the time spent copying between host and device."""
        return (self.h2d + self.d2h) / self.total if self.total > 0 else 0.0


class InferenceBackend(ABC):
    """A loaded model: numpy feeds -> numpy outputs.

    Attributes:
        name: the backend's name (one of :data:`BACKEND_NAMES`).
        path: the model file.
        info: what the model is (grid, vocabulary, cameras, preprocessing, outputs).
        last_timing: the split of the latest :meth:`run` (None before the first).
        settings: the CPU runtime settings in effect, as the runtime reports them (``{"threads": 1, "spinning":
            False}``; empty for a backend without any, TensorRT).
    """

    name: ClassVar[str]

    def __init__(self, path: str | Path, info: ModelInfo) -> None:
        self.path = Path(path)
        self.info = info
        self.last_timing: InferenceTiming | None = None
        self.settings: dict[str, Any] = {}

    # ------------------------------------------------------------------ per backend
    @property
    @abstractmethod
    def provider(self) -> str:
        """What actually executes the model, as the runtime reports it (e.g. ``CPUExecutionProvider``)."""

    @abstractmethod
    def _run(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], InferenceTiming]:
        """Run on checked feeds; return every output of ``info.outputs`` (batch axis kept) and the timing."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to release
        """Release the runtime's resources (sessions, engines, device buffers)."""

    # ------------------------------------------------------------------ shared
    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Feeds as contiguous float32 arrays of exactly the model's input shapes.

        Raises:
            BackendError: a missing input, or one whose shape differs from the model's (both named).
        """
        expected = self.info.input_shapes()
        checked = {}
        for name in INPUT_NAMES:
            if name not in feeds:
                raise BackendError(f"{self.path}: input {name!r} is missing (inputs are {list(INPUT_NAMES)})")
            array = np.asarray(feeds[name])
            if tuple(array.shape) != expected[name]:
                raise BackendError(
                    f"{self.path}: input {name!r} has shape {tuple(array.shape)}, the {self.name} model takes "
                    f"{expected[name]} (static shapes: re-export for another camera count or image size)"
                )
            checked[name] = np.ascontiguousarray(array, dtype=np.float32)
        return checked

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Batched feeds (the I/O contract of :mod:`.model_info`) -> every output, batch axis kept."""
        outputs, timing = self._run(self.check_feeds(feeds))
        self.last_timing = timing
        return outputs

    def __call__(self, net: NetworkInput) -> dict[str, np.ndarray]:
        """One preprocessed frame -> outputs without the batch axis (``labels`` (X, Y, Z) uint8, ...)."""
        outputs = self.run({"images": net.images[None], "K": net.K[None], "cam_from_ego": net.cam_from_ego[None]})
        return {name: value[0] for name, value in outputs.items()}

    def example_feeds(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Random images with the model's shapes and a plausible ring of cameras (warm-up, benchmarks)."""
        rng = np.random.default_rng(seed)
        shapes = self.info.input_shapes()
        (h, w) = self.info.image_size
        K, cam_from_ego = surround_rig(self.info.num_cameras, h, w)
        return {
            "images": rng.standard_normal(shapes["images"]).astype(np.float32),
            "K": K[None],
            "cam_from_ego": cam_from_ego[None],
        }

    def warmup(self, runs: int = WARMUP_RUNS) -> None:
        """Run ``runs`` times on :meth:`example_feeds` (lazy initialisation, autotuning, allocator growth)."""
        feeds = self.example_feeds()
        for _ in range(runs):
            self.run(feeds)

    def __enter__(self) -> InferenceBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class RuntimeSettings:
    """The CPU settings of an inference runtime that the node (parameters ``threads``, ``spinning``), ``occ replay``
    and ``occ bench`` share (``--threads``, ``--spinning``); :func:`backend_options` turns them into a backend's
    keyword options.

    Attributes:
        threads: intra-op threads: onnxruntime's ``SessionOptions.intra_op_num_threads``, torch's
            ``torch.set_num_threads`` (process-wide); 0 = the runtime's own default (one per physical core).
            TensorRT runs on the GPU: not used.
        spinning: onnxruntime's intra-op worker threads busy-wait for work between operators
            (session config ``session.intra_op.allow_spinning``); off, they sleep and leave the cores to other
            processes. Without worker threads (``threads: 1``) there is nothing to spin. torch and TensorRT: not used.
    Raises:
        ValueError: ``threads`` not an integer >= 0 or ``spinning`` not a bool (the message names the setting).
    """

    threads: int = 0
    spinning: bool = True
    used_by: ClassVar[dict[str, tuple[str, ...]]] = {
        "onnxruntime": ("threads", "spinning"),
        "torch": ("threads",),
        "tensorrt": (),
    }

    def __post_init__(self) -> None:
        check_threads(self.threads)
        check_spinning(self.spinning)

    def options(self, backend: str) -> dict[str, Any]:
        """The settings backend ``backend`` uses, as keyword options (``{}`` for TensorRT)."""
        return {name: getattr(self, name) for name in self.used_by.get(backend, ())}

    def unused(self, backend: str, given: tuple[str, ...] = ("threads", "spinning")) -> list[str]:
        """Which of the settings named in ``given`` backend ``backend`` does not use (to say so, not to fail)."""
        return [name for name in given if name not in self.used_by.get(backend, ())]


def check_threads(threads: Any, name: str = "threads") -> int:
    """``threads`` as an int >= 0 (0 = the runtime's default).

    Raises:
        ValueError: anything else; the message names the setting ``name``.
    """
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise ValueError(f"{name}: expected an integer >= 0 (0 = the runtime's default), got {threads!r}")
    return int(threads)


def check_spinning(spinning: Any, name: str = "spinning") -> bool:
    """``spinning`` as a bool.

    Raises:
        ValueError: not a bool; the message names the setting ``name``.
    """
    if not isinstance(spinning, (bool, np.bool_)):
        raise ValueError(f"{name}: expected true or false, got {spinning!r}")
    return bool(spinning)


def backend_options(
    backend: str,
    runtime: RuntimeSettings = RuntimeSettings(),
    precision: str = "",
    cuda_graph: bool = False,
    providers: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``open_backend`` keyword options of backend ``backend`` (a name, not ``auto``), from the settings the node,
    ``occ replay`` and ``occ bench`` share; settings the backend has no use for are left out.

    Args:
        runtime: CPU threads and spinning (onnxruntime: both; torch: threads; tensorrt: neither).
        precision: ``""`` / ``fp32`` / ``fp16`` (torch: ``fp16`` runs the network in half precision; the other
            backends run the precision of their file).
        cuda_graph: torch: capture a CUDA graph.
        providers: onnxruntime execution providers in priority order (default from the device).
    Raises:
        BackendError: int8 asked of the torch backend.
    """
    options = runtime.options(backend)
    if backend == "onnxruntime" and providers:
        options["providers"] = list(providers)
    if backend == "torch":
        if precision == "int8":
            raise BackendError("precision 'int8' is a TensorRT engine's precision; torch runs fp32 or fp16")
        options["half"] = precision == "fp16"
        if cuda_graph:
            options["cuda_graph"] = True
    return options


def backend_class(name: str) -> Callable[..., InferenceBackend]:
    """The backend class registered under ``name`` in the ``occ_ros.backends`` entry-point group.

    Backends are plugins (setup.py ``entry_points``): the ONNX Runtime and TensorRT backends live here, the
    PyTorch one in the model layer (:mod:`occ_ros.model.torch_backend`), so this torch-free package never imports
    it. Loading an entry point imports only its module; the runtime itself (onnxruntime, tensorrt, torch) is
    imported when the backend opens a model.

    Raises:
        BackendError: no backend of that name is registered (the package is not installed with pip or colcon).
    """
    found = [ep for ep in entry_points(group=BACKEND_GROUP) if ep.name == name]
    if not found:
        registered = sorted(ep.name for ep in entry_points(group=BACKEND_GROUP))
        raise BackendError(
            f"no backend {name!r} in the entry-point group {BACKEND_GROUP!r} (registered: {registered}); "
            "install occ_ros with pip or colcon so that its entry points exist"
        )
    cls = found[0].load()
    if not (isinstance(cls, type) and issubclass(cls, InferenceBackend)):
        raise BackendError(f"entry point {found[0].value!r} ({name!r}) is not an InferenceBackend subclass")
    return cls


def backend_for(path: str | Path, backend: str = "auto") -> str:
    """The backend name for ``path``: ``backend`` itself, or by suffix for ``"auto"``.

    Raises:
        BackendError: an unknown backend name, or a suffix ``"auto"`` cannot place.
    """
    if backend != "auto":
        if backend not in BACKEND_NAMES:
            raise BackendError(f"unknown backend {backend!r}; choose one of {['auto', *BACKEND_NAMES]}")
        return backend
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_BACKENDS:
        raise BackendError(
            f"{path}: cannot tell the model format from the suffix {suffix!r}; expected one of "
            f"{sorted(SUFFIX_BACKENDS)} or pass the backend by name"
        )
    return SUFFIX_BACKENDS[suffix]


def open_backend(
    path: str | Path, backend: str = "auto", device: str = "cpu", warmup: bool = True, **options: Any
) -> InferenceBackend:
    """Load a model with the named backend, check it, and warm it up.

    Args:
        path: ``.onnx``, ``.engine`` / ``.plan`` (with its sidecar JSON) or ``.ckpt``.
        backend: ``auto`` (by suffix), ``onnxruntime``, ``tensorrt`` or ``torch``.
        device: ``cpu`` or ``cuda[:N]`` (onnxruntime: the CUDA execution provider; tensorrt: always a GPU).
        warmup: run :meth:`InferenceBackend.warmup` before returning.
        options: backend-specific settings (onnxruntime: ``providers`` such as ``["tensorrt", "cuda"]``,
            ``threads``, ``spinning``; torch: ``half``, ``cuda_graph``, ``threads``), as :func:`backend_options`
            builds them.
    Raises:
        BackendError: the file is missing or corrupt, the runtime is not installed or cannot use the requested
            device, or the model does not fit this machine (another TensorRT version or GPU); the message names
            the file and the mismatch.
    """
    name = backend_for(path, backend)
    if not Path(path).is_file():
        raise BackendError(f"{path}: no such model file")
    loaded = backend_class(name)(path, device=device, **options)
    if warmup:
        loaded.warmup()
    return loaded
