"""Losses of the occupancy network: 3D pseudo-labels, 2D rendering against teachers, teacher distillation.

Each loss is a small function on tensors (docs/rendering.md gives the formulas and the papers):

* 3D: :func:`voxel_loss` = cross-entropy + Lovász-softmax (Berman et al., CVPR 2018) on labelled voxels;
* rendered 2D (OccNeRF arXiv 2312.09243, SelfOcc arXiv 2311.12754): :func:`depth_loss`, :func:`semantic_loss`,
  :func:`photometric_loss` (monodepth2 reprojection with the rendered depth);
* CLIP features (LangOcc arXiv 2407.17310): :func:`clip_distillation_loss` with :func:`sample_feature_map`;
* teacher -> student rendering distillation (RadOcc arXiv 2312.11829): :func:`ray_termination_kl`,
  :func:`segment_affinity_loss`.

Shapes: ``B`` batch, ``R`` rays, ``S`` samples per ray, ``C`` classes including ``free`` (last), ``K`` non-free
classes, ``D`` feature channels, ``N`` cameras, ``P`` pixels per camera. Every loss returns a scalar that is 0,
still attached to the graph, when nothing is valid. Teacher-side inputs are detached.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F

from occ_ros.core.config import Range, check_fields
from occ_ros.datasets.sample import IGNORE_LABEL
from occ_training.photometric import photometric_error, warp_grid

DepthLossKind = Literal["l1", "silog"]
SemanticKind = Literal["probs", "logits"]
AffinityKind = Literal["l1", "mse"]
ClassWeighting = Literal["none", "enet"]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` (same shape); a graph-connected 0 when the mask is empty."""
    if not bool(mask.any()):
        return values.sum() * 0.0
    return values[mask].mean()


# ---------------------------------------------------------------------------------------- 3D voxel loss
def class_weights_from_frequencies(counts: torch.Tensor, c: float = 1.02) -> torch.Tensor:
    """Cross-entropy class weights from label counts, ENet's ``w_k = 1 / ln(c + f_k)`` (Paszke et al. 2016).

    ``f_k = n_k / sum n`` is the class frequency. With ``c = 1.02`` the weights lie in ``(1.42, 50.5]``: rare
    classes get up to ~35x the weight of a class covering everything, a softer boost than inverse frequency
    (unbounded) and than inverse square root; unseen classes get the maximum, ``1 / ln(c)``.

    Args:
        counts: (C,) non-negative label counts (e.g. accumulated over the training pseudo-labels, masked voxels).
    Returns:
        (C,) float32 weights.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.dim() != 1 or bool((counts < 0).any()) or c <= 1.0:
        raise ValueError(
            f"class_weights_from_frequencies: need (C,) counts >= 0 and c > 1, got {tuple(counts.shape)}, c={c}"
        )
    freq = counts / counts.sum().clamp(min=1.0)
    return (1.0 / torch.log(c + freq)).to(torch.float32)


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors (Berman et al. 2018, Alg. 1).

    For errors sorted in decreasing order and the ground truth ``g`` (1 = pixel of the class) in that order,
    ``grad_i = J(pi_1..pi_i) - J(pi_1..pi_{i-1})`` with ``J(M) = 1 - |G \\ M| / |G u M|`` the Jaccard loss of the
    set ``M`` of the i largest-error elements counted as mispredicted (G: the class' ground truth set).

    Args:
        gt_sorted: (..., N) float 0/1, ground truth in the order of decreasing error.
    Returns:
        (..., N) the Lovász gradient (the Jaccard loss increments).
    """
    gts = gt_sorted.sum(dim=-1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(dim=-1)
    union = gts + (1.0 - gt_sorted).cumsum(dim=-1)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)


def lovasz_softmax(probs: torch.Tensor, labels: torch.Tensor, present_only: bool = True) -> torch.Tensor:
    """Lovász-softmax loss (Berman, Rannen Triki, Blaschko, CVPR 2018) over a flat set of elements.

    Per class k: errors ``m_i = |1[y_i = k] - p_i(k)|``, sorted decreasingly, dotted with :func:`lovasz_grad`;
    this is the Lovász extension of the class' Jaccard loss evaluated at ``m``. Averaged over the classes present
    in ``labels`` (``present_only``, the paper's ``classes='present'``) or over all C.

    Args:
        probs: (N, C) class probabilities (softmax).
        labels: (N,) int64 labels in 0..C-1.
    Returns:
        scalar loss in [0, 1].
    """
    if probs.shape[0] == 0:
        return probs.sum() * 0.0
    onehot = F.one_hot(labels.long(), probs.shape[1]).to(probs.dtype).T  # (C, N)
    errors = (onehot - probs.T).abs()
    errors_sorted, order = errors.sort(dim=1, descending=True)
    gt_sorted = onehot.gather(1, order)
    losses = (errors_sorted * lovasz_grad(gt_sorted)).sum(dim=1)  # (C,)
    if present_only:
        present = onehot.sum(dim=1) > 0
        return losses[present].mean()
    return losses.mean()


def voxel_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
    lovasz_weight: float = 1.0,
    ce_weight: float = 1.0,
) -> torch.Tensor:
    """3D pseudo-label loss ``ce_weight * CE + lovasz_weight * Lovász-softmax`` on the masked voxels.

    Cross-entropy is the (class-weighted) mean ``sum_i w_{y_i} CE_i / sum_i w_{y_i}`` (PyTorch's convention);
    Lovász-softmax (:func:`lovasz_softmax`) runs on the softmax over all C classes (free included) of every
    masked voxel of the whole batch at once, averaged over the classes present.

    Args:
        logits: (B, C, X, Y, Z) class logits on the grid ([x, y, z] indexing, free last).
        labels: (B, X, Y, Z) uint8 / int64 labels; ``IGNORE_LABEL`` (255) never counts.
        mask: (B, X, Y, Z) bool voxels to supervise (e.g. ``mask_camera`` of the pseudo-labels); None: all.
        class_weights: (C,) cross-entropy weights (:func:`class_weights_from_frequencies`) or None.
    Returns:
        scalar loss (a graph-connected 0 when no voxel is supervised).
    """
    if logits.dim() != 5 or labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"voxel_loss: logits (B, C, X, Y, Z) {tuple(logits.shape)} vs labels {tuple(labels.shape)}")
    labels = labels.long()
    keep = labels != IGNORE_LABEL
    if mask is not None:
        keep = keep & mask.bool()
    if not bool(keep.any()):
        return logits.sum() * 0.0
    flat_logits = logits.movedim(1, -1)[keep]  # (M, C)
    flat_labels = labels[keep]
    if int(flat_labels.max()) >= logits.shape[1]:
        raise ValueError(f"voxel_loss: label {int(flat_labels.max())} out of range for {logits.shape[1]} classes")
    loss = logits.new_zeros(())
    if ce_weight:
        weight = None if class_weights is None else class_weights.to(logits)
        loss = loss + ce_weight * F.cross_entropy(flat_logits, flat_labels, weight=weight)
    if lovasz_weight:
        loss = loss + lovasz_weight * lovasz_softmax(flat_logits.softmax(dim=-1), flat_labels)
    return loss


def cell_depth_targets(depth: torch.Tensor, stride: int, feature_size: tuple[int, int]) -> torch.Tensor:
    """Nearest surface depth of each feature cell: the minimum positive depth of its ``stride`` x ``stride`` pixels.

    Args:
        depth: (N, H, W) metric depth maps, metres; 0 (or less) = no depth at that pixel.
        stride: pixels per feature cell; cell (r, c) covers pixels [s r, s r + s - 1] x [s c, s c + s - 1].
        feature_size: (h, w) cells, ``s * h >= H`` and ``s * w >= W`` (cells past the image edge are padded).
    Returns:
        (N, h, w) depths, metres; 0 where the cell has no pixel with depth.
    """
    h, w = feature_size
    height, width = depth.shape[-2:]
    if stride * h < height or stride * w < width:
        raise ValueError(f"cell_depth_targets: {h} x {w} cells at stride {stride} do not cover {height} x {width}")
    far = F.pad(
        depth.masked_fill(depth <= 0, math.inf), (0, stride * w - width, 0, stride * h - height), value=math.inf
    )
    nearest = -F.max_pool2d(-far.unsqueeze(1), stride).squeeze(1)
    return nearest.masked_fill(torch.isinf(nearest), 0.0)


def lift_depth_loss(logits: torch.Tensor, depth: torch.Tensor, stride: int, depth_max: float) -> torch.Tensor:
    """Cross-entropy of the view transform's per-cell depth bins against the 2D depth teacher (BEVDepth-style).

    The target of each feature cell is the bin of its nearest teacher depth (:func:`cell_depth_targets`); bin ``k``
    of ``D`` covers ``[k, k + 1) * depth_max / D`` (the last one also everything farther). Cells without a
    teacher depth do not count.

    Args:
        logits: (N, D, h, w) depth-bin logits of N camera images.
        depth: (N, H, W) teacher depth, metres, 0 = none.
        stride: image pixels per feature cell.
        depth_max: depth covered by the bins, metres.
    Returns:
        scalar loss (a graph-connected 0 when no cell has a target).
    """
    bins = logits.shape[1]
    target = cell_depth_targets(depth.detach(), stride, (int(logits.shape[-2]), int(logits.shape[-1])))
    valid = target > 0
    if not bool(valid.any()):
        return logits.sum() * 0.0
    index = (target / (depth_max / bins)).floor().clamp(max=bins - 1).long()
    return F.cross_entropy(logits.movedim(1, -1)[valid], index[valid])


# ---------------------------------------------------------------------------------------- rendered 2D losses
def depth_loss(
    rendered: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    kind: DepthLossKind = "l1",
    silog_lambda: float = 0.85,
    min_depth: float = 1e-3,
) -> torch.Tensor:
    """Rendered optical-axis depth against a metric 2D depth target.

    * ``l1``: ``mean |d - d*|`` (metres) over valid rays;
    * ``silog``: scale-invariant log error (Eigen et al. 2014), ``sqrt(mean g^2 - lambda (mean g)^2)`` with
      ``g = log d - log d*``; ``lambda = 1`` is fully scale-invariant, 0 plain log RMSE.

    Args:
        rendered, target: (B, R) depths, metres.
        valid: (B, R) bool; rays also need ``target > 0``.
    """
    mask = target > 0 if valid is None else valid.bool() & (target > 0)
    target = target.detach()
    if kind == "l1":
        return _masked_mean((rendered - target).abs(), mask)
    if kind == "silog":
        if not bool(mask.any()):
            return rendered.sum() * 0.0
        g = torch.log(rendered[mask].clamp(min=min_depth)) - torch.log(target[mask].clamp(min=min_depth))
        return torch.sqrt(((g**2).mean() - silog_lambda * g.mean() ** 2).clamp(min=1e-12))
    raise ValueError(f"depth_loss: unknown kind {kind!r}")


def semantic_loss(
    rendered: torch.Tensor,
    labels: torch.Tensor,
    confidence: torch.Tensor | None = None,
    kind: SemanticKind = "probs",
    eps: float = 1e-6,
) -> torch.Tensor:
    """Rendered semantics against the 2D teacher's hard labels.

    ``probs`` (rendered probabilities, :func:`render_semantics` default): NLL ``-log(max(p_y, eps))`` -- since the
    rendered probabilities sum to the ray's accumulation, this also asks the ray to stop. ``logits``: softmax
    cross-entropy of rendered logits. Per ray the loss is scaled by the teacher's confidence of the label; the
    result is ``sum_r c_r l_r / #labelled rays`` (low-confidence labels pull less, they are not renormalised).

    Args:
        rendered: (B, R, K) rendered probabilities or logits over the non-free classes.
        labels: (B, R) teacher labels in 0..K-1, ``IGNORE_LABEL`` (255) for unlabelled pixels (e.g. sky).
        confidence: (B, R) weights in [0, 1] (the teacher's probability of the label), or None (all 1).
    """
    labels = labels.long()
    keep = labels != IGNORE_LABEL
    if not bool(keep.any()):
        return rendered.sum() * 0.0
    scores, target = rendered[keep], labels[keep]
    if int(target.max()) >= rendered.shape[-1]:
        raise ValueError(f"semantic_loss: label {int(target.max())} out of range for {rendered.shape[-1]} classes")
    if kind == "probs":
        per_ray = -torch.log(scores.gather(1, target[:, None])[:, 0].clamp(min=eps))
    elif kind == "logits":
        per_ray = F.cross_entropy(scores, target, reduction="none")
    else:
        raise ValueError(f"semantic_loss: unknown kind {kind!r}")
    if confidence is not None:
        per_ray = per_ray * confidence.detach()[keep].to(per_ray)
    return per_ray.mean()


def photometric_errors(
    depth: torch.Tensor,
    target: torch.Tensor,
    sources: torch.Tensor,
    K_t: torch.Tensor,
    K_s: torch.Tensor,
    src_cam_from_tgt_cam: torch.Tensor,
    identity: torch.Tensor | None = None,
    ssim_weight: float = 0.85,
    min_depth: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel monodepth2 reprojection error of a rendered depth image (min over sources, auto-masking).

    Each target pixel is back-projected with its rendered depth, moved into every source camera
    (``src_cam_from_tgt_cam``: another frame of the same camera, or another camera of the rig) and the source image
    is sampled there (:func:`~occ_training.photometric.warp_grid`, bilinear); the error is
    :func:`~occ_training.photometric.photometric_error` (0.85 SSIM + 0.15 L1). Per pixel the minimum over
    the sources in whose image it lands is kept (occlusion handling). With ``identity`` (monodepth2 auto-masking)
    the un-warped sources compete too: pixels that look the same without any motion (static relative to the
    camera, textureless) then take the identity error, which carries no gradient to the depth.

    The depth image may be a crop or a reduced resolution of the camera image: ``K_t`` is the intrinsics of the
    depth image's pixel grid (crop: shift ``cx, cy`` by the crop offset; resize: ``Camera.resized``).

    Args:
        depth: (B, h, w) rendered optical-axis depth, metres (clamped to ``>= min_depth`` for the warp).
        target: (B, ch, h, w) target image at the depth's pixels, intensities in [0, 1].
        sources: (B, S, ch, H_s, W_s) source images in [0, 1].
        K_t: (B, 3, 3) target intrinsics (of the (h, w) pixel grid); K_s: (B, S, 3, 3) source intrinsics.
        src_cam_from_tgt_cam: (B, S, 4, 4) target optical frame -> source optical frame.
        identity: optional (B, S, ch, h, w) source images at the target pixels without warping (for a full-size
            target of the same camera: ``sources`` themselves).
    Returns:
        errors: (B, h, w) per-pixel error (``inf`` where no source sees the pixel and no identity is given).
        valid: (B, h, w) bool, pixels with a finite error.
    """
    batch, num_src, ch, src_h, src_w = sources.shape
    height, width = depth.shape[-2:]
    flat_depth = depth.clamp(min=min_depth)[:, None].expand(batch, num_src, height, width).reshape(-1, height, width)
    flat_kt = K_t[:, None].expand(batch, num_src, 3, 3).reshape(-1, 3, 3)
    grid, inside = warp_grid(
        flat_depth, flat_kt, K_s.reshape(-1, 3, 3), src_cam_from_tgt_cam.reshape(-1, 4, 4), (src_h, src_w)
    )
    warped = F.grid_sample(
        sources.reshape(-1, ch, src_h, src_w), grid.to(sources.dtype), align_corners=True, padding_mode="border"
    )
    flat_target = target[:, None].expand(batch, num_src, ch, height, width).reshape(-1, ch, height, width)
    reprojection = photometric_error(warped, flat_target, ssim_weight).reshape(batch, num_src, height, width)
    reprojection = torch.where(inside.reshape(batch, num_src, height, width), reprojection, torch.inf)
    errors = reprojection.min(dim=1).values
    if identity is not None:
        ident = photometric_error(identity.reshape(-1, ch, height, width), flat_target, ssim_weight)
        errors = torch.minimum(errors, ident.reshape(batch, num_src, height, width).min(dim=1).values.detach())
    return errors, torch.isfinite(errors)


def photometric_loss(
    depth: torch.Tensor,
    target: torch.Tensor,
    sources: torch.Tensor,
    K_t: torch.Tensor,
    K_s: torch.Tensor,
    src_cam_from_tgt_cam: torch.Tensor,
    valid: torch.Tensor | None = None,
    automask: bool = True,
    identity: torch.Tensor | None = None,
    ssim_weight: float = 0.85,
    min_depth: float = 0.1,
) -> torch.Tensor:
    """Mean of :func:`photometric_errors` over the valid target pixels.

    Args:
        depth, target, sources, K_t, K_s, src_cam_from_tgt_cam, ssim_weight, min_depth: as
            :func:`photometric_errors`.
        valid: (B, h, w) bool target pixels to score (e.g. not sky), or None.
        automask: use the identity errors; ``identity`` defaults to ``sources`` when they have the target's size
            (a full-resolution target of the same camera), otherwise it must be given.
    """
    ident = None
    if automask:
        ident = identity
        if ident is None:
            if tuple(sources.shape[-2:]) != tuple(target.shape[-2:]):
                raise ValueError("photometric_loss: automask with a crop / resized target needs `identity`")
            ident = sources
    errors, ok = photometric_errors(
        depth, target, sources, K_t, K_s, src_cam_from_tgt_cam, ident, ssim_weight, min_depth
    )
    if valid is not None:
        ok = ok & valid.bool()
    return _masked_mean(torch.where(ok, errors, 0.0), ok)


# ---------------------------------------------------------------------------------------- features (LangOcc)
def sample_image(
    maps: torch.Tensor,
    pixels: torch.Tensor,
    image_size: tuple[int, int],
    mode: Literal["bilinear", "nearest"] = "bilinear",
) -> torch.Tensor:
    """Read per-camera 2D maps at pixel positions of the full-resolution image.

    The map covers the image: map cell ``(r, c)`` of an (h, w) map spans pixels ``[r H / h, (r + 1) H / h)`` x
    ``[c W / w, (c + 1) W / w)`` (:class:`~occ_training.teachers.base.FeatureMap`), its value sits at the cell
    centre. With pixel centres at integers, pixel coordinate ``u`` is at normalised ``(2 u + 1) / W - 1`` for
    ``grid_sample(align_corners=False)`` whatever the map's resolution; an (H, W) map read at integer pixels returns
    exactly its values. Outside the image the edge cells repeat.

    Args:
        maps: (B, N, ch, h, w) maps (ch channels).
        pixels: (B, N, P, 2) pixel coordinates (u, v) in the (H, W) image.
        image_size: (H, W) of the image the pixels refer to.
    Returns:
        (B, N, P, ch) values (``.flatten(1, 2)`` matches :func:`~occ_training.rendering.rays.camera_rays`' order).
    """
    batch, cams, ch, h, w = maps.shape
    height, width = image_size
    count = pixels.shape[2]
    gx = (2.0 * pixels[..., 0] + 1.0) / width - 1.0
    gy = (2.0 * pixels[..., 1] + 1.0) / height - 1.0
    grid = torch.stack([gx, gy], dim=-1).reshape(batch * cams, count, 1, 2).to(maps.dtype)
    out = F.grid_sample(
        maps.reshape(batch * cams, ch, h, w), grid, mode=mode, padding_mode="border", align_corners=False
    )
    return out[..., 0].permute(0, 2, 1).reshape(batch, cams, count, ch)


def sample_feature_map(
    features: torch.Tensor, pixels: torch.Tensor, image_size: tuple[int, int], channels_last: bool = True
) -> torch.Tensor:
    """Bilinearly read teacher feature maps at ray pixels (see :func:`sample_image` for the convention).

    Args:
        features: (B, N, h, w, D) when ``channels_last`` (the :class:`FeatureMap` layout), else (B, N, D, h, w).
        pixels: (B, N, P, 2) pixel coordinates in the (H, W) image.
        image_size: (H, W).
    Returns:
        (B, N, P, D) interpolated features (not renormalised; :func:`clip_distillation_loss` compares directions).
    """
    maps = features.permute(0, 1, 4, 2, 3) if channels_last else features
    return sample_image(maps, pixels, image_size, "bilinear")


def clip_distillation_loss(
    rendered: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """LangOcc's feature distillation: ``mean (1 - cos(f_rendered, f_teacher))`` over valid rays.

    Args:
        rendered: (B, R, D) rendered features (:func:`render_features`).
        teacher: (B, R, D) teacher (CLIP-aligned) features at the rays' pixels (:func:`sample_feature_map`).
        valid: (B, R) bool or None.
    """
    cos = F.cosine_similarity(rendered, teacher.detach().to(rendered), dim=-1, eps=eps)
    mask = torch.ones_like(cos, dtype=torch.bool) if valid is None else valid.bool()
    return _masked_mean(1.0 - cos, mask)


# ---------------------------------------------------------------------------------------- RadOcc distillation
def ray_termination_kl(
    student_weights: torch.Tensor,
    teacher_weights: torch.Tensor,
    valid: torch.Tensor | None = None,
    min_mass: float = 1e-4,
    eps: float = 1e-8,
) -> torch.Tensor:
    """RadOcc's rendered-depth distillation: ``KL(p_teacher || p_student)`` of the ray-termination distributions.

    ``p = w / sum_i w_i`` per ray for both (the same samples along the same rays); the student's is smoothed,
    ``q = (w + eps) / (sum w + S eps)``, so its log stays finite. ``KL = sum_i p_i (log p_i - log q_i)`` with
    ``0 log 0 = 0``. Rays where the teacher's accumulated weight is below ``min_mass`` (it sees nothing) are
    ignored; the mean is over the remaining rays.

    Args:
        student_weights, teacher_weights: (B, R, S) termination weights (:func:`weights_from_density`).
        valid: (B, R) bool or None.
    """
    teacher = teacher_weights.detach().to(student_weights).clamp(min=0.0)
    mass = teacher.sum(dim=-1)
    mask = mass > min_mass
    if valid is not None:
        mask = mask & valid.bool()
    # p = 0 on ignored rays (not NaN: NaN * 0 in the backward pass would poison the student's gradient)
    p = torch.where(mask[..., None], teacher / mass.clamp(min=1e-30)[..., None], 0.0)
    student = student_weights.clamp(min=0.0) + eps
    log_q = torch.log(student) - torch.log(student.sum(dim=-1, keepdim=True))
    kl = (torch.xlogy(p, p) - p * log_q).sum(dim=-1)
    return _masked_mean(kl, mask)


def segment_affinity_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    segments: torch.Tensor,
    kind: AffinityKind = "l1",
    max_rays_per_segment: int = 256,
    eps: float = 1e-8,
) -> torch.Tensor:
    """RadOcc's rendered-semantics affinity distillation within 2D segments.

    Within each segment (rays of one batch element sharing a segment id: a SAM mask, or a connected component of
    the teacher's 2D labels), the student's and the teacher's affinity matrices ``A_ij = cos(f_i, f_j)`` over the
    segment's rays are compared: ``mean_{i != j} |A^s_ij - A^t_ij|`` (``l1``, the default; ``mse`` squares the
    difference). The per-segment means are averaged over segments with at least two rays (each region counts once,
    whatever its size). Pairs of rays from different segments or batch elements never enter.

    Vectorised: rays are grouped by (batch, segment) into a zero-padded (G, M, K) tensor, M = the largest segment's
    ray count capped at ``max_rays_per_segment`` (a larger segment keeps its first rays in ray order -- random for
    :func:`sample_pixels` rays), so memory is ``G M^2``.

    Args:
        student: (B, R, K) student rendered features / probabilities.
        teacher: (B, R, K) teacher rendered features / probabilities at the same rays.
        segments: (B, R) int64 segment ids (any non-negative values); negative = no segment (ignored).
    Returns:
        scalar loss (graph-connected 0 when no segment has two rays).
    """
    batch, rays, dim = student.shape
    segs = segments.long()
    keep = segs >= 0
    if int(keep.sum()) < 2:
        return student.sum() * 0.0
    b_idx, r_idx = keep.nonzero(as_tuple=True)
    span = int(segs.max()) + 1
    keys = b_idx * span + segs[b_idx, r_idx]
    _, group = torch.unique(keys, return_inverse=True)
    order = torch.sort(group * rays + r_idx).indices  # by group, then ray index (deterministic)
    group, r_idx, b_idx = group[order], r_idx[order], b_idx[order]
    counts = torch.bincount(group)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(group.numel(), device=group.device) - first[group]
    take = rank < max_rays_per_segment
    group, r_idx, b_idx, rank = group[take], r_idx[take], b_idx[take], rank[take]
    num_groups, width = int(counts.numel()), int(rank.max()) + 1

    def padded(values: torch.Tensor) -> torch.Tensor:
        out = values.new_zeros(num_groups, width, dim)
        out[group, rank] = F.normalize(values[b_idx, r_idx], dim=-1, eps=eps)
        return out

    unit_s, unit_t = padded(student), padded(teacher.detach().to(student))
    aff_s = unit_s @ unit_s.transpose(1, 2)  # (G, M, M) cosine affinities; padding rows are 0
    aff_t = unit_t @ unit_t.transpose(1, 2)
    member = torch.zeros(num_groups, width, dtype=torch.bool, device=student.device)
    member[group, rank] = True
    pairs = member[:, :, None] & member[:, None, :] & ~torch.eye(width, dtype=torch.bool, device=student.device)
    if kind == "l1":
        diff = (aff_s - aff_t).abs()
    elif kind == "mse":
        diff = (aff_s - aff_t) ** 2
    else:
        raise ValueError(f"segment_affinity_loss: unknown kind {kind!r}")
    num_pairs = pairs.sum(dim=(1, 2))
    per_segment = (diff * pairs).sum(dim=(1, 2)) / num_pairs.clamp(min=1)
    has_pairs = num_pairs > 0
    if not bool(has_pairs.any()):
        return student.sum() * 0.0
    return per_segment[has_pairs].mean()


# ---------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class RenderingLossConfig:
    """Weights (0 disables a term) and settings of the training losses.

    Attributes:
        voxel_ce: cross-entropy on the 3D pseudo-labels (:func:`voxel_loss`).
        voxel_lovasz: Lovász-softmax on the 3D pseudo-labels.
        class_weighting: ``none`` or ``enet`` (:func:`class_weights_from_frequencies` over the training labels).
        depth: rendered depth vs the 2D depth teacher (:func:`depth_loss`).
        depth_kind: ``l1`` or ``silog``; silog_lambda: its variance weight.
        lift_depth: the view transform's depth bins vs the 2D depth teacher (:func:`lift_depth_loss`; only for
            models with ``depth_bins > 0``).
        semantic: rendered semantics vs the 2D segmentation teacher (:func:`semantic_loss`).
        semantic_min_confidence: teacher labels below this confidence are ignored.
        photometric: monodepth2 reprojection with the rendered depth (:func:`photometric_loss`).
        ssim_weight, automask, photometric_min_depth: its settings.
        clip: LangOcc CLIP-feature distillation (:func:`clip_distillation_loss`).
        ray_kl: RadOcc ray-termination KL to a teacher network (:func:`ray_termination_kl`); kl_min_mass: rays with
            less teacher mass are ignored.
        affinity: RadOcc segment-affinity distillation (:func:`segment_affinity_loss`); affinity_kind ``l1`` /
            ``mse``; affinity_max_rays: rays per segment at most.
    """

    voxel_ce: Annotated[float, Range(ge=0, lt=float("inf"))] = 1.0
    voxel_lovasz: Annotated[float, Range(ge=0, lt=float("inf"))] = 1.0
    class_weighting: ClassWeighting = "enet"
    depth: Annotated[float, Range(ge=0, lt=float("inf"))] = 0.0
    depth_kind: DepthLossKind = "l1"
    silog_lambda: Annotated[float, Range(ge=0, le=1)] = 0.85
    lift_depth: Annotated[float, Range(ge=0, lt=float("inf"))] = 0.0
    semantic: Annotated[float, Range(ge=0, lt=float("inf"))] = 0.0
    semantic_min_confidence: Annotated[float, Range(ge=0, le=1)] = 0.0
    photometric: Annotated[float, Range(ge=0, lt=float("inf"))] = 0.0
    ssim_weight: Annotated[float, Range(ge=0, le=1)] = 0.85
    automask: bool = True
    photometric_min_depth: Annotated[float, Range(gt=0)] = 0.1
    clip: Annotated[float, Range(ge=0, lt=float("inf"))] = 0.0
    ray_kl: Annotated[float, Range(ge=0, lt=float("inf"))] = 0.0
    kl_min_mass: Annotated[float, Range(ge=0)] = 1e-4
    affinity: Annotated[float, Range(ge=0, lt=float("inf"))] = 0.0
    affinity_kind: AffinityKind = "l1"
    affinity_max_rays: Annotated[int, Range(ge=2)] = 256

    #: names of the weighted terms, as accepted by :meth:`total`
    TERMS: ClassVar[tuple[str, ...]] = (
        "voxel_ce",
        "voxel_lovasz",
        "depth",
        "lift_depth",
        "semantic",
        "photometric",
        "clip",
        "ray_kl",
        "affinity",
    )

    def __post_init__(self) -> None:
        for name in self.TERMS:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"RenderingLossConfig: weight {name} must be finite and >= 0, got {value}")
        check_fields(self)
        if not 0.0 <= self.ssim_weight <= 1.0:
            raise ValueError(f"RenderingLossConfig: ssim_weight must lie in [0, 1], got {self.ssim_weight}")
        if not 0.0 <= self.silog_lambda <= 1.0:
            raise ValueError(f"RenderingLossConfig: silog_lambda must lie in [0, 1], got {self.silog_lambda}")
        if self.photometric_min_depth <= 0 or self.kl_min_mass < 0 or int(self.affinity_max_rays) < 2:
            raise ValueError(
                "RenderingLossConfig: need photometric_min_depth > 0, kl_min_mass >= 0, affinity_max_rays >= 2"
            )

    def enabled(self, term: str) -> bool:
        """Whether ``term`` (one of :attr:`TERMS`) has a positive weight."""
        if term not in self.TERMS:
            raise KeyError(f"unknown loss term {term!r}; known: {self.TERMS}")
        return getattr(self, term) > 0

    def total(self, terms: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted sum of the computed terms.

        Args:
            terms: term name (one of :attr:`TERMS`) -> unweighted scalar loss. Terms with weight 0 are skipped;
                enabled terms that are absent (e.g. no source frame this batch) simply do not contribute.
        Returns:
            total: the scalar ``sum weight * term``; logs: term name -> unweighted value (floats, for logging).
        """
        unknown = set(terms) - set(self.TERMS)
        if unknown:
            raise KeyError(f"unknown loss terms {sorted(unknown)}; known: {self.TERMS}")
        total: torch.Tensor | None = None
        logs: dict[str, float] = {}
        for name, value in terms.items():
            weight = getattr(self, name)
            if weight <= 0:
                continue
            logs[name] = float(value.detach())
            total = weight * value if total is None else total + weight * value
        if total is None:
            raise ValueError(f"RenderingLossConfig.total: none of {sorted(terms)} is enabled")
        return total, logs
