"""Exact Occ3D-format ground truth for the synthetic world.

- ``semantics``: every voxel that a surface passes through is occupied; its class is the
  majority class of the surface area inside it (surfaces are sampled evenly, so a vote per
  sample is a vote per area, as Occ3D votes per LiDAR point). Everything else is free (17).
  Like Occ3D, only surfaces are occupied, not the insides of solid objects.
- ``mask_lidar``: voxels a simulated nuScenes LIDAR_TOP observes: every voxel a beam crosses
  up to its return, and the voxel of the return.
- ``mask_camera``: Occ3D's camera visibility: rays from every camera centre through the image,
  marched through the occupancy grid; every voxel a ray crosses is observed, up to and
  including the first occupied one. What lies behind is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.raycast import carve, visibility_mask
from occ_ros.core.rig import CameraRig
from occ_ros.core.transforms import invert_transform, transform_points
from occ_ros.io.labels import OccupancyLabels
from occ_training.synth.render import FrozenScene
from occ_training.synth.world import World

#: nuScenes LIDAR_TOP: mounting in base_link and its 32 beams from +10.67 deg to -30.67 deg.
LIDAR_EGO_POSITION = (0.943713, 0.0, 1.84023)
LIDAR_ELEVATIONS_DEG = np.linspace(10.67, -30.67, 32)
LIDAR_AZIMUTH_STEPS = 1084
LIDAR_MAX_RANGE = 70.0


def semantics_from_surfaces(points_ego: np.ndarray, classes: np.ndarray, grid: GridSpec, free: int) -> np.ndarray:
    """Majority-vote voxelisation of labelled surface samples.

    Args:
        points_ego: (P, 3) samples, ego frame; classes: (P,) their labels (< free).
    Returns:
        (X, Y, Z) uint8 labels, ``free`` where no sample falls; ties go to the lower label.
    """
    idx, inside = grid.points_to_indices(points_ego)
    flat = grid.flat_index(idx[inside])
    cls = classes[inside].astype(np.int64)
    n_cls = free
    votes = np.bincount(flat * n_cls + cls, minlength=grid.num_voxels * n_cls).reshape(grid.num_voxels, n_cls)
    labels = np.argmax(votes, axis=1).astype(np.uint8)
    labels[votes.sum(axis=1) == 0] = free
    return labels.reshape(grid.shape)


def camera_rays_stride(rig: CameraRig, grid: GridSpec, max_range: float) -> int:
    """Pixel stride that keeps adjacent rays closer than half a voxel at ``max_range``."""
    focal = min(min(c.K[0, 0], c.K[1, 1]) for c in rig)
    return max(1, int(focal * min(grid.voxel_size) / (2.0 * max_range)))


def camera_mask(occupied: np.ndarray, grid: GridSpec, rig: CameraRig) -> np.ndarray:
    """Occ3D camera visibility (X, Y, Z) uint8 from an occupancy grid and the rig."""
    max_range = float(np.linalg.norm(np.maximum(np.abs(grid.range_min), np.abs(grid.range_max))))
    stride = camera_rays_stride(rig, grid, max_range)
    mask = np.zeros(grid.shape, bool)
    for cam in rig:
        dirs_cam, _ = cam.pixel_rays(stride)
        dirs = dirs_cam.reshape(-1, 3) @ cam.ego_from_cam[:3, :3].T
        mask |= visibility_mask(grid, cam.center_ego, dirs, occupied)
    return mask.astype(np.uint8)


def lidar_directions() -> np.ndarray:
    """(32 * 1084, 3) unit beam directions in the ego frame (the LiDAR's axes aligned with base_link)."""
    el = np.deg2rad(LIDAR_ELEVATIONS_DEG)[:, None]
    az = np.linspace(-np.pi, np.pi, LIDAR_AZIMUTH_STEPS, endpoint=False)[None, :]
    d = np.stack(np.broadcast_arrays(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el) + 0 * az), -1)
    return d.reshape(-1, 3)


def lidar_scan(scene: FrozenScene, world_from_ego: np.ndarray) -> np.ndarray:
    """Simulated LIDAR_TOP returns (N, 3) in the ego frame (beams with no return within range dropped)."""
    origin_ego = np.asarray(LIDAR_EGO_POSITION)
    dirs_ego = lidar_directions()
    origin = transform_points(world_from_ego, origin_ego)
    _, dist = scene.cast(origin[None, :], dirs_ego @ world_from_ego[:3, :3].T)
    ok = dist < LIDAR_MAX_RANGE
    return origin_ego + dirs_ego[ok] * dist[ok, None]


def lidar_mask(points_ego: np.ndarray, grid: GridSpec) -> np.ndarray:
    """Voxels (X, Y, Z) uint8 crossed by, or holding the end of, LiDAR beams from LIDAR_EGO_POSITION."""
    free, ends = carve(grid, np.asarray(LIDAR_EGO_POSITION), points_ego)
    return (free | ends).astype(np.uint8)


@dataclass
class FrameGroundTruth:
    semantics: np.ndarray
    mask_lidar: np.ndarray
    mask_camera: np.ndarray

    def labels(self, grid: GridSpec) -> OccupancyLabels:
        """The ground truth as label-file contents on ``grid`` (the grid the frame was built on)."""
        return OccupancyLabels(self.semantics, mask_camera=self.mask_camera, mask_lidar=self.mask_lidar, grid=grid)


def surface_spacing(grid: GridSpec) -> float:
    """Surface sample spacing: a quarter of the smallest voxel edge."""
    return min(grid.voxel_size) / 4.0


def frame_ground_truth(
    world: World, scene: FrozenScene, t: float, grid: GridSpec, rig: CameraRig, free: int
) -> FrameGroundTruth:
    """Occ3D labels and masks of the frame at time t (the scene must be ``freeze(world, t)``)."""
    world_from_ego = world.ego.pose(t)
    ego_from_world = invert_transform(world_from_ego)
    spacing = surface_spacing(grid)
    static_pts, static_cls = world.static_samples(spacing)
    # crop the static samples to a box around the ego before the full transform
    reach = float(np.linalg.norm(np.maximum(np.abs(grid.range_min), np.abs(grid.range_max))[:2])) + 1.0
    near = np.all(np.abs(static_pts[:, :2] - world_from_ego[:2, 3]) < reach, axis=1)
    moving_pts, moving_cls = world.moving_samples(spacing, t)
    pts = transform_points(ego_from_world, np.concatenate([static_pts[near], moving_pts]))
    cls = np.concatenate([static_cls[near], moving_cls])
    semantics = semantics_from_surfaces(pts, cls, grid, free)
    occupied = semantics != free
    return FrameGroundTruth(
        semantics=semantics,
        mask_lidar=lidar_mask(lidar_scan(scene, world_from_ego), grid),
        mask_camera=camera_mask(occupied, grid, rig),
    )
