"""Benchmark ``occ labels``: frames per second at the demo preset, with the stage breakdown.

Generates one synthetic sequence (demo preset: six 200x112 cameras, 80x80x8 grid), then labels it
with the simulated teachers and the default settings (config/labels/default.yaml) in three set-ups:
metric depth; relative depth calibrated per frame (the default); relative depth calibrated per
sequence (with a simulated teacher whose affine is one per camera for the sequence, the case that mode is for).
The code path is ``run_labels``, the one ``occ labels`` runs; the breakdown wraps its
stages (teachers, calibration, lifting, densification and file output).

Label quality, so that a faster set-up can be checked to label the same: every set-up's labels are scored
against the sequence's exact ground truth (Occ3D mIoU / IoU over the camera mask, as ``occ eval``), and a
calibrated set-up's scale / shift against the simulated teacher's true ones (median over cameras and frames of
``|scale / true - 1|``, and of ``|shift - true|`` in 1/m).

torch runs with ``--threads`` CPU threads (default 1; 0: torch's default), and ``run_labels`` with
``--workers`` threads (default 2, what ``occ labels`` picks on two cores; 0: every stage in the main thread).
With workers, the stage times are summed over the threads that ran them, so they add up to more than the wall
time that frames/s is measured on.

Usage::

    .venv/bin/python bench/labels_bench.py [--frames 16] [--threads 1] [--workers 2]
        [--setups metric:none,relative:frame]
        [--config config/labels/default.yaml]
        [--workdir /tmp/occ_labels_bench] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from occ_ros.core.resources import config_dir
from occ_ros.datasets.synth import SynthReader
from occ_ros.eval.runner import evaluate
from occ_ros.io.atomic import atomic_write_text
from occ_training.labels import pipeline
from occ_training.labels.pipeline import LabelConfig, PseudoLabeller, load_label_settings, run_labels
from occ_training.synth.sequence import generate
from occ_training.teachers.simulated import SimDepthTeacher, SimSegmentationTeacher


def _timed(times: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times[name] += time.perf_counter() - t0

    return wrapper


def run(seq: Path, out: Path, kind: str, calibration: str, settings: Path, workers: int) -> dict[str, Any]:
    base, sim = load_label_settings(settings)
    config = LabelConfig(lifting=base.lifting, calibration=calibration, calibrator=base.calibrator)  # type: ignore[arg-type]
    # per-sequence calibration assumes one affine per camera for the whole sequence: give it a teacher that has one
    # (the preset's teacher draws a new affine per image, which only per-frame calibration can follow)
    affine_per = "sequence" if calibration == "sequence" else sim.depth.affine_per
    depth_teacher = SimDepthTeacher(seq, replace(sim.depth, kind=kind, affine_per=affine_per))  # type: ignore[arg-type]
    labeller = PseudoLabeller(SimSegmentationTeacher(seq, config=sim.segmentation), depth_teacher, config)
    times: dict[str, float] = defaultdict(float)
    originals = {name: getattr(pipeline, name) for name in ("fit_scale_shift", "densify", "save_labels")}
    labeller.teach = _timed(times, "teachers", labeller.teach)  # type: ignore[method-assign]
    labeller.lift = _timed(times, "lifting", labeller.lift)  # type: ignore[method-assign]
    for name, fn in originals.items():
        setattr(
            pipeline,
            name,
            _timed(
                times,
                {"fit_scale_shift": "calibration", "densify": "densify", "save_labels": "write"}[name],
                fn,
            ),
        )
    try:
        if out.exists():
            shutil.rmtree(out)
        summary = run_labels(SynthReader(seq), out, labeller, progress=False, workers=workers)
    finally:
        for name, fn in originals.items():
            setattr(pipeline, name, fn)
    per_frame = {k: v / summary.written for k, v in times.items()}
    report = evaluate(out, seq / "gts", mask="camera", progress=False, workers=1).occ3d
    scale_err, shift_err = [], []
    reader = SynthReader(seq)
    for i in range(len(reader)):
        sample = reader.load(i, images=False)
        fits = summary.calibration.get(sample.scene, {}).get(sample.frame, {})
        for name, (scale, shift) in depth_teacher.true_scale_shift(sample).items():
            if name in fits:
                scale_err.append(abs(fits[name].scale / scale - 1.0))
                shift_err.append(abs(fits[name].shift - shift))
    return {
        "depth": kind,
        "calibration": calibration,
        "frames": summary.written,
        "seconds": summary.seconds,
        "frames_per_second": summary.frames_per_second,
        "seconds_per_frame": per_frame,
        "miou": report.miou,
        "iou": report.iou,
        "scale_error": float(np.nanmedian(scale_err)) if scale_err else None,
        "shift_error": float(np.nanmedian(shift_err)) if shift_err else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/occ_labels_bench"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--workers", type=int, default=2, help="occ labels --workers (0: every stage in the main thread)")
    ap.add_argument(
        "--config",
        type=Path,
        default=config_dir() / "labels" / "default.yaml",
        help="label settings (occ labels --config; default: config/labels/default.yaml)",
    )
    ap.add_argument(
        "--setups",
        default="metric:none,relative:frame,relative:sequence",
        help="comma-separated depth:calibration set-ups (depth metric|relative; calibration none|frame|sequence)",
    )
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    setups = [tuple(item.split(":")) for item in args.setups.split(",") if item]
    if any(len(s) != 2 for s in setups):
        ap.error(f"--setups: expected depth:calibration items, got {args.setups!r}")
    seq = args.workdir / f"seq_{args.seed}_{args.frames}"
    if not (seq / "meta.json").exists():
        generate(seq, frames=args.frames, seed=args.seed, progress=False, overwrite=True)
    results = [
        run(seq, args.workdir / f"labels_{kind}_{cal}", kind, cal, args.config, args.workers) for kind, cal in setups
    ]
    machine = f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores"
    print(
        f"occ labels, demo preset, {args.frames} frames, window {load_label_settings(args.config)[0].lifting.window} "
        f"({machine}, torch threads {torch.get_num_threads()}, workers {args.workers})\n"
    )
    stages = ["teachers", "calibration", "lifting", "densify", "write"]
    print(
        "| depth | calibration | frames/s | "
        + " | ".join(f"{s} s/frame" for s in stages)
        + " | mIoU | IoU | scale err | shift err |"
    )
    print("|---|---|---|" + "---|" * (len(stages) + 4))
    for r in results:
        cells = " | ".join(f"{r['seconds_per_frame'].get(s, 0.0):.3f}" for s in stages)
        errors = " | ".join("-" if r[k] is None else f"{r[k]:.4f}" for k in ("scale_error", "shift_error"))
        print(
            f"| {r['depth']} | {r['calibration']} | {r['frames_per_second']:.2f} | {cells} | "
            f"{r['miou']:.2f} | {r['iou']:.2f} | {errors} |"
        )
    if args.json:
        atomic_write_text(
            args.json,
            json.dumps(
                {"machine": machine, "threads": torch.get_num_threads(), "workers": args.workers, "results": results},
                indent=1,
            ),
        )


if __name__ == "__main__":
    main()
