"""Voxel render, occupancy overlay, point overlay and latency figure (occ_ros.viz), against hand geometry.

Frames: ego x forward, y left, z up; optical x right, y down, z forward; pixel (0, 0) is the centre of
the top-left pixel. The demo grid has 0.8 m voxels from (-32, -32, -1): voxel i spans
x in [-32 + 0.8 i, -32 + 0.8 (i + 1)), likewise for y and z.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from occ_ros import viz
from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import Camera, CameraRig
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.viz.raster import EDGE_SHADE

GRID = GridSpec.demo()
VOCAB = Vocabulary.occ3d()
FREE = VOCAB.free_index
CAR = VOCAB.index("car")
CAR_RGB = np.array([0, 150, 245], dtype=np.float64)  # Occ3D palette
GREY = np.array([100, 120, 140], dtype=np.uint8)

# Hand-written pinhole: 100 x 60 pixels, f = 100 px, principal point at the image centre.
W, H = 100, 60
K = np.array([[100.0, 0.0, 49.5], [0.0, 100.0, 29.5], [0.0, 0.0, 1.0]])
# The voxel in front of the camera: x in [8, 8.8], y in [-0.8, 0], z in [0.6, 1.4].
VOXEL = (50, 39, 2)


def look(center: tuple[float, float, float], forward: tuple[float, ...], right: tuple[float, ...]) -> np.ndarray:
    """cam_from_ego of a camera at ``center`` (ego) whose optical z is ``forward`` and x is ``right``."""
    f, r = np.asarray(forward, float), np.asarray(right, float)
    down = np.cross(f, r)
    R = np.stack([r, down, f])  # rows: optical axes in ego coordinates
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ np.asarray(center, float)
    return T


def front_camera(width: int = W, height: int = H) -> Camera:
    """At (0, -0.4, 1.0), looking along ego +x: VOXEL's y and z ranges are centred on its optical axis."""
    return Camera("CAM_FRONT", "f", width, height, K, look((0.0, -0.4, 1.0), (1, 0, 0), (0, -1, 0)))


def cross2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """z of the cross product of 2-D vectors (..., 2)."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def one_voxel(index: tuple[int, int, int] = VOXEL, label: int = CAR) -> np.ndarray:
    sem = np.full(GRID.shape, FREE, dtype=np.uint8)
    sem[index] = label
    return sem


def grey(width: int = W, height: int = H) -> np.ndarray:
    return np.broadcast_to(GREY, (height, width, 3)).copy()


# ------------------------------------------------------------------------------------ overlay
def test_overlay_colours_exactly_the_pixels_whose_rays_hit_the_voxel() -> None:
    # The front face x = 8 is the silhouette (the camera is centred on the voxel's y and z ranges).
    # Optical X = -(y + 0.4) in [-0.4, 0.4] -> u = 100 X / 8 + 49.5 in [44.5, 54.5] -> columns 45..54;
    # optical Y = -(z - 1.0) in [-0.4, 0.4] -> v in [24.5, 34.5] -> rows 25..34.
    image = grey()
    out = viz.occupancy_overlay(image, front_camera(), one_voxel(), GRID, VOCAB, alpha=0.5, stride=1, edges=False)
    changed = np.any(out != image, axis=2)
    expected = np.zeros((H, W), bool)
    expected[25:35, 45:55] = True
    np.testing.assert_array_equal(changed, expected)
    # the -x face: shade 0.8 -> colour (0, 120, 196); blend 0.5 with (100, 120, 140)
    assert (out[expected] == [50, 120, 168]).all()
    np.testing.assert_array_equal(out[~expected], image[~expected])


def test_overlay_stride_two_takes_each_pixels_nearest_ray() -> None:
    # Rays at even pixels; pixel c takes ray round(c / 2) (ties up). Columns 45..54 see rays at 46..54
    # (all inside [44.5, 54.5]), 44 and 55 see rays at 44 and 56 (outside): the same box as stride 1.
    image = grey()
    out = viz.occupancy_overlay(image, front_camera(), one_voxel(), GRID, VOCAB, alpha=0.5, stride=2, edges=False)
    expected = np.zeros((H, W), bool)
    expected[25:35, 45:55] = True
    np.testing.assert_array_equal(np.any(out != image, axis=2), expected)


def test_overlay_outlines_voxels_with_one_pixel_edges_inside_the_voxel() -> None:
    image = grey()
    out = viz.occupancy_overlay(image, front_camera(), one_voxel(), GRID, VOCAB, alpha=0.5, stride=1)
    box = np.zeros((H, W), bool)
    box[25:35, 45:55] = True
    border = box.copy()
    border[26:34, 46:54] = False
    np.testing.assert_array_equal(np.any(out != image, axis=2), box)  # nothing outside the voxel changes
    assert (out[box & ~border] == [50, 120, 168]).all()
    assert (out[border] == np.rint(EDGE_SHADE * np.array([50.0, 120.0, 168.0]))).all()


def test_overlay_of_an_off_axis_block_is_the_convex_hull_of_its_projected_corners() -> None:
    # A 2 x 3 x 2 block of voxels to the front-left, below and above a camera that is yawed 20 degrees
    # left and pitched 10 degrees down: its silhouette is the hull of the 8 projected box corners.
    sem = np.full(GRID.shape, FREE, dtype=np.uint8)
    sem[48:50, 44:47, 1:3] = VOCAB.index("manmade")
    lo = np.array([-32 + 0.8 * 48, -32 + 0.8 * 44, -1 + 0.8 * 1])
    hi = np.array([-32 + 0.8 * 50, -32 + 0.8 * 47, -1 + 0.8 * 3])
    yaw, pitch = np.radians(20.0), np.radians(-10.0)
    forward = (np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch))
    right = (np.sin(yaw), -np.cos(yaw), 0.0)
    center = np.array([0.5, -0.3, 1.6])
    T = look(tuple(center), forward, right)
    cam = Camera("CAM_FRONT", "f", W, H, K, T)
    out = viz.occupancy_overlay(grey(), cam, sem, GRID, VOCAB, stride=1, edges=False)
    changed = np.any(out != grey(), axis=2)

    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    pc = (corners - center) @ T[:3, :3].T  # optical frame
    assert (pc[:, 2] > 0).all()
    uv = pc[:, :2] / pc[:, 2:3] * 100.0 + [49.5, 29.5]
    # convex hull by gift wrapping on 8 points: every point is left of (or on) each edge a -> b
    hull = [int(np.lexsort((uv[:, 1], uv[:, 0]))[0])]
    while True:
        p = hull[-1]
        q = (p + 1) % len(uv)
        for r in range(len(uv)):
            if cross2(uv[q] - uv[p], uv[r] - uv[p]) < 0:
                q = r
        if q == hull[0]:
            break
        hull.append(q)
    vv, uu = np.mgrid[0:H, 0:W]
    pix = np.stack([uu, vv], axis=-1).astype(float)
    signed = np.stack(
        [
            cross2(uv[b] - uv[a], pix - uv[a]) / np.linalg.norm(uv[b] - uv[a])
            for a, b in zip(hull, hull[1:] + hull[:1], strict=True)
        ]
    )
    inside = (signed > 0).all(axis=0)
    clear = np.abs(signed).min(axis=0) > 1e-6  # pixel centres exactly on a silhouette edge are ties
    assert inside.sum() > 50 and (~inside).sum() > 50
    np.testing.assert_array_equal(changed[clear], inside[clear])


@pytest.mark.parametrize(
    ("center", "forward", "right", "shade"),
    [
        ((3.4, -0.4, 1.0), (1, 0, 0), (0, -1, 0), 0.8),  # looking +x: enters by the -x face
        ((13.4, -0.4, 1.0), (-1, 0, 0), (0, 1, 0), 0.8),  # looking -x: the +x face
        ((8.4, 4.6, 1.0), (0, -1, 0), (-1, 0, 0), 0.65),  # looking -y: the +y face
        ((8.4, -5.4, 1.0), (0, 1, 0), (1, 0, 0), 0.65),  # looking +y: the -y face
        ((8.4, -0.4, 6.0), (0, 0, -1), (0, -1, 0), 1.0),  # looking down: the top face
        ((8.4, -0.4, -4.0), (0, 0, 1), (0, -1, 0), 0.5),  # looking up (from below the grid): the bottom face
    ],
)
def test_overlay_shades_the_face_the_rays_enter_by(
    center: tuple[float, float, float], forward: tuple[int, ...], right: tuple[int, ...], shade: float
) -> None:
    # The camera is 5 m from the voxel's centre (8.4, -0.4, 1.0) on one side, looking at it.
    cam = Camera("CAM_FRONT", "f", W, H, K, look(center, forward, right))
    black = np.zeros((H, W, 3), np.uint8)
    out = viz.occupancy_overlay(black, cam, one_voxel(), GRID, VOCAB, alpha=1.0, stride=1, edges=False)
    # the face is 4.6 m away: 0.8 m * 100 px / 4.6 m = 17.4 px around the centre (49.5, 29.5):
    # u in [40.8, 58.2] -> columns 41..58, v in [20.8, 38.2] -> rows 21..38
    hit = np.any(out != 0, axis=2)
    assert hit.sum() == 18 * 18 and hit[21:39, 41:59].all()
    assert (out[hit] == np.rint(CAR_RGB * shade)).all()


def test_overlay_respects_max_range_and_mask() -> None:
    image = grey()
    # the voxel's front face is 8 m away (8.0 to 8.03 m along the rays)
    near = viz.occupancy_overlay(image, front_camera(), one_voxel(), GRID, VOCAB, stride=1, max_range=7.9)
    np.testing.assert_array_equal(near, image)
    far = viz.occupancy_overlay(image, front_camera(), one_voxel(), GRID, VOCAB, stride=1, max_range=8.1)
    assert np.any(far != image, axis=2).sum() == 100
    mask = np.ones(GRID.shape, bool)
    mask[VOXEL] = False
    masked = viz.occupancy_overlay(image, front_camera(), one_voxel(), GRID, VOCAB, stride=1, mask=mask)
    np.testing.assert_array_equal(masked, image)


def test_overlay_behind_an_empty_grid_or_ignore_labels_leaves_the_image() -> None:
    image = grey()
    empty = np.full(GRID.shape, FREE, np.uint8)
    np.testing.assert_array_equal(viz.occupancy_overlay(image, front_camera(), empty, GRID, VOCAB), image)
    ignored = one_voxel(label=255)
    np.testing.assert_array_equal(viz.occupancy_overlay(image, front_camera(), ignored, GRID, VOCAB), image)


def test_overlay_rejects_an_image_of_another_size_naming_both() -> None:
    with pytest.raises(ValueError, match=r"120x60.*CAM_FRONT.*100x60"):
        viz.occupancy_overlay(grey(120, 60), front_camera(), one_voxel(), GRID, VOCAB)
    with pytest.raises(ValueError, match=r"100x50.*100x60"):
        viz.project_points_overlay(grey(100, 50), front_camera(), np.zeros((1, 3)))


def test_overlay_mosaic_tiles_the_per_camera_overlays() -> None:
    front = front_camera()
    back = Camera("CAM_BACK", "b", W, H, K, look((0.0, -0.4, 1.0), (-1, 0, 0), (0, 1, 0)))
    rig = CameraRig((front, back))
    images = {"CAM_FRONT": grey(), "CAM_BACK": grey()}
    mosaic = viz.overlay_mosaic(images, rig, one_voxel(), GRID, VOCAB, stride=1)
    assert mosaic.shape == (2 * H, 3 * W, 3)  # nuScenes layout: front row, back row
    expected = viz.occupancy_overlay(grey(), front, one_voxel(), GRID, VOCAB, stride=1)
    np.testing.assert_array_equal(mosaic[:H, W : 2 * W], expected)
    np.testing.assert_array_equal(mosaic[H:, W : 2 * W], grey())  # nothing behind
    # cameras outside the nuScenes layout: the rig's order in rows of three
    other = CameraRig((Camera("left", "l", W, H, K, front.cam_from_ego),))
    tiled = viz.overlay_mosaic({"left": grey()}, other, one_voxel(), GRID, VOCAB, stride=1)
    np.testing.assert_array_equal(tiled, expected)


# ------------------------------------------------------------------------------------ points
def test_points_overlay_draws_depth_coloured_dots_at_their_pinhole_projection() -> None:
    # (8, -1.24, 1.76): optical (0.84, -0.76, 8) -> u = 100 * 0.84 / 8 + 49.5 = 60, v = -9.5 + 29.5 = 20
    image = grey()
    points = np.array(
        [
            [8.0, -1.24, 1.76],
            [16.0, -2.08, 2.52],  # twice as far along the same ray: hidden by the nearer point
            [-8.0, -1.24, 1.76],  # behind the camera
        ]
    )
    out = viz.project_points_overlay(image, front_camera(), points, radius=0)
    changed = np.any(out != image, axis=2)
    assert changed.sum() == 1 and changed[20, 60]
    np.testing.assert_array_equal(out[20, 60], viz.depth_colors(np.array(8.0)))
    big = viz.project_points_overlay(image, front_camera(), points[:1], radius=1)
    assert np.any(big != image, axis=2).sum() == 9 and np.any(big != image, axis=2)[19:22, 59:62].all()


# ------------------------------------------------------------------------------------ render
def test_render_of_an_empty_grid_is_pure_background() -> None:
    empty = np.full(GRID.shape, FREE, np.uint8)
    img = viz.render_voxels(empty, GRID, VOCAB, view=viz.OrbitView(width=96, height=60), ego_marker=False)
    assert img.shape == (60, 96, 3) and img.dtype == np.uint8
    assert (img == viz.BACKGROUND).all()


def test_render_looking_straight_down_shows_top_faces_only() -> None:
    # From straight above the voxel's centre only its top face is visible: pure class colour.
    target = (8.4, -0.4, 1.0)
    above = viz.OrbitView(width=80, height=80, elevation_deg=90.0, distance=10.0, target=target)
    img = viz.render_voxels(one_voxel(), GRID, VOCAB, view=above, fog=0.0, edges=False, ego_marker=False)
    fg = np.any(img != viz.BACKGROUND, axis=2)
    # top face at z = 1.4, 9.6 m below the camera; f = 40 / tan(22.5 deg) = 96.6 px -> ~8 px wide
    assert 49 <= fg.sum() <= 100
    assert (img[fg] == CAR_RGB).all()
    # the same from an oblique view also shows side faces, darker than the top
    oblique = viz.OrbitView(width=80, height=80, azimuth_deg=150.0, elevation_deg=30.0, distance=10.0, target=target)
    side = viz.render_voxels(one_voxel(), GRID, VOCAB, view=oblique, fog=0.0, edges=False, ego_marker=False)
    colours = {tuple(c) for c in side[np.any(side != viz.BACKGROUND, axis=2)]}
    assert colours == {tuple(np.rint(CAR_RGB * s)) for s in (1.0, 0.8, 0.65)}  # top, -x (behind), +y (left)


def test_orbit_camera_default_view_is_from_behind_left_and_above() -> None:
    cam = viz.orbit_camera(GRID)
    eye = cam.center_ego
    assert eye[0] < 0 and eye[1] > 0 and eye[2] > 5.4  # behind, left, above the grid
    uv, depth = cam.project(np.array([[0.0, 0.0, 2.2], [20.0, 0.0, 2.2], [-20.0, 0.0, 2.2]]))
    np.testing.assert_allclose(uv[0], [(960 - 1) / 2, (600 - 1) / 2], atol=1e-6)  # looks at the grid centre
    assert depth[1] > depth[0] > depth[2]  # the ego's front points into the picture
    # the whole grid box is in the picture
    corners = np.array([[x, y, z] for x in (-32, 32) for y in (-32, 32) for z in (-1, 5.4)], float)
    assert cam.in_image(cam.project(corners)[0]).all()
    # top-down: ego +x points up in the picture, +y to the left
    top = viz.orbit_camera(GRID, viz.OrbitView(elevation_deg=90.0, target=(0.0, 0.0, 0.0), distance=30.0))
    uv, _ = top.project(np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0]]))
    assert uv[1, 1] < uv[0, 1] and abs(uv[1, 0] - uv[0, 0]) < 1e-9
    assert uv[2, 0] < uv[0, 0] and abs(uv[2, 1] - uv[0, 1]) < 1e-9


def test_render_draws_the_ego_arrow_unless_voxels_cover_it() -> None:
    view = viz.OrbitView(width=80, height=80, elevation_deg=90.0, distance=20.0, target=(0.0, 0.0, 0.0))
    kw: dict[str, Any] = dict(view=view, fog=0.0)
    empty = np.full(GRID.shape, FREE, np.uint8)
    img = viz.render_voxels(empty, GRID, VOCAB, **kw)
    ego = (img == viz.render.EGO_COLOR).all(axis=2)
    assert ego.sum() > 20 and ego[40, 40]  # the arrow (x in [-1, 3.5]) covers the picture centre
    rows = np.flatnonzero(ego.any(axis=1))
    # tip (x = 3.5) above the tail (x = -1): 4.5 m at ~19.4 m depth, f = 96.6 px -> ~22 px tall
    assert 18 <= rows.max() - rows.min() + 1 <= 25
    roof = empty.copy()
    roof[30:50, 30:50, 5] = CAR  # a layer of voxels above the arrow
    covered = viz.render_voxels(roof, GRID, VOCAB, **kw)
    assert not (covered == viz.render.EGO_COLOR).all(axis=2).any()


# ------------------------------------------------------------------------------------ latency
def test_latency_figure_writes_a_png(tmp_path: Path) -> None:
    import cv2

    rng = np.random.default_rng(0)
    frames = {
        "decode": rng.uniform(2, 4, 50),
        "preprocess": rng.uniform(3, 5, 50),
        "inference": rng.uniform(30, 60, 50),
        "postprocess": rng.uniform(1, 2, 50),
    }
    frames["total"] = sum(frames.values()) + 1.0
    path = tmp_path / "figs" / "latency.png"
    viz.latency_figure(path, frames, title="demo", budget_ms=100.0)
    img = cv2.imread(str(path))
    assert img is not None and img.size > 0 and img.shape[1] > img.shape[0] > 100
    viz.latency_figure(tmp_path / "no_total.png", {k: v for k, v in frames.items() if k != "total"})
    assert cv2.imread(str(tmp_path / "no_total.png")) is not None


def test_latency_figure_rejects_series_of_different_lengths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"different lengths: decode=3, total=2"):
        viz.latency_figure(tmp_path / "x.png", {"decode": [1.0, 2.0, 3.0], "total": [1.0, 2.0]})
    with pytest.raises(ValueError, match="empty"):
        viz.latency_figure(tmp_path / "x.png", {"total": []})
    assert not (tmp_path / "x.png").exists()
