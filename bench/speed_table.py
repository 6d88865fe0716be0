#!/usr/bin/env python3
"""The README's speed table, regenerated from the JSON that the benchmarks wrote.

Each row is read from one benchmark's JSON (the command that makes it is in the row's source below); a missing
file leaves its row out and says so. The table replaces the lines between ``<!-- speed-table:begin -->`` and
``<!-- speed-table:end -->`` in README.md (``--check``: exit 1 when the README differs, write nothing).

Usage::

    .venv/bin/python bench/export_bench.py --iterations 20 --occ3d-iterations 5      # out/bench/export/*.json
    .venv/bin/python bench/pipeline_bench.py --frames 30 --load-seconds 0 --json out/bench/pipeline.json
    .venv/bin/python bench/train_bench.py --steps 10 --json out/bench/train.json
    .venv/bin/python bench/labels_bench.py --frames 16 --json out/bench/labels.json
    .venv/bin/python bench/gpu_bench.py --device cuda --json out/bench/gpu.json         # on a GPU machine, optional
    .venv/bin/python bench/speed_table.py [--bench out/bench] [--readme README.md] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- speed-table:begin -->", "<!-- speed-table:end -->"


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _export(bench: Path, config: str) -> str | None:
    data = _read(bench / "export" / f"{config}_onnxruntime_cpu_fp32.json")
    return None if data is None else _ms(data["p50_ms"])


def _node(bench: Path, kind: str) -> str | None:
    data = _read(bench / "pipeline.json")
    if data is None:
        return None
    row = data[kind]
    return f"{_ms(row['node-side total (p50)'])} (p99 {row['node-side total (p99)']:.1f})"


def _train(bench: Path) -> str | None:
    data = _read(bench / "train.json")
    if data is None:
        return None
    return f"{data['variants']['all terms (demo.yaml)']['seconds_per_step']:.2f} s"


def _labels(bench: Path, depth: str, calibration: str) -> str | None:
    data = _read(bench / "labels.json")
    if data is None:
        return None
    for row in data["results"]:
        if row["depth"] == depth and row["calibration"] == calibration:
            return f"{row['frames_per_second']:.2f} frames/s"
    return None


def _gpu(bench: Path) -> str | None:
    data = _read(bench / "gpu.json")
    if data is None:
        return None
    rows = [r for r in data.get("inference", []) if r.get("precision") == "fp16" and r.get("cuda_graph")]
    if not rows or not data["environment"].get("gpu"):
        return None
    timing = rows[0].get("gpu", rows[0]["wall"])
    return f"{timing['p50_ms']:.2f} ms (CUDA graph, {data['environment']['gpu']})"


#: (what, source JSON, how to read it from the bench folder)
ROWS: list[tuple[str, str, Callable[[Path], str | None]]] = [
    ("demo network, ONNX Runtime CPU (6×112×200 → 80×80×8)", "export_bench.py", lambda b: _export(b, "demo")),
    (
        "Occ3D-size network, ONNX Runtime CPU (6×256×704 → 200×200×16, 118.8 GFLOP)",
        "export_bench.py",
        lambda b: _export(b, "occ3d"),
    ),
    ("Occ3D-size network, PyTorch FP16 on a GPU", "gpu_bench.py", _gpu),
    (
        "node-side work per frame besides inference, six 1600×900 raw images",
        "pipeline_bench.py",
        lambda b: _node(b, "raw"),
    ),
    (
        "the same with six JPEG CompressedImages (decoding included)",
        "pipeline_bench.py",
        lambda b: _node(b, "jpeg"),
    ),
    ("training step at the demo config, all losses", "train_bench.py", _train),
    ("pseudo-labels with calibrated relative depth", "labels_bench.py", lambda b: _labels(b, "relative", "frame")),
    ("pseudo-labels with metric depth", "labels_bench.py", lambda b: _labels(b, "metric", "none")),
]


def table(bench: Path) -> tuple[list[str], list[str]]:
    """The table's lines and the rows left out (no JSON)."""
    lines = ["| what | p50 | from |", "|---|---|---|"]
    missing = []
    for what, source, read in ROWS:
        value = read(bench)
        if value is None:
            missing.append(f"{what} ({source})")
            continue
        lines.append(f"| {what} | {value} | `bench/{source}` |")
    return lines, missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, default=ROOT / "out" / "bench", help="where the benchmarks wrote JSON")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--check", action="store_true", help="exit 1 if the README's table differs; write nothing")
    args = ap.parse_args(argv)
    text = args.readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"{args.readme}: no {BEGIN} ... {END} block to replace", file=sys.stderr)
        return 1
    lines, missing = table(args.bench)
    for row in missing:
        print(f"left out, no JSON in {args.bench}: {row}", file=sys.stderr)
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail
    if args.check:
        return 0 if new == text else 1
    args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
