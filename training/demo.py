"""``occ demo``: the main job on the built-in synthetic world, stage by stage.

Stages so far: (1) render a synthetic sequence with ground truth and a rosbag2 recording;
(2) pictures of it. Later stages (pseudo-labels, the network, export, replay) extend this.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from occ_ros import viz
from occ_ros.core.vocabulary import Vocabulary


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise OSError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img


def sequence_pictures(data: Path, out: Path, frame: str) -> dict[str, Path]:
    """Mosaics of one frame (RGB, depth, per-pixel class) and the BEV of its ground truth."""
    from occ_ros.datasets.synth import decode_depth, load_meta

    meta = load_meta(data)
    vocab = Vocabulary.from_dict(meta["vocabulary"])  # type: ignore[arg-type]
    scene = str(meta["scene"])
    cams = [c["name"] for c in meta["rig"]["cameras"]]  # type: ignore[index]
    rgb = {c: _read_rgb(data / "images" / scene / frame / f"{c}.png") for c in cams}
    depth = {c: viz.colorize_depth(decode_depth(_read_rgb(data / "depth" / scene / frame / f"{c}.png"))) for c in cams}
    sem = {c: viz.colorize_labels(_read_rgb(data / "semantics" / scene / frame / f"{c}.png"), vocab) for c in cams}
    paths = {
        "cameras": out / "cameras.png",
        "depth": out / "depth.png",
        "semantics": out / "semantics.png",
        "bev_gt": out / "bev_gt.png",
    }
    viz.save_png(paths["cameras"], viz.camera_mosaic(rgb))
    viz.save_png(paths["depth"], viz.camera_mosaic(depth))
    viz.save_png(paths["semantics"], viz.camera_mosaic(sem))
    gt = np.load(data / "gts" / scene / frame / "labels.npz")
    viz.legend_figure(
        paths["bev_gt"],
        [viz.bev_image(gt["semantics"], vocab), viz.bev_image(gt["semantics"], vocab, gt["mask_camera"])],
        ["GT semantics (all voxels)", "GT semantics (camera-visible)"],
        vocab,
        suptitle=f"{scene} frame {frame}: bird's-eye view, ego at centre facing up",
    )
    return paths


def run_demo(out: Path, frames: int = 12, seed: int = 3) -> dict[str, object]:
    """Run every stage that exists into ``out`` and print where things are."""
    from occ_ros.datasets.synth import load_meta
    from occ_training.synth.sequence import generate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {}
    t0 = time.perf_counter()
    print(f"[1/2] synthetic world: {frames} frames, seed {seed} -> {out / 'data'}")
    data = generate(out / "data", frames=frames, seed=seed, preset="demo", overwrite=True)
    meta = load_meta(data)
    summary["synth"] = {
        "dir": str(data),
        "frames": len(meta["frames"]),  # type: ignore[arg-type]
        "classes_present": meta["classes_present"],
        "seconds": round(time.perf_counter() - t0, 2),
    }
    print("[2/2] pictures")
    mid = meta["frames"][len(meta["frames"]) // 2]["name"]  # type: ignore[index]
    pictures = sequence_pictures(data, out, mid)
    summary["pictures"] = {k: str(v) for k, v in pictures.items()}
    (out / "metrics.json").write_text(json.dumps(summary, indent=1))
    print(f"\ndemo done in {time.perf_counter() - t0:.1f} s; everything is under {out}/")
    for name, path in pictures.items():
        print(f"  {name:10s} {path}")
    print(f"  {'bag':10s} {data / 'bag'}")
    print(f"  {'metrics':10s} {out / 'metrics.json'}")
    return summary
