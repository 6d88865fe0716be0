#!/usr/bin/env python3
"""Reproduce the KITTI table of ``shared/models/espnetv2_cityscapes/README.md`` with the project's ESPNetv2.

    .venv/bin/python scripts/espnetv2_kitti_iou.py                     # 8 sequences x frames 0,3,6,9, 384x1248
    .venv/bin/python scripts/espnetv2_kitti_iou.py --frames 0 --size 256x832
    .venv/bin/python scripts/espnetv2_kitti_iou.py --onnx              # ONNX Runtime instead of PyTorch
    .venv/bin/python scripts/espnetv2_kitti_iou.py --parity            # PyTorch table + ONNX Runtime agreement

For every frame the image is resized (PIL bilinear) to ``--size``, normalised with the ImageNet statistics and
segmented (:mod:`occ_training.teachers.espnetv2`); the network-size label map is read (nearest pixel, pixel-centre
convention: :func:`point_predictions`) at the labelled LiDAR points that project into image_2 with camera depth
> 1 m (``uvw = P2 @ Tr4 @ [x y z 1]``).
Raw SemanticKITTI ids -> learning classes with ``config/datasets/semantic-kitti.yaml``; Cityscapes classes ->
learning classes as the README (sky and background -> none, a miss of the point's class). Per class
IoU = TP / (TP + FP + FN) over all points of all frames; the table sits next to the README's numbers.

The fixture (KITTI / SemanticKITTI, non-commercial licences) is read in place and never copied.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURE = SHARED / "fixtures" / "kitti_mini"
SEQUENCES = ("00", "01", "02", "04", "05", "06", "07", "09")
FRAMES = (0, 3, 6, 9)
MIN_DEPTH = 1.0

# The README's table: learning-class name -> (IoU at 384x1248, IoU at 256x832); then accuracy and mIoUs.
README_IOU: dict[str, tuple[float, float]] = {
    "road": (0.779, 0.786),
    "sidewalk": (0.203, 0.158),
    "building": (0.553, 0.545),
    "fence": (0.221, 0.193),
    "vegetation": (0.588, 0.567),
    "terrain": (0.453, 0.396),
    "pole": (0.331, 0.309),
    "traffic-sign": (0.147, 0.072),
    "car": (0.580, 0.612),
    "bicycle": (0.411, 0.411),
    "person": (0.195, 0.193),
    "truck": (0.002, 0.000),
    "other-vehicle": (0.001, 0.008),
}
README_SUMMARY: dict[str, tuple[float, float]] = {
    "point accuracy": (0.741, 0.726),
    "mIoU, 13 mappable classes present": (0.343, 0.327),
    "mIoU, all classes present": (0.263, 0.250),
}
README_POINTS = 578_506
README_SIZES = ((384, 1248), (256, 832))


# ---------------------------------------------------------------------------------------------- data
@dataclass
class Frame:
    """One KITTI frame: the image and its labelled LiDAR points in pixels."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    u: np.ndarray  # (P,) float64 pixel column of each kept point
    v: np.ndarray  # (P,) float64 pixel row
    labels: np.ndarray  # (P,) int64 learning class 1..19 (0 never: unlabelled points are dropped)


def learning_lut() -> np.ndarray:
    """Raw SemanticKITTI id (lower 16 bits) -> learning class (0 = unlabelled / ignored)."""
    from occ_ros.datasets.semantickitti import load_semantickitti_config

    cfg = load_semantickitti_config(ROOT / "config" / "datasets" / "semantic-kitti.yaml")
    lut = np.zeros(1 << 16, dtype=np.int64)
    for raw, learn in cfg.learning_map.items():
        lut[raw] = learn
    return lut


def learning_names() -> list[str]:
    from occ_ros.datasets.semantickitti import load_semantickitti_config

    cfg = load_semantickitti_config(ROOT / "config" / "datasets" / "semantic-kitti.yaml")
    return [cfg.class_name(i) for i in range(20)]


def cityscapes_to_learning() -> np.ndarray:
    """(20,) Cityscapes output index -> SemanticKITTI learning class, -1 for none (sky, background)."""
    from occ_training.teachers.espnetv2 import CITYSCAPES_CLASSES, CITYSCAPES_TO_SEMANTICKITTI

    names = learning_names()
    out = np.full(len(CITYSCAPES_CLASSES), -1, dtype=np.int64)
    for i, cls in enumerate(CITYSCAPES_CLASSES):
        target = CITYSCAPES_TO_SEMANTICKITTI[cls]
        if target is not None:
            out[i] = names.index(target)
    return out


def load_frame(fixture: Path, sequence: str, index: int, lut: np.ndarray | None = None) -> Frame:
    """Read ``sequences/<sequence>/{image_2,velodyne,labels}/<index>`` and project the labelled points."""
    from PIL import Image

    from occ_ros.datasets.semantickitti import read_calib

    seq = fixture / "sequences" / sequence
    lut = learning_lut() if lut is None else lut
    with Image.open(seq / "image_2" / f"{index:06d}.jpg") as im:
        image = np.asarray(im.convert("RGB"))
    height, width = image.shape[:2]
    calib = read_calib(seq / "calib.txt")
    tr4 = np.eye(4)
    tr4[:3] = calib["Tr"]
    points = np.fromfile(seq / "velodyne" / f"{index:06d}.bin", dtype=np.float32).reshape(-1, 4)
    raw = np.fromfile(seq / "labels" / f"{index:06d}.label", dtype=np.uint32)
    if raw.shape[0] != points.shape[0]:
        raise ValueError(f"{seq}: frame {index} has {points.shape[0]} points but {raw.shape[0]} labels")
    labels = lut[raw & 0xFFFF]
    xyz1 = np.concatenate([points[:, :3].astype(np.float64), np.ones((len(points), 1))], axis=1)
    uvw = (calib["P2"] @ tr4 @ xyz1.T).T
    depth = uvw[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = uvw[:, 0] / depth
        v = uvw[:, 1] / depth
    keep = (depth > MIN_DEPTH) & (u >= 0) & (u < width) & (v >= 0) & (v < height) & (labels > 0)
    return Frame(image=image, u=u[keep], v=v[keep], labels=labels[keep])


def point_predictions(label_map: np.ndarray, frame: Frame) -> np.ndarray:
    """Label at each point: the nearest pixel of the network-size ``label_map`` (h, w).

    Projected coordinates have pixel centres at integers (pixel i covers [i - 0.5, i + 0.5)); with the resize's
    half-pixel convention u maps to ``(u + 0.5) * w / W - 0.5`` and its nearest pixel is
    ``floor((u + 0.5) * w / W)`` (at w = W: ``round(u)``). This is the convention the README's numbers used:
    thin classes (pole, traffic-sign) move by ~0.01 IoU with a half-pixel offset."""
    height, width = frame.image.shape[:2]
    h, w = label_map.shape
    rows = np.clip(np.floor((frame.v + 0.5) * h / height).astype(np.int64), 0, h - 1)
    cols = np.clip(np.floor((frame.u + 0.5) * w / width).astype(np.int64), 0, w - 1)
    return label_map[rows, cols].astype(np.int64)


# ---------------------------------------------------------------------------------------------- scores
@dataclass
class Scores:
    """Confusion counts over points: ``conf[gt, pred]`` with pred 20 = none (sky / background)."""

    conf: np.ndarray = field(default_factory=lambda: np.zeros((20, 21), dtype=np.int64))

    def add(self, gt: np.ndarray, pred_learning: np.ndarray) -> None:
        pred = np.where(pred_learning < 0, 20, pred_learning)
        np.add.at(self.conf, (gt, pred), 1)

    @property
    def points(self) -> int:
        return int(self.conf.sum())

    def iou(self, cls: int) -> float:
        tp = self.conf[cls, cls]
        fn = self.conf[cls].sum() - tp
        fp = self.conf[:, cls].sum() - tp
        denom = tp + fp + fn
        return float(tp / denom) if denom else float("nan")

    def present(self) -> list[int]:
        return [c for c in range(1, 20) if self.conf[c].sum() > 0]

    def accuracy(self) -> float:
        return float(np.trace(self.conf[:, :20]) / max(self.points, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default=",".join(map(str, FRAMES)), help="comma-separated frame indices")
    parser.add_argument("--sequences", default=",".join(SEQUENCES), help="comma-separated sequence names")
    parser.add_argument("--size", default="384x1248", help="network input HxW (multiples of 32)")
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--onnx", action="store_true", help="run an ONNX export of the network with ONNX Runtime")
    parser.add_argument("--parity", action="store_true", help="run PyTorch and ONNX Runtime, report their agreement")
    parser.add_argument("--threads", type=int, default=0, help="torch / ORT intra-op threads (0: default)")
    args = parser.parse_args(argv)

    import torch

    from occ_training.teachers.espnetv2 import default_weights_path, export_espnetv2_onnx, load_espnetv2, preprocess

    h, w = (int(s) for s in args.size.lower().split("x"))
    size = (h, w)
    frames = [int(f) for f in args.frames.split(",") if f.strip()]
    sequences = [s.strip() for s in args.sequences.split(",") if s.strip()]
    weights = args.weights or default_weights_path(ROOT)
    if not args.fixture.is_dir() or not weights.is_file():
        print(f"missing fixture {args.fixture} or weights {weights}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_espnetv2(weights)
    session: Any = None
    if args.onnx or args.parity:
        import tempfile

        import onnxruntime as ort

        tmp = Path(tempfile.mkdtemp()) / "espnetv2.onnx"
        export_espnetv2_onnx(weights, tmp, height=h, width=w)
        opts = ort.SessionOptions()
        if args.threads:
            opts.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(tmp), opts, providers=["CPUExecutionProvider"])
    use_onnx = session is not None and args.onnx
    parity = {"pixels": 0, "agree": 0, "max_diff": 0.0}

    def predict(image: np.ndarray) -> np.ndarray:
        x = preprocess(image, size)
        ort_logits = np.zeros(0)
        if session is not None:
            ort_logits = session.run(["logits"], {"image": x.numpy()})[0][0]
            if not args.parity:
                return ort_logits.argmax(0).astype(np.uint8)
        with torch.inference_mode():
            logits = model(x)[0].numpy()
        if args.parity:
            parity["pixels"] += logits[0].size
            parity["agree"] += int((logits.argmax(0) == ort_logits.argmax(0)).sum())
            parity["max_diff"] = max(parity["max_diff"], float(np.abs(logits - ort_logits).max()))
        return (ort_logits if use_onnx else logits).argmax(0).astype(np.uint8)

    lut = learning_lut()
    to_learning = cityscapes_to_learning()
    names = learning_names()
    scores = Scores()
    net_time = 0.0
    start = time.perf_counter()
    for seq in sequences:
        for idx in frames:
            frame = load_frame(args.fixture, seq, idx, lut)
            t0 = time.perf_counter()
            label_map = predict(frame.image)
            net_time += time.perf_counter() - t0
            pred = to_learning[point_predictions(label_map, frame)]
            scores.add(frame.labels, pred)
            print(
                f"  seq {seq} frame {idx}: {len(frame.labels)} points, acc {np.mean(pred == frame.labels):.3f}",
                flush=True,
            )
    n_frames = len(sequences) * len(frames)
    elapsed = time.perf_counter() - start

    col = README_SIZES.index(size) if size in README_SIZES else None
    ref_name = f"README {h}x{w}" if col is not None else "README (no column at this size)"
    full = col is not None and frames == list(FRAMES) and sequences == list(SEQUENCES)
    note = "" if full else " (README: all 32 frames; this run a subset, numbers not comparable one to one)"
    print()
    print(
        f"ESPNetv2 s=2.0 on kitti_mini: {n_frames} frames, {scores.points:,} points (README {README_POINTS:,}), "
        f"input {h}x{w}, {'ONNX Runtime' if use_onnx else 'PyTorch'}{note}"
    )
    print()
    print(f"| class (points) | IoU (this run) | {ref_name} | diff |")
    print("|---|---|---|---|")
    mappable = {int(c) for c in to_learning if c >= 0}
    present = scores.present()
    for cls in sorted(present, key=lambda c: -int(scores.conf[c].sum())):
        name = names[cls]
        iou = scores.iou(cls)
        if cls in mappable:
            ref = README_IOU.get(name, (float("nan"), float("nan")))[col] if col is not None else float("nan")
            diff = f"{iou - ref:+.3f}" if np.isfinite(ref) else ""
            ref_s = f"{ref:.3f}" if np.isfinite(ref) else ""
        else:
            ref_s, diff = "0 (no such class)", ""
        print(f"| {name} ({int(scores.conf[cls].sum()):,}) | {iou:.3f} | {ref_s} | {diff} |")
    acc = scores.accuracy()
    miou_map = float(np.mean([scores.iou(c) for c in present if c in mappable]))
    miou_all = float(np.mean([scores.iou(c) for c in present]))
    n_map = sum(c in mappable for c in present)
    for label, value, key in (
        ("point accuracy", acc, "point accuracy"),
        (f"mIoU, {n_map} mappable classes present", miou_map, "mIoU, 13 mappable classes present"),
        (f"mIoU, all {len(present)} classes present", miou_all, "mIoU, all classes present"),
    ):
        ref = README_SUMMARY[key][col] if col is not None else float("nan")
        ref_s = f"{ref:.3f}" if np.isfinite(ref) else ""
        diff = f"{value - ref:+.3f}" if np.isfinite(ref) else ""
        print(f"| **{label}** | **{value:.3f}** | {ref_s} | {diff} |")
    if args.parity:
        print()
        print(
            f"parity ONNX Runtime vs PyTorch ({n_frames} frames, {parity['pixels']:,} pixels): argmax agreement "
            f"{100 * parity['agree'] / max(parity['pixels'], 1):.4f} %, max |logit diff| {parity['max_diff']:.2e}"
        )
    print()
    print(
        f"time: {elapsed:.1f} s for {n_frames} frames ({net_time / max(n_frames, 1):.2f} s/frame in the network, "
        f"{torch.get_num_threads()} torch threads)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
