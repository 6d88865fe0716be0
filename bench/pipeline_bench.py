#!/usr/bin/env python3
"""Node-side overhead per frame and memory under load, on real nuScenes-size input.

    .venv/bin/python bench/pipeline_bench.py [--frames 30] [--load-seconds 20] [--backend-ms 100] [--json OUT]

``--load-seconds 0`` skips the load part; ``--json`` also writes every figure to a JSON file (for ``bench/ab.py``).

Overhead: six real 1600x900 camera images (../shared/fixtures/nuscenes_sample) as raw ``rgb8`` Image messages
and, separately, as the original JPEG CompressedImage messages, with their real calibration, through
:class:`occ_ros.pipeline.pipeline.OccupancyPipeline` at the Occ3D config (6 x 256 x 704 input, 200x200x16 grid),
plus the output messages the node publishes (PointCloud2, dense grid, a capped MarkerArray). The backend is replaced
by one that returns the official Occ3D label file of the fixture (a real scene's occupancy, ~10^4 occupied voxels)
instantly, so the numbers are everything the node does except the network: decode, calibration, preprocess,
postprocess, messages.

Load: frames arrive at 30 Hz while the backend takes ``--backend-ms`` per frame (slower than the cameras) through
the node's :class:`~occ_ros.pipeline.worker.LatestFrameWorker`; the process' resident memory is sampled every
100 ms. Bounded memory = flat RSS; the newest complete frame = every processed frame was the newest submitted
when the worker picked it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.io.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"


def rss_mb() -> float:
    """Current resident set size of this process, MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def fixture_backend(delay_s: float = 0.0) -> Any:
    """An InferenceBackend at the Occ3D config whose output is the fixture's Occ3D ground truth."""
    from occ_ros.core.grid import GridSpec
    from occ_ros.core.preprocess import PreprocessConfig
    from occ_ros.core.rig import NUSCENES_CAMERAS
    from occ_ros.core.vocabulary import Vocabulary
    from occ_ros.inference.backend import InferenceBackend, InferenceTiming
    from occ_ros.inference.model_info import ModelInfo

    with np.load(FIXTURES / "occ3d_sample" / "labels.npz") as npz:
        labels = npz["semantics"][None].copy()
    confidence = np.ones(labels.shape, dtype=np.float32)
    info = ModelInfo(GridSpec.named("occ3d"), Vocabulary.occ3d(), NUSCENES_CAMERAS, PreprocessConfig(256, 704))

    class FixtureBackend(InferenceBackend):
        name = "onnxruntime"

        @property
        def provider(self) -> str:
            return f"fixture output after {delay_s * 1e3:.0f} ms"

        def _run(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], InferenceTiming]:
            if delay_s:
                time.sleep(delay_s)
            return {"labels": labels, "confidence": confidence}, InferenceTiming(0.0, delay_s, 0.0)

    return FixtureBackend(FIXTURES / "occ3d_sample" / "labels.npz", info)


def frame_sets(compressed: bool, count: int) -> list[Any]:
    """``count`` FrameSets of the fixture's six cameras (stamps 1/30 s apart; messages shared between frames):
    the keyframe's own JPEGs as CompressedImage, or its decoded pixels as raw ``rgb8`` Image messages."""
    from occ_ros.core.frames import CameraMessage, FrameSet
    from occ_ros.datasets.keyframe import load_keyframe
    from occ_ros.io.rosbag import image_msg

    keyframe = load_keyframe(FIXTURES / "nuscenes_sample")
    first = keyframe.frame_set()
    if not compressed:
        images = keyframe.images()
        cams = first.cameras.values()
        first = FrameSet(
            first.stamp_ns,
            {
                c.name: CameraMessage(
                    c.name,
                    image_msg(images[c.name], first.stamp_ns, c.info.header.frame_id),
                    c.info,
                    c.base_from_optical,
                )
                for c in cams
            },
        )
    return [FrameSet(first.stamp_ns + i * 33_333_333, dict(first.cameras)) for i in range(count)]


def overhead(compressed: bool, count: int) -> dict[str, float]:
    """p50 milliseconds per stage over ``count`` frames (after one warm-up frame), plus the output messages."""
    from occ_ros.pipeline.messages import dense_grid_msg, marker_array_msg, pointcloud2_msg, rosbags_message_types
    from occ_ros.pipeline.outputs import class_cubes
    from occ_ros.pipeline.pipeline import OccupancyPipeline

    pipeline = OccupancyPipeline(fixture_backend())
    types = rosbags_message_types()
    frames = frame_sets(compressed, count + 1)
    pipeline.process(frames[0])
    cloud_ms, grid_ms, marker_ms, node_ms = [], [], [], []
    for frame in frames[1:]:
        t0 = time.perf_counter()
        result = pipeline.process(frame)
        t1 = time.perf_counter()
        pointcloud2_msg(types, result.cloud, frame.stamp_ns, "base_link")
        t2 = time.perf_counter()
        dense_grid_msg(types, result.labels)
        t3 = time.perf_counter()
        cubes, _ = class_cubes(result.cloud, pipeline.info.vocabulary, 50_000)
        marker_array_msg(types, cubes, frame.stamp_ns, "base_link", (0.4, 0.4, 0.4))
        t4 = time.perf_counter()
        cloud_ms.append((t2 - t1) * 1e3)
        grid_ms.append((t3 - t2) * 1e3)
        marker_ms.append((t4 - t3) * 1e3)
        node_ms.append((t3 - t0 - result.timings["inference"]) * 1e3)
    snap = pipeline.stats.snapshot()
    row = {stage: snap.stages[stage].p50_ms for stage in ("decode", "calibration", "preprocess", "postprocess")}
    row["inference (fixture)"] = snap.stages["inference"].p50_ms
    row["PointCloud2"] = float(np.percentile(cloud_ms, 50))
    row["dense grid"] = float(np.percentile(grid_ms, 50))
    row["node-side total (p50)"] = float(np.percentile(node_ms, 50))
    row["node-side total (p99)"] = float(np.percentile(node_ms, 99))
    row["MarkerArray (rate-limited, when subscribed)"] = float(np.percentile(marker_ms, 50))
    row["occupied voxels"] = float(len(result.cloud))
    return row


def load(seconds: float, backend_ms: float) -> dict[str, float]:
    """30 Hz frames into a slower backend through the latest-frame worker; RSS samples and frame order."""
    from occ_ros.pipeline.pipeline import OccupancyPipeline
    from occ_ros.pipeline.worker import LatestFrameWorker

    pipeline = OccupancyPipeline(fixture_backend(backend_ms / 1e3))
    frames = frame_sets(False, int(seconds * 30))
    latest = {"submitted": -1}
    stale = []

    def process(i: int) -> None:
        if i != latest["submitted"]:
            stale.append(i)
        pipeline.process(frames[i])

    worker: LatestFrameWorker[int] = LatestFrameWorker(process)
    worker.start()
    samples = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_mb())
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    for i in range(len(frames)):
        latest["submitted"] = i
        worker.submit(i)
        time.sleep(max(0.0, start + (i + 1) / 30 - time.perf_counter()))
    worker.stop()
    stop.set()
    sampler.join()
    half = len(samples) // 2
    return {
        "frames submitted": float(worker.submitted),
        "frames processed": float(worker.processed),
        "frames dropped (superseded)": float(worker.dropped),
        "processed frames that were not the newest at pick-up": float(len(stale)),
        "RSS first half, max (MB)": float(max(samples[:half])),
        "RSS second half, max (MB)": float(max(samples[half:])),
        "RSS end (MB)": float(samples[-1]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--load-seconds", type=float, default=20.0)
    parser.add_argument("--backend-ms", type=float, default=100.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not (FIXTURES / "nuscenes_sample").is_dir():
        print(f"needs the real-data fixtures in {FIXTURES}", file=sys.stderr)
        return 1
    machine = f"{platform.machine()} {platform.processor() or ''}, Python {platform.python_version()}"
    print(f"machine: {machine}")
    report: dict[str, Any] = {"machine": machine, "load_1min": os.getloadavg()[0]}
    for compressed in (False, True):
        row = overhead(compressed, args.frames)
        report["jpeg" if compressed else "raw"] = row
        print(f"\n{'JPEG CompressedImage' if compressed else 'raw rgb8 Image'} x 6 (1600x900), p50 ms:")
        for key, value in row.items():
            print(f"  {key:45s} {value:9.2f}")
    if args.load_seconds > 0:
        print(f"\nload: 30 Hz cameras, backend {args.backend_ms:.0f} ms/frame, {args.load_seconds:.0f} s:")
        report["load"] = load(args.load_seconds, args.backend_ms)
        for key, value in report["load"].items():
            print(f"  {key:55s} {value:9.1f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
