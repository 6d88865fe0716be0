#!/usr/bin/env python3
"""GPU figures in one short run: inference latency (FP32 / FP16, CUDA graphs), a training step, FLOP rate vs peak.

    python bench/gpu_bench.py [--device cuda] [--config occ3d] [--iterations 200] [--train-steps 10]
        [--json out/bench/gpu.json] [--markdown out/bench/gpu.md]
    python bench/gpu_bench.py --device cpu --config demo --iterations 3 --train-steps 1   # the CPU check

Made for a lent GPU machine (PyTorch with CUDA, no TensorRT, no network) and a budget of a few minutes; it needs
nothing but this repository (random weights, synthetic inputs). It measures:

* **inference**: the deployed graph (:class:`~occ_ros.model.deployed.DeployedNetwork`, ``labels`` + ``confidence``,
  no CLIP head, what ``occ export`` traces) at batch 1 on random images and a surround rig, in FP32 and FP16
  (``.half()``, as the torch backend's ``half``), each eager and replayed as a CUDA graph
  (``torch.cuda.CUDAGraph`` captured once on static inputs). Per iteration the GPU time between two CUDA events
  and the wall time of the launch + ``synchronize``; p50 / p99 over ``--iterations`` after ``--warmup``.
* **training**: one optimizer step of the training config with every loss term it enables (voxel CE + Lovasz,
  rendered depth / semantics / CLIP features, photometric, ray KL and affinity against the label-volume teacher),
  on synthetic tensors of the right shapes (the trainer's batch layout, :mod:`occ_training.trainer.data`), with the
  trainer's AMP choice; seconds per step and peak memory (``torch.cuda.max_memory_allocated``; the process' peak
  RSS on a CPU), and the FLOPs of one step as ``FlopCounterMode`` counts them (forward + backward).
* **FLOP rate**: the model's own forward FLOP count (:func:`occ_ros.model.network.flops`, convolutions and matrix
  products) divided by the p50 GPU time, against the device's peak from :data:`PEAK_TFLOPS` (dense FP16 tensor
  core and FP32 figures of NVIDIA's datasheets); an unknown device gets the achieved rate only.
* **environment**: GPU model, driver (``nvidia-smi``), torch, CUDA and cuDNN versions, TF32 and cuDNN autotuning.

``--config occ3d`` is ``ModelConfig.occ3d()`` (6 x 256 x 704 -> 200 x 200 x 16) with config/train/occ3d_nuscenes.yaml
for training (its CLIP head, 512 channels, only in the training step); ``--config demo`` the model of
config/train/demo.yaml. On a CPU, CUDA graphs and FP16 are skipped (listed under ``skipped``), and times are wall
clock. Writes JSON (``--json``) and a markdown table (``--markdown``, also printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIGS = {"occ3d": "occ3d_nuscenes.yaml", "demo": "demo.yaml"}

#: Peak dense rates, TFLOP/s: (device-name pattern, label, FP16 tensor core with FP32 accumulate, FP32 non-tensor),
#: from NVIDIA's datasheets (dense: half the "with sparsity" figures). First match wins, so the more specific
#: names come first. RTX 3090: FP16 with FP32 accumulate (what PyTorch uses; 142 with FP16 accumulate), GA102
#: whitepaper. Jetson AGX Orin 64GB: FP32 from the technical brief (2048 CUDA cores); its FP16 tensor rate is half
#: the 85 dense INT8 TOPS (170 sparse).
PEAK_TFLOPS: tuple[tuple[str, str, float, float], ...] = (
    (r"H200 NVL", "H200 NVL", 835.5, 60.0),
    (r"H200", "H200 SXM", 989.5, 67.0),
    (r"H100 PCIe", "H100 PCIe", 756.0, 51.0),
    (r"H100 NVL", "H100 NVL", 835.5, 60.0),
    (r"H100", "H100 SXM", 989.5, 67.0),
    (r"A100", "A100", 312.0, 19.5),
    (r"RTX 3090", "RTX 3090", 71.0, 35.6),
    (r"\bL4\b", "L4", 121.0, 30.3),
    (r"Orin", "Jetson AGX Orin 64GB", 42.5, 5.3),
)


def peak_for(device_name: str) -> dict[str, Any] | None:
    """The peak rates of a device by its name (``torch.cuda.get_device_name``), or None when unknown."""
    for pattern, label, fp16, fp32 in PEAK_TFLOPS:
        if re.search(pattern, device_name):
            return {"device": label, "fp16_tensor_tflops": fp16, "fp32_tflops": fp32}
    return None


def percentiles(ms: list[float]) -> dict[str, float]:
    values = np.asarray(ms, dtype=np.float64)
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------- environment
def environment(device: torch.device) -> dict[str, Any]:
    """GPU model, driver, torch / CUDA / cuDNN versions and the settings that change the figures."""
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "device": str(device),
        "gpu": None,
        "driver": None,
        "tf32_conv": torch.backends.cudnn.allow_tf32,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = torch.cuda.get_device_name(device)
        env["compute_capability"] = f"{props.major}.{props.minor}"
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        try:
            query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", f"--id={device.index or 0}"]
            env["driver"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            env["driver"] = None
    return env


# ---------------------------------------------------------------------------------------------- inference
def time_eager(run: Callable[[], Any], device: torch.device, warmup: int, iterations: int) -> dict[str, Any]:
    """Per-iteration GPU time (CUDA events; none on a CPU) and wall time (launch + synchronize), ms."""
    for _ in range(warmup):
        run()
    sync(device)
    wall: list[float] = []
    events = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            events.append((start, end))
        else:
            run()
        sync(device)
        wall.append((time.perf_counter() - t0) * 1000.0)
    out: dict[str, Any] = {"wall": percentiles(wall)}
    if events:
        out["gpu"] = percentiles([s.elapsed_time(e) for s, e in events])
    return out


def captured(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], device: torch.device) -> Callable[[], Any]:
    """``module(*inputs)`` captured as a CUDA graph on static ``inputs``; returns its replay."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.no_grad(), torch.cuda.stream(stream):
        for _ in range(3):  # warm up on a side stream before capture (cuDNN autotuning, allocator)
            module(*inputs)
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        outputs = module(*inputs)

    def replay() -> Any:
        graph.replay()
        return outputs  # the static outputs the replay overwrites (kept alive with the graph)

    return replay


def inference(
    model_cfg: Any, device: torch.device, warmup: int, iterations: int, skipped: list[str]
) -> list[dict[str, Any]]:
    """The deployed graph at batch 1: FP32 / FP16 x eager / CUDA graph (CPU: FP32 eager only)."""
    from occ_ros.model.deployed import DeployedNetwork
    from occ_ros.model.network import OccupancyNetwork

    rows = []
    for precision in ("fp32", "fp16"):
        if precision == "fp16" and device.type != "cuda":
            skipped.append("inference fp16: a CPU has no fast fp16 (the torch backend refuses half on a CPU)")
            continue
        torch.manual_seed(0)
        net = OccupancyNetwork(model_cfg).eval()
        module = DeployedNetwork(net, ("labels", "confidence"), half=precision == "fp16").to(device).eval()
        images, K, cam_from_ego = (t.contiguous() for t in net.example_inputs(1))
        inputs = (images.to(device), K.to(device), cam_from_ego.to(device))
        for graph in (False, True):
            if graph and device.type != "cuda":
                skipped.append("inference CUDA graphs: no CUDA device")
                continue
            if graph:
                try:
                    run = captured(module, inputs, device)
                except RuntimeError as err:  # an op that cannot be captured: keep the other figures
                    skipped.append(f"inference {precision} CUDA graph: capture failed: {str(err).splitlines()[0]}")
                    continue
            else:

                def run(module: torch.nn.Module = module, inputs: tuple[torch.Tensor, ...] = inputs) -> Any:
                    with torch.no_grad():
                        return module(*inputs)

            timing = time_eager(run, device, warmup, iterations)
            rows.append({"precision": precision, "cuda_graph": graph, "iterations": iterations, **timing})
            print(f"  inference {precision} {'graph' if graph else 'eager'}: {timing}", file=sys.stderr, flush=True)
        del module, net
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


# ---------------------------------------------------------------------------------------------- training
def synthetic_batch(cfg: Any, batch: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """A collated training batch of random targets with the shapes and value ranges of
    :class:`occ_training.trainer.data.FrameDataset` items (every key the enabled loss terms read)."""
    from occ_ros.core.rig import surround_rig
    from occ_ros.datasets.sample import IGNORE_LABEL

    g = torch.Generator().manual_seed(seed)
    m = cfg.model
    n, h, w = m.num_cameras, m.image_height, m.image_width
    x, y, z = m.grid_spec.shape
    classes, sources = m.num_classes, len(cfg.photometric.neighbours)
    K, cam_from_ego = (torch.from_numpy(a) for a in surround_rig(n, h, w))
    sem = torch.randint(0, classes - 1, (batch, n, h, w), generator=g)  # non-free classes (free = the last)
    sem[torch.rand(batch, n, h, w, generator=g) < 0.3] = IGNORE_LABEL
    src_from_tgt = torch.eye(4).repeat(batch, sources, n, 1, 1)
    src_from_tgt[..., 2, 3] = 0.5  # the neighbour half a metre along the optical axis
    depth = torch.rand(batch, n, h, w, generator=g) * 40.0 + 1.0
    depth[torch.rand(batch, n, h, w, generator=g) < 0.2] = 0.0  # no teacher depth
    labels = torch.randint(0, classes, (batch, x, y, z), generator=g)
    labels[torch.rand(batch, x, y, z, generator=g) < 0.1] = IGNORE_LABEL
    out = {
        "images": torch.randn(batch, n, 3, h, w, generator=g),
        "K": K.expand(batch, n, 3, 3).contiguous(),
        "cam_from_ego": cam_from_ego.expand(batch, n, 4, 4).contiguous(),
        "labels": labels.to(torch.uint8),
        "label_mask": torch.rand(batch, x, y, z, generator=g) < 0.5,
        "depth": depth,
        "sem_labels": sem.to(torch.uint8),
        "sem_conf": torch.rand(batch, n, h, w, generator=g),
        "segments": torch.where(sem == IGNORE_LABEL, -1, sem).to(torch.int32),
        "src_images": torch.rand(batch, sources, n, 3, h, w, generator=g),
        "src_from_tgt": src_from_tgt,
        "src_valid": torch.ones(batch, sources, dtype=torch.bool),
    }
    if m.clip_dim:
        out["features"] = torch.randn(batch, n, max(1, h // 16), max(1, w // 16), m.clip_dim, generator=g)
    return {k: v.to(device) for k, v in out.items()}


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The trainer's AMP choice (:meth:`occ_training.trainer.loop.Trainer._amp_dtype`)."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def training(train_cfg: Any, device: torch.device, steps: int, batch: int, warmup: int) -> dict[str, Any]:
    """Seconds per optimizer step with every enabled loss term, peak memory, and the FLOPs of one step."""
    from torch.utils.flop_counter import FlopCounterMode

    from occ_ros.core.vocabulary import Vocabulary
    from occ_ros.model.network import OccupancyNetwork
    from occ_training.trainer.objective import FrameGenerators, Objective, label_volume_teacher

    vocabulary = Vocabulary.load(train_cfg.vocabulary)
    torch.manual_seed(0)
    net = OccupancyNetwork(train_cfg.model).to(device).train()
    objective = Objective(train_cfg, len(vocabulary), vocabulary.free_index)
    optimizer = torch.optim.AdamW(net.parameters(), lr=train_cfg.optim.lr, weight_decay=train_cfg.optim.weight_decay)
    dtype = amp_dtype(train_cfg.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    data = synthetic_batch(train_cfg, batch, device)
    d = train_cfg.distill
    teacher = None
    if train_cfg.uses_distillation:
        args = (len(vocabulary), vocabulary.free_index, d.label_density, d.unknown_density)
        teacher = label_volume_teacher(data["labels"], *args)
    terms: dict[str, float] = {}

    def step(index: int) -> None:
        nonlocal terms
        gens = [FrameGenerators.seeded(index * batch + b, device) for b in range(batch)]
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            outputs = net(data["images"], data["K"], data["cam_from_ego"])
        loss, terms = objective(outputs, data, gens, teacher)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    for i in range(warmup):
        step(i)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    sync(device)
    seconds = (time.perf_counter() - t0) / steps
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    counter = FlopCounterMode(display=False)
    with counter:
        step(warmup + steps)
    return {
        "batch": batch,
        "steps": steps,
        "warmup": warmup,
        "amp": str(dtype).replace("torch.", "") if dtype is not None else "off",
        "seconds_per_step": seconds,
        "peak_memory_mib": peak_mib,
        "peak_memory_kind": "max_memory_allocated" if device.type == "cuda" else "process peak RSS",
        "step_flops": int(counter.get_total_flops()),
        "loss_terms": sorted(t for t in terms if t not in ("loss", "total")),
    }


# ---------------------------------------------------------------------------------------------- report
def flop_rates(report: dict[str, Any]) -> None:
    """Achieved TFLOP/s (forward FLOPs / p50 time; training: counted step FLOPs / step time), and the share of the
    device's peak at the matching precision where the device is known."""
    peak = report["peak"]
    forward = report["flops"]["forward"]
    for row in report["inference"]:
        seconds = row.get("gpu", row["wall"])["p50_ms"] / 1000.0
        row["achieved_tflops"] = forward / seconds / 1e12
        if peak is not None:
            ref = peak["fp16_tensor_tflops"] if row["precision"] == "fp16" else peak["fp32_tflops"]
            row["peak_share"] = row["achieved_tflops"] / ref
    train = report.get("training")
    if train:
        train["achieved_tflops"] = train["step_flops"] / train["seconds_per_step"] / 1e12


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    where = env["gpu"] or f"CPU ({env['cpu']}, {env['logical_cores']} logical cores)"
    lines = [
        f"{where}; driver {env['driver'] or '-'}; torch {env['torch']}, CUDA {env['cuda'] or '-'}, "
        f"cuDNN {env['cudnn'] or '-'}; config {report['config']} "
        f"({report['flops']['forward'] / 1e9:.1f} GFLOPs per forward pass)",
        "",
        "| run | precision | CUDA graph | p50 ms | p99 ms | wall p50 ms | TFLOP/s | % of peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["inference"]:
        timed = row.get("gpu", row["wall"])  # CUDA events on a GPU, wall clock on a CPU
        share = f"{100 * row['peak_share']:.1f}" if "peak_share" in row else "-"
        lines.append(
            f"| inference, batch 1 | {row['precision']} | {'yes' if row['cuda_graph'] else 'no'} | "
            f"{timed['p50_ms']:.2f} | {timed['p99_ms']:.2f} | {row['wall']['p50_ms']:.2f} | "
            f"{row['achieved_tflops']:.3g} | {share} |"
        )
    train = report.get("training")
    if train:
        lines.append(
            f"| training step, batch {train['batch']}, terms {', '.join(train['loss_terms'])} | amp {train['amp']} "
            f"| no | {1000 * train['seconds_per_step']:.1f} | - | - | {train['achieved_tflops']:.3g} | - |"
        )
        lines.append("")
        lines.append(f"Training peak memory: {train['peak_memory_mib']:.0f} MiB ({train['peak_memory_kind']}).")
    if report["skipped"]:
        lines.append("")
        lines.append("Skipped: " + "; ".join(report["skipped"]) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda[:N] or cpu")
    parser.add_argument("--config", default="occ3d", choices=sorted(TRAIN_CONFIGS))
    parser.add_argument("--iterations", type=int, default=200, help="timed inference runs per variant")
    parser.add_argument("--warmup", type=int, default=20, help="untimed inference runs first")
    parser.add_argument("--train-steps", type=int, default=10, help="timed training steps (0: no training step)")
    parser.add_argument("--train-warmup", type=int, default=3, help="untimed training steps first")
    parser.add_argument("--train-batch", type=int, help="training batch (default: the training config's)")
    parser.add_argument("--json", type=Path, default=ROOT / "out" / "bench" / "gpu.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "out" / "bench" / "gpu.md")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.warmup < 0 or args.train_steps < 0 or args.train_warmup < 0:
        parser.error("--iterations must be >= 1; --warmup, --train-steps and --train-warmup >= 0")

    from occ_ros.model.network import ModelConfig, flops
    from occ_training.trainer.config import load_train_config

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error(f"--device {args.device}: PyTorch sees no CUDA GPU (use --device cpu)")
        torch.backends.cudnn.benchmark = True  # static shapes: let cuDNN pick its fastest kernels once
    started = time.perf_counter()
    train_cfg = load_train_config(ROOT / "config" / "train" / TRAIN_CONFIGS[args.config], [f"device={device.type}"])
    model_cfg = ModelConfig.occ3d() if args.config == "occ3d" else dataclasses.replace(train_cfg.model, clip_dim=0)
    skipped: list[str] = []
    report: dict[str, Any] = {
        "config": args.config,
        "model": model_cfg.to_dict(),
        "environment": environment(device),
        "flops": {"forward": flops(model_cfg).flops, "batch": 1},
        "skipped": skipped,
    }
    env = report["environment"]
    report["peak"] = peak_for(env["gpu"]) if env["gpu"] else None
    if env["gpu"] and report["peak"] is None:
        skipped.append(f"peak share: {env['gpu']} is not in the peak table (achieved rate only)")
    report["inference"] = inference(model_cfg, device, args.warmup, args.iterations, skipped)
    if args.train_steps:
        train_model = dataclasses.replace(model_cfg, clip_dim=train_cfg.model.clip_dim)
        train_cfg = dataclasses.replace(train_cfg, model=train_model)
        batch = args.train_batch or train_cfg.batch_size
        try:
            report["training"] = training(train_cfg, device, args.train_steps, batch, args.train_warmup)
        except RuntimeError as err:  # e.g. out of memory at this batch: keep the inference figures
            skipped.append(f"training step at batch {batch}: {str(err).splitlines()[0]}")
    else:
        skipped.append("training step: --train-steps 0")
    flop_rates(report)
    report["seconds"] = time.perf_counter() - started
    text = markdown(report)
    for path, content in ((args.json, json.dumps(report, indent=2) + "\n"), (args.markdown, text + "\n")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    print(text)
    print(f"\njson: {args.json}\nmarkdown: {args.markdown}\n({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
