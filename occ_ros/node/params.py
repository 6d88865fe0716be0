"""Every parameter of ``occupancy_node`` in one table: names, types, defaults, ranges, choices, descriptions,
validation (ROS-free).

:data:`PARAMS` (the fixed parameters) and :data:`CAMERA_PARAMS` (three per camera) are the single source. From them
come the rclpy declarations (:func:`descriptor`, declared by :mod:`.occupancy_node`), the validation of
:func:`from_ros_parameters`, the defaults of the typed dataclasses (:class:`NodeParams` and its parts), and, by
``scripts/gen_params.py`` (:mod:`.param_docs`), ``config/occupancy.param.yaml``,
``schema/occupancy_node.schema.json`` and the parameter table of docs/node.md. Adding a parameter is one entry in
the table, a field in its dataclass, and a rerun of that script. Nothing here imports rclpy.

The node declares :func:`specs` with rclpy, reads them back into a flat mapping (dotted name -> value) and turns
that into a typed :class:`NodeParams` with :func:`from_ros_parameters`; ``occ replay --params`` loads a parameter
file the same way (:func:`load_param_file`).

Parameters come in two sets:

* the fixed ones (:data:`PARAMS`), e.g. ``model``, ``sync.slop_s``, ``outputs.markers_rate_hz``;
* three per camera, ``camera.<NAME>.image_topic`` / ``info_topic`` / ``frame_id`` (:data:`CAMERA_PARAMS`, templates
  in ``<NAME>``), declared once ``cameras`` is known (:func:`camera_specs`); their defaults derive from the name
  (``/<name lower>/image_raw``, ...).

Numbers and lists have no "unset" in ROS 2 parameters, so "off" is spelled as a value: ``min_confidence: 0.0``,
``model: ""`` (the shipped demo checkpoint), ``frame_id: ""`` (the image header's / ``base_frame``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from occ_ros.core.config import flatten_keys
from occ_ros.core.rig import NUSCENES_CAMERAS
from occ_ros.inference.backend import RuntimeSettings
from occ_ros.pipeline.costmap import AUTO_OBSTACLES, CostmapConfig
from occ_ros.session.config import NODE_NAME, CameraInput, SessionConfig

__all__ = [
    "CAMERA_PARAMS",
    "NODE_NAME",
    "PARAMS",
    "Descriptor",
    "NodeParams",
    "ParamError",
    "ParamSpec",
    "Pattern",
    "descriptor",
    "from_ros_parameters",
    "load_param_file",
    "parse_remaps",
    "specs",
]
BACKEND_CHOICES = ("auto", "onnxruntime", "tensorrt", "torch")
PRECISION_CHOICES = ("", "fp32", "fp16", "int8")
RELIABILITY_CHOICES = ("reliable", "best_effort")
DURABILITY_CHOICES = ("volatile", "transient_local")
COMPRESSED_SUFFIX = "/compressed"
CAMERA_TOKEN = "<NAME>"
"""Stands for the camera's name in :data:`CAMERA_PARAMS` (names, descriptions)."""
CAMERA_LOWER_TOKEN = "<name lower>"
"""Stands for the camera's name in lower case in :data:`CAMERA_PARAMS` (defaults)."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

ParamValue = bool | int | float | str | list[str]

# rcl_interfaces/msg/ParameterType
PARAMETER_TYPES = {"bool": 1, "int": 2, "double": 3, "string": 4, "string[]": 9}


class ParamError(ValueError):
    """Parameters that do not validate; the message names every bad parameter and what was expected."""

    def __init__(self, problems: Sequence[str], source: str = "") -> None:
        self.problems = list(problems)
        where = f"{source}: " if source else ""
        if len(self.problems) == 1:
            super().__init__(f"{where}{self.problems[0]}")
        else:
            super().__init__(f"{where}{len(self.problems)} bad parameters:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True)
class Pattern:
    """A string format: a regular expression (anchored, in the subset JSON schema and Python share) and what it means.

    Attributes:
        regex: ``^...$``; the whole value must match (a string parameter; each item of a list).
        expected: what a matching value is, for error messages and docs (``cpu, cuda or cuda:N``).
    """

    regex: str
    expected: str

    def matches(self, value: str) -> bool:
        return re.fullmatch(self.regex, value) is not None


DEVICE = Pattern(r"^(cpu|cuda(:[0-9]+)?)$", "cpu, cuda or cuda:N")
_FRAME = r"[A-Za-z0-9_.\-][A-Za-z0-9_/.\-]*"
FRAME = Pattern(f"^{_FRAME}$", "a tf frame id (no spaces, no leading '/')")
FRAME_OR_EMPTY = Pattern(f"^({_FRAME})?$", "a tf frame id (no spaces, no leading '/') or ''")
TOPIC = Pattern(
    r"^~?/?[A-Za-z_{][A-Za-z0-9_{}]*(/[A-Za-z_{][A-Za-z0-9_{}]*)*$",
    "a ROS topic name (letters, digits, '_', '/'-separated tokens not starting with a digit, no trailing '/')",
)
CAMERA_NAME = Pattern(
    r"^[A-Za-z][A-Za-z0-9_]*$",
    "a name that starts with a letter and holds only letters, digits and '_' (it becomes part of the parameter "
    "names camera.<NAME>.*)",
)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: one row of the table.

    Attributes:
        name: dotted ROS parameter name (``sync.slop_s``; ``camera.<NAME>.frame_id`` in :data:`CAMERA_PARAMS`).
        default: default value; its type is the parameter's type (rclpy types parameters statically by it).
        description: one line for ``ros2 param describe``, the param file's comments, the schema and docs/node.md.
        choices: the allowed strings (empty: any).
        minimum: smallest allowed number (inclusive unless ``exclusive``).
        maximum: largest allowed number (inclusive).
        exclusive: ``minimum`` itself is not allowed.
        pattern: the format of a string (of each item of a string list).
        min_items: a list holds at least this many items.
        unique_items: a list holds no item twice.
        read_only: declared read-only (the node reads its parameters once, at start-up).
    """

    name: str
    default: ParamValue
    description: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False
    pattern: Pattern | None = None
    min_items: int = 0
    unique_items: bool = False
    read_only: bool = True

    @property
    def type_name(self) -> str:
        """``bool``, ``int``, ``double``, ``string`` or ``string[]`` (ROS 2 parameter type names)."""
        if isinstance(self.default, bool):
            return "bool"
        if isinstance(self.default, int):
            return "int"
        if isinstance(self.default, float):
            return "double"
        if isinstance(self.default, str):
            return "string"
        return "string[]"

    def bounds(self) -> str:
        """The range as text (``> 0``, ``>= 0 and <= 1``; "" = unbounded)."""
        parts = []
        if self.minimum is not None:
            parts.append(f"{'>' if self.exclusive else '>='} {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"<= {self.maximum:g}")
        return " and ".join(parts)

    def expected(self) -> str:
        """What a valid value looks like, for error messages and ``additional_constraints``."""
        kind = self.type_name
        text = {"double": "a number", "int": "an integer", "bool": "true or false"}.get(kind, "")
        if kind == "string":
            text = "a string"
            if self.choices:
                text = f"one of {list(self.choices)}"
            elif self.pattern:
                text = self.pattern.expected
        elif kind == "string[]":
            text = "a list of strings"
            if self.min_items:
                text += f" (at least {self.min_items})"
            if self.unique_items:
                text += ", each once"
            if self.pattern:
                text += f", each {self.pattern.expected}"
        bounds = self.bounds()
        return text + (" " + bounds if bounds else "")

    def check(self, value: Any) -> ParamValue:
        """``value`` converted to this parameter's type (an int is a valid double), checked against the table.

        Raises:
            ValueError: a wrong type, a string outside ``choices`` or not matching ``pattern``, a number outside the
                bounds, a list too short, with a repeat or a bad item (the message names the parameter, what was
                expected and what was given).
        """
        kind = self.type_name
        ok = True
        converted: Any = value
        if kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "double":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            converted = float(value) if ok else value
        elif kind == "string":
            ok = isinstance(value, str) and (not self.choices or value in self.choices)
            ok = ok and (self.pattern is None or self.pattern.matches(value))
        else:
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
            converted = list(value) if ok else value
            ok = ok and len(converted) >= self.min_items
            ok = ok and (not self.unique_items or len(set(converted)) == len(converted))
            ok = ok and (self.pattern is None or all(self.pattern.matches(v) for v in converted))
        if ok and kind in ("int", "double"):
            if self.minimum is not None:
                ok = converted > self.minimum if self.exclusive else converted >= self.minimum
            if self.maximum is not None:
                ok = ok and converted <= self.maximum
        if not ok:
            raise ValueError(f"parameter {self.name!r}: expected {self.expected()}, got {value!r}")
        return converted


PARAMS: tuple[ParamSpec, ...] = (
    # --- model and backend
    ParamSpec(
        "model",
        "",
        'model file: `.onnx` (onnxruntime), `.engine`/`.plan` (tensorrt) or `.ckpt` (torch); `""` = the shipped '
        "demo checkpoint (`share/occ_ros/models/demo.ckpt`, torch backend); `~` and `$VARS` are expanded",
    ),
    ParamSpec("backend", "auto", "inference backend; `auto` picks it from the model file's suffix", BACKEND_CHOICES),
    ParamSpec("device", "cpu", "`cpu` or `cuda[:N]` (tensorrt always runs on a GPU)", pattern=DEVICE),
    ParamSpec(
        "precision",
        "",
        '`""` = the model\'s own; torch: `fp16` runs the network in half precision (CUDA); onnxruntime and tensorrt '
        "run the precision the file was exported / built with, a different value only warns; `int8`: engines only",
        PRECISION_CHOICES,
    ),
    ParamSpec(
        "threads",
        1,
        "CPU threads of the inference runtime: onnxruntime's intra-op threads, torch's `torch.set_num_threads` "
        "(process-wide); 0 = the runtime's default (one per physical core); tensorrt: not used (docs/benchmarks.md, "
        "Runtime settings)",
        minimum=0,
    ),
    ParamSpec(
        "spinning",
        True,
        "onnxruntime: its intra-op worker threads spin (busy-wait) between operators "
        "(`session.intra_op.allow_spinning`); `false` leaves those cores to other processes at some latency cost; "
        "nothing spins with `threads: 1`; torch, tensorrt: not used",
    ),
    ParamSpec("warmup", True, "run the model a few times before subscribing"),
    ParamSpec(
        "fallback_model",
        "",
        'model to load when `model` cannot be loaded, e.g. the `.onnx` next to the `.engine` (`""` = none: the node '
        "exits)",
    ),
    ParamSpec("fallback_backend", "onnxruntime", "backend of `fallback_model`", BACKEND_CHOICES),
    ParamSpec("fallback_device", "cpu", "device of `fallback_model`", pattern=DEVICE),
    # --- cameras
    ParamSpec(
        "cameras",
        list(NUSCENES_CAMERAS),
        "camera names in the model's input order; each has `camera.<NAME>.image_topic` / `info_topic` / `frame_id`",
        pattern=CAMERA_NAME,
        min_items=1,
        unique_items=True,
    ),
    ParamSpec("compressed", False, "subscribe to `sensor_msgs/CompressedImage` on `<image_topic>/compressed` instead"),
    ParamSpec(
        "sync.slop_s",
        0.05,
        "ApproximateTimeSynchronizer slop: a frame's image stamps must spread less than this, s",
        minimum=0.0,
        exclusive=True,
    ),
    ParamSpec("sync.queue_size", 10, "ApproximateTimeSynchronizer queue size per input topic", minimum=1),
    # --- frames
    ParamSpec(
        "base_frame",
        "base_link",
        "the grid's ego frame: extrinsics are looked up as `base_frame <- camera optical frame` at each image's stamp",
        pattern=FRAME,
    ),
    ParamSpec("frame_id", "", '`header.frame_id` of the outputs (`""` = `base_frame`)', pattern=FRAME_OR_EMPTY),
    ParamSpec(
        "tf_timeout_s", 0.05, "the longest one frame waits for all of its camera transforms together, s", minimum=0.0
    ),
    ParamSpec(
        "input_timeout_s",
        2.0,
        "an input topic with no message for this long (wall clock, so also when `/clock` stops) is named in a "
        "throttled warning and in `/diagnostics`, s",
        minimum=0.0,
        exclusive=True,
    ),
    # --- outputs
    ParamSpec("outputs.cloud", True, "publish `~/voxels` (`sensor_msgs/PointCloud2`)"),
    ParamSpec("outputs.markers", True, "publish `~/markers` (`visualization_msgs/MarkerArray`), only while subscribed"),
    ParamSpec(
        "outputs.grid", True, "publish `~/grid` (`std_msgs/UInt8MultiArray`) and `~/grid_description` (latched JSON)"
    ),
    ParamSpec(
        "outputs.processing_time",
        True,
        "publish `~/debug/processing_time/<stage>_ms` for each pipeline stage and `~/debug/pipeline_latency_ms` "
        "(frame stamp to published, on the node's clock) as `std_msgs/Float64` after each frame",
    ),
    ParamSpec("outputs.markers_rate_hz", 2.0, "maximum rate of `~/markers`, Hz (0 = every frame)", minimum=0.0),
    ParamSpec("outputs.max_marker_voxels", 50000, "cap on the cubes in one MarkerArray", minimum=1),
    ParamSpec(
        "outputs.min_confidence",
        0.0,
        "publish only voxels at least this confident (0 = off: exactly the voxels `occ predict` writes)",
        minimum=0.0,
        maximum=1.0,
    ),
    # --- ~/costmap (nav_msgs/OccupancyGrid; occ_ros/pipeline/costmap.py)
    ParamSpec(
        "outputs.costmap",
        True,
        "publish `~/costmap` (`nav_msgs/OccupancyGrid` in the grid's frame, one cell per voxel column; reliable, "
        "transient-local, depth 1, as Nav2's StaticLayer subscribes)",
    ),
    ParamSpec(
        "costmap.min_height",
        0.2,
        "costmap: lower end of the obstacle height band above the ground (base-frame z; `base_link` is on the "
        "ground), m; a voxel counts when its extent overlaps the band",
    ),
    ParamSpec("costmap.max_height", 2.0, "costmap: upper end of the obstacle height band, m (> `costmap.min_height`)"),
    ParamSpec(
        "costmap.obstacle_classes",
        [AUTO_OBSTACLES],
        "costmap: the class names that are obstacles; `[auto]` = every class that is neither free nor a surface of "
        "the model's vocabulary (`surface` in the vocabulary; Occ3D: all but driveable_surface, other_flat, sidewalk, "
        "terrain)",
        min_items=1,
        unique_items=True,
    ),
    ParamSpec(
        "costmap.min_confidence",
        0.0,
        "costmap: a voxel is evidence (obstacle or free) only at this confidence or above; a less confident obstacle "
        "makes its column unknown (0 = every voxel)",
        minimum=0.0,
        maximum=1.0,
    ),
    ParamSpec("costmap.camera_view", True, "costmap: columns outside every camera's view are unknown (-1)"),
    ParamSpec(
        "costmap.occlusion",
        True,
        "costmap: with `costmap.camera_view`, columns hidden from every camera by an obstacle column of the frame's "
        "own prediction are unknown (-1) (a ray cast in the ground plane)",
    ),
    # --- output QoS (inputs always use the sensor-data profile)
    ParamSpec("qos.reliability", "reliable", "reliability of `~/voxels`, `~/markers`, `~/grid`", RELIABILITY_CHOICES),
    ParamSpec("qos.durability", "volatile", "durability of `~/voxels`, `~/markers`, `~/grid`", DURABILITY_CHOICES),
    ParamSpec("qos.depth", 1, "history depth (keep last) of `~/voxels`, `~/markers`, `~/grid`", minimum=1),
    # --- diagnostics
    ParamSpec(
        "diagnostics.backend_error_after",
        5,
        "`/diagnostics` goes to ERROR when the inference backend failed on this many frames in a row (WARN from the "
        "first failure; the next processed frame resets the count)",
        minimum=1,
    ),
    # --- open-vocabulary queries (issue 23)
    ParamSpec(
        "query.enabled",
        True,
        "subscribe `~/query` (`std_msgs/String`, a prompt name) and publish `~/query/voxels` (`sensor_msgs/"
        "PointCloud2`: x, y, z, score, label) every frame while a query is set; needs a model exported with "
        "`occ export --queries` (features output and prompt embeddings), else the node says why queries are off",
    ),
    ParamSpec(
        "query.calibrated_threshold",
        True,
        "use each prompt's decision threshold stored in the model (chosen on a validation sequence by `occ export "
        "--calibrate`); `false`: `query.threshold` for every prompt",
    ),
    ParamSpec(
        "query.threshold",
        -1.0,
        "decision threshold on the cosine score when `query.calibrated_threshold` is false (-1 = none: the prompt "
        "only has to beat the other classes' prompts)",
        minimum=-1.0,
        maximum=1.0,
    ),
)
"""The fixed parameters, in declaration order."""

CAMERA_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "camera.<NAME>.image_topic",
        "/<name lower>/image_raw",
        "`sensor_msgs/Image` topic of camera `<NAME>` (with `compressed: true`, `<image_topic>/compressed` is "
        "subscribed)",
        pattern=TOPIC,
    ),
    ParamSpec(
        "camera.<NAME>.info_topic",
        "/<name lower>/camera_info",
        "`sensor_msgs/CameraInfo` topic of camera `<NAME>`",
        pattern=TOPIC,
    ),
    ParamSpec(
        "camera.<NAME>.frame_id",
        "",
        'optical frame of camera `<NAME>` for the tf lookup (`""` = the image\'s `header.frame_id`)',
        pattern=FRAME_OR_EMPTY,
    ),
)
"""The parameters of each camera in ``cameras``, as templates: ``<NAME>`` is the camera's name, ``<name lower>`` the
same in lower case (:func:`camera_specs` fills them in)."""

CAMERA_KEYS = tuple(spec.name.rsplit(".", 1)[1] for spec in CAMERA_PARAMS)
_TABLE = {spec.name: spec for spec in (*PARAMS, *CAMERA_PARAMS)}
_PARAM = "param"  # dataclass field metadata: the table row a field is read from

_T = TypeVar("_T", bool, int, float, str)


def table_default(name: str, kind: type[_T]) -> _T:
    """The table's default of parameter ``name`` (a :data:`PARAMS` or :data:`CAMERA_PARAMS` name), of type ``kind``.

    Raises:
        TypeError: the table's default is of another type (a dataclass field that does not match its row).
    """
    default = _TABLE[name].default
    if type(default) is not kind:
        raise TypeError(f"parameter {name!r}: the table's default {default!r} is not a {kind.__name__}")
    return default


def _param(name: str, kind: type[_T]) -> _T:
    """A dataclass field read from table row ``name``, defaulting to the table's default."""
    return field(default=table_default(name, kind), metadata={_PARAM: name})


def _with_camera(text: str, camera: str) -> str:
    return text.replace(CAMERA_TOKEN, camera).replace(CAMERA_LOWER_TOKEN, camera.lower())


def camera_specs(camera: str) -> tuple[ParamSpec, ...]:
    """The per-camera parameters ``camera.<camera>.image_topic`` / ``info_topic`` / ``frame_id``; defaults
    ``/<camera lower>/image_raw``, ``/<camera lower>/camera_info``, ``""``."""
    return tuple(
        replace(
            spec,
            name=_with_camera(spec.name, camera),
            default=_with_camera(spec.default, camera) if isinstance(spec.default, str) else spec.default,
            description=_with_camera(spec.description, camera),
        )
        for spec in CAMERA_PARAMS
    )


def specs(cameras: Iterable[str] = ()) -> tuple[ParamSpec, ...]:
    """The fixed parameters, then the per-camera ones of ``cameras``: what the node declares, in order."""
    out = list(PARAMS)
    for camera in cameras:
        out.extend(camera_specs(camera))
    return tuple(out)


# ---------------------------------------------------------------------- rclpy declarations (ROS-free)
@dataclass(frozen=True)
class Descriptor:
    """What the node declares for one parameter: its default and the fields of ``rcl_interfaces/ParameterDescriptor``.

    Attributes:
        name: the parameter name.
        type: ``rcl_interfaces/ParameterType`` (1 bool, 2 integer, 3 double, 4 string, 9 string array).
        default: the declared default.
        description: :attr:`ParamSpec.description`.
        additional_constraints: what a valid value is (:meth:`ParamSpec.expected`: choices, format, bounds).
        read_only: the node reads its parameters once.
        dynamic_typing: doubles only, so that ``slop_s: 1`` in YAML (an integer) is accepted as 1.0;
            :func:`from_ros_parameters` checks every type anyway.
        floating_point_range: ``(from_value, to_value, step)`` of a bounded double (ROS ranges are inclusive; an
            exclusive minimum is enforced by :func:`from_ros_parameters`; an open end is +-inf; step 0 = any).
        integer_range: the same for a bounded integer (an open end is the int64 limit).
        choices: the allowed strings (empty: any); ROS has no field for them: they are in ``additional_constraints``.
    """

    name: str
    type: int
    default: ParamValue
    description: str
    additional_constraints: str
    read_only: bool
    dynamic_typing: bool
    floating_point_range: tuple[float, float, float] | None = None
    integer_range: tuple[int, int, int] | None = None
    choices: tuple[str, ...] = ()


def descriptor(spec: ParamSpec) -> Descriptor:
    """The declaration of ``spec`` (the node turns it into an rclpy ``ParameterDescriptor``)."""
    kind = spec.type_name
    bounded = spec.minimum is not None or spec.maximum is not None
    float_range = int_range = None
    if bounded and kind == "double":
        low = -math.inf if spec.minimum is None else float(spec.minimum)
        high = math.inf if spec.maximum is None else float(spec.maximum)
        float_range = (low, high, 0.0)
    elif bounded and kind == "int":
        low_i = INT64_MIN if spec.minimum is None else math.floor(spec.minimum) + (1 if spec.exclusive else 0)
        high_i = INT64_MAX if spec.maximum is None else math.floor(spec.maximum)
        int_range = (low_i, high_i, 0)
    return Descriptor(
        name=spec.name,
        type=PARAMETER_TYPES[kind],
        default=spec.default,
        description=spec.description,
        additional_constraints=spec.expected(),
        read_only=spec.read_only,
        dynamic_typing=kind == "double",
        floating_point_range=float_range,
        integer_range=int_range,
        choices=spec.choices,
    )


# ---------------------------------------------------------------------- the typed parameters
@dataclass(frozen=True)
class CameraParams:
    """Topics and frame of one camera.

    Attributes:
        name: camera name (the model's camera order uses these names).
        image_topic: the raw image topic; with ``compressed`` the node subscribes to ``image_topic + /compressed``.
        info_topic: its CameraInfo topic.
        frame_id: optical frame for the tf lookup; "" = the image's ``header.frame_id``.
    """

    name: str
    image_topic: str = field(metadata={_PARAM: "camera.<NAME>.image_topic"})
    info_topic: str = field(metadata={_PARAM: "camera.<NAME>.info_topic"})
    frame_id: str = _param("camera.<NAME>.frame_id", str)

    def subscribed_topic(self, compressed: bool) -> str:
        """The topic the node subscribes to for images (image_transport's compressed naming)."""
        return self.image_topic + COMPRESSED_SUFFIX if compressed else self.image_topic


@dataclass(frozen=True)
class ModelParams:
    """Which model to load, how, and what to load instead when it cannot be."""

    model: str = _param("model", str)
    backend: str = _param("backend", str)
    device: str = _param("device", str)
    precision: str = _param("precision", str)
    threads: int = _param("threads", int)
    spinning: bool = _param("spinning", bool)
    warmup: bool = _param("warmup", bool)
    fallback_model: str = _param("fallback_model", str)
    fallback_backend: str = _param("fallback_backend", str)
    fallback_device: str = _param("fallback_device", str)

    def runtime(self) -> RuntimeSettings:
        """The runtime's CPU settings (``threads``, ``spinning``), the same for ``model`` and ``fallback_model``."""
        return RuntimeSettings(self.threads, self.spinning)


@dataclass(frozen=True)
class SyncParams:
    """ApproximateTimeSynchronizer settings."""

    slop_s: float = _param("sync.slop_s", float)
    queue_size: int = _param("sync.queue_size", int)


@dataclass(frozen=True)
class OutputParams:
    """Which outputs are published, and how often.

    Attributes:
        min_confidence: None = every non-free voxel (the default; ``min_confidence: 0.0`` in the parameters).
        markers_period_s: 1 / markers_rate_hz (0 = every frame).
    """

    cloud: bool = _param("outputs.cloud", bool)
    markers: bool = _param("outputs.markers", bool)
    grid: bool = _param("outputs.grid", bool)
    markers_rate_hz: float = _param("outputs.markers_rate_hz", float)
    max_marker_voxels: int = _param("outputs.max_marker_voxels", int)
    min_confidence: float | None = table_default("outputs.min_confidence", float) or None
    processing_time: bool = _param("outputs.processing_time", bool)

    @property
    def markers_period_s(self) -> float:
        return 1.0 / self.markers_rate_hz if self.markers_rate_hz > 0 else 0.0


@dataclass(frozen=True)
class CostmapParams:
    """``~/costmap``: whether it is published, its height band, obstacle classes and evidence rules."""

    enabled: bool = _param("outputs.costmap", bool)
    min_height: float = _param("costmap.min_height", float)
    max_height: float = _param("costmap.max_height", float)
    obstacle_classes: tuple[str, ...] = field(default=(AUTO_OBSTACLES,), metadata={_PARAM: "costmap.obstacle_classes"})
    min_confidence: float = _param("costmap.min_confidence", float)
    camera_view: bool = _param("costmap.camera_view", bool)
    occlusion: bool = _param("costmap.occlusion", bool)

    def config(self) -> CostmapConfig:
        """The session's :class:`~occ_ros.pipeline.costmap.CostmapConfig`."""
        return CostmapConfig(
            self.min_height,
            self.max_height,
            tuple(self.obstacle_classes),
            self.min_confidence,
            self.camera_view,
            self.occlusion,
        )


@dataclass(frozen=True)
class QosParams:
    """QoS of the streamed outputs (``~/grid_description`` is always reliable + transient-local, depth 1)."""

    reliability: str = _param("qos.reliability", str)
    durability: str = _param("qos.durability", str)
    depth: int = _param("qos.depth", int)

    @property
    def reliability_policy(self) -> str:
        """The ``rclpy.qos.ReliabilityPolicy`` member name (``RELIABLE`` / ``BEST_EFFORT``)."""
        return self.reliability.upper()

    @property
    def durability_policy(self) -> str:
        """The ``rclpy.qos.DurabilityPolicy`` member name (``VOLATILE`` / ``TRANSIENT_LOCAL``)."""
        return self.durability.upper()


@dataclass(frozen=True)
class DiagnosticsParams:
    """How ``/diagnostics`` rates the node."""

    backend_error_after: int = _param("diagnostics.backend_error_after", int)


@dataclass(frozen=True)
class QueryParams:
    """Open-vocabulary queries (``~/query`` -> ``~/query/voxels``)."""

    enabled: bool = _param("query.enabled", bool)
    calibrated_threshold: bool = _param("query.calibrated_threshold", bool)
    threshold: float = _param("query.threshold", float)


@dataclass(frozen=True)
class NodeParams:
    """Every setting of ``occupancy_node``, validated.

    Attributes:
        model: model, backend and fallback.
        cameras: per camera, in the model's input order.
        compressed: subscribe to CompressedImage topics.
        sync: synchronizer settings.
        base_frame: the grid's frame; extrinsics are ``base_frame <- camera optical frame``.
        frame_id: ``header.frame_id`` of the outputs (``frame_id: ""`` in the parameters = ``base_frame``).
        tf_timeout_s: how long one frame waits for its transforms in total.
        input_timeout_s: silence after which an input topic is reported.
        outputs: output toggles and rates.
        qos: QoS of the streamed outputs.
        diagnostics: diagnostic thresholds.
        costmap: ``~/costmap``.
        query: open-vocabulary queries.
    """

    model: ModelParams
    cameras: tuple[CameraParams, ...]
    compressed: bool = _param("compressed", bool)
    sync: SyncParams = SyncParams()
    base_frame: str = _param("base_frame", str)
    frame_id: str = table_default("frame_id", str) or table_default("base_frame", str)
    tf_timeout_s: float = _param("tf_timeout_s", float)
    input_timeout_s: float = _param("input_timeout_s", float)
    outputs: OutputParams = OutputParams()
    qos: QosParams = QosParams()
    diagnostics: DiagnosticsParams = DiagnosticsParams()
    costmap: CostmapParams = CostmapParams()
    query: QueryParams = QueryParams()

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def session_config(self) -> SessionConfig:
        """The session these parameters configure (the node's and ``occ replay --params``'s)."""
        o = self.outputs
        return SessionConfig(
            cameras=tuple(
                CameraInput(c.name, c.subscribed_topic(self.compressed), c.info_topic, c.frame_id) for c in self.cameras
            ),
            base_frame=self.base_frame,
            frame_id=self.frame_id,
            tf_timeout_s=self.tf_timeout_s,
            cloud=o.cloud,
            markers=o.markers,
            grid=o.grid,
            processing_time=o.processing_time,
            markers_period_s=o.markers_period_s,
            max_marker_voxels=o.max_marker_voxels,
            min_confidence=o.min_confidence,
            input_timeout_s=self.input_timeout_s,
            backend_error_after=self.diagnostics.backend_error_after,
            costmap=self.costmap.enabled,
            costmap_config=self.costmap.config(),
            query=self.query.enabled,
            query_threshold=None if self.query.calibrated_threshold else self.query.threshold,
        )

    @classmethod
    def from_ros_parameters(cls, values: Mapping[str, Any], strict: bool = False, source: str = "") -> NodeParams:
        """See :func:`from_ros_parameters`."""
        return from_ros_parameters(values, strict=strict, source=source)


class _Dataclass(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Any]]


_D = TypeVar("_D", bound=_Dataclass)


def _build(cls: type[_D], checked: Mapping[str, Any], camera: str = "", **given: Any) -> _D:
    """``cls`` from the checked values of the table rows its fields name (``camera`` fills in ``<NAME>``)."""
    values = {f.name: checked[_with_camera(f.metadata[_PARAM], camera)] for f in fields(cls) if _PARAM in f.metadata}
    return cls(**{**values, **given})


# ---------------------------------------------------------------------- validation
def camera_name_problems(names: Any) -> list[str]:
    """Why ``names`` is not a usable ``cameras`` parameter (empty list: it is), one problem per bad name.

    The same rules as the table's ``cameras`` row (:meth:`ParamSpec.check`: items, pattern, uniqueness), with
    messages that name each bad camera; the node checks them before declaring the per-camera parameters.
    """
    spec = _TABLE["cameras"]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        return [f"parameter 'cameras': expected a list of camera names, got {names!r}"]
    problems = []
    if len(names) < spec.min_items:
        problems.append(f"parameter 'cameras': expected at least one camera name, got {list(names)!r}")
    for name in names:
        if spec.pattern and not spec.pattern.matches(name):
            problems.append(
                f"parameter 'cameras': camera name {name!r} must start with a letter and hold only letters, digits "
                "and '_' (it becomes part of the parameter names camera.<NAME>.*)"
            )
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if spec.unique_items and duplicates:
        problems.append(f"parameter 'cameras': camera names must be unique, {duplicates} repeat")
    return problems


def from_ros_parameters(values: Mapping[str, Any], strict: bool = False, source: str = "") -> NodeParams:
    """Validated :class:`NodeParams` from a flat ``dotted name -> value`` mapping.

    Parameters missing from ``values`` take their defaults (per-camera ones derive from the camera name). Types,
    ranges, choices and formats are checked against the table (:meth:`ParamSpec.check`); what the table cannot say
    is checked here: unknown names (``strict``) and ``precision: int8`` with ``backend: torch``.

    Args:
        values: e.g. ``{p.name: p.value for p in node.get_parameters(names)}`` or a flattened param file.
        strict: unknown names are errors too (param files: a typo must not fall back to a default silently;
            the node itself receives only declared parameters).
        source: where the values come from, prefixed to the error message (a file name).
    Raises:
        ParamError: every bad parameter, each named with what was expected.
    """
    problems: list[str] = []
    names_value = values.get("cameras", _TABLE["cameras"].default)
    name_problems = camera_name_problems(names_value)
    problems.extend(name_problems)  # instead of the cameras row's own check: one message per bad name
    cameras = [] if name_problems else list(names_value)
    all_specs = specs(cameras)
    checked: dict[str, Any] = {}
    for spec in all_specs:
        value = values.get(spec.name, spec.default)
        try:
            checked[spec.name] = spec.check(value)
        except ValueError as err:
            if spec.name != "cameras":
                problems.append(str(err))
            checked[spec.name] = spec.default
    if strict:
        known = {s.name for s in all_specs}
        for name in sorted(set(values) - known):
            hint = ""
            if name.startswith("camera.") and name.split(".")[1] not in cameras:
                hint = f" (camera {name.split('.')[1]!r} is not in 'cameras' {cameras})"
            problems.append(f"unknown parameter {name!r}{hint}")
    if checked["precision"] == "int8" and checked["backend"] == "torch":
        problems.append("parameter 'precision': int8 is a TensorRT engine's precision; torch runs fp32 or fp16")
    problems.extend(_costmap_problems(checked))
    if problems:
        raise ParamError(problems, source)

    min_conf = checked["outputs.min_confidence"]
    return _build(
        NodeParams,
        checked,
        model=_build(ModelParams, checked),
        cameras=tuple(_build(CameraParams, checked, camera=name, name=name) for name in cameras),
        sync=_build(SyncParams, checked),
        frame_id=checked["frame_id"] or checked["base_frame"],
        outputs=_build(OutputParams, checked, min_confidence=min_conf if min_conf > 0 else None),
        qos=_build(QosParams, checked),
        diagnostics=_build(DiagnosticsParams, checked),
        costmap=_build(CostmapParams, checked, obstacle_classes=tuple(checked["costmap.obstacle_classes"])),
        query=_build(QueryParams, checked),
    )


def _costmap_problems(checked: Mapping[str, Any]) -> list[str]:
    """What the table cannot say about the ``costmap.*`` parameters (the class names are checked against the
    model's vocabulary when the session starts)."""
    problems = []
    low, high = checked["costmap.min_height"], checked["costmap.max_height"]
    if high <= low:
        problems.append(f"parameter 'costmap.max_height': expected more than costmap.min_height ({low}), got {high}")
    names = list(checked["costmap.obstacle_classes"])
    if AUTO_OBSTACLES in names and len(names) > 1:
        problems.append(
            f"parameter 'costmap.obstacle_classes': {AUTO_OBSTACLES!r} stands alone (every non-surface class), "
            f"got {names}"
        )
    return problems


# ---------------------------------------------------------------------- parameter files
def _matches_node(key: str, node_name: str, namespace: str) -> bool:
    """rcl's node-name patterns of a param file: ``/**``, ``node``, ``/ns/node``, ``/**/node``."""
    full = f"{namespace.rstrip('/')}/{node_name}" if namespace else f"/{node_name}"
    return key in ("/**", f"/**/{node_name}", node_name, full, full.lstrip("/"))


def param_file_values(path: str | Path, node_name: str = NODE_NAME, namespace: str = "") -> dict[str, Any]:
    """The flat parameters a ROS 2 param file gives ``node_name`` (``/**:`` and the node's own sections merged,
    in file order, as rcl does).

    Raises:
        ParamError: not a param file (no ``ros__parameters`` for this node), or unreadable YAML.
    """
    import yaml

    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ParamError([f"cannot read the parameter file: {err}"], str(path)) from None
    if not isinstance(tree, Mapping):
        raise ParamError(["expected a mapping of node names to {ros__parameters: ...}"], str(path))
    values: dict[str, Any] = {}
    found = False
    for key, section in tree.items():
        if not _matches_node(str(key), node_name, namespace):
            continue
        if not isinstance(section, Mapping) or not isinstance(section.get("ros__parameters"), Mapping):
            raise ParamError([f"section {key!r} has no 'ros__parameters' mapping"], str(path))
        found = True
        values.update(flatten_keys(section["ros__parameters"]))
    if not found:
        raise ParamError([f"no section for node {node_name!r} (expected '/**:' or '{node_name}:')"], str(path))
    return values


def load_param_file(path: str | Path, node_name: str = NODE_NAME, namespace: str = "") -> NodeParams:
    """:class:`NodeParams` of a ROS 2 param file (``/**: ros__parameters: ...``), strictly: unknown names are errors.

    ``use_sim_time`` (rclpy's own) and ``diagnostic_updater.*`` (diagnostic_updater's) are accepted and ignored.
    """
    values = param_file_values(path, node_name, namespace)
    ours = {k: v for k, v in values.items() if not is_library_parameter(k)}
    return from_ros_parameters(ours, strict=True, source=str(path))


def is_library_parameter(name: str) -> bool:
    """A parameter the libraries declare on the node, not the table: ``use_sim_time`` (rclpy),
    ``diagnostic_updater.*`` (diagnostic_updater)."""
    return name == "use_sim_time" or name.startswith("diagnostic_updater.")


def resolve_model_path(model: str) -> Path:
    """The model file a ``model`` / ``fallback_model`` parameter names: ``~`` and ``$VARS`` expanded, ""= the
    shipped demo checkpoint.

    Raises:
        FileNotFoundError: ``""`` and no shipped models directory (the message lists where it looked).
    """
    if not model:
        from occ_ros.core.resources import models_dir

        return models_dir() / "demo.ckpt"
    return Path(os.path.expandvars(os.path.expanduser(model)))


# ---------------------------------------------------------------------- launch helpers
def parse_remaps(text: str) -> list[tuple[str, str]]:
    """``"/a:=/b, /c:=/d"`` (commas or whitespace between pairs) -> ``[("/a", "/b"), ("/c", "/d")]``.

    The launch file's ``camera_remaps`` argument: topic remappings applied to the node, e.g.
    ``/cam_front/image_raw:=/sensing/camera/front/image_raw``.

    Raises:
        ValueError: a pair without ``:=`` or with an empty side (names the pair).
    """
    pairs = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        source, sep, target = item.partition(":=")
        if not sep or not source or not target:
            raise ValueError(f"camera_remaps: expected FROM:=TO pairs separated by commas, got {item!r} in {text!r}")
        pairs.append((source, target))
    return pairs
