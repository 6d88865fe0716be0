"""Benchmark ``occ synth``: seconds per frame at each preset, with the stage breakdown.

Usage: python bench/synth_bench.py [--frames-demo 6] [--frames-nuscenes 2] [--json OUT]
Prints a markdown table for docs/benchmarks.md. The first frame of each run also pays for building
the world and sampling its static surfaces, so it is reported separately from the steady state.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from occ_training.synth.ground_truth import frame_ground_truth
from occ_training.synth.render import freeze, render_camera
from occ_training.synth.sequence import generate, get_preset
from occ_training.synth.world import FRAME_RATE_HZ, urban_world


def stage_times(preset_name: str, frames: int, seed: int = 0) -> dict[str, float]:
    """Per-stage seconds of the steady-state frames (render, ground truth) without file output."""
    preset = get_preset(preset_name)
    rig, grid = preset.rig(), preset.grid_spec()
    world = urban_world(seed, (frames - 1) / FRAME_RATE_HZ)
    times: dict[str, list[float]] = {"freeze": [], "render": [], "ground_truth": []}
    for i in range(frames):
        t = i / FRAME_RATE_HZ
        t0 = time.perf_counter()
        scene = freeze(world, t)
        t1 = time.perf_counter()
        for cam in rig:
            render_camera(scene, cam, world.ego.pose(t))
        t2 = time.perf_counter()
        frame_ground_truth(world, scene, t, grid, rig, 17)
        t3 = time.perf_counter()
        if i > 0 or frames == 1:
            times["freeze"].append(t1 - t0)
            times["render"].append(t2 - t1)
            times["ground_truth"].append(t3 - t2)
    return {k: float(np.mean(v)) for k, v in times.items()}


def end_to_end(preset_name: str, frames: int, seed: int = 0) -> dict[str, float]:
    per_frame: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate(
            Path(tmp) / "seq",
            frames=frames,
            seed=seed,
            preset=preset_name,
            progress=False,
            on_frame=lambda i, s: per_frame.append(s),
        )
        total = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in (Path(tmp) / "seq").rglob("*") if f.is_file())
    return {
        "frames": frames,
        "total_s": total,
        "first_frame_s": per_frame[0],
        "steady_s_per_frame": float(np.mean(per_frame[1:])) if len(per_frame) > 1 else per_frame[0],
        "mb_per_frame": size / frames / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames-demo", type=int, default=6)
    parser.add_argument("--frames-nuscenes", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    for preset, frames in (("demo", args.frames_demo), ("nuscenes", args.frames_nuscenes)):
        results[preset] = {
            **end_to_end(preset, frames),
            **{f"stage_{k}_s": v for k, v in stage_times(preset, frames).items()},
        }
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"machine: {machine}\n")
    header = ["preset", "images", "grid", "first frame (s)", "steady s/frame", "render 6 cams (s)", "ground truth (s)"]
    print("| " + " | ".join(header + ["MB/frame"]) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for preset, r in results.items():
        p = get_preset(preset)
        g = "x".join(map(str, p.grid_spec().shape))
        print(
            f"| {preset} | 6x{p.height}x{p.width} | {g} | {r['first_frame_s']:.2f} | {r['steady_s_per_frame']:.2f} | "
            f"{r['stage_render_s']:.2f} | {r['stage_ground_truth_s']:.2f} | {r['mb_per_frame']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=1))


if __name__ == "__main__":
    main()
