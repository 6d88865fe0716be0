"""Build TensorRT engines from occ_ros ONNX models, cached by (ONNX sha256, TensorRT version, GPU, precision).

An engine is valid only for the TensorRT version and GPU architecture that built it, so it is built where it runs
(Jetson engines on the Jetson). :func:`build_engine` builds through the TensorRT Python API and writes the engine
and its sidecar JSON (:mod:`occ_ros.inference.engine_meta`) atomically; :func:`trtexec_command` gives the
equivalent ``trtexec`` command line for building on the target by hand.

TensorRT generations differ in how precision is chosen (:func:`plan_build` encodes the rules, without TensorRT):

* **8.6** (JetPack 5) and **10.x** (JetPack 6), weakly typed: FP32 ONNX + builder flags: ``FP16``; ``INT8`` (with
  ``FP16`` fallback) calibrated by an entropy calibrator on real frames (``--calib DIR|BAG``) or read from an existing
  calibration cache; an ONNX with Q/DQ nodes needs no calibration. 8.6 creates networks with ``EXPLICIT_BATCH``
  (always explicit since 10.0). On 10.x an FP16 ONNX is built strongly typed.
* **11+**: the precision builder flags and the calibrator are gone; every network is strongly typed, so precision
  comes from the ONNX: FP16 needs an FP16 ONNX (``occ export --checkpoint C --out m.onnx --half``, or ModelOpt
  AutoCast), INT8 needs an explicitly quantized ONNX with QuantizeLinear / DequantizeLinear nodes (NVIDIA TensorRT
  Model Optimizer).

Everything but :func:`build_engine`'s ``_build_serialized`` runs without TensorRT; that thin layer is tested against
a stand-in of the TensorRT Python API, and for real where TensorRT is installed.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from occ_export.int8_calibration import (
    calibration_cache_onnx,
    calibration_feeds,
    calibration_meta_path,
    make_entropy_calibrator,
    write_calibration_meta,
)
from occ_ros.inference.backend import BackendError
from occ_ros.inference.engine_meta import (
    PRECISIONS,
    EngineKey,
    EngineSidecar,
    SidecarError,
    normalize_compute_capability,
    normalize_trt_version,
    parse_cuda_device,
    read_sidecar,
    sha256_file,
    sidecar_path,
    sm_name,
    tensor_spec,
    write_sidecar,
)
from occ_ros.inference.model_info import INPUT_NAMES, METADATA_KEY, ModelInfo, ModelInfoError
from occ_ros.inference.tensorrt_backend import import_tensorrt, open_cuda
from occ_ros.io.atomic import atomic_write_bytes

FAMILIES = ("8.6", "10", "11")
POLICIES = ("rebuild", "refuse")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
FP16_EXPORT_HINT = "export an FP16 ONNX with `occ export --checkpoint C --out m.onnx --half`"
QDQ_HINT = (
    "quantize the ONNX explicitly with NVIDIA TensorRT Model Optimizer, which inserts the QuantizeLinear / "
    'DequantizeLinear nodes (`pip install "nvidia-modelopt[all]"`; `python -m modelopt.onnx.quantization '
    "--onnx_path=m.onnx --quantize_mode=int8 --calibration_data=calib.npz --output_path=m.int8.onnx`, with calib.npz "
    "from `occ export --onnx m.onnx --calib DATA --calib-npz calib.npz`)"
)
#: (major, minor) compute capabilities with FP16 / INT8 per TensorRT's hardware-precision support matrix:
#: FP16 on 5.3 (Jetson Nano / TX1), 6.0 (P100), 6.2 (Jetson TX2) and 7.0+; INT8 on 6.1 (Pascal DP4A) and 7.0+.
FP16_EXTRA_CCS = ((5, 3), (6, 0), (6, 2))
INT8_EXTRA_CCS = ((6, 1),)


class BuildError(RuntimeError):
    """An engine that cannot be built as asked (names the file, the TensorRT version / GPU and what to do)."""


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class BuildSettings:
    """How to build an engine.

    Attributes:
        precision: ``fp32``, ``fp16`` or ``int8``.
        workspace_mib: builder workspace memory-pool limit, MiB.
        timing_cache: TensorRT timing cache file (read if present, written back); None: ``<engine>.timing.cache``.
        calib: INT8 calibration data (TensorRT 8.6 / 10): a dataset directory or a rosbag2 bag; None: use the
            existing calibration cache.
        calib_frames: at most this many evenly spaced calibration frames.
        calib_cache: the calibration cache; None: ``<engine>.calib.cache``.
        calib_kind: dataset kind of ``calib`` (``auto``, ``synth``, ``nuscenes``, ``semantickitti``, ``rosbag``).
        calib_config: camera / topic YAML when ``calib`` is a rosbag2 bag.
        on_mismatch: the rebuild policy for an existing engine whose key differs (other ONNX, TensorRT, GPU or
            precision): rebuilt (``rebuild``) or refused (``refuse``, an error); it is never silently used.
    """

    precision: str = "fp32"
    workspace_mib: int = 2048
    timing_cache: Path | None = None
    calib: Path | None = None
    calib_frames: int = 64
    calib_cache: Path | None = None
    calib_kind: str = "auto"
    calib_config: Path | None = None
    on_mismatch: str = "rebuild"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if int(self.workspace_mib) < 1:
            raise ValueError(f"workspace_mib must be at least 1 MiB, got {self.workspace_mib}")
        if int(self.calib_frames) < 1:
            raise ValueError(f"calib_frames must be at least 1, got {self.calib_frames}")
        if self.on_mismatch not in POLICIES:
            raise ValueError(f"on_mismatch (rebuild policy) must be one of {POLICIES}, got {self.on_mismatch!r}")
        for name in ("timing_cache", "calib", "calib_cache", "calib_config"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    def resolved(self, engine_path: str | Path) -> BuildSettings:
        """These settings with the default cache paths beside ``engine_path`` filled in."""
        engine = Path(engine_path)
        return replace(
            self,
            timing_cache=self.timing_cache or engine.with_name(engine.name + ".timing.cache"),
            calib_cache=self.calib_cache or engine.with_name(engine.name + ".calib.cache"),
        )


# ---------------------------------------------------------------------------------------------- versions, GPUs
def trt_family(version: str) -> str:
    """The API generation of a TensorRT version: ``"8.6"``, ``"10"`` or ``"11"`` (every 11+ release).

    Raises:
        BuildError: older than 8.6, or 9.x (a limited release), which this project does not build for.
    """
    normalized = normalize_trt_version(version)
    major, minor, _ = (int(p) for p in normalized.split("."))
    if major >= 11:
        return "11"
    if major == 10:
        return "10"
    if major == 8 and minor >= 6:
        return "8.6"
    if major == 9:
        raise BuildError(
            f"TensorRT {normalized} (9.x, a limited release) is not supported: use TensorRT 8.6 (JetPack 5), "
            "10.x (JetPack 6) or 11+"
        )
    raise BuildError(
        f"TensorRT {normalized} is too old: engines need TensorRT 8.6 or newer (the named I/O tensor API, "
        "execute_async_v3); upgrade TensorRT (JetPack 5.1.2+ ships 8.5/8.6, JetPack 6 ships 10.x)"
    )


def precision_supported(precision: str, compute_capability: str, gpu_name: str = "") -> bool:
    """True when the GPU runs ``precision`` (TensorRT's hardware / precision support matrix).

    FP32 runs everywhere; FP16 needs compute capability 5.3, 6.0, 6.2 or >= 7.0; INT8 needs 6.1 or >= 7.0.

    Raises:
        BuildError: the GPU lacks the precision (GPU, compute capability and precision named).
    """
    if precision not in PRECISIONS:
        raise BuildError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    cc = normalize_compute_capability(compute_capability)
    major, minor = (int(p) for p in cc.split("."))
    ok = {
        "fp32": True,
        "fp16": major >= 7 or (major, minor) in FP16_EXTRA_CCS,
        "int8": major >= 7 or (major, minor) in INT8_EXTRA_CCS,
    }[precision]
    if not ok:
        gpu = f"{gpu_name} " if gpu_name else ""
        raise BuildError(
            f"the GPU {gpu}(compute capability {cc}) has no fast {precision.upper()} support in TensorRT "
            f"({'FP16 needs 5.3, 6.0, 6.2 or >= 7.0' if precision == 'fp16' else 'INT8 needs 6.1 or >= 7.0'}); "
            "build with another precision"
        )
    return True


# ---------------------------------------------------------------------------------------------- ONNX summary
@dataclass(frozen=True)
class OnnxSummary:
    """What the build needs to know about an ONNX file (read with the ``onnx`` package, weights not loaded).

    Attributes:
        path: the file.
        sha256: sha256 of the file (the engine cache key's first part).
        inputs, outputs: tensor name -> (shape, numpy dtype name); symbolic dimensions are -1.
        weight_elements: float dtype name -> element count over initializers and Constant tensors.
        has_qdq: the graph has QuantizeLinear / DequantizeLinear nodes (explicit quantization).
        model_info: the :class:`ModelInfo` in ``metadata_props[METADATA_KEY]``, or None.
        metadata_error: why ``model_info`` is None ("" when it is set).
    """

    path: Path
    sha256: str
    inputs: dict[str, tuple[tuple[int, ...], str]]
    outputs: dict[str, tuple[tuple[int, ...], str]]
    weight_elements: dict[str, int] = field(default_factory=dict)
    has_qdq: bool = False
    model_info: ModelInfo | None = None
    metadata_error: str = ""

    @property
    def float_dtypes(self) -> list[str]:
        """Float dtypes of the weights and inputs, sorted."""
        found = set(self.weight_elements)
        found.update(dtype for _, dtype in self.inputs.values() if dtype.startswith(("float", "bfloat")))
        return sorted(found)

    @property
    def is_fp16(self) -> bool:
        """An "FP16 ONNX": float16 inputs, or at least as many float16 as float32 weight elements."""
        if any(dtype == "float16" for _, dtype in self.inputs.values()):
            return True
        fp16 = self.weight_elements.get("float16", 0)
        return fp16 > 0 and fp16 >= self.weight_elements.get("float32", 0)


def _np_dtype_name(elem_type: int) -> str:
    import onnx

    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        return str(onnx.TensorProto.DataType.Name(elem_type)).lower()


def _value_info(values: Any, skip: set[str]) -> dict[str, tuple[tuple[int, ...], str]]:
    out = {}
    for vi in values:
        if vi.name in skip:
            continue
        tensor = vi.type.tensor_type
        shape = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        out[vi.name] = (shape, _np_dtype_name(tensor.elem_type))
    return out


def onnx_summary(path: str | Path) -> OnnxSummary:
    """Summarise an ONNX file for :func:`plan_build`: I/O, float weight types, Q/DQ nodes, occ_ros metadata.

    Raises:
        BuildError: the file is missing or not an ONNX model.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise BuildError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError / ValueError / OSError depending on the damage
        raise BuildError(f"{path}: not a readable ONNX model ({type(err).__name__}: {err})") from None
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    weights: dict[str, int] = {}

    def count(tensor: Any) -> None:
        dtype = _np_dtype_name(tensor.data_type)
        if dtype.startswith(("float", "bfloat")):
            weights[dtype] = weights.get(dtype, 0) + int(np.prod(list(tensor.dims), dtype=np.int64))

    def walk(g: Any) -> bool:
        qdq = False
        for tensor in g.initializer:
            count(tensor)
        for node in g.node:
            qdq = qdq or node.op_type in QDQ_OPS
            for attr in node.attribute:
                if attr.HasField("t"):
                    count(attr.t)
                if attr.HasField("g"):
                    qdq = walk(attr.g) or qdq
                for sub in attr.graphs:
                    qdq = walk(sub) or qdq
        return qdq

    has_qdq = walk(graph) or any(node.op_type in QDQ_OPS for fn in model.functions for node in fn.node)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    info, error = None, ""
    if METADATA_KEY not in metadata:
        error = (
            f"{path}: the ONNX has no occ_ros model metadata (metadata_props key {METADATA_KEY!r}); "
            "export it with `occ export`"
        )
    else:
        try:
            info = ModelInfo.from_json(metadata[METADATA_KEY], f"{path}: metadata_props[{METADATA_KEY!r}]")
        except ModelInfoError as err:
            error = str(err)
    return OnnxSummary(
        path=path,
        sha256=sha256_file(path),
        inputs=_value_info(graph.input, initializers),
        outputs=_value_info(graph.output, set()),
        weight_elements=weights,
        has_qdq=has_qdq,
        model_info=info,
        metadata_error=error,
    )


# ---------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class BuildPlan:
    """How to drive TensorRT for one build (decided without TensorRT).

    Attributes:
        family: ``8.6``, ``10`` or ``11``.
        precision: the requested precision.
        network_flags: ``NetworkDefinitionCreationFlag`` member names for ``create_network``.
        builder_flags: ``BuilderFlag`` member names for the builder config.
        strongly_typed: the network's types come from the ONNX (no precision flags).
        needs_calibrator: INT8 by calibration (an ``IInt8EntropyCalibrator2``; TensorRT 8.6 / 10 only).
        calib_from_cache: the calibrator only reads the existing calibration cache (no data given).
        recalibrate: the existing calibration cache belongs to another ONNX: discard it and calibrate on the data.
        errors: why the build cannot be done (empty: it can).
        notes: things worth telling the user.
    """

    family: str
    precision: str
    network_flags: tuple[str, ...] = ()
    builder_flags: tuple[str, ...] = ()
    strongly_typed: bool = False
    needs_calibrator: bool = False
    calib_from_cache: bool = False
    recalibrate: bool = False
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def _shape_errors(summary: OnnxSummary, info: ModelInfo) -> list[str]:
    errors = []
    for kind, have, want in (
        ("input", summary.inputs, info.input_shapes()),
        ("output", summary.outputs, info.output_shapes()),
    ):
        for name, shape in want.items():
            if name not in have:
                errors.append(f"the ONNX has no {kind} {name!r} (its {kind}s: {sorted(have)}); the metadata needs it")
            elif tuple(have[name][0]) != tuple(shape):
                errors.append(
                    f"ONNX {kind} {name!r} has shape {have[name][0]}, its occ_ros metadata says {tuple(shape)} "
                    "(engines are built with static shapes: re-export the ONNX)"
                )
    extra = sorted(set(summary.inputs) - set(INPUT_NAMES))
    if extra:
        errors.append(f"the ONNX takes inputs {extra} beyond the model contract {list(INPUT_NAMES)}")
    return errors


def plan_build(settings: BuildSettings, family: str, onnx_info: OnnxSummary) -> BuildPlan:
    """The network / builder flags and calibration for building ``onnx_info`` at ``settings.precision`` with a
    TensorRT of ``family`` (see the module docstring for the rules).

    ``settings`` should be :meth:`BuildSettings.resolved` (so that an existing calibration cache is found).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown TensorRT family {family!r}; expected one of {FAMILIES}")
    precision, where = settings.precision, str(onnx_info.path)
    errors: list[str] = []
    notes: list[str] = []
    if onnx_info.model_info is None:
        errors.append(onnx_info.metadata_error or f"{where}: no occ_ros model metadata")
    else:
        errors.extend(f"{where}: {e}" for e in _shape_errors(onnx_info, onnx_info.model_info))
    network: list[str] = ["EXPLICIT_BATCH"] if family == "8.6" else []
    builder: list[str] = []
    strongly_typed = needs_calibrator = from_cache = False
    fp16_onnx, qdq = onnx_info.is_fp16, onnx_info.has_qdq
    calib_cache = settings.calib_cache
    cache_exists = calib_cache is not None and calib_cache.is_file()
    cache_onnx = calibration_cache_onnx(calib_cache) if calib_cache is not None and cache_exists else None
    cache_stale = cache_exists and cache_onnx is not None and cache_onnx != onnx_info.sha256
    have_cache = cache_exists and not cache_stale
    recalibrate = False

    if precision == "fp32" and fp16_onnx:
        errors.append(
            f"{where} is an FP16 ONNX (float types {onnx_info.float_dtypes}); an fp32 engine needs the FP32 ONNX "
            "(export without --half), or build this one with precision fp16"
        )
    if family == "11":
        network, strongly_typed = ["STRONGLY_TYPED"], True
        if precision == "fp16" and not fp16_onnx:
            errors.append(
                f"{where} is an FP32 ONNX (float types {onnx_info.float_dtypes or ['none']}): TensorRT 11+ removed the "
                f"FP16 builder flag and builds strongly typed networks, whose precision is the ONNX's; "
                f"{FP16_EXPORT_HINT} (or convert it with ModelOpt AutoCast) and build that"
            )
        if precision == "int8":
            if not qdq:
                errors.append(
                    f"{where} has no QuantizeLinear / DequantizeLinear nodes: TensorRT 11+ removed INT8 calibration "
                    f"(the INT8 builder flag and the calibrator), INT8 needs an explicitly quantized ONNX; {QDQ_HINT}"
                )
            if settings.calib is not None:
                notes.append("--calib is not used with TensorRT 11+: the Q/DQ nodes carry the INT8 scales")
    else:
        if family == "10" and fp16_onnx and precision in ("fp16", "int8") and (precision == "fp16" or qdq):
            network, strongly_typed = ["STRONGLY_TYPED"], True
        elif precision == "fp16":
            builder = ["FP16"]
        elif precision == "int8":
            builder = ["INT8", "FP16"]  # FP16 lets layers without INT8 kernels fall back to half, not float
            if qdq:
                notes.append("explicit quantization (Q/DQ nodes in the ONNX): no calibration needed")
            elif fp16_onnx:
                errors.append(f"{where} is an FP16 ONNX; INT8 calibration needs the FP32 ONNX (export without --half)")
            elif settings.calib is not None:
                needs_calibrator = True
                if have_cache:
                    notes.append(f"the calibration cache {calib_cache} exists and is used instead of the --calib data")
                elif cache_stale:
                    recalibrate = True
                    notes.append(f"the calibration cache {calib_cache} belongs to another ONNX: recalibrating")
            elif have_cache:
                needs_calibrator = from_cache = True
                notes.append(f"INT8 scales from the existing calibration cache {calib_cache}")
                if cache_onnx is None:
                    notes.append(f"{calib_cache} does not record which ONNX it was made for: make sure it is this one")
            elif cache_stale:
                errors.append(
                    f"the calibration cache {calib_cache} was made for another ONNX (sha256 {str(cache_onnx)[:12]}..., "
                    f"this one {onnx_info.sha256[:12]}...): pass --calib DIR|BAG to recalibrate, or delete it"
                )
            else:
                errors.append(
                    f"INT8 on TensorRT {family} needs calibration data: pass --calib DIR|BAG (a dataset folder or "
                    f"rosbag2 bag recorded like the deployment), or an existing calibration cache "
                    f"({calib_cache or '--calib-cache FILE'}); or give an ONNX with Q/DQ nodes ({QDQ_HINT})"
                )
        if family == "10" and builder:
            notes.append(
                "weak typing (BuilderFlag FP16 / INT8) is deprecated since TensorRT 10.12 and removed in 11: "
                f"for TensorRT 11, {FP16_EXPORT_HINT} or quantize with Q/DQ nodes"
            )
    return BuildPlan(
        family=family,
        precision=precision,
        network_flags=tuple(network),
        builder_flags=tuple(builder),
        strongly_typed=strongly_typed,
        needs_calibrator=needs_calibrator,
        calib_from_cache=from_cache,
        recalibrate=recalibrate,
        errors=tuple(errors),
        notes=tuple(notes),
    )


def trtexec_command(
    onnx: str | Path, engine: str | Path, settings: BuildSettings, family: str, plan: BuildPlan | None = None
) -> str:
    """The ``trtexec`` command that builds the same engine (run it on the target: Jetson engines on the Jetson).

    ``plan`` defaults to :func:`plan_build` on the ONNX file. Flags: ``--onnx``, ``--saveEngine``,
    ``--memPoolSize=workspace:<MiB>``, ``--timingCacheFile``; 8.6 / 10 weak typing: ``--fp16``, ``--int8``
    (+ ``--calib=<cache>``: trtexec only reads a calibration cache, written by a Python build with ``--calib``);
    10 strongly typed: ``--stronglyTyped``; 11+: no precision flags (strong typing is always on).
    """
    settings = settings.resolved(engine)
    if plan is None:
        plan = plan_build(settings, family, onnx_summary(onnx))
    q = shlex.quote
    parts = ["trtexec", f"--onnx={q(str(onnx))}", f"--saveEngine={q(str(engine))}"]
    parts.append(f"--memPoolSize=workspace:{int(settings.workspace_mib)}")  # a plain number is MiB (8.6 - 11)
    if settings.timing_cache is not None:
        parts.append(f"--timingCacheFile={q(str(settings.timing_cache))}")
    if family == "10" and plan.strongly_typed:
        parts.append("--stronglyTyped")
    if family != "11":
        if "FP16" in plan.builder_flags:
            parts.append("--fp16")
        if "INT8" in plan.builder_flags:
            parts.append("--int8")
            if plan.needs_calibrator:
                parts.append(f"--calib={q(str(settings.calib_cache))}")
    return " ".join(parts)


FAMILY_LABELS = {"8.6": "TensorRT 8.6", "10": "TensorRT 10.x", "11": "TensorRT 11+"}


def local_trt_family() -> str | None:
    """The family of the TensorRT installed here, or None when it is not installed (or unsupported)."""
    try:
        trt = import_tensorrt()
        return trt_family(str(trt.__version__))
    except (BackendError, BuildError, ValueError):
        return None


def trtexec_for(onnx: str | Path, engine: str | Path, settings: BuildSettings, family: str | None = None) -> str:
    """The trtexec command(s) to print for a build of ``onnx`` into ``engine``.

    For ``family`` (default: the TensorRT installed here) one command; when the family is unknown (TensorRT is not
    installed here, so the target decides) one line per distinct command, each ending in ``# <families>``, and a
    ``# <family>: not buildable ...`` comment line for a family whose rules reject this ONNX / precision.

    Raises:
        BuildError: the ONNX is missing or unreadable.
    """
    summary = onnx_summary(onnx)
    resolved = settings.resolved(engine)
    family = family or local_trt_family()
    families = [family] if family else list(FAMILIES)
    lines: list[tuple[str, list[str]]] = []
    problems: list[str] = []
    for fam in families:
        plan = plan_build(resolved, fam, summary)
        if not plan.ok:
            problems.append(f"# {FAMILY_LABELS[fam]}: not buildable at {settings.precision}: {plan.errors[0]}")
            continue
        command = trtexec_command(onnx, engine, settings, fam, plan)
        for known, labels in lines:
            if known == command:
                labels.append(FAMILY_LABELS[fam])
                break
        else:
            lines.append((command, [FAMILY_LABELS[fam]]))
    if family:
        return lines[0][0] if lines else problems[0]
    return "\n".join([f"{command}  # {', '.join(labels)}" for command, labels in lines] + problems)


# ---------------------------------------------------------------------------------------------- caching
@dataclass(frozen=True)
class CacheDecision:
    """Whether an existing engine is reused.

    Attributes:
        action: ``reuse``, ``build`` (no engine yet) or ``rebuild`` (an engine for something else).
        reasons: why it is not reused (each differing key field with both values, or the sidecar problem).
    """

    action: str
    reasons: tuple[str, ...] = ()

    @property
    def reuse(self) -> bool:
        return self.action == "reuse"


def cache_decision(engine_path: str | Path, key: EngineKey, on_mismatch: str = "rebuild") -> CacheDecision:
    """Reuse ``engine_path`` only when its sidecar's key equals ``key`` (and the engine file is the one it recorded).

    Raises:
        BuildError: with ``on_mismatch='refuse'``, an existing engine that does not match (every difference named).
    """
    if on_mismatch not in POLICIES:
        raise ValueError(f"on_mismatch (rebuild policy) must be one of {POLICIES}, got {on_mismatch!r}")
    engine_path = Path(engine_path)
    if not engine_path.exists():
        return CacheDecision("build")
    reasons: list[str] = []
    try:
        sidecar = read_sidecar(engine_path)
    except SidecarError as err:
        reasons.append(str(err).split("\n")[0])
    else:
        reasons.extend(sidecar.key.describe_diff(key, this="existing", that="wanted"))
        if not reasons and sidecar.engine_sha256 and sidecar.engine_sha256 != sha256_file(engine_path):
            reasons.append(f"{engine_path} changed since its sidecar was written (engine sha256 differs)")
    if not reasons:
        return CacheDecision("reuse")
    if on_mismatch == "refuse":
        raise BuildError(
            f"{engine_path} exists but does not match this build:\n  "
            + "\n  ".join(reasons)
            + "\nwith the rebuild policy 'refuse' (--on-mismatch refuse) it is neither used nor replaced: delete it, "
            "build elsewhere, or use 'rebuild'"
        )
    return CacheDecision("rebuild", tuple(reasons))


# ---------------------------------------------------------------------------------------------- sidecars
def make_sidecar(
    summary: OnnxSummary,
    key: EngineKey,
    settings: BuildSettings,
    plan: BuildPlan,
    trtexec: str,
    engine_sha256: str = "",
    gpu_name: str = "",
    tensors: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
) -> EngineSidecar:
    """The sidecar of an engine built from ``summary`` (I/O from ``tensors`` or else from the ONNX)."""
    if summary.model_info is None:
        raise BuildError(summary.metadata_error or f"{summary.path}: no occ_ros model metadata")
    if tensors is None:
        tensors = (
            {name: tensor_spec(shape, dtype) for name, (shape, dtype) in summary.inputs.items()},
            {name: tensor_spec(shape, dtype) for name, (shape, dtype) in summary.outputs.items()},
        )
    return EngineSidecar(
        key=key,
        inputs={k: dict(v) for k, v in tensors[0].items()},
        outputs={k: dict(v) for k, v in tensors[1].items()},
        model=summary.model_info.to_dict(),
        workspace_mib=int(settings.workspace_mib),
        timing_cache=str(settings.timing_cache or ""),
        strongly_typed=plan.strongly_typed,
        trtexec=trtexec,
        onnx=str(summary.path),
        engine_sha256=engine_sha256,
        gpu_name=gpu_name,
        builder_flags=list(plan.builder_flags),
        network_flags=list(plan.network_flags),
    )


def write_sidecar_for_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    settings: BuildSettings,
    trt_version: str,
    compute_capability: str,
    gpu_name: str = "",
) -> Path:
    """Write the sidecar of an engine built by hand with :func:`trtexec_command` on the target (no TensorRT needed
    here): model info from the ONNX metadata, key from the given TensorRT version and GPU.

    Raises:
        BuildError: no engine file, or an ONNX / precision that :func:`plan_build` rejects.
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise BuildError(f"{engine_path}: no such engine file")
    settings = settings.resolved(engine_path)
    family = trt_family(trt_version)
    summary = onnx_summary(onnx_path)
    plan = plan_build(settings, family, summary)
    if not plan.ok:
        raise BuildError(f"{onnx_path}: cannot describe this build:\n  - " + "\n  - ".join(plan.errors))
    key = EngineKey(summary.sha256, trt_version, compute_capability, settings.precision)
    command = trtexec_command(onnx_path, engine_path, settings, family, plan)
    sidecar = make_sidecar(summary, key, settings, plan, command, sha256_file(engine_path), gpu_name)
    return write_sidecar(engine_path, sidecar)


# ---------------------------------------------------------------------------------------------- the build
@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_engine` did.

    Attributes:
        engine, sidecar: the engine and its sidecar JSON.
        key: the engine's cache key.
        reused: an existing matching engine was kept (nothing built).
        reasons: why an existing engine was rebuilt (empty for a first build or a reuse).
        trtexec: the equivalent trtexec command.
        plan: the flags used.
        seconds: build time (0 when reused).
        calibration_batches: frames fed to the INT8 calibrator (0 without calibration or from a cache).
    """

    engine: Path
    sidecar: Path
    key: EngineKey
    reused: bool
    reasons: tuple[str, ...]
    trtexec: str
    plan: BuildPlan
    seconds: float = 0.0
    calibration_batches: int = 0

    def summary(self) -> str:
        """One paragraph for the user: what was built or reused, for which TensorRT / GPU / precision."""
        key = self.key
        what = f"TensorRT {key.trt_version}, {sm_name(key.compute_capability)}, {key.precision}"
        if self.reused:
            return f"engine: reused {self.engine} ({what}; same ONNX sha256 {key.onnx_sha256[:12]})"
        lines = [f"engine: built {self.engine} ({what}) in {self.seconds:.1f} s; sidecar {self.sidecar}"]
        if self.reasons:
            lines.append("  rebuilt because: " + "; ".join(self.reasons))
        if self.calibration_batches:
            lines.append(f"  INT8 calibrated on {self.calibration_batches} frames")
        lines.extend(f"  note: {note}" for note in self.plan.notes)
        return "\n".join(lines)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    settings: BuildSettings | None = None,
    device: str = "cuda",
    log: Callable[[str], None] | None = print,
) -> BuildResult:
    """Build (or reuse) the TensorRT engine of an ONNX model on this machine's GPU, with its sidecar.

    The cache key is (ONNX sha256, TensorRT version, compute capability, precision): an existing engine with the
    same key is reused (and said so); one with any other key is rebuilt, or refused with ``on_mismatch='refuse'``; it is
    never silently used. The engine is written atomically, then its sidecar (model info from the ONNX metadata,
    the trtexec command). The timing cache is read and written back atomically.

    Raises:
        BuildError: TensorRT / CUDA missing, an unsupported precision, an ONNX the plan rejects, parser errors
            (with node names), calibration problems, or a failed build.
    """
    say = log or (lambda _msg: None)
    engine_path, onnx_path = Path(engine_path), Path(onnx_path)
    settings = (settings or BuildSettings()).resolved(engine_path)
    summary = onnx_summary(onnx_path)
    try:
        index = parse_cuda_device(device)
        trt = import_tensorrt(f"cannot build {engine_path}")
        cuda = open_cuda(index)
    except BackendError as err:
        raise BuildError(
            f"{err}\nTensorRT engines are built on the machine that runs them (Jetson engines on the Jetson); "
            "copy the ONNX there and run `occ export --engine` (or trtexec) on it"
        ) from None
    try:
        version = str(trt.__version__)
        family = trt_family(version)
        precision_supported(settings.precision, cuda.compute_capability, cuda.name)
        plan = plan_build(settings, family, summary)
        if not plan.ok:
            raise BuildError(
                f"cannot build a {settings.precision} engine with TensorRT {version}:\n  - "
                + "\n  - ".join(plan.errors)
            )
        key = EngineKey(summary.sha256, version, cuda.compute_capability, settings.precision)
        command = trtexec_command(onnx_path, engine_path, settings, family, plan)
        for note in plan.notes:
            say(f"note: {note}")
        decision = cache_decision(engine_path, key, settings.on_mismatch)
        if decision.reuse:
            say(
                f"reusing {engine_path}: built from the same ONNX with TensorRT {key.trt_version} for "
                f"{sm_name(key.compute_capability)} at {key.precision}"
            )
            return BuildResult(engine_path, sidecar_path(engine_path), key, True, (), command, plan)
        if decision.action == "rebuild":
            say(f"rebuilding {engine_path}:\n  " + "\n  ".join(decision.reasons))
        say(f"equivalent trtexec command (to build on the target):\n  {command}")
        start = time.perf_counter()
        data, tensors, batches = _build_serialized(trt, summary, settings, plan, cuda, say)
        seconds = time.perf_counter() - start
        sidecar_path(engine_path).unlink(missing_ok=True)  # never pair the new engine with the old sidecar
        atomic_write_bytes(engine_path, data)
        sidecar = make_sidecar(summary, key, settings, plan, command, sha256_file(engine_path), cuda.name, tensors)
        written = write_sidecar(engine_path, sidecar)
        say(f"wrote {engine_path} ({len(data) / 2**20:.1f} MiB, {seconds:.0f} s) and {written.name}")
        return BuildResult(engine_path, written, key, False, decision.reasons, command, plan, seconds, batches)
    finally:
        cuda.close()


def _parser_error(error: Any) -> str:
    """One ONNX-parser error as text, with the node's name and operator where this TensorRT reports them."""
    parts = []
    for attr in ("node_name", "node_operator"):
        getter = getattr(error, attr, None)
        try:
            value = getter() if callable(getter) else ""
        except Exception:  # older bindings raise for errors not tied to a node
            value = ""
        parts.append(str(value or ""))
    node = getattr(error, "node", None)
    index = node() if callable(node) else -1
    name, op = parts
    where = f"node {name!r}" if name else (f"node #{index}" if isinstance(index, int) and index >= 0 else "graph")
    if op:
        where += f" ({op})"
    desc = error.desc() if callable(getattr(error, "desc", None)) else str(error)
    return f"{where}: {desc}"


def _flag_value(enum: Any, name: str, what: str, version: str) -> Any:
    member = getattr(enum, name, None)
    if member is None:
        raise BuildError(f"TensorRT {version} has no {what} {name} (plan for another TensorRT version?)")
    return member


def _calibration_data(
    summary: OnnxSummary, settings: BuildSettings, plan: BuildPlan, say: Callable[[str], None]
) -> Any:
    """The calibration feeds when the plan calibrates from data (None: no calibration, or from the cache)."""
    if not plan.needs_calibrator or settings.calib is None:
        return None
    if settings.calib_cache is not None and plan.recalibrate:
        settings.calib_cache.unlink(missing_ok=True)  # scales of another ONNX
        calibration_meta_path(settings.calib_cache).unlink(missing_ok=True)
    if settings.calib_cache is not None and settings.calib_cache.is_file():
        return None  # TensorRT reads the cache and asks for no batches

    assert summary.model_info is not None
    try:
        feeds = calibration_feeds(
            settings.calib, summary.model_info, settings.calib_frames, settings.calib_kind, settings.calib_config
        )
    except (ValueError, OSError) as err:  # CalibrationError, unreadable / unknown dataset, missing bag config
        raise BuildError(f"INT8 calibration data {settings.calib}: {err}") from None
    say(f"calibrating INT8 on up to {settings.calib_frames} frames of {settings.calib}")
    return feeds


def _build_serialized(
    trt: Any, summary: OnnxSummary, settings: BuildSettings, plan: BuildPlan, cuda: Any, say: Callable[[str], None]
) -> tuple[bytes, tuple[dict[str, Any], dict[str, Any]], int]:
    """Parse and build with the TensorRT Python API; (engine bytes, (inputs, outputs) tensor specs, calib batches)."""
    version = str(trt.__version__)
    feeds = _calibration_data(summary, settings, plan, say)  # checked before any TensorRT work
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    for precision, attr in (("fp16", "platform_has_fast_fp16"), ("int8", "platform_has_fast_int8")):
        # Deprecated in 10.5 and removed in 11: consulted only where this TensorRT still has them.
        if plan.precision == precision and hasattr(builder, attr) and not getattr(builder, attr):
            raise BuildError(
                f"TensorRT reports no fast {precision.upper()} on the GPU {cuda.name} (sm {cuda.compute_capability})"
            )
    flags = 0
    for name in plan.network_flags:
        if plan.family == "11" and not hasattr(trt.NetworkDefinitionCreationFlag, name):
            continue  # STRONGLY_TYPED is accepted but ignored in 11 (strong typing is always on); fine if gone
        flags |= 1 << int(_flag_value(trt.NetworkDefinitionCreationFlag, name, "network flag", version))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(summary.path)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BuildError(
            f"{summary.path}: TensorRT {version}'s ONNX parser failed:\n  " + "\n  ".join(errors or ["(no details)"])
        )
    tensors = (
        {
            t.name: tensor_spec(tuple(t.shape), t.dtype)
            for t in (network.get_input(i) for i in range(network.num_inputs))
        },
        {
            t.name: tensor_spec(tuple(t.shape), t.dtype)
            for t in (network.get_output(i) for i in range(network.num_outputs))
        },
    )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_mib) << 20)
    for name in plan.builder_flags:
        config.set_flag(_flag_value(trt.BuilderFlag, name, "builder flag", version))
    timing_path = settings.timing_cache
    if timing_path is not None:
        data = timing_path.read_bytes() if timing_path.is_file() else b""
        try:  # ignore_mismatch=False: a cache from another GPU / TensorRT is refused, not half-used
            cache = config.create_timing_cache(data)
            accepted = cache is not None and bool(config.set_timing_cache(cache, False))
        except Exception:  # a damaged cache file: start over rather than fail the build
            accepted = False
        if not accepted:
            say(f"timing cache {timing_path} is from another TensorRT / GPU or damaged: starting a new one")
            config.set_timing_cache(config.create_timing_cache(b""), False)
    calibrator = None
    if plan.needs_calibrator:
        assert settings.calib_cache is not None
        calibrator = make_entropy_calibrator(trt, feeds, settings.calib_cache, cuda)
        config.int8_calibrator = calibrator
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if calibrator is not None and calibrator.error is not None:
        raise BuildError(f"INT8 calibration failed: {calibrator.error}") from calibrator.error
    if calibrator is not None and calibrator.batches and settings.calib_cache is not None:
        if settings.calib_cache.is_file():
            write_calibration_meta(settings.calib_cache, summary.sha256, settings.calib or "", calibrator.batches)
    if serialized is None:
        raise BuildError(f"TensorRT {version} could not build {summary.path} (see the TensorRT log above)")
    if timing_path is not None:
        atomic_write_bytes(timing_path, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), tensors, int(calibrator.batches) if calibrator is not None else 0
