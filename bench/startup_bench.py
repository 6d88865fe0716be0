#!/usr/bin/env python3
"""Start-up of ``occ eval``: wall time of a fresh interpreter that runs one tiny evaluation, and what it imported.

Each run is ``python -c "from occ_tools.cli import main; main(['eval', ...])"`` in a new process on one
8x8x2 prediction / ground-truth pair (so the time is start-up and imports, not scoring), plus ``occ eval --help``.
It reports the median wall time over ``--runs`` and whether scipy / torch were imported (1 / 0).

Usage::

    .venv/bin/python bench/startup_bench.py [--runs 7] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROBE = (
    "import sys\n"
    "from occ_tools.cli import main\n"
    "rc = main({argv!r})\n"
    "print('MODULES', int('scipy' in sys.modules), int('torch' in sys.modules))\n"
    "sys.exit(rc)\n"
)


def timed(argv: list[str], runs: int) -> dict[str, float]:
    """Median wall seconds of ``runs`` fresh interpreters running ``occ`` with ``argv``, and their imports."""
    seconds, modules = [], (0, 0)
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, check=False
        )
        seconds.append(time.perf_counter() - start)
        if done.returncode or "MODULES" not in done.stdout:
            raise SystemExit(f"occ {' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        line = next(x for x in done.stdout.splitlines() if x.startswith("MODULES"))
        modules = tuple(int(v) for v in line.split()[1:3])  # type: ignore[assignment]
    return {"seconds": statistics.median(seconds), "scipy imported": modules[0], "torch imported": modules[1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from occ_ros.core.grid import GridSpec
    from occ_ros.datasets import OccupancyLabels
    from occ_ros.datasets.sample import save_labels

    report: dict[str, object] = {"machine": f"{platform.machine()}, Python {platform.python_version()}"}
    report["load_1min"] = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="occ_startup_") as tmp:
        sem = np.random.default_rng(0).integers(0, 18, (8, 8, 2), dtype=np.uint8)
        ones = np.ones(sem.shape, np.uint8)
        grid = GridSpec((0.0, 0.0, 0.0), (8.0, 8.0, 2.0), (1.0, 1.0, 1.0))
        for name in ("gt", "pred"):
            save_labels(Path(tmp) / name / "labels.npz", OccupancyLabels(sem, ones, ones, grid=grid))
        tiny = ["eval", "--pred", f"{tmp}/pred", "--gt", f"{tmp}/gt", "--quiet"]
        report["occ eval (tiny)"] = timed(tiny, args.runs)
    help_s = []
    for _ in range(args.runs):  # argparse exits after --help: a plain process, timed
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "from occ_tools.cli import main; main(['eval', '--help'])"],
            capture_output=True,
            check=False,
        )
        help_s.append(time.perf_counter() - start)
    report["occ eval --help"] = {"seconds": statistics.median(help_s)}
    for key, value in report.items():
        print(f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
