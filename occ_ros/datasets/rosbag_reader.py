"""Any rosbag2 recording (MCAP or sqlite3) as a sequence of synchronized multi-camera :class:`Sample` s.

A small YAML file (:class:`BagConfig`, example in ``config/datasets/rosbag_example.yaml``) names the
camera topics, the sync tolerance and the tf frames. :class:`RosbagReader` then

1. **indexes** the bag in one pass over ``/tf``, ``/tf_static``, the camera_info topics and the image
   topics. tf and camera_info messages are decoded and kept (a :class:`TransformBuffer` and the
   intrinsics); of each image only its topic, record (log) time, header stamp and frame id are kept:
   the header is read straight from the first bytes of the CDR buffer, the pixels are not decoded.
2. **synchronizes** the cameras offline, like message_filters' ``ApproximateTime`` (policy below),
3. looks up, for every synchronized set, ``world_from_ego = fixed <- base`` at the reference stamp and
   each camera's ``base <- optical`` extrinsics; sets whose lookup fails are dropped and reported.

Images are loaded lazily: ``load(i, images=True)`` re-reads exactly the messages of sample ``i`` from
the bag (a ``[log time, log time + 1 ns)`` range query per camera, which MCAP's chunk index and
sqlite3's timestamp index answer without scanning the file) and decodes them with
:func:`~occ_ros.io.images.image_to_rgb`. Memory therefore stays O(number of messages) whatever the image
size; the bag reader handle is opened on first use and kept (re-opened after a fork or unpickling).

Synchronization policy (offline ``ApproximateTime``, documented in :class:`SyncReport`): every message
of the reference camera proposes a set; for each other camera the message with the nearest header
stamp is taken (ties go to the earlier one); the set is accepted only if every chosen stamp lies
within ``slop_s`` of the reference stamp. Each message is used at most once: when several reference
messages choose the same message, it goes to the one nearest in time (ties: the earlier) and the
others are dropped (reason ``conflict``). Nothing is silently skipped: ``reader.sync_report`` counts
every dropped reference message and says why.

Frames: ``world_from_ego`` is ``fixed_frame <- base_frame`` (``odom <- base_link`` by default),
extrinsics ``base_frame <- optical`` are looked up at the sample stamp (the reference camera's
header stamp); intrinsics come from the camera_info message nearest in time to each image.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import CameraRig
from occ_ros.core.tf_buffer import TransformBuffer, TransformError, add_tf_message
from occ_ros.core.vocabulary import OCC3D, Vocabulary
from occ_ros.datasets.sample import DatasetReader, Sample
from occ_ros.io.rosbag import ns_from_stamp

__all__ = [
    "BagConfig",
    "BagConfigError",
    "CameraTopics",
    "DroppedFrame",
    "RosbagReader",
    "SyncReport",
    "synchronize",
]

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPE = "tf2_msgs/msg/TFMessage"
_IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
_NS_PER_S = 1_000_000_000


# ====================================================================== configuration
class BagConfigError(ValueError):
    """A bag configuration is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class CameraTopics:
    """One camera of a bag.

    Attributes:
        name: camera name in the rig (e.g. ``CAM_FRONT``).
        image_topic: ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage`` topic (the bag's
            topic type decides how it is decoded).
        info_topic: its ``sensor_msgs/msg/CameraInfo`` topic.
        frame_id: optical frame id overriding the images' ``header.frame_id`` (None: use the header).
    """

    name: str
    image_topic: str
    info_topic: str
    frame_id: str | None = None


def default_info_topic(image_topic: str) -> str:
    """image_transport's camera_info topic of an image topic: ``/ns/image_raw[/compressed]`` -> ``/ns/camera_info``."""
    base = image_topic[: -len("/compressed")] if image_topic.endswith("/compressed") else image_topic
    head, _, _ = base.rpartition("/")
    return f"{head}/camera_info"


_TOP_KEYS = {"cameras", "sync", "frames", "tf", "vocabulary", "grid", "scene"}
_CAMERA_KEYS = {"name", "image_topic", "info_topic", "frame_id"}
_SECTION_KEYS = {
    "sync": {"slop_s", "reference"},
    "frames": {"fixed", "base"},
    "tf": {"topic", "static_topic", "tolerance_s"},
}


@dataclass(frozen=True)
class BagConfig:
    """Which topics and frames of a rosbag2 recording make a :class:`Sample` (YAML keys in brackets).

    Attributes:
        cameras: the cameras in rig order [``cameras``: list of ``{name, image_topic, info_topic, frame_id}``].
        slop_s: max |stamp - reference stamp| of a synchronized set, seconds [``sync.slop_s``, 0.05].
        reference: camera whose messages define the samples [``sync.reference``, the first camera].
        fixed_frame: the fixed (world / odometry) frame of ``world_from_ego`` [``frames.fixed``, ``odom``].
        base_frame: the ego frame [``frames.base``, ``base_link``].
        tf_topic, tf_static_topic: tf topics [``tf.topic`` ``/tf``, ``tf.static_topic`` ``/tf_static``].
        tf_tolerance_s: allowed extrapolation beyond the recorded tf range [``tf.tolerance_s``, 0].
        vocabulary: label vocabulary [``vocabulary``: ``occ3d`` or a YAML path, relative to the config file].
        grid: label grid [``grid``: ``occ3d`` / ``demo`` or ``{range_min, range_max, voxel_size}``; none].
        scene: scene name of the samples [``scene``; default: the bag directory's name].
        source: where the config came from (for error messages).
    """

    cameras: tuple[CameraTopics, ...]
    slop_s: float = 0.05
    reference: str = ""
    fixed_frame: str = "odom"
    base_frame: str = "base_link"
    tf_topic: str = "/tf"
    tf_static_topic: str = "/tf_static"
    tf_tolerance_s: float = 0.0
    vocabulary: Vocabulary = OCC3D
    grid: GridSpec | None = None
    scene: str | None = None
    source: str = "<dict>"

    def __post_init__(self) -> None:
        where = self.source
        cams = tuple(self.cameras)
        if not cams:
            raise BagConfigError(f"{where}: cameras: at least one camera is needed")
        names = [c.name for c in cams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise BagConfigError(f"{where}: cameras: names must be unique, repeated: {dupes}")
        object.__setattr__(self, "cameras", cams)
        if not self.reference:
            object.__setattr__(self, "reference", names[0])
        elif self.reference not in names:
            raise BagConfigError(f"{where}: sync.reference: {self.reference!r} is not a camera; cameras: {names}")
        if not np.isfinite(self.slop_s) or self.slop_s < 0:
            raise BagConfigError(f"{where}: sync.slop_s must be a number >= 0, got {self.slop_s!r}")
        if not np.isfinite(self.tf_tolerance_s) or self.tf_tolerance_s < 0:
            raise BagConfigError(f"{where}: tf.tolerance_s must be a number >= 0, got {self.tf_tolerance_s!r}")
        if self.fixed_frame == self.base_frame:
            raise BagConfigError(f"{where}: frames.fixed and frames.base are both {self.fixed_frame!r}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def slop_ns(self) -> int:
        return int(round(self.slop_s * _NS_PER_S))

    @property
    def tf_tolerance_ns(self) -> int:
        return int(round(self.tf_tolerance_s * _NS_PER_S))

    # ------------------------------------------------------------------ parsing
    @classmethod
    def from_yaml(cls, path: str | Path) -> BagConfig:
        """Load a config file (relative vocabulary paths are resolved against its folder)."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise BagConfigError(f"bag config {path} not found") from None
        except OSError as err:
            raise BagConfigError(f"cannot read bag config {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise BagConfigError(f"bag config {path} is not valid YAML: {err}") from None
        return cls.from_dict(data, source=str(path), base_dir=path.parent)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>", base_dir: str | Path | None = None) -> BagConfig:
        """Parse the YAML structure (see the class docstring); errors name ``source`` and the key."""
        if not isinstance(data, Mapping):
            raise BagConfigError(f"{source}: expected a mapping with a 'cameras' list, got {type(data).__name__}")
        _check_keys(data, _TOP_KEYS, source, "")
        if "cameras" not in data:
            raise BagConfigError(f"{source}: missing required key 'cameras'")
        cams_data = data["cameras"]
        if not isinstance(cams_data, list) or not cams_data:
            raise BagConfigError(f"{source}: cameras: expected a non-empty list of camera entries")
        cameras = []
        for i, entry in enumerate(cams_data):
            key = f"cameras[{i}]"
            if not isinstance(entry, Mapping):
                raise BagConfigError(f"{source}: {key}: expected a mapping, got {type(entry).__name__}")
            _check_keys(entry, _CAMERA_KEYS, source, key + ".")
            for required in ("name", "image_topic"):
                if required not in entry:
                    raise BagConfigError(f"{source}: {key}: missing required key {required!r}")
            name = _string(entry, "name", source, key)
            image_topic = _topic(entry, "image_topic", source, key)
            info_topic = (
                _topic(entry, "info_topic", source, key) if "info_topic" in entry else default_info_topic(image_topic)
            )
            frame_id = _string(entry, "frame_id", source, key) if entry.get("frame_id") is not None else None
            cameras.append(CameraTopics(name, image_topic, info_topic, frame_id))

        sections = {}
        for section in ("sync", "frames", "tf"):
            value = data.get(section) or {}
            if not isinstance(value, Mapping):
                raise BagConfigError(f"{source}: {section}: expected a mapping, got {type(value).__name__}")
            _check_keys(value, _SECTION_KEYS[section], source, section + ".")
            sections[section] = value
        sync, frames, tf = sections["sync"], sections["frames"], sections["tf"]

        kwargs: dict[str, Any] = {"cameras": tuple(cameras), "source": source}
        if "slop_s" in sync:
            kwargs["slop_s"] = _number(sync, "slop_s", source, "sync")
        if sync.get("reference") is not None:
            kwargs["reference"] = _string(sync, "reference", source, "sync")
        if "fixed" in frames:
            kwargs["fixed_frame"] = _string(frames, "fixed", source, "frames")
        if "base" in frames:
            kwargs["base_frame"] = _string(frames, "base", source, "frames")
        if "topic" in tf:
            kwargs["tf_topic"] = _topic(tf, "topic", source, "tf")
        if "static_topic" in tf:
            kwargs["tf_static_topic"] = _topic(tf, "static_topic", source, "tf")
        if "tolerance_s" in tf:
            kwargs["tf_tolerance_s"] = _number(tf, "tolerance_s", source, "tf")
        if data.get("vocabulary") is not None:
            kwargs["vocabulary"] = _vocabulary(data["vocabulary"], source, base_dir)
        if data.get("grid") is not None:
            kwargs["grid"] = _grid(data["grid"], source)
        if data.get("scene") is not None:
            kwargs["scene"] = _string(data, "scene", source, "")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The YAML structure of this config (vocabulary by name: ``occ3d`` or the vocabulary's name)."""
        out: dict[str, Any] = {
            "cameras": [
                {"name": c.name, "image_topic": c.image_topic, "info_topic": c.info_topic}
                | ({"frame_id": c.frame_id} if c.frame_id else {})
                for c in self.cameras
            ],
            "sync": {"slop_s": self.slop_s, "reference": self.reference},
            "frames": {"fixed": self.fixed_frame, "base": self.base_frame},
            "tf": {"topic": self.tf_topic, "static_topic": self.tf_static_topic, "tolerance_s": self.tf_tolerance_s},
            "vocabulary": self.vocabulary.name,
        }
        if self.grid is not None:
            out["grid"] = {k: v for k, v in self.grid.to_dict().items() if k != "shape"}
        if self.scene is not None:
            out["scene"] = self.scene
        return out


def _check_keys(data: Mapping[str, Any], allowed: set[str], source: str, prefix: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise BagConfigError(
            f"{source}: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
            f"allowed: {', '.join(prefix + k for k in sorted(allowed))}"
        )


def _string(data: Mapping[str, Any], key: str, source: str, where: str) -> str:
    value = data.get(key)
    name = f"{where}.{key}" if where else key
    if not isinstance(value, str) or not value.strip():
        raise BagConfigError(f"{source}: {name}: expected a non-empty string, got {value!r}")
    return value.strip()


def _topic(data: Mapping[str, Any], key: str, source: str, where: str) -> str:
    value = _string(data, key, source, where)
    if not value.startswith("/"):
        value = "/" + value  # rosbag2 stores fully qualified names
    return value


def _number(data: Mapping[str, Any], key: str, source: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BagConfigError(f"{source}: {where}.{key}: expected a number, got {value!r}")
    return float(value)


def _vocabulary(value: Any, source: str, base_dir: str | Path | None) -> Vocabulary:
    if not isinstance(value, str) or not value:
        raise BagConfigError(f"{source}: vocabulary: expected 'occ3d' or a YAML path, got {value!r}")
    if value == "occ3d":
        return OCC3D
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    try:
        return Vocabulary.load(path)
    except ValueError as err:
        raise BagConfigError(f"{source}: vocabulary: {err}") from None


def _grid(value: Any, source: str) -> GridSpec:
    try:
        if isinstance(value, str):
            return GridSpec.named(value)
        if isinstance(value, Mapping):
            return GridSpec.from_dict(value)
    except (TypeError, ValueError) as err:
        raise BagConfigError(f"{source}: grid: {err}") from None
    raise BagConfigError(
        f"{source}: grid: expected a preset name (occ3d, demo) or {{range_min, range_max, voxel_size}}, got {value!r}"
    )


# ====================================================================== synchronization
class DroppedFrame(NamedTuple):
    """A reference message that did not become a sample.

    Attributes:
        stamp_ns: its header stamp.
        reason: ``unmatched`` (a camera has no message within slop), ``conflict`` (a camera's nearest
            message went to a closer reference message) or ``tf`` (a transform lookup failed).
        detail: human-readable explanation naming the camera(s) / frames.
    """

    stamp_ns: int
    reason: str
    detail: str


@dataclass
class SyncReport:
    """What synchronization and the tf lookups kept and dropped.

    Attributes:
        reference: the reference camera.
        slop_s: the sync tolerance.
        reference_messages: messages of the reference camera (= proposed sets).
        samples: accepted sets (the reader's length).
        unmatched: camera -> reference messages dropped because that camera had no message within slop.
        conflicts: camera -> reference messages dropped because that camera's nearest message was
            used by a closer reference message (each message is used at most once).
        tf_failures: synchronized sets dropped because a tf lookup failed at their stamp.
        unused: camera -> its messages that belong to no sample (reference camera included).
        dropped: every dropped reference message, in time order.
    """

    reference: str
    slop_s: float
    reference_messages: int = 0
    samples: int = 0
    unmatched: dict[str, int] = field(default_factory=dict)
    conflicts: dict[str, int] = field(default_factory=dict)
    tf_failures: int = 0
    unused: dict[str, int] = field(default_factory=dict)
    dropped: list[DroppedFrame] = field(default_factory=list)

    @property
    def dropped_sync(self) -> int:
        """Reference messages dropped by synchronization (a message may fail for several cameras)."""
        return sum(1 for d in self.dropped if d.reason != "tf")

    def summary(self) -> str:
        lines = [
            f"{self.samples} samples from {self.reference_messages} {self.reference} messages "
            f"(slop {self.slop_s * 1e3:g} ms): {self.dropped_sync} dropped by sync, {self.tf_failures} by tf"
        ]
        for cam, n in sorted(self.unmatched.items()):
            if n:
                lines.append(f"  {cam}: no message within slop for {n} reference message(s)")
        for cam, n in sorted(self.conflicts.items()):
            if n:
                lines.append(f"  {cam}: nearest message already used by a closer reference message, {n} time(s)")
        for d in self.dropped:
            if d.reason == "tf":
                lines.append(f"  tf at {d.stamp_ns / _NS_PER_S:.9f} s: {d.detail}")
                break
        return "\n".join(lines)


def synchronize(
    reference: np.ndarray, others: Mapping[str, np.ndarray], slop_ns: int
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Offline ApproximateTime on sorted header stamps (the policy in the module docstring).

    Args:
        reference: (R,) int64 sorted stamps of the reference camera.
        others: camera -> (N_c,) int64 sorted stamps.
        slop_ns: max |stamp - reference stamp|.
    Returns:
        accepted: (R,) bool, reference messages whose set is complete.
        match: camera -> (R,) int64 index of the chosen message, -1 where none.
        reason: camera -> (R,) int8: 0 matched, 1 nearest beyond slop (or no messages), 2 conflict.
    """
    ref = np.asarray(reference, dtype=np.int64)
    n_ref = len(ref)
    accepted = np.ones(n_ref, dtype=bool)
    matches: dict[str, np.ndarray] = {}
    reasons: dict[str, np.ndarray] = {}
    for cam, stamps in others.items():
        stamps = np.asarray(stamps, dtype=np.int64)
        match = np.full(n_ref, -1, dtype=np.int64)
        reason = np.ones(n_ref, dtype=np.int8)
        if len(stamps) and n_ref:
            hi = np.clip(np.searchsorted(stamps, ref, side="left"), 0, len(stamps) - 1)
            lo = np.clip(hi - 1, 0, len(stamps) - 1)
            d_lo, d_hi = np.abs(stamps[lo] - ref), np.abs(stamps[hi] - ref)
            nearest = np.where(d_lo <= d_hi, lo, hi)  # ties: the earlier message
            dist = np.minimum(d_lo, d_hi)
            ok = np.flatnonzero(dist <= slop_ns)
            # Each message at most once: among the reference messages that chose it, the nearest wins.
            order = ok[np.lexsort((ok, dist[ok], nearest[ok]))]
            first = np.ones(len(order), dtype=bool)
            first[1:] = nearest[order][1:] != nearest[order][:-1]
            winners, losers = order[first], order[~first]
            match[winners] = nearest[winners]
            reason[winners] = 0
            reason[losers] = 2
        matches[cam] = match
        reasons[cam] = reason
        accepted &= match >= 0
    return accepted, matches, reasons


# ====================================================================== bag index
def _cdr_header(raw: bytes | memoryview) -> tuple[int, str] | None:
    """(stamp_ns, frame_id) of a message starting with std_msgs/Header, read from its CDR bytes.

    Plain CDR (XCDR1, big or little endian, as every ROS 2 distribution writes): after the 4-byte
    encapsulation header come ``int32 sec``, ``uint32 nanosec``, ``uint32 len`` and the frame id with
    its NUL. Returns None for any other encapsulation (the caller then deserializes the message).
    """
    view = memoryview(raw)
    if len(view) < 16 or view[0] != 0 or view[1] not in (0, 1):
        return None
    order = "<" if view[1] == 1 else ">"
    sec, nanosec, length = struct.unpack_from(order + "iII", view, 4)
    if 16 + length > len(view):
        return None
    frame_id = bytes(view[16 : 16 + max(length - 1, 0)]).decode("utf-8", errors="replace")
    return int(sec) * _NS_PER_S + int(nanosec), frame_id


@dataclass
class _ImageIndex:
    """Per camera, its image messages sorted by header stamp."""

    stamps: np.ndarray  # (N,) int64 header stamps
    log_ns: np.ndarray  # (N,) int64 record times
    dup: np.ndarray  # (N,) int64: earlier messages with the same (log time, header stamp)
    frame_ids: list[str]


@dataclass
class _InfoIndex:
    """Per camera, its camera_info messages sorted by header stamp."""

    stamps: np.ndarray  # (M,) int64
    messages: list[Any]


class RosbagReader(DatasetReader):
    """Synchronized multi-camera samples from a rosbag2 directory (or a single ``.mcap`` / ``.db3`` file).

    Args:
        bag_path: the bag.
        config: a :class:`BagConfig`, or the path of its YAML file.
    Raises:
        FileNotFoundError: the bag does not exist.
        ValueError: a configured topic is missing or has the wrong type, a camera has no messages or no
            camera_info, a camera's optical frame or the ego frame is not connected by tf, a tf message is
            not a valid transform. :class:`BagConfigError` for a bad config.

    Attributes:
        sync_report: what synchronization and the tf lookups dropped (:class:`SyncReport`).
        transforms: the bag's tf tree (:class:`TransformBuffer`).
        topics: topic -> message type of every topic in the bag.
    """

    kind = "rosbag"

    def __init__(self, bag_path: str | Path, config: BagConfig | str | Path) -> None:
        self.path = Path(bag_path)
        self.config = config if isinstance(config, BagConfig) else BagConfig.from_yaml(config)
        if not self.path.exists():
            raise FileNotFoundError(f"bag {self.path} does not exist")
        self.scene = self.config.scene or (self.path.stem if self.path.is_file() else self.path.resolve().name)
        self._reader: Any = None
        self._reader_pid = -1
        self._index()

    # ------------------------------------------------------------------ indexing
    def _open(self) -> Any:
        from rosbags.rosbag2 import Reader
        from rosbags.rosbag2.errors import ReaderError

        try:
            reader = Reader(self.path)
            reader.open()
        except FileNotFoundError as err:
            raise ValueError(f"{self.path} is not a rosbag2 bag: {err}") from None
        except ReaderError as err:
            raise ValueError(f"cannot read bag {self.path}: {err}") from None
        return reader

    def _index(self) -> None:
        from occ_ros.io.rosbag import typestore

        cfg = self.config
        store = typestore()
        reader = self._open()
        try:
            self.topics = {c.topic: c.msgtype for c in reader.connections}
            counts: dict[str, int] = {}
            for c in reader.connections:
                counts[c.topic] = counts.get(c.topic, 0) + int(c.msgcount)
            self._check_topics(counts)

            image_topics: dict[str, list[str]] = {}
            info_topics: dict[str, list[str]] = {}
            for cam in cfg.cameras:
                image_topics.setdefault(cam.image_topic, []).append(cam.name)
                info_topics.setdefault(cam.info_topic, []).append(cam.name)
            tf_topics = {t: t == cfg.tf_static_topic for t in (cfg.tf_topic, cfg.tf_static_topic) if t in self.topics}
            wanted = set(image_topics) | set(info_topics) | set(tf_topics)
            connections = [c for c in reader.connections if c.topic in wanted]

            buffer = TransformBuffer(tolerance_ns=cfg.tf_tolerance_ns)
            images: dict[str, tuple[list[int], list[int], list[str]]] = {c.name: ([], [], []) for c in cfg.cameras}
            infos: dict[str, tuple[list[int], list[Any]]] = {c.name: ([], []) for c in cfg.cameras}
            for conn, log_ns, raw in reader.messages(connections=connections):
                topic = conn.topic
                if topic in tf_topics:
                    self._add_tf(buffer, store.deserialize_cdr(raw, conn.msgtype), topic, log_ns, tf_topics[topic])
                if topic in info_topics:
                    info: Any = store.deserialize_cdr(raw, conn.msgtype)
                    for name in info_topics[topic]:
                        infos[name][0].append(ns_from_stamp(info.header.stamp))
                        infos[name][1].append(info)
                if topic in image_topics:
                    header = _cdr_header(raw)
                    if header is None:
                        image: Any = store.deserialize_cdr(raw, conn.msgtype)
                        header = (ns_from_stamp(image.header.stamp), str(image.header.frame_id))
                    for name in image_topics[topic]:
                        stamps, logs, frames = images[name]
                        stamps.append(header[0])
                        logs.append(int(log_ns))
                        frames.append(header[1])
        finally:
            reader.close()

        self.transforms = buffer
        self._images = {name: _sorted_images(*images[name]) for name in cfg.names}
        self._infos: dict[str, _InfoIndex] = {}
        for cam in cfg.cameras:
            if not len(self._images[cam.name].stamps):
                raise ValueError(f"bag {self.path}: camera {cam.name}: image topic {cam.image_topic} has no messages")
            stamps, msgs = infos[cam.name]
            if not stamps:
                raise ValueError(
                    f"bag {self.path}: camera {cam.name}: camera_info topic {cam.info_topic} has no messages; "
                    "intrinsics are needed for every camera"
                )
            order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
            self._infos[cam.name] = _InfoIndex(np.asarray(stamps, dtype=np.int64)[order], [msgs[i] for i in order])
        self._check_tf_tree()
        self._synchronize()

    def _check_topics(self, counts: Mapping[str, int]) -> None:
        cfg = self.config
        listing = "\n".join(f"  {t}  [{self.topics[t]}]  {counts.get(t, 0)} messages" for t in sorted(self.topics))
        listing = listing or "  (none)"
        missing = []
        for cam in cfg.cameras:
            for key, topic in (("image_topic", cam.image_topic), ("info_topic", cam.info_topic)):
                if topic not in self.topics:
                    missing.append(f"{topic} ({cam.name} {key})")
        if missing:
            raise ValueError(
                f"bag {self.path} lacks topic(s) configured in {cfg.source}: {', '.join(missing)}.\n"
                f"The bag has these topics:\n{listing}"
            )
        for cam in cfg.cameras:
            checks = (
                (cam.image_topic, f"{cam.name} image_topic", _IMAGE_TYPES),
                (cam.info_topic, f"{cam.name} info_topic", (CAMERA_INFO_TYPE,)),
            )
            for topic, what, expected in checks:
                if self.topics[topic] not in expected:
                    raise ValueError(
                        f"bag {self.path}: topic {topic} ({what}) has type {self.topics[topic]}; "
                        f"expected {' or '.join(expected)}"
                    )
        for key, topic in (("tf.topic", cfg.tf_topic), ("tf.static_topic", cfg.tf_static_topic)):
            if topic in self.topics and self.topics[topic] != TF_TYPE:
                raise ValueError(
                    f"bag {self.path}: topic {topic} ({key}) has type {self.topics[topic]}; expected {TF_TYPE}"
                )

    def _add_tf(self, buffer: TransformBuffer, msg: Any, topic: str, log_ns: int, static: bool) -> None:
        try:
            add_tf_message(buffer, msg, static)
        except ValueError as err:
            raise ValueError(f"bag {self.path}: {topic} message recorded at {log_ns} ns: {err}") from None

    def _camera_frame(self, name: str, image_frame: str) -> str:
        """Optical frame of one image of camera ``name``: config override, header, else camera_info's."""
        cam = self.config.cameras[self.config.names.index(name)]
        frame = cam.frame_id or image_frame.lstrip("/") or str(self._infos[name].messages[0].header.frame_id)
        if not frame:
            raise ValueError(
                f"bag {self.path}: camera {name}: neither its images nor its camera_info carry a frame id; "
                "set cameras[].frame_id in the config"
            )
        return frame

    def _check_tf_tree(self) -> None:
        cfg, tf = self.config, self.transforms
        topics = f"{cfg.tf_topic}, {cfg.tf_static_topic}"
        try:
            tf.path(cfg.fixed_frame, cfg.base_frame)
        except TransformError as err:
            raise ValueError(
                f"bag {self.path}: no tf path from {cfg.fixed_frame} (frames.fixed) to {cfg.base_frame} "
                f"(frames.base) in {topics}: {err}"
            ) from None
        for name in cfg.names:
            frame = self._camera_frame(name, self._images[name].frame_ids[0])
            try:
                tf.path(cfg.base_frame, frame)
            except TransformError as err:
                raise ValueError(
                    f"bag {self.path}: camera {name}: no tf path from {cfg.base_frame} to its optical frame "
                    f"{frame!r} in {topics}: {err}"
                ) from None

    def _synchronize(self) -> None:
        cfg = self.config
        ref_name = cfg.reference
        ref = self._images[ref_name]
        others = {n: self._images[n].stamps for n in cfg.names if n != ref_name}
        accepted, match, reason = synchronize(ref.stamps, others, cfg.slop_ns)
        report = SyncReport(reference=ref_name, slop_s=cfg.slop_s, reference_messages=len(ref.stamps))
        report.unmatched = {n: int(np.count_nonzero(r == 1)) for n, r in reason.items()}
        report.conflicts = {n: int(np.count_nonzero(r == 2)) for n, r in reason.items()}

        rows: list[np.ndarray] = []  # (C,) message index per camera, rig order
        poses: list[np.ndarray] = []
        extrinsics: list[np.ndarray] = []
        for r in range(len(ref.stamps)):
            stamp = int(ref.stamps[r])
            if not accepted[r]:
                report.dropped.append(self._sync_drop(stamp, reason, r))
                continue
            row = np.array([r if n == ref_name else int(match[n][r]) for n in cfg.names], dtype=np.int64)
            try:
                world_from_ego = self.transforms.lookup(cfg.fixed_frame, cfg.base_frame, stamp)
                ego_from_optical = np.stack(
                    [
                        self.transforms.lookup(
                            cfg.base_frame, self._camera_frame(n, self._images[n].frame_ids[row[c]]), stamp
                        )
                        for c, n in enumerate(cfg.names)
                    ]
                )
            except TransformError as err:
                report.tf_failures += 1
                report.dropped.append(DroppedFrame(stamp, "tf", str(err)))
                continue
            rows.append(row)
            poses.append(world_from_ego)
            extrinsics.append(ego_from_optical)

        n_cams = len(cfg.names)
        self._rows = np.stack(rows) if rows else np.zeros((0, n_cams), dtype=np.int64)  # (N, C)
        self._world_from_ego = np.stack(poses) if poses else np.zeros((0, 4, 4))  # (N, 4, 4)
        self._ego_from_optical = np.stack(extrinsics) if extrinsics else np.zeros((0, n_cams, 4, 4))  # (N, C, 4, 4)
        report.samples = len(rows)
        report.unused = {
            n: int(len(self._images[n].stamps) - len(np.unique(self._rows[:, c]))) for c, n in enumerate(cfg.names)
        }
        self.sync_report = report

    def _sync_drop(self, stamp: int, reason: Mapping[str, np.ndarray], r: int) -> DroppedFrame:
        """Why reference message ``r`` (header stamp ``stamp``) was not synchronized."""
        parts, kinds = [], set()
        slop_ms = self.config.slop_s * 1e3
        for name, codes in reason.items():
            code = int(codes[r])
            if code == 0:
                continue
            stamps = self._images[name].stamps
            if not len(stamps):
                parts.append(f"{name}: no messages")
                kinds.add("unmatched")
                continue
            j = int(np.clip(np.searchsorted(stamps, stamp), 0, len(stamps) - 1))
            cand = [k for k in (j - 1, j) if 0 <= k < len(stamps)]
            gap_ms = min(abs(int(stamps[k]) - stamp) for k in cand) / 1e6
            if code == 1:
                parts.append(f"{name}: nearest message {gap_ms:.3f} ms away > slop {slop_ms:g} ms")
                kinds.add("unmatched")
            else:
                parts.append(f"{name}: nearest message ({gap_ms:.3f} ms away) used by a closer reference message")
                kinds.add("conflict")
        kind = "unmatched" if "unmatched" in kinds else "conflict"
        return DroppedFrame(stamp, kind, "; ".join(parts))

    # ------------------------------------------------------------------ DatasetReader
    def __len__(self) -> int:
        return len(self._rows)

    @property
    def stamps_ns(self) -> np.ndarray:
        """(N,) int64 sample stamps (reference header stamps), increasing."""
        ref = self.config.reference
        return self._images[ref].stamps[self._rows[:, self.config.names.index(ref)]]

    def scenes(self) -> dict[str, list[int]]:
        return {self.scene: list(range(len(self)))}

    def poses(self) -> dict[str, np.ndarray]:
        """``{scene: (N, 4, 4) world_from_ego}`` (fixed <- base at each sample stamp)."""
        return {self.scene: self._world_from_ego.copy()}

    def rig(self, index: int) -> CameraRig:
        """The rig of sample ``index``: nearest camera_info per camera, extrinsics at the sample stamp."""
        cfg = self.config
        infos = []
        for c, name in enumerate(cfg.names):
            img = self._images[name]
            k = int(self._rows[index, c])
            info_index = self._infos[name]
            info = info_index.messages[_nearest(info_index.stamps, int(img.stamps[k]))]
            frame = self._camera_frame(name, img.frame_ids[k])
            infos.append(
                SimpleNamespace(
                    k=info.k,
                    d=info.d,
                    distortion_model=info.distortion_model,
                    width=info.width,
                    height=info.height,
                    header=SimpleNamespace(frame_id=frame),
                )
            )
        try:
            return CameraRig.from_camera_infos(cfg.names, infos, list(self._ego_from_optical[index]))
        except ValueError as err:
            raise ValueError(f"bag {self.path}: sample {index}: invalid camera_info or transform: {err}") from None

    def load(self, index: int, images: bool = True) -> Sample:
        """Sample ``index`` (0-based); with ``images`` its pictures are re-read from the bag and decoded."""
        if not 0 <= index < len(self):
            raise IndexError(f"{self.kind} reader {self.path}: index {index} out of range 0..{len(self) - 1}")
        cfg = self.config
        rig = self.rig(index)
        ref_c = cfg.names.index(cfg.reference)
        stamps = {n: int(self._images[n].stamps[self._rows[index, c]]) for c, n in enumerate(cfg.names)}
        logs = {n: int(self._images[n].log_ns[self._rows[index, c]]) for c, n in enumerate(cfg.names)}
        pictures = self._load_images(index, rig) if images else {}
        return Sample(
            dataset=self.kind,
            scene=self.scene,
            frame=f"{index:06d}",
            index=index,
            stamp_ns=int(self._images[cfg.reference].stamps[self._rows[index, ref_c]]),
            rig=rig,
            images=pictures,
            image_stamps_ns=stamps,
            world_from_ego=self._world_from_ego[index].copy(),
            grid=cfg.grid,
            vocabulary=cfg.vocabulary,
            extras={"bag": str(self.path), "log_stamps_ns": logs},
        )

    # ------------------------------------------------------------------ images
    def _bag(self) -> Any:
        """The open bag reader of this process (opened lazily, re-opened after a fork)."""
        if self._reader is None or self._reader_pid != os.getpid():
            self._reader = self._open()
            self._reader_pid = os.getpid()
        return self._reader

    def _load_images(self, index: int, rig: CameraRig) -> dict[str, np.ndarray]:
        from occ_ros.io.images import image_to_rgb
        from occ_ros.io.rosbag import typestore

        store = typestore()
        bag = self._bag()
        out: dict[str, np.ndarray] = {}
        for c, cam in enumerate(self.config.cameras):
            img = self._images[cam.name]
            k = int(self._rows[index, c])
            log_ns, stamp, dup = int(img.log_ns[k]), int(img.stamps[k]), int(img.dup[k])
            conns = [x for x in bag.connections if x.topic == cam.image_topic]
            seen = 0
            msg: Any = None
            for conn, _, raw in bag.messages(connections=conns, start=log_ns, stop=log_ns + 1):
                header = _cdr_header(raw)
                decoded: Any = None
                if header is None:
                    decoded = store.deserialize_cdr(raw, conn.msgtype)
                    header = (ns_from_stamp(decoded.header.stamp), "")
                if header[0] != stamp:
                    continue
                if seen == dup:
                    msg = decoded if decoded is not None else store.deserialize_cdr(raw, conn.msgtype)
                    break
                seen += 1
            if msg is None:
                raise ValueError(
                    f"bag {self.path}: {cam.image_topic} message recorded at {log_ns} ns (stamp {stamp} ns) "
                    "not found on re-reading; was the bag modified since it was indexed?"
                )
            try:
                rgb = image_to_rgb(msg)
            except ValueError as err:
                raise ValueError(f"bag {self.path}: {cam.image_topic} at stamp {stamp} ns: {err}") from None
            camera = rig[cam.name]
            if rgb.shape[:2] != (camera.height, camera.width):
                raise ValueError(
                    f"bag {self.path}: {cam.image_topic} at stamp {stamp} ns is {rgb.shape[1]}x{rgb.shape[0]}, "
                    f"but its camera_info says {camera.width}x{camera.height}"
                )
            out[cam.name] = rgb
        return out

    def close(self) -> None:
        """Close the bag handle used for image loading (it re-opens on the next image load)."""
        reader, self._reader = self._reader, None
        if reader is not None and self._reader_pid == os.getpid():
            reader.close()

    def __enter__(self) -> RosbagReader:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"], state["_reader_pid"] = None, -1  # open file handles do not pickle
        return state

    def __repr__(self) -> str:
        return f"RosbagReader({str(self.path)!r}, {len(self)} samples, cameras {self.config.names})"


def _nearest(stamps: np.ndarray, t: int) -> int:
    """Index of the stamp nearest to ``t`` in a sorted non-empty array (ties: the earlier)."""
    j = int(np.searchsorted(stamps, t))
    if j == 0:
        return 0
    if j == len(stamps):
        return j - 1
    return j - 1 if t - int(stamps[j - 1]) <= int(stamps[j]) - t else j


def _sorted_images(stamps: Sequence[int], logs: Sequence[int], frames: Sequence[str]) -> _ImageIndex:
    s = np.asarray(stamps, dtype=np.int64)
    lg = np.asarray(logs, dtype=np.int64)
    order = np.lexsort((lg, s))  # by header stamp, then record time
    s, lg = s[order], lg[order]
    # dup[i]: position of message i in its run of equal (stamp, log time) pairs
    new_run = np.ones(len(s), dtype=bool)
    new_run[1:] = (s[1:] != s[:-1]) | (lg[1:] != lg[:-1])
    positions = np.arange(len(s), dtype=np.int64)
    dup = positions - np.maximum.accumulate(np.where(new_run, positions, 0))
    return _ImageIndex(stamps=s, log_ns=lg, dup=dup, frame_ids=[frames[i] for i in order])
