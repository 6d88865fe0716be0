"""Relative depth calibrated without LiDAR on real KITTI frames, scored against the LiDAR (issue 19, §4).

The relative teacher (Mobile PyDNet, ``config/teachers/pydnet_kitti.yaml``) gives each frame a relative inverse
depth ``r`` with ``1 / depth = scale * r + shift``. Five ways to get ``scale`` and ``shift`` are compared against
the frame's own LiDAR (the camera depth of every point that projects into image_2, 1 m < depth <= 80 m; AbsRel
and delta1 per frame, then averaged over frames, as the model's README measures them):

* ``uncalibrated``: ``depth = 1 / r``;
* ``LiDAR median``: ``depth = s / r`` with ``s`` making the median match the LiDAR's (an oracle);
* ``LiDAR LSQ``: least squares of ``1 / z_lidar ~ a r + b`` over the frame's points (an oracle);
* ``photometric, per frame``: :func:`occ_training.labels.depth_calibration.fit_scale_shift` from the neighbouring
  frames' images and the KITTI poses (no LiDAR), one affine per frame;
* ``photometric, per sequence``: the same, one affine for the whole 10-frame sequence.

The LiDAR is read here for scoring only; the calibration never sees it. Run::

    python scripts/kitti_depth_study.py --data ../shared/fixtures/kitti_mini [--sequences 00 04] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.eval.depth import lidar_depth_image

REPO = Path(__file__).resolve().parents[1]
MIN_DEPTH, MAX_DEPTH = 1.0, 80.0
METHODS = (
    "uncalibrated",
    "LiDAR median (oracle)",
    "LiDAR LSQ scale+shift (oracle)",
    "photometric, per frame",
    "photometric, per sequence",
)


def frame_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(AbsRel, delta1) of one frame over its LiDAR pixels in [MIN_DEPTH, MAX_DEPTH]."""
    from occ_ros.eval.depth import DepthMetric

    metric = DepthMetric(MIN_DEPTH, MAX_DEPTH)
    metric.update(np.clip(pred, 0.0, MAX_DEPTH), gt)
    result = metric.compute()
    return result.abs_rel, result.delta1


def inverse_to_depth(inverse: np.ndarray) -> np.ndarray:
    """Metric depth from an inverse-depth map (0 where the inverse depth is not positive)."""
    inv = np.asarray(inverse, dtype=np.float64)
    return np.where(inv > 0, 1.0 / np.maximum(inv, 1e-9), 0.0).astype(np.float32)


def oracle_median(rel: np.ndarray, gt: np.ndarray) -> np.ndarray:
    keep = (gt >= MIN_DEPTH) & (gt <= MAX_DEPTH) & (rel > 0)
    naive = 1.0 / rel[keep]
    return inverse_to_depth(rel / float(np.median(gt[keep]) / np.median(naive)))


def oracle_lsq(rel: np.ndarray, gt: np.ndarray) -> np.ndarray:
    keep = (gt >= MIN_DEPTH) & (gt <= MAX_DEPTH) & np.isfinite(rel)
    a, b = np.polyfit(rel[keep].astype(np.float64), 1.0 / gt[keep].astype(np.float64), 1)
    return inverse_to_depth(a * rel + b)


def study(
    data: Path,
    sequences: Sequence[str] | None,
    relative_depth: Callable[[np.ndarray], np.ndarray],
    neighbours: tuple[int, ...] = (-2, -1, 1, 2),
    progress: bool = True,
    calibration_mask: Callable[[np.ndarray, Any], np.ndarray] | None = None,
) -> dict:
    """Every method's AbsRel / delta1 per sequence and over all frames (see the module docstring)."""
    import torch

    from occ_ros.datasets.semantickitti import SemanticKittiReader, read_scan
    from occ_training.labels.depth_calibration import CalibrationConfig, CalibrationFrame, calibrate_sequence

    torch.manual_seed(0)
    reader = SemanticKittiReader(data, sequences=sequences or None, every="all", load_gt=False)
    by_sequence: dict[str, list[int]] = {}
    for i in range(len(reader)):
        by_sequence.setdefault(reader.load(i, images=False).scene, []).append(i)
    rows: dict[str, dict[str, list[tuple[float, float]]]] = {}
    seconds = {"frame": 0.0, "sequence": 0.0}
    for scene, indices in by_sequence.items():
        samples = [reader.load(i) for i in indices]
        rig = samples[0].rig
        (cam,) = rig
        frames, gts = [], []
        for sample in samples:
            image = sample.images[cam.name]
            rel = relative_depth(image).astype(np.float32)
            valid = None if calibration_mask is None else {cam.name: calibration_mask(image, reader.vocabulary)}
            frames.append(CalibrationFrame({cam.name: image}, {cam.name: rel}, sample.world_from_ego, valid))
            scan = read_scan(data / "sequences" / scene / "velodyne" / f"{sample.frame}.bin")
            gts.append(lidar_depth_image(scan, cam))
        fits = {}
        for mode in ("frame", "sequence"):
            start = time.perf_counter()
            fits[mode] = calibrate_sequence(frames, rig, CalibrationConfig(mode=mode, neighbours=neighbours))
            seconds[mode] += time.perf_counter() - start
        per: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
        for k, (frame, gt) in enumerate(zip(frames, gts, strict=True)):
            rel = frame.relative[cam.name]
            per[METHODS[0]].append(frame_scores(inverse_to_depth(rel), gt))
            per[METHODS[1]].append(frame_scores(oracle_median(rel, gt), gt))
            per[METHODS[2]].append(frame_scores(oracle_lsq(rel, gt), gt))
            per[METHODS[3]].append(frame_scores(fits["frame"][k][cam.name].apply(rel), gt))
            per[METHODS[4]].append(frame_scores(fits["sequence"][k][cam.name].apply(rel), gt))
        rows[scene] = per
        if progress:
            line = "  ".join(f"{m.split(',')[-1].strip()} {np.mean([s[0] for s in v]):.3f}" for m, v in per.items())
            print(f"sequence {scene}: AbsRel {line}", file=sys.stderr)
    frames_total = sum(len(v[METHODS[0]]) for v in rows.values())
    summary = {
        m: {
            "abs_rel": float(np.mean([s[0] for per in rows.values() for s in per[m]])),
            "delta1": float(np.mean([s[1] for per in rows.values() for s in per[m]])),
        }
        for m in METHODS
    }
    return {
        "frames": frames_total,
        "sequences": {
            scene: {
                m: {"abs_rel": float(np.mean([s[0] for s in v])), "delta1": float(np.mean([s[1] for s in v]))}
                for m, v in per.items()
            }
            for scene, per in rows.items()
        },
        "all": summary,
        "calibration_seconds_per_frame": {k: v / max(frames_total, 1) for k, v in seconds.items()},
    }


def markdown(result: dict) -> str:
    """The table of docs/results.md: one row per method, AbsRel and delta1 over all frames, then per sequence."""
    scenes = list(result["sequences"])
    head = "| method | AbsRel | delta1 | " + " | ".join(f"{s} AbsRel" for s in scenes) + " |"
    lines = [head, "|" + "---|" * (3 + len(scenes))]
    for m in METHODS:
        a = result["all"][m]
        per = " | ".join(f"{result['sequences'][s][m]['abs_rel']:.3f}" for s in scenes)
        lines.append(f"| {m} | {a['abs_rel']:.3f} | {a['delta1']:.3f} | {per} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "fixtures" / "kitti_mini")
    parser.add_argument("--sequences", nargs="*", help="sequence numbers (default: all)")
    parser.add_argument("--card", default="pydnet_kitti", help="a relative depth model card (default pydnet_kitti)")
    parser.add_argument(
        "--seg-card",
        help="a segmentation card (e.g. espnetv2_cityscapes): calibrate only on pixels of static classes, as "
        "occ labels does (default: every pixel)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from occ_training.teachers.onnx_teacher import OnnxDepthTeacher

    teacher = OnnxDepthTeacher(args.card, threads=args.threads)
    if teacher.kind != "relative":
        raise SystemExit(f"{args.card}: a relative depth card is needed, this one gives {teacher.kind} depth")

    def relative(image: np.ndarray) -> np.ndarray:
        (depth,) = teacher.estimate_images([image])
        return np.where(depth.valid, depth.values, np.nan)

    mask = None
    if args.seg_card:
        from occ_ros.datasets.semantickitti import semantickitti_vocabulary
        from occ_training.labels.pipeline import calibration_pixels
        from occ_training.teachers.onnx_teacher import OnnxSegmentationTeacher

        segmenter = OnnxSegmentationTeacher(semantickitti_vocabulary(), args.seg_card, threads=args.threads)

        def mask(image: np.ndarray, vocabulary: Any) -> np.ndarray:
            (semantic,) = segmenter.segment_images([image])
            return calibration_pixels(semantic.labels()[0], vocabulary)

    result = study(args.data, args.sequences, relative, calibration_mask=mask)
    print(markdown(result))
    print(f"\n{result['frames']} frames; calibration s/frame: {result['calibration_seconds_per_frame']}")
    if args.json:
        from occ_ros.io.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0 if math.isfinite(result["all"][METHODS[3]]["abs_rel"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
