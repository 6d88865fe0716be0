"""Postprocess one predicted grid into what the node publishes (numpy only, ROS-free).

* :func:`occupied_voxels` - the non-free voxels as a :class:`VoxelCloud` (centres, labels, confidence, colours);
* :func:`pack_cloud` / :func:`pointcloud2_fields` - that cloud as ``sensor_msgs/PointCloud2`` bytes and fields;
* :func:`class_cubes` - one coloured cube list per class for a ``visualization_msgs/MarkerArray``, capped in size;
* :func:`dense_grid` / :func:`grid_description` - the full label grid for planners and its (latched) description;
* :class:`RateLimiter` - the publishing rate limit the node and ``occ replay`` share.

Frames: every position here is in the grid's frame, the ego / base frame (``base_link``: x forward, y left, z up,
metres; see :mod:`occ_ros.core.grid`). The message builders of :mod:`.messages` turn these arrays into rclpy or
rosbags messages.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.vocabulary import Vocabulary

if TYPE_CHECKING:
    from occ_ros.inference.model_info import ModelInfo

__all__ = [
    "CLOUD_DTYPE",
    "DENSE_GRID_FORMAT",
    "DENSE_GRID_LAYOUT",
    "POINT_STEP",
    "ClassCubes",
    "RateLimiter",
    "VoxelCloud",
    "check_description",
    "class_cubes",
    "dense_grid",
    "dense_grid_dims",
    "grid_description",
    "occupied_voxels",
    "pack_cloud",
    "pack_rgb",
    "pointcloud2_fields",
]

# sensor_msgs/PointField datatype constants.
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = 1, 2, 3, 4, 5, 6, 7, 8


# ---------------------------------------------------------------------- occupied voxels
@dataclass(frozen=True)
class VoxelCloud:
    """The occupied (non-free) voxels of one frame, M of them.

    Order: C-order of the voxel index ``(i, j, k)`` (the order of ``np.nonzero(labels != free)``: ``i`` slowest,
    ``k`` fastest), the same order as ``labels.reshape(-1)`` restricted to the occupied voxels.

    Attributes:
        points: (M, 3) float32 voxel centres in the grid's (base) frame, metres.
        labels: (M,) uint8 class indices of the vocabulary (never the free index).
        confidence: (M,) float32 confidence of each label (ones when the model gave none).
        rgb: (M,) uint32 packed colour ``0x00RRGGBB`` of each voxel's class.
    """

    points: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    rgb: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint32 ``0x00RRGGBB`` (the PCL / RViz ``rgb`` packing)."""
    c = np.asarray(colors).astype(np.uint32)
    return (c[..., 0] << np.uint32(16)) | (c[..., 1] << np.uint32(8)) | c[..., 2]


@functools.lru_cache(maxsize=8)
def _axis_centres(grid: GridSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per axis, the float32 voxel-centre coordinate of every index (``grid.indices_to_centers`` axis by axis, cast to
    float32: the same values), built once per grid instead of per frame."""
    tables = []
    for axis, n in enumerate(grid.shape):
        index = np.zeros((n, 3), dtype=np.int64)
        index[:, axis] = np.arange(n)
        table = grid.indices_to_centers(index)[:, axis].astype(np.float32)
        table.flags.writeable = False
        tables.append(table)
    return tables[0], tables[1], tables[2]


@functools.lru_cache(maxsize=8)
def _packed_colors(vocabulary: Vocabulary) -> np.ndarray:
    """(C,) uint32 packed ``0x00RRGGBB`` colour of each class (built once per vocabulary)."""
    packed = pack_rgb(vocabulary.colors()).astype(np.uint32)
    packed.flags.writeable = False
    return packed


def _check_labels(labels: np.ndarray, classes: int, grid: GridSpec | None = None, what: str = "") -> np.ndarray:
    """``labels`` as an (X, Y, Z) integer array with values in ``0..classes-1`` (and the grid's shape, if given).

    Args:
        what: how the bound is explained in the error (default ``0..classes-1``).
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be an (X, Y, Z) array, got shape {labels.shape}")
    if grid is not None and labels.shape != grid.shape:
        raise ValueError(f"labels have shape {labels.shape}, the grid {grid.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"labels span {int(labels.min())}..{int(labels.max())}; {what or f'0..{classes - 1}'}")
    return labels


def occupied_voxels(
    labels: np.ndarray,
    confidence: np.ndarray | None,
    grid: GridSpec,
    vocabulary: Vocabulary,
    min_confidence: float | None = None,
) -> VoxelCloud:
    """The non-free voxels of a predicted grid, as centres, labels, confidences and class colours.

    With the default ``min_confidence=None`` these are exactly the voxels whose label is not
    ``vocabulary.free_index``, i.e. the non-free voxels of the labels ``occ predict`` writes.

    Args:
        labels: (X, Y, Z) integer class indices on ``grid`` (``[x, y, z]`` indexing), values < ``len(vocabulary)``.
        confidence: (X, Y, Z) float confidence of each label, or None (then every voxel has confidence 1).
        grid: the labels' grid (base frame).
        vocabulary: class colours; its last class is free space (never published).
        min_confidence: if given, drop voxels with confidence below it (an opt-in filter; off by default).
    Returns:
        The occupied voxels in C-order of their index (see :class:`VoxelCloud`).
    """
    what = f"vocabulary {vocabulary.name!r} has {len(vocabulary)} classes (0..{len(vocabulary) - 1})"
    labels = _check_labels(labels, len(vocabulary), grid, what)
    mask = labels != vocabulary.free_index
    conf_grid: np.ndarray | None = None
    if confidence is not None:
        conf_grid = np.asarray(confidence)
        if conf_grid.shape != labels.shape:
            raise ValueError(f"confidence has shape {conf_grid.shape}, labels {labels.shape}")
        if min_confidence is not None:
            mask &= conf_grid >= float(min_confidence)
    elif min_confidence is not None and float(min_confidence) > 1.0:
        mask[...] = False  # implicit confidence 1 is below the threshold
    flat = np.flatnonzero(mask)  # C-order
    sel_labels = labels.reshape(-1)[flat].astype(np.uint8)
    points = np.empty((flat.shape[0], 3), dtype=np.float32)
    for axis, (index, centres) in enumerate(
        zip(np.unravel_index(flat, labels.shape), _axis_centres(grid), strict=True)
    ):
        points[:, axis] = centres[index]
    if conf_grid is None:
        conf = np.ones(sel_labels.shape[0], dtype=np.float32)
    else:
        conf = conf_grid.reshape(-1)[flat].astype(np.float32)
    rgb = _packed_colors(vocabulary)[sel_labels]
    return VoxelCloud(points=points, labels=sel_labels, confidence=conf, rgb=rgb)


# ---------------------------------------------------------------------- PointCloud2 layout
POINT_STEP = 24
"""Bytes per point of the published PointCloud2 (see :data:`CLOUD_DTYPE`)."""

CLOUD_DTYPE = np.dtype(
    {
        "names": ["x", "y", "z", "rgb", "label", "confidence"],
        "formats": ["<f4", "<f4", "<f4", "<u4", "u1", "<f4"],
        "offsets": [0, 4, 8, 12, 16, 20],
        "itemsize": POINT_STEP,
    }
)
"""One point of the PointCloud2 (little endian): ``x, y, z`` float32 at 0/4/8 (base frame, metres); ``rgb`` at 12,
declared FLOAT32 but holding the uint32 bits ``0x00RRGGBB`` (the PCL / RViz convention); ``label`` uint8 at 16
(vocabulary index); 3 padding bytes (zero); ``confidence`` float32 at 20 (4-byte aligned)."""

_FIELD_CODES = {"x": FLOAT32, "y": FLOAT32, "z": FLOAT32, "rgb": FLOAT32, "label": UINT8, "confidence": FLOAT32}


def pointcloud2_fields(
    dtype: np.dtype = CLOUD_DTYPE, codes: Mapping[str, int] | None = None
) -> list[tuple[str, int, int, int]]:
    """The PointCloud2 fields of a packed point ``dtype`` (default: ``~/voxels``' :data:`CLOUD_DTYPE`) as ``(name,
    offset, sensor_msgs/PointField datatype, count)``, in offset order; ``codes``: each field's datatype."""
    fields = dtype.fields
    assert fields is not None
    codes = _FIELD_CODES if codes is None else codes
    return [(name, int(fields[name][1]), codes[name], 1) for name in dtype.names or ()]


def pack_cloud(cloud: VoxelCloud) -> np.ndarray:
    """(M * POINT_STEP,) uint8 little-endian PointCloud2 ``data`` of a cloud, in the cloud's order (no Python loop)."""
    n = len(cloud)
    packed = np.zeros(n, dtype=CLOUD_DTYPE)  # zeroed: the padding bytes are deterministic
    points = np.asarray(cloud.points, dtype=np.float32).reshape(n, 3)
    packed["x"] = points[:, 0]
    packed["y"] = points[:, 1]
    packed["z"] = points[:, 2]
    packed["rgb"] = np.asarray(cloud.rgb, dtype=np.uint32)
    packed["label"] = np.asarray(cloud.labels, dtype=np.uint8)
    packed["confidence"] = np.asarray(cloud.confidence, dtype=np.float32)
    return packed.view(np.uint8).reshape(-1)


# ---------------------------------------------------------------------- markers
@dataclass(frozen=True)
class ClassCubes:
    """The voxels of one class, for one ``CUBE_LIST`` marker.

    Attributes:
        class_index: the vocabulary index (used as the marker id).
        name: the class name.
        rgba: (r, g, b, a) colour, floats in 0..1 (alpha 1).
        points: (K, 3) float32 voxel centres in the base frame, in the cloud's (C-) order.
    """

    class_index: int
    name: str
    rgba: tuple[float, float, float, float]
    points: np.ndarray


def _quotas(counts: np.ndarray, cap: int) -> np.ndarray:
    """Split ``cap`` over classes in proportion to ``counts`` (largest remainder; ties to the lower class)."""
    total = int(counts.sum())
    exact = counts.astype(np.float64) * cap / total
    quota = np.minimum(np.floor(exact).astype(np.int64), counts)
    spare = cap - int(quota.sum())
    if spare > 0:
        order = np.argsort(-(exact - quota), kind="stable")
        quota[order[:spare]] += 1
    return quota


def class_cubes(cloud: VoxelCloud, vocabulary: Vocabulary, max_voxels: int | None) -> tuple[list[ClassCubes], int]:
    """Group a cloud by class for a MarkerArray, keeping at most ``max_voxels`` cubes in total.

    Over the cap, every class keeps a share of the cap proportional to its voxel count (largest remainder,
    so the kept total is exactly ``max_voxels``), as an evenly strided subset of its voxels
    (``(arange(q) * n) // q``): deterministic, spread over the class. A class whose share rounds to zero is
    left out entirely.

    Args:
        cloud: the occupied voxels (:func:`occupied_voxels`).
        vocabulary: names and colours of the classes.
        max_voxels: cap on the cubes over all classes (None: no cap).
    Returns:
        (entries, left_out): one entry per present class in class-index order, and how many voxels were dropped.
    """
    if max_voxels is not None and max_voxels < 0:
        raise ValueError(f"max_voxels must be >= 0, got {max_voxels}")
    labels = np.asarray(cloud.labels)
    total = int(labels.shape[0])
    if total == 0:
        return [], 0
    order = np.argsort(labels, kind="stable")  # grouped by class, C-order inside each class
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    if max_voxels is None or total <= max_voxels:
        quota = counts.astype(np.int64)
    elif max_voxels == 0:
        return [], total
    else:
        quota = _quotas(counts, max_voxels)
    colors = vocabulary.colors().astype(np.float64) / 255.0
    points = np.asarray(cloud.points, dtype=np.float32)
    entries: list[ClassCubes] = []
    for cls, start, n, q in zip(classes.tolist(), starts.tolist(), counts.tolist(), quota.tolist(), strict=True):
        if q <= 0:
            continue
        members = order[start : start + n]
        if q < n:
            members = members[(np.arange(q, dtype=np.int64) * n) // q]
        r, g, b = (float(v) for v in colors[cls])
        entries.append(
            ClassCubes(
                class_index=int(cls),
                name=vocabulary.classes[cls].name,
                rgba=(r, g, b, 1.0),
                points=points[members],
            )
        )
    kept = sum(int(e.points.shape[0]) for e in entries)
    return entries, total - kept


# ---------------------------------------------------------------------- dense grid
DENSE_GRID_FORMAT = "occ_ros.dense_grid"

DENSE_GRID_LAYOUT = """\
Dense occupancy grid (std_msgs/UInt8MultiArray), one message per frame:
  data: X*Y*Z uint8 class indices of the vocabulary (free space = the last class, free_index), C order:
        flat index = (i*Y + j)*Z + k for voxel [i, j, k] (i along x, j along y, k along z; k fastest).
  layout.dim (std_msgs/MultiArrayLayout convention, outer-most first, stride = product of the sizes from that
        dimension inwards): [("x", X, X*Y*Z), ("y", Y, Y*Z), ("z", Z, Z)], data_offset 0, so
        label(i, j, k) = data[data_offset + dim[1].stride*i + dim[2].stride*j + k].
  frame: the grid's base frame (x forward, y left, z up, metres); the stamp is that of the camera frame, which
        the description / voxel cloud header carries.
  voxel [i, j, k] covers range_min + ([i, j, k] + [0, 0, 0]..[1, 1, 1]) * voxel_size; its centre is
        range_min + ([i, j, k] + 0.5) * voxel_size.
  grid spec (range_min, range_max, voxel_size, shape) and class names / colours: the latched grid description
        topic (std_msgs/String, JSON of occ_ros.pipeline.outputs.grid_description).
"""
"""The documented layout of the dense grid topic (also carried in the grid description's ``layout``)."""


def dense_grid(labels: np.ndarray, grid: GridSpec | None = None) -> np.ndarray:
    """(X, Y, Z) C-contiguous uint8 copy of a label grid, indexed ``[x, y, z]`` (see :data:`DENSE_GRID_LAYOUT`).

    Args:
        labels: (X, Y, Z) integer labels in 0..255.
        grid: if given, the labels' shape must be its shape.
    """
    labels = _check_labels(labels, 256, grid, "outside uint8")
    return np.array(labels, dtype=np.uint8, order="C", copy=True)


def dense_grid_dims(shape: tuple[int, ...]) -> list[tuple[str, int, int]]:
    """``(label, size, stride)`` of the dense grid's MultiArrayDimensions for an (X, Y, Z) shape (ROS convention)."""
    if len(shape) != 3:
        raise ValueError(f"a dense grid is 3-D, got shape {shape}")
    x, y, z = (int(v) for v in shape)
    return [("x", x, x * y * z), ("y", y, y * z), ("z", z, z)]


def grid_description(source: ModelInfo | tuple[GridSpec, Vocabulary], frame_id: str | None = None) -> dict[str, Any]:
    """JSON-able description of the dense grid for a latched topic: grid spec, classes, layout.

    Args:
        source: a ModelInfo (its ``grid`` and ``vocabulary``) or a ``(grid, vocabulary)`` pair.
        frame_id: the base frame the grid is published in (included when given).
    Returns:
        ``{"format", "version", "grid": GridSpec.to_dict(), "dims", "dtype", "order", "free_index",
        "classes": [{"index", "name", "color"}], "vocabulary", "layout"}`` (+ ``"frame_id"``).
    """
    if isinstance(source, tuple):
        grid, vocabulary = source
    else:
        grid, vocabulary = source.grid, source.vocabulary
    if not isinstance(grid, GridSpec) or not isinstance(vocabulary, Vocabulary):
        raise TypeError("grid_description needs a ModelInfo or a (GridSpec, Vocabulary) pair")
    out: dict[str, Any] = {
        "format": DENSE_GRID_FORMAT,
        "version": 1,
        "grid": grid.to_dict(),
        "dims": [{"label": name, "size": size, "stride": stride} for name, size, stride in dense_grid_dims(grid.shape)],
        "dtype": "uint8",
        "order": "C",
        "free_index": vocabulary.free_index,
        "vocabulary": vocabulary.name,
        "classes": [
            {"index": i, "name": c.name, "color": [int(v) for v in c.color]} for i, c in enumerate(vocabulary.classes)
        ],
        "layout": DENSE_GRID_LAYOUT,
    }
    if frame_id is not None:
        out["frame_id"] = str(frame_id)
    return out


def check_description(description: Mapping[str, Any]) -> tuple[GridSpec, list[str]]:
    """The grid and class names of a :func:`grid_description` dict (raises ValueError on another format)."""
    if description.get("format") != DENSE_GRID_FORMAT:
        raise ValueError(f"not a dense grid description (format {DENSE_GRID_FORMAT!r} expected)")
    return GridSpec.from_dict(description["grid"]), [str(c["name"]) for c in description["classes"]]


# ---------------------------------------------------------------------- rate limit
class RateLimiter:
    """At most one event per ``period_s`` seconds (ROS-free; the caller supplies the clock).

    ``ready(now_s)`` is True for the first call, and then once ``period_s`` has passed since the last True;
    a True answer takes the slot (the caller is expected to publish). A clock that jumps backwards (a bag
    looping under sim time) makes the next call ready. ``period_s <= 0`` means no limit.
    """

    def __init__(self, period_s: float) -> None:
        period_s = float(period_s)
        if not math.isfinite(period_s):
            raise ValueError(f"RateLimiter period must be finite, got {period_s}")
        self.period_s = period_s
        self._last: float | None = None

    def ready(self, now_s: float) -> bool:
        """Whether an event may happen at ``now_s`` (seconds, any monotonic-ish clock); True takes the slot."""
        now_s = float(now_s)
        last = self._last
        if last is None or self.period_s <= 0 or now_s < last or now_s - last >= self.period_s:
            self._last = now_s
            return True
        return False

    def reset(self) -> None:
        """Forget the last event: the next call is ready."""
        self._last = None
