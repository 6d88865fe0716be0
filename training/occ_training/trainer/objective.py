"""The training objective: the network's volumes + a batch of targets -> the weighted sum of the enabled terms.

Terms (weights in :class:`~occ_training.rendering.losses.RenderingLossConfig`, 0 = off):

* ``voxel_ce``, ``voxel_lovasz`` (EasyOcc): the 3D pseudo-labels inside their camera mask;
* ``depth``, ``semantic`` (OccNeRF / SelfOcc): rays through random pixels, rendered against the 2D teachers;
* ``lift_depth``: the view transform's per-cell depth bins (models with ``depth_bins``) against the depth teacher;
* ``photometric``: a strided depth image per camera, warped into the neighbour frames (monodepth2);
* ``clip`` (LangOcc): rendered features against the teacher's CLIP features (cosine);
* ``ray_kl``, ``affinity`` (RadOcc): the same rays rendered through a teacher's volumes.

Each frame goes through two steps, split the way nerfstudio splits ``get_outputs`` from ``get_loss_dict``:
:meth:`Objective.render` samples rays and renders them once (:class:`FrameRender`: typed
:class:`~occ_training.rendering.renderer.RenderOutputs` per ray set), then :meth:`Objective.loss_dict` turns those
outputs and the batch's targets into named, unweighted loss terms without rendering anything.

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
from occ_training.rendering.rays import UniformSampler, camera_rays, image_pixels, sample_pixels
from occ_training.rendering.renderer import RenderOutputs, VolumeRenderer

from .config import TrainConfig

#: The terms that render rays through random pixels (:attr:`FrameRender.rays`).
RAY_TERMS = ("depth", "semantic", "clip", "ray_kl", "affinity")


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


@dataclass
class FrameRender:
    """The render step of one frame: everything the ray-based loss terms read (:meth:`Objective.render`).

    ``N`` cameras, ``P = rendering.rays_per_camera`` random pixels per camera, ``R = N * P`` rays (camera-major:
    ray ``n * P + p`` is pixel ``p`` of camera ``n``), ``(h, w)`` the photometric depth image per camera.

    Attributes:
        pixels: (1, N, P, 2) network-image pixels (u, v) of the random rays, or None when no ray term is on.
        rays: the student's render at those rays: weights (1, R, S), depth / accumulation / hit / exit_depth
            (1, R), semantics (1, R, K) when ``semantic`` or ``affinity`` is on, features (1, R, D) when ``clip``
            is on; None when no ray term is on.
        teacher: the distillation teacher's volumes rendered at the same samples (no gradient): weights, depth and,
            for ``affinity``, semantics; None without ``ray_kl`` / ``affinity``.
        image: the student's depth image for ``photometric``: rays through every ``photometric.stride``-th pixel
            of every camera, R' = N * h * w (row-major per camera), no semantics / features; None when the term is
            off or the frame has no source frame.
        image_size: (h, w) of that depth image.
    """

    pixels: torch.Tensor | None = None
    rays: RenderOutputs | None = None
    teacher: RenderOutputs | None = None
    image: RenderOutputs | None = None
    image_size: tuple[int, int] = (0, 0)


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
        self.field = VoxelField(grid, r.interpolation)
        self.renderer = VolumeRenderer(r.depth_mode, r.semantic_mode, free_index)
        self.mean = torch.tensor(config.image.mean).reshape(1, 3, 1, 1)
        self.std = torch.tensor(config.image.std).reshape(1, 3, 1, 1)

    def __call__(
        self,
        outputs: Mapping[str, torch.Tensor],
        batch: Mapping[str, torch.Tensor],
        generators: list[FrameGenerators],
        teacher: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean over the batch's frames of the weighted term sum; also the mean unweighted term values.

        Args:
            outputs: the network's volumes, ``density`` (B, 1, X, Y, Z), ``semantics`` (B, C, X, Y, Z), optional
                ``features`` (B, D, X, Y, Z) and ``depth_logits`` (B, N, bins, h, w).
            batch: the collated targets (:class:`~occ_training.trainer.data.FrameDataset` items).
            generators: one per frame.
            teacher: the distillation teacher's volumes (``density``, ``semantics``), with ``ray_kl`` / ``affinity``.
        """
        totals = []
        logs: dict[str, float] = {}
        batch_size = int(batch["images"].shape[0])
        for b in range(batch_size):
            rendered = self.render(outputs, batch, b, generators[b], teacher)
            terms = self.loss_dict(outputs, batch, b, rendered)
            total, frame_logs = self.loss.total(terms)
            totals.append(total)
            for name, value in frame_logs.items():
                logs[name] = logs.get(name, 0.0) + value / batch_size
        return torch.stack(totals).mean(), logs

    # ------------------------------------------------------------------ render step
    def render(
        self,
        outputs: Mapping[str, torch.Tensor],
        batch: Mapping[str, torch.Tensor],
        b: int,
        gen: FrameGenerators,
        teacher: Mapping[str, torch.Tensor] | None = None,
    ) -> FrameRender:
        """Sample and render every ray frame ``b``'s loss terms need, once (see :class:`FrameRender`).

        Random numbers are drawn in a fixed order: the ray pixels (``gen.pixels``), then the jitter of the random
        rays, then the jitter of the photometric image rays (``gen.jitter``).
        """
        loss = self.loss
        one = slice(b, b + 1)
        frame = FrameRender()
        if any(loss.enabled(t) for t in RAY_TERMS):
            pixels = self._ray_pixels(batch, b, gen)
            rays = camera_rays(batch["K"][one], batch["cam_from_ego"][one], pixels)
            samples = self.sampler(rays, training=True, generator=gen.jitter)
            need_sem = loss.enabled("semantic") or loss.enabled("affinity")
            fields = self.field(
                samples,
                outputs["density"][one].float(),
                outputs["semantics"][one].float() if need_sem else None,
                outputs["features"][one].float() if loss.enabled("clip") else None,
            )
            frame.pixels = pixels
            frame.rays = self.renderer(fields, samples, rays.z_per_unit)
            if self.config.uses_distillation:
                assert teacher is not None, "distillation needs the teacher's volumes"
                with torch.no_grad():
                    teacher_fields = self.field(
                        samples,
                        teacher["density"][one].float(),
                        teacher["semantics"][one].float() if loss.enabled("affinity") else None,
                    )
                    frame.teacher = self.renderer(teacher_fields, samples, rays.z_per_unit)
        if loss.enabled("photometric") and bool(batch["src_valid"][b].any()):
            stride = self.config.photometric.stride
            num_cams, _, height, width = batch["images"][b].shape
            grid_pixels = image_pixels(height, width, stride, device=batch["images"].device)  # (h * w, 2)
            pixels = grid_pixels[None, None].expand(1, num_cams, -1, 2)
            rays = camera_rays(batch["K"][one], batch["cam_from_ego"][one], pixels)
            samples = self.sampler(rays, training=True, generator=gen.jitter)
            frame.image = self.renderer(self.field(samples, outputs["density"][one].float()), samples, rays.z_per_unit)
            frame.image_size = (-(-height // stride), -(-width // stride))
        return frame

    def _ray_pixels(self, batch: Mapping[str, torch.Tensor], b: int, gen: FrameGenerators) -> torch.Tensor:
        """(1, N, P, 2) random pixels of frame ``b``, a ``labelled_fraction`` of them where a 2D target exists."""
        cfg = self.config.rendering
        one = slice(b, b + 1)
        _, num_cams, _, height, width = batch["images"].shape
        labelled = None
        if "depth" in batch:
            labelled = batch["depth"][one] > 0
        if "sem_labels" in batch:
            sem = batch["sem_labels"][one] != IGNORE_LABEL
            labelled = sem if labelled is None else labelled | sem
        return sample_pixels(
            1,
            num_cams,
            height,
            width,
            cfg.rays_per_camera,
            gen.pixels,
            labelled,
            cfg.labelled_fraction,
            batch["images"].device,
        )

    # ------------------------------------------------------------------ loss terms
    def loss_dict(
        self,
        outputs: Mapping[str, torch.Tensor],
        batch: Mapping[str, torch.Tensor],
        b: int,
        rendered: FrameRender,
    ) -> dict[str, torch.Tensor]:
        """Named, unweighted loss terms of frame ``b``: the network's volumes and the frame's render step against the
        batch's targets. Renders nothing (rays come from :meth:`render`)."""
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
        if rendered.rays is not None:
            terms.update(self._ray_losses(batch, b, rendered))
        if loss.enabled("photometric"):
            terms["photometric"] = self._photometric_loss(outputs, batch, b, rendered)
        return terms

    def _ray_losses(self, batch: Mapping[str, torch.Tensor], b: int, rendered: FrameRender) -> dict[str, torch.Tensor]:
        loss, cfg = self.loss, self.config.rendering
        ray, pixels = rendered.rays, rendered.pixels
        assert ray is not None and pixels is not None
        terms: dict[str, torch.Tensor] = {}
        if loss.enabled("depth"):
            target = _at_pixels(batch["depth"][b], pixels)
            valid = (target > 0) & ray.hit
            if cfg.depth_mode == "far":  # an empty ray renders the box exit: compare with targets clipped to it
                target = torch.minimum(target, ray.exit_depth)
            terms["depth"] = depth_loss(ray.depth, target, valid, loss.depth_kind, loss.silog_lambda)
        if loss.enabled("semantic"):
            assert ray.semantics is not None
            target = _at_pixels(batch["sem_labels"][b], pixels)
            target = torch.where(ray.hit, target, IGNORE_LABEL)
            conf = _at_pixels(batch["sem_conf"][b], pixels)
            terms["semantic"] = semantic_loss(ray.semantics, target, conf, cfg.semantic_mode)
        if loss.enabled("clip"):
            assert ray.features is not None
            height, width = batch["images"].shape[-2:]
            target = sample_feature_map(batch["features"][b : b + 1], pixels, (height, width)).flatten(1, 2)
            terms["clip"] = clip_distillation_loss(ray.features, target, ray.hit)
        if self.config.uses_distillation:
            terms.update(self._distillation_losses(batch, b, rendered))
        return terms

    def _distillation_losses(
        self, batch: Mapping[str, torch.Tensor], b: int, rendered: FrameRender
    ) -> dict[str, torch.Tensor]:
        loss = self.loss
        ray, teacher, pixels = rendered.rays, rendered.teacher, rendered.pixels
        assert ray is not None and pixels is not None
        assert teacher is not None, "distillation needs the teacher's render"
        terms: dict[str, torch.Tensor] = {}
        if loss.enabled("ray_kl"):
            terms["ray_kl"] = ray_termination_kl(ray.weights, teacher.weights, ray.hit, loss.kl_min_mass)
        if loss.enabled("affinity"):
            assert ray.semantics is not None and teacher.semantics is not None
            segments = _at_pixels(batch["segments"][b].long(), pixels)
            # segment ids are per camera: make them unique over the rig
            cams = torch.arange(pixels.shape[1], device=segments.device).repeat_interleave(pixels.shape[2])
            span = int(batch["segments"][b].max()) + 1
            segments = torch.where(segments >= 0, segments + cams[None] * span, -1)
            terms["affinity"] = segment_affinity_loss(
                ray.semantics, teacher.semantics, segments, loss.affinity_kind, loss.affinity_max_rays
            )
        return terms

    def _photometric_loss(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor], b: int, rendered: FrameRender
    ) -> torch.Tensor:
        if rendered.image is None:  # no source frame: a graph-connected 0
            return outputs["density"].sum() * 0.0
        loss, stride = self.loss, self.config.photometric.stride
        valid_src = batch["src_valid"][b]
        images = batch["images"][b]  # (N, 3, H, W) normalised
        num_cams = images.shape[0]
        depth = rendered.image.depth.reshape(num_cams, *rendered.image_size)
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
