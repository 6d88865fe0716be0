#!/usr/bin/env python3
"""Copy the pictures the README shows from a finished ``occ demo`` into docs/images/, resized for the web.

    make demo && .venv/bin/python scripts/readme_pictures.py      # or: make readme-pictures

Photographic overlays become JPEGs (a 2400x900 PNG mosaic of real images is ~3 MB); diagrams stay PNG.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
#: metrics.json picture key -> (file name in docs/images, maximum width in pixels)
PICTURES = {
    "overlay": ("demo_overlay.jpg", 1200),
    "voxels_3d": ("demo_voxels_3d.png", 1400),
    "bev": ("demo_bev.png", 1400),
    "latency": ("demo_latency.png", 1200),
    "costmap": ("demo_costmap.png", 1400),
    "real_overlay": ("real_overlay.jpg", 1600),
    "real_lidar": ("real_lidar.jpg", 1600),
    # KITTI: derived maps only; the camera images stay in ../shared (their licence forbids copying them here)
    "kitti_bev": ("kitti_bev.png", 1400),
    "kitti_depth_error": ("kitti_depth_error.png", 1000),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=ROOT / "out" / "demo", help="the demo's output folder")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    metrics_path = args.demo / "metrics.json"
    if not metrics_path.exists():
        raise SystemExit(f"{metrics_path}: not found; run `make demo` first")
    pictures = json.loads(metrics_path.read_text())["pictures"]
    missing = sorted(set(PICTURES) - set(pictures))
    if missing:
        raise SystemExit(f"{metrics_path}: no pictures {missing} (the real-data ones need ../shared/fixtures)")
    args.out.mkdir(parents=True, exist_ok=True)
    for key, (name, max_width) in PICTURES.items():
        image = cv2.imread(pictures[key])
        if image is None:
            raise SystemExit(f"{pictures[key]}: not a readable image")
        if image.shape[1] > max_width:
            height = round(image.shape[0] * max_width / image.shape[1])
            image = cv2.resize(image, (max_width, height), interpolation=cv2.INTER_AREA)
        params = [cv2.IMWRITE_JPEG_QUALITY, 85] if name.endswith(".jpg") else [cv2.IMWRITE_PNG_COMPRESSION, 9]
        target = args.out / name
        cv2.imwrite(str(target), image, params)
        print(f"{target}: {image.shape[1]}x{image.shape[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
