"""Latency benchmark of a loaded model (``occ bench``): percentiles, throughput and host<->device copy share.

:func:`run_bench` runs a backend's :meth:`~.backend.InferenceBackend.run` ``warmup`` times unrecorded, then
``iterations`` times timed with :func:`time.perf_counter` around each call, and returns a :class:`BenchResult`:
p50 / p90 / p99 (numpy's linear percentiles), mean, min and max latency in milliseconds, throughput at the feeds'
batch size, the mean split into host->device copy, compute and device->host copy (from each run's
:attr:`~.backend.InferenceBackend.last_timing`) and a description of the machine. Torch-free: numpy only.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .backend import InferenceBackend

MARKDOWN_COLUMNS = (
    "model",
    "backend",
    "provider",
    "device",
    "precision",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "mean ms",
    "frames/s",
    "copy %",
    "machine",
)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; :mod:`platform` elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


@dataclass(frozen=True)
class MachineInfo:
    """What ran a benchmark.

    Attributes:
        cpu: CPU model name.
        logical_cores: ``os.cpu_count()``.
        python: Python version.
        numpy: numpy version.
        platform: ``platform.platform()``.
        gpu: GPU name when the backend reports one (``backend.gpu_name``), else None.
    """

    cpu: str
    logical_cores: int
    python: str
    numpy: str
    platform: str
    gpu: str | None = None

    @classmethod
    def current(cls, gpu: str | None = None) -> MachineInfo:
        return cls(
            cpu=cpu_model(),
            logical_cores=int(os.cpu_count() or 0),
            python=platform.python_version(),
            numpy=np.__version__,
            platform=platform.platform(),
            gpu=gpu,
        )

    def describe(self) -> str:
        """One line: ``<gpu> / <cpu> (<n> threads)``."""
        cpu = f"{self.cpu} ({self.logical_cores} threads)"
        return f"{self.gpu} / {cpu}" if self.gpu else cpu


@dataclass(frozen=True)
class BenchResult:
    """One benchmark of one model on one backend.

    Latencies are wall-clock milliseconds of :meth:`InferenceBackend.run` (input checks, copies, compute, output
    conversion). ``copy_share`` is the mean over runs of ``(h2d + d2h) / total`` of the backend's own split
    (None when the backend reports no timing); ``h2d_ms`` / ``compute_ms`` / ``d2h_ms`` are the means of that split.
    ``settings`` are the backend's CPU settings in effect (:attr:`InferenceBackend.settings`: threads, spinning).
    """

    model: str
    backend: str
    provider: str
    device: str
    precision: str
    iterations: int
    warmup: int
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    throughput_fps: float | None
    copy_share: float | None
    h2d_ms: float | None
    compute_ms: float | None
    d2h_ms: float | None
    input_shapes: dict[str, tuple[int, ...]]
    output_shapes: dict[str, tuple[int, ...]]
    machine: MachineInfo
    timestamp: str
    latencies_ms: tuple[float, ...] = field(default=(), repr=False)
    settings: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shapes"] = {k: list(v) for k, v in self.input_shapes.items()}
        data["output_shapes"] = {k: list(v) for k, v in self.output_shapes.items()}
        data["latencies_ms"] = list(self.latencies_ms)
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchResult:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        values["input_shapes"] = {k: tuple(int(d) for d in v) for k, v in data["input_shapes"].items()}
        values["output_shapes"] = {k: tuple(int(d) for d in v) for k, v in data["output_shapes"].items()}
        values["machine"] = MachineInfo(**data["machine"])
        values["latencies_ms"] = tuple(float(x) for x in data.get("latencies_ms", ()))
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> BenchResult:
        return cls.from_dict(json.loads(text))

    def save_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (parents created)."""
        out = Path(path)
        from occ_ros.io.atomic import atomic_write_text

        atomic_write_text(out, self.to_json() + "\n")
        return out

    def summary(self) -> str:
        """A few human-readable lines (``occ bench``'s output)."""
        lines = [
            f"{Path(self.model).name} on {self.backend} ({self.provider}, {self.precision}), {self.iterations} runs "
            f"after {self.warmup} warm-up runs:",
            f"  latency p50 {self.p50_ms:.2f} ms  p90 {self.p90_ms:.2f} ms  p99 {self.p99_ms:.2f} ms  "
            f"(mean {self.mean_ms:.2f}, min {self.min_ms:.2f}, max {self.max_ms:.2f})",
        ]
        if self.throughput_fps is not None:
            lines.append(f"  throughput {self.throughput_fps:.1f} frames/s at batch {self.batch}")
        if self.copy_share is not None:
            lines.append(
                f"  host<->device copies {100 * self.copy_share:.1f}% of the time (h2d {self.h2d_ms:.2f} ms, compute "
                f"{self.compute_ms:.2f} ms, d2h {self.d2h_ms:.2f} ms)"
            )
        if self.settings:
            lines.append("  runtime: " + ", ".join(f"{k} {v}" for k, v in self.settings.items()))
        lines.append(f"  machine: {self.machine.describe()}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ markdown
    @staticmethod
    def markdown_header() -> str:
        """Header and separator lines of the table :meth:`to_markdown_row` fills."""
        return "| " + " | ".join(MARKDOWN_COLUMNS) + " |\n|" + "---|" * len(MARKDOWN_COLUMNS)

    def to_markdown_row(self) -> str:
        fps = f"{self.throughput_fps:.1f}" if self.throughput_fps is not None else "-"
        copy = f"{100 * self.copy_share:.1f}" if self.copy_share is not None else "-"
        cells = (
            Path(self.model).name,
            self.backend,
            self.provider,
            self.device,
            self.precision,
            f"{self.p50_ms:.2f}",
            f"{self.p90_ms:.2f}",
            f"{self.p99_ms:.2f}",
            f"{self.mean_ms:.2f}",
            fps,
            copy,
            self.machine.describe(),
        )
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _mean_ms(values: Sequence[float]) -> float:
    return float(np.mean(values)) * 1000.0


def run_bench(
    backend: InferenceBackend,
    iterations: int = 50,
    warmup: int = 5,
    feeds: Mapping[str, np.ndarray] | None = None,
    precision: str = "fp32",
    device: str | None = None,
) -> BenchResult:
    """Benchmark ``backend.run(feeds)``: ``warmup`` unrecorded runs, then ``iterations`` timed ones.

    Args:
        backend: a loaded backend (its optional ``device`` and ``gpu_name`` attributes are recorded).
        iterations: timed runs (>= 1).
        warmup: untimed runs first (>= 0): lazy initialisation, autotuning, allocator growth.
        feeds: batched inputs; default ``backend.example_feeds()``.
        precision: label of the model's precision (``fp32``, ``fp16``, ...), recorded as given.
        device: recorded device; default ``backend.device`` when the backend has one, else ``"unknown"``.
    Raises:
        ValueError: ``iterations`` < 1 or ``warmup`` < 0.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    inputs = dict(feeds) if feeds is not None else backend.example_feeds()
    for _ in range(warmup):
        backend.run(inputs)

    latencies: list[float] = []
    h2d: list[float] = []
    compute: list[float] = []
    d2h: list[float] = []
    shares: list[float] = []
    outputs: dict[str, np.ndarray] = {}
    for _ in range(iterations):
        backend.last_timing = None
        start = time.perf_counter()
        outputs = backend.run(inputs)
        latencies.append(time.perf_counter() - start)
        timing = backend.last_timing
        if timing is not None:
            h2d.append(timing.h2d)
            compute.append(timing.compute)
            d2h.append(timing.d2h)
            shares.append(timing.copy_share)

    ms = np.asarray(latencies, dtype=np.float64) * 1000.0
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    mean = float(ms.mean())
    images = inputs.get("images")
    batch = int(np.shape(images)[0]) if images is not None and np.ndim(images) > 0 else 1
    timed = len(shares) == iterations
    gpu = getattr(backend, "gpu_name", None)
    return BenchResult(
        model=str(backend.path),
        backend=backend.name,
        provider=backend.provider,
        device=str(device if device is not None else getattr(backend, "device", "unknown")),
        precision=precision,
        iterations=iterations,
        warmup=warmup,
        batch=batch,
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        mean_ms=mean,
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        throughput_fps=batch * 1000.0 / mean if mean > 0 else None,
        copy_share=float(np.mean(shares)) if timed else None,
        h2d_ms=_mean_ms(h2d) if timed else None,
        compute_ms=_mean_ms(compute) if timed else None,
        d2h_ms=_mean_ms(d2h) if timed else None,
        input_shapes={k: tuple(int(d) for d in np.shape(v)) for k, v in inputs.items()},
        output_shapes={k: tuple(int(d) for d in np.shape(v)) for k, v in outputs.items()},
        machine=MachineInfo.current(gpu=str(gpu) if gpu else None),
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        latencies_ms=tuple(float(x) for x in ms),
        settings=dict(backend.settings),
    )
