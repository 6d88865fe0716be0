"""Every parameter of ``occupancy_node``: names, defaults, descriptions, validation (ROS-free).

The node declares the parameters of :func:`declare_list` with rclpy, reads them back into a flat mapping
(dotted name -> value) and turns that into a typed :class:`NodeParams` with :func:`from_ros_parameters`. Tests
and tools load ``config/occupancy.param.yaml`` the same way with :func:`load_param_file`. Nothing here imports
rclpy, so every check is tested without ROS.

Parameters come in two sets:

* the fixed ones (:data:`PARAMS`), e.g. ``model``, ``sync.slop_s``, ``outputs.markers_rate_hz``;
* three per camera, ``camera.<NAME>.image_topic`` / ``info_topic`` / ``frame_id``, declared once ``cameras`` is
  known (:func:`camera_specs`); their defaults derive from the name (``/<name lower>/image_raw``, ...).

Numbers and lists have no "unset" in ROS 2 parameters, so "off" is spelled as a value: ``min_confidence: 0.0``,
``model: ""`` (the shipped demo checkpoint), ``frame_id: ""`` (the image header's / ``base_frame``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from occ_ros.core.config import flatten_keys
from occ_ros.core.rig import NUSCENES_CAMERAS
from occ_ros.session.config import NODE_NAME, CameraInput, SessionConfig

__all__ = ["NODE_NAME", "NodeParams", "ParamError", "ParamSpec", "load_param_file", "parse_remaps"]
BACKEND_CHOICES = ("auto", "onnxruntime", "tensorrt", "torch")
PRECISION_CHOICES = ("", "fp32", "fp16", "int8")
RELIABILITY_CHOICES = ("reliable", "best_effort")
DURABILITY_CHOICES = ("volatile", "transient_local")
CAMERA_KEYS = ("image_topic", "info_topic", "frame_id")
COMPRESSED_SUFFIX = "/compressed"

ParamValue = bool | int | float | str | list[str]

_TOPIC_RE = re.compile(r"^~?/?[A-Za-z_{][A-Za-z0-9_{}]*(/[A-Za-z_{][A-Za-z0-9_{}]*)*$")
_FRAME_RE = re.compile(r"^[A-Za-z0-9_/.\-]+$")
_CAMERA_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


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
class ParamSpec:
    """One declared parameter.

    Attributes:
        name: dotted ROS parameter name (``sync.slop_s``).
        default: default value; its type is the parameter's type (rclpy types parameters statically by it).
        description: one line for ``ros2 param describe`` and docs/node.md.
        choices: the allowed strings (empty: any).
        minimum: smallest allowed number (inclusive unless ``exclusive``).
        maximum: largest allowed number (inclusive).
        exclusive: ``minimum`` itself is not allowed.
    """

    name: str
    default: ParamValue
    description: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False

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

    def expected(self) -> str:
        """What a valid value looks like, for error messages."""
        text = {"double": "a number", "int": "an integer", "bool": "true or false"}.get(self.type_name, "")
        if self.type_name == "string":
            text = f"one of {list(self.choices)}" if self.choices else "a string"
        elif self.type_name == "string[]":
            text = "a list of strings"
        bounds = []
        if self.minimum is not None:
            bounds.append(f"{'>' if self.exclusive else '>='} {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum:g}")
        return text + (" " + " and ".join(bounds) if bounds else "")

    def check(self, value: Any) -> ParamValue:
        """``value`` converted to this parameter's type (an int is a valid double).

        Raises:
            ValueError: a wrong type, a string outside ``choices`` or a number outside the bounds (the message
                names the parameter, what was expected and what was given).
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
        else:
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
            converted = list(value) if ok else value
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
        "model file: .onnx (onnxruntime), .engine/.plan (tensorrt) or .ckpt (torch); '' = the shipped demo "
        "checkpoint (share/occ_ros/models/demo.ckpt); ~ and $VARS are expanded",
    ),
    ParamSpec("backend", "auto", "inference backend; auto picks it from the model's suffix", BACKEND_CHOICES),
    ParamSpec("device", "cpu", "cpu or cuda[:N] (tensorrt always runs on a GPU)"),
    ParamSpec(
        "precision",
        "",
        "'' = the model's own; torch: fp16 runs the network in half precision (CUDA); onnxruntime and tensorrt "
        "run the precision the file was exported / built with, a different value only warns",
        PRECISION_CHOICES,
    ),
    ParamSpec("threads", 0, "onnxruntime CPU threads (0 = its default)", minimum=0),
    ParamSpec("warmup", True, "run the model a few times before subscribing"),
    ParamSpec("fallback_model", "", "model to load when `model` cannot be loaded ('' = none: the node exits)"),
    ParamSpec("fallback_backend", "onnxruntime", "backend of fallback_model", BACKEND_CHOICES),
    ParamSpec("fallback_device", "cpu", "device of fallback_model"),
    # --- cameras
    ParamSpec(
        "cameras",
        list(NUSCENES_CAMERAS),
        "camera names in the model's input order; each has camera.<NAME>.image_topic / info_topic / frame_id",
    ),
    ParamSpec("compressed", False, "subscribe to sensor_msgs/CompressedImage on <image_topic>/compressed"),
    ParamSpec(
        "sync.slop_s",
        0.05,
        "ApproximateTimeSynchronizer slop: a frame's stamps must spread less than this, s",
        minimum=0.0,
        exclusive=True,
    ),
    ParamSpec("sync.queue_size", 10, "ApproximateTimeSynchronizer queue size per camera", minimum=1),
    # --- frames
    ParamSpec("base_frame", "base_link", "the grid's ego frame: extrinsics are looked up as base_frame <- camera"),
    ParamSpec("frame_id", "", "header.frame_id of the outputs ('' = base_frame)"),
    ParamSpec("tf_timeout_s", 0.05, "how long one frame may wait for its camera transforms, s", minimum=0.0),
    ParamSpec(
        "input_timeout_s",
        2.0,
        "an input topic with no message for this long (wall clock) is reported silent: warning + diagnostics, s",
        minimum=0.0,
        exclusive=True,
    ),
    # --- outputs
    ParamSpec("outputs.cloud", True, "publish ~/voxels (sensor_msgs/PointCloud2)"),
    ParamSpec("outputs.markers", True, "publish ~/markers (visualization_msgs/MarkerArray) while subscribed"),
    ParamSpec("outputs.grid", True, "publish ~/grid (std_msgs/UInt8MultiArray) and ~/grid_description"),
    ParamSpec("outputs.markers_rate_hz", 2.0, "max rate of ~/markers (0 = every frame)", minimum=0.0),
    ParamSpec("outputs.max_marker_voxels", 50000, "cap on the cubes in one MarkerArray", minimum=1),
    ParamSpec(
        "outputs.min_confidence",
        0.0,
        "publish only voxels at least this confident (0 = off: exactly the voxels `occ predict` writes)",
        minimum=0.0,
        maximum=1.0,
    ),
    # --- output QoS
    ParamSpec("qos.reliability", "reliable", "reliability of ~/voxels, ~/markers, ~/grid", RELIABILITY_CHOICES),
    ParamSpec("qos.durability", "volatile", "durability of ~/voxels, ~/markers, ~/grid", DURABILITY_CHOICES),
    ParamSpec("qos.depth", 1, "history depth (keep last) of ~/voxels, ~/markers, ~/grid", minimum=1),
)
"""The fixed parameters, in declaration order."""

_SPECS = {spec.name: spec for spec in PARAMS}


def default_image_topic(camera: str) -> str:
    """``/<name lower>/image_raw`` (``CAM_FRONT`` -> ``/cam_front/image_raw``), as ``occ synth`` bags have it."""
    return f"/{camera.lower()}/image_raw"


def default_info_topic(camera: str) -> str:
    """``/<name lower>/camera_info``."""
    return f"/{camera.lower()}/camera_info"


def camera_specs(camera: str) -> tuple[ParamSpec, ...]:
    """The per-camera parameters ``camera.<NAME>.image_topic`` / ``info_topic`` / ``frame_id``."""
    prefix = f"camera.{camera}."
    return (
        ParamSpec(
            prefix + "image_topic",
            default_image_topic(camera),
            f"{camera}: sensor_msgs/Image topic (with compressed: true, <image_topic>/compressed is subscribed)",
        ),
        ParamSpec(prefix + "info_topic", default_info_topic(camera), f"{camera}: sensor_msgs/CameraInfo topic"),
        ParamSpec(
            prefix + "frame_id",
            "",
            f"{camera}: optical frame for the tf lookup ('' = the image's header.frame_id)",
        ),
    )


def specs(cameras: Iterable[str] = ()) -> tuple[ParamSpec, ...]:
    """The fixed parameters, then the per-camera ones of ``cameras``."""
    out = list(PARAMS)
    for camera in cameras:
        out.extend(camera_specs(camera))
    return tuple(out)


def declare_list(cameras: Iterable[str] | None = None) -> list[tuple[str, ParamValue, str]]:
    """``(name, default, description)`` of every parameter to declare with rclpy.

    Args:
        cameras: declare the per-camera parameters of these cameras too (None: the fixed ones only; the node
            declares those first, reads ``cameras`` and then declares the cameras' own).
    """
    return [(s.name, s.default, s.description) for s in specs(cameras or ())]


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
    image_topic: str
    info_topic: str
    frame_id: str = ""

    def subscribed_topic(self, compressed: bool) -> str:
        """The topic the node subscribes to for images (image_transport's compressed naming)."""
        return self.image_topic + COMPRESSED_SUFFIX if compressed else self.image_topic


@dataclass(frozen=True)
class ModelParams:
    """Which model to load, how, and what to load instead when it cannot be."""

    model: str = ""
    backend: str = "auto"
    device: str = "cpu"
    precision: str = ""
    threads: int = 0
    warmup: bool = True
    fallback_model: str = ""
    fallback_backend: str = "onnxruntime"
    fallback_device: str = "cpu"


@dataclass(frozen=True)
class SyncParams:
    """ApproximateTimeSynchronizer settings."""

    slop_s: float = 0.05
    queue_size: int = 10


@dataclass(frozen=True)
class OutputParams:
    """Which outputs are published, and how often.

    Attributes:
        min_confidence: None = every non-free voxel (the default; ``min_confidence: 0.0`` in the parameters).
        markers_period_s: 1 / markers_rate_hz (0 = every frame).
    """

    cloud: bool = True
    markers: bool = True
    grid: bool = True
    markers_rate_hz: float = 2.0
    max_marker_voxels: int = 50000
    min_confidence: float | None = None

    @property
    def markers_period_s(self) -> float:
        return 1.0 / self.markers_rate_hz if self.markers_rate_hz > 0 else 0.0


@dataclass(frozen=True)
class QosParams:
    """QoS of the streamed outputs (``~/grid_description`` is always reliable + transient-local, depth 1)."""

    reliability: str = "reliable"
    durability: str = "volatile"
    depth: int = 1

    @property
    def reliability_policy(self) -> str:
        """The ``rclpy.qos.ReliabilityPolicy`` member name (``RELIABLE`` / ``BEST_EFFORT``)."""
        return self.reliability.upper()

    @property
    def durability_policy(self) -> str:
        """The ``rclpy.qos.DurabilityPolicy`` member name (``VOLATILE`` / ``TRANSIENT_LOCAL``)."""
        return self.durability.upper()


@dataclass(frozen=True)
class NodeParams:
    """Every setting of ``occupancy_node``, validated.

    Attributes:
        model: model, backend and fallback.
        cameras: per camera, in the model's input order.
        compressed: subscribe to CompressedImage topics.
        sync: synchronizer settings.
        base_frame: the grid's frame; extrinsics are ``base_frame <- camera optical frame``.
        frame_id: ``header.frame_id`` of the outputs (defaults to ``base_frame``).
        tf_timeout_s: how long one frame waits for its transforms in total.
        input_timeout_s: silence after which an input topic is reported.
        outputs: output toggles and rates.
        qos: QoS of the streamed outputs.
    """

    model: ModelParams
    cameras: tuple[CameraParams, ...]
    compressed: bool = False
    sync: SyncParams = SyncParams()
    base_frame: str = "base_link"
    frame_id: str = "base_link"
    tf_timeout_s: float = 0.05
    input_timeout_s: float = 2.0
    outputs: OutputParams = OutputParams()
    qos: QosParams = QosParams()

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
            markers_period_s=o.markers_period_s,
            max_marker_voxels=o.max_marker_voxels,
            min_confidence=o.min_confidence,
            input_timeout_s=self.input_timeout_s,
        )

    @classmethod
    def from_ros_parameters(cls, values: Mapping[str, Any], strict: bool = False, source: str = "") -> NodeParams:
        """See :func:`from_ros_parameters`."""
        return from_ros_parameters(values, strict=strict, source=source)

    def as_ros_parameters(self) -> dict[str, ParamValue]:
        """The flat ``name -> value`` mapping that :func:`from_ros_parameters` reads back into these params."""
        m, s, o, q = self.model, self.sync, self.outputs, self.qos
        out: dict[str, ParamValue] = {
            "model": m.model,
            "backend": m.backend,
            "device": m.device,
            "precision": m.precision,
            "threads": m.threads,
            "warmup": m.warmup,
            "fallback_model": m.fallback_model,
            "fallback_backend": m.fallback_backend,
            "fallback_device": m.fallback_device,
            "cameras": list(self.camera_names),
            "compressed": self.compressed,
            "sync.slop_s": s.slop_s,
            "sync.queue_size": s.queue_size,
            "base_frame": self.base_frame,
            "frame_id": "" if self.frame_id == self.base_frame else self.frame_id,
            "tf_timeout_s": self.tf_timeout_s,
            "input_timeout_s": self.input_timeout_s,
            "outputs.cloud": o.cloud,
            "outputs.markers": o.markers,
            "outputs.grid": o.grid,
            "outputs.markers_rate_hz": o.markers_rate_hz,
            "outputs.max_marker_voxels": o.max_marker_voxels,
            "outputs.min_confidence": 0.0 if o.min_confidence is None else o.min_confidence,
            "qos.reliability": q.reliability,
            "qos.durability": q.durability,
            "qos.depth": q.depth,
        }
        for cam in self.cameras:
            out[f"camera.{cam.name}.image_topic"] = cam.image_topic
            out[f"camera.{cam.name}.info_topic"] = cam.info_topic
            out[f"camera.{cam.name}.frame_id"] = cam.frame_id
        return out


def camera_name_problems(names: Any) -> list[str]:
    """Why ``names`` is not a usable ``cameras`` parameter (empty list: it is)."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        return [f"parameter 'cameras': expected a list of camera names, got {names!r}"]
    problems = []
    if not names:
        problems.append("parameter 'cameras': expected at least one camera name, got []")
    for name in names:
        if not _CAMERA_RE.match(name):
            problems.append(
                f"parameter 'cameras': camera name {name!r} must start with a letter and hold only letters, digits "
                "and '_' (it becomes part of the parameter names camera.<NAME>.*)"
            )
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if duplicates:
        problems.append(f"parameter 'cameras': camera names must be unique, {duplicates} repeat")
    return problems


def _topic_problem(name: str, topic: str) -> str | None:
    if not _TOPIC_RE.match(topic):
        return (
            f"parameter {name!r}: expected a ROS topic name (letters, digits, '_', '/'-separated tokens not "
            f"starting with a digit, no trailing '/'), got {topic!r}"
        )
    return None


def from_ros_parameters(values: Mapping[str, Any], strict: bool = False, source: str = "") -> NodeParams:
    """Validated :class:`NodeParams` from a flat ``dotted name -> value`` mapping.

    Parameters missing from ``values`` take their defaults (per-camera ones derive from the camera name).

    Args:
        values: e.g. ``{p.name: p.value for p in node.get_parameters(names)}`` or a flattened param file.
        strict: unknown names are errors too (param files: a typo must not fall back to a default silently;
            the node itself receives only declared parameters).
        source: where the values come from, prefixed to the error message (a file name).
    Raises:
        ParamError: every bad parameter, each named with what was expected.
    """
    problems: list[str] = []
    names_value = values.get("cameras", _SPECS["cameras"].default)
    name_problems = camera_name_problems(names_value)
    problems.extend(name_problems)
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
    for spec in all_specs:
        value = checked[spec.name]
        if spec.name.endswith(("image_topic", "info_topic")):
            problem = _topic_problem(spec.name, value)
            if problem:
                problems.append(problem)
        elif spec.name in ("base_frame",) or (spec.name.endswith("frame_id") and value):
            if not _FRAME_RE.match(value) or value.startswith("/"):
                problems.append(
                    f"parameter {spec.name!r}: expected a tf frame id (no spaces, no leading '/'), got {value!r}"
                )
    for key in ("device", "fallback_device"):
        device = checked[key]
        if not re.match(r"^(cpu|cuda(:\d+)?)$", device):
            problems.append(f"parameter {key!r}: expected cpu, cuda or cuda:N, got {device!r}")
    if checked["precision"] == "int8" and checked["backend"] == "torch":
        problems.append("parameter 'precision': int8 is a TensorRT engine's precision; torch runs fp32 or fp16")
    if problems:
        raise ParamError(problems, source)

    camera_params = tuple(
        CameraParams(
            name,
            checked[f"camera.{name}.image_topic"],
            checked[f"camera.{name}.info_topic"],
            checked[f"camera.{name}.frame_id"],
        )
        for name in cameras
    )
    min_conf = checked["outputs.min_confidence"]
    return NodeParams(
        model=ModelParams(
            model=checked["model"],
            backend=checked["backend"],
            device=checked["device"],
            precision=checked["precision"],
            threads=checked["threads"],
            warmup=checked["warmup"],
            fallback_model=checked["fallback_model"],
            fallback_backend=checked["fallback_backend"],
            fallback_device=checked["fallback_device"],
        ),
        cameras=camera_params,
        compressed=checked["compressed"],
        sync=SyncParams(checked["sync.slop_s"], checked["sync.queue_size"]),
        base_frame=checked["base_frame"],
        frame_id=checked["frame_id"] or checked["base_frame"],
        tf_timeout_s=checked["tf_timeout_s"],
        input_timeout_s=checked["input_timeout_s"],
        outputs=OutputParams(
            cloud=checked["outputs.cloud"],
            markers=checked["outputs.markers"],
            grid=checked["outputs.grid"],
            markers_rate_hz=checked["outputs.markers_rate_hz"],
            max_marker_voxels=checked["outputs.max_marker_voxels"],
            min_confidence=min_conf if min_conf > 0 else None,
        ),
        qos=QosParams(checked["qos.reliability"], checked["qos.durability"], checked["qos.depth"]),
    )


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
    ours = {k: v for k, v in values.items() if k != "use_sim_time" and not k.startswith("diagnostic_updater.")}
    return from_ros_parameters(ours, strict=True, source=str(path))


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
