"""Per-frame depth calibration: a baseline commit's ``fit_scale_shift`` against this tree's, interleaved in one process.

A finer check than ``bench/ab.py`` for a change inside the calibration: both versions run in the same process on the
same inputs, alternating (AB, BA, ...), so that a shared machine's load hits both alike; the report gives the
minimum and the median time of each and the fitted scale / shift per camera (relative to the simulated truth).
The baseline's ``occ_training/labels/depth_calibration.py`` is read with ``git show REF:...`` and imported beside
this tree's (it must work with this tree's other modules). Inputs: a 5-frame synthetic sequence (demo preset,
``--seed``, default 2), relative maps ``r = 3.7 / d + 0.2`` with 3 % noise, target frame 2 with sources +-1 and
+-2 frames, the label preset's calibrator settings (config/labels/default.yaml); torch on one thread.

Usage::

    PYTHONPATH=.:training:export:tools .venv/bin/python bench/calibration_ab.py --baseline 2d7fcda \\
        [--rounds 8] [--seed 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from occ_ros.core.resources import config_dir
from occ_ros.datasets.synth import SynthReader
from occ_training.labels import depth_calibration as after
from occ_training.labels.pipeline import load_label_settings
from occ_training.synth.sequence import generate

REPO = Path(__file__).resolve().parents[1]
MODULE = "training/occ_training/labels/depth_calibration.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git commit of the 'before' calibration")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2, help="synthetic world seed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        old_file = Path(tmp) / "depth_calibration_before.py"
        old_file.write_text(
            subprocess.run(
                ["git", "show", f"{args.baseline}:{MODULE}"], cwd=REPO, check=True, capture_output=True, text=True
            ).stdout
        )
        spec = importlib.util.spec_from_file_location("depth_calibration_before", old_file)
        assert spec is not None and spec.loader is not None
        before = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = before
        spec.loader.exec_module(before)
        reader = SynthReader(generate(Path(tmp) / "seq", frames=5, seed=args.seed, progress=False))
        rng = np.random.default_rng(0)
        frames = []
        for i in range(len(reader)):
            sample, depth, sem = reader.load(i), reader.depth(i), reader.semantics_2d(i)
            rel = {}
            for name, d in depth.items():
                inv = np.where(d > 0, 1.0 / np.maximum(d, 1e-6), 0.0)
                rel[name] = ((3.7 * inv + 0.2) * (1 + 0.03 * rng.standard_normal(d.shape))).astype(np.float32)
            valid = {name: sem[name] != 255 for name in depth}
            frames.append(after.CalibrationFrame(sample.images, rel, sample.world_from_ego, valid))
        settings = vars(load_label_settings(config_dir() / "labels" / "default.yaml")[0].calibrator)
        sides = {"before": before, "after": after}
        times: dict[str, list[float]] = {side: [] for side in sides}
        fits = {}
        for r in range(args.rounds):
            for side in ("before", "after") if r % 2 == 0 else ("after", "before"):
                module = sides[side]
                config = module.CalibrationConfig(**settings)
                t0 = time.perf_counter()
                fits[side] = module.fit_scale_shift(frames, [2], reader.rig, config)
                times[side].append(time.perf_counter() - t0)
    print(f"fit_scale_shift, 6 cameras, 4 sources, {args.rounds} rounds; baseline {args.baseline}")
    for side, values in times.items():
        print(f"{side:6s}: min {min(values):.3f} s, median {statistics.median(values):.3f} s")
    ratio_min = min(times["after"]) / min(times["before"])
    ratio_median = statistics.median(times["after"]) / statistics.median(times["before"])
    print(f"after / before: min {ratio_min:.2f}, median {ratio_median:.2f}")
    for name in reader.rig.names:
        b, a = fits["before"][name], fits["after"][name]
        scales = f"scale / truth {b.scale * 3.7:.4f} -> {a.scale * 3.7:.4f}"
        print(f"  {name:16s} {scales}, shift {b.shift:.4f} -> {a.shift:.4f} (truth {-0.2 / 3.7:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
