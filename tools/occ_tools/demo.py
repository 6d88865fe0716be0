"""``occ demo``: the main job end to end on the built-in synthetic world, with no ROS, no GPU and no dataset.

Stages (every output under ``OUT``, default ``out/demo``):

1. **synthetic world** -- a sequence with exact ground truth and its rosbag2 recording, read back through the file
   reader and the rosbag2 reader (their poses must agree);
2. **pseudo-labels** -- the simulated foundation-model teachers (relative depth calibrated from photometric
   consistency, densified over time), i.e. ``occ labels``;
3. **network** -- the shipped checkpoint (``models/demo.ckpt``, trained on other seeds) predicts every frame, and its
   CLIP head answers an open-vocabulary query. ``--train`` first makes the training data and trains the network
   (``occ train --config config/train/demo.yaml``, about an hour on 2 cores with its data) and uses that checkpoint
   instead;
4. **export** -- the checkpoint to a verified ONNX (parity with PyTorch, TensorRT op report), predicted again through
   ONNX Runtime, both backends timed, the TensorRT build command printed;
5. **replay** -- the recorded bag through the ROS node's pipeline (``occ replay``) into an MCAP of the node's output
   topics (opens in Foxglove, and holds ``~/costmap``, the planner's ``nav_msgs/OccupancyGrid``), with per-frame
   latencies, checked frame by frame against ``occ predict``;
6. **evaluation** -- ``occ eval`` of a neighbour-frame baseline, the pseudo-labels, the network and the replay against
   the ground truth, and the pictures: bird's-eye maps (GT vs pseudo-labels vs prediction), a 3-D voxel render, the
   prediction projected onto the cameras, the latency plot, the replay's costmap beside the ground truth's BEV;
7. **real data** -- the real nuScenes keyframe in ``../shared/fixtures/nuscenes_sample`` (six 1600x900 JPEGs, real
   calibration, LiDAR) through the same pipeline, with the prediction and the LiDAR sweep projected onto the images
   (skipped, saying so, when the fixtures are absent);
8. **real KITTI** -- one real sequence of ``../shared/fixtures/kitti_mini`` labelled without LiDAR (ONNX teachers,
   relative depth calibrated photometrically), scored against ground truth built from its labelled LiDAR, with
   pictures (:mod:`occ_tools.demo_kitti`; skipped, saying so, when the fixture is absent).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros import viz
from occ_ros.core.resources import shared_dir, source_root
from occ_ros.io.atomic import atomic_write_text

STAGES = 8
ROOT = source_root()
#: where the real-data fixtures live by default (``../shared/fixtures`` next to the repository)
DEFAULT_FIXTURES = shared_dir() / "fixtures"
#: models/demo.ckpt's data (config/train/demo.yaml, models/README.md): seed -> frames of ``<root>/seq_<seed>``
DEMO_TRAIN_SEQUENCES = {11: 32, 12: 32, 13: 32, 14: 32, 15: 32, **{seed: 16 for seed in range(41, 81)}}
DEMO_VAL_SEQUENCES = {21: 24}
#: unseen test sequences of docs/results.md
DEMO_TEST_SEQUENCES = {31: 24, 32: 24, 33: 24, 34: 24, 35: 24}
#: 3-D renders: a view from behind and above the ego, at this share of the grid's extent
RENDER_VIEW = viz.OrbitView(width=640, height=400, azimuth_deg=180.0, elevation_deg=55.0)
RENDER_DISTANCE = 0.6
OVERLAY_SCALE = 3  # the synthetic cameras are 200x112: overlays are drawn at 3x for legibility


# ----------------------------------------------------------------------------------------- data
def sim_pseudo_labels(data: Path, out: Path, progress: bool = True) -> dict[str, Any]:
    """``occ labels --teacher sim`` with config/labels/default.yaml: ``data`` -> ``out`` (resumes finished frames)."""
    from occ_ros.core.resources import config_dir
    from occ_ros.datasets.synth import SynthReader
    from occ_training.labels.pipeline import PseudoLabeller, load_label_settings, run_labels
    from occ_training.teachers.factory import TeacherSpec, build_teachers

    reader = SynthReader(data)
    config, sim = load_label_settings(config_dir() / "labels" / "default.yaml")
    spec = TeacherSpec(kind="sim", sim=sim)
    segmentation, depth = build_teachers(spec, data, reader.vocabulary)
    summary = run_labels(reader, out, PseudoLabeller(segmentation, depth, config), spec.describe(), progress=progress)
    return {
        "depth": depth.kind,
        "calibration": config.calibration,
        "window": config.lifting.window,
        "frames_per_second": round(summary.frames_per_second, 3),
    }


def labelled_sequence(path: Path, seed: int, frames: int, progress: bool = False) -> Path:
    """An ``occ synth`` sequence with ``occ labels --teacher sim`` pseudo-labels in ``path/pseudo_labels``, made
    (or completed) only where missing."""
    from occ_ros.datasets.synth import SynthReader
    from occ_training.synth.sequence import generate

    if not (path / "meta.json").exists():
        generate(path, frames=frames, seed=seed, progress=progress, overwrite=True)
    if len(list((path / "pseudo_labels").rglob("labels.npz"))) < len(SynthReader(path)):
        sim_pseudo_labels(path, path / "pseudo_labels", progress=progress)
    return path


def demo_training_data(root: Path, progress: bool = True) -> tuple[list[Path], list[Path]]:
    """models/demo.ckpt's training and validation sequences under ``root`` (``root/seq_<seed>``), made where
    missing: 45 training sequences (800 frames) and the validation sequence."""

    def made(sequences: dict[int, int]) -> list[Path]:
        return [labelled_sequence(root / f"seq_{seed}", seed, frames, progress) for seed, frames in sequences.items()]

    return made(DEMO_TRAIN_SEQUENCES), made(DEMO_VAL_SEQUENCES)


def read_back(data: Path) -> dict[str, Any]:
    """Read the sequence through the file reader and the rosbag2 reader; compare their poses."""
    from occ_ros.core.rig import config_path
    from occ_ros.datasets.rosbag_reader import RosbagReader
    from occ_ros.datasets.synth import SynthReader

    files = SynthReader(data)
    bag = RosbagReader(data / "bag", config_path("datasets", "synth_bag.yaml"))
    pose_err = max(
        float(np.abs(bag.load(i, images=False).world_from_ego - files.load(i, images=False).world_from_ego).max())
        for i in range(min(len(bag), len(files)))
    )
    return {"file_samples": len(files), "bag_samples": len(bag), "max_pose_difference_m": pose_err}


def neighbour_frame_baseline(data: Path, out: Path) -> Path:
    """Predict each frame with its neighbour's ground truth moved by the ego motion.

    Frame i uses frame i-1 (frame 0 uses frame 1): what a method that only remembers the last
    frame's map, with perfect odometry, would score. Writes ``out/<scene>/<frame>/labels.npz``.
    """
    from occ_ros.core.grid import resample_labels
    from occ_ros.datasets.synth import SynthReader
    from occ_ros.io.labels import LABELS_FILE, OccupancyLabels, save_labels

    reader = SynthReader(data)
    samples = [reader.load(i, images=False) for i in range(len(reader))]
    free = reader.vocabulary.free_index
    for i, s in enumerate(samples):
        src = samples[i - 1] if i > 0 else samples[min(1, len(samples) - 1)]
        assert s.gt is not None and src.gt is not None
        src_from_dst = np.linalg.inv(src.world_from_ego) @ s.world_from_ego
        pred = resample_labels(src.gt.semantics, reader.grid, src_from_dst, fill=free)
        save_labels(out / s.scene / s.frame / LABELS_FILE, OccupancyLabels(pred, grid=reader.grid))
    return out


# ----------------------------------------------------------------------------------------- network
def train_demo_network(out: Path, data_root: Path, overrides: list[str] | None = None) -> Path:
    """``occ demo --train``: models/demo.ckpt's recipe (training data, then ``occ train`` with config/train/demo.yaml)
    into ``out``; resumes an interrupted run. Returns the trained ``model.ckpt``."""
    from occ_ros.core.resources import config_dir
    from occ_training.trainer.config import load_train_config
    from occ_training.trainer.loop import train

    train_paths, val_paths = demo_training_data(data_root)
    data = [f"data.train=[{','.join(map(str, train_paths))}]", f"data.val=[{','.join(map(str, val_paths))}]"]
    config = load_train_config(config_dir() / "train" / "demo.yaml", [*data, f"out={out}", *(overrides or [])])
    result = train(config, resume=(out / "last.ckpt").exists(), progress=True)
    return result.out / "model.ckpt"


def predict_and_query(model: Path, data: Path, out: Path, query: str = "car") -> dict[str, Any]:
    """``occ predict`` with the checkpoint and ``occ query`` through its CLIP head."""
    from occ_ros.datasets.synth import SynthReader
    from occ_tools.predict import run_predict, run_query

    pred_dir = out / "predictions"
    shutil.rmtree(pred_dir, ignore_errors=True)
    summary = run_predict(model, data, pred_dir)
    queried = run_query(model, data, query, out / "query", picture_frame=len(SynthReader(data)) // 2)
    return {
        "model": str(model),
        "predictions": str(pred_dir),
        "frames": summary.frames,
        "seconds_per_frame": round(summary.seconds / max(1, summary.frames), 3),
        "query": {
            "text": query,
            "frames": queried.frames,
            "voxels": queried.matches,  # every frame, every voxel
            "picture": str(queried.picture),
            "picture_frame": queried.picture_frame,  # the picture's frame: its voxels and their scope
        },
    }


def export_stage(model: Path, data: Path, out: Path, parity_frames: int = 4, bench_runs: int = 10) -> dict[str, Any]:
    """``occ export`` of the checkpoint (with parity on the sequence), ``occ predict`` through ONNX Runtime
    compared with the checkpoint's predictions, ``occ bench`` of both on this CPU, and the TensorRT step (built
    when tensorrt is installed, else its trtexec command)."""
    from occ_export.onnx_export import export_onnx
    from occ_export.tensorrt_build import BuildSettings, trtexec_for
    from occ_ros.datasets.sample import LABELS_FILE, load_labels
    from occ_ros.inference.backend import open_backend
    from occ_ros.inference.bench import run_bench
    from occ_ros.model.checkpoint import load_checkpoint
    from occ_tools.predict import run_predict
    from occ_tools.queries import prompt_table

    onnx_path = out / "export" / f"{model.stem}.onnx"
    # `occ export --queries`: the features output and the class prompts' embeddings (not calibrated here: `occ
    # export --calibrate DATA` chooses the thresholds on a validation sequence, docs/export.md)
    prompts = prompt_table(load_checkpoint(model).model_info(("labels", "confidence", "features")))
    result = export_onnx(model, onnx_path, prompts=prompts, parity_data=data, parity_frames=parity_frames)
    assert result.parity is not None
    pred_dir = out / "predictions_onnx"
    shutil.rmtree(pred_dir, ignore_errors=True)
    run_predict(onnx_path, data, pred_dir)
    same = total = 0
    for path in sorted(pred_dir.rglob(LABELS_FILE)):
        a = load_labels(path).semantics
        b = load_labels(out / "predictions" / path.relative_to(pred_dir)).semantics
        same += int((a == b).sum())
        total += a.size
    latency = {}
    for name, path in (("onnxruntime", onnx_path), ("torch", model)):
        with open_backend(path, name, warmup=False) as backend:
            latency[name] = run_bench(backend, iterations=bench_runs, warmup=2).p50_ms
    try:
        import tensorrt  # noqa: F401

        engine = "build with: occ export --onnx ... --engine ... (tensorrt is installed)"
    except ImportError:
        command = trtexec_for(onnx_path, onnx_path.with_suffix(".engine"), BuildSettings(precision="fp16"))
        first = command.splitlines()[0].split("  #")[0]  # the 8.6 / 10.x line (11+ needs an --half ONNX)
        engine = f"TensorRT is not installed here; on the target (8.6 / 10.x): {first}"
    return {
        "onnx": str(onnx_path),
        "megabytes": round(result.bytes / 1e6, 2),
        "parity_agreement": result.parity.agreement,
        "max_logit_diff": result.parity.max_logit_diff,
        "trt_compat_ok": bool(result.compat.ok),
        "predict_agreement": same / max(1, total),
        "p50_ms": latency,
        "tensorrt": engine,
        "report": str(result.report_path),
    }


def replay_stage(data: Path, out: Path, onnx_path: Path) -> dict[str, Any]:
    """``occ replay`` of the synthetic bag with the exported model; its labels against ``occ predict``'s; the
    per-frame latencies as CSV and as a plot."""
    from occ_ros.core.rig import config_path
    from occ_ros.datasets.sample import LABELS_FILE, load_labels
    from occ_ros.datasets.synth import SynthReader
    from occ_ros.replay import replay, write_metrics, write_timings

    work = out / "replay"
    shutil.rmtree(work, ignore_errors=True)
    summary = replay(
        data / "bag",
        onnx_path,
        work / "output",
        params=config_path("occupancy.param.yaml"),  # the node's own parameters: replay runs the node's session
        gt=data,
        predictions=work / "labels",
        query="car",  # ~/query/voxels in the MCAP, as `ros2 topic pub /occupancy_node/query ... car` would
    )
    write_metrics(summary, work / "metrics.json")
    write_timings(summary, work / "timings.csv")
    plot = out / "latency.png"
    series = summary.stage_series()
    viz.latency_figure(
        plot,
        series,
        title=f"occ replay of the demo bag: {summary.backend} ({summary.provider}) on this machine",
    )
    reader = SynthReader(data)
    same = 0
    for i in range(len(reader)):
        sample = reader.load(i, images=False)
        replayed = work / "labels" / str(sample.stamp_ns) / LABELS_FILE
        offline = out / "predictions_onnx" / sample.scene / sample.frame / LABELS_FILE
        if replayed.exists() and np.array_equal(load_labels(replayed).semantics, load_labels(offline).semantics):
            same += 1
    node_stages = ("decode", "calibration", "preprocess", "postprocess")
    return {
        "bag": str(work / "output"),
        "metrics": str(work / "metrics.json"),
        "timings": str(work / "timings.csv"),
        "latency_plot": str(plot),
        "processed": summary.processed,
        "synchronized": summary.synchronized,
        "frames_equal_to_predict": same,
        "query_voxels_messages": summary.query_published,
        "frames": len(reader),
        "node_side_p50_ms": sum(v["p50_ms"] for k, v in summary.stages_ms.items() if k in node_stages),
        "inference_p50_ms": summary.stages_ms["inference"]["p50_ms"],
        "total_p50_ms": float(np.percentile(series["total"], 50)),
        "accuracy": summary.accuracy,
        "costmap": costmap_summary(work / "output", data),
    }


# ----------------------------------------------------------------------------------------- costmap
def replay_costmaps(bag: Path) -> dict[int, np.ndarray]:
    """The ``~/costmap`` messages of ``occ replay``'s output MCAP: header stamp (ns) -> (height, width) int8 cells."""
    from rosbags.highlevel import AnyReader

    from occ_ros.io.rosbag import typestore
    from occ_ros.replay import OUTPUT_TOPICS

    out: dict[int, np.ndarray] = {}
    with AnyReader([bag], default_typestore=typestore()) as reader:
        connections = [c for c in reader.connections if c.topic == OUTPUT_TOPICS["costmap"]]
        for conn, _, raw in reader.messages(connections=connections):
            msg: Any = reader.deserialize(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            out[stamp] = np.asarray(msg.data, dtype=np.int8).reshape(msg.info.height, msg.info.width)
    return out


def costmap_summary(bag: Path, data: Path) -> dict[str, Any]:
    """How many costmaps the replay wrote, their mean share of occupied / free / unknown cells, and their occupied
    cells against the costmap of the ground truth (its camera-visible voxels, ``mask_camera``), over all frames:

    * ``precision``, ``recall``: of the occupied cells, on the columns both call known;
    * ``occupied_unseen``: the share of the replay's occupied cells on columns the ground truth did not observe
      (occluded or out of range: the network fills them; the camera-view and occlusion rules turn most of them
      into unknown cells).
    """
    from occ_ros.datasets.synth import SynthReader
    from occ_ros.pipeline.costmap import costmap_cells
    from occ_ros.replay import OUTPUT_TOPICS

    published = replay_costmaps(bag)
    maps = list(published.values())
    share = {name: float(np.mean([(m == v).mean() for m in maps])) if maps else 0.0 for name, v in COSTMAP_VALUES}
    reader = SynthReader(data)
    hits = occupied = truth = unseen = 0
    for i in range(len(reader)):
        sample = reader.load(i, images=False)
        if sample.gt is None or sample.stamp_ns not in published:
            continue
        gt = costmap_cells(sample.gt.semantics, reader.grid, reader.vocabulary, observed=sample.gt.mask_camera)
        cells = published[sample.stamp_ns]
        known = (gt != -1) & (cells != -1)
        hits += int(((cells == 100) & (gt == 100) & known).sum())
        occupied += int(((cells == 100) & known).sum())
        truth += int(((gt == 100) & known).sum())
        unseen += int(((cells == 100) & (gt == -1)).sum())
    total_occupied = sum(int((m == 100).sum()) for m in maps)
    return {
        "topic": OUTPUT_TOPICS["costmap"],
        "messages": len(maps),
        **share,
        "precision": hits / occupied if occupied else 0.0,
        "recall": hits / truth if truth else 0.0,
        "occupied_unseen": unseen / total_occupied if total_occupied else 0.0,
    }


COSTMAP_VALUES = (("occupied", 100), ("free", 0), ("unknown", -1))


def costmap_picture(data: Path, out: Path, bag: Path, frame: int) -> Path:
    """``costmap.png``: the ground truth's bird's-eye view beside the costmap of the ground truth (camera-visible
    voxels) and the ``~/costmap`` that ``occ replay`` wrote for the same frame (the network's)."""
    from occ_ros.datasets.synth import SynthReader
    from occ_ros.pipeline.costmap import costmap_cells

    reader = SynthReader(data)
    sample = reader.load(frame, images=False)
    assert sample.gt is not None
    vocab, grid = reader.vocabulary, reader.grid
    gt, mask = sample.gt.semantics, sample.gt.mask_camera
    published = replay_costmaps(bag)[sample.stamp_ns]
    path = out / "costmap.png"
    viz.legend_figure(
        path,
        [
            viz.bev_image(gt, vocab, mask),
            viz.costmap_image(costmap_cells(gt, grid, vocab, observed=mask)),
            viz.costmap_image(published),
        ],
        ["ground truth (BEV)", "costmap of the ground truth", "~/costmap of the network (occ replay)"],
        vocab,
        suptitle=f"{sample.scene} frame {sample.frame}: obstacles 0.2-2.0 m high black, free white, unknown grey",
    )
    return path


# ----------------------------------------------------------------------------------------- evaluation
def evaluation_stage(data: Path, out: Path, labels_dir: Path, pred_dir: Path) -> dict[str, Any]:
    """``occ eval`` (Occ3D mIoU / IoU over the camera mask, RayIoU) of the baseline, the pseudo-labels and the
    network against the ground truth; writes ``eval_<name>.json``."""
    from occ_ros.eval.runner import evaluate, origins_from_dataset

    origins, grid = origins_from_dataset(data, data / "gts")
    rows: dict[str, Any] = {}
    candidates = {
        "baseline": neighbour_frame_baseline(data, out / "baseline"),
        "pseudo_labels": labels_dir,
        "network": pred_dir,
    }
    for name, folder in candidates.items():
        report = evaluate(folder, data / "gts", mask="camera", rayiou_origins=origins, grid=grid, progress=False)
        atomic_write_text(out / f"eval_{name}.json", json.dumps(report.to_dict(), indent=1))
        assert report.rayiou is not None
        rows[name] = {
            "miou": report.occ3d.miou,
            "iou": report.occ3d.iou,
            "rayiou": report.rayiou.rayiou,
            "frames": report.occ3d.samples,
            "report": str(out / f"eval_{name}.json"),
        }
    return rows


def render(semantics: np.ndarray, grid: Any, vocab: Any, mask: np.ndarray | None = None) -> np.ndarray:
    """The demo's 3-D view of a label grid (:data:`RENDER_VIEW`)."""
    extent = max(hi - lo for lo, hi in zip(grid.range_min[:2], grid.range_max[:2], strict=True))
    view = replace(RENDER_VIEW, distance=RENDER_DISTANCE * extent)
    return viz.render_voxels(semantics, grid, vocab, mask=mask, view=view)


def pictures(data: Path, out: Path, labels_dir: Path, pred_dir: Path, frame: int) -> dict[str, str]:
    """The synthetic frame ``frame``: camera / depth / class mosaics, bird's-eye maps (GT vs pseudo-labels vs
    prediction), a 3-D render of the three, and the prediction projected onto the six cameras."""
    import cv2

    from occ_ros.datasets.sample import LABELS_FILE, load_labels
    from occ_ros.datasets.synth import SynthReader

    reader = SynthReader(data)
    sample = reader.load(frame)
    vocab, grid = reader.vocabulary, reader.grid
    assert sample.gt is not None
    gt, mask = sample.gt.semantics, sample.gt.mask_camera
    pseudo = load_labels(labels_dir / sample.key / LABELS_FILE).semantics
    pred = load_labels(pred_dir / sample.key / LABELS_FILE).semantics
    paths = {name: out / f"{name}.png" for name in ("cameras", "depth", "semantics", "bev", "voxels_3d", "overlay")}

    viz.save_png(paths["cameras"], viz.camera_mosaic(sample.images))
    viz.save_png(paths["depth"], viz.camera_mosaic({c: viz.colorize_depth(d) for c, d in reader.depth(frame).items()}))
    viz.save_png(
        paths["semantics"],
        viz.camera_mosaic({c: viz.colorize_labels(s, vocab) for c, s in reader.semantics_2d(frame).items()}),
    )
    where = f"{sample.scene} frame {sample.frame}"
    viz.legend_figure(
        paths["bev"],
        [viz.bev_image(gt, vocab, mask), viz.bev_image(pseudo, vocab, mask), viz.bev_image(pred, vocab, mask)],
        ["ground truth", "pseudo-labels (no 3D labels used)", "network (single frame)"],
        vocab,
        suptitle=f"{where}: bird's-eye view of the camera-visible voxels, ego at the centre facing up",
    )
    renders = [render(v, grid, vocab, mask) for v in (gt, pseudo, pred)]
    viz.legend_figure(
        paths["voxels_3d"],
        renders,
        ["ground truth", "pseudo-labels", "network"],
        vocab,
        suptitle=f"{where}: camera-visible voxels seen from behind the ego (arrow: ego, facing forward)",
    )
    big = sample.rig.resized(sample.rig[0].width * OVERLAY_SCALE, sample.rig[0].height * OVERLAY_SCALE)
    images = {
        name: cv2.resize(img, (big[name].width, big[name].height), interpolation=cv2.INTER_CUBIC)
        for name, img in sample.images.items()
    }
    viz.save_png(paths["overlay"], viz.overlay_mosaic(images, big, pred, grid, vocab, stride=2))
    return {name: str(path) for name, path in paths.items()}


# ----------------------------------------------------------------------------------------- real data
def real_data_stage(fixtures: Path, onnx_path: Path, out: Path, repeats: int = 5) -> dict[str, Any]:
    """The real nuScenes keyframe (JPEG CompressedImage messages, CameraInfo from the real calibration) through the
    node's pipeline with the exported model; the prediction and the LiDAR sweep projected onto the 1600x900 images.

    The network was trained on the synthetic world, so its classes are not the point: the real image path, the real
    geometry and real sizes are. The LiDAR overlay shows the calibration is read right (points on the structure).
    """
    import cv2

    from occ_ros.datasets.keyframe import load_keyframe
    from occ_ros.inference.backend import open_backend
    from occ_ros.pipeline.pipeline import OccupancyPipeline, PipelineConfig

    keyframe = load_keyframe(fixtures / "nuscenes_sample")
    work = out / "real"
    work.mkdir(parents=True, exist_ok=True)
    with open_backend(onnx_path) as backend:
        pipeline = OccupancyPipeline(backend, PipelineConfig(tuple(keyframe.rig.names)))
        for i in range(repeats):  # the first includes warm-up; the stats show the steady state
            result = pipeline.process(keyframe.frame_set(keyframe.stamp_ns + i))
        snapshot = pipeline.stats.snapshot()
        vocab, grid = pipeline.info.vocabulary, pipeline.info.grid
    images = keyframe.images()
    in_image = {}
    lidar_tiles = {}
    for cam in keyframe.rig:
        points = keyframe.lidar_points_for(cam)
        uv, depth = cam.project(points)
        in_image[cam.name] = int((cam.in_image(uv) & (depth > 1.0)).sum())
        lidar_tiles[cam.name] = viz.project_points_overlay(images[cam.name], cam, points, radius=2)

    def half(mosaic: np.ndarray) -> np.ndarray:
        return cv2.resize(mosaic, (mosaic.shape[1] // 2, mosaic.shape[0] // 2), interpolation=cv2.INTER_AREA)

    paths = {"overlay": work / "overlay.png", "lidar": work / "lidar.png", "voxels_3d": work / "voxels_3d.png"}
    viz.save_png(paths["overlay"], half(viz.overlay_mosaic(images, keyframe.rig, result.labels, grid, vocab, stride=4)))
    viz.save_png(paths["lidar"], half(viz.camera_mosaic(lidar_tiles)))
    viz.save_png(paths["voxels_3d"], render(result.labels, grid, vocab))
    report = {
        "keyframe": str(keyframe.root),
        "image_size": [keyframe.rig[0].width, keyframe.rig[0].height],
        "input": "sensor_msgs/CompressedImage (the original JPEG bytes) + CameraInfo from the real calibration",
        "network_input": [pipeline.info.preprocess.width, pipeline.info.preprocess.height],
        "occupied_voxels": len(result.cloud),
        "stages_p50_ms": {k: v.p50_ms for k, v in snapshot.stages.items()},
        "lidar_points_in_image": in_image,
        "pictures": {k: str(v) for k, v in paths.items()},
    }
    atomic_write_text(work / "metrics.json", json.dumps(report, indent=1))
    return report


# ----------------------------------------------------------------------------------------- the job
def _stage(number: int, title: str) -> None:
    print(f"\n[{number}/{STAGES}] {title}", flush=True)


def run_demo(
    out: Path,
    frames: int = 12,
    seed: int = 3,
    train: bool = False,
    train_overrides: list[str] | None = None,
    fixtures: Path | None = DEFAULT_FIXTURES,
) -> dict[str, Any]:
    """Run every stage into ``out``; print where things are and the key numbers; write ``out/metrics.json``."""
    from occ_ros.core.resources import models_dir
    from occ_ros.datasets.synth import load_meta
    from occ_training.synth.sequence import generate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    t0 = time.perf_counter()
    timed: dict[str, float] = {}

    def run(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        value = fn()
        timed[name] = round(time.perf_counter() - start, 1)
        return value

    _stage(1, f"synthetic world: {frames} frames, seed {seed}, six cameras, rosbag2 recording -> {out / 'data'}")
    data = run("synth", lambda: generate(out / "data", frames=frames, seed=seed, preset="demo", overwrite=True))
    meta = load_meta(data)
    readers = read_back(data)
    summary["synth"] = {"dir": str(data), "frames": len(meta["frames"]), "classes_present": meta["classes_present"]}
    summary["readers"] = readers
    print(
        f"      {readers['bag_samples']} synchronized 6-camera samples from the bag; "
        f"poses agree with the files to {readers['max_pose_difference_m']:.1e} m"
    )

    _stage(2, "pseudo-labels: simulated teachers, relative depth calibrated photometrically, densified over time")
    labels_dir = out / "pseudo_labels"
    shutil.rmtree(labels_dir, ignore_errors=True)  # the sequence was just re-rendered: never resume old labels
    summary["pseudo_labels"] = {"dir": str(labels_dir), **run("labels", lambda: sim_pseudo_labels(data, labels_dir))}

    if train:
        _stage(3, "network: training it (models/demo.ckpt's recipe, demo.yaml; ~1 h on 2 cores with its data)")
        model = run("train", lambda: train_demo_network(out / "train", ROOT / "out" / "train_data", train_overrides))
    else:
        _stage(3, "network: models/demo.ckpt (trained on other seeds) predicts every frame; `occ demo --train` trains")
        model = models_dir() / "demo.ckpt"
    network = run("predict", lambda: predict_and_query(model, data, out))
    summary["network"] = network
    q = network["query"]
    shown = q["picture_frame"] or {}
    print(
        f"      open-vocabulary query {q['text']!r}: {q['voxels']} voxels over {q['frames']} frames (all voxels); "
        f"the picture, frame {shown.get('frame')}: {shown.get('voxels')} {shown.get('scope')}"
    )

    _stage(4, "export: checkpoint -> ONNX, parity with PyTorch, TensorRT op check, occ predict via ONNX Runtime")
    exported = run("export", lambda: export_stage(model, data, out))
    summary["export"] = exported
    p50 = exported["p50_ms"]
    print(
        f"      {exported['onnx']} ({exported['megabytes']} MB): argmax agreement with PyTorch "
        f"{100 * exported['parity_agreement']:.3f}% (max |logit diff| {exported['max_logit_diff']:.1e}); "
        f"TensorRT 8.6/10/11 op check {'passed' if exported['trt_compat_ok'] else 'FAILED'}"
    )
    print(
        f"      occ predict via ONNX Runtime agrees with the checkpoint on {100 * exported['predict_agreement']:.3f}% "
        f"of voxels; p50 on this CPU: ONNX Runtime {p50['onnxruntime']:.0f} ms, PyTorch {p50['torch']:.0f} ms"
    )
    print(f"      {exported['tensorrt']}")

    _stage(5, "replay: the bag through the ROS node's pipeline (occ replay) -> MCAP of the node's output topics")
    replayed = run("replay", lambda: replay_stage(data, out, Path(exported["onnx"])))
    summary["replay"] = replayed
    print(
        f"      {replayed['processed']}/{replayed['synchronized']} synchronized frames, "
        f"{replayed['frames_equal_to_predict']}/{replayed['frames']} identical to occ predict"
    )
    cm = replayed["costmap"]
    print(
        f"      {cm['messages']} costmaps (nav_msgs/OccupancyGrid) on {cm['topic']}: on average "
        f"{100 * cm['occupied']:.1f}% of the cells occupied, {100 * cm['free']:.1f}% free, "
        f"{100 * cm['unknown']:.1f}% unknown"
    )
    print(
        f"      against the ground truth's costmap (camera-visible voxels): occupied cells precision "
        f"{100 * cm['precision']:.1f}%, recall {100 * cm['recall']:.1f}%; {100 * cm['occupied_unseen']:.1f}% of the "
        "occupied cells lie where no camera saw the ground truth"
    )

    _stage(6, "evaluation against the ground truth (occ eval) and pictures")
    evaluation = run("eval", lambda: evaluation_stage(data, out, labels_dir, Path(network["predictions"])))
    summary["evaluation"] = evaluation
    for name, row in evaluation.items():
        print(f"      {name:14s} mIoU {row['miou']:6.2f}  IoU {row['iou']:6.2f}  RayIoU {row['rayiou']:6.2f}")
    frame = len(meta["frames"]) // 2
    pics = run("pictures", lambda: pictures(data, out, labels_dir, Path(network["predictions"]), frame))
    pics["latency"] = replayed["latency_plot"]
    pics["costmap"] = str(run("costmap", lambda: costmap_picture(data, out, Path(replayed["bag"]), frame)))
    pics["query"] = network["query"]["picture"]

    _stage(7, "real data: the nuScenes keyframe (six 1600x900 JPEGs, real calibration) through the node's pipeline")
    if fixtures is not None and (fixtures / "nuscenes_sample" / "calib.json").exists():
        real = run("real", lambda: real_data_stage(fixtures, Path(exported["onnx"]), out))
        summary["real_data"] = real
        stages = real["stages_p50_ms"]
        print(
            f"      {real['occupied_voxels']} occupied voxels; p50 decode {stages['decode']:.1f} ms, preprocess "
            f"{stages['preprocess']:.1f} ms, inference {stages['inference']:.1f} ms; LiDAR points in the images: "
            f"{min(real['lidar_points_in_image'].values())}-{max(real['lidar_points_in_image'].values())}"
        )
        pics.update({f"real_{k}": v for k, v in real["pictures"].items()})
    else:
        summary["real_data"] = {"skipped": f"no fixtures at {fixtures}/nuscenes_sample (pass --fixtures DIR)"}
        print(f"      skipped: {summary['real_data']['skipped']}")

    _stage(8, "real KITTI: a sequence labelled without LiDAR (ONNX teachers, photometric depth), scored on LiDAR")
    kitti = None if fixtures is None else fixtures / "kitti_mini"
    if kitti is not None and (kitti / "sequences").is_dir():
        from occ_tools.demo_kitti import kitti_stage

        real_kitti = run("kitti", lambda: kitti_stage(kitti, out / "kitti", model=models_dir() / "kitti.ckpt"))
        summary["kitti"] = real_kitti
        fr = real_kitti["frustum"]
        print(
            f"      sequence {real_kitti['sequence']}, inside the camera frustum: SSC mIoU {fr['miou_present']:.2f} "
            f"over {len(fr['present'])} classes present, completion IoU {fr['iou_completion']:.2f} "
            f"(precision {fr['precision']:.1f}, recall {fr['recall']:.1f})"
        )
        if "network" in real_kitti:
            net = real_kitti["network"]["frustum"]
            print(
                f"      models/kitti.ckpt (trained on the other sequences' pseudo-labels): SSC mIoU "
                f"{net['miou_present']:.2f}, IoU {net['iou_completion']:.2f}"
            )
        pics.update({f"kitti_{name}": path for name, path in real_kitti["pictures"].items()})
    else:
        summary["kitti"] = {"skipped": f"no KITTI fixture at {kitti} (pass --fixtures DIR)"}
        print(f"      skipped: {summary['kitti']['skipped']}")

    summary["pictures"] = pics
    summary["seconds"] = {**timed, "total": round(time.perf_counter() - t0, 1)}
    atomic_write_text(out / "metrics.json", json.dumps(summary, indent=1))
    print_summary(out, summary)
    return summary


def print_summary(out: Path, summary: dict[str, Any]) -> None:
    """The closing lines: the key numbers and where everything is."""
    ev, rp = summary["evaluation"], summary["replay"]
    print(f"\ndemo done in {summary['seconds']['total']:.0f} s; everything is under {out}/\n")
    print("  key numbers (synthetic sequence, Occ3D mIoU over the camera-visible voxels):")
    print(f"    pseudo-labels (no 3D labels)   mIoU {ev['pseudo_labels']['miou']:6.2f}")
    print(f"    network, single frame          mIoU {ev['network']['miou']:6.2f}")
    print(f"    neighbour-frame GT baseline    mIoU {ev['baseline']['miou']:6.2f}")
    if "frustum" in summary.get("kitti", {}):
        fr = summary["kitti"]["frustum"]
        print(
            f"    real KITTI pseudo-labels       SSC mIoU {fr['miou_present']:6.2f}, IoU {fr['iou_completion']:.2f} "
            f"(sequence {summary['kitti']['sequence']}, LiDAR ground truth, camera frustum)"
        )
    print(
        f"    latency on this CPU (p50)      {rp['total_p50_ms']:.1f} ms per frame in the node's pipeline "
        f"(inference {rp['inference_p50_ms']:.1f} ms, the rest {rp['node_side_p50_ms']:.1f} ms)"
    )
    print("\n  outputs:")
    rows = [
        ("metrics", str(out / "metrics.json")),
        ("sequence", f"{summary['synth']['dir']}  (rosbag2: {summary['synth']['dir']}/bag)"),
        ("labels", summary["pseudo_labels"]["dir"]),
        ("predictions", summary["network"]["predictions"]),
        ("onnx", summary["export"]["onnx"]),
        ("output MCAP", f"{rp['bag']}  (open it in Foxglove; metrics {rp['metrics']})"),
        ("costmap topic", f"{rp['costmap']['topic']} in the output MCAP ({rp['costmap']['messages']} OccupancyGrid)"),
        *sorted(summary["pictures"].items()),
    ]
    for name, where in rows:
        print(f"    {name:14s} {where}")
