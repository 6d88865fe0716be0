"""TensorRT engine metadata: the cache key, the sidecar JSON beside every engine, and the runtime checks.

A serialized TensorRT engine is only valid for the TensorRT version and the GPU (compute capability) that built it,
and it does not say what model it holds. So every engine ``model.engine`` has a sidecar ``model.engine.json``
(:func:`sidecar_path`) written by ``occ export --engine``::

    {"format": "occ_ros.engine", "format_version": 1,
     "key": {"onnx_sha256": ..., "trt_version": "10.3.0", "compute_capability": "8.7", "precision": "fp16"},
     "inputs":  {"images": {"shape": [1, 6, 3, 256, 704], "dtype": "float32"}, ...},
     "outputs": {"labels": {"shape": [1, 200, 200, 16], "dtype": "uint8"}, ...},
     "model": <ModelInfo.to_dict()>,
     "build": {"workspace_mib": 2048, "timing_cache": ..., "strongly_typed": false, "trtexec": "trtexec ...", ...},
     "created": "2026-01-01T00:00:00+00:00"}

The :class:`EngineKey` (ONNX sha256, TensorRT major.minor.patch, compute capability, precision) decides whether an
existing engine can be reused, and :func:`check_engine_runtime` refuses to load an engine on a machine it was not
built for. Nothing here imports tensorrt, CUDA or torch.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.io.atomic import atomic_write_text

from .backend import BackendError
from .model_info import INPUT_NAMES, ModelInfo

FORMAT = "occ_ros.engine"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
SIDECAR_SUFFIX = ".json"
BUILD_HINT = "build it on this machine with `occ export --engine` (or write its sidecar with the ONNX it came from)"

#: TensorRT ``DataType`` member name -> numpy dtype (types numpy cannot hold, e.g. BF16 / FP8 / INT4, are absent).
TRT_DTYPES: dict[str, np.dtype] = {
    "FLOAT": np.dtype(np.float32),
    "HALF": np.dtype(np.float16),
    "INT8": np.dtype(np.int8),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}


class SidecarError(BackendError):
    """A missing, unreadable or malformed engine sidecar (names the file and the field)."""


# ---------------------------------------------------------------------------------------------- small helpers
def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def normalize_trt_version(version: str) -> str:
    """``"10.3.0.30"`` / ``"8.6.1.post1"`` / ``"10.3"`` -> ``"10.3.0"`` (major.minor.patch).

    Raises:
        ValueError: not a version string.
    """
    match = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(version))
    if not match:
        raise ValueError(f"not a TensorRT version: {version!r} (expected e.g. '10.3.0')")
    major, minor, patch = (int(part) if part is not None else 0 for part in match.groups())
    return f"{major}.{minor}.{patch}"


def normalize_compute_capability(value: str | tuple[int, int]) -> str:
    """``"8.7"``, ``"sm_87"``, ``"87"`` or ``(8, 7)`` -> ``"8.7"``.

    Raises:
        ValueError: not a compute capability.
    """
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"compute capability must be (major, minor), got {value!r}")
        return f"{int(value[0])}.{int(value[1])}"
    text = str(value).strip().lower()
    match = re.fullmatch(r"(?:sm_?)?(\d+)\.(\d+)", text) or re.fullmatch(r"(?:sm_?)?(\d+)(\d)", text)
    if not match:
        raise ValueError(f"not a GPU compute capability: {value!r} (expected e.g. '8.7' or 'sm_87')")
    return f"{int(match.group(1))}.{int(match.group(2))}"


def sm_name(compute_capability: str) -> str:
    """``"8.7"`` -> ``"sm_87"``."""
    major, minor = normalize_compute_capability(compute_capability).split(".")
    return f"sm_{major}{minor}"


def provider_string(trt_version: str, gpu_name: str, compute_capability: str) -> str:
    """What runs an engine, e.g. ``"TensorRT 10.3.0 on Orin (sm_87)"``."""
    return f"TensorRT {trt_version} on {gpu_name or 'unknown GPU'} ({sm_name(compute_capability)})"


def trt_dtype_name(dtype: Any) -> str:
    """A TensorRT ``DataType`` (or its name, ``"DataType.FLOAT"`` / ``"FLOAT"``) -> ``"FLOAT"``."""
    name = getattr(dtype, "name", None)
    text = str(name if isinstance(name, str) else dtype)
    return text.rsplit(".", 1)[-1].upper()


def trt_dtype_to_numpy(dtype: Any) -> np.dtype:
    """Numpy dtype of a TensorRT ``DataType`` (or its name).

    Raises:
        BackendError: a type numpy cannot hold (BF16, FP8, INT4, FP4); the I/O contract uses float32 / uint8.
    """
    name = trt_dtype_name(dtype)
    if name not in TRT_DTYPES:
        raise BackendError(
            f"TensorRT data type {name} has no numpy equivalent (supported I/O types: {sorted(TRT_DTYPES)}); "
            "export the model with float32 / float16 / uint8 inputs and outputs"
        )
    return TRT_DTYPES[name]


def parse_cuda_device(device: str) -> int:
    """``"cuda"`` -> 0, ``"cuda:1"`` -> 1.

    Raises:
        BackendError: any other device (TensorRT runs only on an NVIDIA GPU).
    """
    match = re.fullmatch(r"cuda(?::(\d+))?", str(device).strip().lower())
    if not match:
        raise BackendError(
            f"the tensorrt backend runs only on an NVIDIA GPU (device 'cuda' or 'cuda:N'), got device {device!r}; "
            "use the onnxruntime backend for the CPU"
        )
    return int(match.group(1) or 0)


def check_io_shapes(
    engine_inputs: Mapping[str, tuple[int, ...]],
    engine_outputs: Mapping[str, tuple[int, ...]],
    info: ModelInfo,
    source: str,
) -> None:
    """Check an engine's I/O tensor shapes against the model's contract (batch 1).

    Args:
        engine_inputs, engine_outputs: tensor name -> shape of every engine input / output (``-1`` = dynamic,
            accepted for inputs only: their shape is then set to the model's). Extra outputs are allowed.
        info: the model (``input_shapes()`` / ``output_shapes()``).
        source: the engine file, for messages.
    Raises:
        BackendError: a missing tensor, an input the contract does not have, or a shape that differs (tensor and
            both shapes named).
    """
    extra = sorted(set(engine_inputs) - set(INPUT_NAMES))
    if extra:
        raise BackendError(
            f"{source}: the engine takes inputs {extra} that the model contract does not have (inputs are "
            f"{list(INPUT_NAMES)}); rebuild it from an ONNX written by `occ export`"
        )
    for kind, engine, expected in (
        ("input", engine_inputs, info.input_shapes()),
        ("output", engine_outputs, info.output_shapes()),
    ):
        for name, want in expected.items():
            if name not in engine:
                raise BackendError(
                    f"{source}: the engine has no {kind} {name!r} (its {kind}s: {sorted(engine)}); the model "
                    f"needs {sorted(expected)}: it was built from another ONNX than its sidecar describes"
                )
            got = tuple(int(d) for d in engine[name])
            dynamic_ok = (
                kind == "input" and len(got) == len(want) and all(g in (-1, w) for g, w in zip(got, want, strict=True))
            )
            if got != tuple(want) and not dynamic_ok:
                raise BackendError(
                    f"{source}: engine {kind} {name!r} has shape {got}, the model's sidecar says {tuple(want)} "
                    "(rebuild the engine from the ONNX its sidecar names)"
                )


# ---------------------------------------------------------------------------------------------- cache key
@dataclass(frozen=True)
class EngineKey:
    """What an engine is valid for; two engines with equal keys are interchangeable.

    Attributes:
        onnx_sha256: sha256 of the ONNX file the engine was built from.
        trt_version: TensorRT major.minor.patch (normalised; engines are not portable across versions).
        compute_capability: the GPU's ``"major.minor"`` (engines are specific to a GPU architecture).
        precision: ``fp32``, ``fp16`` or ``int8``.
    """

    onnx_sha256: str
    trt_version: str
    compute_capability: str
    precision: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "trt_version", normalize_trt_version(self.trt_version))
        object.__setattr__(self, "compute_capability", normalize_compute_capability(self.compute_capability))
        if self.precision not in PRECISIONS:
            raise ValueError(f"engine precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", str(self.onnx_sha256)):
            raise ValueError(f"onnx_sha256 must be 64 hex digits, got {self.onnx_sha256!r}")

    def diff(self, other: EngineKey) -> list[tuple[str, str, str]]:
        """``(field, this value, other value)`` for every field that differs (empty: same key)."""
        return [
            (f.name, str(getattr(self, f.name)), str(getattr(other, f.name)))
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]

    def describe_diff(self, other: EngineKey, this: str = "engine", that: str = "wanted") -> list[str]:
        """Readable :meth:`diff`: ``["precision: engine fp16, wanted int8", ...]``."""
        return [f"{name}: {this} {mine}, {that} {theirs}" for name, mine, theirs in self.diff(other)]

    def to_dict(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> EngineKey:
        if not isinstance(data, Mapping):
            raise SidecarError(f"{source}: field 'key' must be an object, got {type(data).__name__}")
        try:
            return cls(**{f.name: str(data[f.name]) for f in fields(cls)})
        except KeyError as err:
            raise SidecarError(f"{source}: field 'key.{err.args[0]}' is missing") from None
        except ValueError as err:
            raise SidecarError(f"{source}: bad field 'key': {err}") from None


# ---------------------------------------------------------------------------------------------- sidecar
def sidecar_path(engine_path: str | Path) -> Path:
    """The sidecar of an engine: ``model.engine`` -> ``model.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + SIDECAR_SUFFIX)


def tensor_spec(shape: tuple[int, ...] | list[int], dtype: Any) -> dict[str, Any]:
    """``{"shape": [...], "dtype": "float32"}`` of one I/O tensor (dtype: numpy dtype or TensorRT DataType)."""
    if isinstance(dtype, (np.dtype, type)) or (isinstance(dtype, str) and dtype == dtype.lower()):
        np_dtype = np.dtype(dtype)
    else:
        np_dtype = trt_dtype_to_numpy(dtype)
    return {"shape": [int(d) for d in shape], "dtype": np_dtype.name}


@dataclass
class EngineSidecar:
    """The JSON beside an engine: what it is valid for, what it holds, how it was built.

    Attributes:
        key: the cache key (ONNX sha256, TensorRT version, compute capability, precision).
        inputs, outputs: tensor name -> ``{"shape": [...], "dtype": "float32" | "float16" | "uint8" | ...}``.
        model: ``ModelInfo.to_dict()`` copied from the ONNX metadata (``ModelInfo.from_dict`` reads it back).
        workspace_mib: the builder's workspace memory-pool limit, MiB.
        timing_cache: the timing cache file used / written ("" = none).
        strongly_typed: built as a strongly typed network (precision from the ONNX's types).
        trtexec: the equivalent ``trtexec`` command line.
        created: ISO-8601 UTC time the engine was built.
        onnx: the ONNX file it was built from (informational).
        engine_sha256: sha256 of the engine file ("" = not recorded, e.g. a hand-written sidecar).
        gpu_name: the GPU it was built on (informational).
        builder_flags, network_flags: the TensorRT flags used (informational).
    """

    key: EngineKey
    inputs: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    model: dict[str, Any]
    workspace_mib: int = 0
    timing_cache: str = ""
    strongly_typed: bool = False
    trtexec: str = ""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    onnx: str = ""
    engine_sha256: str = ""
    gpu_name: str = ""
    builder_flags: list[str] = field(default_factory=list)
    network_flags: list[str] = field(default_factory=list)

    def model_info(self, source: str = "<sidecar>") -> ModelInfo:
        """The :class:`ModelInfo` held in ``model`` (errors name ``source``)."""
        where = f"{source}: field 'model'"
        try:
            return ModelInfo.from_dict(self.model, where)
        except ValueError as err:
            message = str(err)
            raise SidecarError(message if message.startswith(where) else f"{where}: {message}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "key": self.key.to_dict(),
            "inputs": self.inputs,
            "outputs": self.outputs,
            "model": self.model,
            "build": {
                "workspace_mib": int(self.workspace_mib),
                "timing_cache": self.timing_cache,
                "strongly_typed": bool(self.strongly_typed),
                "trtexec": self.trtexec,
                "onnx": self.onnx,
                "gpu_name": self.gpu_name,
                "builder_flags": list(self.builder_flags),
                "network_flags": list(self.network_flags),
            },
            "engine_sha256": self.engine_sha256,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> EngineSidecar:
        """Inverse of :meth:`to_dict`; errors name ``source`` and the field."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise SidecarError(
                f"{source}: not an occ_ros engine sidecar (field 'format' is {found!r}, expected {FORMAT!r})"
            )
        version = data.get("format_version")
        if not isinstance(version, int):
            raise SidecarError(f"{source}: field 'format_version' must be an integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise SidecarError(
                f"{source}: sidecar format_version {version} is newer than this occ_ros reads ({FORMAT_VERSION}); "
                "upgrade occ_ros"
            )
        for name in ("key", "inputs", "outputs", "model"):
            if name not in data:
                raise SidecarError(f"{source}: field {name!r} is missing")
        key = EngineKey.from_dict(data["key"], source)
        tensors = {name: _tensor_specs(data[name], f"{source}: field {name!r}") for name in ("inputs", "outputs")}
        if not isinstance(data["model"], Mapping):
            raise SidecarError(f"{source}: field 'model' must be an object (ModelInfo.to_dict())")
        build = data.get("build", {})
        if not isinstance(build, Mapping):
            raise SidecarError(f"{source}: field 'build' must be an object, got {type(build).__name__}")
        try:
            return cls(
                key=key,
                inputs=tensors["inputs"],
                outputs=tensors["outputs"],
                model=dict(data["model"]),
                workspace_mib=int(build.get("workspace_mib", 0)),
                timing_cache=str(build.get("timing_cache") or ""),
                strongly_typed=bool(build.get("strongly_typed", False)),
                trtexec=str(build.get("trtexec", "")),
                created=str(data.get("created", "")),
                onnx=str(build.get("onnx", "")),
                engine_sha256=str(data.get("engine_sha256", "")),
                gpu_name=str(build.get("gpu_name", "")),
                builder_flags=[str(f) for f in build.get("builder_flags", [])],
                network_flags=[str(f) for f in build.get("network_flags", [])],
            )
        except (TypeError, ValueError) as err:
            raise SidecarError(f"{source}: bad field 'build': {err}") from None


def _tensor_specs(data: Any, source: str) -> dict[str, dict[str, Any]]:
    if not isinstance(data, Mapping):
        raise SidecarError(f"{source} must map tensor names to {{'shape', 'dtype'}}, got {type(data).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for name, spec in data.items():
        where = f"{source}[{name!r}]"
        if not isinstance(spec, Mapping) or "shape" not in spec or "dtype" not in spec:
            raise SidecarError(f"{where} must be {{'shape': [...], 'dtype': '...'}}, got {spec!r}")
        try:
            shape = [int(d) for d in spec["shape"]]
            dtype = np.dtype(str(spec["dtype"])).name
        except (TypeError, ValueError) as err:
            raise SidecarError(f"{where}: bad shape or dtype: {err}") from None
        out[str(name)] = {"shape": shape, "dtype": dtype}
    return out


def write_sidecar(engine_path: str | Path, sidecar: EngineSidecar) -> Path:
    """Write ``sidecar`` beside ``engine_path`` atomically; returns the sidecar's path."""
    path = sidecar_path(engine_path)
    atomic_write_text(path, json.dumps(sidecar.to_dict(), indent=1, sort_keys=True) + "\n")
    return path


def read_sidecar(engine_path: str | Path) -> EngineSidecar:
    """The sidecar of ``engine_path``.

    Raises:
        SidecarError (a :class:`BackendError`): no sidecar (the engine must come from ``occ export --engine`` or be
            given one), not JSON, or a missing / malformed field; the message names the file and the field.
    """
    path = sidecar_path(engine_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SidecarError(
            f"{engine_path}: no sidecar {path.name} beside the engine; a TensorRT engine does not say which model, "
            f"TensorRT version and GPU it is for, so it must be built by `occ export --engine` (which writes the "
            f"sidecar) or be given a sidecar written from the ONNX it was built from"
        ) from None
    except OSError as err:
        raise SidecarError(f"{path}: cannot read the engine sidecar: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SidecarError(f"{path}: the engine sidecar is not valid JSON ({err}); rebuild the engine") from None
    return EngineSidecar.from_dict(data, str(path))


# ---------------------------------------------------------------------------------------------- runtime check
def runtime_mismatch(sidecar: EngineSidecar, trt_version: str, compute_capability: str) -> list[str]:
    """Why an engine cannot run here: one line per differing TensorRT version / GPU compute capability (or [])."""
    reasons = []
    built, here = sidecar.key.trt_version, normalize_trt_version(trt_version)
    if built != here:
        reasons.append(
            f"TensorRT version: the engine was built with TensorRT {built}, this machine has TensorRT {here} "
            "(serialized engines are not portable across TensorRT versions)"
        )
    built_cc, here_cc = sidecar.key.compute_capability, normalize_compute_capability(compute_capability)
    if built_cc != here_cc:
        reasons.append(
            f"GPU: the engine was built for compute capability {built_cc} ({sm_name(built_cc)}), this GPU is "
            f"{here_cc} ({sm_name(here_cc)}) (engines are specific to a GPU architecture)"
        )
    return reasons


def check_engine_runtime(
    sidecar: EngineSidecar, trt_version: str, compute_capability: str, engine_path: str | Path = "<engine>"
) -> None:
    """Refuse an engine built for another TensorRT version or GPU.

    Raises:
        BackendError: naming the engine and both sides of every mismatch.
    """
    reasons = runtime_mismatch(sidecar, trt_version, compute_capability)
    if reasons:
        raise BackendError(
            f"{engine_path}: this engine does not fit this machine:\n  " + "\n  ".join(reasons) + f"\n{BUILD_HINT}"
        )
