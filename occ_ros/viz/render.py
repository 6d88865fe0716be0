"""3-D picture of a semantic voxel grid from a virtual orbit camera (exact voxel ray casting).

Frames: the grid's frame is the ego frame (base_link: x forward, y left, z up), metres. The orbit
camera sits at ``azimuth`` (degrees, counter-clockwise from +x seen from above: 180 = behind the
ego, 90 = on its left) and ``elevation`` (degrees above the horizontal) around a target point,
looking at it, with the ego z axis pointing up in the picture.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import Camera, default_frame_id
from occ_ros.core.transforms import invert_transform
from occ_ros.core.vocabulary import Vocabulary

from .raster import EDGE_SHADE, cast_pixels, occupied_voxels, shaded_colors, voxel_edges

#: Background of renders: a light neutral grey.
BACKGROUND = (236, 236, 232)
#: Colour of the ego marker (an arrow pointing along ego +x).
EGO_COLOR = (25, 25, 25)
#: Ego arrow outline in the ego xy plane, metres: a shaft x in [-1, 1.5], |y| <= 0.6 and a head
#: from x = 1.5 (|y| <= 1.2) to the tip at x = 3.5.
_SHAFT = (-1.0, 1.5, 0.6)
_HEAD = (1.5, 3.5, 1.2)


@dataclass(frozen=True)
class OrbitView:
    """Where the orbit camera of :func:`orbit_camera` / :func:`render_voxels` is and what it sees.

    Attributes:
        width, height: image size, pixels.
        azimuth_deg: direction from the target to the camera, degrees counter-clockwise from ego +x
            (150 = behind and to the left of the ego, so that the ego's front points into the picture).
        elevation_deg: degrees above the horizontal (90 = straight down onto the target; the ego's
            +x then points up in the picture).
        distance: metres from the target; None: the nearest at which the whole grid box is in the picture.
        fov_deg: field of view along the shorter image side, degrees.
        target: (3,) ego-frame point the camera looks at; None: the grid's centre.
    """

    width: int = 960
    height: int = 600
    azimuth_deg: float = 150.0
    elevation_deg: float = 35.0
    distance: float | None = None
    fov_deg: float = 45.0
    target: tuple[float, float, float] | None = None


def orbit_camera(grid: GridSpec, view: OrbitView = OrbitView()) -> Camera:
    """A pinhole camera on an orbit around ``view.target`` (default: the grid's centre), looking at it.

    Returns:
        a :class:`Camera` named ``ORBIT`` whose ``cam_from_ego`` maps ego points into its optical frame.
    """
    if view.distance is None:
        return _fitted(grid, view)
    tgt = _target(grid, view.target)
    half_fov = np.radians(view.fov_deg) / 2
    az, el = np.radians(view.azimuth_deg), np.radians(view.elevation_deg)
    eye = tgt + view.distance * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    forward = (tgt - eye) / np.linalg.norm(tgt - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-9:  # looking straight down (or up): ego +x is "up" in the picture
        right = np.cross(forward, [1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    ego_from_cam = np.eye(4)
    ego_from_cam[:3, :3] = np.stack([right, down, forward], axis=1)  # optical x right, y down, z forward
    ego_from_cam[:3, 3] = eye
    width, height = view.width, view.height
    f = 0.5 * min(width, height) / np.tan(half_fov)
    K = np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
    return Camera("ORBIT", default_frame_id("ORBIT"), width, height, K, invert_transform(ego_from_cam))


def render_voxels(
    semantics: np.ndarray,
    grid: GridSpec,
    vocab: Vocabulary,
    mask: np.ndarray | None = None,
    view: OrbitView = OrbitView(),
    fog: float = 0.3,
    edges: bool = True,
    ego_marker: bool = True,
    background: tuple[int, int, int] = BACKGROUND,
) -> np.ndarray:
    """(view.height, view.width, 3) uint8 perspective picture of the occupied voxels of an [x, y, z] label grid.

    Each pixel shows the first occupied voxel along its ray (:func:`occ_ros.core.raycast.first_hit`),
    in its class colour times a shade of the face the ray enters by (top 1.0, +-x 0.8, +-y 0.65,
    bottom 0.5), darkened on one-pixel voxel boundaries (``edges``) and blended towards the
    background with distance (``fog``: 0 = none, 1 = the farthest grid point is pure background).

    Args:
        semantics: (X, Y, Z) integer labels of ``vocab`` on ``grid`` (free = ``vocab.free_index``;
            labels outside the vocabulary, e.g. 255, count as empty).
        grid: the grid, in the ego frame.
        vocab: the vocabulary (colours).
        mask: optional (X, Y, Z) bool; only voxels inside it count as occupied (e.g. camera-visible).
        view: the orbit camera (:class:`OrbitView`).
        ego_marker: draw the ego as a dark arrow (pointing along +x) on top of the ground voxel layer
            (the layer containing z = 0), hidden where voxels are in front of it.
        background: RGB of pixels that see no voxel.
    """
    camera = orbit_camera(grid, view)
    hits = cast_pixels(camera, grid, occupied_voxels(semantics, grid, vocab, mask))
    rgb = shaded_colors(semantics, hits, vocab)
    if edges:
        rgb[voxel_edges(hits.flat_voxel(grid), hits.hit)] *= EDGE_SHADE
    bg = np.asarray(background, dtype=np.float64)
    rgb[~hits.hit] = bg
    t = hits.distance
    if ego_marker:
        t_ego = _ego_arrow(hits.origin, hits.directions, grid)
        arrow = t_ego < t
        rgb[arrow] = EGO_COLOR
        t = np.where(arrow, t_ego, t)
    if fog > 0:
        eye_to_target = np.linalg.norm(hits.origin - _target(grid, view.target))
        radius = _radius(grid)
        near, far = max(eye_to_target - radius, 0.0), eye_to_target + radius
        amount = fog * np.clip((t - near) / (far - near), 0.0, 1.0)
        amount[~np.isfinite(t)] = 0.0
        rgb = rgb * (1 - amount[..., None]) + bg * amount[..., None]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _fitted(grid: GridSpec, view: OrbitView, margin: float = 0.03) -> Camera:
    """The orbit camera at the smallest distance (bisection) showing all 8 grid corners with a margin."""
    corners = np.array(np.meshgrid(*zip(grid.range_min, grid.range_max, strict=True), indexing="ij")).reshape(3, -1).T
    width, height = view.width, view.height
    mx, my = margin * width, margin * height

    def fits(d: float) -> bool:
        cam = orbit_camera(grid, replace(view, distance=d))
        uv, depth = cam.project(corners)
        return bool(
            np.all(depth > 0)
            and np.all((uv[:, 0] >= mx) & (uv[:, 0] <= width - mx) & (uv[:, 1] >= my) & (uv[:, 1] <= height - my))
        )

    lo, hi = 0.0, 2.0 * _radius(grid) / np.sin(np.radians(view.fov_deg) / 2)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return orbit_camera(grid, replace(view, distance=hi))


def _target(grid: GridSpec, target: tuple[float, float, float] | None) -> np.ndarray:
    if target is None:
        return (np.asarray(grid.range_min) + np.asarray(grid.range_max)) / 2
    return np.asarray(target, dtype=np.float64)


def _radius(grid: GridSpec) -> float:
    """Radius of the grid box's bounding sphere, metres."""
    return 0.5 * float(np.linalg.norm(np.subtract(grid.range_max, grid.range_min)))


def _ego_arrow(origin: np.ndarray, directions: np.ndarray, grid: GridSpec) -> np.ndarray:
    """(H, W) distance along each ray to the ego arrow (inf where the ray misses it).

    The arrow lies in the horizontal plane at the top of the voxel layer containing z = 0 (plus 2 cm),
    or at z = 0 if the grid's z range does not contain 0.
    """
    z0, vz, nz = grid.range_min[2], grid.voxel_size[2], grid.shape[2]
    k = np.floor(-z0 / vz)
    plane = z0 + (k + 1) * vz + 0.02 if 0 <= k < nz else 0.0
    dz = directions[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (plane - origin[2]) / dz
    t = np.where(np.isfinite(t) & (t > 0), t, np.inf)
    x = origin[0] + t * directions[..., 0]
    y = np.abs(origin[1] + t * directions[..., 1])
    shaft = (x >= _SHAFT[0]) & (x <= _SHAFT[1]) & (y <= _SHAFT[2])
    head_x0, head_x1, head_w = _HEAD
    head = (x >= head_x0) & (x <= head_x1) & (y <= head_w * (head_x1 - x) / (head_x1 - head_x0))
    return np.where(np.isfinite(t) & (shaft | head), t, np.inf)
