#!/usr/bin/env python3
"""Inference latency: ONNX Runtime vs PyTorch eager on this machine, at the demo and Occ3D configs.

    .venv/bin/python bench/export_bench.py [--iterations 20] [--occ3d-iterations 5] [--device cpu] [--out DIR]

The demo row runs the shipped models/demo.ckpt; the Occ3D row a randomly initialised network of
config/train/occ3d_nuscenes.yaml's model (6 x 256 x 704 -> 200 x 200 x 16; latency does not depend on the weights).
Both are exported with ``occ export`` code (labels + confidence outputs, no CLIP features) and timed with ``occ bench``
code (:func:`occ_ros.inference.bench.run_bench`) after warm-up. On a GPU machine pass ``--device cuda`` to add
PyTorch FP16 / CUDA-graph rows and ONNX Runtime's CUDA and TensorRT providers where that build has them.
Prints markdown rows for docs/benchmarks.md and writes every result as JSON under --out.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def occ3d_checkpoint(path: Path) -> Path:
    """A random-weight checkpoint of the Occ3D config's network (no CLIP head: latency of the deployed outputs)."""
    import dataclasses

    import torch

    from occ_ros.core.vocabulary import Vocabulary
    from occ_ros.model.checkpoint import checkpoint_dict, save_checkpoint
    from occ_ros.model.network import OccupancyNetwork
    from occ_training.trainer.config import load_train_config

    cfg = load_train_config(ROOT / "config" / "train" / "occ3d_nuscenes.yaml")
    torch.manual_seed(0)
    model = OccupancyNetwork(dataclasses.replace(cfg.model, clip_dim=0)).eval()
    data = checkpoint_dict(model, Vocabulary.load(cfg.vocabulary), cfg.preprocess(), 0)
    return save_checkpoint(path, data)


def rows_for(name: str, ckpt: Path, onnx_path: Path, iterations: int, device: str, out: Path) -> list[str]:
    from occ_ros.inference.backend import BackendError, open_backend
    from occ_ros.inference.bench import run_bench

    runs: list[tuple[str, Path, str, dict[str, object], str]] = [
        ("onnxruntime", onnx_path, "cpu", {}, "fp32"),
        ("torch", ckpt, "cpu", {}, "fp32"),
    ]
    if device.startswith("cuda"):
        runs += [
            ("torch", ckpt, device, {}, "fp32"),
            ("torch", ckpt, device, {"half": True}, "fp16"),
            ("torch", ckpt, device, {"half": True, "cuda_graph": True}, "fp16"),
            ("onnxruntime", onnx_path, device, {"providers": ["cuda"]}, "fp32"),
            ("onnxruntime", onnx_path, device, {"providers": ["tensorrt", "cuda"]}, "fp32"),
        ]
    rows = []
    for backend, model, dev, options, precision in runs:
        try:
            with open_backend(model, backend, device=dev, warmup=False, **options) as loaded:
                result = run_bench(loaded, iterations=iterations, warmup=3, precision=precision)
        except BackendError as err:
            print(f"  skipped {backend} {options} on {dev}: {str(err).splitlines()[0]}", file=sys.stderr)
            continue
        tag = f"{name}_{backend}_{dev.replace(':', '')}_{precision}{'_graph' if options.get('cuda_graph') else ''}"
        result.save_json(out / f"{tag}.json")
        rows.append(f"| {name} " + result.to_markdown_row())
        print(rows[-1], flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20, help="timed runs at the demo config")
    parser.add_argument("--occ3d-iterations", type=int, default=5, help="timed runs at the Occ3D config")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to add the GPU rows")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "export")
    args = parser.parse_args()

    from occ_export.onnx_export import export_onnx
    from occ_ros.core.resources import models_dir
    from occ_ros.inference.bench import BenchResult

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="export_bench_"))
    demo_ckpt = models_dir() / "demo.ckpt"
    occ3d_ckpt = occ3d_checkpoint(work / "occ3d.ckpt")
    print("| config " + BenchResult.markdown_header().replace("\n|", "\n|---|", 1))
    for name, ckpt, iterations in (("demo", demo_ckpt, args.iterations), ("occ3d", occ3d_ckpt, args.occ3d_iterations)):
        exported = export_onnx(ckpt, work / f"{name}.onnx")
        rows_for(name, ckpt, exported.path, iterations, args.device, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
