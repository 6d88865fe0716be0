"""TensorRT compatibility report: every op of an ONNX graph against TensorRT 8.6, 10.x and 11.x.

:func:`compat_report` runs ONNX shape inference (ranks and dtypes), walks every node (subgraphs of ``If`` /
``Loop`` / ``Scan`` included) and gives each op type a status per TensorRT family:

* ``supported``: the family's ONNX parser lists the op and every check on the actual nodes passes;
* ``restricted: <why>``: listed, but only under a condition the report cannot fully check (a restriction of the
  matrix that is not checked statically, a dtype the matrix does not list, a later minor release of the family);
* ``unsupported: <why>``: not in the family's matrix, listed as not supported, a node that breaks one of the
  matrix's restrictions, a custom-domain op, or a graph opset outside the family's range.

:func:`check_trt_compat` raises :class:`TRTCompatError` (op, node and family named) when any op is unsupported.
Nothing here imports TensorRT.

Sources (public material read for this table; a fact found in none of them is marked "unverified" where used)
----------------------------------------------------------------------------------------------------------------
* TensorRT 8.6 family (:data:`TRT86`): there was no copy of the 8.6 branch's operator matrix to read. The table is
  the onnx-tensorrt ``docs/operators.md`` matrix whose header reads "TensorRT 8.5 supports operators up to Opset 17"
  (repo ``onnx/onnx-tensorrt``, commit ``6d0ab7be324d02c7feb3a306b6fdbeae84f71ddc``), plus the "TensorRT 8.6 EA"
  and "TensorRT 8.6 GA" entries of onnx-tensorrt ``docs/Changelog.md`` (version whose newest entry is "TensorRT
  10.15 GA Release - 2026-2-2"): GroupNormalization, LayerNormalization and IsInf added; INT32 inputs for
  ArgMin/ArgMax/TopK; dynamic-shape ReverseSequence; dynamic ``K`` for TopK; N-D Trilu. The dtypes of the three
  added ops are not in that material, so they are left unchecked. Opset limit 17: stated in the 8.5 matrix and in
  an NVIDIA Orin DLA operator page for TensorRT 8.6 ("TensorRT 8.6 supports operators up to Opset 17"; its
  repository was not exposed by the index).
  UINT8 rules: TensorRT 8.6.1 Python API ``tensorrt.DataType`` (docs.nvidia.com/deeplearning/tensorrt/archives/
  tensorrt-861/api/python_api/infer/FoundationalTypes/DataType.html): UINT8 only as network input/output,
  conversions to and from UINT8 only from/to FP32 and FP16 ("not supported for int8, int32, bool").
* TensorRT 10.x family (:data:`TRT10`): onnx-tensorrt ``docs/operators.md``, the stored version whose header reads
  "TensorRT 10.15 supports operators in the inclusive range of opset 9 to opset 24" (the index did not expose its
  commit). The 10.0 version of the same file (read only in excerpts) gives opsets 9-20 for 10.0. Per-op minimum
  10.x releases (``since``) come from the 10.x entries of ``docs/Changelog.md`` above (DeformConv 10.1, tensor
  ``axes`` for Slice 10.3 and Pad 10.4, Blackman/Hamming/Hann windows 10.4, STFT 10.5, FP4 10.8, Einsum ellipsis /
  diagonal / broadcasting 10.12, Attention 10.14, RotaryEmbedding / RMSNormalization / TensorScatter 10.15).
* TensorRT 11.x family (:data:`TRT11`): no 11.x ``operators.md`` was available. The table is the 10.15 matrix plus
  the parser changes of the 11.x release notes: 11.0 (github.com/NVIDIA/TensorRT/releases/tag/v11.0: "Added
  support for Swish operator"), 11.2 (releases/tag/v11.2: "Added support for the DFT operator and 5D GridSample
  operators"; TensorRT 11.2.1 release notes, docs.nvidia.com/deeplearning/tensorrt/latest/getting-started/
  release-notes-11/11.2.1.html: "Extends GridSample from 2D-only to 3D (rank-5 input) with FP32, FP16, and BF16;
  linear, nearest, and cubic interpolation; align_corners 0/1; and padding modes zeros, border, and reflection"),
  11.5 (releases/tag/v11.5: ONNX opset 25; "Added support for Squeeze when axis input is omitted"). Whether 11.x
  dropped any op of the 10.15 matrix is unverified.
* GridSample was 4-D only before 11.2: the 10.15 matrix ("Input must be 4D input"), TensorRT's GridSample operator
  page (input shape ``[N, C, H, W]``) and the 11.2.1 release note above ("from 2D-only to 3D").
* Cast to UINT8 in 10.x / 11.x: the 10.x ``tensorrt.DataType`` docs still say UINT8 conversions are only from
  FP32/FP16, while TensorRT's Cast operator page lists uint8 among the types between which "all conversions" are
  allowed; the report flags such casts as restricted (cast to FLOAT first to be safe) rather than failing them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "FAMILIES",
    "CompatReport",
    "FamilyTable",
    "Finding",
    "OpEntry",
    "OpRow",
    "Source",
    "TRTCompatError",
    "check_trt_compat",
    "compat_report",
    "support_table",
]

FAMILIES = ("8.6", "10", "11")
"""The TensorRT families a report covers by default."""

SUPPORTED = "supported"
RESTRICTED = "restricted"
UNSUPPORTED = "unsupported"
_RANK = {SUPPORTED: 0, RESTRICTED: 1, UNSUPPORTED: 2}
DEFAULT_DOMAINS = ("", "ai.onnx")
GRAPH = "<graph>"
"""Op type / node of graph-level findings (the opset)."""


class TRTCompatError(RuntimeError):
    """A graph with an op TensorRT cannot parse in a requested family (names op, node and family).

    Attributes:
        report: the full :class:`CompatReport`.
    """

    def __init__(self, message: str, report: CompatReport) -> None:
        super().__init__(message)
        self.report = report


# ============================================================================================== support tables
@dataclass(frozen=True)
class Source:
    """Where (part of) a support table comes from."""

    title: str
    location: str
    version: str
    commit: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"title": self.title, "location": self.location, "version": self.version, "commit": self.commit}


@dataclass(frozen=True)
class OpEntry:
    """One op in one TensorRT family.

    Attributes:
        supported: the parser imports the op (``Y`` in the matrix).
        types: dtypes the matrix lists (matrix spelling: FP32, FP16, BF16, INT32, INT64, INT8, UINT8, BOOL, FP8,
            FP4, INT4); empty = not listed, not checked.
        note: the matrix's restriction, in short; checked on the node where :data:`_CHECKS` has a check for the op,
            otherwise reported as a caveat ("restricted ... (not checked)").
        since: first release of the family with the op when later than the family's first (e.g. ``"10.14"``).
        origin: ``matrix``, ``changelog`` or ``release notes``.
    """

    supported: bool
    types: tuple[str, ...] = ()
    note: str = ""
    since: str = ""
    origin: str = "matrix"


@dataclass(frozen=True)
class FamilyTable:
    """The ONNX support of one TensorRT family."""

    family: str
    name: str
    first: str
    opset_min: int
    opset_max: int
    opset_note: str
    tensor_types: frozenset[str]
    ops: Mapping[str, OpEntry]
    sources: tuple[Source, ...]
    caveats: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "name": self.name,
            "opsets": [self.opset_min, self.opset_max],
            "opset_note": self.opset_note,
            "tensor_types": sorted(self.tensor_types),
            "sources": [s.to_dict() for s in self.sources],
            "caveats": list(self.caveats),
        }


def _parse_matrix(text: str, origin: str = "matrix") -> dict[str, OpEntry]:
    """``Op[, Op...] : TYPES | note | since`` lines (``N`` = not supported) -> entries."""
    ops: dict[str, OpEntry] = {}
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        names, _, rest = line.partition(":")
        parts = [p.strip() for p in rest.split("|")]
        parts += [""] * (3 - len(parts))
        spec, note, since = parts[:3]
        supported = spec != "N"
        types = tuple(spec.split()) if supported else ()
        for name in names.split(","):
            ops[name.strip()] = OpEntry(supported, types, note, since, origin)
    return ops


_F = "FP32 FP16"
_REDUCE_OPS = (
    "ReduceL1, ReduceL2, ReduceLogSum, ReduceLogSumExp, ReduceMax, ReduceMean, ReduceMin, ReduceProd, ReduceSum, "
    "ReduceSumSquare"
)
_SEQUENCE_OPS = (
    "SequenceAt, SequenceConstruct, SequenceEmpty, SequenceErase, SequenceInsert, SequenceLength, SequenceMap"
)

# onnx-tensorrt docs/operators.md, "TensorRT 8.5 supports operators up to Opset 17" (commit 6d0ab7be), transcribed.
_MATRIX_85 = f"""
Abs, Add: {_F} INT32
Acos, Acosh, Asin, Asinh, Atan, Atanh, Ceil, Celu, Cos, Cosh, Erf, Exp, Floor, Log, LogSoftmax: {_F}
And, Not, Or, Xor: BOOL
ArgMax, ArgMin: {_F}
AveragePool: {_F} INT8 INT32 | 2-D or 3-D pooling only
BatchNormalization, Dropout, ImageScaler, LRN, LpNormalization, MatMul, MeanVarianceNormalization: {_F}
Bernoulli, BitShift, BlackmanWindow, Compress, ConcatFromSequence, ConvInteger, DFT, Det: N
DynamicQuantizeLinear, HammingWindow, HannWindow, Hardmax, IsInf, LayerNormalization, MatMulInteger: N
MaxRoiPool, MaxUnpool, MelWeightMatrix, Multinomial, NegativeLogLikelihoodLoss, Optional: N
OptionalGetElement, OptionalHasElement, QLinearConv, QLinearMatMul, STFT, SoftmaxCrossEntropyLoss: N
SplitToSequence, StringNormalizer, TfIdfVectorizer, Unique: N
{_SEQUENCE_OPS}: N
Cast: {_F} INT32 INT8 BOOL
Clip, Elu, Gemm, GlobalAveragePool, GlobalLpPool, GlobalMaxPool, HardSwish, HardSigmoid, LeakyRelu: {_F} INT8
LpPool, ParametricSoftplus, PRelu, Relu, Round, ScaledTanh, Selu, Sigmoid, Softplus, Softsign, Tanh: {_F} INT8
ThresholdedRelu: {_F} INT8
Concat, Constant, Identity, Reshape, Shape, Size, Transpose, Trilu: {_F} INT32 INT8 BOOL
ConstantOfShape: FP32
Conv, ConvTranspose: {_F} INT8
CumSum: {_F} | `axis` must be an initializer
DepthToSpace, SpaceToDepth, Shrink: {_F} INT32
DequantizeLinear: INT8 | `x_zero_point` must be zero
Div, Equal, Greater, GreaterOrEqual, IsNaN, Less, LessOrEqual, Max, Mean, Min, Mod, Mul, Neg: {_F} INT32
Range, Sub, Sum: {_F} INT32
Einsum: {_F} | no ellipsis, no diagonal, no broadcasting between inputs
Expand, EyeLike, Flatten, OneHot, Split, Tile, Where: {_F} INT32 BOOL
Gather, GatherElements, GatherND: {_F} INT8 INT32 BOOL
GridSample: {_F}
GRU, LSTM, RNN: {_F} | bidirectional: the same activations in both directions
If: {_F} INT32 BOOL | branch outputs: broadcastable shapes and different names
InstanceNormalization: {_F} | `scale` and `B` must be initializers; input rank 3 to 5
Loop: {_F} INT32 BOOL
MaxPool: {_F} INT8 | 2-D or 3-D pooling only; `Indices` output unsupported
NonMaxSuppression, NonZero, Pow, Reciprocal, RoiAlign, Scan, Softmax, Sqrt, Sin, Sinh, Tan, Upsample: {_F}
Pad: {_F} INT8 INT32
QuantizeLinear: {_F} | `y_zero_point` must be 0
RandomNormal, RandomNormalLike, RandomUniform, RandomUniformLike: {_F} | `seed` is ignored
{_REDUCE_OPS}: {_F}
Resize: {_F} | modes nearest, linear; five coordinate transformation modes (_RESIZE_TRANSFORMS)
ReverseSequence: {_F} | dynamic input shapes unsupported
Scatter, ScatterElements, ScatterND: {_F} INT8 INT32
Sign: {_F} INT8 INT32
Slice: {_F} INT32 INT8 BOOL | `axes` must be an initializer
Squeeze: {_F} INT32 INT8 BOOL | `axes` must be an initializer
TopK: {_F} | `K` must be an initializer
Unsqueeze: {_F} INT32 INT8 BOOL | `axes` must be a constant tensor
"""

_G = "FP32 FP16 BF16"
_GI = "FP32 FP16 BF16 INT32 INT64"
_GIB = "FP32 FP16 BF16 INT32 INT64 BOOL"
_CONST_TYPES = "FP32 FP16 BF16 FP8 FP4 INT4 INT32 INT64 BOOL"
# onnx-tensorrt docs/operators.md, "TensorRT 10.15 supports operators in the inclusive range of opset 9 to opset 24",
# transcribed; `since` from docs/Changelog.md's 10.x entries.
_MATRIX_1015 = f"""
Abs, Add, ArgMax, ArgMin, Div, Equal, Greater, GreaterOrEqual, IsNaN, Less, LessOrEqual, Max, Min, Mod, Mul: {_GI}
Neg, Pow, Range, Relu, Shrink, Sign, Sub, Sum, DepthToSpace, SpaceToDepth: {_GI}
Acos, Acosh, Asin, Asinh, Atan, Atanh, BatchNormalization, Ceil, Celu, Clip, Conv, ConvTranspose, Cos, Cosh: {_G}
Einsum, Elu, Erf, Exp, Floor, Gemm, GlobalAveragePool, GlobalLpPool, GlobalMaxPool, GroupNormalization: {_G}
HardSigmoid, HardSwish, ImageScaler, InstanceNormalization, IsInf, LeakyRelu, Log, LogSoftmax, LRN: {_G}
LpNormalization, MatMul, MeanVarianceNormalization, ParametricSoftplus, PRelu, Reciprocal, Round: {_G}
ScaledTanh, Scan, Selu, Sigmoid, Sin, Sinh, Softmax, Softplus, Softsign, Sqrt, Tan, Tanh, ThresholdedRelu: {_G}
Upsample: {_G}
AffineGrid, Bernoulli, BitShift, BitwiseAnd, BitwiseNot, BitwiseOr, BitwiseXor, Col2Im, CenterCropPad: N
Compress, ConcatFromSequence, ConvInteger, DFT, Det, ImageDecoder, MatMulInteger, MaxRoiPool, MaxUnpool: N
MelWeightMatrix, Multinomial, NegativeLogLikelihoodLoss, Optional, OptionalGetElement, OptionalHasElement: N
QLinearConv, QLinearMatMul, RegexFullMatch, SoftmaxCrossEntropyLoss, SplitToSequence, StringConcat: N
StringNormalizer, StringSplit, TfIdfVectorizer, Unique: N
DynamicQuantizeLinear: N | can be composed from ONNX ops as a model-local function
{_SEQUENCE_OPS}: N
And, Not, Or, Xor: BOOL
Attention: {_G} INT8 FP8 | 4-D Q, K, V, attn_mask; no KV-cache inputs / outputs, qk_matmul_output or softcap | 10.14
AveragePool: {_G} | 2-D or 3-D pooling only; `dilations` empty or all ones
BlackmanWindow, HammingWindow, HannWindow: FP32 FP16 | | 10.4
Cast, CastLike: {_GI} UINT8 BOOL
Concat, Expand, Flatten, Gather, GatherElements, GatherND, Identity, Reshape, ReverseSequence, Shape: {_GIB}
Size, Slice, Split, Tile, Transpose, Trilu, Where: {_GIB}
Constant: {_CONST_TYPES} | `sparse_value`, `value_string`, `value_strings` unsupported
ConstantOfShape: {_CONST_TYPES}
CumSum: {_G} | `axis` must be a build-time constant
DeformConv: FP32 FP16 | 1-D or 2-D spatial input; equal begin/end `pads` per axis | 10.1
DequantizeLinear: INT8 FP8 FP4 INT4 | `x_zero_point` must be zero
Dropout: {_G} | `is_training` must be an initializer and False
EyeLike: {_GIB} | input must have static dimensions
Gelu: {_G} INT8 INT32 INT64
GridSample: FP32 FP16 | input must be 4-D
GRU, RNN: {_G} | bidirectional: the same activations in both directions
Hardmax: {_G} | the `axis` dimension must be a build-time constant
If: {_GIB} | branch outputs: the same rank and different names
LayerNormalization: {_G} | only the first output `Y`
Loop: {_GIB} | scan outputs of static length; loop-carried shapes constant over iterations
LSTM: {_G} | bidirectional: the same activations in both directions; `input_forget` 0; `layout` 0
LpPool: {_G} | `dilations` empty or all ones
MaxPool: {_G} | 2-D or 3-D pooling only; `Indices` output unsupported; `dilations` empty or all ones
Mean: {_G} FP8 INT32 INT64
Mish, NonMaxSuppression, NonZero, RoiAlign: FP32 FP16
OneHot: {_GIB} | `depth` must be a build-time constant
Pad: {_GI}
QuantizeLinear: {_G} | `y_zero_point` must be 0
RandomNormal, RandomNormalLike, RandomUniform, RandomUniformLike: {_G} | `seed` is ignored
{_REDUCE_OPS}: {_GI} | `axes` must be an initializer
Resize: {_G} | as 8.x; aspect-ratio policy stretch; tensor `scales` need iota `axes`; no antialiasing
RMSNormalization: {_G} | | 10.15
RotaryEmbedding: {_G} | `position_ids` must be INT64 | 10.15
Scatter, ScatterElements: {_GI}
ScatterND: {_GI} | `reduction` must be none
STFT: FP32 | `frame_step` and `window` must be initializers; real-valued input | 10.5
Squeeze, Unsqueeze: {_GIB} | `axes` must be resolvable to a constant
TensorScatter: {_G} INT32 | `past_cache` and `update` 4-D; `axis` -2 | 10.15
TopK: {_GI} | `sorted` must be 1; `K` below 3840
"""

_OPS_86 = _parse_matrix(_MATRIX_85)
for _name in ("GroupNormalization", "LayerNormalization", "IsInf"):
    _OPS_86[_name] = OpEntry(True, (), "", "", "changelog")
for _name in ("ArgMax", "ArgMin"):
    _OPS_86[_name] = OpEntry(True, (*_OPS_86[_name].types, "INT32"), "", "", "matrix + changelog")
_OPS_86["TopK"] = OpEntry(True, ("FP32", "FP16", "INT32"), "", "", "matrix + changelog")
_OPS_86["ReverseSequence"] = OpEntry(True, ("FP32", "FP16"), "", "", "matrix + changelog")

_OPS_10 = _parse_matrix(_MATRIX_1015)

_OPS_11 = dict(_OPS_10)
_OPS_11["Swish"] = OpEntry(True, (), "", "", "release notes")
_OPS_11["DFT"] = OpEntry(True, (), "", "11.2", "release notes")  # via the FFTPlugin
_OPS_11["GridSample"] = OpEntry(True, ("FP32", "FP16"), "4-D input; 5-D (3-D sampling) from 11.2", "", "matrix")
_OPS_11["Squeeze"] = OpEntry(True, _OPS_10["Squeeze"].types, "`axes` must be resolvable to a constant")

_ONNX_TREE = "github.com/onnx/onnx-tensorrt"
_CHANGELOG = Source(
    "onnx-tensorrt docs/Changelog.md", f"{_ONNX_TREE} docs/Changelog.md", "newest entry: TensorRT 10.15 GA (2026-2-2)"
)
_TYPES_86 = frozenset({"FP32", "FP16", "INT8", "BOOL", "INT32", "INT64", "DOUBLE", "UINT8"})
_TYPES_10 = frozenset(
    {"FP32", "FP16", "BF16", "INT32", "INT64", "INT8", "INT4", "FP8", "FP4", "UINT8", "BOOL", "DOUBLE"}
)

TRT86 = FamilyTable(
    family="8.6",
    name="TensorRT 8.6",
    first="8.6",
    opset_min=1,
    opset_max=17,
    opset_note="TensorRT 8.6 supports ONNX opsets up to 17",
    tensor_types=_TYPES_86,
    ops=_OPS_86,
    sources=(
        Source(
            "onnx-tensorrt operator matrix (TensorRT 8.5 header)",
            f"{_ONNX_TREE} docs/operators.md",
            "TensorRT 8.5",
            "6d0ab7be324d02c7feb3a306b6fdbeae84f71ddc",
        ),
        _CHANGELOG,
        Source(
            "TensorRT 8.6.1 Python API, tensorrt.DataType (UINT8 rules)",
            "docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-861/api/python_api/infer/FoundationalTypes/"
            "DataType.html",
            "8.6.1",
        ),
    ),
    caveats=(
        "no 8.6-branch operator matrix was available: the 8.5 matrix plus the 8.6 changelog entries",
        "INT64 and DOUBLE tensors are cast down to INT32 / FLOAT where possible (limited support)",
        "UINT8 only as a network input or output, converted only from / to FP32 or FP16",
    ),
)
TRT10 = FamilyTable(
    family="10",
    name="TensorRT 10.x",
    first="10.0",
    opset_min=9,
    opset_max=24,
    opset_note="TensorRT 10.0 supports ONNX opsets 9-20, 10.15 opsets 9-24",
    tensor_types=_TYPES_10,
    ops=_OPS_10,
    sources=(
        Source(
            "onnx-tensorrt operator matrix (TensorRT 10.15 header)",
            f"{_ONNX_TREE} docs/operators.md",
            "TensorRT 10.15 (commit not exposed by the index)",
        ),
        _CHANGELOG,
    ),
    caveats=(
        "the table is the newest 10.x matrix (10.15); ops added during 10.x carry their first release",
        "UINT8 only as a network input or output",
    ),
)
TRT11 = FamilyTable(
    family="11",
    name="TensorRT 11.x",
    first="11.0",
    opset_min=9,
    opset_max=25,
    opset_note="TensorRT 11.0-11.4 support ONNX opsets 9-24, 11.5 adds opset 25",
    tensor_types=_TYPES_10,
    ops=_OPS_11,
    sources=(
        Source(
            "onnx-tensorrt operator matrix (TensorRT 10.15 header), as the 11.x baseline",
            f"{_ONNX_TREE} docs/operators.md",
            "TensorRT 10.15",
        ),
        Source("TensorRT 11.0 release (parsers: Swish)", "github.com/NVIDIA/TensorRT/releases/tag/v11.0", "11.0"),
        Source(
            "TensorRT 11.2 release (parsers: DFT, 5-D GridSample)",
            "github.com/NVIDIA/TensorRT/releases/tag/v11.2",
            "11.2",
        ),
        Source(
            "TensorRT 11.2.1 release notes (GridSample 3-D, rank-5 input)",
            "docs.nvidia.com/deeplearning/tensorrt/latest/getting-started/release-notes-11/11.2.1.html",
            "11.2.1",
        ),
        Source(
            "TensorRT 11.5 release (parsers: opset 25, Squeeze without axes)",
            "github.com/NVIDIA/TensorRT/releases/tag/v11.5",
            "11.5",
        ),
    ),
    caveats=(
        "no 11.x operator matrix was available: the 10.15 matrix plus the 11.x release notes; removals in 11.x "
        "are unverified",
        "11.x builds strongly typed networks only: the graph's dtypes decide the precision",
        "UINT8 only as a network input or output",
    ),
)
_TABLES = {"8.6": TRT86, "10": TRT10, "11": TRT11}
_ALIASES = {"8.6": "8.6", "8.6.1": "8.6", "10": "10", "10.x": "10", "11": "11", "11.x": "11"}


def support_table(family: str) -> FamilyTable:
    """The support table of ``family`` (``8.6``, ``10`` or ``11``; ``10.x`` / ``11.x`` accepted).

    Raises:
        ValueError: an unknown family (the known ones listed).
    """
    key = _ALIASES.get(str(family).strip().lower())
    if key is None:
        raise ValueError(f"unknown TensorRT family {family!r}; expected one of {list(FAMILIES)}")
    return _TABLES[key]


# ============================================================================================== graph view
_ONNX_TO_TRT: dict[int, str] = {
    int(TensorProto.FLOAT): "FP32",
    int(TensorProto.FLOAT16): "FP16",
    int(TensorProto.BFLOAT16): "BF16",
    int(TensorProto.DOUBLE): "DOUBLE",
    int(TensorProto.INT32): "INT32",
    int(TensorProto.INT64): "INT64",
    int(TensorProto.INT8): "INT8",
    int(TensorProto.UINT8): "UINT8",
    int(TensorProto.BOOL): "BOOL",
}
for _onnx_name, _trt in (("FLOAT8E4M3FN", "FP8"), ("INT4", "INT4"), ("FLOAT4E2M1", "FP4")):  # newer onnx releases
    if hasattr(TensorProto, _onnx_name):
        _ONNX_TO_TRT[int(getattr(TensorProto, _onnx_name))] = _trt


def _type_name(elem_type: int) -> str:
    """Matrix spelling of an ONNX element type (the ONNX name for types TensorRT does not have)."""
    if elem_type in _ONNX_TO_TRT:
        return _ONNX_TO_TRT[elem_type]
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"type {elem_type}"


@dataclass
class _Node:
    node: onnx.NodeProto
    name: str


class _Graph:
    """Dtypes, ranks, shapes and constants of a shape-inferred model, subgraphs included."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.opset = _default_opset(model)
        self.types: dict[str, int] = {}
        self.shapes: dict[str, tuple[int | None, ...] | None] = {}
        self.initializers: dict[str, onnx.TensorProto] = {}
        self.producers: dict[str, onnx.NodeProto] = {}
        self.graph_inputs = {v.name for v in model.graph.input}
        self.graph_outputs = {v.name for v in model.graph.output}
        self.nodes: list[_Node] = []
        self._collect(model.graph, prefix="")
        self._static: dict[str, bool] = {}

    def _collect(self, graph: onnx.GraphProto, prefix: str) -> None:
        for init in graph.initializer:
            self.initializers[init.name] = init
            self.types[init.name] = init.data_type
            self.shapes[init.name] = tuple(int(d) for d in init.dims)
        for value in [*graph.input, *graph.output, *graph.value_info]:
            tensor = value.type.tensor_type
            if not value.type.HasField("tensor_type"):
                continue
            if tensor.elem_type:
                self.types.setdefault(value.name, tensor.elem_type)
            if tensor.HasField("shape"):
                dims = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in tensor.shape.dim)
                self.shapes.setdefault(value.name, dims)
        for index, node in enumerate(graph.node):
            label = node.name or f"<unnamed {node.op_type} #{index}>"
            self.nodes.append(_Node(node, prefix + label))
            for out in node.output:
                if out:
                    self.producers[out] = node
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    self._collect(attr.g, f"{prefix}{label}/{attr.name}/")
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for i, sub in enumerate(attr.graphs):
                        self._collect(sub, f"{prefix}{label}/{attr.name}[{i}]/")

    # ------------------------------------------------------------------ tensors
    def dtype(self, name: str) -> str | None:
        return _type_name(self.types[name]) if name in self.types else None

    def rank(self, name: str) -> int | None:
        shape = self.shapes.get(name)
        return None if shape is None else len(shape)

    def is_initializer(self, name: str) -> bool:
        """An initializer or a ``Constant`` output (through ``Identity``): what the parser takes as weights."""
        if name in self.initializers:
            return True
        node = self.producers.get(name)
        if node is None:
            return False
        if node.op_type == "Constant":
            return True
        return node.op_type == "Identity" and self.is_initializer(node.input[0])

    def is_build_time_constant(self, name: str) -> bool:
        """Weights, or computed from weights and static shapes only (what TensorRT folds at build time)."""
        if name in self._static:
            return self._static[name]
        self._static[name] = False  # cycles (cannot happen in a valid graph) end here
        result = self.is_initializer(name)
        node = self.producers.get(name)
        if not result and node is not None:
            if node.op_type in ("Shape", "Size"):
                shape = self.shapes.get(node.input[0])
                result = shape is not None and all(d is not None for d in shape)
            elif node.op_type not in ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"):
                has_subgraph = any(
                    a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute
                )
                inputs = [i for i in node.input if i]
                result = bool(inputs) and not has_subgraph and all(self.is_build_time_constant(i) for i in inputs)
        self._static[name] = result
        return result

    def value(self, name: str) -> np.ndarray | None:
        """The value of an initializer / ``Constant`` output, or None (not constant, external data, sparse)."""
        try:
            if name in self.initializers:
                return numpy_helper.to_array(self.initializers[name])
            node = self.producers.get(name)
            if node is None:
                return None
            if node.op_type == "Identity":
                return self.value(node.input[0])
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        return numpy_helper.to_array(attr.t)
                    if attr.name in ("value_int", "value_float"):
                        return np.asarray(helper.get_attribute_value(attr))
                    if attr.name in ("value_ints", "value_floats"):
                        return np.asarray(list(helper.get_attribute_value(attr)))
        except (ValueError, TypeError, OSError):
            return None
        return None


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return int(entry.version)
    return 0


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _input(node: onnx.NodeProto, index: int) -> str:
    """Name of input ``index``, or "" when absent."""
    return node.input[index] if len(node.input) > index else ""


# ============================================================================================== node checks
_Issue = tuple[str, str]  # (level, reason)
_Check = Callable[[_Graph, onnx.NodeProto, FamilyTable], list[_Issue]]


def _later(table: FamilyTable, release: str, what: str) -> _Issue:
    """A feature of a later minor release of ``table``'s family."""
    return RESTRICTED, f"{what} needs TensorRT >= {release}"


def _check_grid_sample(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    rank = g.rank(node.input[0])
    if rank == 4:
        return []
    if rank == 5:
        if table.family == "11":
            return [_later(table, "11.2", "rank-5 (3-D) GridSample")]
        return [
            (UNSUPPORTED, f"input rank 5 (3-D GridSample): {table.name} supports only 4-D GridSample (3-D from 11.2)")
        ]
    if rank is None:
        return [(RESTRICTED, "input rank unknown; only 4-D GridSample before TensorRT 11.2 (rank-5 from 11.2)")]
    return [(UNSUPPORTED, f"input rank {rank}: GridSample takes 4-D input (5-D from TensorRT 11.2)")]


_RESIZE_TRANSFORMS = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")


def _check_resize(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    issues: list[_Issue] = []
    mode = _attr(node, "mode", "nearest")
    if mode not in ("nearest", "linear"):
        issues.append((UNSUPPORTED, f"mode {mode!r} (the matrix lists nearest and linear)"))
    transform = _attr(node, "coordinate_transformation_mode", "half_pixel")
    if transform not in _RESIZE_TRANSFORMS:
        issues.append(
            (UNSUPPORTED, f"coordinate_transformation_mode {transform!r} (supported: {', '.join(_RESIZE_TRANSFORMS)})")
        )
    if table.family != "8.6":
        if _attr(node, "antialias", 0):
            issues.append((UNSUPPORTED, "antialias=1 (antialiasing is not supported)"))
        policy = _attr(node, "keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            issues.append((UNSUPPORTED, f"keep_aspect_ratio_policy {policy!r} (only 'stretch')"))
        axes = _attr(node, "axes")
        scales = _input(node, 2)
        rank = g.rank(node.input[0])
        if axes is not None and scales and not g.is_initializer(scales):
            if rank is None or list(axes) != list(range(rank)):
                issues.append((UNSUPPORTED, f"tensor `scales` with axes {list(axes)}: axes must be 0..rank-1"))
    return issues


def _check_cast(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    issues: list[_Issue] = []
    to = _type_name(int(_attr(node, "to", 0)))
    src = g.dtype(node.input[0])
    listed = table.ops["Cast"].types
    if to not in table.tensor_types:
        issues.append((UNSUPPORTED, f"cast to {to}: not a {table.name} tensor type"))
    elif to != "UINT8" and to not in listed and not _cast_down(table, to, listed):
        issues.append((RESTRICTED, f"cast to {to}: the matrix lists Cast for {', '.join(listed)}"))
    if to == "UINT8":
        issues += _uint8_cast(g, table, node.output[0], f"cast {src} -> UINT8", src, "Cast to FLOAT first")
    if src == "UINT8":
        issues += _uint8_cast(g, table, node.input[0], f"cast UINT8 -> {to}", to, "cast to FLOAT first")
    return issues


def _uint8_cast(g: _Graph, table: FamilyTable, tensor: str, what: str, other: str | None, fix: str) -> list[_Issue]:
    """UINT8 is network I/O only, converted from / to FP32 or FP16 (8.6 DataType docs; 10.x docs disagree)."""
    issues: list[_Issue] = []
    if tensor not in g.graph_inputs | g.graph_outputs:
        issues.append((UNSUPPORTED, f"UINT8 tensor {tensor!r} is not a network input/output (UINT8 is I/O only)"))
    if other is not None and other not in ("FP32", "FP16"):
        if table.family == "8.6":
            issues.append((UNSUPPORTED, f"{what}: TensorRT 8.6 converts UINT8 only from/to FP32 or FP16 ({fix})"))
        else:
            issues.append(
                (
                    RESTRICTED,
                    f"{what}: TensorRT's DataType docs allow UINT8 conversions only from/to FP32 or FP16, its Cast "
                    f"docs allow all ({fix} to be safe)",
                )
            )
    return issues


def _cast_down(table: FamilyTable, dtype: str, listed: Sequence[str]) -> bool:
    """8.6 casts INT64 to INT32 and DOUBLE to FLOAT (the matrices' "limited support")."""
    if dtype == "DOUBLE":
        return "FP32" in listed
    return table.family == "8.6" and dtype == "INT64" and "INT32" in listed


def _check_pool(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    issues: list[_Issue] = []
    if node.op_type in ("MaxPool", "AveragePool"):
        rank = g.rank(node.input[0])
        if rank is not None and rank not in (4, 5):
            issues.append((UNSUPPORTED, f"input rank {rank}: 2-D or 3-D pooling only (rank 4 or 5)"))
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        issues.append((UNSUPPORTED, "the `Indices` output is not supported"))
    if table.family != "8.6":
        dilations = _attr(node, "dilations")
        if dilations and any(int(d) != 1 for d in dilations):
            issues.append((UNSUPPORTED, f"dilations {list(dilations)}: must be empty or all ones"))
    return issues


def _axes_input(node: onnx.NodeProto, opset: int, index: int) -> str | None:
    """Name of the ``axes`` input, "" when omitted, None when ``axes`` is an attribute at this opset."""
    if node.op_type in ("Squeeze", "Unsqueeze") and opset < 13:
        return None
    if node.op_type.startswith("Reduce") and node.op_type != "ReduceSum" and opset < 18:
        return None
    if node.op_type == "ReduceSum" and opset < 13:
        return None
    return _input(node, index)


def _check_squeeze(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    axes = _axes_input(node, g.opset, 1)
    if axes is None:
        omitted = _attr(node, "axes") is None
    else:
        omitted = axes == ""
    if omitted:
        if node.op_type != "Squeeze":
            return [(UNSUPPORTED, "Unsqueeze without axes")]
        if table.family == "11":
            return [_later(table, "11.5", "Squeeze without `axes`")]
        return [
            (UNSUPPORTED, f"Squeeze without `axes`: {table.name} needs explicit axes (omitted axes from TensorRT 11.5)")
        ]
    if axes:
        constant = g.is_initializer(axes) if table.family == "8.6" else g.is_build_time_constant(axes)
        if not constant:
            need = "an initializer" if table.family == "8.6" else "resolvable to a constant"
            return [(UNSUPPORTED, f"`axes` ({axes!r}) must be {need}")]
    return []


def _check_slice(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    axes = _input(node, 3) if g.opset >= 10 else ""
    if not axes or g.is_initializer(axes):
        return []
    if table.family == "8.6":
        return [(UNSUPPORTED, f"`axes` ({axes!r}) must be an initializer")]
    if table.family == "10" and not g.is_build_time_constant(axes):
        return [_later(table, "10.3", "tensor `axes` for Slice")]
    return []


def _check_reduce(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    if table.family == "8.6":
        return []
    axes = _axes_input(node, g.opset, 1)
    if axes and not g.is_initializer(axes):
        return [(UNSUPPORTED, f"`axes` ({axes!r}) must be an initializer")]
    return []


def _check_cumsum(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    name = _input(node, 1)
    if table.family == "8.6":
        return [] if g.is_initializer(name) else [(UNSUPPORTED, f"`axis` ({name!r}) must be an initializer")]
    ok = g.is_build_time_constant(name)
    return [] if ok else [(UNSUPPORTED, f"`axis` ({name!r}) must be a build-time constant")]


def _check_onehot(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    name = _input(node, 1)
    if table.family == "8.6" or g.is_build_time_constant(name):
        return []
    return [(UNSUPPORTED, f"`depth` ({name!r}) must be a build-time constant")]


def _check_stft(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    issues: list[_Issue] = []
    for index, what in ((1, "frame_step"), (2, "window")):
        name = _input(node, index)
        if name and not g.is_initializer(name):
            issues.append((UNSUPPORTED, f"`{what}` ({name!r}) must be an initializer"))
    shape = g.shapes.get(node.input[0])
    if shape and shape[-1] == 2:
        issues.append((UNSUPPORTED, "complex-valued input (last dimension 2): only real-valued signals"))
    return issues


def _check_hardmax(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    shape = g.shapes.get(node.input[0])
    axis = int(_attr(node, "axis", -1))
    if shape is None or not -len(shape) <= axis < len(shape):
        return [(RESTRICTED, "the `axis` dimension must be a build-time constant (shape unknown, not checked)")]
    return [] if shape[axis] is not None else [(UNSUPPORTED, f"dimension {axis} (the `axis`) is dynamic")]


def _check_topk(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    if table.family == "8.6":
        return []
    issues: list[_Issue] = []
    if int(_attr(node, "sorted", 1)) != 1:
        issues.append((UNSUPPORTED, "sorted=0 (must be 1)"))
    k = g.value(_input(node, 1)) if g.opset >= 10 else np.asarray(_attr(node, "k", 0))
    if k is None:
        issues.append((RESTRICTED, "`K` must be below 3840 (not a constant here, not checked)"))
    elif int(np.asarray(k).reshape(-1)[0]) >= 3840:
        issues.append((UNSUPPORTED, f"K = {int(np.asarray(k).reshape(-1)[0])} (must be below 3840)"))
    return issues


def _check_scatter(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    reduction = _attr(node, "reduction", "none")
    if reduction == "none":
        return []
    if node.op_type == "ScatterND":
        return [(UNSUPPORTED, f"reduction {reduction!r} (only 'none')")]
    if table.family == "8.6":
        return [(UNSUPPORTED, f"reduction {reduction!r}: ScatterElements reductions from TensorRT 10.0")]
    return []


def _check_pad(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    issues: list[_Issue] = []
    mode = _attr(node, "mode", "constant")
    if mode not in ("constant", "edge", "reflect", "wrap"):
        issues.append((UNSUPPORTED, f"mode {mode!r}"))
    elif mode == "wrap" and table.family == "8.6":
        issues.append((UNSUPPORTED, "mode 'wrap': from TensorRT 10.0"))
    if _input(node, 3):
        if table.family == "8.6":
            issues.append((UNSUPPORTED, "`axes` input: from TensorRT 10.4"))
        elif table.family == "10" and not g.is_initializer(node.input[3]):
            issues.append(_later(table, "10.4", "tensor `axes` for Pad"))
    return issues


def _check_einsum(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    if table.family == "11":
        return []
    equation = str(_attr(node, "equation", "")).replace(" ", "")
    terms = equation.split("->")[0].split(",")
    problems = []
    if "..." in equation:
        problems.append("ellipsis")
    if any(len(set(t.replace("...", ""))) != len(t.replace("...", "")) for t in terms):
        problems.append("diagonal (repeated index)")
    issues: list[_Issue] = []
    if problems:
        what = f"Einsum {' and '.join(problems)} in {equation!r}"
        if table.family == "8.6":
            issues.append((UNSUPPORTED, f"{what}: from TensorRT 10.12"))
        else:
            issues.append(_later(table, "10.12", what))
    elif table.family == "8.6":
        issues.append((RESTRICTED, "no broadcasting between inputs (not checked)"))
    return issues


def _check_layernorm(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    extra = [o for o in node.output[1:] if o]
    return [(UNSUPPORTED, f"outputs {extra}: only the first output `Y` is supported")] if extra else []


def _check_rnn(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    issues: list[_Issue] = []
    if node.op_type == "LSTM" and table.family != "8.6":
        for name in ("input_forget", "layout"):
            if int(_attr(node, name, 0)) != 0:
                issues.append((UNSUPPORTED, f"{name}={_attr(node, name)} (must be 0)"))
    activations = [a.decode() if isinstance(a, bytes) else a for a in _attr(node, "activations", [])]
    if _attr(node, "direction", "forward") == "bidirectional" and activations:
        half = len(activations) // 2
        if activations[:half] != activations[half:]:
            issues.append((UNSUPPORTED, f"bidirectional with different activations per direction {activations}"))
    return issues


def _check_dropout(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    name = _input(node, 2)
    if table.family == "8.6" or not name:
        return []
    value = g.value(name) if g.is_initializer(name) else None
    if value is None:
        return [(UNSUPPORTED, f"`is_training` ({name!r}) must be an initializer")]
    return [(UNSUPPORTED, "`is_training` is True")] if bool(np.asarray(value).reshape(-1)[0]) else []


def _check_zero_point(index: int, what: str) -> _Check:
    def check(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
        name = _input(node, index)
        if not name:
            return []
        value = g.value(name)
        if value is None:
            return [(RESTRICTED, f"`{what}` must be zero (not a constant here, not checked)")]
        return [] if not np.any(np.asarray(value, dtype=np.float64)) else [(UNSUPPORTED, f"`{what}` is not zero")]

    return check


def _check_constant(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    bad = [a.name for a in node.attribute if a.name in ("sparse_value", "value_string", "value_strings")]
    return [(UNSUPPORTED, f"attribute {bad[0]!r} is not supported")] if bad else []


def _check_if(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    then_branch, else_branch = _attr(node, "then_branch"), _attr(node, "else_branch")
    if then_branch is None or else_branch is None:
        return []
    issues: list[_Issue] = []
    shared = {o.name for o in then_branch.output} & {o.name for o in else_branch.output}
    if shared:
        issues.append((UNSUPPORTED, f"both branches output the same tensor names {sorted(shared)}"))
    if table.family != "8.6":
        for a, b in zip(then_branch.output, else_branch.output, strict=False):
            ra, rb = g.rank(a.name), g.rank(b.name)
            if ra is not None and rb is not None and ra != rb:
                issues.append((UNSUPPORTED, f"branch outputs {a.name!r} / {b.name!r} have ranks {ra} / {rb}"))
    else:
        issues.append((RESTRICTED, "branch outputs must have broadcastable shapes (not checked)"))
    return issues


def _check_instancenorm(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    if table.family != "8.6":
        return []
    issues: list[_Issue] = []
    for index, what in ((1, "scale"), (2, "B")):
        name = _input(node, index)
        if name and not g.is_initializer(name):
            issues.append((UNSUPPORTED, f"`{what}` ({name!r}) must be an initializer"))
    rank = g.rank(node.input[0])
    if rank is not None and not 3 <= rank <= 5:
        issues.append((UNSUPPORTED, f"input rank {rank} (3 to 5)"))
    return issues


def _check_eyelike(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    if table.family == "8.6":
        return []
    shape = g.shapes.get(node.input[0])
    if shape is None:
        return [(RESTRICTED, "input must have static dimensions (shape unknown, not checked)")]
    return [] if all(d is not None for d in shape) else [(UNSUPPORTED, "input has dynamic dimensions")]


_CHECKS: dict[str, _Check] = {
    "GridSample": _check_grid_sample,
    "Resize": _check_resize,
    "Cast": _check_cast,
    "MaxPool": _check_pool,
    "AveragePool": _check_pool,
    "LpPool": _check_pool,
    "Squeeze": _check_squeeze,
    "Unsqueeze": _check_squeeze,
    "Slice": _check_slice,
    "CumSum": _check_cumsum,
    "TopK": _check_topk,
    "ScatterND": _check_scatter,
    "ScatterElements": _check_scatter,
    "Pad": _check_pad,
    "Einsum": _check_einsum,
    "LayerNormalization": _check_layernorm,
    "GRU": _check_rnn,
    "LSTM": _check_rnn,
    "RNN": _check_rnn,
    "Dropout": _check_dropout,
    "OneHot": _check_onehot,
    "QuantizeLinear": _check_zero_point(2, "y_zero_point"),
    "DequantizeLinear": _check_zero_point(2, "x_zero_point"),
    "Constant": _check_constant,
    "If": _check_if,
    "InstanceNormalization": _check_instancenorm,
    "EyeLike": _check_eyelike,
    "STFT": _check_stft,
    "Hardmax": _check_hardmax,
    **dict.fromkeys(_REDUCE_OPS.split(", "), _check_reduce),
}
"""Node checks: they cover the matrix note of their op (an op without one reports its note as a caveat)."""

# Which tensor carries the dtype the matrix lists ("input", index) or ("output", index); None = no dtype check.
_TYPED_TENSOR: dict[str, tuple[str, int] | None] = {
    "Constant": ("output", 0),
    "ConstantOfShape": ("output", 0),
    "RandomNormal": ("output", 0),
    "RandomUniform": ("output", 0),
    "EyeLike": ("output", 0),
    "Where": ("input", 1),
    "OneHot": None,
    "If": None,
    "Loop": None,
    "Scan": None,
    "Cast": None,  # _check_cast
    "CastLike": None,
}
_NOTE_ONLY = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"}  # notes that never restrict


def _check_node(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    """Every issue of one node in one family (empty: supported)."""
    op = node.op_type
    if node.domain not in DEFAULT_DOMAINS:
        return [(UNSUPPORTED, f"custom op of domain {node.domain!r} (needs a TensorRT plugin)")]
    entry = table.ops.get(op)
    if entry is None:
        return [(UNSUPPORTED, f"{op} is not in the {table.name} operator matrix")]
    if not entry.supported:
        note = f" ({entry.note})" if entry.note else ""
        return [(UNSUPPORTED, f"{op} is not supported by the {table.name} ONNX parser{note}")]
    issues: list[_Issue] = []
    if entry.since:
        issues.append(_later(table, entry.since, op))
    issues += _CHECKS.get(op, _no_check)(g, node, table)
    if entry.note and op not in _CHECKS and op not in _NOTE_ONLY:
        issues.append((RESTRICTED, f"{entry.note} (not checked)"))
    issues += _check_types(g, node, table, entry)
    return issues


def _no_check(g: _Graph, node: onnx.NodeProto, table: FamilyTable) -> list[_Issue]:
    return []


def _check_types(g: _Graph, node: onnx.NodeProto, table: FamilyTable, entry: OpEntry) -> list[_Issue]:
    issues: list[_Issue] = []
    seen: set[str] = set()
    for name in [*node.input, *node.output]:
        dtype = g.dtype(name) if name else None
        if dtype is None or name in seen:
            continue
        seen.add(name)
        if dtype not in table.tensor_types:
            issues.append((UNSUPPORTED, f"tensor {name!r} is {dtype}, not a {table.name} tensor type"))
        elif dtype == "UINT8" and node.op_type != "Cast" and name not in g.graph_inputs | g.graph_outputs:
            if name not in g.initializers:
                issues.append((UNSUPPORTED, f"tensor {name!r} is UINT8: only network inputs/outputs may be UINT8"))
    where = _TYPED_TENSOR.get(node.op_type, ("input", 0))
    if where is None or not entry.types:
        return issues
    names = node.input if where[0] == "input" else node.output
    name = names[where[1]] if len(names) > where[1] else ""
    dtype = g.dtype(name) if name else None
    if dtype is not None and dtype in table.tensor_types and dtype not in entry.types:
        if not _cast_down(table, dtype, entry.types) and not (dtype == "UINT8" and name in g.graph_inputs):
            issues.append(
                (
                    RESTRICTED,
                    f"{where[0]} {name!r} is {dtype}; the matrix lists {', '.join(entry.types)} for {node.op_type}",
                )
            )
    return issues


# ============================================================================================== report
@dataclass(frozen=True)
class Finding:
    """One node's non-supported status in one family."""

    family: str
    op_type: str
    domain: str
    node: str
    status: str
    reason: str

    def __str__(self) -> str:
        where = "graph" if self.op_type == GRAPH else f"{self.op_type} node {self.node!r}"
        return f"{support_table(self.family).name}: {where}: {self.status}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in ("family", "op_type", "domain", "node", "status", "reason")}


@dataclass
class OpRow:
    """One op type: how many nodes, and its status per family (``supported`` / ``restricted: ...`` / ...)."""

    op_type: str
    domain: str
    count: int
    status: dict[str, str]

    @property
    def label(self) -> str:
        return self.op_type if self.domain in DEFAULT_DOMAINS else f"{self.domain}::{self.op_type}"

    def to_dict(self) -> dict[str, Any]:
        return {"op_type": self.op_type, "domain": self.domain, "count": self.count, "status": dict(self.status)}


@dataclass
class CompatReport:
    """Every op type of a graph against the requested TensorRT families.

    Attributes:
        model: the model's path, or ``<ModelProto>``.
        opset: the graph's default-domain opset.
        families: the families checked, in order.
        graph: family -> status of graph-level checks (opset range).
        rows: one :class:`OpRow` per op type (sorted by name).
        findings: every node that is restricted or unsupported, per family.
        notes: remarks on the analysis itself (e.g. shape inference failed).
    """

    model: str
    opset: int
    families: tuple[str, ...]
    graph: dict[str, str]
    rows: list[OpRow]
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False when any op (or the opset) is unsupported in any requested family."""
        return not self.failures()

    def failures(self) -> list[Finding]:
        """The unsupported findings (graph-level ones have op type ``<graph>``)."""
        graph = [
            Finding(f, GRAPH, "", GRAPH, UNSUPPORTED, s.split(": ", 1)[1])
            for f, s in self.graph.items()
            if s.startswith(UNSUPPORTED)
        ]
        return graph + [f for f in self.findings if f.status == UNSUPPORTED]

    def op_types(self) -> set[str]:
        return {row.op_type for row in self.rows}

    def row(self, op_type: str) -> OpRow:
        """The row of ``op_type`` (KeyError naming the present op types)."""
        for row in self.rows:
            if row.op_type == op_type:
                return row
        raise KeyError(f"no {op_type} in the graph; op types: {sorted(self.op_types())}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "opset": self.opset,
            "ok": self.ok,
            "families": {f: {**support_table(f).to_dict(), "ok": not self._failed(f)} for f in self.families},
            "graph": dict(self.graph),
            "ops": [r.to_dict() for r in self.rows],
            "findings": [f.to_dict() for f in self.findings],
            "failures": [f.to_dict() for f in self.failures()],
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def _failed(self, family: str) -> bool:
        return any(f.family == family for f in self.failures())

    def to_markdown(self) -> str:
        """A table a user reads: op, nodes, one column per family; then failures, caveats and sources."""
        tables = [support_table(f) for f in self.families]
        verdict = "OK: no unsupported op" if self.ok else f"FAILED: {len(self.failures())} unsupported"
        nodes = sum(r.count for r in self.rows)
        lines = [
            f"# TensorRT compatibility: {self.model}",
            "",
            f"ONNX opset {self.opset}, {nodes} nodes, {len(self.rows)} op types. {verdict}.",
            "",
            "| Op | Nodes | " + " | ".join(t.name for t in tables) + " |",
            "|---|---:|" + "---|" * len(tables),
            f"| (graph) opset {self.opset} | | " + " | ".join(_md(self.graph[t.family]) for t in tables) + " |",
        ]
        for row in self.rows:
            cells = " | ".join(_md(row.status[t.family]) for t in tables)
            lines.append(f"| {_md(row.label)} | {row.count} | {cells} |")
        failures = self.failures()
        if failures:
            lines += ["", "## Unsupported", ""] + [f"- {_md(str(f))}" for f in failures]
        restricted = [f for f in self.findings if f.status == RESTRICTED]
        if restricted:
            lines += ["", "## Restrictions", ""] + [f"- {_md(str(f))}" for f in restricted]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {_md(n)}" for n in self.notes]
        lines += ["", "## Sources", ""]
        for table in tables:
            for source in table.sources:
                commit = f", commit {source.commit}" if source.commit else ""
                lines.append(f"- {table.name}: {source.title} ({source.location}, {source.version}{commit})")
            lines += [f"- {table.name}: {c}" for c in table.caveats]
        return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _summary(per_node: Sequence[tuple[str, str, str]], count: int) -> str:
    """Worst status over a type's nodes ``(level, reason, node)``, its distinct reasons and nodes."""
    if not per_node:
        return SUPPORTED
    level = max((p[0] for p in per_node), key=_RANK.__getitem__)
    worst = [p for p in per_node if p[0] == level]
    reasons = list(dict.fromkeys(p[1] for p in worst))
    text = "; ".join(reasons[:3]) + (f"; +{len(reasons) - 3} more" if len(reasons) > 3 else "")
    names = [p[2] for p in worst]
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    where = f"node {names[0]}" if count == 1 else f"{len(names)} of {count} nodes: {shown}"
    return f"{level}: {text} [{where}]"


def _load(model: onnx.ModelProto | str | Path) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        return model, "<ModelProto>"
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX model")
    return onnx.load(str(path), load_external_data=False), str(path)


def _opset_status(opset: int, table: FamilyTable) -> str:
    if table.family == "10" and 20 < opset <= table.opset_max:
        return f"{RESTRICTED}: opset {opset} needs a later 10.x ({table.opset_note})"
    if table.family == "11" and opset == 25:
        return f"{RESTRICTED}: opset 25 needs TensorRT >= 11.5"
    if opset < table.opset_min or opset > table.opset_max:
        return f"{UNSUPPORTED}: opset {opset} ({table.opset_note})"
    return SUPPORTED


def compat_report(model: onnx.ModelProto | str | Path, families: Iterable[str] = FAMILIES) -> CompatReport:
    """Check every op of ``model`` against the TensorRT ``families``.

    Args:
        model: an ONNX model or its path (external weights are not loaded).
        families: any of ``8.6``, ``10``, ``11``.
    Raises:
        ValueError: an unknown family.
        FileNotFoundError: a missing model file.
    """
    tables = [support_table(f) for f in ((families,) if isinstance(families, str) else families)]
    proto, label = _load(model)
    notes: list[str] = []
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception as err:  # noqa: BLE001 - an uninferable graph is still reported, with what is known
        inferred = proto
        notes.append(f"shape inference failed ({type(err).__name__}: {err}); ranks and dtypes partly unknown")
    g = _Graph(inferred)
    if g.opset == 0:
        notes.append("the model imports no default-domain opset")

    order: dict[tuple[str, str], list[_Node]] = {}
    for item in g.nodes:
        order.setdefault((item.node.domain, item.node.op_type), []).append(item)
    rows: list[OpRow] = []
    findings: list[Finding] = []
    for (domain, op), items in sorted(order.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        status: dict[str, str] = {}
        for table in tables:
            per_node: list[tuple[str, str, str]] = []
            for item in items:
                issues = _check_node(g, item.node, table)
                if not issues:
                    continue
                level = max((lvl for lvl, _ in issues), key=_RANK.__getitem__)
                reason = "; ".join(dict.fromkeys(r for lvl, r in issues if lvl == level))
                findings.append(Finding(table.family, op, domain, item.name, level, reason))
                per_node.append((level, reason, item.name))
            status[table.family] = _summary(per_node, len(items))
        rows.append(OpRow(op, domain, len(items), status))
    graph = {t.family: _opset_status(g.opset, t) for t in tables}
    return CompatReport(label, g.opset, tuple(t.family for t in tables), graph, rows, findings, notes)


def check_trt_compat(model: onnx.ModelProto | str | Path, families: Iterable[str] = FAMILIES) -> CompatReport:
    """:func:`compat_report`, raising :class:`TRTCompatError` when an op is unsupported in a family.

    Raises:
        TRTCompatError: lists every unsupported (family, op, node, reason).
    """
    report = compat_report(model, families)
    failures = report.failures()
    if failures:
        lines = "\n  ".join(str(f) for f in failures)
        raise TRTCompatError(f"{report.model}: {len(failures)} unsupported for TensorRT:\n  {lines}", report)
    return report
