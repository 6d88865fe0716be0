"""What a deployed occupancy model is, and its input/output contract (shared by export, backends, node, replay).

Every exported model carries one :class:`ModelInfo`: inside the ONNX file as the metadata property
:data:`METADATA_KEY` (JSON), and in a TensorRT engine's sidecar JSON. Backends read it, so the node and
``occ predict`` feed any model with the same :func:`~occ_ros.core.preprocess.preprocess` settings it was trained
with, and name the grid and classes of its output.

I/O contract of an exported graph (static shapes, batch B = 1, N cameras, network image H x W, grid X x Y x Z)::

    inputs   images        (B, N, 3, H, W) float32  normalised (PreprocessConfig.mean / std)
             K             (B, N, 3, 3)    float32  intrinsics of the network images
             cam_from_ego  (B, N, 4, 4)    float32  ego -> optical-frame transforms
    outputs  labels        (B, X, Y, Z)    uint8    argmax class (vocabulary index; last = free)
             confidence    (B, X, Y, Z)    float32  softmax probability of that class
             logits        (B, C, X, Y, Z) float32  optional: semantic logits
             features      (B, D, X, Y, Z) float32  optional: CLIP-head features (open-vocabulary queries)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from occ_ros.core.grid import GridSpec, coarsening_factor
from occ_ros.core.preprocess import PreprocessConfig
from occ_ros.core.prompts import PromptError, PromptTable
from occ_ros.core.rig import CameraRig
from occ_ros.core.vocabulary import Vocabulary

FORMAT = "occ_ros.model"
FORMAT_VERSION = 1
METADATA_KEY = "occ_ros"
"""ONNX ``metadata_props`` key holding :meth:`ModelInfo.to_json`."""

INPUT_NAMES = ("images", "K", "cam_from_ego")
REQUIRED_OUTPUTS = ("labels", "confidence")
OPTIONAL_OUTPUTS = ("logits", "features")


class ModelInfoError(ValueError):
    """Model metadata that is missing, malformed or of another format (names its source)."""


def package_version() -> str:
    """The installed occ_ros version (package.xml's), or ``"unknown"`` outside an install."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("occ_ros")
    except PackageNotFoundError:
        return "unknown"


def config_hash(data: Mapping[str, Any]) -> str:
    """sha256 (hex) of canonical JSON of ``data`` (sorted keys): identifies a training / model configuration."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ModelInfo:
    """Self-description of a deployed model.

    Attributes:
        grid: the output voxel grid (ego frame).
        vocabulary: output class ``k`` = ``vocabulary.classes[k]``.
        cameras: camera names in input order (the training rig's); the network needs exactly this many cameras.
        preprocess: input size and normalisation (the one preprocessing function's settings).
        outputs: output names, :data:`REQUIRED_OUTPUTS` first.
        config_hash: sha256 of the training config (or of the model config when no training config is known).
        version: occ_ros version that exported the model.
        step: training steps of the weights.
        model: ``ModelConfig.to_dict()`` of the network (informational).
        text_encoder: the CLIP-feature teacher whose text space ``features`` live in (``{}`` without that head).
        clip_dim: channels of ``features`` (0 = none).
        prompts: the prompt table for open-vocabulary queries on the vehicle (``occ export --queries``; stored
            as ``prompt_embeddings``, format in :mod:`occ_ros.core.prompts`), or None.
    """

    grid: GridSpec
    vocabulary: Vocabulary
    cameras: tuple[str, ...]
    preprocess: PreprocessConfig
    outputs: tuple[str, ...] = REQUIRED_OUTPUTS
    config_hash: str = ""
    version: str = "unknown"
    step: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    text_encoder: dict[str, Any] = field(default_factory=dict)
    clip_dim: int = 0
    prompts: PromptTable | None = None

    def __post_init__(self) -> None:
        if tuple(self.outputs[: len(REQUIRED_OUTPUTS)]) != REQUIRED_OUTPUTS:
            raise ModelInfoError(f"model outputs must start with {REQUIRED_OUTPUTS}, got {self.outputs}")
        unknown = set(self.outputs) - set(REQUIRED_OUTPUTS) - set(OPTIONAL_OUTPUTS)
        if unknown:
            known = REQUIRED_OUTPUTS + OPTIONAL_OUTPUTS
            raise ModelInfoError(f"unknown model outputs {sorted(unknown)}; known: {known}")
        if "features" in self.outputs and self.clip_dim < 1:
            raise ModelInfoError("a 'features' output needs clip_dim >= 1")
        if not self.cameras:
            raise ModelInfoError("a model needs at least one camera")
        if self.prompts is not None and self.clip_dim and len(self.prompts) and self.prompts.dim != self.clip_dim:
            raise ModelInfoError(
                f"the prompt embeddings have {self.prompts.dim} values, the features {self.clip_dim} channels"
            )

    @property
    def queries(self) -> bool:
        """The model answers open-vocabulary queries on the vehicle: it outputs ``features`` and carries prompts."""
        return "features" in self.outputs and self.prompts is not None and len(self.prompts) > 0

    @property
    def num_cameras(self) -> int:
        return len(self.cameras)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the network images."""
        return int(self.preprocess.height), int(self.preprocess.width)

    def input_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        """Name -> static shape of every input."""
        n, (h, w) = self.num_cameras, self.image_size
        return {"images": (batch, n, 3, h, w), "K": (batch, n, 3, 3), "cam_from_ego": (batch, n, 4, 4)}

    def output_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        """Name -> static shape of every output this model has."""
        x, y, z = self.grid.shape
        shapes = {
            "labels": (batch, x, y, z),
            "confidence": (batch, x, y, z),
            "logits": (batch, len(self.vocabulary), x, y, z),
            "features": (batch, self.clip_dim, x, y, z),
        }
        return {name: shapes[name] for name in self.outputs}

    def check_data(
        self,
        vocabulary: Vocabulary | None,
        rig: CameraRig | None = None,
        where: str = "model",
        grid: GridSpec | None = None,
        data: str = "the data",
    ) -> None:
        """Raise :class:`ModelInfoError` naming both sides when data and model disagree.

        Args:
            vocabulary: the data's vocabulary (class names in label order must be the model's); None = not checked
                (images only, e.g. calibration frames).
            rig: the data's cameras. Their count must be the model's; each image, scaled to the network width by
                the model's preprocessing, must be at least the network height (a shorter one would be
                zero-padded, which the network never saw).
            where: the model's name in messages (its file).
            grid: the data's label grid (its ground truth's), or None = not checked (:meth:`check_grid`).
            data: the data's name in messages (its folder).
        """
        if grid is not None:
            self.check_grid(grid, where, data)
        height, width = self.image_size
        if rig is not None:
            if len(rig) != self.num_cameras:
                raise ModelInfoError(
                    f"{where}: the model takes {self.num_cameras} cameras ({list(self.cameras)}), the data has "
                    f"{len(rig)} ({list(rig.names)})"
                )
            for cam in rig:
                scale, _ = self.preprocess.scale_and_crop(cam.width, cam.height)
                if round(cam.height * scale) < height:
                    raise ModelInfoError(
                        f"{where}: camera {cam.name!r} gives {cam.width}x{cam.height} images (width x height), "
                        f"which scale to {width}x{round(cam.height * scale)}; the model takes {width}x{height} images"
                    )
        if vocabulary is not None and vocabulary.names != self.vocabulary.names:
            raise ModelInfoError(
                f"{where}: the model's vocabulary {self.vocabulary.name!r} ({len(self.vocabulary)} classes: "
                f"{self.vocabulary.names}) differs from the data's {vocabulary.name!r} ({len(vocabulary)} classes: "
                f"{vocabulary.names})"
            )

    def check_grid(self, grid: GridSpec | None, where: str = "model", data: str = "the data") -> int:
        """How many data voxels per axis make one model voxel: 1 when the model predicts on the data's grid, ``f`` when
        its grid is the data's coarsened by ``f`` (its labels go onto the data's grid by
        :func:`~occ_ros.core.grid.upsample_labels`); 1 for data without a grid (None).

        Raises:
            ModelInfoError: naming both grids (shape, voxel size, bounds), the model (``where``) and the data
                (``data``), for any other grid.
        """
        if grid is None:
            return 1
        try:
            return coarsening_factor(self.grid, grid, f"the model {where}", f"the data {data}")
        except ValueError as err:
            raise ModelInfoError(str(err)) from None

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        p = self.preprocess
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "grid": self.grid.to_dict(),
            "vocabulary": self.vocabulary.to_dict(),
            "cameras": list(self.cameras),
            "preprocess": {
                "height": p.height,
                "width": p.width,
                "crop": p.crop,
                "mean": list(p.mean),
                "std": list(p.std),
            },
            "outputs": list(self.outputs),
            "config_hash": self.config_hash,
            "version": self.version,
            "step": int(self.step),
            "model": dict(self.model),
            "text_encoder": dict(self.text_encoder),
            "clip_dim": int(self.clip_dim),
            **({} if self.prompts is None else {"prompt_embeddings": self.prompts.to_dict()}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> ModelInfo:
        """Inverse of :meth:`to_dict`; errors name ``source`` and the field."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ModelInfoError(f"{source}: not occ_ros model metadata (format {FORMAT!r} expected)")
        if int(data.get("format_version", -1)) > FORMAT_VERSION:
            raise ModelInfoError(
                f"{source}: model metadata version {data.get('format_version')} is newer than this occ_ros reads "
                f"({FORMAT_VERSION}); upgrade occ_ros"
            )
        try:
            p = data["preprocess"]
            return cls(
                grid=GridSpec.from_dict(data["grid"]),
                vocabulary=Vocabulary.from_dict(data["vocabulary"], f"{source}: vocabulary"),
                cameras=tuple(str(c) for c in data["cameras"]),
                preprocess=PreprocessConfig(
                    int(p["height"]), int(p["width"]), float(p["crop"]), tuple(p["mean"]), tuple(p["std"])
                ),
                outputs=tuple(data["outputs"]),
                config_hash=str(data.get("config_hash", "")),
                version=str(data.get("version", "unknown")),
                step=int(data.get("step", 0)),
                model=dict(data.get("model", {})),
                text_encoder=dict(data.get("text_encoder", {})),
                clip_dim=int(data.get("clip_dim", 0)),
                prompts=_prompts(data.get("prompt_embeddings"), source),
            )
        except KeyError as err:
            raise ModelInfoError(f"{source}: model metadata has no field {err.args[0]!r}") from None
        except (TypeError, ValueError) as err:
            if isinstance(err, ModelInfoError):
                raise
            raise ModelInfoError(f"{source}: bad model metadata: {err}") from None

    def with_prompts(self, prompts: PromptTable | None) -> ModelInfo:
        """A copy carrying ``prompts``."""
        from dataclasses import replace

        return replace(self, prompts=prompts)

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> ModelInfo:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModelInfoError(f"{source}: model metadata is not JSON: {err}") from None
        return cls.from_dict(data, source)


def _prompts(data: Any, source: str) -> PromptTable | None:
    """The ``prompt_embeddings`` field (None when absent); a malformed one is a ModelInfoError naming it."""
    if data is None:
        return None
    try:
        return PromptTable.from_dict(data, f"{source}: prompt_embeddings")
    except PromptError as err:
        raise ModelInfoError(str(err)) from None
