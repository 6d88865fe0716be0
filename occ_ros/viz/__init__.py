"""Pictures a person wants to see.

* :mod:`.images` -- label / depth colouring, camera mosaics, bird's-eye views, PNG files, legend figures;
* :mod:`.render` -- 3-D render of a voxel grid from a virtual orbit camera;
* :mod:`.overlay` -- occupancy and points drawn over camera images;
* :mod:`.latency` -- per-frame latency figure;
* :mod:`.raster` -- per-pixel voxel hits (exact ray casting) and face shading, shared by render and overlay.

Frames: grids and points are in the ego frame (base_link: x forward, y left, z up); images are
(H, W, 3) uint8 RGB.
"""

from __future__ import annotations

from .images import (
    MOSAIC_LAYOUT,
    SKY_COLOR,
    bev_image,
    bev_labels,
    camera_mosaic,
    colorize_depth,
    colorize_labels,
    costmap_image,
    depth_colors,
    legend_figure,
    save_png,
)
from .latency import latency_figure
from .overlay import occupancy_overlay, overlay_mosaic, project_points_overlay
from .render import BACKGROUND, OrbitView, orbit_camera, render_voxels

__all__ = [
    "BACKGROUND",
    "MOSAIC_LAYOUT",
    "OrbitView",
    "SKY_COLOR",
    "bev_image",
    "bev_labels",
    "camera_mosaic",
    "colorize_depth",
    "colorize_labels",
    "costmap_image",
    "depth_colors",
    "latency_figure",
    "legend_figure",
    "occupancy_overlay",
    "orbit_camera",
    "overlay_mosaic",
    "project_points_overlay",
    "render_voxels",
    "save_png",
]
