"""Build the teachers ``occ labels`` asks, from command-line / YAML choices."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from occ_ros.core.config import check_fields
from occ_ros.core.vocabulary import Vocabulary

from .base import DepthTeacher, FeatureTeacher, SegmentationTeacher, TeacherError
from .simulated import SimDepthTeacher, SimFeatureTeacher, SimSegmentationTeacher, SimTeacherConfig

TeacherKind = Literal["sim", "hf", "onnx"]
Segmenter = Literal["clipseg", "grounded-sam"]


@dataclass(frozen=True)
class TeacherSpec:
    """Which teachers to use.

    Attributes:
        kind: ``sim`` (simulated, synthetic world only), ``hf`` (Hugging Face models from local dirs) or
            ``onnx`` (ONNX models described by model cards, run with ONNX Runtime).
        depth: ``metric`` or ``relative``; for ``hf`` / ``onnx`` it must agree with the depth model (None: take it).
        segmenter: ``clipseg`` or ``grounded-sam`` (``hf`` only).
        seg_model: CLIPSeg or Grounding DINO checkpoint directory.
        sam_model: SAM checkpoint directory (``grounded-sam``).
        depth_model: Depth Anything V2 checkpoint directory.
        feature_model: CLIP checkpoint directory of the dense-feature (MaskCLIP) teacher (``hf``; training's
            CLIP distillation and ``occ query``).
        seg_card: model card of the ``onnx`` segmentation teacher: a YAML path or a shipped card's name
            (``config/teachers/<name>.yaml``; None: ``espnetv2_cityscapes``).
        depth_card: model card of the ``onnx`` depth teacher (None: ``pydnet_kitti``).
        device: torch device for the ``hf`` models; ``cpu`` or ``cuda[:N]`` for the ``onnx`` ones.
        sim: noise of the simulated teachers (``sim`` only; ``sim.depth.kind`` follows ``depth``).
    """

    kind: TeacherKind = "sim"
    depth: Literal["metric", "relative"] | None = None
    segmenter: Segmenter = "clipseg"
    seg_model: str | None = None
    sam_model: str | None = None
    depth_model: str | None = None
    feature_model: str | None = None
    seg_card: str | None = None
    depth_card: str | None = None
    device: str = "cpu"
    sim: SimTeacherConfig = field(default_factory=SimTeacherConfig)

    def __post_init__(self) -> None:
        check_fields(self)

    def describe(self) -> dict[str, Any]:
        """What the label manifest records: noise settings (``sim``), model folders (``hf``) or cards (``onnx``)."""
        if self.kind == "sim":
            return {"kind": "sim", "depth": self.depth or self.sim.depth.kind, "sim": asdict(self.sim)}
        if self.kind == "onnx":
            from .onnx_teacher import DEFAULT_DEPTH_CARD, DEFAULT_SEG_CARD, describe_card

            return {
                "kind": "onnx",
                "seg_card": describe_card(self.seg_card or DEFAULT_SEG_CARD),
                "depth_card": describe_card(self.depth_card or DEFAULT_DEPTH_CARD),
            }
        return {
            "kind": "hf",
            "segmenter": self.segmenter,
            "seg_model": self.seg_model,
            "sam_model": self.sam_model,
            "depth_model": self.depth_model,
            "feature_model": self.feature_model,
        }


def _model_dir(path: str | None, option: str) -> Path:
    if not path:
        raise TeacherError(f"--teacher hf needs {option} DIR (a local Hugging Face checkpoint folder)")
    return Path(path)


def build_teachers(
    spec: TeacherSpec, data_root: str | Path, vocabulary: Vocabulary
) -> tuple[SegmentationTeacher, DepthTeacher]:
    """The segmentation and depth teachers of ``spec``.

    Args:
        spec: the choices.
        data_root: the dataset being labelled (the simulated teachers read its ground truth: an
            ``occ synth`` folder, or its ``bag/`` recording, whose parent holds the ground truth).
        vocabulary: the label vocabulary (its prompts drive open-vocabulary models).
    Raises:
        TeacherError: missing or wrong model folders, a vocabulary without prompts, a depth kind that
            the checkpoint contradicts.
    """
    vocabulary.prompts()  # every teacher needs prompts (the simulated ones check the names too)
    if spec.kind == "sim":
        sim = spec.sim
        if spec.depth is not None and spec.depth != sim.depth.kind:
            sim = replace(sim, depth=replace(sim.depth, kind=spec.depth))
        seg_root = synth_root(data_root)
        return (
            SimSegmentationTeacher(seg_root, vocabulary, sim.segmentation),
            SimDepthTeacher(seg_root, sim.depth),
        )
    if spec.kind == "onnx":
        return _onnx_teachers(spec, vocabulary)
    if spec.kind != "hf":
        raise TeacherError(f"unknown teacher kind {spec.kind!r}; expected sim, hf or onnx")
    from .hf import ClipSegTeacher, DepthAnythingTeacher, GroundedSamTeacher

    segmentation: SegmentationTeacher
    if spec.segmenter == "clipseg":
        segmentation = ClipSegTeacher(vocabulary, _model_dir(spec.seg_model, "--seg-model"), device=spec.device)
    elif spec.segmenter == "grounded-sam":
        segmentation = GroundedSamTeacher(
            vocabulary,
            _model_dir(spec.seg_model, "--seg-model"),
            _model_dir(spec.sam_model, "--sam-model"),
            device=spec.device,
        )
    else:
        raise TeacherError(f"unknown segmenter {spec.segmenter!r}; expected clipseg or grounded-sam")
    depth = DepthAnythingTeacher(_model_dir(spec.depth_model, "--depth-model"), device=spec.device)
    if spec.depth is not None and spec.depth != depth.kind:
        raise TeacherError(
            f"--depth {spec.depth} but the checkpoint {spec.depth_model} is a {depth.kind} depth model "
            f"(config.json depth_estimation_type)"
        )
    return segmentation, depth


def _onnx_teachers(spec: TeacherSpec, vocabulary: Vocabulary) -> tuple[SegmentationTeacher, DepthTeacher]:
    """The ONNX teachers of ``spec``'s model cards (both cards are read before either model is loaded)."""
    from .onnx_teacher import (
        DEFAULT_DEPTH_CARD,
        DEFAULT_SEG_CARD,
        OnnxDepthTeacher,
        OnnxSegmentationTeacher,
        load_card,
    )

    seg_card = load_card(spec.seg_card or DEFAULT_SEG_CARD)
    depth_card = load_card(spec.depth_card or DEFAULT_DEPTH_CARD)
    if depth_card.depth is not None and spec.depth is not None and spec.depth != depth_card.depth.depth_kind:
        raise TeacherError(
            f"--depth {spec.depth} but {depth_card.where} describes a {depth_card.depth.depth_kind} depth model "
            f"(depth.kind {depth_card.depth.kind})"
        )
    segmentation = OnnxSegmentationTeacher(vocabulary, seg_card, device=spec.device)
    depth = OnnxDepthTeacher(depth_card, device=spec.device)
    return segmentation, depth


def synth_root(data_root: str | Path) -> Path:
    """The ``occ synth`` folder behind a dataset path: the folder itself, or the parent of its ``bag/``."""
    root = Path(data_root)
    return root if (root / "meta.json").exists() else root.parent


def build_feature_teacher(spec: TeacherSpec, data_root: str | Path) -> FeatureTeacher:
    """The dense CLIP-feature teacher of ``spec``: simulated (synthetic world) or MaskCLIP from ``feature_model``."""
    if spec.kind == "sim":
        return SimFeatureTeacher(synth_root(data_root), spec.sim.features)
    from .hf import MaskClipTeacher

    return MaskClipTeacher(_model_dir(spec.feature_model, "feature_model"), device=spec.device)
