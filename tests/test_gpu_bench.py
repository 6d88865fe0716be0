"""bench/gpu_bench.py, checked on a CPU: its JSON fields, the FLOP count against ``flops()``, the peak table."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from occ_ros.model.network import flops  # noqa: E402
from occ_training.trainer.config import load_train_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "bench" / "gpu_bench.py")
assert spec is not None and spec.loader is not None
gpu_bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_bench)

DEMO_TERMS = ["affinity", "clip", "depth", "photometric", "ray_kl", "semantic", "voxel_ce", "voxel_lovasz"]
"""The loss terms config/train/demo.yaml enables (its ``loss:`` section, by hand)."""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("gpu_bench")
    paths = os.pathsep.join(str(REPO / d) for d in ("", "training", "export", "tools"))
    env = {**os.environ, "PYTHONPATH": paths, "OMP_NUM_THREADS": "1"}  # one thread: quick on a shared CPU
    argv = [sys.executable, str(REPO / "bench" / "gpu_bench.py"), "--device", "cpu", "--config", "demo"]
    argv += ["--iterations", "2", "--warmup", "0", "--train-steps", "1", "--train-warmup", "0"]
    argv += ["--json", str(out / "gpu.json"), "--markdown", str(out / "gpu.md")]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "gpu.json").read_text())
    data["_markdown"] = (out / "gpu.md").read_text()
    return data


def test_cpu_run_reports_fp32_eager_and_says_what_it_skipped(report: dict) -> None:
    assert report["config"] == "demo"
    [row] = report["inference"]
    assert (row["precision"], row["cuda_graph"], row["iterations"]) == ("fp32", False, 2)
    assert "gpu" not in row and 0 < row["wall"]["p50_ms"] <= row["wall"]["p99_ms"]
    assert any("CUDA graphs" in s for s in report["skipped"]) and any("fp16" in s for s in report["skipped"])
    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["gpu"] is None and env["driver"] is None
    assert report["peak"] is None and "peak_share" not in row
    assert "| inference, batch 1 | fp32 | no |" in report["_markdown"]


def test_flop_count_is_the_models_own_and_the_rate_follows_from_it(report: dict) -> None:
    cfg = load_train_config(REPO / "config" / "train" / "demo.yaml")
    model = dataclasses.replace(cfg.model, clip_dim=0)  # the deployed graph: no CLIP head
    assert report["flops"]["forward"] == flops(model).flops
    [row] = report["inference"]
    assert row["achieved_tflops"] == pytest.approx(flops(model).flops / (row["wall"]["p50_ms"] / 1000) / 1e12)


def test_training_step_runs_every_loss_term_with_backward_flops(report: dict) -> None:
    train = report["training"]
    assert train["loss_terms"] == DEMO_TERMS
    assert (train["batch"], train["steps"], train["amp"]) == (1, 1, "off")
    assert train["seconds_per_step"] > 0 and train["peak_memory_mib"] > 0
    cfg = load_train_config(REPO / "config" / "train" / "demo.yaml")
    forward = flops(cfg.model).flops  # with the CLIP head the clip term trains
    assert train["step_flops"] > 2 * forward  # forward + backward (about twice the forward) were counted


@pytest.mark.parametrize(
    ("name", "label", "fp16", "fp32"),
    [
        ("NVIDIA H200", "H200 SXM", 989.5, 67.0),
        ("NVIDIA H200 NVL", "H200 NVL", 835.5, 60.0),
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.5, 67.0),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756.0, 51.0),
        ("NVIDIA A100-SXM4-80GB", "A100", 312.0, 19.5),
        ("NVIDIA GeForce RTX 3090", "RTX 3090", 71.0, 35.6),
        ("NVIDIA L4", "L4", 121.0, 30.3),
        ("Orin", "Jetson AGX Orin 64GB", 42.5, 5.3),
    ],
)
def test_peak_table_by_device_name(name: str, label: str, fp16: float, fp32: float) -> None:
    assert gpu_bench.peak_for(name) == {"device": label, "fp16_tensor_tflops": fp16, "fp32_tflops": fp32}


def test_unknown_device_has_no_peak_and_shares_use_the_matching_precision() -> None:
    assert gpu_bench.peak_for("NVIDIA L40S") is None and gpu_bench.peak_for("Tesla T4") is None
    report = {
        "peak": {"device": "H200 SXM", "fp16_tensor_tflops": 1000.0, "fp32_tflops": 50.0},
        "flops": {"forward": 2_000_000_000_000},
        "inference": [
            {"precision": "fp16", "gpu": {"p50_ms": 4.0}, "wall": {"p50_ms": 5.0}},
            {"precision": "fp32", "gpu": {"p50_ms": 100.0}, "wall": {"p50_ms": 101.0}},
        ],
        "training": {"step_flops": 3_000_000_000_000, "seconds_per_step": 0.5},
    }
    gpu_bench.flop_rates(report)
    fp16, fp32 = report["inference"]
    assert fp16["achieved_tflops"] == pytest.approx(500.0) and fp16["peak_share"] == pytest.approx(0.5)  # 2e12 / 4 ms
    assert fp32["achieved_tflops"] == pytest.approx(20.0) and fp32["peak_share"] == pytest.approx(0.4)
    assert report["training"]["achieved_tflops"] == pytest.approx(6.0)
