"""A planner-ready 2-D costmap of one label grid (numpy only, ROS-free): the node's ``~/costmap``.

One cell per voxel column of the grid, in the grid's (base) frame, as ``nav_msgs/OccupancyGrid`` wants it:

* **occupied (100)**: a voxel of an obstacle class lies within the height band ``[min_height, max_height]`` above
  the ground (with a confidence >= ``min_confidence``);
* **free (0)**: no obstacle in the band, and the column has free evidence: at least one voxel of the band is free
  space or a non-obstacle class (a surface such as the road) with a confidence >= ``min_confidence``, and no
  obstacle voxel of the band is there with a lower confidence (a doubtful obstacle makes the column unknown, not
  free);
* **unknown (-1)**: everything else. Only *observed* voxels count as evidence: for ground truth, the voxels of
  ``mask_camera``; for predictions, the columns some camera sees (:func:`camera_view_columns`) and, with
  ``occlusion``, that no obstacle column hides from it (:func:`visible_columns`): the network labels every voxel,
  also those no camera sees and those behind a wall, and those labels are guesses.

Heights: the base frame (``base_link``) has its origin on the ground (docs/conventions.md), so "above the ground" is
base-frame ``z``. A voxel is in the band when its vertical extent ``[z_lo, z_hi)`` overlaps the open interval
``(min_height, max_height)``: ``z_hi > min_height and z_lo < max_height``. The default band, 0.2 m to 2.0 m, keeps
the road (and anything lower than a kerb) out and catches what a car would hit, up to its roof and a little more.

Obstacle classes: by default every class that is neither ``free`` nor a surface (``surface`` in the vocabulary:
:data:`occ_ros.core.vocabulary.SURFACE_CLASS_NAMES`; for Occ3D the surfaces are ``driveable_surface``,
``other_flat``, ``sidewalk`` and ``terrain``, so ``vegetation`` and ``manmade`` are obstacles), or a list of class
names.

Layout (nav_msgs/OccupancyGrid, the map_server convention): ``info.width`` = X (cells along the base frame's x),
``info.height`` = Y (along y), ``info.resolution`` = the voxel size (x and y must be equal), ``info.origin`` = the
pose of cell (0, 0)'s outer corner: the grid's lower corner ``(range_min x, range_min y, 0)``, no rotation. The
data is row-major with x fastest: ``data[j * X + i]`` is the column of voxels ``labels[i, j, :]``, i.e. the
(Y, X) array :func:`costmap_cells` returns, flattened in C order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.raycast import traversal_table
from occ_ros.core.vocabulary import Vocabulary

if TYPE_CHECKING:
    from occ_ros.core.rig import CameraRig

__all__ = [
    "AUTO_OBSTACLES",
    "FREE",
    "OCCUPIED",
    "UNKNOWN",
    "CostmapBuilder",
    "CostmapConfig",
    "CostmapInfo",
    "band_layers",
    "camera_view_columns",
    "column_rays",
    "costmap_cells",
    "costmap_info",
    "obstacle_classes",
    "visible_columns",
]

OCCUPIED, FREE, UNKNOWN = 100, 0, -1
"""nav_msgs/OccupancyGrid cell values."""

AUTO_OBSTACLES = "auto"
"""``obstacle_classes: [auto]``: every class that is neither free nor a surface of the vocabulary."""


@dataclass(frozen=True)
class CostmapConfig:
    """How voxels become costmap cells.

    Attributes:
        min_height: lower end of the obstacle band above the ground (base-frame z), metres.
        max_height: upper end of the band, metres (> ``min_height``).
        obstacle_classes: class names that are obstacles, or ``("auto",)``: every class that is neither free nor a
            surface of the vocabulary.
        min_confidence: a voxel is evidence (obstacle or free) only at this confidence or above (0 = every voxel).
        camera_view: predictions: columns outside every camera's view are unknown.
        occlusion: predictions, with ``camera_view``: columns hidden from every camera by an obstacle column of the
            frame's own prediction are unknown (a 2-D ray cast in the ground plane, :func:`visible_columns`).
    """

    min_height: float = 0.2
    max_height: float = 2.0
    obstacle_classes: tuple[str, ...] = (AUTO_OBSTACLES,)
    min_confidence: float = 0.0
    camera_view: bool = True
    occlusion: bool = True

    def __post_init__(self) -> None:
        for name in ("min_height", "max_height", "min_confidence"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"costmap.{name}: expected a finite number, got {value!r}")
        if self.max_height <= self.min_height:
            raise ValueError(
                f"costmap.max_height ({self.max_height} m) must exceed costmap.min_height ({self.min_height} m)"
            )
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"costmap.min_confidence: expected a number in [0, 1], got {self.min_confidence}")
        names = tuple(str(n) for n in self.obstacle_classes)
        if not names:
            raise ValueError(f"costmap.obstacle_classes: expected class names or [{AUTO_OBSTACLES!r}], got []")
        if AUTO_OBSTACLES in names and len(names) > 1:
            raise ValueError(
                f"costmap.obstacle_classes: {AUTO_OBSTACLES!r} stands alone (every non-surface class), "
                f"got {list(names)}"
            )
        object.__setattr__(self, "obstacle_classes", names)


def obstacle_classes(vocabulary: Vocabulary, names: tuple[str, ...] = (AUTO_OBSTACLES,)) -> np.ndarray:
    """(C,) bool lookup table: True for the obstacle classes of ``vocabulary``.

    Args:
        names: class names, or ``("auto",)``: every class that is neither free nor a surface.
    Raises:
        ValueError: a name that is not a class of the vocabulary, or ``free`` (names it and lists the valid ones).
    """
    if tuple(names) == (AUTO_OBSTACLES,):
        table = ~vocabulary.surface_mask()
        table[vocabulary.free_index] = False
        return table
    valid = vocabulary.names[: vocabulary.free_index]
    table = np.zeros(len(vocabulary), dtype=bool)
    for name in names:
        if name not in valid:
            what = "is free space, never an obstacle" if name == vocabulary.names[-1] else "is not a class"
            raise ValueError(
                f"costmap.obstacle_classes: {name!r} {what} of vocabulary {vocabulary.name!r}; valid: "
                f"{valid} (or [{AUTO_OBSTACLES!r}])"
            )
        table[valid.index(name)] = True
    return table


def band_layers(grid: GridSpec, min_height: float, max_height: float) -> np.ndarray:
    """(Z,) bool: the z layers whose extent ``[z_lo, z_hi)`` overlaps ``(min_height, max_height)`` (base frame).

    Raises:
        ValueError: no layer does (the band lies outside the grid's z range; both named).
    """
    nz = grid.shape[2]
    z0, dz = grid.range_min[2], grid.voxel_size[2]
    lo = z0 + np.arange(nz) * dz
    hi = lo + dz
    band = (hi > min_height) & (lo < max_height)
    if not band.any():
        raise ValueError(
            f"the costmap height band ({min_height}, {max_height}) m does not overlap the grid's z range "
            f"[{grid.range_min[2]}, {grid.range_max[2]}] m: set costmap.min_height / costmap.max_height inside it"
        )
    return band


@dataclass(frozen=True)
class CostmapInfo:
    """``nav_msgs/MapMetaData`` of a grid's costmap.

    Attributes:
        resolution: cell edge, metres (the voxel size in x and y).
        width: cells along the base frame's x (X).
        height: cells along y (Y).
        origin: (x, y, z) of cell (0, 0)'s outer corner in the base frame: the grid's lower corner, z = 0 (the
            ground); orientation identity.
    """

    resolution: float
    width: int
    height: int
    origin: tuple[float, float, float]


def costmap_info(grid: GridSpec) -> CostmapInfo:
    """The costmap's metadata for ``grid``.

    Raises:
        ValueError: the voxels are not square in x and y (an OccupancyGrid has one resolution).
    """
    sx, sy, _ = grid.voxel_size
    if abs(sx - sy) > 1e-9 * max(sx, sy):
        raise ValueError(
            f"the costmap needs square voxel columns (one nav_msgs/OccupancyGrid resolution), the grid's voxel_size "
            f"is {grid.voxel_size}"
        )
    nx, ny, _ = grid.shape
    return CostmapInfo(float(sx), int(nx), int(ny), (float(grid.range_min[0]), float(grid.range_min[1]), 0.0))


def _band_slice(band: np.ndarray) -> slice:
    """The (contiguous) layers of a :func:`band_layers` mask as a slice (a view of the labels, no copy)."""
    layers = np.flatnonzero(band)
    return slice(int(layers[0]), int(layers[-1]) + 1)


def _cells(
    labels: np.ndarray,
    confidence: np.ndarray | None,
    obstacle: np.ndarray,
    band: np.ndarray,
    min_confidence: float,
    observed: np.ndarray | None,
) -> np.ndarray:
    """(Y, X) int8 cells (see the module docstring); inputs already checked."""
    layers = _band_slice(band)
    is_obstacle = obstacle[labels[:, :, layers]]  # (X, Y, B)
    counted: np.ndarray | None = None  # (X, Y, B) observed voxels of the band; None: all
    columns: np.ndarray | None = None  # (X, Y) observed columns; None: all
    if observed is not None:
        seen = np.asarray(observed).astype(bool, copy=False)
        if seen.shape == labels.shape:
            counted = seen[:, :, layers]
        elif seen.shape == labels.shape[:2]:
            columns = seen
        else:
            raise ValueError(
                f"observed must be (X, Y, Z) = {labels.shape} or (X, Y) = {labels.shape[:2]}, got {seen.shape}"
            )
    is_free = ~is_obstacle
    doubt: np.ndarray | None = None
    if confidence is not None and min_confidence > 0:
        sure = np.asarray(confidence)[:, :, layers] >= min_confidence
        doubt = is_obstacle & ~sure
        is_obstacle = is_obstacle & sure
        is_free &= sure
    if counted is not None:
        is_obstacle &= counted
        is_free &= counted
        if doubt is not None:
            doubt &= counted
    occupied = is_obstacle.any(axis=2)
    free = is_free.any(axis=2)
    if doubt is not None:
        free &= ~doubt.any(axis=2)
    if columns is not None:
        occupied &= columns
        free &= columns
    cells = np.full(occupied.shape, UNKNOWN, dtype=np.int8)
    cells[free] = FREE
    cells[occupied] = OCCUPIED
    return np.ascontiguousarray(cells.T)  # (Y, X): row j of the map is y index j, x fastest


def _check(labels: np.ndarray, confidence: np.ndarray | None, grid: GridSpec, classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != grid.shape:
        raise ValueError(f"labels have shape {labels.shape}, the grid {grid.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"labels span {int(labels.min())}..{int(labels.max())}; the vocabulary has {classes} classes")
    if confidence is not None and np.shape(confidence) != labels.shape:
        raise ValueError(f"confidence has shape {np.shape(confidence)}, labels {labels.shape}")
    return labels


def costmap_cells(
    labels: np.ndarray,
    grid: GridSpec,
    vocabulary: Vocabulary,
    config: CostmapConfig | None = None,
    confidence: np.ndarray | None = None,
    observed: np.ndarray | None = None,
) -> np.ndarray:
    """The (Y, X) int8 costmap of a label grid: 100 occupied, 0 free, -1 unknown (see the module docstring).

    Args:
        labels: (X, Y, Z) class indices on ``grid`` (``[x, y, z]``), values < ``len(vocabulary)``.
        grid: the labels' grid (base frame, z up from the ground).
        vocabulary: the classes (obstacles: ``config.obstacle_classes``).
        config: band, obstacle classes, confidence threshold (default :class:`CostmapConfig`).
        confidence: (X, Y, Z) confidence of each label, or None (every voxel certain).
        observed: (X, Y, Z) voxels or (X, Y) columns that were observed (True); None = every voxel. Unobserved
            voxels are neither obstacle nor free evidence.
    Returns:
        (Y, X) int8, ``cells[j, i]`` = column ``labels[i, j, :]``; ``cells.reshape(-1)`` is OccupancyGrid's ``data``.
    Raises:
        ValueError: a bad shape or label, an unknown obstacle class, a band outside the grid, non-square columns.
    """
    config = config or CostmapConfig()
    costmap_info(grid)
    labels = _check(labels, confidence, grid, len(vocabulary))
    band = band_layers(grid, config.min_height, config.max_height)
    table = obstacle_classes(vocabulary, config.obstacle_classes)
    return _cells(labels, confidence, table, band, config.min_confidence, observed)


def camera_view_columns(grid: GridSpec, rig: CameraRig, band: np.ndarray) -> np.ndarray:
    """(X, Y) bool: the columns whose band holds a voxel centre that some camera sees (in its image, in front of it).

    The pinhole projection of each camera's ``K`` is used (lens distortion only moves the image edge by a few
    pixels); the camera poses are ``cam_from_ego`` in the grid's base frame. The grid's axes are separable, so the
    optical-frame coordinates are sums of per-axis terms (about 0.1 s for the Occ3D grid and six cameras, once per
    calibration).

    Args:
        band: (Z,) bool layers of the height band (:func:`band_layers`).
    """
    axes = [
        lo + (np.arange(n) + 0.5) * size
        for lo, n, size in zip(grid.range_min, grid.shape, grid.voxel_size, strict=True)
    ]
    xs, ys, zs = axes[0][:, None, None], axes[1][None, :, None], axes[2][band][None, None, :]
    seen = np.zeros(grid.shape[:2], dtype=bool)
    for camera in rig:
        rot, shift, k = camera.cam_from_ego[:3, :3], camera.cam_from_ego[:3, 3], camera.K
        x, y, z = (rot[r, 0] * xs + rot[r, 1] * ys + rot[r, 2] * zs + shift[r] for r in range(3))  # (X, Y, B) each
        front = z > 1e-6
        depth = np.where(front, z, 1.0)
        u = (k[0, 0] * x + k[0, 1] * y) / depth + k[0, 2]
        v = k[1, 1] * y / depth + k[1, 2]
        inside = front & (u >= -0.5) & (u < camera.width - 0.5) & (v >= -0.5) & (v < camera.height - 0.5)
        seen |= inside.any(axis=2)
    return seen


def column_rays(grid: GridSpec, rig: CameraRig) -> np.ndarray:
    """Horizontal rays across each camera's field of view: the columns each one crosses, in order.

    In the ground plane (base-frame x, y), each camera casts rays from its centre through the pixels of its
    principal row (``v = cy``), spaced so that neighbouring rays are at most half a cell apart at the grid's corner
    farthest from the camera; each ray's columns are the exact DDA traversal of the one-layer column grid
    (:func:`occ_ros.core.raycast.traversal_table`). Static for a grid and a calibration: built once per rig, read
    every frame by :func:`visible_columns`.

    Returns:
        (R, S) int64 flat column index ``i * Y + j`` of each crossed column (``i``: x index, ``j``: y index), -1
        after the ray leaves the grid. R sums the rays of every camera; a camera looking straight up or down
        contributes none.
    """
    (x0, y0, _), (x1, y1, _) = grid.range_min, grid.range_max
    columns = GridSpec((x0, y0, 0.0), (x1, y1, 1.0), (grid.voxel_size[0], grid.voxel_size[1], 1.0))
    cell = float(min(grid.voxel_size[:2]))
    corners = np.array([[x0, y0], [x0, y1], [x1, y0], [x1, y1]])
    origins, directions = [], []
    for camera in rig:
        centre = np.asarray(camera.center_ego[:2], dtype=np.float64)
        reach = float(np.linalg.norm(corners - centre, axis=1).max())
        k_inv = np.linalg.inv(camera.K)
        row = np.array([[u, camera.K[1, 2], 1.0] for u in (0.0, camera.width - 1.0)])
        ends = (camera.ego_from_cam[:3, :3] @ (k_inv @ row.T))[:2].T  # (2, 2) the row's edge directions, x/y
        if np.any(np.linalg.norm(ends, axis=1) < 1e-9):
            continue
        angles = np.arctan2(ends[:, 1], ends[:, 0])
        span = (angles[1] - angles[0] + np.pi) % (2 * np.pi) - np.pi  # signed, |span| < pi
        theta = angles[0] + np.linspace(0.0, span, max(2, math.ceil(2 * abs(span) * reach / cell) + 1))
        directions.append(np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], axis=1))
        origins.append(np.broadcast_to([centre[0], centre[1], 0.5], directions[-1].shape))
    if not directions:
        return np.full((0, 1), -1, dtype=np.int64)
    return traversal_table(columns, np.concatenate(origins), np.concatenate(directions))


def visible_columns(rays: np.ndarray, blocking: np.ndarray) -> np.ndarray:
    """(X, Y) bool: the columns some ray of :func:`column_rays` reaches before (or at) its first blocking column.

    Args:
        rays: (R, S) flat column indices, -1 outside the grid.
        blocking: (X, Y) bool columns that stop a ray (they are themselves visible).
    """
    # one extra slot at the end: index -1 (outside) reads False there and writes there
    flat = np.append(np.asarray(blocking, dtype=bool).reshape(-1), False)
    hit = flat[rays]  # (R, S)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), rays.shape[1])  # the first blocking sample of each ray
    reached = np.arange(rays.shape[1]) <= first[:, None]
    seen = np.zeros(flat.size, dtype=bool)
    seen[np.where(reached, rays, -1)] = True
    return seen[:-1].reshape(np.shape(blocking))


class CostmapBuilder:
    """The costmap of one model's grid and vocabulary, frame after frame (the node's and ``occ replay``'s).

    Checks the configuration once (obstacle names against the vocabulary, the band against the grid, square
    columns), and caches the camera-view columns per rig (the pipeline keeps one rig object while the calibration
    does not change).

    Raises:
        ValueError: at construction, what :func:`costmap_cells` would raise for this grid and vocabulary.
    """

    def __init__(self, grid: GridSpec, vocabulary: Vocabulary, config: CostmapConfig | None = None) -> None:
        self.grid = grid
        self.vocabulary = vocabulary
        self.config = config or CostmapConfig()
        self.info = costmap_info(grid)
        self.band = band_layers(grid, self.config.min_height, self.config.max_height)
        self.obstacle = obstacle_classes(vocabulary, self.config.obstacle_classes)
        self._rig: CameraRig | None = None
        self._view: np.ndarray | None = None
        self._rays: np.ndarray | None = None

    def _geometry(self, rig: CameraRig) -> tuple[np.ndarray, np.ndarray]:
        """The camera-view columns and the ground-plane rays of ``rig`` (cached while the rig object is the same)."""
        if self._rig is not rig or self._view is None or self._rays is None:
            self._view = camera_view_columns(self.grid, rig, self.band)
            self._rays = column_rays(self.grid, rig) if self.config.occlusion else np.zeros((0, 0), dtype=np.int64)
            self._rig = rig
        return self._view, self._rays

    def view(self, rig: CameraRig) -> np.ndarray:
        """(X, Y) bool camera-view columns of ``rig`` (cached while the rig object is the same)."""
        return self._geometry(rig)[0]

    def observed(self, labels: np.ndarray, confidence: np.ndarray | None, rig: CameraRig) -> np.ndarray:
        """(X, Y) bool columns of a predicted grid that count as observed: in some camera's view and, with
        ``occlusion``, not hidden from every camera by an obstacle column (one at ``min_confidence`` or above) of
        this prediction."""
        view, rays = self._geometry(rig)
        if not self.config.occlusion:
            return view
        layers = _band_slice(self.band)
        obstacle = self.obstacle[labels[:, :, layers]]
        if confidence is not None and self.config.min_confidence > 0:
            obstacle &= np.asarray(confidence)[:, :, layers] >= self.config.min_confidence
        return view & visible_columns(rays, obstacle.any(axis=2))

    def __call__(
        self, labels: np.ndarray, confidence: np.ndarray | None = None, rig: CameraRig | None = None
    ) -> np.ndarray:
        """(Y, X) int8 cells of a predicted grid; with ``rig`` and ``camera_view``, columns no camera sees (with
        ``occlusion``: or that the prediction's own obstacles hide) are unknown."""
        labels = _check(labels, confidence, self.grid, len(self.vocabulary))
        observed = self.observed(labels, confidence, rig) if rig is not None and self.config.camera_view else None
        return _cells(labels, confidence, self.obstacle, self.band, self.config.min_confidence, observed)
