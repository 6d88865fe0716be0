"""Per-pixel voxel hits of a pinhole camera, the face each ray enters by, and face shading.

Shared by :mod:`occ_ros.viz.render` (a virtual orbit camera) and :mod:`occ_ros.viz.overlay`
(the rig's real cameras). Rays are traversed with :func:`occ_ros.core.raycast.first_hit`, in the
grid's frame (the ego frame, ``base_link``: x forward, y left, z up), metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.raycast import RangeLike, first_hit
from occ_ros.core.rig import Camera
from occ_ros.core.vocabulary import Vocabulary

#: Face codes: 2 * axis + (0 for the lower face, 1 for the upper face); -1 = no face (no hit, or
#: the ray starts inside the voxel).
FACE_NAMES = ("-x", "+x", "-y", "+y", "-z (bottom)", "+z (top)")
#: Brightness factor per face code (top faces brightest, bottom faces darkest).
FACE_SHADE = np.array([0.8, 0.8, 0.65, 0.65, 0.5, 1.0])
#: Factor applied to pixels on a boundary between two different hit voxels (or a voxel and nothing).
EDGE_SHADE = 0.6


@dataclass(frozen=True)
class PixelHits:
    """First occupied voxel along each pixel ray of a camera (on a stride grid of pixels).

    Attributes:
        origin: (3,) ray origin (the camera's optical centre), ego frame, metres.
        directions: (H', W', 3) unit ray directions, ego frame; row r / column c is pixel (c * stride, r * stride).
        distance: (H', W') metres from the origin to where the ray enters the hit voxel; inf where no hit.
        voxel: (H', W', 3) int64 [i, j, k] of the hit voxel; -1 where no hit.
        hit: (H', W') bool.
        face: (H', W') int8 face code (see :data:`FACE_NAMES`) of the face the ray entered by; -1 where none.
    """

    origin: np.ndarray
    directions: np.ndarray
    distance: np.ndarray
    voxel: np.ndarray
    hit: np.ndarray
    face: np.ndarray

    def flat_voxel(self, grid: GridSpec) -> np.ndarray:
        """(H', W') int64 row-major flat index of the hit voxel; -1 where no hit."""
        return np.where(self.hit, grid.flat_index(np.maximum(self.voxel, 0)), -1)


def occupied_voxels(semantics: np.ndarray, grid: GridSpec, vocab: Vocabulary, mask: np.ndarray | None) -> np.ndarray:
    """(X, Y, Z) bool: voxels with a vocabulary label other than free (and inside ``mask`` if given).

    Labels outside the vocabulary (e.g. 255 = ignore) count as empty.
    """
    sem = np.asarray(semantics)
    if sem.shape != grid.shape:
        raise ValueError(f"semantics have shape {sem.shape}, but the grid is {grid.shape}")
    occupied = (sem != vocab.free_index) & (sem < len(vocab))
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != grid.shape:
            raise ValueError(f"mask has shape {m.shape}, but the grid is {grid.shape}")
        occupied &= m.astype(bool)
    return occupied


def cast_pixels(
    camera: Camera, grid: GridSpec, occupied: np.ndarray, stride: int = 1, max_range: RangeLike = None
) -> PixelHits:
    """Cast the camera's pixel rays (``Camera.pixel_rays(stride)``) through the grid.

    Args:
        camera: the camera; its ``cam_from_ego`` places it in the grid's (ego) frame.
        grid: the voxel grid.
        occupied: (X, Y, Z) bool occupancy.
        stride: cast one ray every ``stride`` pixels in both directions (pixel centres 0, s, 2s, ...).
        max_range: voxels entered at this distance (metres along the ray) or further are not hit.
    """
    if int(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    dirs_cam, _ = camera.pixel_rays(int(stride))
    ego_from_cam = camera.ego_from_cam
    dirs = dirs_cam @ ego_from_cam[:3, :3].T
    origin = ego_from_cam[:3, 3].copy()
    shape = dirs.shape[:2]
    flat_dirs = dirs.reshape(-1, 3)
    distance, voxel, hit = first_hit(grid, origin, flat_dirs, occupied, max_range)
    face = entry_faces(grid, origin, flat_dirs, voxel, hit)
    return PixelHits(
        origin=origin,
        directions=dirs,
        distance=distance.reshape(shape),
        voxel=voxel.reshape(*shape, 3),
        hit=hit.reshape(shape),
        face=face.reshape(shape),
    )


def entry_faces(
    grid: GridSpec, origin: np.ndarray, directions: np.ndarray, voxel: np.ndarray, hit: np.ndarray
) -> np.ndarray:
    """(N,) int8 face code by which each ray enters its hit voxel (-1: no hit, or the origin is inside it).

    The ray ``origin + t * direction`` enters the voxel's box at the largest of its three per-axis
    slab-entry distances; the entry point lies on that axis' boundary: the voxel's lower face if the
    ray moves towards + along it, the upper face otherwise (a ray going down enters by the top face).

    Args:
        grid: the voxel grid.
        origin: (3,) or (N, 3) ray origins, ego frame, metres.
        directions: (N, 3) ray directions, ego frame.
        voxel: (N, 3) hit voxel indices (ignored where not ``hit``).
        hit: (N,) bool.
    """
    face = np.full(hit.shape, -1, dtype=np.int8)
    rows = np.flatnonzero(hit)
    if rows.size == 0:
        return face
    o = np.broadcast_to(np.asarray(origin, dtype=np.float64), directions.shape)[rows]
    d = directions[rows]
    size = np.asarray(grid.voxel_size)
    lo = np.asarray(grid.range_min) + voxel[rows] * size
    hi = lo + size
    with np.errstate(divide="ignore", invalid="ignore"):
        t_in = np.where(d > 0, (lo - o) / d, np.where(d < 0, (hi - o) / d, -np.inf))
    axis = t_in.argmax(axis=1)
    t_enter = t_in[np.arange(rows.size), axis]
    upper = d[np.arange(rows.size), axis] < 0
    face[rows] = np.where(t_enter > 0, 2 * axis + upper, -1)
    return face


def face_shade(face: np.ndarray) -> np.ndarray:
    """Brightness factors (same shape as ``face``), float64; 1.0 where the face code is -1."""
    return np.where(face >= 0, FACE_SHADE[np.maximum(face, 0)], 1.0)


def voxel_edges(flat_voxel: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """(H, W) bool one-pixel boundaries between regions of different hit voxels.

    For each pair of horizontally or vertically adjacent pixels showing different voxels (or a voxel
    and nothing), one pixel of the pair is marked: the upper/left one if it shows a voxel, else the
    other. Only pixels that show a voxel are ever marked.
    """
    edges = np.zeros(hit.shape, dtype=bool)
    dx = flat_voxel[:, :-1] != flat_voxel[:, 1:]
    edges[:, :-1] |= dx & hit[:, :-1]
    edges[:, 1:] |= dx & ~hit[:, :-1]
    dy = flat_voxel[:-1, :] != flat_voxel[1:, :]
    edges[:-1, :] |= dy & hit[:-1, :]
    edges[1:, :] |= dy & ~hit[:-1, :]
    return edges


def shaded_colors(semantics: np.ndarray, hits: PixelHits, vocab: Vocabulary) -> np.ndarray:
    """(H', W', 3) float64 class colour x face shade of each pixel's hit voxel (0 where no hit)."""
    palette = vocab.colors().astype(np.float64)
    v = np.maximum(hits.voxel, 0)
    labels = np.asarray(semantics)[v[..., 0], v[..., 1], v[..., 2]]
    rgb = palette[np.minimum(labels, len(palette) - 1)] * face_shade(hits.face)[..., None]
    rgb[~hits.hit] = 0.0
    return rgb
