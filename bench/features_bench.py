"""What the ``features`` output of ``occ export --queries`` costs: ONNX Runtime (CPU) p50 with and without it, and the
query rule per frame.

models/demo.ckpt is exported twice with ``occ export`` code (parity skipped): plain (``labels``, ``confidence``) and
with ``--queries`` (plus ``features``, the class prompts in the metadata). Each round times both with
:func:`occ_ros.inference.bench.run_bench`, in alternating order (AB, BA, ...) so that a drift in machine load hits
both alike; the report gives each model's median p50 and the median of the per-round p50 ratios (features /
plain). It also times :class:`occ_ros.pipeline.query.QueryEngine` (what the session adds per frame while a query
is set) on the model's own outputs, and records the load average before and after.

Usage::

    .venv/bin/python bench/features_bench.py --rounds 7 --iterations 20 --threads 1 [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (the node's default 1)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "features")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from occ_export.onnx_export import export_onnx
    from occ_ros.inference.backend import RuntimeSettings, backend_options, open_backend
    from occ_ros.inference.bench import run_bench
    from occ_ros.model.checkpoint import load_checkpoint
    from occ_ros.pipeline.query import QueryEngine
    from occ_tools.queries import prompt_table

    ckpt = REPO / "models" / "demo.ckpt"
    plain, queries = args.out / "plain.onnx", args.out / "queries.onnx"
    if not plain.exists():
        export_onnx(ckpt, plain)
    if not queries.exists():
        export_onnx(
            ckpt, queries, prompts=prompt_table(load_checkpoint(ckpt).model_info(("labels", "confidence", "features")))
        )
    load_before = os.getloadavg()
    options = backend_options("onnxruntime", RuntimeSettings(threads=args.threads))
    backends = {
        name: open_backend(path, "onnxruntime", **options) for name, path in (("plain", plain), ("features", queries))
    }
    p50: dict[str, list[float]] = {"plain": [], "features": []}
    for r in range(args.rounds):
        order = ("plain", "features") if r % 2 == 0 else ("features", "plain")
        for name in order:
            p50[name].append(run_bench(backends[name], iterations=args.iterations, warmup=3).p50_ms)
    ratios = [f / p for f, p in zip(p50["features"], p50["plain"], strict=True)]

    backend = backends["features"]
    info = backend.info
    assert info.prompts is not None
    outputs = backend.run(backend.example_feeds())
    features, labels = outputs["features"][0], outputs["labels"][0]
    engine = QueryEngine(info.prompts, list(info.vocabulary.names), info.vocabulary.free_index, info.grid)
    rule_ms = []
    for _ in range(20):
        t0 = time.perf_counter()
        engine("car", features, labels)
        rule_ms.append(1000 * (time.perf_counter() - t0))
    for b in backends.values():
        b.close()
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "threads": args.threads,
        "rounds": args.rounds,
        "iterations": args.iterations,
        "p50_ms": {k: statistics.median(v) for k, v in p50.items()},
        "p50_ms_per_round": p50,
        "ratio_median": statistics.median(ratios),
        "ratio_per_round": ratios,
        "features_shape": list(features.shape),
        "features_megabytes": features.nbytes / 1e6,
        "query_rule_ms_median": statistics.median(rule_ms),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
