"""Lifting labelled pixels to 3D and densifying them over time into Occ3D-format voxel labels (EasyOcc).

Data flow for one key frame ``i`` (docs/pseudo_labels.md):

1. :func:`lift_frame` -- every frame ``j`` of the window: each camera's labelled pixels (segmentation
   confidence >= ``min_confidence``) with a metric depth in ``[min_depth, max_depth]`` are
   back-projected into the ego frame of ``j`` and then into the fixed (world) frame with ``j``'s pose.
   Optionally (``consistency_tolerance`` > 0) only pixels whose depth ``consistency_views`` neighbouring frames
   confirm are lifted (:func:`consistent_depth`).
2. :func:`densify` -- points of static classes come from every frame ``|j - i| <= window``, points of
   dynamic classes only from ``|j - i| <= dynamic_window`` (0: the key frame alone), so moving objects
   leave no smears. All are moved into the key frame's ego frame and vote per voxel, each weighted
   by its confidence and by ``1 / (1 + depth / distance_decay)`` (far points are less certain).
3. Free space: every window frame's pixel rays carve the voxels they traverse, stopping a margin
   short of their depth (:func:`occ_ros.core.raycast.carve_counts`); voxels whose vote a dynamic
   class wins count only the rays of the dynamic window. A voxel is occupied when
   - its vote weight reaches ``min_weight``,
   - fewer than ``free_ratio`` rays per point passed through it (grazing rays over the ground
     cross a surface voxel several times per point that ends in it, so the ratio is generous), and
   - points from at least ``min(min_support, ceil(n / 2))`` distinct frames of the ``n`` that may
     vote landed in it (depth noise and flying pixels scatter differently in every frame, surfaces
     do not).
   Its class is the vote's winner; everything else is ``free``.
4. ``mask_camera``: voxels the key frame's camera rays reach, stopping at the first occupied voxel
   (:func:`occ_ros.core.raycast.visibility_mask`): Occ3D's definition, applied to the pseudo-labels.

Frames: ``world_from_ego`` maps ego (base_link) points into the dataset's fixed frame; depth is along
the optical axis; the grid is in the key frame's ego frame, indexed ``[x, y, z]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np

from occ_ros.core.config import Range, check_fields
from occ_ros.core.grid import GridSpec
from occ_ros.core.raycast import carve_counts, visibility_mask
from occ_ros.core.rig import Camera, CameraRig
from occ_ros.core.transforms import invert_transform, transform_points
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.datasets.sample import IGNORE_LABEL, OccupancyLabels


@dataclass(frozen=True)
class LiftingConfig:
    """How labelled pixels become voxel labels (see the module docstring)."""

    window: Annotated[int, Range(ge=0)] = 4
    dynamic_window: Annotated[int, Range(ge=0)] = 0
    min_confidence: Annotated[float, Range(ge=0, le=1)] = 0.5
    min_depth: Annotated[float, Range(ge=0)] = 0.5
    max_depth: Annotated[float, Range(gt=0)] = 60.0
    pixel_stride: Annotated[int, Range(ge=1)] = 1
    ray_stride: Annotated[int, Range(ge=1)] = 2
    carve_stride: Annotated[int, Range(ge=0)] = 0
    distance_decay: Annotated[float, Range(gt=0)] = 30.0
    min_weight: Annotated[float, Range(gt=0)] = 0.1
    free_ratio: Annotated[float, Range(gt=0)] = 20.0
    min_support: Annotated[int, Range(ge=0)] = 4
    carve_margin: Annotated[float, Range(ge=0)] = 1.0
    carve_margin_relative: Annotated[float, Range(ge=0, lt=1)] = 0.05
    depth_spread: Annotated[tuple[float, ...], Range(gt=-1, lt=1)] = ()
    consistency_tolerance: Annotated[float, Range(ge=0, lt=1)] = 0.0
    consistency_views: Annotated[int, Range(ge=1)] = 2
    consistency_neighbours: tuple[int, ...] = (-2, -1, 1, 2)

    def __post_init__(self) -> None:
        check_fields(self)
        spread = tuple(float(o) for o in self.depth_spread)
        if any(not -1.0 < o < 1.0 or o == 0.0 for o in spread) or len(set(spread)) != len(spread):
            raise ValueError(
                "LiftingConfig.depth_spread must be distinct non-zero relative offsets in (-1, 1), "
                f"got {self.depth_spread}"
            )
        object.__setattr__(self, "depth_spread", spread)
        neighbours = tuple(int(o) for o in self.consistency_neighbours)
        if 0 in neighbours or len(set(neighbours)) != len(neighbours):
            raise ValueError(f"LiftingConfig.consistency_neighbours must be distinct non-zero offsets: {neighbours}")
        object.__setattr__(self, "consistency_neighbours", neighbours)
        # the single-field bounds are the declared Ranges (check_fields above); these relate two fields
        if self.ray_stride % self.pixel_stride:
            raise ValueError(
                f"LiftingConfig.ray_stride ({self.ray_stride}) must be a multiple of pixel_stride ({self.pixel_stride})"
            )
        if self.carve_stride % self.pixel_stride:  # 0 (= ray_stride) passes
            raise ValueError(
                f"LiftingConfig.carve_stride ({self.carve_stride}) must be a multiple of pixel_stride "
                f"({self.pixel_stride})"
            )
        if not self.min_depth < self.max_depth:
            raise ValueError(f"LiftingConfig needs 0 <= min_depth < max_depth, got {self.min_depth}, {self.max_depth}")

    @property
    def carve_every(self) -> int:
        """Pixel stride of the free-space carving rays: ``carve_stride``, or ``ray_stride`` when it is 0."""
        return self.carve_stride or self.ray_stride


@dataclass(frozen=True)
class LiftedFrame:
    """The labelled 3D points of one frame, in the fixed (world) frame.

    Attributes:
        points: (N, 3) float64 world-frame points, metres.
        labels: (N,) uint8 classes of the vocabulary.
        weights: (N,) float32 vote weights (confidence x distance falloff).
        cameras: (N,) int16 index of the camera (rig order) that saw each point.
        pixels: (N, 2) int32 (row, column) of each point's pixel.
        world_from_ego: (4, 4) the frame's ego pose.
        primary: (N,) bool, True for a pixel's point at its estimated depth, False for the copies
            ``LiftingConfig.depth_spread`` adds along its ray (None: every point is primary). Only primary
            points end free-space rays.
    """

    points: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    cameras: np.ndarray
    pixels: np.ndarray
    world_from_ego: np.ndarray
    primary: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def primary_mask(self) -> np.ndarray:
        """(N,) bool: the points at their pixel's estimated depth."""
        return np.ones(len(self), dtype=bool) if self.primary is None else self.primary


def backproject(depth: np.ndarray, camera: Camera, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pixels with depth -> ego-frame points.

    Args:
        depth: (H, W) optical-axis depth, metres (the camera's image size).
        camera: the camera (intrinsics, ``cam_from_ego``).
        mask: (H, W) bool pixels to lift (default: all with depth > 0).
    Returns:
        points: (N, 3) float64 ego-frame points.
        pixels: (N,) int64 flat pixel indices (row-major) of those points.
    """
    if depth.shape != (camera.height, camera.width):
        raise ValueError(
            f"camera {camera.name!r}: depth map is {depth.shape[1]}x{depth.shape[0]}, "
            f"the camera is {camera.width}x{camera.height}"
        )
    keep = depth > 0 if mask is None else mask & (depth > 0)
    pixels = np.flatnonzero(keep)
    rows, cols = np.divmod(pixels, camera.width)
    z = depth.reshape(-1)[pixels].astype(np.float64)
    K = camera.K
    x = (cols - K[0, 2] - K[0, 1] * (rows - K[1, 2]) / K[1, 1]) / K[0, 0] * z
    y = (rows - K[1, 2]) / K[1, 1] * z
    points_cam = np.stack([x, y, z], axis=-1)
    return transform_points(camera.ego_from_cam, points_cam), pixels


def consistent_depth(
    depth: np.ndarray,
    camera: Camera,
    world_from_ego: np.ndarray,
    neighbours: Sequence[tuple[np.ndarray, np.ndarray]],
    tolerance: float,
    min_views: int,
) -> np.ndarray:
    """Multi-view depth consistency (the geometric check of MVS fusion): the pixels of a depth map that other
    frames' depth maps of the same camera confirm.

    Every pixel with depth is back-projected, moved into each neighbour frame and projected into the same camera;
    the neighbour *confirms* it when its own depth at that pixel is within ``tolerance`` (relative) of the point's
    depth there. Monocular depth errors differ from view to view, so a surface that two views agree on is more
    likely to be where the teacher says.

    Args:
        depth: (H, W) metric optical-axis depth of the frame, 0 = unknown.
        camera: the camera (its ego pose is the same in every frame).
        world_from_ego: (4, 4) the frame's ego pose.
        neighbours: (depth map (H, W), world_from_ego (4, 4)) of the other frames.
        tolerance: relative depth difference a confirmation allows.
        min_views: confirmations a pixel needs.
    Returns:
        (H, W) float32: ``depth`` where confirmed, 0 elsewhere.
    """
    height, width = depth.shape
    points, pixels = backproject(depth, camera)
    world = transform_points(world_from_ego, points)
    votes = np.zeros(pixels.size, dtype=np.int32)
    for other, pose in neighbours:
        uv, z = camera.project(transform_points(invert_transform(pose), world))
        seen = (z > 0) & camera.in_image(uv)
        cols = np.clip(np.floor(uv[:, 0] + 0.5).astype(np.int64), 0, width - 1)
        rows = np.clip(np.floor(uv[:, 1] + 0.5).astype(np.int64), 0, height - 1)
        theirs = other[rows, cols]
        votes += seen & (theirs > 0) & (np.abs(z - theirs) <= tolerance * theirs)
    out = np.zeros_like(depth, dtype=np.float32)
    keep = pixels[votes >= min_views]
    out.reshape(-1)[keep] = depth.reshape(-1)[keep]
    return out


def stride_mask(shape: tuple[int, int], stride: int) -> np.ndarray:
    """(H, W) bool, True on every ``stride``-th row and column (starting at 0)."""
    mask = np.zeros(shape, dtype=bool)
    mask[::stride, ::stride] = True
    return mask


def lift_frame(
    labels: Mapping[str, np.ndarray],
    confidence: Mapping[str, np.ndarray],
    depth: Mapping[str, np.ndarray],
    rig: CameraRig,
    world_from_ego: np.ndarray,
    config: LiftingConfig,
) -> LiftedFrame:
    """Labelled pixels of one frame -> world-frame points with vote weights.

    With ``config.depth_spread`` (relative offsets ``o``), every pixel also votes at depth ``d * (1 + o)``
    along its ray with the same weight: a monocular teacher's depth is uncertain by some percent, far more than
    a voxel at 20 m, so the vote covers the range the surface is likely in (those copies are not ``primary``).

    Args:
        labels: camera -> (H, W) uint8 classes, ``IGNORE_LABEL`` where unlabelled.
        confidence: camera -> (H, W) float32 label confidence in [0, 1].
        depth: camera -> (H, W) float32 metric optical-axis depth, 0 where unknown.
        rig: the cameras (sizes must match the maps).
        world_from_ego: (4, 4) the frame's ego pose.
        config: confidence / depth limits, pixel stride, distance falloff.
    """
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for cam_index, cam in enumerate(rig):
        lab, conf, dep = labels[cam.name], confidence[cam.name], depth[cam.name]
        keep = (
            (lab != IGNORE_LABEL)
            & (conf >= config.min_confidence)
            & (dep >= config.min_depth)
            & (dep <= config.max_depth)
            & stride_mask(dep.shape, config.pixel_stride)
        )
        for offset in (0.0, *config.depth_spread):
            points, pixels = backproject(dep * (1.0 + offset) if offset else dep, cam, keep)
            d = dep.reshape(-1)[pixels]
            weight = conf.reshape(-1)[pixels] / (1.0 + d / config.distance_decay)
            rows_cols = np.stack(np.divmod(pixels, cam.width), axis=-1).astype(np.int32)
            cams = np.full(pixels.size, cam_index, dtype=np.int16)
            primary = np.full(pixels.size, offset == 0.0)
            parts.append((points, lab.reshape(-1)[pixels], weight, cams, rows_cols, primary))
    points = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 3))
    return LiftedFrame(
        points=transform_points(world_from_ego, points),
        labels=np.concatenate([p[1] for p in parts]).astype(np.uint8),
        weights=np.concatenate([p[2] for p in parts]).astype(np.float32),
        cameras=np.concatenate([p[3] for p in parts]),
        pixels=np.concatenate([p[4] for p in parts]),
        world_from_ego=np.asarray(world_from_ego, dtype=np.float64),
        primary=np.concatenate([p[5] for p in parts]) if config.depth_spread else None,
    )


def vote(
    grid: GridSpec,
    points_ego: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    num_classes: int,
    sources: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Confidence-weighted class votes per voxel (sparse).

    Args:
        points_ego: (N, 3) points in the grid's (ego) frame.
        labels: (N,) classes, < ``num_classes``.
        weights: (N,) vote weights.
        sources: (N,) integer id of the frame each point comes from (default: all one frame).
    Returns:
        voxels: (M,) int64 flat indices (``GridSpec.flat_index``) of the voxels that got points.
        votes: (M, num_classes) float64 summed weights per class.
        counts: (M,) int64 number of points.
        support: (M,) int64 number of distinct frames with points in the voxel.
    """
    idx, inside = grid.points_to_indices(points_ego)
    flat = grid.flat_index(idx[inside])
    # np.unique without its sort: the voxels a point landed in, ascending, through a dense lookup table
    dense = np.bincount(flat, minlength=grid.num_voxels)
    voxels = np.flatnonzero(dense)
    lookup = np.zeros(grid.num_voxels, dtype=np.int64)
    lookup[voxels] = np.arange(voxels.size)
    inverse = lookup[flat]
    keys = inverse * num_classes + labels[inside].astype(np.int64)
    votes = np.bincount(keys, weights=weights[inside], minlength=voxels.size * num_classes)
    counts = dense[voxels]
    if sources is None:
        support = (counts > 0).astype(np.int64)
    else:
        src = sources[inside]
        lo = int(src.min()) if src.size else 0
        span = int(src.max()) - lo + 1 if src.size else 1
        if span * voxels.size <= 1 << 26:  # few distinct frames: a (frames, voxels) table of who landed where
            seen = np.zeros((span, voxels.size), dtype=bool)
            seen[src - lo, inverse] = True
            support = seen.sum(axis=0).astype(np.int64)
        else:
            pairs = np.unique(inverse.astype(np.int64) * (1 << 32) + (src - lo))
            support = np.bincount(pairs >> 32, minlength=voxels.size)
    return voxels, votes.reshape(voxels.size, num_classes), counts, support


def window_frames(
    key_index: int, frames: Mapping[int, LiftedFrame], config: LiftingConfig
) -> Iterator[tuple[int, LiftedFrame, bool, bool]]:
    """The frames that may speak for key frame ``key_index``: (index, frame, static classes ok, dynamic ok).

    Static classes come from ``|j - i| <= window``, dynamic ones from ``|j - i| <= dynamic_window``;
    frames beyond both are skipped.
    """
    for j, frame in frames.items():
        offset = abs(j - key_index)
        static_ok, dynamic_ok = offset <= config.window, offset <= config.dynamic_window
        if static_ok or dynamic_ok:
            yield j, frame, static_ok, dynamic_ok


def window_points(
    key_index: int,
    frames: Mapping[int, LiftedFrame],
    dynamic: np.ndarray,
    config: LiftingConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The window's points that may vote for key frame ``key_index``, in the key frame's ego frame.

    Args:
        frames: frame index -> lifted frame (frames outside the window are ignored; missing ones skipped).
        dynamic: (C,) bool, classes that move (their points only from ``|j - i| <= dynamic_window``).
    Returns:
        points: (N, 3) key-ego-frame points; labels (N,); weights (N,); sources (N,) int64 frame index.
    """
    ego_from_world = invert_transform(frames[key_index].world_from_ego)
    pts, labs, wts, srcs = [], [], [], []
    for j, frame, static_ok, dynamic_ok in window_frames(key_index, frames, config):
        keep = np.ones(len(frame), dtype=bool)
        if not dynamic_ok:
            keep &= ~dynamic[frame.labels]
        if not static_ok:
            keep &= dynamic[frame.labels]
        pts.append(transform_points(ego_from_world, frame.points[keep]))
        labs.append(frame.labels[keep])
        wts.append(frame.weights[keep])
        srcs.append(np.full(int(keep.sum()), j, dtype=np.int64))
    return np.concatenate(pts), np.concatenate(labs), np.concatenate(wts), np.concatenate(srcs)


def camera_rays(rig: CameraRig, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Ego-frame rays through every ``stride``-th pixel of every camera: origins (N, 3), directions (N, 3)."""
    origins, directions = [], []
    for cam in rig:
        dirs, _ = cam.pixel_rays(stride)
        d = dirs.reshape(-1, 3) @ cam.ego_from_cam[:3, :3].T
        directions.append(d)
        origins.append(np.broadcast_to(cam.center_ego, d.shape))
    return np.concatenate(origins), np.concatenate(directions)


def margin(grid: GridSpec, config: LiftingConfig) -> tuple[float, float]:
    """(absolute metres, fraction of the ray length) kept uncarved in front of each depth."""
    return config.carve_margin * max(grid.voxel_size), config.carve_margin_relative


def shorten(origins: np.ndarray, endpoints: np.ndarray, margin: tuple[float, float]) -> np.ndarray:
    """Move each endpoint towards its origin by ``margin[0] + margin[1] * length`` (not past the origin).

    Args:
        origins, endpoints: (N, 3) segment ends, same frame.
    Returns:
        (N, 3) shortened endpoints.
    """
    seg = endpoints - origins
    length = np.linalg.norm(seg, axis=1, keepdims=True)
    keep = np.clip(length - margin[0] - margin[1] * length, 0.0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(length > 0, keep / length, 0.0)
    return origins + seg * scale


def free_space_counts(
    frame: LiftedFrame, ego_from_world: np.ndarray, rig: CameraRig, grid: GridSpec, config: LiftingConfig
) -> np.ndarray:
    """How many of a frame's pixel rays pass freely through each voxel of the key frame's grid.

    Rays run from the camera centre towards each primary lifted point at ``carve_stride``, stopping
    :func:`margin` short of it; the counts are scaled to all lifted pixels (``pixel_stride``).

    Args:
        frame: the lifted frame whose rays carve.
        ego_from_world: (4, 4) the key frame's inverse pose (the grid's frame).
    Returns:
        (X*Y*Z,) float64 ray counts per voxel, flat (``GridSpec.flat_index`` order).
    """
    primary = frame.primary_mask
    keep = primary & np.all(frame.pixels % config.carve_every == 0, axis=1)
    if not keep.any():
        return np.zeros(grid.num_voxels)
    key_from_frame = ego_from_world @ frame.world_from_ego
    centers = transform_points(key_from_frame, np.stack([cam.center_ego for cam in rig]))
    origins = centers[frame.cameras[keep]]
    endpoints = transform_points(ego_from_world, frame.points[keep])
    counts, _ = carve_counts(grid, origins, shorten(origins, endpoints, margin(grid, config)))
    return counts.reshape(-1).astype(np.float64) * (int(primary.sum()) / int(keep.sum()))


def densify(
    key_index: int,
    frames: Mapping[int, LiftedFrame],
    rig: CameraRig,
    grid: GridSpec,
    vocabulary: Vocabulary,
    config: LiftingConfig,
) -> OccupancyLabels:
    """Occ3D-format labels of key frame ``key_index`` from the lifted frames around it.

    Args:
        key_index: the key frame (must be in ``frames``).
        frames: frame index -> :class:`LiftedFrame` for the window around the key frame.
        rig: the cameras (for free-space carving and the camera mask).
        grid: the voxel grid, in the key frame's ego frame.
        vocabulary: classes (``free`` last; ``dynamic`` flags decide aggregation).
        config: window sizes, vote threshold, free-space rule.
    Returns:
        ``semantics`` (free where unoccupied) and ``mask_camera``.
    """
    if key_index not in frames:
        raise KeyError(f"key frame {key_index} is not among the lifted frames {sorted(frames)}")
    num_classes = vocabulary.num_semantic
    points, labels, weights, sources = window_points(key_index, frames, vocabulary.dynamic_mask(), config)
    voxels, votes, counts, support = vote(grid, points, labels, weights, num_classes, sources)

    winner = np.argmax(votes, axis=1)
    dynamic = vocabulary.dynamic_mask()[winner]

    # Free space: each frame's rays carve the key grid; dynamic voxels only trust the nearest frames.
    ego_from_world = invert_transform(frames[key_index].world_from_ego)
    free_static = np.zeros(grid.num_voxels)
    free_dynamic = np.zeros(grid.num_voxels)
    for _, frame, static_ok, dynamic_ok in window_frames(key_index, frames, config):
        free = free_space_counts(frame, ego_from_world, rig, grid, config)
        if static_ok:
            free_static += free
        if dynamic_ok:
            free_dynamic += free
    free_here = np.where(dynamic, free_dynamic[voxels], free_static[voxels])

    total = votes.sum(axis=1)
    span = np.where(dynamic, 2 * config.dynamic_window + 1, 2 * config.window + 1)
    frames_here = np.minimum(span, len(frames))
    needed = np.minimum(config.min_support, (frames_here + 1) // 2)
    occupied = (total >= config.min_weight) & (free_here <= config.free_ratio * counts) & (support >= needed)
    semantics = np.full(grid.num_voxels, vocabulary.free_index, dtype=np.uint8)
    semantics[voxels[occupied]] = winner[occupied].astype(np.uint8)
    semantics = semantics.reshape(grid.shape)

    origins, directions = camera_rays(rig, config.ray_stride)
    mask_camera = visibility_mask(grid, origins, directions, semantics != vocabulary.free_index)
    return OccupancyLabels(semantics=semantics, mask_camera=mask_camera)
