"""Benchmark ``occ eval``: Occ3D mIoU over 1,000 frames of 200x200x16, and RayIoU per frame.

Builds 1,000 ground-truth / prediction file pairs from the real Occ3D fixture
(``../shared/fixtures/occ3d_sample/labels.npz``): 20 distinct perturbed predictions (random
relabelling, shifts) copied into a nuScenes-like layout of 25 scenes x 40 frames, then times
the same code path as ``occ eval --pred P --gt G`` (file pairing, validated loading on a thread
pool, global confusion matrix). RayIoU is timed on one 40-frame scene with 8 origins per frame,
in one and in two worker processes.

Usage::

    .venv/bin/python bench/eval_bench.py [--frames 1000] [--workdir /tmp/occ_eval_bench] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.datasets import load_labels
from occ_ros.eval.rayiou import RayIoUMetric
from occ_ros.eval.runner import _rayiou_parallel, evaluate, pair_label_files

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "occ3d_sample" / "labels.npz"
VARIANTS = 20


def build(workdir: Path, frames: int) -> tuple[Path, Path]:
    gt = load_labels(FIXTURE, num_classes=18, require_masks=True)
    rng = np.random.default_rng(0)
    gt_root, pred_root = workdir / "gts", workdir / "pred"
    if workdir.exists():
        shutil.rmtree(workdir)
    src = workdir / "variants"
    src.mkdir(parents=True)
    for v in range(VARIANTS):
        sem = np.roll(gt.semantics, v % 3, axis=v % 2)
        flip = rng.random(sem.shape) < 0.05
        pred = sem.copy()
        pred[flip] = rng.integers(0, 18, int(flip.sum()), dtype=np.uint8)
        np.savez_compressed(src / f"gt{v}.npz", semantics=sem, mask_lidar=gt.mask_lidar, mask_camera=gt.mask_camera)
        np.savez_compressed(src / f"pred{v}.npz", semantics=pred)
    for i in range(frames):
        rel = Path(f"scene-{i // 40:04d}") / f"{i:032x}" / "labels.npz"
        for root, name in ((gt_root, "gt"), (pred_root, "pred")):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / f"{name}{i % VARIANTS}.npz", root / rel)
    return pred_root, gt_root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/occ_eval_bench"))
    ap.add_argument("--rayiou-frames", type=int, default=40)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not FIXTURE.exists():
        raise SystemExit(f"fixture missing: {FIXTURE}")

    t0 = time.perf_counter()
    pred_root, gt_root = build(args.workdir, args.frames)
    print(f"built {args.frames} frame pairs in {time.perf_counter() - t0:.1f} s under {args.workdir}")

    results: dict[str, object] = {"frames": args.frames, "cpus": os.cpu_count(), "machine": platform.machine()}
    for mask in ("camera", "none"):
        t0 = time.perf_counter()
        report = evaluate(pred_root, gt_root, mask=mask)
        wall = time.perf_counter() - t0
        print(
            f"Occ3D mask={mask}: {args.frames} frames in {wall:.2f} s ({wall / args.frames * 1e3:.1f} ms/frame), "
            f"mIoU {report.occ3d.miou}"
        )
        results[f"occ3d_{mask}_s"] = round(wall, 2)

    origins = np.array([[0.986 + 4.0 * k, 0.1 * k, 1.84] for k in range(-4, 4)])
    pairs = pair_label_files(pred_root, gt_root)[: args.rayiou_frames]
    for workers in (1, 2):
        metric = RayIoUMetric(GridSpec.occ3d())
        t0 = time.perf_counter()
        _rayiou_parallel(metric, pairs, [origins] * len(pairs), workers=workers, progress=False)
        per = (time.perf_counter() - t0) / len(pairs)
        print(
            f"RayIoU, {workers} process(es): {per:.3f} s/frame over {len(pairs)} frames "
            f"(8 origins x 14,040 rays, prediction and GT), RayIoU {metric.compute().rayiou}"
        )
        results[f"rayiou_s_per_frame_{workers}proc"] = round(per, 3)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
