"""2-D pictures: label colouring, depth colouring, camera mosaics, bird's-eye views, PNG files, legends.

numpy produces the images; matplotlib (imported lazily) lays out figures with titles and legends.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from occ_ros.core.vocabulary import Vocabulary

#: Camera layout of mosaics: nuScenes' front row and back row, as drivers look at them.
MOSAIC_LAYOUT = (("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"), ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"))
SKY_COLOR = (135, 190, 235)


def colorize_labels(labels: np.ndarray, vocab: Vocabulary, unknown: int = 255) -> np.ndarray:
    """(..., 3) uint8 colours of integer labels; ``unknown`` (e.g. sky) gets SKY_COLOR."""
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(vocab)] = vocab.colors()
    palette[unknown] = SKY_COLOR
    return palette[labels]


def depth_colors(depth: np.ndarray, max_depth: float = 60.0) -> np.ndarray:
    """(..., 3) uint8 turbo colours of metric depths (..., ): near = red, ``max_depth`` and beyond = blue."""
    from matplotlib import colormaps

    d = np.asarray(depth, dtype=np.float64)
    norm = np.clip(d.reshape(-1) / max_depth, 0.0, 1.0)
    return (colormaps["turbo"](1.0 - norm)[:, :3] * 255).astype(np.uint8).reshape(*d.shape, 3)


def colorize_depth(depth: np.ndarray, max_depth: float = 60.0) -> np.ndarray:
    """(H, W, 3) uint8 turbo colouring of metric depth (near = red, far = blue); 0 (no surface) is black."""
    rgb = depth_colors(depth, max_depth)
    rgb[depth <= 0] = 0
    return rgb


def camera_mosaic(images: dict[str, np.ndarray], layout: Sequence[Sequence[str]] = MOSAIC_LAYOUT) -> np.ndarray:
    """Tile per-camera images (H, W, 3) into rows; cameras missing from ``images`` are left black."""
    first = next(iter(images.values()))
    h, w = first.shape[:2]
    rows = []
    for row in layout:
        tiles = [images.get(name, np.zeros((h, w, 3), np.uint8)) for name in row]
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def bev_labels(semantics: np.ndarray, free: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Bird's-eye view of an [x, y, z] label grid: the top-most non-free label per column.

    Returns an (X, Y) label image indexed [x, y]; ``free`` where the column is empty (or masked out).
    """
    occupied = semantics != free
    if mask is not None:
        occupied &= mask.astype(bool)
    nz = semantics.shape[2]
    top = nz - 1 - np.argmax(occupied[:, :, ::-1], axis=2)
    out = np.take_along_axis(semantics, top[:, :, None], axis=2)[:, :, 0]
    out[~occupied.any(axis=2)] = free
    return out


def bev_image(semantics: np.ndarray, vocab: Vocabulary, mask: np.ndarray | None = None) -> np.ndarray:
    """(Y, X, 3) uint8 image of the BEV with ego x pointing up and ego y pointing left (image rows = -x)."""
    labels = bev_labels(semantics, vocab.free_index, mask)
    # image row r <-> x descending; image column c <-> y descending (left of the car is left in the image)
    return colorize_labels(labels[::-1, ::-1], vocab)


#: Grey levels of a nav_msgs/OccupancyGrid picture, as map_server's map saver writes them: free 254, occupied 0,
#: unknown 205.
COSTMAP_GREYS = {0: 254, 100: 0, -1: 205}


def costmap_image(cells: np.ndarray) -> np.ndarray:
    """(X, Y, 3) uint8 picture of a (Y, X) OccupancyGrid (``data`` reshaped to (height, width)), in the orientation
    of :func:`bev_image` (ego x up, y left): free white, occupied black, unknown grey (:data:`COSTMAP_GREYS`;
    other values, 1..99, in between)."""
    cells = np.asarray(cells).astype(np.int16)
    grey = np.where(cells < 0, COSTMAP_GREYS[-1], np.round(254 - np.clip(cells, 0, 100) * 2.54)).astype(np.uint8)
    # (Y, X) -> [x, y] -> rows x descending, columns y descending, as bev_image
    return np.repeat(grey.T[::-1, ::-1, None], 3, axis=2)


def save_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG (creates the folder)."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")


def legend_figure(
    path: str | Path,
    panels: Sequence[np.ndarray],
    titles: Sequence[str],
    vocab: Vocabulary | None = None,
    suptitle: str = "",
    dpi: int = 110,
) -> None:
    """Save side-by-side image panels with titles and, optionally, a class-colour legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + (2.2 if vocab else 0), 4.6), squeeze=False)
    for ax, img, title in zip(axes[0], panels, titles, strict=False):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    if vocab is not None:
        handles = [
            Patch(color=(c.color[0] / 255.0, c.color[1] / 255.0, c.color[2] / 255.0), label=c.name)
            for c in vocab.classes[:-1]
        ]
        fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout(rect=(0, 0, 0.86 if vocab else 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
