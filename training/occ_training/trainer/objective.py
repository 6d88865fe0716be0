"""The training objective: the network's volumes + a batch of targets -> the weighted sum of the enabled terms.

Terms (weights in :class:`~occ_training.rendering.losses.RenderingLossConfig`, 0 = off):

* ``voxel_ce``, ``voxel_lovasz`` (EasyOcc): the 3D pseudo-labels inside their camera mask;
* ``depth``, ``semantic`` (OccNeRF / SelfOcc): rays through random pixels, rendered against the 2D teachers;
* ``lift_depth``: the view transform's per-cell depth bins (models with ``depth_bins``) against the depth teacher;
* ``photometric``: a strided depth image per camera, warped into the neighbour frames (monodepth2);
* ``clip`` (LangOcc): rendered features against the teacher's CLIP features (cosine);
* ``ray_kl``, ``affinity`` (RadOcc): the same rays rendered through a teacher's volumes.

Every term is computed per frame and averaged over the frames of the batch, so a batch split over processes
(DDP averages gradients) gives the same gradient as the whole batch in one process. Randomness (pixels, sample
jitter) comes from per-frame generators that the caller seeds from the frame's position in the data stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from occ_ros.datasets.sample import IGNORE_LABEL
from occ_training.rendering.fields import VoxelField
from occ_training.rendering.losses import (
    clip_distillation_loss,
    depth_loss,
    lift_depth_loss,
    photometric_loss,
    ray_termination_kl,
    sample_feature_map,
    segment_affinity_loss,
    semantic_loss,
    voxel_loss,
)
from occ_training.rendering.rays import RayBundle, UniformSampler, camera_rays, image_pixels, sample_pixels
from occ_training.rendering.renderer import (
    clip_depth_to_box,
    render_depth,
    render_features,
    render_semantics,
    weights_from_density,
)

from .config import TrainConfig


@dataclass
class FrameGenerators:
    """Seeded random streams of one frame: ``pixels`` (CPU, :func:`sample_pixels`) and ``jitter`` (on the device)."""

    pixels: torch.Generator
    jitter: torch.Generator

    @classmethod
    def seeded(cls, seed: int, device: torch.device) -> FrameGenerators:
        pixels = torch.Generator().manual_seed(seed)
        jitter = torch.Generator(device=device).manual_seed(seed + 1)
        return cls(pixels, jitter)


def label_volume_teacher(
    labels: torch.Tensor, num_classes: int, free_index: int, density: float, unknown_density: float
) -> dict[str, torch.Tensor]:
    """RadOcc teacher "given the pseudo-label volume as input": volumes that render the labels.

    Args:
        labels: (B, X, Y, Z) pseudo-labels (``IGNORE_LABEL`` = unknown).
    Returns:
        ``density`` (B, 1, X, Y, Z): ``density`` at occupied voxels, 0 at free ones, ``unknown_density`` at unknown
        ones; ``semantics`` (B, C, X, Y, Z): logits 0 / 10 (one-hot, softmax ~ 0.9995) at labelled voxels, 0
        (uniform) elsewhere.
    """
    labels = labels.long()
    unknown = labels == IGNORE_LABEL
    occupied = ~unknown & (labels != free_index)
    dens = torch.where(occupied, density, torch.where(unknown, unknown_density, 0.0)).to(torch.float32)
    onehot = F.one_hot(labels.clamp(max=num_classes - 1), num_classes).movedim(-1, 1).to(torch.float32)
    sem = torch.where(unknown[:, None], 0.0, 10.0 * onehot)
    return {"density": dens[:, None], "semantics": sem}


def _at_pixels(maps: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Values of (N, H, W) maps at (1, N, P, 2) integer pixels -> (1, N * P) in ray order."""
    cams = torch.arange(maps.shape[0], device=maps.device)[:, None]
    u = pixels[0, ..., 0].long()
    v = pixels[0, ..., 1].long()
    return maps[cams, v, u].reshape(1, -1)


class Objective:
    """Computes the enabled loss terms of a batch (see the module docstring).

    Args:
        config: the training config (loss weights, rendering and photometric settings, distillation).
        num_classes, free_index: of the vocabulary.
        class_weights: (C,) voxel cross-entropy weights or None.
    """

    def __init__(
        self, config: TrainConfig, num_classes: int, free_index: int, class_weights: torch.Tensor | None = None
    ) -> None:
        self.config = config
        self.loss = config.loss
        self.num_classes = num_classes
        self.free_index = free_index
        self.class_weights = class_weights
        grid = config.model.grid_spec
        r = config.rendering
        self.sampler = UniformSampler(grid, r.samples_per_ray, r.stratified, r.near)
        self.field = VoxelField(grid, r.interpolation)  # type: ignore[arg-type]
        self.mean = torch.tensor(config.image.mean).reshape(1, 3, 1, 1)
        self.std = torch.tensor(config.image.std).reshape(1, 3, 1, 1)

    def __call__(
        self,
        outputs: Mapping[str, torch.Tensor],
        batch: Mapping[str, torch.Tensor],
        generators: list[FrameGenerators],
        teacher: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean over the batch's frames of the weighted term sum; also the mean unweighted term values."""
        totals = []
        logs: dict[str, float] = {}
        batch_size = int(batch["images"].shape[0])
        for b in range(batch_size):
            terms = self.frame_terms(outputs, batch, b, generators[b], teacher)
            total, frame_logs = self.loss.total(terms)
            totals.append(total)
            for name, value in frame_logs.items():
                logs[name] = logs.get(name, 0.0) + value / batch_size
        return torch.stack(totals).mean(), logs

    # ------------------------------------------------------------------ one frame
    def frame_terms(
        self,
        outputs: Mapping[str, torch.Tensor],
        batch: Mapping[str, torch.Tensor],
        b: int,
        gen: FrameGenerators,
        teacher: Mapping[str, torch.Tensor] | None,
    ) -> dict[str, torch.Tensor]:
        loss = self.loss
        one = slice(b, b + 1)
        terms: dict[str, torch.Tensor] = {}
        logits = outputs["semantics"][one].float()
        if loss.enabled("voxel_ce") or loss.enabled("voxel_lovasz"):
            labels, mask = batch["labels"][one], batch["label_mask"][one]
            if loss.enabled("voxel_ce"):
                terms["voxel_ce"] = voxel_loss(logits, labels, mask, self.class_weights, lovasz_weight=0.0)
            if loss.enabled("voxel_lovasz"):
                terms["voxel_lovasz"] = voxel_loss(logits, labels, mask, ce_weight=0.0)
        if loss.enabled("lift_depth") and "depth_logits" in outputs:
            model = self.config.model
            terms["lift_depth"] = lift_depth_loss(
                outputs["depth_logits"][b].float(), batch["depth"][b], model.output_stride, model.depth_range
            )
        ray_terms = ("depth", "semantic", "clip", "ray_kl", "affinity")
        if any(loss.enabled(t) for t in ray_terms):
            terms.update(self._ray_terms(outputs, batch, b, gen, teacher))
        if loss.enabled("photometric"):
            terms["photometric"] = self._photometric(outputs, batch, b, gen)
        return terms

    def _ray_terms(
        self,
        outputs: Mapping[str, torch.Tensor],
        batch: Mapping[str, torch.Tensor],
        b: int,
        gen: FrameGenerators,
        teacher: Mapping[str, torch.Tensor] | None,
    ) -> dict[str, torch.Tensor]:
        loss, cfg = self.loss, self.config.rendering
        one = slice(b, b + 1)
        images = batch["images"]
        _, num_cams, _, height, width = images.shape
        device = images.device
        labelled = None
        if "depth" in batch:
            labelled = batch["depth"][one] > 0
        if "sem_labels" in batch:
            sem = batch["sem_labels"][one] != IGNORE_LABEL
            labelled = sem if labelled is None else labelled | sem
        pixels = sample_pixels(
            1, num_cams, height, width, cfg.rays_per_camera, gen.pixels, labelled, cfg.labelled_fraction, device
        )
        rays = camera_rays(batch["K"][one], batch["cam_from_ego"][one], pixels)
        samples = self.sampler(rays, training=True, generator=gen.jitter)
        need_sem = loss.enabled("semantic") or loss.enabled("affinity")
        fields = self.field(
            samples,
            outputs["density"][one].float(),
            outputs["semantics"][one].float() if need_sem else None,
            outputs["features"][one].float() if loss.enabled("clip") else None,
        )
        weights, _ = weights_from_density(fields.density, samples.deltas)
        terms: dict[str, torch.Tensor] = {}
        if loss.enabled("depth"):
            rendered, _ = render_depth(weights, samples, rays.z_per_unit, cfg.depth_mode)  # type: ignore[arg-type]
            target = _at_pixels(batch["depth"][b], pixels)
            valid = (target > 0) & samples.hit
            if cfg.depth_mode == "far":
                target = clip_depth_to_box(target, samples, rays.z_per_unit)
            terms["depth"] = depth_loss(
                rendered,
                target,
                valid,
                loss.depth_kind,
                loss.silog_lambda,  # type: ignore[arg-type]
            )
        student_sem = None
        if need_sem:
            assert fields.semantics is not None
            student_sem = render_semantics(weights, fields.semantics, cfg.semantic_mode)  # type: ignore[arg-type]
        if loss.enabled("semantic"):
            assert student_sem is not None
            target = _at_pixels(batch["sem_labels"][b], pixels)
            target = torch.where(samples.hit, target, IGNORE_LABEL)
            conf = _at_pixels(batch["sem_conf"][b], pixels)
            terms["semantic"] = semantic_loss(student_sem, target, conf, cfg.semantic_mode)  # type: ignore[arg-type]
        if loss.enabled("clip"):
            assert fields.features is not None
            rendered = render_features(weights, fields.features)
            target = sample_feature_map(batch["features"][one], pixels, (height, width)).flatten(1, 2)
            terms["clip"] = clip_distillation_loss(rendered, target, samples.hit)
        if self.config.uses_distillation:
            assert teacher is not None, "distillation needs the teacher's volumes"
            terms.update(self._distill(teacher, b, samples, weights, student_sem, batch, pixels))
        return terms

    def _distill(
        self,
        teacher: Mapping[str, torch.Tensor],
        b: int,
        samples: object,
        weights: torch.Tensor,
        student_sem: torch.Tensor | None,
        batch: Mapping[str, torch.Tensor],
        pixels: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        loss, cfg = self.loss, self.config.rendering
        one = slice(b, b + 1)
        with torch.no_grad():
            fields = self.field(
                samples,  # type: ignore[arg-type]
                teacher["density"][one].float(),
                teacher["semantics"][one].float() if loss.enabled("affinity") else None,
            )
            teacher_weights, _ = weights_from_density(fields.density, samples.deltas)  # type: ignore[attr-defined]
        terms: dict[str, torch.Tensor] = {}
        if loss.enabled("ray_kl"):
            terms["ray_kl"] = ray_termination_kl(weights, teacher_weights, samples.hit, loss.kl_min_mass)  # type: ignore[attr-defined]
        if loss.enabled("affinity"):
            assert student_sem is not None and fields.semantics is not None
            teacher_sem = render_semantics(teacher_weights, fields.semantics, cfg.semantic_mode)  # type: ignore[arg-type]
            segments = _at_pixels(batch["segments"][b].long(), pixels)
            # segment ids are per camera: make them unique over the rig
            cams = torch.arange(pixels.shape[1], device=segments.device).repeat_interleave(pixels.shape[2])
            span = int(batch["segments"][b].max()) + 1
            segments = torch.where(segments >= 0, segments + cams[None] * span, -1)
            terms["affinity"] = segment_affinity_loss(
                student_sem,
                teacher_sem,
                segments,
                loss.affinity_kind,
                loss.affinity_max_rays,  # type: ignore[arg-type]
            )
        return terms

    def _photometric(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor], b: int, gen: FrameGenerators
    ) -> torch.Tensor:
        valid_src = batch["src_valid"][b]
        density = outputs["density"]
        if not bool(valid_src.any()):
            return density.sum() * 0.0
        loss, stride = self.loss, self.config.photometric.stride
        one = slice(b, b + 1)
        images = batch["images"][b]  # (N, 3, H, W) normalised
        num_cams, _, height, width = images.shape
        device = images.device
        grid_pixels = image_pixels(height, width, stride, device=device)  # (P, 2)
        rows, cols = -(-height // stride), -(-width // stride)
        pixels = grid_pixels[None, None].expand(1, num_cams, -1, 2)
        rays: RayBundle = camera_rays(batch["K"][one], batch["cam_from_ego"][one], pixels)
        samples = self.sampler(rays, training=True, generator=gen.jitter)
        fields = self.field(samples, density[one].float())
        weights, _ = weights_from_density(fields.density, samples.deltas)
        depth, _ = render_depth(weights, samples, rays.z_per_unit, self.config.rendering.depth_mode)  # type: ignore[arg-type]
        depth = depth.reshape(num_cams, rows, cols)
        rgb = images * self.std.to(images) + self.mean.to(images)
        target = rgb[..., ::stride, ::stride]
        keep = valid_src.nonzero()[:, 0]
        sources = batch["src_images"][b][keep].transpose(0, 1)  # (N, S, 3, H, W)
        K = batch["K"][b]
        K_t = K.clone()
        K_t[:, :2] = K_t[:, :2] / stride
        K_s = K[:, None].expand(num_cams, len(keep), 3, 3)
        transforms = batch["src_from_tgt"][b][keep].transpose(0, 1)  # (N, S, 4, 4)
        identity = sources[..., ::stride, ::stride]
        return photometric_loss(
            depth,
            target,
            sources,
            K_t,
            K_s,
            transforms,
            automask=loss.automask,
            identity=identity,
            ssim_weight=loss.ssim_weight,
            min_depth=loss.photometric_min_depth,
        )
