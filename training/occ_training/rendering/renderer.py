"""Volume rendering of field values along rays (NeRF quadrature, Max 1995 / Mildenhall et al. 2020).

For a ray with samples ``i = 0..S-1`` (density ``sigma_i`` per metre over a bin of length ``delta_i``)::

    alpha_i = 1 - exp(-sigma_i delta_i)                      opacity of bin i
    T_i     = exp(-sum_{j<i} sigma_j delta_j)                 transmittance up to bin i
    w_i     = T_i alpha_i                                      probability that the ray terminates in bin i

``sum_i w_i = 1 - T_S <= 1`` is the accumulation (opacity) of the ray; the remainder ``T_S`` is the probability
that the ray leaves the grid unstopped. Shapes: (B, R, S) per sample, (B, R) per ray.

:class:`VolumeRenderer` is the render step of a field read at ray samples: it forms the weights once and returns
every per-ray quantity the losses use as one :class:`RenderOutputs` (nerfstudio's ``get_outputs``); the loss
functions (:mod:`occ_training.rendering.losses`) only consume such outputs and never render.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F

from occ_ros.core.config import Range, check_fields
from occ_training.rendering.fields import FieldOutputs, Interpolation
from occ_training.rendering.rays import RaySamples

DepthMode = Literal["far", "expected", "normalized"]
SemanticMode = Literal["probs", "logits"]


@dataclass(frozen=True)
class RenderingConfig:
    """Ray sampling and rendering settings of the rendering losses.

    Attributes:
        rays_per_camera: pixels rendered per camera and step (:func:`~occ_training.rendering.rays.sample_pixels`).
        labelled_fraction: share of the rays drawn among pixels with a 2D target (teacher label / depth).
        samples_per_ray: S, uniform samples between the ray's entry and exit of the grid box.
        stratified: jitter samples within their bins in training.
        near: metres; samples start at least this far from the camera.
        interpolation: ``trilinear`` or ``nearest`` reading of the volumes (:class:`VoxelField`).
        depth_mode: see :func:`render_depth`.
        semantic_mode: see :func:`render_semantics`.
    """

    rays_per_camera: Annotated[int, Range(ge=1)] = 1024
    labelled_fraction: Annotated[float, Range(ge=0, le=1)] = 0.5
    samples_per_ray: Annotated[int, Range(ge=1)] = 96
    stratified: bool = True
    near: Annotated[float, Range(ge=0)] = 0.0
    interpolation: Interpolation = "trilinear"
    depth_mode: DepthMode = "far"
    semantic_mode: SemanticMode = "probs"

    def __post_init__(self) -> None:
        check_fields(self)
        if int(self.rays_per_camera) < 1 or int(self.samples_per_ray) < 1:
            raise ValueError("RenderingConfig: rays_per_camera and samples_per_ray must be >= 1")
        if not 0.0 <= self.labelled_fraction <= 1.0:
            raise ValueError(f"RenderingConfig: labelled_fraction must lie in [0, 1], got {self.labelled_fraction}")
        if self.near < 0:
            raise ValueError(f"RenderingConfig: near must be >= 0, got {self.near}")


def weights_from_density(density: torch.Tensor, deltas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray-termination weights.

    Args:
        density: (B, R, S) sigma >= 0, per metre.
        deltas: (B, R, S) bin lengths, metres (0 for samples of rays that miss the grid: they get weight 0).
    Returns:
        weights: (B, R, S) ``w_i = T_i (1 - exp(-sigma_i delta_i))``; each ray's weights sum to ``1 - T_S <= 1``.
        transmittance: (B, R, S) ``T_i = exp(-sum_{j<i} sigma_j delta_j)`` (1 at the first sample), computed from
            an exclusive cumulative sum of optical depths (no products of small numbers).
    """
    tau = density * deltas
    accumulated = torch.cumsum(tau, dim=-1)
    transmittance = torch.exp(-(accumulated - tau))
    weights = transmittance * -torch.expm1(-tau)
    return weights, transmittance


def render_depth(
    weights: torch.Tensor, samples: RaySamples, z_per_unit: torch.Tensor, mode: DepthMode = "far"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rendered optical-axis depth and accumulation.

    ``d_ray = sum_i w_i t_i`` is the expected termination distance along the unit ray; the optical-axis depth is
    ``d_ray * z_per_unit``. What happens to the ray's remaining mass ``1 - sum_i w_i`` depends on ``mode``:

    * ``far`` (default): it terminates at the ray's exit of the grid box ``t_far`` (an empty ray renders the box
      boundary, the farthest depth the grid can explain; compare with targets clipped to the box,
      ``torch.minimum(target, RenderOutputs.exit_depth)``);
    * ``expected``: it contributes 0 (plain NeRF expected depth; a transparent ray renders 0, so depth supervision
      also pulls opacity up);
    * ``normalized``: the weights are renormalised, ``sum w t / sum w`` (nerfstudio's ``expected`` depth; 0 for an
      empty ray), independent of the accumulation.

    Args:
        weights: (B, R, S) termination weights.
        samples: the samples the weights belong to (``t``, ``t_far``).
        z_per_unit: (B, R) optical z of the rays' unit directions.
    Returns:
        depth: (B, R) optical-axis depth, metres.
        accumulation: (B, R) ``sum_i w_i`` in [0, 1].
    """
    accumulation = weights.sum(dim=-1)
    distance = (weights * samples.t).sum(dim=-1)
    if mode == "far":
        distance = distance + (1.0 - accumulation).clamp(min=0.0) * samples.t_far
    elif mode == "normalized":
        distance = distance / accumulation.clamp(min=1e-10)
    elif mode != "expected":
        raise ValueError(f"render_depth: unknown mode {mode!r}")
    return distance * z_per_unit, accumulation


def render_semantics(
    weights: torch.Tensor, logits: torch.Tensor, mode: SemanticMode = "probs", free_index: int = -1
) -> torch.Tensor:
    """Rendered class scores over the K = C - 1 non-free classes.

    Density decides *where* a ray stops; the semantics decide *what* it hits. The ``free`` class is therefore
    dropped before rendering (emptiness is density's job, and a 2D teacher never labels a pixel "free"):

    * ``probs`` (default): ``p_k = sum_i w_i softmax_k(logits_i without free)``. ``sum_k p_k`` equals the
      accumulation; the remainder ``1 - sum_k p_k`` is "the ray hit nothing", the same convention as the
      teachers' :class:`~occ_training.teachers.base.SemanticMap` (probabilities summing to <= 1). Train with
      :func:`~occ_training.rendering.losses.semantic_loss` (NLL), which then also rewards opacity on labelled
      pixels.
    * ``logits``: ``sum_i w_i logits_i`` without free (then softmax cross-entropy);
      scale-free in the accumulation, so it supervises the class only.

    Args:
        weights: (B, R, S) termination weights.
        logits: (B, R, S, C) class logits at the samples (C includes free).
        free_index: index of ``free`` among the C classes (last by the vocabulary's rule).
    Returns:
        (B, R, K) rendered probabilities or logits, in vocabulary order without free.
    """
    num_classes = logits.shape[-1]
    free = free_index % num_classes
    keep = [c for c in range(num_classes) if c != free]
    scores = logits[..., keep] if free != num_classes - 1 else logits[..., :free]
    if mode == "probs":
        scores = scores.softmax(dim=-1)
    elif mode != "logits":
        raise ValueError(f"render_semantics: unknown mode {mode!r}")
    return (weights[..., None] * scores).sum(dim=-2)


def render_features(weights: torch.Tensor, features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rendered features: ``normalize(sum_i w_i f_i)`` (unit L2 norm; 0 for an empty ray).

    Args:
        weights: (B, R, S) termination weights.
        features: (B, R, S, D) features at the samples.
    Returns:
        (B, R, D) unit-norm features (compared by cosine with CLIP-aligned teacher features, LangOcc).
    """
    return F.normalize((weights[..., None] * features).sum(dim=-2), dim=-1, eps=eps)


# ---------------------------------------------------------------------------------------- the render step
@dataclass
class RenderOutputs:
    """One render of a field along a bundle of rays: what the loss terms consume (nerfstudio's ``get_outputs``).

    Shapes: ``B`` batch, ``R`` rays, ``S`` samples per ray, ``K = C - 1`` non-free classes, ``D`` feature channels.

    Attributes:
        weights: (B, R, S) ray-termination weights ``w_i`` (:func:`weights_from_density`); 0 on rays that miss the box.
        depth: (B, R) rendered optical-axis depth, metres (:func:`render_depth` in the renderer's mode).
        accumulation: (B, R) ``sum_i w_i`` in [0, 1].
        hit: (B, R) bool, the ray crosses the grid box (:attr:`RaySamples.hit`).
        exit_depth: (B, R) optical-axis depth of the ray's exit from the box, ``t_far * z_per_unit`` (0 for a ray
            that misses it); depth targets are clipped with ``torch.minimum(target, exit_depth)``.
        semantics: (B, R, K) rendered class probabilities or logits (:func:`render_semantics`), or None when the
            field was read without semantics.
        features: (B, R, D) rendered unit-norm features (:func:`render_features`), or None.
    """

    weights: torch.Tensor
    depth: torch.Tensor
    accumulation: torch.Tensor
    hit: torch.Tensor
    exit_depth: torch.Tensor
    semantics: torch.Tensor | None = None
    features: torch.Tensor | None = None


class VolumeRenderer:
    """Composites field values at ray samples into :class:`RenderOutputs` (no parameters).

    Args:
        depth_mode: see :func:`render_depth`.
        semantic_mode: see :func:`render_semantics`.
        free_index: index of ``free`` among the C classes of the semantics.
    """

    def __init__(self, depth_mode: DepthMode = "far", semantic_mode: SemanticMode = "probs", free_index: int = -1):
        self.depth_mode: DepthMode = depth_mode
        self.semantic_mode: SemanticMode = semantic_mode
        self.free_index = free_index

    def __call__(self, fields: FieldOutputs, samples: RaySamples, z_per_unit: torch.Tensor) -> RenderOutputs:
        """Render the field values read at ``samples``.

        Args:
            fields: (B, R, S) density, optional (B, R, S, C) semantics and (B, R, S, D) features
                (:class:`~occ_training.rendering.fields.VoxelField` at ``samples``).
            samples: the rays' samples (``t``, ``deltas``, ``t_far``, ``hit``).
            z_per_unit: (B, R) optical z of the rays' unit directions (:attr:`RayBundle.z_per_unit`).
        Returns:
            :class:`RenderOutputs`; ``semantics`` / ``features`` only when ``fields`` has them.
        """
        weights, _ = weights_from_density(fields.density, samples.deltas)
        depth, accumulation = render_depth(weights, samples, z_per_unit, self.depth_mode)
        return RenderOutputs(
            weights=weights,
            depth=depth,
            accumulation=accumulation,
            hit=samples.hit,
            exit_depth=samples.t_far * z_per_unit,
            semantics=None
            if fields.semantics is None
            else render_semantics(weights, fields.semantics, self.semantic_mode, self.free_index),
            features=None if fields.features is None else render_features(weights, fields.features),
        )
