"""ROS-free rosbag2 I/O: build real ROS 2 messages, write and read bags with ``rosbags``.

Messages are the ``rosbags`` dataclasses of the ROS 2 Humble type store (field names and
types identical to rclpy's), serialised as CDR. Bags are rosbag2 directories (``metadata.yaml``
plus one ``.mcap`` or ``.db3`` file) that ``ros2 bag play`` and ``ros2 bag info`` accept.

Frames and stamps: ``stamp_ns`` is always integer nanoseconds since the epoch. Transforms follow
``occ_ros.core.transforms``: ``parent_from_child`` maps points in the child frame into the parent
frame, which is what tf2 calls "the child's pose in the parent" (``header.frame_id`` = parent).

Image decoding: the ``rosbags-image`` package (Ternaris, ~10 kB, pure Python over OpenCV) was
considered and not used: it reads ``Image.data`` as a dense ``height x width x channels`` array,
ignoring ``step`` (row padding) and never checking the buffer length, and reports problems with
its own exception types or bare ``assert``. The few encodings a camera pipeline sees are a handful
of numpy lines here, with the checks we want (``ValueError`` naming the encoding / the size).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
from rosbags.interfaces import Connection, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.stores import ros2_humble as _humble

from occ_ros.core.tf_buffer import matrix_from_transform
from occ_ros.core.transforms import is_rigid, quaternion_from_transform
from occ_ros.io.images import image_to_rgb

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

    from occ_ros.core.rig import Camera

# Message classes of the Humble store (the same classes typestore().types[...] holds).
Time = _humble.builtin_interfaces__msg__Time
Header = _humble.std_msgs__msg__Header
Image = _humble.sensor_msgs__msg__Image
CompressedImage = _humble.sensor_msgs__msg__CompressedImage
CameraInfo = _humble.sensor_msgs__msg__CameraInfo
RegionOfInterest = _humble.sensor_msgs__msg__RegionOfInterest
Vector3 = _humble.geometry_msgs__msg__Vector3
Quaternion = _humble.geometry_msgs__msg__Quaternion
Transform = _humble.geometry_msgs__msg__Transform
TransformStamped = _humble.geometry_msgs__msg__TransformStamped
TFMessage = _humble.tf2_msgs__msg__TFMessage

__all__ = [
    "BagWriter",
    "CameraInfo",
    "CompressedImage",
    "Image",
    "TFMessage",
    "TransformStamped",
    "camera_info_msg",
    "compressed_image_from_bytes",
    "compressed_image_msg",
    "image_msg",
    "image_to_rgb",
    "matrix_from_transform",
    "ns_from_stamp",
    "read_messages",
    "stamp_from_ns",
    "tf_message",
    "transform_stamped",
    "typestore",
]

_NS_PER_S = 1_000_000_000
_INT32_MAX = 2**31 - 1

# QoS offered by a tf2 StaticTransformBroadcaster as `ros2 bag record` (Humble) stores it: DDS discovery
# reports neither history nor depth, hence UNKNOWN/0; "infinite" times are {2147483647, 4294967295}.
# Same profile as rosbags' own rosbag1->2 converter uses for latched topics.
_INFINITE = QosTime(2147483647, 4294967295)
LATCHED_QOS = Qos(
    QosHistory.UNKNOWN,
    0,
    QosReliability.RELIABLE,
    QosDurability.TRANSIENT_LOCAL,
    _INFINITE,
    _INFINITE,
    QosLiveliness.AUTOMATIC,
    _INFINITE,
    False,
)
"""Offered QoS of a latched topic (``/tf_static``): reliable, transient-local."""

DEFAULT_QOS = LATCHED_QOS._replace(durability=QosDurability.VOLATILE)
"""Offered QoS of an ordinary publisher (rclcpp/rclpy default profile): reliable, volatile."""

_STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


@functools.cache
def typestore() -> Typestore:
    """The (shared, do-not-mutate) ROS 2 Humble type store used for (de)serialisation."""
    return get_typestore(Stores.ROS2_HUMBLE)


# ---------------------------------------------------------------------- stamps / headers
def stamp_from_ns(ns: int) -> Time:
    """builtin_interfaces/Time from integer nanoseconds since the epoch (must fit int32 seconds)."""
    ns = int(ns)
    if ns < 0 or ns // _NS_PER_S > _INT32_MAX:
        raise ValueError(f"stamp {ns} ns is outside builtin_interfaces/Time's range [0, {_INT32_MAX}] s")
    sec, nanosec = divmod(ns, _NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


def ns_from_stamp(stamp: Any) -> int:
    """Integer nanoseconds from a builtin_interfaces/Time (rosbags or rclpy message)."""
    return int(stamp.sec) * _NS_PER_S + int(stamp.nanosec)


def _header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=stamp_from_ns(stamp_ns), frame_id=str(frame_id))


# ---------------------------------------------------------------------- images
def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {rgb.shape} dtype {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"image is empty: shape {rgb.shape}")
    return rgb


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """sensor_msgs/Image, encoding ``rgb8``, from an (H, W, 3) uint8 RGB array (copied).

    ``frame_id`` is the camera's optical frame; ``step`` = 3 * W (no row padding).
    """
    rgb = _check_rgb(rgb)
    height, width = rgb.shape[:2]
    return Image(
        header=_header(stamp_ns, frame_id),
        height=height,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=3 * width,
        data=np.array(rgb, dtype=np.uint8, order="C").reshape(-1),
    )


def compressed_image_msg(
    rgb: np.ndarray, stamp_ns: int, frame_id: str, fmt: str = "jpeg", quality: int = 90
) -> CompressedImage:
    """sensor_msgs/CompressedImage of an (H, W, 3) uint8 RGB array, as image_transport's compressed plugin.

    Args:
        fmt: ``"jpeg"`` or ``"png"``.
        quality: JPEG quality 1..100 (ignored for PNG).
    Returns:
        A message whose ``format`` is ``"rgb8; jpeg compressed bgr8"`` (resp. ``png``): source encoding,
        codec, and the channel order inside the compressed stream (OpenCV writes BGR).
    """
    rgb = _check_rgb(rgb)
    fmt = fmt.lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt == "jpeg":
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
        ext, params = ".jpg", [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    elif fmt == "png":
        ext, params = ".png", []
    else:
        raise ValueError(f"unsupported compressed image format {fmt!r}; use 'jpeg' or 'png'")
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV failed to encode a {rgb.shape} image as {fmt}")
    return compressed_image_from_bytes(buf, stamp_ns, frame_id, fmt)


def compressed_image_from_bytes(
    data: bytes | np.ndarray, stamp_ns: int, frame_id: str, fmt: str = "jpeg"
) -> CompressedImage:
    """sensor_msgs/CompressedImage carrying already-encoded colour image bytes (e.g. a camera's JPEG file as is),
    with the ``format`` image_transport's compressed plugin writes: ``"rgb8; <fmt> compressed bgr8"``."""
    return CompressedImage(
        header=_header(stamp_ns, frame_id),
        format=f"rgb8; {fmt} compressed bgr8",
        data=np.frombuffer(data, dtype=np.uint8),
    )


# ---------------------------------------------------------------------- camera info
def camera_info_msg(camera: Camera, stamp_ns: int) -> CameraInfo:
    """sensor_msgs/CameraInfo of a camera (``header.frame_id`` = its optical frame).

    distortion_model / d = the camera's (a camera without distortion: plumb_bob, 5 zeros), k = K row-major, r = I,
    p = [K | 0] (3x4 row-major: :mod:`occ_ros.core.undistort` rectifies to K), no binning / ROI.
    """
    K = np.asarray(camera.K, dtype=np.float64)
    P = np.zeros((3, 4), dtype=np.float64)
    P[:, :3] = K
    return CameraInfo(
        header=_header(stamp_ns, camera.frame_id),
        height=int(camera.height),
        width=int(camera.width),
        distortion_model=camera.distortion_model or "plumb_bob",
        d=np.array(camera.D, dtype=np.float64) if camera.distortion_model else np.zeros(5, dtype=np.float64),
        k=K.reshape(-1).copy(),
        r=np.eye(3, dtype=np.float64).reshape(-1),
        p=P.reshape(-1),
        binning_x=0,
        binning_y=0,
        roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


# ---------------------------------------------------------------------- tf
def transform_stamped(parent_from_child: np.ndarray, stamp_ns: int, parent: str, child: str) -> TransformStamped:
    """geometry_msgs/TransformStamped of ``child``'s pose in ``parent`` (``p_parent = parent_from_child @ p_child``).

    Args:
        parent_from_child: (4, 4) rigid transform.
    """
    T = np.asarray(parent_from_child, dtype=np.float64)
    if T.shape != (4, 4) or not is_rigid(T):
        raise ValueError(f"transform {parent} <- {child} is not a rigid 4x4 matrix: {T.tolist()}")
    qx, qy, qz, qw = (float(v) for v in quaternion_from_transform(T))
    tx, ty, tz = (float(v) for v in T[:3, 3])
    return TransformStamped(
        header=_header(stamp_ns, parent),
        child_frame_id=str(child),
        transform=Transform(translation=Vector3(x=tx, y=ty, z=tz), rotation=Quaternion(x=qx, y=qy, z=qz, w=qw)),
    )


def tf_message(transforms: Iterable[TransformStamped]) -> TFMessage:
    """tf2_msgs/TFMessage (the type of /tf and /tf_static) holding ``transforms``."""
    return TFMessage(transforms=list(transforms))


# ---------------------------------------------------------------------- bags
class BagWriter:
    """Write a rosbag2 (MCAP by default) with connections added on first use of each topic.

    Usage::

        with BagWriter(out_dir) as bag:
            bag.write("/cam_front/image_raw", image_msg(rgb, t, frame), t)

    Topics in ``latched_topics`` (default ``/tf_static``) are recorded with a transient-local offered QoS,
    as ``ros2 bag record`` stores them, so ``ros2 bag play`` re-publishes them latched.

    ``version`` is the rosbag2 metadata version; rosbags writes 8 or 9 (``Writer.VERSION_LATEST`` = 9).
    The default is 8, deliberately: version 9 stores ``offered_qos_profiles`` as a YAML list with enum
    names, which Humble's and Iron's rosbag2 cannot parse (they read the field as a string of integer
    enums); Jazzy and later read both. Pass ``version=9`` for Jazzy-only consumers.
    """

    def __init__(
        self,
        path: str | Path,
        storage: str = "mcap",
        latched_topics: Sequence[str] = ("/tf_static",),
        version: Literal[8, 9] = 8,
    ) -> None:
        self.path = Path(path)
        if storage not in _STORAGES:
            raise ValueError(f"unknown rosbag2 storage {storage!r}; use one of {sorted(_STORAGES)}")
        if version not in (8, Writer.VERSION_LATEST):
            raise ValueError(f"rosbag2 metadata version must be 8 or {Writer.VERSION_LATEST}, got {version}")
        if self.path.exists():
            raise FileExistsError(f"bag output directory {self.path} already exists; rosbag2 writes only new bags")
        self.storage = storage
        self.version = version
        self.latched_topics = frozenset(latched_topics)
        self._writer: Writer | None = None
        self._connections: dict[str, Connection] = {}

    def open(self) -> BagWriter:
        if self._writer is not None:
            raise RuntimeError(f"bag {self.path} is already open")
        writer = Writer(self.path, version=self.version, storage_plugin=_STORAGES[self.storage])
        writer.open()
        self._writer = writer
        return self

    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Serialise ``msg`` (a rosbags message of the Humble store) on ``topic`` with receive time ``stamp_ns``."""
        if self._writer is None:
            raise RuntimeError(f"bag {self.path} is not open; use BagWriter as a context manager")
        msgtype = getattr(type(msg), "__msgtype__", None)
        if msgtype is None:
            raise TypeError(f"topic {topic}: {type(msg).__name__} is not a rosbags message")
        conn = self._connections.get(topic)
        if conn is None:
            qos = LATCHED_QOS if topic in self.latched_topics else DEFAULT_QOS
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore(), offered_qos_profiles=[qos])
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise TypeError(f"topic {topic} carries {conn.msgtype}; cannot also write a {msgtype}")
        stamp_ns = int(stamp_ns)
        if stamp_ns < 0:
            raise ValueError(f"topic {topic}: negative timestamp {stamp_ns}")
        self._writer.write(conn, stamp_ns, typestore().serialize_cdr(msg, msgtype))

    @property
    def topics(self) -> dict[str, str]:
        """Topic -> message type of the connections written so far."""
        return {topic: conn.msgtype for topic, conn in self._connections.items()}

    def close(self) -> None:
        """Finish the storage file and write ``metadata.yaml``."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def __enter__(self) -> BagWriter:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.__exit__(exc_type, exc_val, exc_tb)  # closes, or aborts on error


def read_messages(bag_path: str | Path, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, Any]]:
    """Yield ``(topic, msgtype, stamp_ns, message)`` in receive-time order from a rosbag2 directory.

    ``stamp_ns`` is the bag's record (log) time. ``topics`` restricts to those topics; names absent from the
    bag are ignored. Messages of types outside the Humble store raise ValueError (filter them out by topic).
    """
    store = typestore()
    wanted = None if topics is None else set(topics)
    with Reader(bag_path) as reader:
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not connections:  # Reader.messages(()) would mean "all connections"
            return
        for conn in connections:
            if conn.msgtype not in store.types:
                raise ValueError(
                    f"{bag_path}: topic {conn.topic} has type {conn.msgtype}, unknown to the ROS 2 Humble type store"
                )
        for conn, stamp_ns, raw in reader.messages(connections=connections):
            yield conn.topic, conn.msgtype, int(stamp_ns), store.deserialize_cdr(raw, conn.msgtype)
