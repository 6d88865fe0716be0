"""Output message builders for rclpy (the node) or rosbags (``occ replay``, tests) message classes.

Both libraries construct a message with keyword arguments named like its fields, so one builder serves both;
a :class:`MessageTypes` holds the classes and the two differences:

* byte arrays (``uint8[]``: ``PointCloud2.data``, ``UInt8MultiArray.data``): rosbags wants a uint8 numpy array,
  rclpy takes an ``array.array('B')`` without a per-element check (:func:`rclpy_byte_array`); the same for the
  ``int8[]`` of ``OccupancyGrid.data`` (``array.array('b')``, :func:`rclpy_int8_array`);
* rosbags' dataclasses have no field defaults, so a builder's unset fields (e.g. ``Marker.texture``) are
  filled from the type store's field definitions (``MessageTypes.complete``); rclpy messages default them.

rclpy message classes check field types strictly (``float`` not ``np.float32``, ``int`` not ``np.int64``), so the
builders pass plain Python scalars.

The node builds its types from the imported rclpy message modules::

    import builtin_interfaces.msg, geometry_msgs.msg, nav_msgs.msg, sensor_msgs.msg, std_msgs.msg
    import visualization_msgs.msg

    def rclpy_message_types() -> MessageTypes:
        return message_types_from_modules(
            sensor_msgs.msg, std_msgs.msg, visualization_msgs.msg, geometry_msgs.msg, builtin_interfaces.msg,
            nav_msgs_msg=nav_msgs.msg,
        )  # byte_array defaults to rclpy_byte_array

and replay / tests use :func:`rosbags_message_types`.
"""

from __future__ import annotations

import array
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from occ_ros.pipeline.costmap import CostmapInfo
from occ_ros.pipeline.outputs import (
    POINT_STEP,
    ClassCubes,
    VoxelCloud,
    dense_grid,
    dense_grid_dims,
    pack_cloud,
    pointcloud2_fields,
)
from occ_ros.pipeline.query import QUERY_POINT_STEP, QueryCloud, pack_query_cloud, query_pointcloud2_fields

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

__all__ = [
    "MARKER_ADD",
    "MARKER_CUBE_LIST",
    "MARKER_DELETEALL",
    "MessageTypes",
    "costmap_msg",
    "dense_grid_msg",
    "float64_msg",
    "grid_description_msg",
    "marker_array_msg",
    "message_types_from_modules",
    "numpy_byte_array",
    "numpy_int8_array",
    "pointcloud2_msg",
    "query_pointcloud2_msg",
    "rclpy_byte_array",
    "rclpy_int8_array",
    "rosbags_message_types",
]

# visualization_msgs/Marker constants.
MARKER_CUBE_LIST = 6
MARKER_ADD = 0
MARKER_DELETEALL = 3

_NS_PER_S = 1_000_000_000
_INT32_MAX = 2**31 - 1


def rclpy_byte_array(data: np.ndarray) -> array.array:
    """``array.array('B')`` of a uint8 array's bytes: rclpy stores it as is (a list would be checked per element)."""
    return array.array("B", np.ascontiguousarray(data, dtype=np.uint8).tobytes())


def numpy_byte_array(data: np.ndarray) -> np.ndarray:
    """1-D contiguous uint8 numpy array (what rosbags serialises ``uint8[]`` from)."""
    return np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)


def rclpy_int8_array(data: np.ndarray) -> array.array:
    """``array.array('b')`` of an int8 array (an rclpy ``int8[]`` field, e.g. ``OccupancyGrid.data``)."""
    return array.array("b", np.ascontiguousarray(data, dtype=np.int8).tobytes())


def numpy_int8_array(data: np.ndarray) -> np.ndarray:
    """1-D contiguous int8 numpy array (what rosbags serialises ``int8[]`` from)."""
    return np.ascontiguousarray(data, dtype=np.int8).reshape(-1)


@dataclass(frozen=True)
class MessageTypes:
    """The message classes the builders instantiate (rclpy or rosbags), and how to pass byte arrays.

    Attributes:
        Header .. Duration: the classes of ``std_msgs/Header``, ``builtin_interfaces/Time``,
            ``sensor_msgs/PointCloud2`` / ``PointField``, ``visualization_msgs/Marker`` / ``MarkerArray``,
            ``std_msgs/UInt8MultiArray`` / ``MultiArrayLayout`` / ``MultiArrayDimension`` / ``String``,
            ``geometry_msgs/Point`` / ``Pose`` / ``Quaternion`` / ``Vector3``, ``std_msgs/ColorRGBA``,
            ``builtin_interfaces/Duration`` and ``std_msgs/Float64``.
        byte_array: uint8 numpy array -> the value of a ``uint8[]`` field.
        complete: ``(class, fields) -> all fields`` for libraries without field defaults (rosbags); None: the
            classes default unset fields themselves (rclpy).
        OccupancyGrid, MapMetaData: ``nav_msgs/OccupancyGrid`` / ``MapMetaData`` (the costmap; None: not
            available, and the costmap cannot be built).
        int8_array: int8 numpy array -> the value of an ``int8[]`` field.
    """

    Header: Any
    Time: Any
    PointCloud2: Any
    PointField: Any
    Marker: Any
    MarkerArray: Any
    UInt8MultiArray: Any
    MultiArrayLayout: Any
    MultiArrayDimension: Any
    String: Any
    Point: Any
    Pose: Any
    Quaternion: Any
    Vector3: Any
    ColorRGBA: Any
    Duration: Any
    Float64: Any
    byte_array: Callable[[np.ndarray], Any]
    complete: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None
    # --- the costmap (nav_msgs)
    OccupancyGrid: Any = None
    MapMetaData: Any = None
    int8_array: Callable[[np.ndarray], Any] = rclpy_int8_array

    def new(self, cls: Any, **fields: Any) -> Any:
        """Instantiate ``cls`` with ``fields`` (completed with defaults where the library needs them)."""
        if self.complete is not None:
            fields = self.complete(cls, fields)
        return cls(**fields)


def message_types_from_modules(
    sensor_msgs_msg: Any,
    std_msgs_msg: Any,
    visualization_msgs_msg: Any,
    geometry_msgs_msg: Any,
    builtin_interfaces_msg: Any,
    byte_array: Callable[[np.ndarray], Any] = rclpy_byte_array,
    *,
    nav_msgs_msg: Any = None,
    int8_array: Callable[[np.ndarray], Any] = rclpy_int8_array,
) -> MessageTypes:
    """MessageTypes from the ``<package>.msg`` modules of rclpy (or any namespace holding the classes).

    Args:
        nav_msgs_msg: ``nav_msgs.msg`` (OccupancyGrid, MapMetaData for the costmap); None: no costmap types.
    """
    return MessageTypes(
        Header=std_msgs_msg.Header,
        Time=builtin_interfaces_msg.Time,
        PointCloud2=sensor_msgs_msg.PointCloud2,
        PointField=sensor_msgs_msg.PointField,
        Marker=visualization_msgs_msg.Marker,
        MarkerArray=visualization_msgs_msg.MarkerArray,
        UInt8MultiArray=std_msgs_msg.UInt8MultiArray,
        MultiArrayLayout=std_msgs_msg.MultiArrayLayout,
        MultiArrayDimension=std_msgs_msg.MultiArrayDimension,
        String=std_msgs_msg.String,
        Point=geometry_msgs_msg.Point,
        Pose=geometry_msgs_msg.Pose,
        Quaternion=geometry_msgs_msg.Quaternion,
        Vector3=geometry_msgs_msg.Vector3,
        ColorRGBA=std_msgs_msg.ColorRGBA,
        Duration=builtin_interfaces_msg.Duration,
        Float64=std_msgs_msg.Float64,
        byte_array=byte_array,
        OccupancyGrid=getattr(nav_msgs_msg, "OccupancyGrid", None),
        MapMetaData=getattr(nav_msgs_msg, "MapMetaData", None),
        int8_array=int8_array,
    )


# ---------------------------------------------------------------------- rosbags
_NUMERIC = {
    "bool": np.bool_,
    "byte": np.uint8,
    "octet": np.uint8,
    "char": np.uint8,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "float32": np.float32,
    "float64": np.float64,
}


class _RosbagsDefaults:
    """Zero values for the fields of rosbags message classes, from a type store's field definitions."""

    def __init__(self, store: Typestore) -> None:
        from rosbags.interfaces import Nodetype

        self._store = store
        self._nodetype = Nodetype

    def _base(self, name: str) -> Any:
        if name in ("string", "wstring"):
            return ""
        if name == "bool":
            return False
        if name in ("float32", "float64"):
            return 0.0
        if name in _NUMERIC:
            return 0
        raise ValueError(f"no default for ROS base type {name!r}")

    def _value(self, desc: tuple[Any, Any]) -> Any:
        kind, rest = desc
        nt = self._nodetype
        if kind == nt.BASE:
            return self._base(rest[0])
        if kind == nt.NAME:
            return self.message(rest)
        if kind in (nt.SEQUENCE, nt.ARRAY):
            (sub_kind, sub_rest), length = rest
            length = int(length) if kind == nt.ARRAY else 0
            if sub_kind == nt.BASE and sub_rest[0] in _NUMERIC:
                return np.zeros(length, dtype=_NUMERIC[sub_rest[0]])
            return [self._value((sub_kind, sub_rest)) for _ in range(length)]
        raise ValueError(f"no default for ROS field type {desc!r}")

    def message(self, msgtype: str) -> Any:
        """A message of ``msgtype`` with every field zero / empty."""
        _, fields = self._store.fielddefs[msgtype]
        return self._store.types[msgtype](**{name: self._value(desc) for name, desc in fields})

    def __call__(self, cls: Any, fields: dict[str, Any]) -> dict[str, Any]:
        msgtype = getattr(cls, "__msgtype__", None)
        if msgtype is None or msgtype not in self._store.fielddefs:
            return fields
        _, defs = self._store.fielddefs[msgtype]
        if all(name in fields for name, _ in defs):
            return fields
        full = dict(fields)
        for name, desc in defs:
            if name not in full:
                full[name] = self._value(desc)
        return full


def rosbags_message_types(typestore: Typestore | None = None) -> MessageTypes:
    """MessageTypes of rosbags' classes (default store: :func:`occ_ros.io.rosbag.typestore`, ROS 2 Humble)."""
    if typestore is None:
        from occ_ros.io.rosbag import typestore as _default_store

        typestore = _default_store()
    t = typestore.types
    return MessageTypes(
        Header=t["std_msgs/msg/Header"],
        Time=t["builtin_interfaces/msg/Time"],
        PointCloud2=t["sensor_msgs/msg/PointCloud2"],
        PointField=t["sensor_msgs/msg/PointField"],
        Marker=t["visualization_msgs/msg/Marker"],
        MarkerArray=t["visualization_msgs/msg/MarkerArray"],
        UInt8MultiArray=t["std_msgs/msg/UInt8MultiArray"],
        MultiArrayLayout=t["std_msgs/msg/MultiArrayLayout"],
        MultiArrayDimension=t["std_msgs/msg/MultiArrayDimension"],
        String=t["std_msgs/msg/String"],
        Point=t["geometry_msgs/msg/Point"],
        Pose=t["geometry_msgs/msg/Pose"],
        Quaternion=t["geometry_msgs/msg/Quaternion"],
        Vector3=t["geometry_msgs/msg/Vector3"],
        ColorRGBA=t["std_msgs/msg/ColorRGBA"],
        Duration=t["builtin_interfaces/msg/Duration"],
        Float64=t["std_msgs/msg/Float64"],
        byte_array=numpy_byte_array,
        complete=_RosbagsDefaults(typestore),
        OccupancyGrid=t["nav_msgs/msg/OccupancyGrid"],
        MapMetaData=t["nav_msgs/msg/MapMetaData"],
        int8_array=numpy_int8_array,
    )


# ---------------------------------------------------------------------- builders
def _header(types: MessageTypes, stamp_ns: int, frame_id: str) -> Any:
    ns = int(stamp_ns)
    if ns < 0 or ns // _NS_PER_S > _INT32_MAX:
        raise ValueError(f"stamp {ns} ns is outside builtin_interfaces/Time's range [0, {_INT32_MAX}] s")
    sec, nanosec = divmod(ns, _NS_PER_S)
    return types.new(types.Header, stamp=types.new(types.Time, sec=sec, nanosec=nanosec), frame_id=str(frame_id))


def _duration(types: MessageTypes, seconds: float) -> Any:
    seconds = float(seconds)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"marker lifetime must be a finite number of seconds >= 0, got {seconds}")
    sec, nanosec = divmod(int(round(seconds * _NS_PER_S)), _NS_PER_S)
    return types.new(types.Duration, sec=sec, nanosec=nanosec)


def _unordered_cloud(
    types: MessageTypes,
    fields: list[tuple[str, int, int, int]],
    step: int,
    data: np.ndarray,
    n: int,
    stamp_ns: int,
    frame_id: str,
) -> Any:
    """``sensor_msgs/PointCloud2`` of ``n`` packed points: height 1, little endian, is_dense (no NaN)."""
    return types.new(
        types.PointCloud2,
        header=_header(types, stamp_ns, frame_id),
        height=1,
        width=n,
        fields=[
            types.new(types.PointField, name=name, offset=offset, datatype=datatype, count=count)
            for name, offset, datatype, count in fields
        ],
        is_bigendian=False,
        point_step=step,
        row_step=step * n,
        data=types.byte_array(data),
        is_dense=True,
    )


def pointcloud2_msg(types: MessageTypes, cloud: VoxelCloud, stamp_ns: int, frame_id: str) -> Any:
    """``sensor_msgs/PointCloud2`` of the occupied voxels (layout: :data:`~.outputs.CLOUD_DTYPE`).

    Unordered cloud: height 1, width M, point_step 24, row_step 24 * M, little endian, is_dense (no NaN).
    ``frame_id`` is the grid's base frame; ``stamp_ns`` the camera frame's stamp.
    """
    return _unordered_cloud(types, pointcloud2_fields(), POINT_STEP, pack_cloud(cloud), len(cloud), stamp_ns, frame_id)


def query_pointcloud2_msg(types: MessageTypes, cloud: QueryCloud, stamp_ns: int, frame_id: str) -> Any:
    """``sensor_msgs/PointCloud2`` of the voxels matching a query (``~/query/voxels``; layout:
    :data:`~.query.QUERY_CLOUD_DTYPE`: ``x, y, z, score`` float32, ``label`` uint8).

    Unordered cloud: height 1, width M, point_step 20, row_step 20 * M, little endian, is_dense.
    """
    return _unordered_cloud(
        types, query_pointcloud2_fields(), QUERY_POINT_STEP, pack_query_cloud(cloud), len(cloud), stamp_ns, frame_id
    )


def marker_array_msg(
    types: MessageTypes,
    cubes: Sequence[ClassCubes],
    stamp_ns: int,
    frame_id: str,
    voxel_size: Sequence[float],
    namespace: str = "occupancy",
    lifetime_s: float = 0.0,
) -> Any:
    """``visualization_msgs/MarkerArray``: a DELETEALL marker, then one coloured CUBE_LIST per class.

    Each cube list has ``id`` = class index, ``ns`` = ``namespace``, identity pose in ``frame_id`` (points are
    base-frame voxel centres), ``scale`` = voxel size, ``color`` = class colour. Building the ``Point`` objects is
    the one per-point Python loop of the outputs; :func:`~.outputs.class_cubes` caps its length.

    Args:
        cubes: from :func:`~.outputs.class_cubes`.
        voxel_size: (x, y, z) edge lengths, metres.
        lifetime_s: marker lifetime (0: until replaced / deleted).
    """
    if len(voxel_size) != 3:
        raise ValueError(f"voxel_size must be 3 numbers, got {voxel_size!r}")
    header = _header(types, stamp_ns, frame_id)
    lifetime = _duration(types, lifetime_s)
    markers = [
        types.new(
            types.Marker,
            header=header,
            ns=str(namespace),
            id=0,
            type=MARKER_CUBE_LIST,
            action=MARKER_DELETEALL,
            pose=_identity_pose(types),
            scale=types.new(types.Vector3, x=1.0, y=1.0, z=1.0),
            color=types.new(types.ColorRGBA, r=0.0, g=0.0, b=0.0, a=0.0),
            lifetime=lifetime,
            frame_locked=False,
            points=[],
        )
    ]
    sx, sy, sz = (float(v) for v in voxel_size)
    Point = types.Point
    for entry in cubes:
        coords = np.asarray(entry.points, dtype=np.float64).reshape(-1, 3).tolist()
        r, g, b, a = (float(v) for v in entry.rgba)
        markers.append(
            types.new(
                types.Marker,
                header=header,
                ns=str(namespace),
                id=int(entry.class_index),
                type=MARKER_CUBE_LIST,
                action=MARKER_ADD,
                pose=_identity_pose(types),
                scale=types.new(types.Vector3, x=sx, y=sy, z=sz),
                color=types.new(types.ColorRGBA, r=r, g=g, b=b, a=a),
                lifetime=lifetime,
                frame_locked=False,
                points=[Point(x=x, y=y, z=z) for x, y, z in coords],  # bounded by class_cubes' cap
            )
        )
    return types.new(types.MarkerArray, markers=markers)


def _identity_pose(types: MessageTypes) -> Any:
    return types.new(
        types.Pose,
        position=types.new(types.Point, x=0.0, y=0.0, z=0.0),
        orientation=types.new(types.Quaternion, x=0.0, y=0.0, z=0.0, w=1.0),
    )


def dense_grid_msg(types: MessageTypes, labels: np.ndarray) -> Any:
    """``std_msgs/UInt8MultiArray`` of an (X, Y, Z) label grid (layout: :data:`~.outputs.DENSE_GRID_LAYOUT`).

    ``layout.dim`` = [("x", X, X*Y*Z), ("y", Y, Y*Z), ("z", Z, Z)] (std_msgs' stride convention), data_offset 0,
    ``data`` the C-order labels.
    """
    grid = dense_grid(labels)
    dims = [
        types.new(types.MultiArrayDimension, label=label, size=size, stride=stride)
        for label, size, stride in dense_grid_dims(grid.shape)
    ]
    return types.new(
        types.UInt8MultiArray,
        layout=types.new(types.MultiArrayLayout, dim=dims, data_offset=0),
        data=types.byte_array(grid.reshape(-1)),
    )


def grid_description_msg(types: MessageTypes, description: Mapping[str, Any]) -> Any:
    """``std_msgs/String`` holding the JSON (sorted keys) of :func:`~.outputs.grid_description`."""
    return types.new(types.String, data=json.dumps(dict(description), sort_keys=True))


def costmap_msg(types: MessageTypes, cells: np.ndarray, info: CostmapInfo, stamp_ns: int, frame_id: str) -> Any:
    """``nav_msgs/OccupancyGrid`` of a costmap (layout: :mod:`~.costmap`).

    Args:
        cells: (height, width) int8 = (Y, X) from :func:`~.costmap.costmap_cells`: 100 occupied, 0 free, -1 unknown;
            ``data`` is its C-order flattening (x fastest).
        info: resolution, size and origin (:func:`~.costmap.costmap_info`); the origin has no rotation.
        stamp_ns: the camera frame's stamp (also ``info.map_load_time``).
        frame_id: the grid's base frame.
    """
    if types.OccupancyGrid is None or types.MapMetaData is None:
        raise ValueError("these MessageTypes have no nav_msgs classes (OccupancyGrid, MapMetaData)")
    cells = np.asarray(cells)
    if cells.shape != (info.height, info.width):
        raise ValueError(f"costmap cells have shape {cells.shape}, the map (height, width) {(info.height, info.width)}")
    header = _header(types, stamp_ns, frame_id)
    x, y, z = (float(v) for v in info.origin)
    origin = types.new(
        types.Pose,
        position=types.new(types.Point, x=x, y=y, z=z),
        orientation=types.new(types.Quaternion, x=0.0, y=0.0, z=0.0, w=1.0),
    )
    meta = types.new(
        types.MapMetaData,
        map_load_time=header.stamp,
        resolution=float(info.resolution),
        width=int(info.width),
        height=int(info.height),
        origin=origin,
    )
    return types.new(types.OccupancyGrid, header=header, info=meta, data=types.int8_array(cells.reshape(-1)))


def float64_msg(types: MessageTypes, value: float) -> Any:
    """``std_msgs/Float64`` of ``value`` (a processing time or latency in ms: ``~/debug/...``)."""
    return types.new(types.Float64, data=float(value))
