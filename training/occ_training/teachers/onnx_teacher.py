"""ONNX teachers: any segmentation or depth network exported to ONNX, run with ONNX Runtime (no torch).

A *model card* (YAML, ``config/teachers/*.yaml``; format in docs/teachers.md, "Bring your own ONNX
teacher") tells how to feed the model and how to read its output:

* ``input``: tensor name, size (H, W), layout (NCHW / NHWC), channel order (RGB / BGR), dtype,
  ``x = (pixel * scale - mean) / std``, resize policy (``stretch`` the whole image, or ``letterbox``:
  keep the aspect ratio and pad);
* ``segmentation``: the output tensor, its class names in channel order, logits or probabilities, and
  one mapping per target vocabulary (card class -> vocabulary class, or null for "none");
* ``depth``: the output tensor and its kind (``metric_depth``, ``relative_depth``,
  ``relative_inverse_depth``, ``negative_disparity``), turned into a :class:`DepthMap`.

Outputs are resampled bilinearly to the image (the part of the output that covers the image, when
letterboxed). Everything a card can get wrong about its model (tensor names, ranks, sizes, dtype, the
number of classes, a class mapped to a name the vocabulary lacks, an unknown depth kind) raises
:class:`TeacherError` naming the card and the tensor when the teacher is built: the constructor runs the
model once on a blank input to check the output shapes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import numpy as np

from occ_ros.core.rig import Camera
from occ_ros.core.vocabulary import FREE_NAME, Vocabulary
from occ_training.teachers.base import (
    DepthKind,
    DepthMap,
    ImageDepthTeacher,
    ImageSegmentationTeacher,
    SemanticMap,
    TeacherError,
)

__all__ = [
    "BUILD_RECIPES",
    "BuildRecipe",
    "DEFAULT_DEPTH_CARD",
    "DEFAULT_SEG_CARD",
    "DEPTH_OUTPUT_KINDS",
    "DepthOutput",
    "InputSpec",
    "ModelCard",
    "OnnxDepthTeacher",
    "OnnxModel",
    "OnnxSegmentationTeacher",
    "SegmentationOutput",
    "card_dir",
    "describe_card",
    "find_card",
    "load_card",
    "resize_bilinear",
    "shared_models_dir",
]

#: The cards ``occ labels --teacher onnx`` uses when none is given (``config/teachers/<name>.yaml``).
DEFAULT_SEG_CARD = "espnetv2_cityscapes"
DEFAULT_DEPTH_CARD = "pydnet_kitti"

#: Depth output kinds a card may state -> the :class:`DepthMap` kind they become.
DEPTH_OUTPUT_KINDS: dict[str, DepthKind] = {
    "metric_depth": "metric",  # metres along the optical axis (times ``scale``)
    "relative_depth": "relative",  # depth up to an unknown scale: values = 1 / output
    "relative_inverse_depth": "relative",  # disparity-like, larger = nearer: values = output
    "negative_disparity": "relative",  # minus a disparity: values = -output
}

#: Environment variable naming one more folder to look for relative model paths in.
MODELS_ENV = "OCC_ROS_TEACHER_MODELS"

_ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "uint8": "tensor(uint8)"}
_NUMPY_TYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}
Layout = Literal["NCHW", "NHWC"]
Channels = Literal["RGB", "BGR"]
Resize = Literal["stretch", "letterbox"]
Scores = Literal["logits", "probabilities"]
GraphOptimization = Literal["all", "extended", "basic", "disabled"]
_Word = TypeVar("_Word", bound=str)

_GRAPH_OPTIMIZATION: dict[GraphOptimization, str] = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "disabled": "ORT_DISABLE_ALL",
}


# ---------------------------------------------------------------------------------------- locations
def card_dir() -> Path:
    """``config/teachers``: the shipped model cards."""
    from occ_ros.core.resources import config_dir

    return config_dir() / "teachers"


def shared_models_dir() -> Path:
    """``<repo>/../shared/models``: the models folder next to the source tree holding this module."""
    from occ_ros.core.resources import shared_dir

    return shared_dir() / "models"


def find_card(card: str | Path) -> Path:
    """The card file of ``card``: a path to a YAML file, or the name of a shipped card (``pydnet_kitti``).

    Raises:
        TeacherError: naming every place looked in and the shipped cards.
    """
    text = str(card)
    path = Path(os.path.expandvars(text)).expanduser()
    if path.is_file():
        return path
    looked = [path]
    if "/" not in text and os.sep not in text:
        try:
            shipped = card_dir()
        except FileNotFoundError:
            shipped = None
        if shipped is not None:
            for candidate in (shipped / text, shipped / f"{text}.yaml"):
                looked.append(candidate)
                if candidate.is_file():
                    return candidate
            names = sorted(p.stem for p in shipped.glob("*.yaml"))
            raise TeacherError(
                f"teacher card {text!r} not found (looked in {', '.join(map(str, looked))}); shipped cards: {names}"
            )
    raise TeacherError(f"teacher card {path} not found (give a card YAML file or the name of a shipped card)")


# ---------------------------------------------------------------------------------------- the card
def _where(card: Path) -> str:
    return f"teacher card {card}"


def _check_keys(data: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise TeacherError(f"{where}: unknown keys {unknown}; expected some of {sorted(allowed)}")


def _section(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TeacherError(f"{where}: '{key}' must be a mapping, got {type(value).__name__}")
    return value


def _number(value: Any, what: str, where: str) -> float:
    """A float from a number or a fraction text like ``1/255``."""
    if isinstance(value, bool):
        raise TeacherError(f"{where}: {what} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        out = float(value)
    else:
        m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*(?:/\s*([-+0-9.eE]+)\s*)?", str(value))
        try:
            if m is None:
                raise ValueError
            out = float(m.group(1)) / (float(m.group(2)) if m.group(2) else 1.0)
        except (ValueError, ZeroDivisionError):
            raise TeacherError(f"{where}: {what} must be a number or a fraction like 1/255, got {value!r}") from None
    if not np.isfinite(out):
        raise TeacherError(f"{where}: {what} must be finite, got {value!r}")
    return out


def _triple(value: Any, what: str, where: str, default: float) -> tuple[float, float, float]:
    if value is None:
        return (default, default, default)
    if not isinstance(value, (list, tuple)):
        value = [value] * 3
    if len(value) != 3:
        raise TeacherError(f"{where}: {what} must be one number or three (one per channel), got {value!r}")
    a, b, c = (_number(v, what, where) for v in value)
    return (a, b, c)


def _choice(value: Any, choices: Sequence[_Word], what: str, where: str, default: _Word) -> _Word:
    """``value`` as one of ``choices`` (case-insensitive; None: ``default``); pass a Literal's ``get_args``."""
    if value is None:
        return default
    text = str(value)
    for choice in choices:
        if text.lower() == choice.lower():
            return choice
    raise TeacherError(f"{where}: {what} must be one of {list(choices)}, got {value!r}")


def _output_ref(value: Any, where: str) -> str | int | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise TeacherError(f"{where}: output must be a tensor name or a 0-based index, got {value!r}")


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the model's input tensor.

    Attributes:
        name: input tensor name (None: the model's only input).
        size: (H, W) of the tensor (None: the model's, when its height and width are fixed).
        layout: ``NCHW`` or ``NHWC``.
        channels: ``RGB`` or ``BGR``.
        dtype: ``float32``, ``float16`` or ``uint8`` (None: the model's).
        scale, mean, std: ``x = (pixel * scale - mean) / std`` per channel (in the card's channel order).
        resize: ``stretch`` (the whole image to ``size``) or ``letterbox`` (keep the aspect ratio, centre,
            pad with ``pad_value``, in pixel units 0..255, before normalisation).
        antialias: low-pass filter when shrinking (PIL-style); False: plain bilinear (OpenCV / torch default).
    """

    name: str | None = None
    size: tuple[int, int] | None = None
    layout: Layout = "NCHW"
    channels: Channels = "RGB"
    dtype: str | None = None
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: Resize = "stretch"
    pad_value: tuple[float, float, float] = (0.0, 0.0, 0.0)
    antialias: bool = False

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str) -> InputSpec:
        where = f"{where}: input"
        keys = ("name", "size", "layout", "channels", "dtype", "scale", "mean", "std", "resize", "pad_value")
        _check_keys(data, (*keys, "antialias"), where)
        size = data.get("size")
        if size is not None:
            if (
                not isinstance(size, (list, tuple))
                or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
            ):
                raise TeacherError(f"{where}: size must be [height, width] in pixels, got {size!r}")
            size = (int(size[0]), int(size[1]))
        std = _triple(data.get("std"), "std", where, 1.0)
        if any(v == 0 for v in std):
            raise TeacherError(f"{where}: std must not be 0, got {list(std)}")
        dtype = data.get("dtype")
        if dtype is not None and str(dtype) not in _ORT_TYPES:
            raise TeacherError(f"{where}: dtype must be one of {sorted(_ORT_TYPES)}, got {dtype!r}")
        name = data.get("name")
        return cls(
            name=None if name is None else str(name),
            size=size,
            layout=_choice(data.get("layout"), get_args(Layout), "layout", where, "NCHW"),
            channels=_choice(data.get("channels"), get_args(Channels), "channels", where, "RGB"),
            dtype=None if dtype is None else str(dtype),
            scale=_number(data.get("scale", 1.0), "scale", where),
            mean=_triple(data.get("mean"), "mean", where, 0.0),
            std=std,
            resize=_choice(data.get("resize"), get_args(Resize), "resize", where, "stretch"),
            pad_value=_triple(data.get("pad_value"), "pad_value", where, 0.0),
            antialias=bool(data.get("antialias", False)),
        )


@dataclass(frozen=True)
class SegmentationOutput:
    """The segmentation output of a card.

    Attributes:
        output: tensor name or 0-based output index (None: the model's only output).
        layout: ``NCHW`` (N, classes, h, w) or ``NHWC`` (N, h, w, classes).
        scores: ``logits`` (softmax over the classes) or ``probabilities`` (used as they are).
        classes: class names in channel order.
        mappings: target vocabulary name -> {card class -> vocabulary class name, or None for "none"}.
    """

    output: str | int | None
    layout: Layout
    scores: Scores
    classes: tuple[str, ...]
    mappings: dict[str, dict[str, str | None]] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str) -> SegmentationOutput:
        where = f"{where}: segmentation"
        _check_keys(data, ("output", "layout", "scores", "classes", "mappings"), where)
        classes = data.get("classes")
        if not isinstance(classes, (list, tuple)) or not classes:
            raise TeacherError(f"{where}: classes must be the list of class names in channel order")
        names = tuple(str(c) for c in classes)
        if len(set(names)) != len(names):
            raise TeacherError(f"{where}: classes repeat names {sorted({n for n in names if names.count(n) > 1})}")
        mappings_data = data.get("mappings") or {}
        if not isinstance(mappings_data, Mapping):
            raise TeacherError(f"{where}: mappings must map vocabulary names to class mappings")
        mappings: dict[str, dict[str, str | None]] = {}
        for vocab, table in mappings_data.items():
            if not isinstance(table, Mapping):
                raise TeacherError(f"{where}: mappings.{vocab} must map card classes to vocabulary classes")
            missing = [n for n in names if n not in table]
            extra = sorted(str(k) for k in table if str(k) not in names)
            if missing or extra:
                raise TeacherError(
                    f"{where}: mappings.{vocab} must give every class of the card exactly once (null: none); "
                    f"missing {missing}, not card classes {extra}"
                )
            mappings[str(vocab)] = {str(k): (None if v is None else str(v)) for k, v in table.items()}
        return cls(
            output=_output_ref(data.get("output"), where),
            layout=_choice(data.get("layout"), get_args(Layout), "layout", where, "NCHW"),
            scores=_choice(data.get("scores"), get_args(Scores), "scores", where, "logits"),
            classes=names,
            mappings=mappings,
        )

    def class_matrix(self, vocabulary: Vocabulary, where: str) -> np.ndarray:
        """(C, K) float32 0/1: card class c counts for vocabulary class k (K = ``vocabulary.num_semantic``).

        Raises:
            TeacherError: no mapping for ``vocabulary.name``; a class mapped to a name the vocabulary lacks
                (or to ``free``).
        """
        table = self.mappings.get(vocabulary.name)
        if table is None:
            raise TeacherError(
                f"{where}: no class mapping for vocabulary {vocabulary.name!r} (the card maps to "
                f"{sorted(self.mappings) or 'no vocabulary'}); add segmentation.mappings.{vocabulary.name}"
            )
        known = vocabulary.names[:-1]
        matrix = np.zeros((len(self.classes), vocabulary.num_semantic), dtype=np.float32)
        for c, name in enumerate(self.classes):
            target = table[name]
            if target is None:
                continue
            if target == FREE_NAME:
                raise TeacherError(
                    f"{where}: mappings.{vocabulary.name} maps class {name!r} to {FREE_NAME!r} (empty space, not "
                    "something a pixel shows); use null for 'none of the classes'"
                )
            if target not in known:
                raise TeacherError(
                    f"{where}: mappings.{vocabulary.name} maps class {name!r} to {target!r}, which vocabulary "
                    f"{vocabulary.name!r} lacks; its classes: {known}"
                )
            matrix[c, known.index(target)] = 1.0
        return matrix


@dataclass(frozen=True)
class DepthOutput:
    """The depth output of a card.

    Attributes:
        output: tensor name or 0-based output index (None: the model's only output).
        layout: ``NCHW`` (N, 1, h, w) or ``NHWC`` (N, h, w, 1); (N, h, w) is accepted with either.
        kind: one of :data:`DEPTH_OUTPUT_KINDS`.
        scale: ``metric_depth`` only: metres per output unit (0.001 for millimetres).
        canonical_focal: ``metric_depth`` only: the model predicts depth for a camera of this focal length
            (pixels; Metric3D: 1000), so depth = output * scale * fx_input / canonical_focal, with fx_input the
            camera's focal length in the resized model input.
    """

    output: str | int | None
    layout: Layout
    kind: str
    scale: float = 1.0
    canonical_focal: float | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str) -> DepthOutput:
        where = f"{where}: depth"
        _check_keys(data, ("output", "layout", "kind", "scale", "canonical_focal"), where)
        kind = data.get("kind")
        if kind not in DEPTH_OUTPUT_KINDS:
            raise TeacherError(f"{where}: unknown depth kind {kind!r}; expected one of {sorted(DEPTH_OUTPUT_KINDS)}")
        scale = _number(data.get("scale", 1.0), "scale", where)
        focal = data.get("canonical_focal")
        focal_value = None if focal is None else _number(focal, "canonical_focal", where)
        if kind != "metric_depth" and ("scale" in data or focal is not None):
            raise TeacherError(f"{where}: scale and canonical_focal only apply to kind metric_depth, not {kind}")
        if scale <= 0 or (focal_value is not None and focal_value <= 0):
            raise TeacherError(f"{where}: scale and canonical_focal must be > 0")
        return cls(
            output=_output_ref(data.get("output"), where),
            layout=_choice(data.get("layout"), get_args(Layout), "layout", where, "NCHW"),
            kind=str(kind),
            scale=scale,
            canonical_focal=focal_value,
        )

    @property
    def depth_kind(self) -> DepthKind:
        return DEPTH_OUTPUT_KINDS[self.kind]


#: Recipes a card's ``build`` section may name -> "module:function(weights, out, size)" that writes the model.
BUILD_RECIPES = {"espnetv2_onnx": "occ_training.teachers.espnetv2:build_espnetv2_onnx"}


@dataclass(frozen=True)
class BuildRecipe:
    """How the project produces a card's model file on first use (card section ``build``).

    Attributes:
        recipe: a name of :data:`BUILD_RECIPES`.
        weights: the source weights, looked for like a relative ``model`` path (e.g. under ``../shared/models``).
        size: (H, W) input size of the produced model.
    """

    recipe: str
    weights: str
    size: tuple[int, int]

    @classmethod
    def parse(cls, data: Any, where: str) -> BuildRecipe:
        if not isinstance(data, Mapping):
            raise TeacherError(f"{where}: build must be a mapping with recipe, weights and size")
        _check_keys(data, ("recipe", "weights", "size"), f"{where}: build")
        recipe = _choice(data.get("recipe") or "", tuple(BUILD_RECIPES), "build.recipe", where, "")
        weights = data.get("weights")
        if not isinstance(weights, str) or not weights.strip():
            raise TeacherError(f"{where}: build.weights must give the weights file (a path)")
        size = data.get("size")
        if not (isinstance(size, Sequence) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise TeacherError(f"{where}: build.size must be [H, W] in pixels, got {size!r}")
        return cls(recipe, weights.strip(), (int(size[0]), int(size[1])))

    def run(self, card: ModelCard, out: Path) -> Path:
        """Produce ``out`` from the weights (atomically: a half-written model is never left behind)."""
        import importlib
        import logging

        sources = card.candidates(self.weights)
        weights = next((p for p in sources if p.is_file()), None)
        if weights is None:
            raise TeacherError(
                f"{card.where}: model file {card.model!r} ({out}) is missing and its build recipe needs the weights "
                f"{self.weights!r} (looked in {', '.join(map(str, sources))})"
            )
        module, function = BUILD_RECIPES[self.recipe].split(":")
        logging.getLogger(__name__).warning(
            "%s: building %s from %s (recipe %s, first use only)", card.where, out, weights, self.recipe
        )
        try:
            return Path(getattr(importlib.import_module(module), function)(weights, out, self.size))
        except (ImportError, OSError, RuntimeError, ValueError) as err:
            raise TeacherError(f"{card.where}: building {out} from {weights} failed: {err}") from err


@dataclass(frozen=True)
class ModelCard:
    """A parsed model card (see the module docstring and docs/teachers.md).

    Attributes:
        path: the card file.
        name: short name (default: the file name without ``.yaml``).
        model: the ONNX file as written in the card (resolved by :meth:`model_candidates`).
        produce: how to produce the model file when it is missing (shown in the error).
        build: a recipe the project runs to produce the model file on first use (e.g. export the ESPNetv2
            weights to ONNX), or None.
        graph_optimization: ONNX Runtime graph optimisation level, ``all`` (default), ``extended``, ``basic``
            or ``disabled`` (for models whose constant folding takes long and much memory).
    """

    path: Path
    name: str
    model: str
    input: InputSpec
    segmentation: SegmentationOutput | None = None
    depth: DepthOutput | None = None
    description: str = ""
    produce: str = ""
    graph_optimization: GraphOptimization = "all"
    build: BuildRecipe | None = None

    @property
    def where(self) -> str:
        return _where(self.path)

    def model_candidates(self) -> list[Path]:
        """Where the model file is looked for, in order (``$VARS`` and ``~`` expanded first).

        An absolute path is used as it is. A relative path is looked for: next to the card, in
        ``$OCC_ROS_TEACHER_MODELS`` when set, then in ``../shared/models`` next to the repository.
        """
        return self.candidates(self.model)

    def candidates(self, written: str) -> list[Path]:
        """The places a path written in this card is looked for (see :meth:`model_candidates`)."""
        path = Path(os.path.expandvars(written)).expanduser()
        if path.is_absolute():
            return [path]
        out = [self.path.parent / path]
        extra = os.environ.get(MODELS_ENV)
        if extra:
            out.append(Path(extra).expanduser() / path)
        out.append(shared_models_dir() / path)
        unique: list[Path] = []
        for p in out:
            if p not in unique:
                unique.append(p)
        return unique

    def resolve_model(self, build: bool = True) -> Path:
        """The model file; when it is missing and the card has a ``build`` recipe (and ``build``), the recipe
        produces it at the first place looked in (the cache a card names, e.g. ``~/.cache/occ_ros/teachers``).

        Raises:
            TeacherError: naming the card, every place looked in and how to produce the file.
        """
        candidates = self.model_candidates()
        for p in candidates:
            if p.is_file():
                return p
        if build and self.build is not None:
            return self.build.run(self, candidates[0])
        hint = f"; to produce it: {self.produce.strip()}" if self.produce.strip() else ""
        raise TeacherError(
            f"{self.where}: model file {self.model!r} not found (looked in {', '.join(map(str, candidates))}){hint}"
        )


def load_card(card: str | Path) -> ModelCard:
    """Read and check a model card (a YAML path or the name of a shipped card).

    Raises:
        TeacherError: naming the card, for a missing or unreadable file, unknown keys, wrong values or an
            unknown depth kind (the model itself is checked when a teacher is built).
    """
    from occ_ros.core.config import ConfigError, load_yaml_mapping

    path = find_card(card).absolute()
    where = _where(path)
    try:
        data = load_yaml_mapping(path, "teacher card")
    except ConfigError as err:
        raise TeacherError(str(err)) from None
    _check_keys(
        data,
        (
            "name",
            "description",
            "model",
            "produce",
            "source",
            "license",
            "graph_optimization",
            "build",
            "input",
            "segmentation",
            "depth",
        ),
        where,
    )
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise TeacherError(f"{where}: 'model' must give the ONNX file (a path)")
    seg = _section(data, "segmentation", where)
    depth = _section(data, "depth", where)
    if seg is None and depth is None:
        raise TeacherError(f"{where}: the card needs a 'segmentation' or a 'depth' section (or both)")
    return ModelCard(
        path=path,
        name=str(data.get("name") or path.stem),
        model=model.strip(),
        input=InputSpec.parse(_section(data, "input", where) or {}, where),
        segmentation=None if seg is None else SegmentationOutput.parse(seg, where),
        depth=None if depth is None else DepthOutput.parse(depth, where),
        description=str(data.get("description") or ""),
        produce=str(data.get("produce") or ""),
        graph_optimization=_choice(
            data.get("graph_optimization"), get_args(GraphOptimization), "graph_optimization", where, "all"
        ),
        build=BuildRecipe.parse(data["build"], where) if data.get("build") is not None else None,
    )


def describe_card(card: str | Path) -> dict[str, str]:
    """What a label manifest records of a card: its file, the sha256 of its text and its model file.

    Never raises: what cannot be found is recorded as given.
    """
    import hashlib

    try:
        path = find_card(card)
        parsed = load_card(path)
    except TeacherError:
        return {"card": str(card)}
    try:
        model = str(parsed.resolve_model(build=False))
    except TeacherError:
        model = parsed.model
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        digest = ""
    return {"card": str(path), "name": parsed.name, "sha256": digest, "model": model}


# ---------------------------------------------------------------------------------------- resampling
def _axis_taps(n_out: int, n_in: int, start: float, length: float, antialias: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices and weights (n_out, K) of linear resampling along one axis.

    Output sample i covers ``[start + i * s, start + (i + 1) * s)`` of the input (pixel j spans [j, j + 1)),
    ``s = length / n_out``. Without antialias (or when enlarging) this is bilinear interpolation with
    half-pixel centres and edge replication (torch ``align_corners=False``, OpenCV ``INTER_LINEAR``); with
    antialias when shrinking, a triangle filter widened to ``s``, truncated at the borders (PIL).
    """
    s = length / n_out
    support = s if (antialias and s > 1.0) else 1.0
    centers = start + (np.arange(n_out, dtype=np.float64) + 0.5) * s
    taps = int(np.ceil(2 * support)) + 2
    first = np.floor(centers - support - 0.5).astype(np.int64)
    idx = first[:, None] + np.arange(taps)[None, :]
    weights = np.maximum(0.0, 1.0 - np.abs(idx + 0.5 - centers[:, None]) / support)
    if support > 1.0:
        weights = np.where((idx >= 0) & (idx < n_in), weights, 0.0)
    idx = np.clip(idx, 0, n_in - 1)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    used = weights.any(axis=0)  # taps that are zero for every output sample cost time only
    idx, weights = idx[:, used], weights[:, used]
    return idx, weights.astype(np.float32)


def resize_bilinear(
    array: np.ndarray,
    size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
    antialias: bool = False,
) -> np.ndarray:
    """Resample ``array`` (h, w, ...) to ``size`` (H, W, ...) in float32.

    Args:
        box: (top, left, height, width) of the region of ``array`` to resample, in pixels (fractions
            allowed); None: all of it.
        antialias: see :func:`_axis_taps`.
    """
    a = np.asarray(array, dtype=np.float32)
    h, w = a.shape[:2]
    top, left, bh, bw = box if box is not None else (0.0, 0.0, float(h), float(w))
    ri, rw = _axis_taps(int(size[0]), h, top, bh, antialias)
    ci, cw = _axis_taps(int(size[1]), w, left, bw, antialias)
    extra = (1,) * (a.ndim - 2)
    rows = np.zeros((int(size[0]), w, *a.shape[2:]), dtype=np.float32)
    for k in range(ri.shape[1]):
        rows += rw[:, k].reshape(-1, 1, *extra) * a[ri[:, k]]
    out = np.zeros((int(size[0]), int(size[1]), *a.shape[2:]), dtype=np.float32)
    for k in range(ci.shape[1]):
        out += cw[:, k].reshape(1, -1, *extra) * rows[:, ci[:, k]]
    return out


# ---------------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class _Placement:
    """Where an image went in the input tensor: its (top, left, height, width) in tensor pixels."""

    top: int
    left: int
    height: int
    width: int


def _providers(device: str, where: str) -> list[Any]:
    import onnxruntime as ort

    text = str(device or "cpu").lower()
    if text == "cpu":
        return ["CPUExecutionProvider"]
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m is None:
        raise TeacherError(f"{where}: ONNX teachers run on 'cpu' or 'cuda[:N]', got device {device!r}")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise TeacherError(
            f"{where}: device {device!r}: this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu), "
            f"only {ort.get_available_providers()}"
        )
    return [("CUDAExecutionProvider", {"device_id": int(m.group(1) or 0)}), "CPUExecutionProvider"]


def _shape_text(shape: Sequence[Any]) -> str:
    return "x".join(str(d) if isinstance(d, int) else "?" for d in shape)


class OnnxModel:
    """One ONNX Runtime session for one output of a card, with the card's preprocessing.

    Args:
        card: the model card.
        task: ``segmentation`` or ``depth``: which output section of the card to run.
        device: ``cpu`` or ``cuda[:N]``.
        batch_size: images per call (a model with a fixed batch size gets exactly that many, zero-padded).
        threads: ONNX Runtime intra-op threads (0: its default).
    Raises:
        TeacherError: naming the card and the tensor (see the module docstring).
    """

    def __init__(
        self,
        card: ModelCard,
        task: Literal["segmentation", "depth"],
        device: str = "cpu",
        batch_size: int = 4,
        threads: int = 0,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise TeacherError(
                f"{card.where}: ONNX teachers need onnxruntime ({err}); pip install onnxruntime "
                "(or the package's 'export' extra; onnxruntime-gpu for CUDA)"
            ) from None

        section = card.segmentation if task == "segmentation" else card.depth
        if section is None:
            raise TeacherError(f"{card.where}: no '{task}' section (is it a card for another kind of model?)")
        self.card = card
        self.task = task
        self.where = card.where
        self.model_path = card.resolve_model()
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, int(threads))
        options.log_severity_level = 3
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _GRAPH_OPTIMIZATION[card.graph_optimization]
        )
        try:
            self.session = ort.InferenceSession(str(self.model_path), options, providers=_providers(device, self.where))
        except TeacherError:
            raise
        except Exception as err:  # onnxruntime raises its own exception types
            raise TeacherError(f"{self.where}: cannot load model {self.model_path}: {err}") from None
        self._check_input(card.input)
        self.output_name = self._pick_output(section.output)
        fixed = self.input_shape[0]
        self.batch_size = fixed if isinstance(fixed, int) and fixed > 0 else max(1, int(batch_size))
        self.fixed_batch = isinstance(fixed, int) and fixed > 0

    # ------------------------------------------------------------------ checks
    def _check_input(self, spec: InputSpec) -> None:
        inputs = self.session.get_inputs()
        if spec.name is None:
            if len(inputs) != 1:
                raise TeacherError(
                    f"{self.where}: the model has {len(inputs)} inputs {[i.name for i in inputs]}; "
                    "name one in input.name"
                )
            tensor = inputs[0]
        else:
            found = [i for i in inputs if i.name == spec.name]
            if not found:
                raise TeacherError(
                    f"{self.where}: input tensor {spec.name!r} is not in the model; "
                    f"its inputs: {[i.name for i in inputs]}"
                )
            tensor = found[0]
        self.input_name = str(tensor.name)
        shape = list(tensor.shape)
        self.input_shape = shape
        desc = f"input tensor {self.input_name!r} ({_shape_text(shape)}, {tensor.type})"
        if len(shape) != 4:
            raise TeacherError(
                f"{self.where}: {desc} has rank {len(shape)}; an image input must be rank 4 (N, C, H, W)"
            )
        if spec.layout == "NCHW":
            channels, height, width = shape[1], shape[2], shape[3]
        else:
            height, width, channels = shape[1], shape[2], shape[3]
        if isinstance(channels, int) and channels != 3:
            raise TeacherError(
                f"{self.where}: {desc} has {channels} channels in layout {spec.layout}; expected 3 (check input.layout)"
            )
        static = (height, width) if isinstance(height, int) and isinstance(width, int) else None
        if spec.size is None:
            if static is None:
                raise TeacherError(f"{self.where}: {desc} has a free height/width; the card must give input.size")
            self.size = (int(static[0]), int(static[1]))
        else:
            for got, want, what in ((height, spec.size[0], "height"), (width, spec.size[1], "width")):
                if isinstance(got, int) and got != want:
                    raise TeacherError(
                        f"{self.where}: {desc} has {what} {got} but input.size is {list(spec.size)} ({spec.layout})"
                    )
            self.size = spec.size
        dtype = spec.dtype
        if dtype is None:
            dtype = next((k for k, v in _ORT_TYPES.items() if v == tensor.type), None)
            if dtype is None:
                raise TeacherError(f"{self.where}: {desc}: element type {tensor.type} is not supported")
        elif _ORT_TYPES[dtype] != tensor.type:
            raise TeacherError(f"{self.where}: {desc} but input.dtype is {dtype}")
        self.dtype = dtype

    def _pick_output(self, ref: str | int | None) -> str:
        outputs = [o.name for o in self.session.get_outputs()]
        key = f"{self.task}.output"
        if ref is None:
            if len(outputs) != 1:
                raise TeacherError(f"{self.where}: the model has {len(outputs)} outputs {outputs}; name one in {key}")
            return str(outputs[0])
        if isinstance(ref, int):
            if ref >= len(outputs):
                raise TeacherError(
                    f"{self.where}: {key} is index {ref} but the model has {len(outputs)} outputs {outputs}"
                )
            return str(outputs[ref])
        if ref not in outputs:
            raise TeacherError(
                f"{self.where}: output tensor {ref!r} ({key}) is not in the model; its outputs: {outputs}"
            )
        return ref

    # ------------------------------------------------------------------ running
    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, _Placement]:
        """The input tensor (1, ...) of one (H, W, 3) uint8 RGB image, and where the image lies in it."""
        spec = self.card.input
        a = np.asarray(image)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or a.shape[0] < 1 or a.shape[1] < 1:
            raise TeacherError(f"{self.where}: expected an (H, W, 3) uint8 RGB image, got {a.dtype} {a.shape}")
        height, width = self.size
        h, w = a.shape[:2]
        if spec.resize == "letterbox":
            f = min(height / h, width / w)
            nh, nw = min(height, max(1, round(h * f))), min(width, max(1, round(w * f)))
        else:
            nh, nw = height, width
        place = _Placement((height - nh) // 2, (width - nw) // 2, nh, nw)
        pixels = a.astype(np.float32)
        if (nh, nw) != (h, w):
            pixels = resize_bilinear(pixels, (nh, nw), antialias=spec.antialias)
        canvas = np.empty((height, width, 3), dtype=np.float32)
        canvas[:] = np.asarray(spec.pad_value, dtype=np.float32)[::-1] if spec.channels == "BGR" else spec.pad_value
        canvas[place.top : place.top + nh, place.left : place.left + nw] = pixels
        if spec.channels == "BGR":
            canvas = canvas[..., ::-1]
        x = (canvas * np.float32(spec.scale) - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
        if self.dtype == "uint8":
            x = np.clip(np.rint(x), 0, 255)
        if spec.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x[None].astype(_NUMPY_TYPES[self.dtype])), place

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The output tensor (float32) for an input batch, run ``batch_size`` at a time."""
        outs = []
        for s in range(0, len(batch), self.batch_size):
            part = batch[s : s + self.batch_size]
            n = len(part)
            if self.fixed_batch and n < self.batch_size:
                part = np.concatenate([part, np.zeros((self.batch_size - n, *part.shape[1:]), part.dtype)])
            try:
                out = self.session.run([self.output_name], {self.input_name: part})[0]
            except Exception as err:  # onnxruntime raises its own exception types
                raise TeacherError(f"{self.where}: running {self.model_path} failed: {err}") from None
            out = np.asarray(out)
            if out.ndim < 1 or out.shape[0] != len(part):
                raise TeacherError(
                    f"{self.where}: output tensor {self.output_name!r} has shape {list(out.shape)} for a batch of "
                    f"{len(part)}; expected the batch first"
                )
            outs.append(out[:n].astype(np.float32, copy=False))
        return np.concatenate(outs)

    def probe(self) -> np.ndarray:
        """The output for one blank (zero) input: what the constructor's shape checks look at."""
        shape = [1, *self.size, 3] if self.card.input.layout == "NHWC" else [1, 3, *self.size]
        return self.run(np.zeros(shape, dtype=_NUMPY_TYPES[self.dtype]))

    def infer(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, _Placement, tuple[int, int]]]:
        """(raw output of one image, its placement, its (H, W)) per image, in order."""
        if not images:
            return []
        prepared = [self.preprocess(image) for image in images]
        outs = self.run(np.concatenate([p[0] for p in prepared]))
        return [(outs[i], prepared[i][1], np.asarray(images[i]).shape[:2]) for i in range(len(images))]

    def output_box(self, out_hw: tuple[int, int], place: _Placement) -> tuple[float, float, float, float]:
        """The region of an (h, w) output map that covers the image (the whole map unless letterboxed)."""
        fh, fw = out_hw[0] / self.size[0], out_hw[1] / self.size[1]
        return (place.top * fh, place.left * fw, place.height * fh, place.width * fw)


def _class_maps(out: np.ndarray, layout: str) -> np.ndarray:
    """(N, ...) output -> (N, C, h, w)."""
    return out if layout == "NCHW" else out.transpose(0, 3, 1, 2)


def _depth_maps(out: np.ndarray, layout: str, where: str, name: str) -> np.ndarray:
    """(N, 1, h, w) / (N, h, w, 1) / (N, h, w) output -> (N, h, w); raises naming the tensor otherwise."""
    if out.ndim == 3:
        return out
    if out.ndim == 4:
        channels = out.shape[1] if layout == "NCHW" else out.shape[3]
        if channels == 1:
            return out[:, 0] if layout == "NCHW" else out[..., 0]
    raise TeacherError(
        f"{where}: depth output tensor {name!r} has shape {list(out.shape)}; expected (N, 1, h, w) in layout "
        f"{layout}, (N, h, w, 1) in NHWC or (N, h, w)"
    )


# ---------------------------------------------------------------------------------------- teachers
def _as_card(card: str | Path | ModelCard) -> ModelCard:
    return card if isinstance(card, ModelCard) else load_card(card)


class OnnxSegmentationTeacher(ImageSegmentationTeacher):
    """Semantic segmentation by an ONNX model over fixed classes, mapped to the vocabulary by its card.

    Scores are resampled bilinearly to the image, turned into probabilities over the card's classes
    (softmax of logits, or the probabilities as given), and summed into the vocabulary classes they map
    to; classes mapped to null (sky, background) are left out, so a pixel's probabilities sum to < 1.
    """

    name = "onnx_segmentation"

    def __init__(
        self,
        vocabulary: Vocabulary,
        card: str | Path | ModelCard,
        device: str = "cpu",
        batch_size: int = 4,
        threads: int = 0,
    ) -> None:
        self.card = _as_card(card)
        where = self.card.where
        try:
            super().__init__(vocabulary)
        except ValueError as err:
            raise TeacherError(f"{where}: {err}") from None
        if self.card.segmentation is None:
            raise TeacherError(f"{where}: no 'segmentation' section (is it a depth card?)")
        self.spec = self.card.segmentation
        self.name = f"onnx:{self.card.name}"
        self.matrix = self.spec.class_matrix(vocabulary, where)
        self.model = OnnxModel(self.card, "segmentation", device=device, batch_size=batch_size, threads=threads)
        self._check(self.model.probe())

    def _check(self, out: np.ndarray) -> None:
        name = self.model.output_name
        if out.ndim != 4:
            raise TeacherError(
                f"{self.card.where}: segmentation output tensor {name!r} has shape {list(out.shape)}; expected rank 4 "
                f"({'N, classes, h, w' if self.spec.layout == 'NCHW' else 'N, h, w, classes'})"
            )
        channels = _class_maps(out, self.spec.layout).shape[1]
        if channels != len(self.spec.classes):
            raise TeacherError(
                f"{self.card.where}: segmentation output tensor {name!r} has shape {list(out.shape)}: {channels} "
                f"classes in layout {self.spec.layout}, but the card lists {len(self.spec.classes)} classes"
            )

    def class_probabilities(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(H, W, C) float32 probabilities over the card's classes, per image."""
        results = []
        for out, place, hw in self.model.infer(images):
            scores = _class_maps(out[None], self.spec.layout)[0]  # (C, h, w)
            box = self.model.output_box(scores.shape[1:], place)
            up = resize_bilinear(scores.transpose(1, 2, 0), (int(hw[0]), int(hw[1])), box=box)
            if self.spec.scores == "logits":
                up = np.exp(up - up.max(axis=-1, keepdims=True))
                up /= up.sum(axis=-1, keepdims=True)
            else:
                up = np.clip(np.nan_to_num(up, nan=0.0), 0.0, 1.0)
                total = up.sum(axis=-1, keepdims=True)
                up = np.where(total > 1.0, up / np.maximum(total, 1e-12), up)
            results.append(up.astype(np.float32))
        return results

    def segment_images(self, images: Sequence[np.ndarray]) -> list[SemanticMap]:
        return [SemanticMap(np.clip(p @ self.matrix, 0.0, 1.0)) for p in self.class_probabilities(images)]


class OnnxDepthTeacher(ImageDepthTeacher):
    """Monocular depth by an ONNX model; its card's depth kind says how the output becomes a :class:`DepthMap`.

    ``metric_depth``: values = output * scale (* fx_input / canonical_focal), kind metric, valid where > 0.
    ``relative_depth``: values = 1 / output (valid where output > 0), kind relative.
    ``relative_inverse_depth``: values = output, kind relative. ``negative_disparity``: values = -output,
    kind relative. Converted at the model's resolution, then resampled bilinearly to the image; a pixel
    is valid where every output sample it is interpolated from is.
    """

    name = "onnx_depth"

    def __init__(
        self,
        card: str | Path | ModelCard,
        device: str = "cpu",
        batch_size: int = 4,
        threads: int = 0,
    ) -> None:
        self.card = _as_card(card)
        if self.card.depth is None:
            raise TeacherError(f"{self.card.where}: no 'depth' section (is it a segmentation card?)")
        self.spec = self.card.depth
        self.kind = self.spec.depth_kind
        self.name = f"onnx:{self.card.name}"
        self.model = OnnxModel(self.card, "depth", device=device, batch_size=batch_size, threads=threads)
        _depth_maps(self.model.probe(), self.spec.layout, self.card.where, self.model.output_name)

    def estimate_images(self, images: Sequence[np.ndarray], cameras: Sequence[Camera] | None = None) -> list[DepthMap]:
        spec = self.spec
        if spec.canonical_focal is not None and (cameras is None or len(cameras) != len(images)):
            raise TeacherError(f"{self.card.where}: depth.canonical_focal needs the camera of every image")
        results = []
        for i, (out, place, hw) in enumerate(self.model.infer(images)):
            raw = _depth_maps(out[None], spec.layout, self.card.where, self.model.output_name)[0].astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                if spec.kind == "metric_depth":
                    values = raw * spec.scale
                    if spec.canonical_focal is not None and cameras is not None:
                        fx_input = float(cameras[i].K[0, 0]) * place.width / float(hw[1])
                        values = values * fx_input / spec.canonical_focal
                    valid = np.isfinite(values) & (values > 0)
                elif spec.kind == "relative_depth":
                    valid = np.isfinite(raw) & (raw > 0)
                    values = np.where(valid, 1.0 / np.where(valid, raw, 1.0), 0.0)
                elif spec.kind == "relative_inverse_depth":
                    values, valid = raw, np.isfinite(raw)
                else:  # negative_disparity
                    values, valid = -raw, np.isfinite(raw)
            values = np.where(valid, values, 0.0)
            box = self.model.output_box(raw.shape, place)
            size = (int(hw[0]), int(hw[1]))
            up = resize_bilinear(values[..., None], size, box=box)[..., 0]
            ok = resize_bilinear(valid.astype(np.float32)[..., None], size, box=box)[..., 0] > 1.0 - 1e-4
            results.append(DepthMap(values=np.where(ok, up, 0.0), kind=self.kind, valid=ok))
        return results
