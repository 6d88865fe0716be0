"""The demo's real-data stage on KITTI: one real sequence of ``../shared/fixtures/kitti_mini`` through the label-free
path, scored against the LiDAR.

1. ``occ gt --from-lidar``: SemanticKITTI voxel ground truth from the labelled LiDAR (evaluation only);
2. ``occ labels --teacher onnx --config config/labels/kitti.yaml``: ESPNetv2 segmentation, Mobile PyDNet relative
   depth calibrated photometrically (no LiDAR), densified pseudo-labels in the official prediction format;
3. ``occ eval --benchmark semantickitti --mask camera``: SSC scores inside the camera frustum;
4. pictures: the image with its segmentation and calibrated depth, the depth error against the LiDAR, and
   bird's-eye maps of the LiDAR ground truth and the pseudo-labels.

Every step is the command a user runs (called in-process through :func:`occ_tools.cli.main`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros import viz
from occ_ros.core.resources import source_root

ROOT = source_root()
#: the sequence the demo labels: 10 frames, the test sequence of models/kitti.ckpt (config/train/kitti.yaml)
DEMO_SEQUENCE = "04"
DEPTH_BINS = (0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 80.0)


def run_occ(*argv: str) -> None:
    """Run one `occ` command in-process, its printout (tables, progress lines) kept out of the caller's."""
    import contextlib
    import io

    from occ_tools.cli import main as occ

    with contextlib.redirect_stdout(io.StringIO()):
        code = occ(list(argv))
    if code != 0:
        raise RuntimeError(f"occ {' '.join(argv)} failed")


def ssc_eval(pred: Path, gt: Path, mask: str, report: Path, sequence: str | None = None) -> dict[str, Any]:
    """`occ eval --benchmark semantickitti` of ``pred`` against ``gt`` inside ``mask`` (one sequence, or every
    one with ground truth): its JSON report, also written to ``report``."""
    argv = ["eval", "--benchmark", "semantickitti", "--pred", str(pred), "--gt", str(gt), "--mask", mask]
    if sequence is not None:
        argv += ["--sequences", sequence]
    run_occ(*argv, "--json", str(report), "--quiet")
    return dict(json.loads(report.read_text()))


def kitti_stage(
    kitti: Path, out: Path, sequence: str = DEMO_SEQUENCE, frame: int = 5, model: Path | None = None
) -> dict[str, Any]:
    """Run the stage on ``kitti`` (a SemanticKITTI root with velodyne/ and labels/) into ``out``.

    Args:
        model: a network trained on other sequences' pseudo-labels (``models/kitti.ckpt``), also run and scored.
    Returns:
        ``{"sequence", "frustum": occ eval's JSON of the pseudo-labels, "network": {predictions, frustum} (with a
        model), "pictures": {name: path}, "calibration": {scale, shift}}``.
    """
    out.mkdir(parents=True, exist_ok=True)
    gt, labels = out / "gt", out / "labels"
    run_occ("gt", "--from-lidar", "--data", str(kitti), "--out", str(gt), "--sequences", sequence, "--quiet")
    run_occ(
        "labels", "--data", str(kitti), "--out", str(labels), "--teacher", "onnx", "--sequences", sequence,
        "--config", str(ROOT / "config" / "labels" / "kitti.yaml"), "--quiet",
    )  # fmt: skip
    frustum = ssc_eval(labels, gt, "camera", out / "eval_frustum.json", sequence)
    result: dict[str, Any] = {"sequence": sequence, "frustum": frustum}
    network = None
    if model is not None and model.is_file():
        result["network"] = predict_sequence(model, kitti, sequence, out / "network", gt)
        network = out / "network"
    result["pictures"], result["calibration"] = kitti_pictures(kitti, gt, labels, out, sequence, frame, network)
    return result


def predict_sequence(model: Path, kitti: Path, sequence: str, out: Path, gt: Path) -> dict[str, Any]:
    """``occ predict`` of ``model`` on one sequence (official prediction files included) and its frustum scores."""
    argv = ["--model", str(model), "--data", str(kitti), "--sequences", sequence, "--out", str(out), "--quiet"]
    run_occ("predict", *argv)
    return {"predictions": str(out), "frustum": ssc_eval(out, gt, "camera", out / "eval_frustum.json", sequence)}


def kitti_frame_set(sample: Any) -> Any:
    """The node's input for a SemanticKITTI sample: its image file's bytes as a CompressedImage, the CameraInfo of
    its calibration and the camera's pose in the ego (Velodyne) frame."""
    from occ_ros.core.frames import CameraMessage, FrameSet
    from occ_ros.io.rosbag import camera_info_msg, compressed_image_from_bytes

    cameras = {}
    for cam in sample.rig:
        path = Path(sample.extras["image_files"][cam.name])
        fmt = "png" if path.suffix.lower() == ".png" else "jpeg"
        image = compressed_image_from_bytes(path.read_bytes(), sample.stamp_ns, cam.frame_id, fmt)
        cameras[cam.name] = CameraMessage(cam.name, image, camera_info_msg(cam, sample.stamp_ns), cam.ego_from_cam)
    return FrameSet(sample.stamp_ns, cameras)


def deployed_check(onnx_path: Path, kitti: Path, sequence: str, torch_predictions: Path) -> dict[str, Any]:
    """The exported network through the node's pipeline (JPEG CompressedImage + CameraInfo messages in, ONNX
    Runtime) on every frame of ``sequence``: agreement with ``occ predict``'s PyTorch labels and stage latencies."""
    from occ_ros.datasets.sample import LABELS_FILE, load_labels
    from occ_ros.datasets.semantickitti import SemanticKittiReader
    from occ_ros.inference.backend import open_backend
    from occ_ros.pipeline.pipeline import OccupancyPipeline, PipelineConfig

    reader = SemanticKittiReader(kitti, sequences=[sequence], every="all", load_gt=False)
    same = total = 0
    with open_backend(onnx_path) as backend:
        pipeline = OccupancyPipeline(backend, PipelineConfig(tuple(reader.load(0, images=False).rig.names)))
        for index in range(len(reader)):
            sample = reader.load(index, images=False)
            result = pipeline.process(kitti_frame_set(sample))
            reference = load_labels(torch_predictions / sample.key / LABELS_FILE).semantics
            same += int((result.labels == reference).sum())
            total += reference.size
        snapshot = pipeline.stats.snapshot()
    return {
        "frames": len(reader),
        "agreement": same / max(1, total),
        "stages_p50_ms": {k: round(v.p50_ms, 1) for k, v in snapshot.stages.items()},
    }


def kitti_pictures(
    kitti: Path, gt_root: Path, labels_root: Path, out: Path, sequence: str, frame: int, network: Path | None = None
) -> tuple[dict[str, str], dict[str, float]]:
    """The stage's pictures for frame ``frame`` of ``sequence`` (and its depth errors over the whole sequence)."""
    from occ_ros.datasets.sample import LABELS_FILE, load_labels
    from occ_ros.datasets.semantickitti import SemanticKittiReader, read_scan
    from occ_ros.eval.depth import DepthMetric, lidar_depth_image
    from occ_training.labels.pipeline import SCALE_KEY, SHIFT_KEY
    from occ_training.teachers.factory import TeacherSpec, build_teachers

    reader = SemanticKittiReader(kitti, sequences=[sequence], every="all", gt_root=gt_root)
    vocab = reader.vocabulary
    seg_teacher, depth_teacher = build_teachers(TeacherSpec(kind="onnx"), kitti, vocab)
    paths = {name: out / f"kitti_{name}.png" for name in ("teachers", "depth_error", "bev")}

    # Calibrated depth of every frame against its own LiDAR (the LiDAR is read here for scoring only).
    lidar, predicted, per_bin = [], [], []
    calibration: dict[str, float] = {}
    for index in range(len(reader)):
        sample = reader.load(index)
        (cam,) = sample.rig
        fitted = load_labels(labels_root / sample.key / LABELS_FILE).extra
        scale, shift = float(fitted[SCALE_KEY][0]), float(fitted[SHIFT_KEY][0])
        calibration = {"scale": scale, "shift": shift}
        depth = depth_teacher.estimate(sample)[cam.name].to_metric(scale, shift, max_depth=80.0)
        truth = lidar_depth_image(read_scan(kitti / "sequences" / sequence / "velodyne" / f"{sample.frame}.bin"), cam)
        keep = (truth > 1.0) & (truth <= 80.0) & (depth > 0)
        lidar.append(truth[keep])
        predicted.append(depth[keep])
        if int(sample.frame) == frame:
            shown = (sample, depth, seg_teacher.segment(sample)[cam.name].labels()[0])
    true_d, pred_d = np.concatenate(lidar), np.concatenate(predicted)
    for lo, hi in zip(DEPTH_BINS[:-1], DEPTH_BINS[1:], strict=True):
        metric = DepthMetric(lo, hi)
        metric.update(pred_d, true_d)
        per_bin.append(metric.compute())

    sample, depth, segmentation = shown
    (cam,) = sample.rig
    image = sample.images[cam.name]
    stacked = np.concatenate(
        [image, viz.colorize_labels(segmentation, vocab), viz.colorize_depth(depth, max_depth=40.0)], axis=0
    )
    viz.save_png(paths["teachers"], stacked)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    from matplotlib.colors import LogNorm

    _, _, _, image_ = left.hist2d(true_d, pred_d, bins=120, range=[[0, 60], [0, 60]], cmap="viridis", norm=LogNorm())
    fig.colorbar(image_, ax=left, label="pixels")
    left.plot([0, 60], [0, 60], color="cyan", lw=1)
    left.set(xlabel="LiDAR depth (m)", ylabel="calibrated PyDNet depth (m)", title="every LiDAR pixel")
    centres = [(lo + hi) / 2 for lo, hi in zip(DEPTH_BINS[:-1], DEPTH_BINS[1:], strict=True)]
    right.bar(centres, [r.abs_rel for r in per_bin], width=np.diff(DEPTH_BINS) * 0.9, color="tab:orange")
    right.set(xlabel="LiDAR depth (m)", ylabel="AbsRel", title="error by distance")
    fig.suptitle(
        f"KITTI {sequence}: relative depth calibrated photometrically (no LiDAR), scored against the LiDAR "
        f"({true_d.size} pixels, {len(reader)} frames)"
    )
    fig.tight_layout()
    fig.savefig(paths["depth_error"], dpi=100)
    plt.close(fig)

    gt = reader.read_gt(gt_root / "sequences" / sequence / "voxels" / f"{sample.frame}.label")
    mask = gt.mask_camera
    pseudo = load_labels(labels_root / sample.key / LABELS_FILE).semantics
    panels: list[np.ndarray] = [viz.bev_image(gt.semantics, vocab, mask), viz.bev_image(pseudo, vocab, mask)]
    titles = ["LiDAR ground truth (evaluation only)", "pseudo-labels (camera + teachers, no LiDAR)"]
    if network is not None:
        from occ_ros.core.grid import upsample_labels

        coarse = load_labels(network / sample.key / LABELS_FILE).semantics  # the network's grid coarsens the GT's
        fine = upsample_labels(coarse, gt.semantics.shape[0] // coarse.shape[0])
        panels.append(viz.bev_image(fine, vocab, mask))
        titles.append("network (models/kitti.ckpt, one frame)")
    viz.legend_figure(
        paths["bev"],
        panels,
        titles,
        vocab,
        suptitle=f"KITTI {sequence} frame {sample.frame}: bird's-eye view inside the camera frustum where the LiDAR "
        "saw, ego at the bottom edge facing up",
    )
    return {name: str(path) for name, path in paths.items()}, calibration
