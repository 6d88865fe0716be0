#!/usr/bin/env python3
"""CPU runtime settings, interleaved: ONNX Runtime threads x spinning and torch threads, at the demo and Occ3D sizes.

    .venv/bin/python bench/runtime_bench.py [--rounds 4] [--iterations 10] [--occ3d-rounds 3]
        [--occ3d-iterations 2] [--sizes demo occ3d] [--json out/bench/runtime.json]

The demo size runs the shipped models/demo.ckpt, the Occ3D size a randomly initialised ``ModelConfig.occ3d()``
network (6 x 256 x 704 -> 200 x 200 x 16, no CLIP head; latency does not depend on the weights); both are exported
to ONNX with ``occ export`` code. The settings are the node's parameters ``threads`` and ``spinning``
(:class:`~occ_ros.inference.backend.RuntimeSettings`, through :func:`~occ_ros.inference.backend.backend_options`):
onnxruntime with threads in {1, 2} x spinning in {on, off}, torch eager with threads in {1, 2}.

Each round runs every setting once, in turn (round-robin, the order rotating by one each round, so a drift in
machine load hits all settings alike): one untimed run, then ``iterations`` timed runs, median kept. The report
gives per setting the median over rounds of those medians, and the median over rounds of its ratio to the
reference setting of the same round (onnxruntime threads 2, spinning on: its defaults on 2 cores; torch threads
2). ONNX sessions of the demo size stay open across rounds; at the Occ3D size each is opened for its turn only
(memory). The 1-minute load average is recorded before and after: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from occ_ros.io.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
ORT_SETTINGS = [(threads, spinning) for threads in (1, 2) for spinning in (True, False)]
TORCH_THREADS = (1, 2)


def occ3d_checkpoint(path: Path) -> Path:
    """A random-weight checkpoint of ``ModelConfig.occ3d()`` (no CLIP head) with the Occ3D vocabulary."""
    import torch

    from occ_ros.core.vocabulary import Vocabulary
    from occ_ros.model.checkpoint import checkpoint_dict, save_checkpoint
    from occ_ros.model.network import ModelConfig, OccupancyNetwork
    from occ_training.trainer.config import load_train_config

    cfg = load_train_config(ROOT / "config" / "train" / "occ3d_nuscenes.yaml")
    torch.manual_seed(0)
    model = OccupancyNetwork(ModelConfig.occ3d()).eval()
    return save_checkpoint(path, checkpoint_dict(model, Vocabulary.load(cfg.vocabulary), cfg.preprocess(), 0))


def setting_name(backend: str, threads: int, spinning: bool | None = None) -> str:
    spin = "" if spinning is None else f" spinning {'on' if spinning else 'off'}"
    return f"{backend} threads {threads}{spin}"


def time_block(run: Callable[[], Any], iterations: int) -> float:
    """One untimed run, then the median of ``iterations`` timed ones, ms."""
    run()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def measure(ckpt: Path, onnx: Path, rounds: int, iterations: int, keep_open: bool) -> dict[str, Any]:
    """Round-robin over the settings; per setting its per-round medians, ms."""
    import torch

    from occ_ros.inference.backend import RuntimeSettings, backend_options, open_backend

    def ort(threads: int, spinning: bool) -> Any:
        options = backend_options("onnxruntime", RuntimeSettings(threads, spinning))
        return open_backend(onnx, "onnxruntime", warmup=False, **options)

    torch_backend = open_backend(ckpt, "torch", warmup=False, **backend_options("torch", RuntimeSettings(1)))
    feeds = torch_backend.example_feeds()
    sessions = {s: ort(*s) for s in ORT_SETTINGS} if keep_open else {}
    settings: list[tuple[str, Callable[[], float]]] = []
    for threads, spinning in ORT_SETTINGS:

        def ort_block(threads: int = threads, spinning: bool = spinning) -> float:
            backend = sessions.get((threads, spinning)) or ort(threads, spinning)
            try:
                return time_block(lambda: backend.run(feeds), iterations)
            finally:
                if not keep_open:
                    backend.close()

        settings.append((setting_name("onnxruntime", threads, spinning), ort_block))
    for threads in TORCH_THREADS:

        def torch_block(threads: int = threads) -> float:
            torch.set_num_threads(threads)  # what TorchBackend(threads=...) does
            return time_block(lambda: torch_backend.run(feeds), iterations)

        settings.append((setting_name("torch", threads), torch_block))

    medians: dict[str, list[float]] = {name: [] for name, _ in settings}
    for r in range(rounds):
        order = settings[r % len(settings) :] + settings[: r % len(settings)]
        for name, block in order:
            medians[name].append(block())
            print(f"  round {r + 1}/{rounds} {name}: {medians[name][-1]:.1f} ms", file=sys.stderr, flush=True)
    references = {"onnxruntime": setting_name("onnxruntime", 2, True), "torch": setting_name("torch", 2)}
    result: dict[str, Any] = {}
    for name, values in medians.items():
        ref = medians[references[name.split()[0]]]
        result[name] = {
            "median_ms": statistics.median(values),
            "ratio_to_reference": statistics.median(v / b for v, b in zip(values, ref, strict=True)),
            "reference": references[name.split()[0]],
            "rounds_ms": values,
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds at the demo size")
    parser.add_argument("--iterations", type=int, default=10, help="timed runs per setting per round, demo size")
    parser.add_argument("--occ3d-rounds", type=int, default=3, help="rounds at the Occ3D size")
    parser.add_argument("--occ3d-iterations", type=int, default=2, help="timed runs per setting per round, Occ3D")
    parser.add_argument("--sizes", nargs="+", default=["demo", "occ3d"], choices=("demo", "occ3d"))
    parser.add_argument("--json", type=Path, default=ROOT / "out" / "bench" / "runtime.json")
    args = parser.parse_args()

    from occ_export.onnx_export import export_onnx
    from occ_ros.core.resources import models_dir
    from occ_ros.inference.bench import cpu_model

    work = Path(tempfile.mkdtemp(prefix="runtime_bench_"))
    report: dict[str, Any] = {
        "machine": f"{cpu_model()} ({os.cpu_count()} logical cores), {platform.platform()}",
        "load_1min_before": os.getloadavg()[0],
        "sizes": {},
    }
    for size in args.sizes:
        ckpt = models_dir() / "demo.ckpt" if size == "demo" else occ3d_checkpoint(work / "occ3d.ckpt")
        onnx = export_onnx(ckpt, work / f"{size}.onnx").path
        demo = size == "demo"
        rounds, iterations = (args.rounds, args.iterations) if demo else (args.occ3d_rounds, args.occ3d_iterations)
        report["sizes"][size] = measure(ckpt, onnx, rounds, iterations, keep_open=demo)
    report["load_1min_after"] = os.getloadavg()[0]
    atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    print(
        f"machine: {report['machine']}; 1-min load {report['load_1min_before']:.2f} -> {report['load_1min_after']:.2f}"
    )
    print("| size | setting | p50 ms (median of rounds) | ratio to reference (median of rounds) |")
    print("|---|---|---|---|")
    for size, rows in report["sizes"].items():
        for name, row in rows.items():
            print(f"| {size} | {name} | {row['median_ms']:.1f} | {row['ratio_to_reference']:.2f} |")
    print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
