#!/usr/bin/env python3
"""The view transform's share of inference time and its memory, and what the camera choice changes.

Three measurements, each a JSON for ``bench/ab.py`` (they use only APIs the tree before issue 22 has too, so one
``ab.py`` run times the old and the new view transform alternately):

- ``ort`` (default): the deployed graph (``labels``, ``confidence``; random weights, seed 0) exported to ONNX at the
  Occ3D (or demo) configuration and run by ONNX Runtime on the CPU with its profiler on. Reports p50 latency, the
  view transform's share of the kernel time (every node under the network's ``sampler`` module: projection,
  camera choice, ``GridSample``, averaging), the convolutions' share, and the process' peak-RSS growth over the
  first inference (activations and ORT's arena; weights and inputs are loaded before).
- ``torch``: the same for eager PyTorch (latency and peak-RSS growth of the first forward, no profiler).
- ``train``: ``--steps`` optimizer steps of the real trainer (config/train/demo.yaml, every loss term, seed 0) on
  one demo training sequence, and the loss of each step: the same losses before and after mean that a model
  retrained with the new view transform is the model trained with the old one.
- ``retrain``: trains config/train/demo.yaml (every loss term, seed 0, ``--steps``, no validation or logit
  adjustment) on the demo training sequences present under ``out/train_data`` but the ``--data`` one, then
  scores the model's single-frame predictions on ``--data`` against its exact ground truth (Occ3D mIoU / IoU,
  camera mask): a model retrained with the view transform of each side, on equal footing.
- ``views``: on this tree only, with the real nuScenes rig (``../shared/fixtures/nuscenes_sample``) at the Occ3D
  grid: how many cameras see each voxel point; and, for models/demo.ckpt on a demo sequence's frames, the argmax
  agreement of ``views_per_point`` = 2 with the all-camera mean.

Usage::

    .venv/bin/python bench/view_transform_bench.py [--what ort|torch|views] [--config occ3d|demo] \\
        [--iterations 5] [--threads 2] [--json OUT]
    .venv/bin/python bench/ab.py --baseline f5ca2fb --rounds 3 -- \\
        .venv/bin/python bench/view_transform_bench.py --what ort --json {json}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _model(config: str) -> Any:
    from occ_ros.model.network import ModelConfig, OccupancyNetwork

    torch.manual_seed(0)
    cfg = ModelConfig.occ3d() if config == "occ3d" else ModelConfig.demo(output_stride=8)
    return OccupancyNetwork(cfg).eval()


def _classify(node: str, op: str) -> str:
    if "sampler" in node.split("/"):
        return "view transform"
    if op in ("Conv", "FusedConv", "ConvTranspose"):
        return "convolutions"
    return "other"


def bench_ort(config: str, iterations: int, threads: int) -> dict[str, Any]:
    import onnxruntime as ort

    model = _model(config)
    inputs = model.example_inputs(1)
    feeds = {name: t.numpy() for name, t in zip(("images", "K", "cam_from_ego"), inputs, strict=True)}
    del model
    with tempfile.TemporaryDirectory(prefix="vt_bench_") as tmp:
        path = Path(tmp) / "model.onnx"
        # exported by a child process: the export's PyTorch forward must not set this process' peak RSS
        subprocess.run([sys.executable, __file__, "--export", str(path), "--config", config], check=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        before = _rss_peak_mb()
        session.run(None, feeds)  # first run: ORT's arena grows to the activations' peak
        growth = _rss_peak_mb() - before
        times = []
        for _ in range(iterations):
            t0 = time.perf_counter()
            session.run(None, feeds)
            times.append(time.perf_counter() - t0)
        events = json.loads(Path(session.end_profiling()).read_text())
    # the first run (arena growth, first-touch page faults) is the memory measurement, not the time one
    model_runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    timed_from = model_runs[0][1] if len(model_runs) > 1 else 0
    kernel: dict[str, float] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        if event["ts"] < timed_from:
            continue
        node = event["name"][: -len("_kernel_time")]
        group = _classify(node, event.get("args", {}).get("op_name", ""))
        kernel[group] = kernel.get(group, 0.0) + event["dur"] / 1000.0
    runs = len(model_runs) - 1
    total = sum(kernel.values())
    return {
        "config": config,
        "runtime": "onnxruntime",
        "threads": threads,
        "p50_ms": 1000 * statistics.median(times),
        "kernel_ms_per_run": total / max(runs, 1),
        "share": {k: v / total for k, v in sorted(kernel.items())},
        "kernel_ms": {k: v / max(runs, 1) for k, v in sorted(kernel.items())},
        "peak_rss_growth_mb": growth,
    }


def export(config: str, path: Path) -> None:
    """The deployed graph (``labels``, ``confidence``) of the seeded random model, as ONNX at ``path``."""
    from occ_ros.model.deployed import DeployedNetwork

    model = _model(config)
    deployed = DeployedNetwork(model, ("labels", "confidence")).eval()
    with torch.no_grad():
        torch.onnx.export(
            deployed, model.example_inputs(1), str(path), opset_version=17, dynamo=False,
            input_names=["images", "K", "cam_from_ego"], output_names=["labels", "confidence"],
        )  # fmt: skip


def bench_torch(config: str, iterations: int, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    model = _model(config)
    inputs = model.example_inputs(1)
    with torch.no_grad():
        before = _rss_peak_mb()
        model(*inputs)
        growth = _rss_peak_mb() - before
        times = []
        for _ in range(iterations):
            t0 = time.perf_counter()
            model(*inputs)
            times.append(time.perf_counter() - t0)
    return {
        "config": config,
        "runtime": "torch",
        "threads": threads,
        "p50_ms": 1000 * statistics.median(times),
        "peak_rss_growth_mb": growth,
    }


def bench_train(data: Path, steps: int) -> dict[str, Any]:
    import shutil

    from occ_training.trainer.config import load_train_config
    from occ_training.trainer.loop import Trainer

    torch.set_num_threads(1)  # deterministic reductions, whatever the machine's load
    run = Path(tempfile.mkdtemp(prefix="vt_train_"))
    try:
        overrides = [f"out={run}", f"data.train=[{data}]", "data.val=[]", "decision.logit_adjustment=none"]
        trainer = Trainer(load_train_config(ROOT / "config" / "train" / "demo.yaml", overrides), progress=False)
        losses = [trainer.train_step()["loss"] for _ in range(steps)]
    finally:
        shutil.rmtree(run, ignore_errors=True)
    return {"steps": steps, "loss": losses}


def bench_retrain(test: Path, steps: int) -> dict[str, Any]:
    import shutil

    from occ_ros.eval.runner import evaluate
    from occ_tools.predict import run_predict
    from occ_training.trainer.config import load_train_config
    from occ_training.trainer.loop import train

    labelled = (ROOT / "out" / "train_data").glob("seq_*/pseudo_labels/labels.json")
    train_data = sorted(p.parent.parent for p in labelled)
    train_data = [p for p in train_data if p.resolve() != test.resolve()]
    run = Path(tempfile.mkdtemp(prefix="vt_retrain_"))
    try:
        overrides = [
            f"out={run}", f"steps={steps}", "val_every=0", "data.val=[]", "decision.logit_adjustment=none",
            "data.train=[" + ",".join(str(p) for p in train_data) + "]",
        ]  # fmt: skip
        t0 = time.perf_counter()
        train(load_train_config(ROOT / "config" / "train" / "demo.yaml", overrides), progress=False)
        minutes = (time.perf_counter() - t0) / 60
        run_predict(run / "model.ckpt", test, run / "pred", progress=False)
        report = evaluate(run / "pred", test / "gts")
    finally:
        shutil.rmtree(run, ignore_errors=True)
    return {
        "steps": steps,
        "train_sequences": len(train_data),
        "test": test.name,
        "miou": report.occ3d.miou,
        "iou": report.occ3d.iou,
        "train_minutes": minutes,
    }


def bench_views(data: Path, frames: int) -> dict[str, Any]:
    """Cameras per voxel point on the real nuScenes rig; demo.ckpt's agreement between 2 views and all views."""
    from occ_ros.core.grid import GridSpec
    from occ_ros.core.rig import CameraRig
    from occ_ros.model.network import predict_labels
    from occ_ros.model.view_transform import pillar_points, project_voxels
    from occ_tools.predict import open_model_and_data, prepare

    out: dict[str, Any] = {}
    calib = ROOT.parent / "shared" / "fixtures" / "nuscenes_sample" / "calib.json"
    if calib.exists():
        rig = CameraRig.from_nuscenes_calib(calib)
        K = torch.tensor(np.stack([c.K for c in rig.cameras]), dtype=torch.float32)[None]
        T = torch.tensor(np.stack([c.cam_from_ego for c in rig.cameras]), dtype=torch.float32)[None]
        size = (rig.cameras[0].height, rig.cameras[0].width)
        points = torch.tensor(pillar_points(GridSpec.occ3d(), 8).reshape(-1, 3), dtype=torch.float32)
        feature = (-(-size[0] // 16), -(-size[1] // 16))
        _, valid, _ = project_voxels(points, K, T, size, feature, stride=16)
        seen = valid.sum(1)[0]
        out["nuscenes_rig_points"] = int(seen.numel())
        out["nuscenes_rig_seen_by"] = {str(n): float((seen == n).float().mean()) for n in range(int(seen.max()) + 1)}
    backend, reader = open_model_and_data(ROOT / "models" / "demo.ckpt", data, backend="torch")
    model = backend.bundle.model.eval()  # type: ignore[attr-defined]
    agree = total = 0
    used = min(frames, len(reader))
    for index in range(used):
        x = prepare(backend, reader.load(index))
        inputs = [torch.from_numpy(a)[None] for a in (x.images, x.K, x.cam_from_ego)]
        labels = []
        with torch.no_grad():
            for views in (2, model.config.num_cameras):
                model.sampler.views_per_point = views
                labels.append(predict_labels(model(*inputs), model.decision_bias))
        agree += int((labels[0] == labels[1]).sum())
        total += labels[0].numel()
    out["demo_ckpt_frames"] = used
    out["demo_ckpt_argmax_agreement"] = agree / total
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", choices=("ort", "torch", "train", "retrain", "views"), default="ort")
    ap.add_argument("--steps", type=int, default=20, help="for --what train")
    ap.add_argument("--config", choices=("occ3d", "demo"), default="occ3d")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--data",
        type=Path,
        default=ROOT / "out" / "train_data" / "seq_11",
        help="the training sequence (train), the test sequence (retrain), frames to compare (views)",
    )
    ap.add_argument("--frames", type=int, default=8, help="for --what views")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--export", type=Path, help=argparse.SUPPRESS)  # the child process of --what ort
    args = ap.parse_args()
    if args.export:
        export(args.config, args.export)
        return 0
    if args.what == "ort":
        result = bench_ort(args.config, args.iterations, args.threads)
    elif args.what == "torch":
        result = bench_torch(args.config, args.iterations, args.threads)
    elif args.what == "retrain":
        result = bench_retrain(args.data, args.steps)
    elif args.what == "train":
        result = bench_train(args.data, args.steps)
    else:
        result = bench_views(args.data, args.frames)
    result["machine"] = f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.1f}"
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
