"""Checkpoints: one self-describing file per model, written atomically.

A checkpoint is a ``torch.save`` dict::

    format        "occ_ros.checkpoint"   version  1
    model         ModelConfig.to_dict()  (image size, grid, classes, channels, ...)
    vocabulary    Vocabulary.to_dict()
    preprocess    PreprocessConfig fields (the one preprocessing every stage repeats)
    text_encoder  the feature teacher whose text space the CLIP head learned (``occ query`` embeds with it)
    cameras       camera names in input order (the training rig's; optional, older files lack it)
    config_hash   sha256 of the training config (optional)
    state_dict    the network's weights
    step          optimizer steps trained
    train         (training checkpoints only) optimizer, scheduler, AMP scaler, class weights, config

``models/demo.ckpt`` and ``RUN/model.ckpt`` carry no ``train`` section; ``RUN/last.ckpt`` does and is what
``--resume`` continues from. Loading checks the format and names the file in every error.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from occ_ros.core.config import ConfigError, from_mapping
from occ_ros.core.preprocess import PreprocessConfig
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.inference.model_info import (
    REQUIRED_OUTPUTS,
    ModelInfo,
    config_hash,
    package_version,
)
from occ_ros.io.atomic import atomic_write_bytes
from occ_ros.model.network import ModelConfig, OccupancyNetwork

FORMAT = "occ_ros.checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, of another format, or incompatible with the data (names the file)."""


@dataclass
class ModelBundle:
    """A network with everything needed to feed it: its config, vocabulary and preprocessing.

    Attributes:
        model: the network (eval mode after :func:`load_checkpoint`).
        vocabulary: label vocabulary (output class ``k`` = ``vocabulary.classes[k]``).
        preprocess: the image preprocessing the network was trained with.
        text_encoder: description of the CLIP-feature teacher (``{}`` without a feature head).
        step: training steps.
        path: the file it came from.
        cameras: camera names in input order (``()`` when the checkpoint does not record them).
        config_hash: sha256 of the training config (``""`` when not recorded).
    """

    model: OccupancyNetwork
    vocabulary: Vocabulary
    preprocess: PreprocessConfig
    text_encoder: dict[str, Any]
    step: int
    path: Path | None = None
    cameras: tuple[str, ...] = ()
    config_hash: str = ""

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def model_info(self, outputs: Sequence[str] = REQUIRED_OUTPUTS, cameras: Sequence[str] | None = None) -> ModelInfo:
        """What a deployment of this network is (grid, vocabulary, cameras, preprocessing, outputs, provenance).

        Args:
            outputs: the deployed outputs (:class:`~occ_ros.model.deployed.DeployedNetwork`).
            cameras: camera names in input order; default the checkpoint's, else ``cam0 .. camN-1``.
        Raises:
            CheckpointError: camera names whose count differs from the network's.
        """
        cfg = self.config
        names = tuple(cameras or self.cameras or [f"cam{i}" for i in range(cfg.num_cameras)])
        if len(names) != cfg.num_cameras:
            raise CheckpointError(
                f"{self.path}: the network takes {cfg.num_cameras} cameras, the camera names given are {list(names)}"
            )
        provenance = self.config_hash or config_hash({"model": cfg.to_dict(), "vocabulary": self.vocabulary.to_dict()})
        return ModelInfo(
            grid=cfg.grid_spec,
            vocabulary=self.vocabulary,
            cameras=names,
            preprocess=self.preprocess,
            outputs=tuple(outputs),
            config_hash=provenance,
            version=package_version(),
            step=self.step,
            model=cfg.to_dict(),
            text_encoder=dict(self.text_encoder),
            clip_dim=cfg.clip_dim if "features" in outputs else 0,
        )


def checkpoint_dict(
    model: OccupancyNetwork,
    vocabulary: Vocabulary,
    preprocess: PreprocessConfig,
    step: int,
    text_encoder: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    cameras: tuple[str, ...] | list[str] = (),
    config_hash: str = "",
    decision: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict :func:`save_checkpoint` writes (weights copied to CPU).

    ``decision``: how the ``decision_bias`` in the weights was chosen (logit adjustment: ``tau`` and the
    pseudo-label mIoU of every candidate), recorded as is.
    """
    data: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.config.to_dict(),
        "vocabulary": vocabulary.to_dict(),
        "preprocess": dataclasses.asdict(preprocess),
        "text_encoder": dict(text_encoder or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": int(step),
        "cameras": list(cameras),
        "config_hash": str(config_hash),
    }
    if train is not None:
        data["train"] = train
    if decision is not None:
        data["decision"] = dict(decision)
    return data


def save_checkpoint(path: str | Path, data: dict[str, Any]) -> Path:
    """Write a checkpoint dict atomically (a crash leaves the previous file intact)."""
    buffer = io.BytesIO()
    torch.save(data, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, validated for format and version."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files (pickle, zip, runtime)
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an occ_ros checkpoint (no format {FORMAT!r})")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {data.get('version')}, this occ_ros reads {VERSION}")
    return data


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> ModelBundle:
    """Rebuild the network of a checkpoint, in eval mode on ``device``."""
    path = Path(path)
    data = read_checkpoint(path)
    try:
        config = from_mapping(ModelConfig, data["model"], f"{path}: model")
        vocabulary = Vocabulary.from_dict(data["vocabulary"], source=str(path))
        preprocess = from_mapping(PreprocessConfig, data["preprocess"], f"{path}: preprocess")
    except (ConfigError, KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid checkpoint metadata: {err}") from None
    model = OccupancyNetwork(config)
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the recorded model config: {err}") from None
    model.to(device).eval()
    return ModelBundle(
        model,
        vocabulary,
        preprocess,
        dict(data.get("text_encoder", {})),
        int(data["step"]),
        path,
        tuple(str(c) for c in data.get("cameras", ())),
        str(data.get("config_hash", "")),
    )


