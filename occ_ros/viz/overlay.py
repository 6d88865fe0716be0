"""Occupancy and points drawn over camera images: what the grid looks like from each camera.

Frames: the grid and the points are in the ego frame (base_link: x forward, y left, z up), metres;
images are (H, W, 3) uint8 RGB with pixel (0, 0) the centre of the top-left pixel, as the
:class:`~occ_ros.core.rig.Camera` that took them (``camera.width`` x ``camera.height``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.raycast import RangeLike
from occ_ros.core.rig import Camera, CameraRig
from occ_ros.core.vocabulary import Vocabulary

from .images import MOSAIC_LAYOUT, camera_mosaic, depth_colors
from .raster import EDGE_SHADE, cast_pixels, occupied_voxels, shaded_colors, voxel_edges


def _check_image(image: np.ndarray, camera: Camera) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image for camera {camera.name!r} must be (H, W, 3) RGB, got shape {img.shape}")
    h, w = img.shape[:2]
    if (w, h) != (camera.width, camera.height):
        raise ValueError(
            f"image is {w}x{h} (WxH) but camera {camera.name!r} is {camera.width}x{camera.height}; "
            "resize the image or use camera.resized(width, height)"
        )
    return img


def occupancy_overlay(
    image: np.ndarray,
    camera: Camera,
    semantics: np.ndarray,
    grid: GridSpec,
    vocab: Vocabulary,
    alpha: float = 0.45,
    stride: int = 2,
    max_range: RangeLike = None,
    mask: np.ndarray | None = None,
    edges: bool = True,
) -> np.ndarray:
    """(H, W, 3) uint8: the image with the first occupied voxel along each pixel ray blended over it.

    Rays are cast every ``stride`` pixels (pixel centres 0, s, 2s, ...) and each pixel takes the
    result of its nearest cast ray. Where a ray hits a voxel, the pixel becomes
    ``(1 - alpha) * image + alpha * colour * shade`` (class colour, shade of the face the ray
    enters by: top 1.0, +-x 0.8, +-y 0.65, bottom 0.5), further darkened on one-pixel boundaries
    between different voxels (``edges``); where nothing is hit the image is left as it is.

    Args:
        image: (H, W, 3) uint8 RGB taken by ``camera`` (same size, else ValueError).
        camera: the camera, placed in the grid's (ego) frame by ``cam_from_ego``.
        semantics: (X, Y, Z) labels of ``vocab`` on ``grid`` (free and labels >= len(vocab) are empty).
        grid: the grid (ego frame).
        vocab: the vocabulary (colours).
        alpha: opacity of the voxel colours.
        stride: pixels between cast rays (1 = every pixel).
        max_range: metres along the ray; voxels entered this far or further are not drawn.
        mask: optional (X, Y, Z) bool; only voxels inside it count as occupied.
        edges: darken voxel boundaries.
    """
    img = _check_image(image, camera)
    s = int(stride)
    hits = cast_pixels(camera, grid, occupied_voxels(semantics, grid, vocab, mask), s, max_range)
    # nearest cast ray of each pixel: pixel c -> sample round(c / s)
    rows = np.minimum((np.arange(camera.height) + s // 2) // s, hits.hit.shape[0] - 1)
    cols = np.minimum((np.arange(camera.width) + s // 2) // s, hits.hit.shape[1] - 1)
    hit = hits.hit[np.ix_(rows, cols)]
    color = shaded_colors(semantics, hits, vocab)[np.ix_(rows, cols)]
    out = img.astype(np.float64)
    out[hit] = (1 - alpha) * out[hit] + alpha * color[hit]
    if edges:
        out[voxel_edges(hits.flat_voxel(grid)[np.ix_(rows, cols)], hit)] *= EDGE_SHADE  # marks hit pixels only
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def overlay_mosaic(
    images: Mapping[str, np.ndarray],
    rig: CameraRig,
    semantics: np.ndarray,
    grid: GridSpec,
    vocab: Vocabulary,
    layout: Sequence[Sequence[str]] | None = None,
    **kw: object,
) -> np.ndarray:
    """Mosaic (:func:`camera_mosaic`) of :func:`occupancy_overlay` for every camera in ``images``.

    Args:
        images: camera name -> (H, W, 3) uint8 RGB; every name must be a camera of ``rig``.
        rig: the cameras.
        semantics, grid, vocab: as for :func:`occupancy_overlay`.
        layout: rows of camera names; default: nuScenes' layout (:data:`MOSAIC_LAYOUT`) when it holds
            every camera, else the rig's order in rows of three.
        kw: further arguments of :func:`occupancy_overlay` (alpha, stride, max_range, mask, edges).
    """
    overlays = {
        name: occupancy_overlay(img, rig[name], semantics, grid, vocab, **kw)  # type: ignore[arg-type]
        for name, img in images.items()
    }
    if layout is None:
        if set(overlays) <= {n for row in MOSAIC_LAYOUT for n in row}:
            layout = MOSAIC_LAYOUT
        else:
            names = [n for n in rig.names if n in overlays]
            layout = [names[i : i + 3] for i in range(0, len(names), 3)]
    return camera_mosaic(overlays, layout)


def project_points_overlay(
    image: np.ndarray,
    camera: Camera,
    points_ego: np.ndarray,
    max_depth: float = 60.0,
    radius: int = 1,
    min_depth: float = 0.1,
) -> np.ndarray:
    """(H, W, 3) uint8: the image with ego-frame points (e.g. LiDAR) drawn as depth-coloured dots.

    Points are projected with :meth:`Camera.project`; those with optical depth < ``min_depth`` or
    outside the image are skipped. Dots are squares of ``2 * radius + 1`` pixels, turbo-coloured by
    depth (near = red, ``max_depth`` = blue); nearer points are drawn over farther ones.

    Args:
        image: (H, W, 3) uint8 RGB taken by ``camera`` (same size, else ValueError).
        camera: the camera.
        points_ego: (N, 3) points in the ego frame, metres.
    """
    img = _check_image(image, camera)
    pts = np.asarray(points_ego, dtype=np.float64).reshape(-1, 3)
    uv, depth = camera.project(pts)
    keep = (depth >= min_depth) & camera.in_image(uv)
    uv, depth = uv[keep], depth[keep]
    order = np.argsort(-depth, kind="stable")  # far first: near dots overwrite them
    px = np.rint(uv[order]).astype(np.int64)
    colors = depth_colors(depth[order], max_depth)
    r = max(int(radius), 0)
    dy, dx = (a.ravel() for a in np.mgrid[-r : r + 1, -r : r + 1])
    # every dot's pixels, dot by dot (far to near): numpy keeps the last write of repeated indices
    x = (px[:, 0, None] + dx).ravel()
    y = (px[:, 1, None] + dy).ravel()
    rgb = np.repeat(colors, dx.size, axis=0)
    inside = (x >= 0) & (x < camera.width) & (y >= 0) & (y < camera.height)
    out = img.copy()
    out[y[inside], x[inside]] = rgb[inside]
    return out
