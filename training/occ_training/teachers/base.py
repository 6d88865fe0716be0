"""Teacher interfaces: what a 2D foundation model gives the pseudo-labeller.

Three kinds of teacher, each answering for every camera of a :class:`Sample` at once:

* :class:`SegmentationTeacher` -- per-pixel class probabilities over a text vocabulary;
* :class:`DepthTeacher` -- metric depth, or relative (affine-invariant inverse) depth;
* :class:`FeatureTeacher` -- dense CLIP-aligned features and the text embeddings to query them.

Models that look at one image at a time (every Hugging Face adapter) subclass the ``Image*``
variants and implement the per-image method; the simulated teachers of the synthetic world
implement the per-sample method directly, because they read the sample's ground truth.

Frames and units: images are (H, W, 3) uint8 RGB as in :class:`Sample`; every output map has
the image's (H, W) unless stated; depth is along the optical axis (z of the optical frame), metres.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from occ_ros.core.rig import Camera
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.datasets.sample import IGNORE_LABEL, Sample

DepthKind = Literal["metric", "relative"]
DEPTH_KINDS: tuple[str, ...] = ("metric", "relative")


class TeacherError(ValueError):
    """A teacher cannot be built or run (missing model directory, wrong config, bad input)."""


# ---------------------------------------------------------------------------------------- outputs
@dataclass(frozen=True)
class SemanticMap:
    """Per-pixel class probabilities of one image.

    Attributes:
        probs: (H, W, K) float32, K = ``vocabulary.num_semantic`` (every class but ``free``), in
            vocabulary order. Each pixel's probabilities sum to at most 1; the remainder is "none of
            the classes" (sky, background, or a region the model left unlabelled).
    """

    probs: np.ndarray

    def __post_init__(self) -> None:
        p = np.asarray(self.probs)
        if p.ndim != 3 or not np.issubdtype(p.dtype, np.floating):
            raise ValueError(f"SemanticMap.probs must be a float (H, W, K) array, got {p.dtype} {p.shape}")
        object.__setattr__(self, "probs", p.astype(np.float32, copy=False))

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.probs.shape[0]), int(self.probs.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.probs.shape[2])

    def labels(self, min_confidence: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Hard labels and their confidence.

        Returns:
            labels: (H, W) uint8 class index, ``IGNORE_LABEL`` where the best probability is
                below ``min_confidence`` or not larger than "none of the classes".
            confidence: (H, W) float32, the best class probability (0 where ignored).
        """
        best = np.argmax(self.probs, axis=-1)
        conf = np.take_along_axis(self.probs, best[..., None], axis=-1)[..., 0]
        none = 1.0 - self.probs.sum(axis=-1)
        keep = (conf >= min_confidence) & (conf > none) & (conf > 0)
        labels = np.where(keep, best, IGNORE_LABEL).astype(np.uint8)
        return labels, np.where(keep, conf, 0.0).astype(np.float32)

    @classmethod
    def from_labels(cls, labels: np.ndarray, confidence: np.ndarray | float, num_classes: int) -> SemanticMap:
        """One-hot probabilities scaled by ``confidence``; ``IGNORE_LABEL`` pixels get none.

        Args:
            labels: (H, W) integer labels in 0..num_classes-1, or ``IGNORE_LABEL``.
            confidence: (H, W) or scalar probability of the given label, in [0, 1].
            num_classes: K.
        """
        labels = np.asarray(labels)
        conf = np.broadcast_to(np.asarray(confidence, dtype=np.float32), labels.shape)
        valid = labels != IGNORE_LABEL
        if np.any(labels[valid] >= num_classes):
            raise ValueError(f"labels must be < {num_classes} or {IGNORE_LABEL}, got max {labels[valid].max()}")
        probs = np.zeros((*labels.shape, num_classes), dtype=np.float32)
        rows, cols = np.nonzero(valid)
        probs[rows, cols, labels[valid].astype(np.intp)] = conf[valid]
        return cls(probs)


@dataclass(frozen=True)
class DepthMap:
    """Depth of one image, metric or relative.

    Attributes:
        values: (H, W) float32. ``metric``: metres along the optical axis. ``relative``: an
            affine-invariant *inverse* depth (disparity-like; larger is nearer), as Depth Anything
            (relative) and MiDaS output: ``1 / depth = scale * values + shift`` for an unknown
            per-image ``scale > 0`` and ``shift`` that calibration recovers.
        kind: "metric" or "relative".
        valid: (H, W) bool, pixels where the model gives an answer.
    """

    values: np.ndarray
    kind: DepthKind
    valid: np.ndarray

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float32)
        m = np.asarray(self.valid, dtype=bool)
        if v.ndim != 2 or m.shape != v.shape:
            raise ValueError(f"DepthMap: values {v.shape} and valid {m.shape} must be the same (H, W)")
        if self.kind not in DEPTH_KINDS:
            raise ValueError(f"DepthMap.kind must be one of {DEPTH_KINDS}, got {self.kind!r}")
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "valid", m & np.isfinite(v))

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.values.shape[0]), int(self.values.shape[1])

    def to_metric(self, scale: float = 1.0, shift: float = 0.0, max_depth: float = np.inf) -> np.ndarray:
        """(H, W) float32 metric depth, 0 where unknown or beyond ``max_depth``.

        Metric maps ignore ``scale`` / ``shift``; relative maps use ``1 / depth = scale * values + shift``
        and are unknown where that is not positive.
        """
        if self.kind == "metric":
            depth = np.where(self.valid, self.values, 0.0)
        else:
            inverse = scale * self.values.astype(np.float64) + shift
            with np.errstate(divide="ignore"):
                depth = np.where(self.valid & (inverse > 0), 1.0 / np.maximum(inverse, 1e-12), 0.0)
        depth = np.where((depth > 0) & (depth <= max_depth) & np.isfinite(depth), depth, 0.0)
        return depth.astype(np.float32)


@dataclass(frozen=True)
class FeatureMap:
    """Dense image features in a text-embedding space (CLIP-aligned).

    Attributes:
        features: (h, w, D) float32, unit-norm per cell, on a coarse grid over the image: cell
            (r, c) covers pixels [r*H/h, (r+1)*H/h) x [c*W/w, (c+1)*W/w).
    """

    features: np.ndarray

    def __post_init__(self) -> None:
        f = np.asarray(self.features, dtype=np.float32)
        if f.ndim != 3:
            raise ValueError(f"FeatureMap.features must be (h, w, D), got {f.shape}")
        object.__setattr__(self, "features", f)

    @property
    def dim(self) -> int:
        return int(self.features.shape[2])


# ---------------------------------------------------------------------------------------- teachers
def images_of(sample: Sample) -> tuple[list[str], list[np.ndarray]]:
    """Camera names and their images, in rig order; raises naming the sample if any is missing."""
    names = sample.rig.names
    missing = [n for n in names if n not in sample.images]
    if missing:
        raise TeacherError(f"sample {sample.key}: no image for cameras {missing} (load it with images=True)")
    return names, [sample.images[n] for n in names]


class SegmentationTeacher(ABC):
    """Semantic segmentation over a text vocabulary."""

    #: Short identifier for logs and label metadata.
    name: str = "segmentation"

    def __init__(self, vocabulary: Vocabulary) -> None:
        vocabulary.prompts()  # raises, naming the classes, when a class has no prompt
        self.vocabulary = vocabulary

    @abstractmethod
    def segment(self, sample: Sample) -> dict[str, SemanticMap]:
        """Camera name -> class probabilities over ``self.vocabulary`` (free excluded)."""


class ImageSegmentationTeacher(SegmentationTeacher):
    """A segmentation model that looks at images one at a time."""

    def segment(self, sample: Sample) -> dict[str, SemanticMap]:
        names, images = images_of(sample)
        return dict(zip(names, self.segment_images(images), strict=True))

    @abstractmethod
    def segment_images(self, images: Sequence[np.ndarray]) -> list[SemanticMap]:
        """(H, W, 3) uint8 RGB images -> their class probabilities, in order."""


class DepthTeacher(ABC):
    """Monocular depth, metric or relative."""

    name: str = "depth"
    kind: DepthKind = "metric"

    @abstractmethod
    def estimate(self, sample: Sample) -> dict[str, DepthMap]:
        """Camera name -> depth map of that camera's image."""


class ImageDepthTeacher(DepthTeacher):
    """A depth model that looks at images one at a time (it may use the camera's intrinsics)."""

    def estimate(self, sample: Sample) -> dict[str, DepthMap]:
        names, images = images_of(sample)
        cameras = [sample.rig[n] for n in names]
        return dict(zip(names, self.estimate_images(images, cameras), strict=True))

    @abstractmethod
    def estimate_images(self, images: Sequence[np.ndarray], cameras: Sequence[Camera]) -> list[DepthMap]:
        """(H, W, 3) uint8 RGB images and their cameras -> depth maps, in order."""


class FeatureTeacher(ABC):
    """Dense CLIP-aligned image features plus the text encoder of the same space."""

    name: str = "features"

    @abstractmethod
    def features(self, sample: Sample) -> dict[str, FeatureMap]:
        """Camera name -> dense features of that camera's image."""

    @abstractmethod
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32 unit-norm text embeddings, comparable (cosine) with the features."""


class ImageFeatureTeacher(FeatureTeacher):
    """A feature model that looks at images one at a time."""

    def features(self, sample: Sample) -> dict[str, FeatureMap]:
        names, images = images_of(sample)
        return dict(zip(names, self.features_images(images), strict=True))

    @abstractmethod
    def features_images(self, images: Sequence[np.ndarray]) -> list[FeatureMap]:
        """(H, W, 3) uint8 RGB images -> dense features, in order."""


def class_text_embeddings(teacher: FeatureTeacher, vocabulary: Vocabulary) -> np.ndarray:
    """(K, D) unit-norm embedding per non-free class: the mean of its prompts' embeddings, renormalised."""
    rows = []
    for prompts in vocabulary.prompts():
        emb = teacher.embed_text(list(prompts)).mean(axis=0)
        rows.append(emb / max(float(np.linalg.norm(emb)), 1e-12))
    return np.stack(rows).astype(np.float32)
