"""Benchmark core: warm-up excluded, exact percentiles from a scripted clock, copy share, JSON round trip."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping

import numpy as np
import pytest

from occ_ros.core.grid import GridSpec
from occ_ros.core.preprocess import PreprocessConfig
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.inference.backend import InferenceBackend, InferenceTiming
from occ_ros.inference.bench import MARKDOWN_COLUMNS, BenchResult, MachineInfo, cpu_model, run_bench
from occ_ros.inference.model_info import ModelInfo

INFO = ModelInfo(
    grid=GridSpec.named("demo"),
    vocabulary=Vocabulary.occ3d(),
    cameras=("front", "back"),
    preprocess=PreprocessConfig(32, 48),
)
WARMUP_TIMING = InferenceTiming(h2d=0.009, compute=0.001, d2h=0.0)  # copy share 0.9: must not count
TIMED = [
    InferenceTiming(h2d=0.001, compute=0.006, d2h=0.003),  # share 0.4
    InferenceTiming(h2d=0.002, compute=0.002, d2h=0.0),  # 0.5
    InferenceTiming(h2d=0.0, compute=0.004, d2h=0.0),  # 0.0
    InferenceTiming(h2d=0.001, compute=0.001, d2h=0.0),  # 0.5
    InferenceTiming(h2d=0.0, compute=0.0, d2h=0.0),  # 0.0 (total 0)
]
DURATIONS_S = [0.010, 0.020, 0.040, 0.030, 0.100]  # per timed run


class FakeBackend(InferenceBackend):
    """Returns zero outputs of the model's shapes and the next scripted timing; counts its runs."""

    name = "onnxruntime"

    def __init__(self, timings: list[InferenceTiming]) -> None:
        super().__init__("models/fake.onnx", INFO)
        self.timings = timings
        self.calls = 0
        self.device = "cuda:0"
        self.gpu_name = "Fake GPU 80GB"

    @property
    def provider(self) -> str:
        return "FakeExecutionProvider"

    def _run(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], InferenceTiming]:
        timing = self.timings[self.calls]
        self.calls += 1
        shapes = self.info.output_shapes()
        outputs: dict[str, np.ndarray] = {
            "labels": np.zeros(shapes["labels"], np.uint8),
            "confidence": np.ones(shapes["confidence"], np.float32),
        }
        return outputs, timing


def _scripted_clock(durations: list[float]) -> Iterator[float]:
    """perf_counter values: each run starts 1 s after the previous one started and lasts its duration."""
    for i, duration in enumerate(durations):
        yield float(i + 1)
        yield float(i + 1) + duration


@pytest.fixture
def clock(monkeypatch):
    values = _scripted_clock(DURATIONS_S)

    def perf_counter() -> float:
        return next(values)  # StopIteration past the script: more clock reads than 2 per timed run

    monkeypatch.setattr(time, "perf_counter", perf_counter)
    return values


def test_warmup_runs_are_not_recorded_and_percentiles_are_numpys(clock):
    backend = FakeBackend([WARMUP_TIMING] * 3 + TIMED)
    result = run_bench(backend, iterations=5, warmup=3)
    assert backend.calls == 3 + 5
    assert next(clock, None) is None  # exactly two clock reads per timed run, none for the warm-up
    assert (result.iterations, result.warmup) == (5, 3)
    latencies = np.array(result.latencies_ms)
    assert latencies == pytest.approx([10, 20, 40, 30, 100])
    assert [result.p50_ms, result.p90_ms, result.p99_ms] == list(np.percentile(latencies, [50, 90, 99]))
    # sorted 10 20 30 40 100: p90 at rank 3.6 = 40 + 0.6 * 60, p99 at rank 3.96 = 40 + 0.96 * 60
    assert result.p50_ms == pytest.approx(30)
    assert result.p90_ms == pytest.approx(76)
    assert result.p99_ms == pytest.approx(97.6)
    assert (result.mean_ms, result.min_ms, result.max_ms) == pytest.approx((40, 10, 100))
    assert result.throughput_fps == pytest.approx(25.0)  # 1000 / 40 ms at batch 1


def test_copy_share_and_split_come_from_the_timed_runs_only(clock):
    result = run_bench(FakeBackend([WARMUP_TIMING] * 2 + TIMED), iterations=5, warmup=2)
    assert result.copy_share == pytest.approx((0.4 + 0.5 + 0.0 + 0.5 + 0.0) / 5)
    assert result.h2d_ms == pytest.approx(0.8)  # mean of 1, 2, 0, 1, 0 ms
    assert result.compute_ms == pytest.approx(2.6)
    assert result.d2h_ms == pytest.approx(0.6)


def test_result_describes_model_backend_shapes_and_machine(clock):
    backend = FakeBackend(TIMED)
    result = run_bench(backend, iterations=5, warmup=0, precision="fp16")
    assert (result.model, result.backend, result.provider) == (
        "models/fake.onnx",
        "onnxruntime",
        "FakeExecutionProvider",
    )
    assert (result.device, result.precision, result.batch) == ("cuda:0", "fp16", 1)
    assert result.input_shapes == INFO.input_shapes() == {k: v.shape for k, v in backend.example_feeds().items()}
    assert result.output_shapes == INFO.output_shapes() == {"labels": (1, 80, 80, 8), "confidence": (1, 80, 80, 8)}
    machine = result.machine
    assert machine.gpu == "Fake GPU 80GB" and machine.cpu == cpu_model() and machine.cpu
    assert machine.logical_cores >= 1 and machine.numpy == np.__version__ and machine.python
    assert "T" in result.timestamp and result.timestamp.endswith("+00:00")


def test_json_round_trip_and_markdown_row(clock, tmp_path):
    result = run_bench(FakeBackend(TIMED), iterations=5, warmup=0)
    data = json.loads(result.to_json())
    assert data["p90_ms"] == result.p90_ms and data["input_shapes"]["images"] == [1, 2, 3, 32, 48]
    assert data["machine"]["gpu"] == "Fake GPU 80GB"
    assert BenchResult.from_json(result.to_json()) == result
    path = result.save_json(tmp_path / "out" / "bench.json")
    assert BenchResult.from_json(path.read_text()) == result

    header = BenchResult.markdown_header().splitlines()
    row = result.to_markdown_row()
    assert len(header) == 2 and header[0].count("|") == row.count("|") == len(MARKDOWN_COLUMNS) + 1
    assert "| fake.onnx | onnxruntime | FakeExecutionProvider | cuda:0 | fp32 | 30.00 | 76.00 | 97.60 | 40.00 |" in row
    assert "| 25.0 | 28.0 |" in row and "Fake GPU 80GB /" in row


def test_explicit_feeds_no_timing_and_bad_arguments(monkeypatch):
    class NoTiming(FakeBackend):
        def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            outputs, _ = self._run(self.check_feeds(feeds))
            return outputs  # never sets last_timing

    ticks = iter(np.arange(0.0, 100.0, 0.5))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))
    backend = NoTiming(TIMED)
    feeds = backend.example_feeds(seed=3)
    result = run_bench(backend, iterations=2, warmup=1, feeds=feeds)
    assert result.latencies_ms == (500.0, 500.0) and result.throughput_fps == 2.0
    assert result.copy_share is None and result.h2d_ms is None and "| - |" in result.to_markdown_row()
    assert BenchResult.from_dict(result.to_dict()) == result
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        run_bench(backend, iterations=0)
    with pytest.raises(ValueError, match="warmup must be >= 0"):
        run_bench(backend, warmup=-1)
    assert MachineInfo.current().describe().endswith("threads)")
