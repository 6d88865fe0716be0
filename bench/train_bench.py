#!/usr/bin/env python3
"""Training step time and peak memory at the demo config; model FLOPs and parameters at the Occ3D config.

    .venv/bin/python bench/train_bench.py [--data out/train_data/seq_11] [--steps 10] [--device cpu]

Steps run on one cached training sequence (made with `occ synth` + `occ labels` code when --data is absent),
after warm-up steps that fill the frame cache, so the numbers are the steady-state step (data preparation
excluded). Peak memory: the process' peak resident set size on CPU (``ru_maxrss``), ``max_memory_allocated`` on
CUDA. Results go to docs/benchmarks.md by hand, with the machine and this command.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from occ_ros.io.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def variants() -> dict[str, list[str]]:
    from occ_training.trainer.config import terms_off

    return {"voxel loss only": terms_off(), "all terms (demo.yaml)": []}


def step_time(data: Path, overrides: list[str], steps: int, device: str) -> tuple[float, float]:
    from occ_training.trainer.config import load_train_config
    from occ_training.trainer.loop import Trainer

    run = Path(tempfile.mkdtemp(prefix="train_bench_"))
    try:
        config = load_train_config(
            ROOT / "config" / "train" / "demo.yaml",
            [
                f"out={run}",
                f"data.train=[{data}]",
                "data.val=[]",
                "decision.logit_adjustment=none",
                f"device={device}",
                *overrides,
            ],
        )
        trainer = Trainer(config, progress=False)
        warm = min(len(trainer.dataset), 8)
        trainer.dataset.frames = trainer.dataset.frames[:warm]  # steady state: frames prepared once
        for _ in range(warm + 1):
            trainer.train_step()
        if trainer.ctx.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        if trainer.ctx.device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return (time.perf_counter() - t0) / steps, peak
    finally:
        shutil.rmtree(run, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "out" / "train_data" / "seq_11")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the figures here (bench/speed_table.py reads them)")
    args = parser.parse_args()
    from occ_ros.model.network import ModelConfig, OccupancyNetwork, flops
    from occ_tools.demo import labelled_sequence
    from occ_training.trainer.config import load_train_config

    data = labelled_sequence(args.data, int(args.data.name.split("_")[-1]) if "_" in args.data.name else 11, 32)
    print(
        f"machine: {platform.machine()} {platform.processor()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}"
    )
    print("| variant | s/step | peak memory (MB) |")
    print("|---|---|---|")
    report: dict[str, object] = {
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "steps": args.steps,
        "variants": {},
    }
    for name, overrides in variants().items():
        seconds, peak = step_time(data, overrides, args.steps, args.device)
        print(f"| {name} | {seconds:.3f} | {peak:.0f} |", flush=True)
        report["variants"][name] = {"seconds_per_step": seconds, "peak_memory_mb": peak}  # type: ignore[index]
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=1))

    demo = load_train_config(ROOT / "config" / "train" / "demo.yaml").model
    occ3d = load_train_config(ROOT / "config" / "train" / "occ3d_nuscenes.yaml").model
    print("\n| model | params (M) | forward GFLOPs (batch 1) |")
    print("|---|---|---|")
    models = (("demo.yaml", demo), ("occ3d_nuscenes.yaml", occ3d), ("Occ3D, no CLIP head", ModelConfig.occ3d()))
    for name, cfg in models:
        with torch.device("meta"):
            params = OccupancyNetwork(cfg).parameter_count()
        print(f"| {name} | {params / 1e6:.2f} | {flops(cfg).flops / 1e9:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
