"""Simulated teachers for the synthetic world: ground truth, degraded the way real models degrade.

They stand in for Grounded-SAM / CLIPSeg and Depth Anything in tests, benchmarks and the demo,
so every stage of the pseudo-labeller is measured against known answers. They read the
sequence's per-pixel ground truth (``SynthReader.semantics_2d`` / ``.depth``) and degrade it with
the noise model below (docs/teachers.md); every random draw comes from a stream keyed by
(seed, scene, frame, camera, teacher), so results do not depend on the order frames are asked in
(resume, sharding) and are the same on every machine.

Segmentation noise (:class:`SimSegmentationConfig`), all sizes as a fraction of the image width so a
preset's resolution does not change the model:

* **boundary noise** -- the label map is resampled through a smooth random displacement field
  (std ``boundary_jitter`` x width, correlation length ``jitter_length`` x width), so region
  borders wobble by a pixel or two as real masks do;
* **class confusions** -- each connected region of a class is relabelled, as a whole, to a
  confusable class with the probabilities in ``confusions`` (trucks called cars, sidewalks
  called road ...), as open-vocabulary models confuse whole objects;
* **missed small objects** -- regions smaller than ``small_area`` x width^2 pixels vanish
  (become "none of the classes") with probability ``miss_probability``;
* **confidence** -- ``confidence`` inside regions, ``boundary_confidence`` within
  ``boundary_width`` pixels of a border, ``confused_confidence`` on relabelled regions.

Depth noise (:class:`SimDepthConfig`):

* ``relative``: ``r = a * (1/d + c) * (1 + n)``, an affine transform of inverse depth with an unknown
  scale ``a`` (log-uniform in ``scale_range``) and offset ``c`` (uniform in ``shift_range``, 1/m),
  drawn per camera per frame (``affine_per: sequence``: per camera, fixed over the sequence, for
  models whose affine does not drift), and multiplicative noise ``n`` (std ``noise``, half per pixel, half
  smooth); sky (no surface) has ``1/d = 0``. Calibration must find ``scale = 1/a``, ``shift = -c``.
* ``metric``: ``d * (1 + e) * (1 + n)`` with a per-image scale error ``e`` (std ``scale_error``) and the
  same noise; sky reads ``max_depth``.
* Both blur depth across discontinuities (Gaussian of ``edge_blur`` x width on inverse depth), which
  makes the "flying pixels" real depth networks produce between a foreground object and the background.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np

from occ_ros.core.config import Range, check_fields
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.datasets.sample import IGNORE_LABEL, Sample
from occ_ros.datasets.synth import SynthReader

from .base import (
    DepthMap,
    DepthTeacher,
    FeatureMap,
    FeatureTeacher,
    SegmentationTeacher,
    SemanticMap,
    TeacherError,
)

#: (true class, reported class, probability per region) -- confusions typical of open-vocabulary models.
DEFAULT_CONFUSIONS: tuple[tuple[str, str, float], ...] = (
    ("truck", "car", 0.15),
    ("bus", "truck", 0.15),
    ("trailer", "truck", 0.3),
    ("construction_vehicle", "truck", 0.25),
    ("bicycle", "motorcycle", 0.2),
    ("motorcycle", "bicycle", 0.2),
    ("barrier", "manmade", 0.15),
    ("traffic_cone", "others", 0.15),
    ("others", "manmade", 0.2),
    ("sidewalk", "driveable_surface", 0.15),
    ("other_flat", "driveable_surface", 0.25),
    ("terrain", "vegetation", 0.15),
    ("vegetation", "terrain", 0.05),
)

_TEACHER_STREAM = {"segmentation": 1, "depth": 2, "features": 3}


@dataclass(frozen=True)
class SimSegmentationConfig:
    """Noise of the simulated segmentation teacher (sizes are fractions of the image width)."""

    boundary_jitter: Annotated[float, Range(ge=0)] = 0.006
    jitter_length: Annotated[float, Range(ge=0)] = 0.04
    confusions: tuple[tuple[str, str, float], ...] = DEFAULT_CONFUSIONS
    small_area: Annotated[float, Range(ge=0)] = 4e-4
    miss_probability: Annotated[float, Range(ge=0, le=1)] = 0.5
    confidence: Annotated[float, Range(ge=0, le=1)] = 0.9
    boundary_confidence: Annotated[float, Range(ge=0, le=1)] = 0.6
    confused_confidence: Annotated[float, Range(ge=0, le=1)] = 0.6
    boundary_width: Annotated[float, Range(ge=0)] = 0.01
    seed: Annotated[int, Range(ge=0)] = 0

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("boundary_jitter", "jitter_length", "small_area", "boundary_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"SimSegmentationConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("miss_probability", "confidence", "boundary_confidence", "confused_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SimSegmentationConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        totals: dict[str, float] = {}
        for entry in self.confusions:
            if len(entry) != 3 or not 0.0 <= float(entry[2]) <= 1.0:
                raise ValueError(f"SimSegmentationConfig.confusions: entries are (from, to, p in [0,1]), got {entry!r}")
            totals[entry[0]] = totals.get(entry[0], 0.0) + float(entry[2])
        over = {k: v for k, v in totals.items() if v > 1.0}
        if over:
            raise ValueError(f"SimSegmentationConfig.confusions: probabilities per class exceed 1: {over}")


@dataclass(frozen=True)
class SimDepthConfig:
    """Noise of the simulated depth teacher (see the module docstring)."""

    kind: Literal["metric", "relative"] = "relative"
    scale_range: tuple[float, float] = (0.2, 5.0)
    shift_range: tuple[float, float] = (-0.005, 0.05)
    scale_error: Annotated[float, Range(ge=0)] = 0.02
    noise: Annotated[float, Range(ge=0)] = 0.03
    noise_length: Annotated[float, Range(ge=0)] = 0.05
    edge_blur: Annotated[float, Range(ge=0)] = 0.004
    max_depth: Annotated[float, Range(gt=0)] = 80.0
    affine_per: Literal["frame", "sequence"] = "frame"
    seed: Annotated[int, Range(ge=0)] = 0

    def __post_init__(self) -> None:
        check_fields(self)
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"SimDepthConfig.scale_range must be 0 < lo <= hi, got {self.scale_range}")
        if self.shift_range[0] > self.shift_range[1] or self.shift_range[0] <= -1.0 / self.max_depth:
            raise ValueError(
                f"SimDepthConfig.shift_range {self.shift_range} must be ordered and keep 1/d + c > 0 up to "
                f"max_depth={self.max_depth} m (lower bound > {-1.0 / self.max_depth:.4f})"
            )
        for name in ("scale_error", "noise", "noise_length", "edge_blur"):
            if getattr(self, name) < 0:
                raise ValueError(f"SimDepthConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_depth <= 0:
            raise ValueError(f"SimDepthConfig.max_depth must be > 0, got {self.max_depth}")


# ---------------------------------------------------------------------------------------- helpers
def _rng(seed: int, scene: str, frame_index: int, camera_index: int, teacher: str) -> np.random.Generator:
    """A random stream per (seed, scene, frame, camera, teacher), independent of call order."""
    key = [int(seed), zlib.crc32(scene.encode()), int(frame_index), int(camera_index), _TEACHER_STREAM[teacher]]
    return np.random.default_rng(np.random.SeedSequence(key))


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], length_px: float) -> np.ndarray:
    """(H, W) float32 zero-mean, unit-std noise, spatially correlated over ~``length_px`` pixels."""
    h, w = shape
    cells = max(1.0, float(length_px))
    gh, gw = max(2, int(np.ceil(h / cells)) + 1), max(2, int(np.ceil(w / cells)) + 1)
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    std = float(field.std())
    return (field - field.mean()) / (std if std > 0 else 1.0)


def _blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    if sigma_px <= 0.3:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma_px, sigmaY=sigma_px, borderType=cv2.BORDER_REFLECT)


def degrade_segmentation(
    labels: np.ndarray,
    vocabulary: Vocabulary,
    config: SimSegmentationConfig,
    rng: np.random.Generator,
) -> SemanticMap:
    """Apply the segmentation noise model to a ground-truth label map.

    Args:
        labels: (H, W) uint8 true classes of ``vocabulary`` (``IGNORE_LABEL`` = sky / nothing).
        vocabulary: the label space; ``free`` never appears in images.
        config: the noise model.
        rng: the random stream of this image.
    Returns:
        The degraded class probabilities (K = ``vocabulary.num_semantic``).
    """
    h, w = labels.shape
    k = vocabulary.num_semantic
    # Boundary noise: resample labels through a smooth random displacement field.
    if config.boundary_jitter > 0:
        amp = config.boundary_jitter * w
        dx = smooth_noise(rng, (h, w), config.jitter_length * w) * amp
        dy = smooth_noise(rng, (h, w), config.jitter_length * w) * amp
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        labels = cv2.remap(labels, gx + dx, gy + dy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    out = labels.copy()
    conf = np.full((h, w), config.confidence, dtype=np.float32)
    confusion_table: dict[int, list[tuple[int, float]]] = {}
    for src, dst, p in config.confusions:
        confusion_table.setdefault(vocabulary.index(src), []).append((vocabulary.index(dst), float(p)))
    min_area = config.small_area * w * w
    for cls in np.unique(labels):
        if cls == IGNORE_LABEL or cls >= k:
            continue
        count, comp, stats, _ = cv2.connectedComponentsWithStats((labels == cls).astype(np.uint8), connectivity=8)
        for c in range(1, count):
            # Two draws per region, always taken, so a region's fate does not depend on other regions.
            miss_draw, confuse_draw = rng.random(), rng.random()
            if stats[c, cv2.CC_STAT_AREA] < min_area and miss_draw < config.miss_probability:
                region = comp == c
                out[region] = IGNORE_LABEL
                conf[region] = 0.0
                continue
            acc = 0.0
            for dst, p in confusion_table.get(int(cls), []):
                acc += p
                if confuse_draw < acc:
                    region = comp == c
                    out[region] = dst
                    conf[region] = config.confused_confidence
                    break
    if config.boundary_width > 0:
        edges = np.zeros((h, w), dtype=bool)
        edges[:, 1:] |= out[:, 1:] != out[:, :-1]
        edges[:, :-1] |= out[:, 1:] != out[:, :-1]
        edges[1:, :] |= out[1:, :] != out[:-1, :]
        edges[:-1, :] |= out[1:, :] != out[:-1, :]
        radius = max(0, int(round(config.boundary_width * w)) - 1)
        if radius:
            edges = cv2.dilate(edges.astype(np.uint8), np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)) > 0
        conf = np.where(edges & (out != IGNORE_LABEL), np.minimum(conf, config.boundary_confidence), conf)
    return SemanticMap.from_labels(out, conf, k)


def _draw_affine(config: SimDepthConfig, rng: np.random.Generator) -> tuple[float, float]:
    """The relative model's unknown (a, c) of ``r = a * (1/d + c)``: the first two draws of an image's stream."""
    log_lo, log_hi = np.log(config.scale_range[0]), np.log(config.scale_range[1])
    return float(np.exp(rng.uniform(log_lo, log_hi))), float(rng.uniform(*config.shift_range))


def degrade_depth(
    depth: np.ndarray, config: SimDepthConfig, rng: np.random.Generator, affine: tuple[float, float] | None = None
) -> DepthMap:
    """Apply the depth noise model to a ground-truth depth map.

    Args:
        depth: (H, W) float32 true optical-axis depth, metres (0 = no surface / sky).
        config: the noise model; ``config.kind`` decides metric or relative output.
        rng: the random stream of this image.
        affine: the relative model's (a, c); default: drawn from ``rng``.
    """
    h, w = depth.shape
    inverse = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-6), 0.0).astype(np.float32)
    inverse = _blur(inverse, config.edge_blur * w)
    # Draw everything in a fixed order so both kinds consume the stream identically.
    drawn = _draw_affine(config, rng)
    scale, shift = affine if affine is not None else drawn
    scale_error = float(rng.normal(0.0, config.scale_error))
    white = rng.standard_normal((h, w)).astype(np.float32)
    smooth = smooth_noise(rng, (h, w), config.noise_length * w)
    noise = config.noise * (white + smooth) / np.sqrt(2.0)
    if config.kind == "relative":
        values = scale * (inverse + shift) * (1.0 + noise)
        return DepthMap(values.astype(np.float32), "relative", np.ones((h, w), dtype=bool))
    with np.errstate(divide="ignore"):
        metric = np.where(inverse > 0, 1.0 / np.maximum(inverse, 1e-6), config.max_depth)
    metric = np.minimum(metric * (1.0 + scale_error) * (1.0 + noise), config.max_depth)
    return DepthMap(metric.astype(np.float32), "metric", np.ones((h, w), dtype=bool))


# ---------------------------------------------------------------------------------------- teachers
class _SynthLookup:
    """Finds a sample's frame in a synthetic sequence, by stamp (so bag replays of it work too)."""

    def __init__(self, root: str | Path) -> None:
        try:
            self.reader = SynthReader(root, load_gt=False)
        except (FileNotFoundError, ValueError) as err:
            raise TeacherError(f"simulated teachers need a synthetic sequence written by `occ synth`: {err}") from None
        self.by_stamp = {int(f["stamp_ns"]): i for i, f in enumerate(self.reader.frames)}

    def frame_index(self, sample: Sample) -> int:
        index = self.by_stamp.get(int(sample.stamp_ns))
        if index is None:
            raise TeacherError(
                f"sample {sample.key} (stamp {sample.stamp_ns} ns) is not a frame of the synthetic sequence "
                f"{self.reader.root}: simulated teachers only answer for the world they simulate"
            )
        return index

    def camera_indices(self, sample: Sample) -> dict[str, int]:
        known = self.reader.rig.names
        unknown = [n for n in sample.rig.names if n not in known]
        if unknown:
            raise TeacherError(f"sample {sample.key}: cameras {unknown} are not in {self.reader.root}'s rig {known}")
        return {n: known.index(n) for n in sample.rig.names}


class SimSegmentationTeacher(SegmentationTeacher):
    """Ground-truth 2D semantics of the synthetic world, degraded by :class:`SimSegmentationConfig`."""

    name = "sim-segmentation"

    def __init__(
        self, root: str | Path, vocabulary: Vocabulary | None = None, config: SimSegmentationConfig | None = None
    ) -> None:
        self.lookup = _SynthLookup(root)
        super().__init__(vocabulary or self.lookup.reader.vocabulary)
        if self.vocabulary.names != self.lookup.reader.vocabulary.names:
            raise TeacherError(
                f"vocabulary {self.vocabulary.name!r} differs from the synthetic sequence's "
                f"{self.lookup.reader.vocabulary.name!r}: the simulated teacher speaks the world's classes"
            )
        self.config = config or SimSegmentationConfig()

    def segment(self, sample: Sample) -> dict[str, SemanticMap]:
        index = self.lookup.frame_index(sample)
        truth = self.lookup.reader.semantics_2d(index)
        result = {}
        for name, cam_index in self.lookup.camera_indices(sample).items():
            rng = _rng(self.config.seed, self.lookup.reader.scene, index, cam_index, "segmentation")
            result[name] = degrade_segmentation(truth[name], self.vocabulary, self.config, rng)
        return result


class SimDepthTeacher(DepthTeacher):
    """Ground-truth depth of the synthetic world, degraded by :class:`SimDepthConfig` (metric or relative)."""

    def __init__(self, root: str | Path, config: SimDepthConfig | None = None) -> None:
        self.lookup = _SynthLookup(root)
        self.config = config or SimDepthConfig()
        self.kind = self.config.kind
        self.name = f"sim-depth-{self.kind}"

    def estimate(self, sample: Sample) -> dict[str, DepthMap]:
        index = self.lookup.frame_index(sample)
        truth = self.lookup.reader.depth(index)
        result = {}
        for name, cam_index in self.lookup.camera_indices(sample).items():
            rng = _rng(self.config.seed, self.lookup.reader.scene, index, cam_index, "depth")
            result[name] = degrade_depth(truth[name], self.config, rng, self._affine(sample, index, cam_index))
        return result

    def _affine(self, sample: Sample, index: int, cam_index: int) -> tuple[float, float]:
        """(a, c) of one camera image: per frame, or (``affine_per: sequence``) one per camera for the scene."""
        frame = index if self.config.affine_per == "frame" else 2**31  # one stream for the whole scene
        return _draw_affine(self.config, _rng(self.config.seed, self.lookup.reader.scene, frame, cam_index, "depth"))

    def true_scale_shift(self, sample: Sample) -> Mapping[str, tuple[float, float]]:
        """Camera -> the (scale, shift) with ``1/d = scale * r + shift`` that calibration should find."""
        index = self.lookup.frame_index(sample)
        out = {}
        for name, cam_index in self.lookup.camera_indices(sample).items():
            a, c = self._affine(sample, index, cam_index)
            out[name] = (1.0 / a, -c)
        return out


@dataclass(frozen=True)
class SimFeatureConfig:
    """The simulated CLIP space: one direction per class, prompts near it, features noisy around it.

    Attributes:
        dim: embedding size D.
        patch: feature cell size in pixels at 1600 px image width (scaled with the width, as a ViT's
            patch grid is fixed by its input size; at least 1 pixel).
        prompt_noise: std of each prompt's offset from its class direction (before renormalising).
        feature_noise: std of the per-cell noise added to the class direction.
        seed: seeds the class directions and all noise.
    """

    dim: Annotated[int, Range(ge=2)] = 64
    patch: Annotated[int, Range(ge=1)] = 64
    prompt_noise: Annotated[float, Range(ge=0)] = 0.3
    feature_noise: Annotated[float, Range(ge=0)] = 0.5
    seed: Annotated[int, Range(ge=0)] = 0

    def __post_init__(self) -> None:
        check_fields(self)
        if self.dim < 2 or self.patch < 1:
            raise ValueError(f"SimFeatureConfig needs dim >= 2 and patch >= 1, got {self.dim}, {self.patch}")
        if self.prompt_noise < 0 or self.feature_noise < 0:
            raise ValueError("SimFeatureConfig noise levels must be >= 0")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


class SimTextEncoder:
    """The simulated teacher's text space: every class of ``vocabulary`` (plus sky) has a random unit direction
    (a function of ``config.seed`` and the class count only); a class prompt maps near its class' direction, any
    other text to an unrelated random direction (both deterministic per text). Needs no data, so ``occ export
    --queries`` can encode prompts for a model trained with the simulated teacher."""

    def __init__(self, vocabulary: Vocabulary, config: SimFeatureConfig | None = None) -> None:
        self.config = config or SimFeatureConfig()
        rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, _TEACHER_STREAM["features"]]))
        # Rows: the semantic classes in vocabulary order, then sky.
        self.directions = _unit(rng.standard_normal((vocabulary.num_semantic + 1, self.config.dim)))
        self.prompt_class = {p.lower(): k for k, c in enumerate(vocabulary.classes[:-1]) for p in c.prompts}
        self.prompt_class["sky"] = vocabulary.num_semantic

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(T, D) float32 unit embeddings of ``texts``."""
        rows = []
        for text in texts:
            key = text.strip().lower()
            rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, zlib.crc32(key.encode())]))
            offset = rng.standard_normal(self.config.dim)
            k = self.prompt_class.get(key)
            rows.append(_unit(offset) if k is None else self.directions[k] + self.config.prompt_noise * _unit(offset))
        return _unit(np.stack(rows)).astype(np.float32)


class SimFeatureTeacher(FeatureTeacher):
    """A stand-in for MaskCLIP: dense features of the synthetic world in a simulated text space.

    Every class of the world's vocabulary (plus sky) has a random unit direction; ``embed_text`` maps a
    class prompt near its class' direction and any other text to an unrelated random direction (both
    deterministic per text), and the features of a cell are its majority class' direction plus noise.
    Querying the features with the prompts of a class therefore finds that class, as with a real CLIP.
    """

    name = "sim-features"

    def __init__(self, root: str | Path, config: SimFeatureConfig | None = None) -> None:
        self.lookup = _SynthLookup(root)
        self.config = config or SimFeatureConfig()
        self.text = SimTextEncoder(self.lookup.reader.vocabulary, self.config)
        self.directions = self.text.directions

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return self.text.embed_text(texts)

    def features(self, sample: Sample) -> dict[str, FeatureMap]:
        index = self.lookup.frame_index(sample)
        truth = self.lookup.reader.semantics_2d(index)
        sky = self.lookup.reader.vocabulary.num_semantic
        out = {}
        for name, cam_index in self.lookup.camera_indices(sample).items():
            labels = np.where(truth[name] == IGNORE_LABEL, sky, truth[name]).astype(np.int64)
            h_px, w_px = labels.shape
            patch = max(1, round(self.config.patch * w_px / 1600))
            h, w = -(-h_px // patch), -(-w_px // patch)
            # Majority class per cell (cells at the border are partial).
            rows = np.minimum(np.arange(h_px) // patch, h - 1)
            cols = np.minimum(np.arange(w_px) // patch, w - 1)
            cell = rows[:, None] * w + cols[None, :]
            counts = np.zeros((h * w, sky + 1), dtype=np.int64)
            np.add.at(counts, (cell.reshape(-1), labels.reshape(-1)), 1)
            majority = counts.argmax(axis=1)
            rng = _rng(self.config.seed, self.lookup.reader.scene, index, cam_index, "features")
            noise = rng.standard_normal((h * w, self.config.dim)) * self.config.feature_noise / np.sqrt(self.config.dim)
            feats = _unit(self.directions[majority] + noise).reshape(h, w, self.config.dim)
            out[name] = FeatureMap(feats.astype(np.float32))
        return out


@dataclass(frozen=True)
class SimTeacherConfig:
    """Both simulated teachers' noise, as one config (YAML section ``teachers.sim``)."""

    segmentation: SimSegmentationConfig = field(default_factory=SimSegmentationConfig)
    depth: SimDepthConfig = field(default_factory=SimDepthConfig)
    features: SimFeatureConfig = field(default_factory=SimFeatureConfig)
