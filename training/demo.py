"""``occ demo``: the main job on the built-in synthetic world, stage by stage.

Stages so far: (1) render a synthetic sequence with ground truth and a rosbag2 recording;
(2) read it back through the dataset readers (files and the bag); (3) evaluate a
neighbour-frame baseline with the Occ3D metric and RayIoU; (4) pseudo-labels from the simulated
teachers (relative depth, calibrated photometrically, densified over time), scored against the
ground truth, with a bird's-eye picture of both; (5) the shipped network (models/demo.ckpt, trained
on other seeds; no training here) predicts the sequence, scored against the ground truth, with an
open-vocabulary query through its CLIP head; (6) export: the checkpoint -> a verified ONNX (parity with
PyTorch, TensorRT compatibility report), ``occ predict`` through ONNX Runtime, and a latency comparison;
(7) replay: the recorded bag through the ROS node's pipeline (``occ replay``) into an MCAP of the node's output
topics, with latency and accuracy metrics, checked frame by frame against ``occ predict``; (8) pictures.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from occ_ros import viz

STAGES = 8


def sequence_pictures(data: Path, out: Path, frame: int) -> dict[str, Path]:
    """Mosaics of frame ``frame`` (RGB, depth, per-pixel class) and the BEV of its ground truth."""
    from occ_ros.datasets.synth import SynthReader

    reader = SynthReader(data)
    sample = reader.load(frame)
    vocab = reader.vocabulary
    depth = {c: viz.colorize_depth(d) for c, d in reader.depth(frame).items()}
    sem = {c: viz.colorize_labels(s, vocab) for c, s in reader.semantics_2d(frame).items()}
    paths = {
        "cameras": out / "cameras.png",
        "depth": out / "depth.png",
        "semantics": out / "semantics.png",
        "bev_gt": out / "bev_gt.png",
    }
    viz.save_png(paths["cameras"], viz.camera_mosaic(sample.images))
    viz.save_png(paths["depth"], viz.camera_mosaic(depth))
    viz.save_png(paths["semantics"], viz.camera_mosaic(sem))
    assert sample.gt is not None
    gt = sample.gt
    viz.legend_figure(
        paths["bev_gt"],
        [viz.bev_image(gt.semantics, vocab), viz.bev_image(gt.semantics, vocab, gt.mask_camera)],
        ["GT semantics (all voxels)", "GT semantics (camera-visible)"],
        vocab,
        suptitle=f"{sample.scene} frame {sample.frame}: bird's-eye view, ego at centre facing up",
    )
    return paths


def neighbour_frame_baseline(data: Path, out: Path) -> Path:
    """Predict each frame with its neighbour's ground truth moved by the ego motion.

    Frame i uses frame i-1 (frame 0 uses frame 1): what a method that only remembers the last
    frame's map, with perfect odometry, would score. Writes ``out/<scene>/<frame>/labels.npz``.
    """
    from occ_ros.core.grid import resample_labels
    from occ_ros.datasets.synth import SynthReader
    from occ_ros.io.atomic import atomic_savez_compressed

    reader = SynthReader(data)
    samples = [reader.load(i, images=False) for i in range(len(reader))]
    free = reader.vocabulary.free_index
    for i, s in enumerate(samples):
        src = samples[i - 1] if i > 0 else samples[min(1, len(samples) - 1)]
        assert s.gt is not None and src.gt is not None
        src_from_dst = np.linalg.inv(src.world_from_ego) @ s.world_from_ego
        pred = resample_labels(src.gt.semantics, reader.grid, src_from_dst, fill=free)
        atomic_savez_compressed(out / s.scene / s.frame / "labels.npz", semantics=pred)
    return out


def pseudo_label_stage(data: Path, out: Path) -> dict[str, object]:
    """``occ labels`` with the simulated teachers and the default settings, then ``occ eval`` of the result."""
    from occ_ros.core.resources import config_dir
    from occ_ros.datasets.synth import SynthReader
    from occ_ros.eval.runner import evaluate
    from occ_training.labels.pipeline import PseudoLabeller, load_label_settings, run_labels
    from occ_training.teachers.factory import TeacherSpec, build_teachers

    reader = SynthReader(data)
    config, sim = load_label_settings(config_dir() / "labels" / "default.yaml")
    spec = TeacherSpec(kind="sim", sim=sim)
    segmentation, depth = build_teachers(spec, data, reader.vocabulary)
    labels_dir = out / "pseudo_labels"
    shutil.rmtree(labels_dir, ignore_errors=True)  # the sequence was just re-rendered: never resume old labels
    summary = run_labels(reader, labels_dir, PseudoLabeller(segmentation, depth, config), spec.describe())
    report = evaluate(labels_dir, data / "gts", mask="camera")
    (out / "eval_pseudo_labels.json").write_text(json.dumps(report.to_dict(), indent=1))

    frame = len(reader) // 2
    sample = reader.load(frame, images=False)
    assert sample.gt is not None
    from occ_ros.datasets.sample import load_labels

    pseudo = load_labels(labels_dir / sample.scene / sample.frame / "labels.npz")
    picture = out / "bev_pseudo_labels.png"
    vocab = reader.vocabulary
    viz.legend_figure(
        picture,
        [
            viz.bev_image(sample.gt.semantics, vocab, sample.gt.mask_camera),
            viz.bev_image(pseudo.semantics, vocab, sample.gt.mask_camera),
            viz.bev_image(pseudo.semantics, vocab),
        ],
        [
            "ground truth (camera-visible)",
            "pseudo-labels (where scored)",
            f"pseudo-labels, all ({depth.kind} depth, +-{config.lifting.window} frames)",
        ],
        vocab,
        suptitle=f"{sample.scene} frame {sample.frame}: bird's-eye view, ego at centre facing up",
    )
    return {
        "dir": str(labels_dir),
        "depth": depth.kind,
        "calibration": config.calibration,
        "window": config.lifting.window,
        "frames_per_second": round(summary.frames_per_second, 3),
        "miou": report.occ3d.miou,
        "iou": report.occ3d.iou,
        "picture": str(picture),
    }


def network_stage(data: Path, out: Path, labels_dir: Path, query: str = "car") -> dict[str, object]:
    """``occ predict`` with the shipped checkpoint, ``occ eval`` of it, a bird's-eye picture and ``occ query``."""
    from occ_ros.core.resources import models_dir
    from occ_ros.datasets.sample import LABELS_FILE, load_labels
    from occ_ros.datasets.synth import SynthReader
    from occ_ros.eval.runner import evaluate
    from occ_training.predict import run_predict, run_query

    model = models_dir() / "demo.ckpt"
    pred_dir = out / "predictions"
    shutil.rmtree(pred_dir, ignore_errors=True)
    summary = run_predict(model, data, pred_dir, progress=False)
    report = evaluate(pred_dir, data / "gts", mask="camera")
    (out / "eval_network.json").write_text(json.dumps(report.to_dict(), indent=1))

    reader = SynthReader(data)
    vocab = reader.vocabulary
    sample = reader.load(len(reader) // 2, images=False)
    assert sample.gt is not None
    pred = load_labels(pred_dir / sample.key / LABELS_FILE)
    pseudo = load_labels(labels_dir / sample.key / LABELS_FILE)
    picture = out / "bev_network.png"
    mask = sample.gt.mask_camera
    viz.legend_figure(
        picture,
        [
            viz.bev_image(sample.gt.semantics, vocab, mask),
            viz.bev_image(pseudo.semantics, vocab, mask),
            viz.bev_image(pred.semantics, vocab, mask),
            viz.bev_image(pred.semantics, vocab),
        ],
        ["ground truth (camera-visible)", "pseudo-labels (camera-visible)", "network (camera-visible)", "network, all"],
        vocab,
        suptitle=f"{sample.scene} frame {sample.frame}: models/demo.ckpt, single frame, ego at centre facing up",
    )
    queried = run_query(model, data, query, out / "query", picture_frame=len(reader) // 2)
    return {
        "model": str(model),
        "frames": summary.frames,
        "seconds_per_frame": round(summary.seconds / max(1, summary.frames), 3),
        "miou": report.occ3d.miou,
        "iou": report.occ3d.iou,
        "picture": str(picture),
        "query": {"text": query, "voxels": queried.matches, "picture": str(queried.picture)},
    }


def export_stage(data: Path, out: Path, parity_frames: int = 4, bench_runs: int = 10) -> dict[str, object]:
    """``occ export`` of the shipped checkpoint (with parity on the sequence), ``occ predict`` through ONNX Runtime
    compared with the checkpoint's predictions, ``occ bench`` of both on this CPU, and the TensorRT step (built
    when tensorrt is installed, else its trtexec command)."""
    from occ_export.onnx_export import export_onnx
    from occ_export.tensorrt_build import BuildSettings, trtexec_for
    from occ_ros.core.resources import models_dir
    from occ_ros.datasets.sample import LABELS_FILE, load_labels
    from occ_ros.inference.backend import open_backend
    from occ_ros.inference.bench import run_bench
    from occ_training.predict import run_predict

    model = models_dir() / "demo.ckpt"
    onnx_path = out / "export" / "demo.onnx"
    result = export_onnx(model, onnx_path, features=True, parity_data=data, parity_frames=parity_frames)
    assert result.parity is not None
    pred_dir = out / "predictions_onnx"
    shutil.rmtree(pred_dir, ignore_errors=True)
    run_predict(onnx_path, data, pred_dir, progress=False)
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


def replay_stage(data: Path, out: Path, onnx_path: Path) -> dict[str, object]:
    """``occ replay`` of the synthetic bag with the exported model; its labels against ``occ predict``'s."""
    from occ_ros.core.rig import config_path
    from occ_ros.datasets.sample import LABELS_FILE, load_labels
    from occ_ros.datasets.synth import SynthReader
    from occ_ros.replay import replay, write_metrics

    work = out / "replay"
    shutil.rmtree(work, ignore_errors=True)
    summary = replay(
        data / "bag",
        onnx_path,
        work / "output",
        config=config_path("datasets", "synth_bag.yaml"),
        gt=data,
        predictions=work / "labels",
        progress=False,
    )
    write_metrics(summary, work / "metrics.json")
    reader = SynthReader(data)
    same = 0
    for i in range(len(reader)):
        sample = reader.load(i, images=False)
        replayed = work / "labels" / str(sample.stamp_ns) / LABELS_FILE
        offline = out / "predictions_onnx" / sample.scene / sample.frame / LABELS_FILE
        if replayed.exists() and np.array_equal(load_labels(replayed).semantics, load_labels(offline).semantics):
            same += 1
    return {
        "bag": str(work / "output"),
        "metrics": str(work / "metrics.json"),
        "processed": summary.processed,
        "synchronized": summary.synchronized,
        "frames_equal_to_predict": same,
        "frames": len(reader),
        "node_side_p50_ms": sum(
            v["p50_ms"]
            for k, v in summary.stages_ms.items()
            if k in ("decode", "calibration", "preprocess", "postprocess")
        ),
        "inference_p50_ms": summary.stages_ms["inference"]["p50_ms"],
        "accuracy": summary.accuracy,
    }


def read_back(data: Path) -> dict[str, object]:
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


def run_demo(out: Path, frames: int = 12, seed: int = 3) -> dict[str, object]:
    """Run every stage that exists into ``out`` and print where things are."""
    from occ_ros.datasets.synth import load_meta
    from occ_training.synth.sequence import generate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {}
    t0 = time.perf_counter()
    print(f"[1/{STAGES}] synthetic world: {frames} frames, seed {seed} -> {out / 'data'}")
    data = generate(out / "data", frames=frames, seed=seed, preset="demo", overwrite=True)
    meta = load_meta(data)
    summary["synth"] = {
        "dir": str(data),
        "frames": len(meta["frames"]),  # type: ignore[arg-type]
        "classes_present": meta["classes_present"],
        "seconds": round(time.perf_counter() - t0, 2),
    }
    print(f"[2/{STAGES}] dataset readers: files and rosbag2")
    summary["readers"] = read_back(data)
    r = summary["readers"]
    print(
        f"      {r['bag_samples']} synchronized 6-camera samples from the bag, "  # type: ignore[index]
        f"poses agree with the files to {r['max_pose_difference_m']:.1e} m"
    )  # type: ignore[index]

    print(f"[3/{STAGES}] evaluation: neighbour-frame baseline (Occ3D mIoU, RayIoU)")
    from occ_ros.eval.runner import evaluate, origins_from_dataset

    baseline = neighbour_frame_baseline(data, out / "baseline")
    origins, grid = origins_from_dataset(data, data / "gts")
    report = evaluate(baseline, data / "gts", mask="camera", rayiou_origins=origins, grid=grid)
    summary["eval_baseline"] = report.to_dict()
    (out / "eval_baseline.json").write_text(json.dumps(report.to_dict(), indent=1))
    assert report.rayiou is not None
    print(
        f"      mIoU {report.occ3d.miou:.2f}  IoU {report.occ3d.iou:.2f}  RayIoU {report.rayiou.rayiou:.2f} "
        f"over {report.occ3d.samples} frames (camera mask)"
    )

    print(f"[4/{STAGES}] pseudo-labels: simulated teachers, calibrated relative depth, densified over time")
    labels = pseudo_label_stage(data, out)
    summary["pseudo_labels"] = labels
    print(
        f"      mIoU {labels['miou']:.2f}  IoU {labels['iou']:.2f} against the ground truth "
        f"({labels['frames_per_second']} frames/s)"
    )

    print(f"[5/{STAGES}] network: models/demo.ckpt predicts every frame (single-frame, no training here)")
    network = network_stage(data, out, Path(str(labels["dir"])))
    summary["network"] = network
    print(
        f"      mIoU {network['miou']:.2f}  IoU {network['iou']:.2f} against the ground truth "
        f"({network['seconds_per_frame']} s/frame on CPU); query {network['query']['text']!r}: "  # type: ignore[index]
        f"{network['query']['voxels']} voxels"  # type: ignore[index]
    )

    print(f"[6/{STAGES}] export: models/demo.ckpt -> ONNX, parity with PyTorch, occ predict through ONNX Runtime")
    exported = export_stage(data, out)
    summary["export"] = exported
    p50 = exported["p50_ms"]
    print(
        f"      {exported['onnx']} ({exported['megabytes']} MB): argmax agreement with PyTorch "
        f"{100 * float(exported['parity_agreement']):.3f}% (max |logit diff| {float(exported['max_logit_diff']):.1e}); "
        f"TensorRT 8.6/10/11 op check {'passed' if exported['trt_compat_ok'] else 'FAILED'}"
    )
    agreement = 100 * float(exported["predict_agreement"])  # type: ignore[arg-type]
    print(
        f"      occ predict via ONNX Runtime agrees with the checkpoint on {agreement:.3f}% of voxels; "
        f"p50 latency on this CPU: ONNX Runtime {p50['onnxruntime']:.0f} ms, "  # type: ignore[index]
        f"PyTorch {p50['torch']:.0f} ms"  # type: ignore[index]
    )
    print(f"      {exported['tensorrt']}")

    print(f"[7/{STAGES}] replay: the bag through the ROS node's pipeline (occ replay) -> MCAP of the output topics")
    replayed = replay_stage(data, out, Path(str(exported["onnx"])))
    summary["replay"] = replayed
    accuracy = replayed["accuracy"]
    print(
        f"      {replayed['processed']}/{replayed['synchronized']} synchronized frames, "
        f"{replayed['frames_equal_to_predict']}/{replayed['frames']} identical to occ predict; node-side "
        f"{float(replayed['node_side_p50_ms']):.1f} ms + inference {float(replayed['inference_p50_ms']):.1f} ms p50; "  # type: ignore[arg-type]
        f"mIoU {accuracy['miou']:.2f}"  # type: ignore[index]
    )

    print(f"[8/{STAGES}] pictures")
    pictures = sequence_pictures(data, out, len(meta["frames"]) // 2)  # type: ignore[arg-type]
    pictures["bev_pseudo_labels"] = Path(str(labels["picture"]))
    pictures["bev_network"] = Path(str(network["picture"]))
    pictures["query"] = Path(str(network["query"]["picture"]))  # type: ignore[index]
    summary["pictures"] = {k: str(v) for k, v in pictures.items()}
    (out / "metrics.json").write_text(json.dumps(summary, indent=1))
    print(f"\ndemo done in {time.perf_counter() - t0:.1f} s; everything is under {out}/")
    for name, path in pictures.items():
        print(f"  {name:10s} {path}")
    print(f"  {'bag':10s} {data / 'bag'}")
    print(f"  {'baseline':10s} {out / 'eval_baseline.json'}")
    print(f"  {'labels':10s} {out / 'pseudo_labels'}  (scores: {out / 'eval_pseudo_labels.json'})")
    print(f"  {'network':10s} {out / 'predictions'}  (scores: {out / 'eval_network.json'})")
    print(f"  {'onnx':10s} {exported['onnx']}  (report: {exported['report']})")
    print(f"  {'replay':10s} {replayed['bag']}  (metrics: {replayed['metrics']})")
    print(f"  {'metrics':10s} {out / 'metrics.json'}")
    return summary
