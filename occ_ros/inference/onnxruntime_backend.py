"""ONNX Runtime backend: an exported ``.onnx`` on the CPU, CUDA or TensorRT execution provider.

The provider that actually loaded is what ``session.get_providers()`` reports after the session is created:
``get_available_providers()`` lists providers whose libraries may still fail to load (missing CUDA / cuDNN /
TensorRT libraries), and ONNX Runtime then silently falls back to the CPU. A requested GPU provider that did not
load is therefore an error here, never a silent CPU run.

On a GPU provider the feeds are copied to the device and the outputs back with an I/O binding, so the copies are
timed apart from the compute (:class:`~.backend.InferenceTiming`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backend import BackendError, InferenceBackend, InferenceTiming, check_spinning, check_threads
from .model_info import INPUT_NAMES, METADATA_KEY, ModelInfo, ModelInfoError

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
"""Short provider names (``occ bench --backend onnxruntime --providers ...``) -> ONNX Runtime's names."""
SPINNING_KEY = "session.intra_op.allow_spinning"
"""The session config entry that lets intra-op worker threads spin ("1", ONNX Runtime's default) or not ("0")."""


def resolve_providers(device: str, providers: Sequence[str] | None) -> list[str]:
    """ONNX Runtime provider names, in priority order, for a device and optional short names.

    ``device="cpu"`` -> CPU only; ``cuda[:N]`` -> CUDA then CPU (ONNX Runtime needs the CPU provider for the ops
    a GPU provider does not take). Explicit ``providers`` (short or full names) win over the device.

    Raises:
        BackendError: an unknown provider name.
    """
    if providers:
        names = []
        for p in providers:
            full = PROVIDERS.get(p.lower(), p)
            if full not in PROVIDERS.values():
                raise BackendError(f"unknown ONNX Runtime provider {p!r}; choose from {sorted(PROVIDERS)}")
            names.append(full)
    elif device == "cpu":
        names = [PROVIDERS["cpu"]]
    elif device.startswith("cuda"):
        names = [PROVIDERS["cuda"]]
    else:
        raise BackendError(f"unknown device {device!r} for onnxruntime; use cpu or cuda[:N]")
    if PROVIDERS["cpu"] not in names:
        names.append(PROVIDERS["cpu"])
    return names


def read_model_info(path: str | Path, metadata: Mapping[str, str]) -> ModelInfo:
    """The :class:`ModelInfo` stored in an ONNX file's metadata (``metadata_props[METADATA_KEY]``).

    Raises:
        BackendError: the file has no occ_ros metadata (not exported by ``occ export``) or it is malformed.
    """
    if METADATA_KEY not in metadata:
        raise BackendError(
            f"{path}: the ONNX file has no {METADATA_KEY!r} metadata (grid, vocabulary, cameras, preprocessing); "
            f"export it with `occ export --checkpoint CKPT --out {Path(path).name}`"
        )
    try:
        return ModelInfo.from_json(metadata[METADATA_KEY], f"{path}: metadata {METADATA_KEY!r}")
    except ModelInfoError as err:
        raise BackendError(str(err)) from None


class OnnxRuntimeBackend(InferenceBackend):
    """An ONNX model in an ``onnxruntime.InferenceSession``.

    Args:
        path: the ``.onnx`` file (single file, occ_ros metadata inside).
        device: ``cpu`` or ``cuda[:N]``.
        providers: short (``cpu``, ``cuda``, ``tensorrt``) or full provider names in priority order; default
            from ``device``.
        threads: intra-op threads (``SessionOptions.intra_op_num_threads``; 0 = ONNX Runtime's default, one per
            physical core).
        spinning: the intra-op worker threads busy-wait for work between operators (session config
            ``session.intra_op.allow_spinning``; ONNX Runtime's default is on). The inter-op pool is not used: the
            session runs sequentially (``ExecutionMode.ORT_SEQUENTIAL``), so its threads and spinning stay unset.
    Raises:
        BackendError: onnxruntime missing, file missing / corrupt / without metadata, a bad ``threads`` /
            ``spinning`` (named), or a requested GPU provider that did not load.
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        providers: Sequence[str] | None = None,
        threads: int = 0,
        spinning: bool = True,
    ) -> None:
        try:
            threads, spinning = check_threads(threads), check_spinning(spinning)
        except ValueError as err:
            raise BackendError(f"{path}: {err}") from None
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError(
                f"{path}: onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu for CUDA)"
            ) from None
        self._ort = ort
        requested = resolve_providers(device, providers)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry(SPINNING_KEY, "1" if spinning else "0")
        provider_options: list[dict[str, Any]] = []
        device_id = int(device.split(":")[1]) if device.startswith("cuda:") else 0
        for p in requested:
            provider_options.append({"device_id": device_id} if p != PROVIDERS["cpu"] else {})
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=requested, provider_options=provider_options
            )
        except Exception as err:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
            raise BackendError(f"{path}: ONNX Runtime cannot load the model: {err}") from None
        loaded = list(session.get_providers())
        missing = [p for p in requested if p not in loaded]
        if missing:
            raise BackendError(
                f"{path}: ONNX Runtime did not load {missing} (loaded: {loaded}; available according to "
                f"get_available_providers: {ort.get_available_providers()}). Install onnxruntime-gpu with matching "
                f"CUDA / cuDNN / TensorRT libraries, or use --device cpu"
            )
        info = read_model_info(path, session.get_modelmeta().custom_metadata_map)
        super().__init__(path, info)
        self.session = session
        self.device = device
        self.loaded_providers = loaded
        self._check_signature()
        self._gpu = loaded[0] != PROVIDERS["cpu"]
        used = session.get_session_options()
        self.settings = {
            "threads": used.intra_op_num_threads,
            "spinning": used.get_session_config_entry(SPINNING_KEY) != "0",
        }
        self._device_id = device_id

    @property
    def provider(self) -> str:
        return self.loaded_providers[0]

    def _check_signature(self) -> None:
        inputs = {i.name: tuple(i.shape) for i in self.session.get_inputs()}
        outputs = {o.name: tuple(o.shape) for o in self.session.get_outputs()}
        want_in, want_out = self.info.input_shapes(), self.info.output_shapes()
        if set(inputs) != set(INPUT_NAMES):
            raise BackendError(f"{self.path}: ONNX inputs are {sorted(inputs)}, expected {list(INPUT_NAMES)}")
        for name, shape in {**inputs, **outputs}.items():
            want = want_in.get(name, want_out.get(name))
            if want is None:
                raise BackendError(f"{self.path}: unexpected ONNX output {name!r} (metadata lists {self.info.outputs})")
            if shape != want:
                raise BackendError(f"{self.path}: ONNX tensor {name!r} has shape {shape}, its metadata says {want}")
        absent = set(self.info.outputs) - set(outputs)
        if absent:
            raise BackendError(f"{self.path}: the metadata lists outputs {sorted(absent)} that the graph lacks")

    def _run(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], InferenceTiming]:
        names = list(self.info.outputs)
        if not self._gpu:
            start = time.perf_counter()
            values = self.session.run(names, dict(feeds))
            return dict(zip(names, values, strict=True)), InferenceTiming(0.0, time.perf_counter() - start, 0.0)
        ort = self._ort
        binding = self.session.io_binding()
        t0 = time.perf_counter()
        for name, array in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(array, "cuda", self._device_id)
            binding.bind_ortvalue_input(name, value)
        for name in names:
            binding.bind_output(name, "cuda", self._device_id)
        binding.synchronize_inputs()
        t1 = time.perf_counter()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        t2 = time.perf_counter()
        values = binding.copy_outputs_to_cpu()
        t3 = time.perf_counter()
        return dict(zip(names, values, strict=True)), InferenceTiming(t1 - t0, t2 - t1, t3 - t2)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
