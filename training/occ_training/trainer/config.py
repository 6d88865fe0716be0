"""The training configuration: typed dataclasses, loaded from YAML with dotted command-line overrides.

``occ train --config config/train/demo.yaml steps=200 optim.lr=1e-3 data.train=[a,b]`` reads the file,
applies each ``KEY=VALUE`` override (the value is parsed as YAML) to the nested mapping, then builds
:class:`TrainConfig` with :func:`~occ_ros.core.config.from_mapping`: an unknown key or a wrong type fails
here, naming the key, before any data is read. Sections reuse the stages' own configs
(:class:`~occ_ros.model.network.ModelConfig`, :class:`~occ_training.rendering.losses.RenderingLossConfig`,
:class:`~occ_training.rendering.renderer.RenderingConfig`, :class:`~occ_training.teachers.factory.TeacherSpec`).
docs/training.md documents every key.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from occ_ros.core.config import (
    ConfigError,
    Range,
    check_fields,
    from_mapping,
    load_yaml_mapping,
    told_from_file,
)
from occ_ros.core.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.model.network import ModelConfig
from occ_training.rendering.losses import RenderingLossConfig
from occ_training.rendering.renderer import RenderingConfig
from occ_training.teachers.factory import TeacherSpec


@dataclass(frozen=True)
class ImageConfig:
    """How camera images become network input (the size is the model's ``image_height`` x ``image_width``).

    Attributes:
        crop: where rows beyond the network height are cut (:class:`~occ_ros.core.preprocess.PreprocessConfig`).
        mean, std: per-channel RGB normalisation.
    """

    crop: Annotated[float, Range(ge=0, le=1)] = 1.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: Annotated[tuple[float, float, float], Range(gt=0)] = IMAGENET_STD

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class DataConfig:
    """Where the training data lives.

    Attributes:
        train, val: dataset folders or rosbag2 bags (anything ``occ inspect`` opens). Validation needs
            ground truth (e.g. synthetic sequences, nuScenes + Occ3D); an empty ``val`` skips validation.
        kind: reader kind for all of them (``auto`` detects).
        dataset_config: rosbag reader settings YAML (topics, frames), for ``kind: rosbag``.
        labels: the pseudo-label folder of each training dataset (``occ labels --out``); a relative path is
            taken relative to the dataset folder (for a bag: its parent folder), or to the current folder with
            ``labels_base: cwd`` (for datasets in read-only places).
        teachers: the 2D teachers of the rendering losses (``sim`` for the synthetic world, ``hf`` models).
        label_mask: the pseudo-label voxels the voxel losses supervise: ``camera`` (their ``mask_camera``: what the
            key frame's camera sees up to the first occupied voxel) or ``camera_and_occupied`` (also every voxel
            the labels call occupied, e.g. surfaces other frames saw or the depth spread put behind the first hit).
        train_sequences, val_sequences: only these sequences of each SemanticKITTI root (empty: all), so that
            one folder gives the training and the validation split.
        val_target: what validation scores against: ``gt`` (the dataset's ground truth) or ``labels`` (the
            validation frames' pseudo-labels, for data whose only 3-D ground truth may not steer training,
            e.g. LiDAR kept for evaluation).
        val_frames: validate on at most this many frames per dataset, evenly spaced (0 = all).
        cache: keep prepared training frames in memory after their first use (teachers run once per frame).
        mirror: augment by mirroring the world left-right (:func:`~occ_training.trainer.data.mirror_item`) for
            half of the training frames, chosen by the frame's stream position (reproducible, DDP-invariant).
    """

    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    kind: Literal["auto", "synth", "nuscenes", "semantickitti", "rosbag"] = "auto"
    dataset_config: str | None = None
    labels: str = "pseudo_labels"
    labels_base: Literal["dataset", "cwd"] = "dataset"
    label_mask: Literal["camera", "camera_and_occupied"] = "camera"
    teachers: TeacherSpec = field(default_factory=TeacherSpec)
    train_sequences: tuple[str, ...] = ()
    val_sequences: tuple[str, ...] = ()
    val_target: Literal["gt", "labels"] = "gt"
    val_frames: Annotated[int, Range(ge=0)] = 0
    cache: bool = True
    mirror: bool = False

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class PhotometricConfig:
    """Photometric reprojection with the rendered depth (only read when ``loss.photometric > 0``).

    Attributes:
        neighbours: source frames relative to the target (e.g. ``[-1, 1]``); a missing neighbour is skipped.
        stride: the depth image is rendered at every ``stride``-th network pixel (the target image is
            downsampled to match).
    """

    neighbours: tuple[int, ...] = (-1, 1)
    stride: Annotated[int, Range(ge=1)] = 8

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class DistillConfig:
    """RadOcc teacher -> student distillation (used when ``loss.ray_kl`` or ``loss.affinity`` is > 0).

    Attributes:
        teacher: ``labels``: a parameter-free teacher that is given the frame's pseudo-label volume as input
            and renders it (occupied voxels get ``label_density``, free ones 0, unknown ones
            ``unknown_density``; semantics one-hot); ``checkpoint``: a frozen trained network (e.g. trained
            with more frames or a larger backbone) loaded from ``checkpoint``.
        checkpoint: the teacher network's checkpoint (``teacher: checkpoint``).
        label_density, unknown_density: densities (1/m) of the ``labels`` teacher.
    """

    teacher: Literal["labels", "checkpoint"] = "labels"
    checkpoint: str | None = None
    label_density: Annotated[float, Range(ge=0)] = 20.0
    unknown_density: Annotated[float, Range(ge=0)] = 0.0

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and cosine decay to ``min_lr_ratio * lr``.

    Attributes:
        grad_clip: clip the global gradient norm to this (0 = no clipping).
    """

    lr: Annotated[float, Range(gt=0)] = 2e-3
    weight_decay: Annotated[float, Range(ge=0)] = 1e-2
    betas: Annotated[tuple[float, float], Range(ge=0, lt=1)] = (0.9, 0.999)
    warmup_steps: Annotated[int, Range(ge=0)] = 50
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: Annotated[float, Range(ge=0, le=1)] = 0.05
    grad_clip: Annotated[float, Range(ge=0)] = 5.0

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class DecisionConfig:
    """How the trained network's class scores become labels (:mod:`occ_training.trainer.logit_adjustment`).

    Attributes:
        logit_adjustment: ``none``: labels are the argmax of the logits; ``val``: after the last step, add
            ``-tau * log(w_c)`` (``w_c``: the ENet class weights of ``loss.class_weighting``) to the logits, with
            the ``tau`` of ``taus`` whose labels best match the pseudo-labels of ``data.val`` (Occ3D mIoU, camera
            mask). The bias is stored in the checkpoint and applied by every backend.
        taus: the candidate strengths (0 = no adjustment, 1 = the class weighting fully undone).
    """

    logit_adjustment: Literal["none", "val"] = "none"
    taus: Annotated[tuple[float, ...], Range(ge=0)] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.taus:
            raise ValueError(f"decision.taus must be a non-empty list of values >= 0, got {list(self.taus)}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``occ train`` needs (docs/training.md).

    Attributes:
        out: run folder (checkpoints, TensorBoard logs, the resolved config); relative to the working directory.
        seed: seeds the initial weights, the data order, ray sampling and stratified jitter.
        vocabulary: vocabulary name or YAML path; ``model.num_classes`` must equal its size.
        steps: optimizer steps.
        batch_size: frames per process per micro-batch.
        grad_accum: micro-batches per optimizer step (global batch = batch_size x grad_accum x processes).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        amp: mixed precision on CUDA: ``auto`` (bf16 when supported, else fp16 with loss scaling), ``bf16``,
            ``fp16`` or ``off``; always off on CPU.
        threads: torch CPU threads per process (0 = torch's default).
        backbone_weights: a local ResNet state dict (torchvision's ImageNet ``resnet18`` / ``resnet34`` file, or
            another backbone's) loaded into the image backbone before the first step (docs/model.md); None: random.
        log_every, val_every, ckpt_every: steps between log lines, validations and checkpoints (0 = never; the
            last step always checkpoints).
    """

    out: str = "runs/demo"
    seed: Annotated[int, Range(ge=0)] = 0
    vocabulary: str = "occ3d"
    model: ModelConfig = field(default_factory=ModelConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: RenderingLossConfig = field(default_factory=RenderingLossConfig)
    rendering: RenderingConfig = field(default_factory=RenderingConfig)
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    steps: Annotated[int, Range(ge=1)] = 1000
    batch_size: Annotated[int, Range(ge=1)] = 1
    grad_accum: Annotated[int, Range(ge=1)] = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    threads: Annotated[int, Range(ge=0)] = 0
    backbone_weights: str | None = None
    log_every: Annotated[int, Range(ge=0)] = 10
    val_every: Annotated[int, Range(ge=0)] = 0
    ckpt_every: Annotated[int, Range(ge=0)] = 100

    def __post_init__(self) -> None:
        check_fields(self)
        if self.data.mirror:
            grid = self.model.grid_spec
            if abs(grid.range_min[1] + grid.range_max[1]) > 1e-6:
                raise ValueError(
                    f"data.mirror needs a grid symmetric in y, got y in [{grid.range_min[1]}, {grid.range_max[1]}]"
                )
        if self.loss.enabled("lift_depth") and not self.model.depth_bins:
            raise ValueError("loss.lift_depth > 0 needs a model with depth bins (model.depth_bins > 0)")
        if self.decision.logit_adjustment == "val":
            if not self.data.val:
                raise ValueError("decision.logit_adjustment is 'val' but data.val is empty (tau is chosen there)")
            if self.loss.class_weighting != "enet" or not self.loss.enabled("voxel_ce"):
                raise ValueError(
                    "decision.logit_adjustment is 'val' but there are no class weights to adjust for "
                    "(needs loss.class_weighting: enet and loss.voxel_ce > 0)"
                )
        if (self.loss.enabled("ray_kl") or self.loss.enabled("affinity")) and self.distill.teacher == "checkpoint":
            if not self.distill.checkpoint:
                raise ValueError("distill.teacher is 'checkpoint' but distill.checkpoint is not set")

    # ------------------------------------------------------------------ derived
    def load_vocabulary(self) -> Vocabulary:
        """The vocabulary, checked against the model's class count (the error names both)."""
        vocab = Vocabulary.load(self.vocabulary)
        if len(vocab) != self.model.num_classes:
            raise ConfigError(
                f"vocabulary {vocab.name!r} has {len(vocab)} classes (free included) but model.num_classes is "
                f"{self.model.num_classes}"
            )
        return vocab

    def preprocess(self) -> PreprocessConfig:
        """The preprocessing of every stage: the model's input size with this config's crop and normalisation."""
        return PreprocessConfig(
            self.model.image_height, self.model.image_width, self.image.crop, self.image.mean, self.image.std
        )

    @property
    def uses_distillation(self) -> bool:
        return self.loss.enabled("ray_kl") or self.loss.enabled("affinity")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML / JSON); :func:`config_from_mapping` gives the config back."""
        data = _plain(dataclasses.asdict(self))
        data["model"] = _plain(self.model.to_dict())
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


#: The loss terms beyond the voxel pseudo-label loss, in the ablation's order.
RENDERING_TERMS = ("depth", "lift_depth", "semantic", "photometric", "clip", "ray_kl", "affinity")


def terms_off(*names: str) -> list[str]:
    """Overrides that switch loss terms off (all of :data:`RENDERING_TERMS` when no name is given)."""
    return [f"loss.{name}=0" for name in (names or RENDERING_TERMS)]


def config_from_mapping(data: Mapping[str, Any], where: str = "train config") -> TrainConfig:
    """Build a :class:`TrainConfig`, strictly (unknown keys and wrong types raise :class:`ConfigError`)."""
    return from_mapping(TrainConfig, data, where)


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``KEY.SUBKEY=VALUE`` overrides (values parsed as YAML) to a nested mapping, returning a copy.

    Keys are checked against :class:`TrainConfig`'s fields on the way down, so a typo names the key and
    lists the known ones even when the file does not mention that section.
    """
    import yaml

    out = copy.deepcopy(dict(data))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=1e-3")
        parts = key.strip().split(".")
        cls: Any = TrainConfig
        node = out
        for depth, part in enumerate(parts):
            names = {f.name: f for f in dataclasses.fields(cls)} if cls is not None else None
            if names is not None and part not in names:
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {where!r}: unknown key {part!r}; {cls.__name__} has {sorted(names)}")
            hint = _field_type(cls, part) if cls is not None else None
            if depth == len(parts) - 1:
                try:
                    node[part] = yaml.safe_load(text) if text.strip() else None
                except yaml.YAMLError as err:
                    raise ConfigError(f"override {key}: cannot parse value {text!r}: {err}") from None
            else:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                if not isinstance(child, dict):
                    raise ConfigError(f"override {key}: {'.'.join(parts[: depth + 1])} is not a section")
                node = child
                cls = hint if dataclasses.is_dataclass(hint) else None
    return out


def _field_type(cls: Any, name: str) -> Any:
    import typing

    return typing.get_type_hints(cls).get(name)


def load_train_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a training config YAML, apply command-line overrides, validate everything.

    Raises:
        ConfigError: naming the file and the key, for unknown keys, wrong types and values out of range; a bad
            value an override gave is blamed on the override (``override optim.lr=-1: optim.lr must be > 0``).
    """
    data = load_yaml_mapping(path, "training config")
    merged = apply_overrides(data, overrides)
    try:
        return config_from_mapping(merged, where=str(path))
    except ConfigError as err:
        raise _blame(err, path, overrides) from None


def _blame(err: ConfigError, path: str | Path, overrides: Sequence[str]) -> ConfigError:
    """Tell a bad value where it came from: the last command-line override that set it
    (``override optim.lr=-1: optim.lr must be > 0, got -1``), else the file (:func:`told_from_file`)."""
    if err.key is None:
        return err
    for item in reversed(overrides):
        key, _, text = item.partition("=")
        key = key.strip()
        if err.key == key or err.key.startswith(key + "."):
            shown = repr(text.strip()) if err.key == key and isinstance(err.value, bool) else None
            return err.told(f"override {item}: ", shown)
    return told_from_file(err, path)
