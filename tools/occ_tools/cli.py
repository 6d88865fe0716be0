"""``occ``: the one command-line tool, with a subcommand per stage.

Subcommands import their stage lazily, so ``occ --help`` and the runtime stages need neither
torch nor the synthetic-world renderer.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from occ_ros.inference.backend import RuntimeSettings

EXIT_FAILURE = 1
BACKEND_CHOICES = ("onnxruntime", "tensorrt", "torch")
"""= occ_ros.inference.backend.BACKEND_NAMES (kept here so `occ --help` imports nothing)."""


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 1."""


def _int_at_least(minimum: int, meaning: str = "") -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum`` (``meaning`` explains the smallest value in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{meaning}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)


def _output(p: argparse.ArgumentParser, flag: str, kind: str = "file", **kwargs: object) -> None:
    """Add an output-path argument: :func:`main` checks every one of them (:func:`check_outputs`) before the
    command runs, so a path under a file or in a read-only place fails at once, not after the work.

    Args:
        kind: ``file`` or ``dir`` (what the command writes at the path).
    """
    action = p.add_argument(flag, type=Path, **kwargs)  # type: ignore[arg-type]
    p.set_defaults(_outputs=(*(p.get_default("_outputs") or ()), (flag, action.dest, kind)))


def check_output(path: Path, what: str, kind: str = "file") -> None:
    """:func:`occ_ros.io.atomic.check_writable` as a :class:`CliError` naming ``what`` and the path."""
    from occ_ros.io.atomic import check_writable

    try:
        check_writable(path, what, kind)
    except OSError as err:
        raise CliError(f"cannot write the output {err}") from None


def check_outputs(args: argparse.Namespace) -> None:
    """Check every output path the command was given (the arguments :func:`_output` declared)."""
    for flag, dest, kind in getattr(args, "_outputs", ()):
        value = getattr(args, dest, None)
        if value is not None:
            check_output(value, flag, kind)


# ---------------------------------------------------------------------------- occ synth
def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="render a synthetic driving sequence with exact Occ3D ground truth and a rosbag2 recording",
        description="Render a procedural urban driving sequence: six-camera RGB, depth and per-pixel class, "
        "Occ3D-format ground truth (semantics, mask_lidar, mask_camera) per frame, and an MCAP rosbag2 "
        "recording with images, camera_info, /tf and /tf_static. Output is deterministic per seed and "
        "written atomically.",
    )
    _output(p, "--out", kind="dir", required=True, help="output directory (must not exist unless --force)")
    p.add_argument("--frames", type=_positive_int, default=20, help="number of frames at 12 Hz (default 20)")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    p.add_argument(
        "--preset",
        default="demo",
        help="demo (6x112x200 images, 80x80x8 grid) or nuscenes (6x900x1600, Occ3D 200x200x16)",
    )
    p.add_argument("--compressed", action="store_true", help="also record JPEG /<camera>/image_raw/compressed topics")
    p.add_argument(
        "--force", action="store_true", help="replace an existing output directory (only once the new one is complete)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from occ_ros.datasets.synth import load_meta
    from occ_training.synth.sequence import PRESETS, generate

    if args.preset not in PRESETS:
        raise CliError(f"unknown preset {args.preset!r}; expected one of {', '.join(sorted(PRESETS))}")
    try:
        out = generate(
            args.out,
            frames=args.frames,
            seed=args.seed,
            preset=args.preset,
            compressed=args.compressed,
            overwrite=args.force,
            progress=not args.quiet,
        )
    except (FileExistsError, PermissionError, OSError, ValueError) as err:
        raise CliError(str(err)) from None
    meta = load_meta(out)
    print(f"wrote {len(meta['frames'])} frames of {meta['scene']} to {out}")  # type: ignore[arg-type]
    print(f"  classes present: {', '.join(meta['classes_present'])}")  # type: ignore[arg-type]
    return 0


# ---------------------------------------------------------------------------- occ eval
def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score predicted occupancy against ground truth (Occ3D mIoU/IoU, RayIoU, SemanticKITTI SSC)",
        description="Occ3D-nuScenes metric exactly as the official code computes it: one global confusion "
        "matrix over all samples inside the chosen visibility mask; per-class IoU (NaN when a class is in "
        "neither GT nor prediction), mIoU over the non-free classes, and geometric IoU. --pred and --gt are "
        "labels.npz files or directories matched by relative path; a prediction must be on its ground truth's grid "
        "(or a whole-factor coarsening of it, upsampled). Optional RayIoU (SparseOcc) needs the "
        "ego poses of the sequence (--dataset). --benchmark semantickitti runs the SemanticKITTI SSC metric "
        "on the official voxel files instead.",
    )
    p.add_argument("--pred", type=Path, required=True, help="prediction labels.npz or directory")
    p.add_argument(
        "--gt",
        type=Path,
        required=True,
        help="ground truth: a labels.npz, a folder of them (e.g. DIR/gts), or a dataset folder with ground truth (an "
        "`occ synth` folder or a nuScenes root: its gts/)",
    )
    p.add_argument(
        "--mask",
        choices=("camera", "lidar", "none"),
        help="visibility mask: occ3d default camera; semantickitti default lidar (official: every voxel not "
        "invalid), camera = also only the image_2 frustum (F.camera_mask of `occ gt --from-lidar`)",
    )
    _output(p, "--json", help="write the metrics as JSON to this file")
    p.add_argument("--vocabulary", default="occ3d", help="vocabulary name or YAML path (default occ3d)")
    p.add_argument("--rayiou", action="store_true", help="also compute RayIoU at 1, 2 and 4 m")
    p.add_argument(
        "--dataset",
        type=Path,
        help="dataset the GT belongs to, for RayIoU ego poses: an `occ synth` directory or a nuScenes root "
        "(default: --gt when it is an `occ synth` directory, or the one holding it)",
    )
    p.add_argument(
        "--benchmark",
        choices=("occ3d", "semantickitti"),
        default="occ3d",
        help="occ3d (labels.npz, default) or semantickitti (--gt: dataset root with sequences/NN/voxels, "
        "--pred: root with sequences/NN/predictions/*.label)",
    )
    p.add_argument("--sequences", nargs="*", help="SemanticKITTI sequences to evaluate (default: all with voxels)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    import json

    from occ_ros.io.atomic import atomic_write_text

    try:
        if args.benchmark == "semantickitti":
            from occ_ros.eval.runner import evaluate_semantickitti
            from occ_ros.eval.ssc import format_table

            if args.mask == "none":
                raise CliError("--benchmark semantickitti evaluates inside a mask: lidar (official) or camera")
            result = evaluate_semantickitti(
                args.pred, args.gt, sequences=args.sequences, progress=not args.quiet, mask=args.mask or "lidar"
            )
            print(format_table(result))
            kitti_mask = "the camera frustum" if args.mask == "camera" else "the valid (not F.invalid) voxels"
            _check_scorable(result.confusion, result.samples, kitti_mask)
            doc = result.to_dict()
        else:
            from occ_ros.core.vocabulary import Vocabulary
            from occ_ros.eval.runner import evaluate, origins_from_dataset

            vocabulary = Vocabulary.load(args.vocabulary)
            origins, grid = None, None
            if args.rayiou:
                origins, grid = origins_from_dataset(args.dataset, args.gt)
            report = evaluate(
                args.pred,
                args.gt,
                mask=args.mask or "camera",
                vocabulary=vocabulary,
                rayiou_origins=origins,
                grid=grid,
                progress=not args.quiet,
            )
            print(report.occ3d.format_table())
            mask = args.mask or "camera"
            _check_scorable(report.occ3d.confusion, report.occ3d.samples, "none" if mask == "none" else f"mask_{mask}")
            if report.rayiou is not None:
                print()
                print(report.rayiou.format_table())
            doc = report.to_dict()
    except (OSError, ValueError, KeyError) as err:
        raise CliError(str(err)) from None
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _check_scorable(confusion: np.ndarray, samples: int, mask: str) -> None:
    """An evaluation that scored no voxel is an error with its reason, not a table of n/a.

    Args:
        confusion: the run's summed confusion matrix; mask: how the message names the mask that excluded the voxels.
    """
    if int(confusion.sum()) > 0:
        return
    frames = f"{samples} frame{'s' if samples != 1 else ''}"
    if mask == "none":
        raise CliError(f"no voxel was scorable: the ground truth of the {frames} has no voxels")
    raise CliError(
        f"no voxel was scorable: every ground-truth voxel of the {frames} is outside {mask} (the masks are all "
        "zero), so mIoU and IoU are undefined; check how the ground truth's masks were made"
        + (", or score without a mask (--mask none)" if mask.startswith("mask_") else "")
    )


# ---------------------------------------------------------------------------- occ inspect
def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="show what a dataset reader sees: samples, scenes, cameras, ground truth, bag synchronization",
        description="Open a dataset with the reader training and evaluation use, and summarise it: an `occ synth` "
        "directory, a nuScenes root (with Occ3D gts/), a SemanticKITTI root, or a rosbag2 bag with --config "
        "(the camera/topic YAML, see config/datasets/rosbag_example.yaml). Use it to check a bag config before "
        "training on your own recordings.",
    )
    p.add_argument("dataset", type=Path, help="dataset directory or rosbag2 bag")
    p.add_argument(
        "--kind", default="auto", choices=("auto", "synth", "nuscenes", "semantickitti", "rosbag"), help="reader"
    )
    p.add_argument("--dataset-config", "--config", dest="config", type=Path, help="camera/topic YAML of a rosbag2 bag")
    p.add_argument("--version", help="nuScenes version (default: the only v1.0-* folder)")
    p.set_defaults(func=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    import numpy as np

    from occ_ros.datasets import open_dataset

    options: dict[str, object] = {}
    if args.config is not None:
        options["config"] = args.config
    if args.version is not None:
        options["version"] = args.version
    try:
        reader = open_dataset(args.dataset, kind=args.kind, load_gt=True, **options)
        print(f"{reader.kind} dataset {args.dataset}: {len(reader)} samples")
        if len(reader) == 0:
            return 0
        scenes = reader.scenes()
        print(f"  scenes: {len(scenes)} ({', '.join(list(scenes)[:5])}{', ...' if len(scenes) > 5 else ''})")
        first = reader.load(0)
        print(f"  grid: {first.grid.shape if first.grid else 'none'}; vocabulary: {first.vocabulary.name}")
        print(f"  ground truth: {'yes' if first.gt is not None else 'no'}")
        for cam in first.rig:
            shape = first.images[cam.name].shape if cam.name in first.images else "?"
            fx, fy = cam.K[0, 0], cam.K[1, 1]
            centre = np.round(cam.center_ego, 2).tolist()
            print(f"  {cam.name:16s} {cam.width}x{cam.height} image {shape} fx {fx:.1f} fy {fy:.1f} at {centre} m")
        poses = reader.poses()
        for scene, p in list(poses.items())[:5]:
            travelled = float(np.linalg.norm(np.diff(p[:, :3, 3], axis=0), axis=1).sum()) if len(p) > 1 else 0.0
            print(f"  {scene}: {len(p)} frames, ego travelled {travelled:.1f} m")
        report = getattr(reader, "sync_report", None)
        if report is not None:
            print(report.summary())
    except (OSError, ValueError, KeyError, LookupError) as err:
        raise CliError(str(err)) from None
    return 0


# ---------------------------------------------------------------------------- occ labels
def _shard(text: str) -> tuple[int, int]:
    try:
        rank, world = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected RANK/WORLD_SIZE like 0/4, got {text!r}") from None
    if world < 1 or not 0 <= rank < world:
        raise argparse.ArgumentTypeError(f"need 0 <= RANK < WORLD_SIZE, got {text!r}")
    return rank, world


def _add_labels(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "labels",
        help="pseudo-label a dataset with 2D foundation models: semantics + depth -> densified Occ3D labels",
        description="Ask a segmentation teacher and a depth teacher about every frame, calibrate relative depth "
        "photometrically, lift labelled pixels to 3D, densify them over +-K frames and write Occ3D-format "
        "OUT/<scene>/<frame>/labels.npz (semantics, mask_camera). Resumable: finished frames are skipped. "
        "Under torchrun every rank labels its own scenes. See docs/pseudo_labels.md.",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset folder or rosbag2 bag (any `occ inspect` input)")
    _output(p, "--out", kind="dir", required=True, help="output folder (same layout as DIR/gts/)")
    p.add_argument(
        "--teacher",
        choices=("sim", "hf", "onnx"),
        default="sim",
        help="simulated (synthetic world), HF models, or ONNX models described by model cards (docs/teachers.md)",
    )
    p.add_argument("--depth", choices=("metric", "relative"), help="depth kind (sim: which to simulate)")
    p.add_argument("--segmenter", choices=("clipseg", "grounded-sam"), default="clipseg", help="hf segmentation")
    p.add_argument("--seg-model", help="CLIPSeg or Grounding DINO checkpoint folder (hf)")
    p.add_argument("--sam-model", help="SAM checkpoint folder (hf, grounded-sam)")
    p.add_argument("--depth-model", help="Depth Anything V2 checkpoint folder (hf)")
    p.add_argument(
        "--seg-card", help="segmentation model card, a YAML file or a config/teachers name (onnx; espnetv2_cityscapes)"
    )
    p.add_argument("--depth-card", help="depth model card, a YAML file or a config/teachers name (onnx; pydnet_kitti)")
    p.add_argument("--device", default="cpu", help="device of the hf (torch) or onnx (cpu, cuda[:N]) models")
    p.add_argument("--window", type=int, help="densify over +-K frames (0: single-frame labels); overrides --config")
    p.add_argument("--calibration", choices=("frame", "sequence", "none"), help="relative depth calibration")
    p.add_argument("--config", type=Path, help="label settings YAML (default config/labels/default.yaml)")
    p.add_argument("--kind", default="auto", choices=("auto", "synth", "nuscenes", "semantickitti", "rosbag"))
    p.add_argument("--dataset-config", type=Path, help="camera/topic YAML of a rosbag2 bag")
    p.add_argument("--sequences", nargs="+", help="SemanticKITTI sequences to label (default: every one present)")
    p.add_argument("--shard", type=_shard, help="RANK/WORLD_SIZE (default: torchrun's RANK / WORLD_SIZE, or 0/1)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (depth calibration, torch teachers); 0: torch's default (one per core). One thread "
        "does not collapse when other work shares the CPU; scale out with --shard / torchrun, one rank per core",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="threads that calibrate relative depth a few frames ahead and densify key frames while the main thread "
        "teaches, lifts and writes (0: one frame after another in the main thread; default: 2 when this process has "
        "two cores to itself, counting torchrun's LOCAL_WORLD_SIZE ranks, else 0). The labels do not depend on it",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_labels)


def _run_labels(args: argparse.Namespace) -> int:
    if args.threads < 0:
        raise CliError(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
    if args.workers is not None and args.workers < 0:
        raise CliError(f"--workers must be >= 0 (0: calibrate in the main thread), got {args.workers}")
    if args.threads == 0:
        return _label(args)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _label(args)
    finally:
        torch.set_num_threads(before)  # (the process's setting again when called in-process, as the tests do)


def _label(args: argparse.Namespace) -> int:
    """``occ labels`` once torch's threads are set."""
    from dataclasses import replace

    from occ_ros.core.config import ConfigError
    from occ_ros.core.resources import config_dir
    from occ_ros.datasets import open_dataset
    from occ_training.labels.pipeline import LabelError, PseudoLabeller, load_label_settings, run_labels
    from occ_training.teachers.base import TeacherError
    from occ_training.teachers.factory import TeacherSpec, build_teachers

    try:
        settings = args.config if args.config is not None else config_dir() / "labels" / "default.yaml"
        label_config, sim = load_label_settings(settings)
        if args.window is not None:
            if args.window < 0:
                raise CliError(f"--window must be >= 0 frames, got {args.window}")
            label_config = replace(label_config, lifting=replace(label_config.lifting, window=args.window))
        if args.calibration is not None:
            label_config = replace(label_config, calibration=args.calibration)
        options: dict[str, object] = {}
        if args.dataset_config is not None:
            options["config"] = args.dataset_config
        sequences = _sequences(args)
        if sequences:
            options["sequences"] = sequences
        reader = open_dataset(args.data, kind=args.kind, load_gt=False, **options)
        if len(reader) == 0:
            raise CliError(f"{args.data}: the dataset has no samples")
        vocabulary = reader.load(0, images=False).vocabulary
        spec = TeacherSpec(
            kind=args.teacher,
            depth=args.depth,
            segmenter=args.segmenter,
            seg_model=args.seg_model,
            sam_model=args.sam_model,
            depth_model=args.depth_model,
            seg_card=args.seg_card,
            depth_card=args.depth_card,
            device=args.device,
            sim=sim,
        )
        segmentation, depth = build_teachers(spec, args.data, vocabulary)
        labeller = PseudoLabeller(segmentation, depth, label_config)
        summary = run_labels(
            reader,
            args.out,
            labeller,
            teachers=spec.describe(),
            shard=args.shard,
            progress=not args.quiet,
            workers=args.workers,
        )
    except (OSError, ValueError, KeyError, LookupError, ConfigError, LabelError, TeacherError) as err:
        raise CliError(str(err)) from None
    rate = f", {summary.frames_per_second:.2f} frames/s" if summary.written else ""
    print(
        f"labels: {summary.written} frames written, {summary.skipped} already done, "
        f"{len(summary.scenes)} scenes -> {args.out}{rate}"
    )
    return 0


# ---------------------------------------------------------------------------- occ train / predict / query
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the occupancy network from pseudo-labels and 2D teachers (torchrun for DDP)",
        description="Train the camera-only occupancy network (docs/training.md). The config is a YAML file of "
        "typed settings; KEY=VALUE arguments override it (dotted keys, YAML values), e.g. steps=200 optim.lr=1e-3 "
        "'data.train=[a,b]'. Unknown keys and wrong types are errors before any work. Writes OUT/config.yaml, "
        "OUT/last.ckpt (resumable), OUT/model.ckpt, OUT/metrics.jsonl and TensorBoard logs in OUT/tb. Multi-GPU / "
        "multi-node: torchrun --nproc_per_node=N $(which occ) train ... (gloo on CPU, NCCL on GPU).",
    )
    p.add_argument("--config", type=Path, required=True, help="training config YAML (e.g. config/train/demo.yaml)")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.ckpt exactly where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from occ_ros.core.config import ConfigError
    from occ_ros.model.checkpoint import CheckpointError
    from occ_training.trainer.config import load_train_config
    from occ_training.trainer.data import DataError
    from occ_training.trainer.loop import TrainError, train

    try:
        config = load_train_config(args.config, args.overrides)
        check_output(Path(config.out), "out (the run folder)", "dir")
        result = train(config, resume=args.resume, progress=not args.quiet)
    except (ConfigError, DataError, CheckpointError, TrainError, OSError) as err:
        raise CliError(str(err)) from None
    val = f", validation mIoU {result.validation.miou:.2f} IoU {result.validation.iou:.2f}" if result.validation else ""
    pace = f"{result.seconds_per_step:.2f} s/step" if result.seconds_per_step else "resumed at the last step"
    print(f"train: {result.step} steps ({pace}){val} -> {result.out}/model.ckpt")
    return 0


def _sequences(args: argparse.Namespace) -> list[str] | None:
    """``--sequences`` checked against the dataset: only a SemanticKITTI root has sequences to choose."""
    if not args.sequences:
        return None
    if args.kind not in ("auto", "semantickitti") or not (Path(args.data) / "sequences").is_dir():
        raise CliError(f"--sequences needs a SemanticKITTI root (DIR/sequences/NN/); {args.data} is not one")
    return list(args.sequences)


def _add_model_and_data(p: argparse.ArgumentParser, model_help: str) -> None:
    """The model and dataset arguments ``occ predict`` and ``occ query`` share."""
    p.add_argument("--model", type=Path, required=True, help=model_help)
    p.add_argument("--data", type=Path, required=True, help="dataset folder or rosbag2 bag (any `occ inspect` input)")
    p.add_argument("--kind", default="auto", choices=("auto", "synth", "nuscenes", "semantickitti", "rosbag"))
    p.add_argument("--dataset-config", type=Path, help="camera/topic YAML of a rosbag2 bag")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKEND_CHOICES), help="default: by file suffix")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--limit", type=_positive_int, help="only the first N frames")
    p.add_argument("--sequences", nargs="+", help="SemanticKITTI sequences (default: every one present)")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict Occ3D-format semantic occupancy for every frame of a dataset",
        description="Run a trained model (PyTorch checkpoint, ONNX file or TensorRT engine) over any dataset "
        "`occ inspect` opens and write OUT/<scene>/<frame>/labels.npz (semantics, uint8 [x, y, z], and the model's "
        "grid) for `occ eval`. The model's grid must be the dataset's or a whole-factor coarsening of it.",
    )
    _add_model_and_data(p, "model file: .ckpt (PyTorch), .onnx (ONNX Runtime) or .engine (TensorRT)")
    _output(p, "--out", kind="dir", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from occ_ros.inference.backend import BackendError
    from occ_tools.predict import run_predict

    try:
        summary = run_predict(
            args.model,
            args.data,
            args.out,
            args.kind,
            args.dataset_config,
            args.device,
            args.limit,
            not args.quiet,
            backend=args.backend,
            sequences=_sequences(args),
        )
    except (BackendError, OSError, ValueError) as err:
        raise CliError(str(err)) from None
    print(f"predict: {summary.frames} frames in {summary.seconds:.1f} s -> {summary.out}")
    return 0


def _add_query(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "query",
        help="open-vocabulary voxel query through the CLIP-feature head",
        description="Find the predicted-occupied voxels whose CLIP feature matches a text prompt better than the "
        "vocabulary's prompts (LangOcc). Writes OUT/<scene>/<frame>/query.npz (similarity, match, points) and "
        "OUT/query.png.",
    )
    _add_model_and_data(p, "checkpoint with a CLIP head (model.clip_dim > 0), or an ONNX / engine exported with it")
    p.add_argument(
        "--text",
        required=True,
        help='the query: a prompt name of the model (a class such as "car", or a prompt an ONNX exported with '
        '--queries --prompts carries: its stored embedding and threshold), or any text, e.g. "traffic cone"',
    )
    _output(p, "--out", kind="dir", default=Path("out/query"), help="output folder (default out/query)")
    p.add_argument("--frame", type=int, help="frame index of the picture (default: the middle one)")
    p.set_defaults(func=_run_query)


def _run_query(args: argparse.Namespace) -> int:
    from occ_ros.inference.backend import BackendError
    from occ_tools.predict import run_query

    try:
        summary = run_query(
            args.model,
            args.data,
            args.text,
            args.out,
            args.kind,
            args.dataset_config,
            args.device,
            args.limit,
            args.frame,
            backend=args.backend,
            sequences=_sequences(args),
        )
    except (BackendError, OSError, ValueError) as err:
        raise CliError(str(err)) from None
    print(
        f"query {args.text!r}: {summary.matches} matching voxels over {summary.frames} frames (every voxel) -> "
        f"{summary.out}"
    )
    if summary.picture is not None:
        shown = summary.picture_frame or {}
        print(f"  picture: {summary.picture} (frame {shown.get('frame')}: {shown.get('voxels')} {shown.get('scope')})")
    return 0


# ---------------------------------------------------------------------------- occ export
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="checkpoint -> verified ONNX; ONNX -> TensorRT engine",
        description="Two steps. (1) --checkpoint C --out model.onnx: a single-file, static-shape ONNX (opset >= 17) "
        "with the model's metadata inside, checked by onnx.checker, a TensorRT 8.6/10/11 compatibility report and "
        "parity with PyTorch through ONNX Runtime on real frames (--data). (2) --onnx model.onnx --engine "
        "model.engine --precision fp16|int8: a TensorRT engine built through the tensorrt Python API, with a "
        "sidecar JSON and a cache key; prints the equivalent trtexec command.",
    )
    p.add_argument("--checkpoint", type=Path, help="step 1: the PyTorch checkpoint (.ckpt)")
    _output(p, "--out", help="step 1: the ONNX file to write")
    p.add_argument("--half", action="store_true", help="step 1: an FP16 ONNX (TensorRT 11 strongly typed builds)")
    p.add_argument("--logits", action="store_true", help="step 1: also output the semantic logits")
    p.add_argument("--features", action="store_true", help="step 1: also output the CLIP-head features")
    p.add_argument(
        "--queries",
        action="store_true",
        help="step 1: open-vocabulary queries on the vehicle: output the CLIP-head features and store the "
        "vocabulary's class prompts' text embeddings in the metadata (docs/export.md)",
    )
    p.add_argument(
        "--prompts",
        type=Path,
        metavar="FILE.yaml",
        help="step 1: more prompts (name -> text or list of texts) for --queries (implies it)",
    )
    p.add_argument(
        "--calibrate",
        type=Path,
        metavar="DATA",
        help="step 1, with --queries: choose each prompt's decision threshold on this validation sequence "
        "(with ground truth; not a test sequence)",
    )
    p.add_argument("--calibrate-frames", type=_positive_int, help="step 1: frames of --calibrate (default all)")
    p.add_argument("--opset", type=int, default=17, help="step 1: ONNX opset (>= 17, default 17)")
    p.add_argument("--data", type=Path, help="step 1: dataset folder or bag for the parity check (any reader)")
    p.add_argument("--frames", type=_positive_int, default=8, help="step 1: parity frames (default 8)")
    kinds = ("auto", "synth", "nuscenes", "semantickitti", "rosbag")
    p.add_argument("--kind", default="auto", choices=kinds, help="dataset kind of --data / --calib")
    p.add_argument("--dataset-config", type=Path, help="camera/topic YAML of a rosbag2 bag (--data / --calib)")
    p.add_argument("--onnx", type=Path, help="step 2: the exported ONNX file")
    _output(p, "--engine", help="step 2: the TensorRT engine to build")
    p.add_argument("--precision", default="fp16", choices=("fp32", "fp16", "int8"), help="step 2 (default fp16)")
    p.add_argument("--calib", type=Path, help="step 2: INT8 calibration frames (dataset folder or bag)")
    p.add_argument("--calib-frames", type=_positive_int, default=64, help="step 2: calibration frames (default 64)")
    p.add_argument("--workspace", type=_positive_int, default=2048, help="step 2: builder workspace MiB")
    _output(p, "--timing-cache", help="step 2: timing cache file (default ENGINE.timing.cache)")
    p.add_argument(
        "--on-mismatch",
        default="rebuild",
        choices=("rebuild", "refuse"),
        help="step 2: a cached engine whose key differs is rebuilt (default) or refused",
    )
    p.add_argument("--trtexec-only", action="store_true", help="step 2: print the trtexec command, build nothing")
    p.add_argument(
        "--trtexec-built",
        nargs=2,
        metavar=("TRT_VERSION", "SM"),
        help="step 2: ENGINE was built on the target by the --trtexec-only command: write its sidecar (model info "
        "from the ONNX; cache key from the target's TensorRT version and compute capability, e.g. 10.3.0 8.7)",
    )
    p.add_argument("--gpu-name", default="", help="step 2, with --trtexec-built: the target GPU's name (sidecar)")
    _output(
        p,
        "--calib-npz",
        help="with --onnx and --calib: write the calibration frames as the .npz NVIDIA TensorRT Model Optimizer "
        "takes (--calibration_data) to quantize the ONNX for TensorRT 11 INT8, and build nothing",
    )
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    if args.checkpoint is not None:
        if args.out is None:
            raise CliError("--checkpoint needs --out model.onnx")
        return _export_onnx(args)
    if args.onnx is not None and args.calib_npz is not None:
        return _export_calibration_npz(args)
    if args.onnx is not None and args.engine is not None:
        return _export_engine(args)
    raise CliError(
        "give --checkpoint C --out model.onnx, --onnx model.onnx --engine model.engine, "
        "or --onnx model.onnx --calib DATA --calib-npz calib.npz"
    )


def _export_calibration_npz(args: argparse.Namespace) -> int:
    from occ_export.int8_calibration import CalibrationError, calibration_feeds, write_calibration_npz
    from occ_export.tensorrt_build import BuildError, onnx_summary

    if args.calib is None:
        raise CliError("--calib-npz needs --calib DATA (a dataset folder or bag)")
    try:
        info = onnx_summary(args.onnx).model_info
        if info is None:
            raise CliError(f"{args.onnx}: no occ_ros metadata (export it with `occ export --checkpoint`)")
        feeds = calibration_feeds(args.calib, info, args.calib_frames, args.kind, args.dataset_config)
        path = write_calibration_npz(feeds, args.calib_npz)
    except (BuildError, CalibrationError, OSError, ValueError) as err:
        raise CliError(str(err)) from None
    print(f"calibration data: {path} (for Model Optimizer's --calibration_data)")
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from occ_export.onnx_export import ExportError, export_onnx
    from occ_ros.model.checkpoint import CheckpointError

    try:
        prompts = _export_prompts(args)
        result = export_onnx(
            args.checkpoint,
            args.out,
            opset=args.opset,
            half=args.half,
            logits=args.logits,
            features=args.features,
            prompts=prompts,
            parity_data=args.data,
            parity_frames=args.frames,
            kind=args.kind,
            dataset_config=str(args.dataset_config) if args.dataset_config else None,
        )
    except (ExportError, CheckpointError, OSError, ValueError) as err:
        raise CliError(str(err)) from None
    print(result.compat.to_markdown())
    if prompts is not None:
        how = f"thresholds chosen on {args.calibrate}" if args.calibrate else "no thresholds (pass --calibrate DATA)"
        print(f"queries: {len(prompts)} prompts {prompts.names} stored in the metadata; {how}")
    if result.parity is not None:
        print(result.parity.summary())
    else:
        print("parity: not checked (pass --data DIR to compare with PyTorch on real frames)")
    print(f"export: {result.path} ({result.bytes / 1e6:.1f} MB, sha256 {result.sha256[:12]}) in {result.seconds:.1f} s")
    print(f"  report: {result.report_path}")
    return 0


def _export_prompts(args: argparse.Namespace) -> Any:
    """The prompt table of ``--queries`` / ``--prompts`` / ``--calibrate`` (None without them)."""
    if not (args.queries or args.prompts):
        if args.calibrate:
            raise CliError("--calibrate chooses query thresholds: it needs --queries")
        return None
    from occ_ros.model.checkpoint import load_checkpoint
    from occ_tools.queries import calibrated_table, load_prompts_yaml, prompt_table

    info = load_checkpoint(args.checkpoint).model_info(("labels", "confidence", "features"))
    extra = load_prompts_yaml(args.prompts) if args.prompts else []
    table = prompt_table(info, extra, str(args.checkpoint))
    if args.calibrate:
        table = calibrated_table(args.checkpoint, info, table, args.calibrate, args.calibrate_frames)
    return table


def _export_engine(args: argparse.Namespace) -> int:
    from occ_export.tensorrt_build import (
        BuildError,
        BuildSettings,
        build_engine,
        trtexec_for,
        write_sidecar_for_engine,
    )
    from occ_ros.inference.backend import BackendError

    settings = BuildSettings(
        precision=args.precision,
        workspace_mib=args.workspace,
        timing_cache=args.timing_cache,
        calib=args.calib,
        calib_frames=args.calib_frames,
        calib_kind=args.kind,
        calib_config=args.dataset_config,
        on_mismatch=args.on_mismatch,
    )
    try:
        if args.trtexec_only:
            print("equivalent trtexec command (build on the target: Jetson engines must be built on the Jetson):")
            print("  " + trtexec_for(args.onnx, args.engine, settings))
            print("then write its sidecar: occ export --onnx ... --engine ... --trtexec-built TRT_VERSION SM")
            return 0
        if args.trtexec_built:
            trt_version, sm = args.trtexec_built
            sidecar = write_sidecar_for_engine(args.onnx, args.engine, settings, trt_version, sm, args.gpu_name)
            print(f"sidecar: {sidecar} (TensorRT {trt_version}, compute capability {sm})")
            return 0
        result = build_engine(args.onnx, args.engine, settings)
    except (BuildError, BackendError, OSError, ValueError) as err:
        raise CliError(str(err)) from None
    print(result.summary())
    return 0


# ---------------------------------------------------------------------------- runtime settings
_non_negative_int = _int_at_least(0, " (0 = the runtime's default)")


def _runtime_args(p: argparse.ArgumentParser, default: str) -> None:
    """``--threads`` and ``--spinning / --no-spinning``: the node's parameters ``threads`` and ``spinning``."""
    p.add_argument(
        "--threads",
        type=_non_negative_int,
        help=f"CPU threads: onnxruntime intra-op, torch set_num_threads; 0 = the runtime's own (default: {default})",
    )
    p.add_argument(
        "--spinning",
        action=argparse.BooleanOptionalAction,
        help=f"onnxruntime: intra-op threads busy-wait between operators (default: {default})",
    )


def _runtime_settings(args: argparse.Namespace, base: RuntimeSettings) -> RuntimeSettings:
    """``base`` with the ``--threads`` / ``--spinning`` given on the command line."""
    given = {"threads": args.threads, "spinning": args.spinning}
    return dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})


def _say_unused(runtime: RuntimeSettings, backend: str, args: argparse.Namespace) -> None:
    """Name on stderr the ``--threads`` / ``--spinning`` given that ``backend`` does not use."""
    given = tuple(name for name in ("threads", "spinning") if getattr(args, name) is not None)
    unused = runtime.unused(backend, given)
    if unused:
        flags = ", ".join(f"--{name}" for name in unused)
        print(f"note: {flags} do(es) not apply to the {backend} backend; ignored", file=sys.stderr)


# ---------------------------------------------------------------------------- occ bench
def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="inference latency of a model on a backend",
        description="Warm up, then time the model on random inputs of its shapes: p50/p90/p99 latency, throughput "
        "and the host<->device copy share.",
    )
    p.add_argument("--model", type=Path, required=True, help=".ckpt, .onnx or .engine")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKEND_CHOICES), help="default: by file suffix")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument(
        "--precision",
        default=None,
        choices=("fp32", "fp16", "int8"),
        help="torch: fp16 runs the network in half precision; engines report their own",
    )
    p.add_argument("--providers", nargs="+", help="onnxruntime providers in order, e.g. tensorrt cuda")
    _runtime_args(p, "the node's default")
    p.add_argument("--cuda-graph", action="store_true", help="torch: replay a captured CUDA graph")
    p.add_argument("--iterations", type=_positive_int, default=50, help="timed runs (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    _output(p, "--json", help="also write the result as JSON")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from occ_ros.inference.backend import BackendError, backend_for, backend_options, open_backend
    from occ_ros.inference.bench import run_bench
    from occ_ros.node.params import ModelParams

    try:
        name = backend_for(args.model, args.backend)
        runtime = _runtime_settings(args, ModelParams().runtime())
        _say_unused(runtime, name, args)
        options = backend_options(name, runtime, args.precision or "", args.cuda_graph, args.providers)
        backend = open_backend(args.model, name, device=args.device, warmup=False, **options)
        precision = args.precision or getattr(backend, "precision", "fp32")
        result = run_bench(backend, iterations=args.iterations, warmup=args.warmup, precision=precision)
        backend.close()
    except (BackendError, OSError, ValueError) as err:
        raise CliError(str(err)) from None
    print(result.summary())
    if args.json is not None:
        result.save_json(args.json)
        print(f"  json: {args.json}")
    return 0


# ---------------------------------------------------------------------------- occ replay
def _add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="run the node's pipeline over a recorded rosbag2 and measure it",
        description="Replay a rosbag2 (MCAP or sqlite3) through the node's pipeline (synchronization, CameraInfo + "
        "tf, the model's preprocessing, the backend, the output messages) and write the node's output topics into "
        "a new MCAP bag, with per-stage latency, skipped frames and their reasons, and mIoU / IoU against --gt.",
    )
    p.add_argument("--bag", type=Path, required=True, help="input rosbag2 folder (MCAP or sqlite3)")
    p.add_argument("--model", type=Path, required=True, help=".ckpt, .onnx or .engine")
    _output(p, "--out", kind="dir", required=True, help="output bag folder (MCAP; must not exist)")
    p.add_argument("--config", type=Path, help="the bag's camera topics and frames (the `occ inspect` bag YAML)")
    p.add_argument(
        "--params",
        type=Path,
        help="the node's parameter file (what `ros2 launch occ_ros occupancy.launch.py config:=...` takes): replay "
        "exactly the node's session (topics, frames, outputs, sync); default: the node's defaults",
    )
    p.add_argument(
        "--gt",
        type=Path,
        help="ground truth matched to the replayed frames by stamp: a dataset folder with ground truth (e.g. the "
        "`occ synth` folder the bag was recorded from), its gts/ folder, or a folder of <stamp_ns>/labels.npz files",
    )
    _output(p, "--json", help="write the metrics as JSON")
    p.add_argument("--rate", default="max", choices=("max", "realtime"), help="max: every frame (default)")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKEND_CHOICES), help="default: by file suffix")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    _runtime_args(p, "--params' parameter, else the node's default")
    p.add_argument("--min-confidence", type=float, help="publish only voxels at least this confident (default: all)")
    _output(p, "--predictions", kind="dir", help="also write Occ3D labels.npz per frame into this folder")
    _output(p, "--timings", help="write every frame's stage latencies as CSV")
    _output(p, "--latency-plot", help="write a PNG of the per-frame stage latencies")
    p.add_argument(
        "--budget-ms", type=float, help="draw this per-frame budget on the latency plot (e.g. 100 for 10 Hz cameras)"
    )
    p.add_argument(
        "--query",
        metavar="PROMPT",
        help="send this prompt name to the node's ~/query before the first frame: ~/query/voxels (the matching "
        "voxels, with their score) is written every frame (the model must be exported with `occ export --queries`)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_replay)


def _run_replay(args: argparse.Namespace) -> int:
    from occ_ros.inference.backend import BackendError
    from occ_ros.replay import ReplayError, replay, write_metrics, write_timings

    try:
        summary = replay(
            args.bag,
            args.model,
            args.out,
            config=args.config,
            params=args.params,
            gt=args.gt,
            rate=args.rate,
            backend=args.backend,
            device=args.device,
            min_confidence=args.min_confidence,
            predictions=args.predictions,
            progress=not args.quiet,
            threads=args.threads,
            spinning=args.spinning,
            query=args.query,
        )
    except (ReplayError, BackendError, OSError, ValueError) as err:
        raise CliError(str(err)) from None
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(summary.skipped.items()) if v) or "none"
    print(
        f"replay: {summary.processed} of {summary.synchronized} synchronized frames processed in "
        f"{summary.wall_seconds:.1f} s ({summary.backend}, {summary.provider}); skipped: {skipped}"
    )
    for stage, values in summary.stages_ms.items():
        print(f"  {stage:12s} p50 {values.get('p50_ms', 0):8.2f} ms  p99 {values.get('p99_ms', 0):8.2f} ms")
    if summary.accuracy is not None:
        acc = summary.accuracy
        print(f"  accuracy: mIoU {acc['miou']:.2f}  IoU {acc['iou']:.2f} over {acc['frames']} frames (camera mask)")
    if args.query is not None:
        print(f"  query {args.query!r}: {summary.query_published} ~/query/voxels messages")
    for problem in summary.problems:
        print(f"  note: {problem}")
    print(f"  output bag: {summary.out}")
    if args.json is not None:
        write_metrics(summary, args.json)
        print(f"  metrics: {args.json}")
    if args.timings is not None:
        write_timings(summary, args.timings)
        print(f"  per-frame timings: {args.timings}")
    if args.latency_plot is not None:
        from occ_ros import viz

        title = f"occ replay {args.bag.name}: {summary.backend} ({summary.provider})"
        viz.latency_figure(args.latency_plot, summary.stage_series(), title=title, budget_ms=args.budget_ms)
        print(f"  latency plot: {args.latency_plot}")
    return 0


# ---------------------------------------------------------------------------- occ demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job end to end on the built-in synthetic world")
    _output(p, "--out", kind="dir", default=Path("out/demo"), help="output directory (default out/demo)")
    p.add_argument("--frames", type=_positive_int, default=12, help="frames in the synthetic sequence (default 12)")
    p.add_argument("--seed", type=int, default=3, help="scene seed (default 3)")
    p.add_argument(
        "--train",
        action="store_true",
        help="the long path: make the training data and train the network (models/demo.ckpt's recipe, about 40 min "
        "on 2 CPU cores; resumes) instead of using the shipped checkpoint",
    )
    p.add_argument(
        "--fixtures",
        type=Path,
        help="folder with nuscenes_sample/ for the real-data stage (default ../shared/fixtures next to the repo)",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="with --train: training config overrides")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from occ_ros.core.config import ConfigError
    from occ_tools.demo import DEFAULT_FIXTURES, run_demo

    if args.overrides and not args.train:
        raise CliError("KEY=VALUE overrides apply to --train only")
    try:
        run_demo(
            args.out,
            frames=args.frames,
            seed=args.seed,
            train=args.train,
            train_overrides=args.overrides,
            fixtures=args.fixtures or DEFAULT_FIXTURES,
        )
    except (OSError, ValueError, ConfigError) as err:
        raise CliError(str(err)) from None
    return 0


# ---------------------------------------------------------------------------- occ gt
def _add_gt(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gt",
        help="build SemanticKITTI voxel ground truth from labelled LiDAR scans (evaluation only)",
        description="For every frame of a SemanticKITTI-layout dataset with velodyne/ and labels/, accumulate the "
        "labelled scans of the sequence into that frame's 256x256x32 grid (majority class per voxel, moving "
        "objects from the frame's own scan only), carve free space along the LiDAR rays, and write "
        "OUT/sequences/NN/voxels/F.{label,invalid,camera_mask,bin} in the official formats (read by "
        "SemanticKittiReader(gt_root=OUT) and `occ eval --benchmark semantickitti --gt OUT`). Resumable: "
        "finished frames are skipped. Training never reads LiDAR; see docs/evaluation.md.",
    )
    p.add_argument("--from-lidar", action="store_true", help="build from labelled LiDAR (the only source so far)")
    p.add_argument("--data", type=Path, required=True, help="SemanticKITTI root (sequences/NN/velodyne, labels, ...)")
    _output(p, "--out", kind="dir", required=True, help="output root (OUT/sequences/NN/voxels/)")
    p.add_argument("--sequences", nargs="*", help="sequences to build (default: all)")
    p.add_argument("--frames", nargs="*", type=int, help="frame numbers to build (default: all)")
    p.add_argument("--window", type=int, help="accumulate scans within +-N frames (default: the whole sequence)")
    p.add_argument("--max-rays", type=_positive_int, help="trace at most N random rays per frame (default: all)")
    p.add_argument("--camera-only", action="store_true", help="also mark voxels outside the camera frustum invalid")
    p.add_argument("--seed", type=int, default=0, help="seed of the ray subset (with --max-rays)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_gt)


def _run_gt(args: argparse.Namespace) -> int:
    from occ_ros.eval.lidar_gt import build_lidar_gt

    if not args.from_lidar:
        raise CliError("choose the source of the ground truth: --from-lidar (the only one so far)")
    if args.window is not None and args.window < 0:
        raise CliError(f"--window must be >= 0 frames, got {args.window}")
    progress = None
    if not args.quiet:
        from functools import partial

        from tqdm import tqdm

        progress = partial(tqdm, desc="occ gt", unit="frame")
    try:
        report = build_lidar_gt(
            args.data,
            args.out,
            sequences=args.sequences,
            frames=args.frames,
            window=args.window,
            max_rays=args.max_rays,
            camera_only=args.camera_only,
            seed=args.seed,
            progress=progress,
            log=print,
        )
    except (OSError, ValueError, KeyError) as err:
        raise CliError(str(err)) from None
    rate = f", {report.seconds_per_frame:.2f} s/frame" if report.written else ""
    print(f"gt: {report.written} frames written, {report.skipped} already done -> {args.out}{rate}")
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_synth,
    _add_eval,
    _add_gt,
    _add_inspect,
    _add_labels,
    _add_train,
    _add_predict,
    _add_query,
    _add_export,
    _add_bench,
    _add_replay,
    _add_demo,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="occ",
        description="occ_ros: camera-only 3D semantic occupancy, learned without 3D labels, run as a ROS 2 node.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_outputs(args)
        return int(args.func(args))
    except CliError as err:
        print(f"occ {args.command}: error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"occ {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
