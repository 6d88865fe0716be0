"""Metric scale and shift of relative (affine-invariant inverse) depth from photometric consistency.

A relative depth model (Depth Anything, MiDaS) gives per image a map ``r`` with
``1 / depth = scale * r + shift`` for an unknown ``scale > 0`` and ``shift`` (the convention of
:meth:`occ_training.teachers.base.DepthMap.to_metric`). Following zero-shot VFM occupancy
(arXiv 2503.07125) we recover them per camera, without metric ground truth, from the known metric
ego poses: a candidate depth back-projects the target image's pixels, the ego motion (and the rig)
moves them into a neighbouring frame's camera, that image is sampled there (bilinear,
``torch.nn.functional.grid_sample``), and the candidate whose warped images best reproduce the
target wins. Because the poses are metric, the scale is observable whenever the ego translates.

Objective (monodepth2, Godard et al. 2019), per target pixel:

* photometric error ``pe = w * clamp((1 - SSIM) / 2, 0, 1) + (1 - w) * |I_warped - I_target|`` (3x3
  box-filter SSIM, channel mean, ``w = ssim_weight = 0.85``);
* occlusion: the minimum of ``pe`` over the source frames (a pixel hidden or out of view in one
  neighbour is usually seen in the other); sources the pixel projects outside of do not count;
* auto-masking: the pixel's loss is ``min(reprojection error, identity error)``, the identity error
  being ``pe`` between the *un-warped* source and the target. Pixels that look the same without any
  warp -- objects moving with the ego, textureless road and walls, far background -- then cost the
  same for every candidate and do not pull the fit (this is monodepth2's implementation of the mask);
* robust aggregation: the mean of the lowest ``trim_quantile`` (0.8) of the per-pixel losses over the
  camera's valid target pixels (a trimmed mean). Independently moving objects (overtaken trucks,
  oncoming cars), disocclusions and aliased pixels have large errors at the true depth, and a trimmed
  mean ignores the worst 20 % whatever their magnitude, without the residual scale a Cauchy /
  Geman-McClure loss needs. The pixel set is fixed (the valid target pixels), so candidates are compared
  on equal terms. Limit: a moving object that covers much more than the trimmed fraction of a camera's
  valid pixels can win (docs/pseudo_labels.md); pass ``valid`` without dynamic classes when a
  segmentation is at hand, as the pseudo-labeller does.

Optimisation, one ``(scale, shift)`` per camera, all cameras of one image size batched:

1. normalise ``r`` per camera to ``rn = (r - r_lo) / (r_hi - r_lo)`` with ``r_lo, r_hi`` its 5th / 95th
   percentiles over the valid target pixels, so ``1 / depth = s * rn + t`` with ``t`` the inverse depth
   of a far pixel and ``s + t`` that of a near one;
2. coarse grid search (the loss is not convex in scale and shift): the depths of the near and the far
   anchor each on a log grid of ``search_steps`` values in ``[min_depth, max_depth]`` (far > near),
   i.e. a grid over ``log(scale)`` and ``shift`` laid out in metric units. Warping every candidate would
   cost one warp per candidate; instead a plane sweep computes the per-pixel loss on ``search_planes``
   fronto-parallel inverse-depth planes once (a cost volume, at ``search_width``), and each candidate's
   loss reads it by linear interpolation in log inverse depth at the pixel's candidate depth;
3. refinement by Adam on ``log(s)`` and ``t`` (``t`` in units of the initial ``s``) at the working
   resolution (``max_width``): a local cost volume of ``refine_planes`` depth ratios within
   ``exp(+-refine_radius)`` of the current depth map (exact for a change of scale, interpolated for
   shift), cosine-decayed learning rate, best iterate kept; ``refine_rounds`` rounds, each re-centred
   with a third of the radius, the loss scored on every ``refine_stride``-th pixel. The reported loss is
   the exact (warped, not interpolated) loss over every pixel;
4. back to the raw map: ``scale = s / (r_hi - r_lo)``, ``shift = t - scale * r_lo``.

Depths are clamped to ``[min_depth, max_depth]`` inside the warp. A camera with fewer than
``min_pixels`` valid target pixels gets a ``ScaleShift`` with NaN scale and shift and ``pixels = 0``
(``apply`` and ``DepthMap.to_metric`` then give no depth): it cannot be calibrated from these frames.

Frames: optical frame x right, y down, z forward; ego frame x forward, y left, z up;
``world_from_ego`` maps ego points to the world (odom) frame; pixel (0, 0) is the centre of the top-left
pixel (docs/conventions.md). ``src_cam_from_tgt_cam`` maps points of the target camera's optical frame
into the source camera's.

Run ``python -m occ_training.labels.depth_calibration`` for the measurement quoted in docs/pseudo_labels.md.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F

from occ_ros.core.config import Range, check_fields
from occ_ros.core.rig import Camera, CameraRig
from occ_ros.core.transforms import invert_transform
from occ_training.photometric import (
    SSIM_C1,
    SSIM_C2,
    box3,
    photometric_error,
    warp_coefficients,
)
from occ_training.teachers.base import DepthMap

CalibrationMode = Literal["frame", "sequence"]
CALIBRATION_MODES: tuple[CalibrationMode, ...] = typing.get_args(CalibrationMode)

#: Rec. 601 luma weights (``grayscale=True``).
LUMA = torch.tensor([0.299, 0.587, 0.114])


# ---------------------------------------------------------------------------------------- config / data
@dataclass(frozen=True)
class CalibrationConfig:
    """Settings of :func:`fit_scale_shift` / :func:`calibrate_sequence`.

    Attributes:
        mode: ``frame`` -- one scale/shift per camera per frame (models whose affine changes from image
            to image, as Depth Anything's does); ``sequence`` -- one per camera for the whole sequence.
        neighbours: frame offsets used as sources for a target frame (those outside the sequence are skipped).
        max_width: working resolution: images and relative maps wider than this are area-averaged down.
        search_width: resolution of the coarse grid search (area-averaged down from the input).
        ssim_weight: weight of the SSIM term in the photometric error (the L1 term gets 1 - ssim_weight).
        trim_quantile: fraction of each camera's valid pixels, lowest losses first, that is averaged.
        automask: per-pixel minimum with the identity (un-warped) error (monodepth2 auto-masking). When off,
            pixels that project outside every source still fall back to the identity error.
        cross_camera: also warp from the other cameras of the rig (same frame and neighbour frames) whose
            field of view overlaps the target camera's; needs cameras of one image size.
        anchor_percentiles: percentiles of the relative map that define the far / near anchors.
        grayscale: compare luminance instead of RGB (3x less work; see docs/pseudo_labels.md for the effect).
        search_planes: fronto-parallel inverse-depth planes (log-spaced over the depth range) of the coarse
            cost volume.
        search_steps: grid values per anchor in the coarse search.
        search_stride: the grid's candidates are scored on every ``search_stride``-th pixel (rows and columns).
        refine_rounds: local refinement rounds (0: grid search only); each re-centres a local cost volume.
        refine_planes: depth ratios per local cost volume.
        refine_radius: half-width of the first local volume in log depth (exp(0.3) = +-35 %); each later
            round uses a third of the previous one.
        refine_iters: Adam iterations per round.
        refine_stride: the refinement's local volumes and its loss use every ``refine_stride``-th pixel (rows and
            columns) of the working resolution (a sample of the same loss; the reported loss uses every pixel).
        refine_lr: Adam learning rate (on log-scale and on the shift in units of the scale).
        min_depth, max_depth: metres; candidate depths are clamped to this range in the warp.
        min_pixels: cameras with fewer valid target pixels (at the working resolution) are not calibrated.
        max_batch_pixels: bound on warped pixels per batch in the cost-volume sweeps and the grid (memory).
        sequence_targets: in ``sequence`` mode, at most this many target frames (evenly spaced) enter the
            fit; one affine per camera is well determined by a few frames, and the cost grows with each.
        seed: seeds the tiny noise that breaks ties between reprojection and identity errors.
    """

    mode: CalibrationMode = "frame"
    neighbours: tuple[int, ...] = (-2, -1, 1, 2)
    max_width: Annotated[int, Range(ge=8)] = 320
    search_width: Annotated[int, Range(ge=8)] = 200
    ssim_weight: Annotated[float, Range(ge=0, le=1)] = 0.85
    trim_quantile: Annotated[float, Range(gt=0, le=1)] = 0.8
    automask: bool = True
    cross_camera: bool = False
    anchor_percentiles: Annotated[tuple[float, float], Range(ge=0, le=100)] = (5.0, 95.0)
    grayscale: bool = True
    search_planes: Annotated[int, Range(ge=2)] = 32
    search_steps: Annotated[int, Range(ge=2)] = 16
    search_stride: Annotated[int, Range(ge=1)] = 2
    refine_rounds: Annotated[int, Range(ge=0)] = 2
    refine_planes: Annotated[int, Range(ge=2)] = 9
    refine_radius: Annotated[float, Range(gt=0, lt=float("inf"))] = 0.3
    refine_iters: Annotated[int, Range(ge=0)] = 40
    refine_stride: Annotated[int, Range(ge=1)] = 1
    refine_lr: Annotated[float, Range(gt=0, lt=float("inf"))] = 0.02
    min_depth: Annotated[float, Range(gt=0)] = 0.5
    max_depth: Annotated[float, Range(gt=0, lt=float("inf"))] = 80.0
    min_pixels: Annotated[int, Range(ge=1)] = 100
    max_batch_pixels: Annotated[int, Range(ge=1)] = 2_000_000
    sequence_targets: Annotated[int, Range(ge=1)] = 8
    seed: Annotated[int, Range(ge=0)] = 0

    def __post_init__(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(f"CalibrationConfig: {msg}")

        check_fields(self)
        try:
            neighbours = tuple(int(o) for o in self.neighbours)
        except (TypeError, ValueError):
            fail(f"neighbours must be a sequence of integer frame offsets, got {self.neighbours!r}")
        if not neighbours or 0 in neighbours or len(set(neighbours)) != len(neighbours):
            fail(f"neighbours must be distinct non-zero frame offsets, got {self.neighbours!r}")
        object.__setattr__(self, "neighbours", neighbours)
        for name in ("max_width", "search_width"):
            if int(getattr(self, name)) < 8:
                fail(f"{name} must be at least 8 pixels, got {getattr(self, name)}")
        if not 0.0 <= self.ssim_weight <= 1.0:
            fail(f"ssim_weight must lie in [0, 1], got {self.ssim_weight}")
        if not 0.0 < self.trim_quantile <= 1.0:
            fail(f"trim_quantile must lie in (0, 1], got {self.trim_quantile}")
        lo, hi = (float(p) for p in self.anchor_percentiles)
        if not 0.0 <= lo < hi <= 100.0:
            fail(f"anchor_percentiles must be (lo, hi) with 0 <= lo < hi <= 100, got {self.anchor_percentiles}")
        object.__setattr__(self, "anchor_percentiles", (lo, hi))
        if int(self.search_stride) < 1:
            fail(f"search_stride must be at least 1, got {self.search_stride}")
        for name in ("search_planes", "search_steps", "refine_planes"):
            if int(getattr(self, name)) < 2:
                fail(f"{name} must be at least 2, got {getattr(self, name)}")
        for name in ("refine_rounds", "refine_iters"):
            if int(getattr(self, name)) < 0:
                fail(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (math.isfinite(self.refine_radius) and self.refine_radius > 0):
            fail(f"refine_radius must be positive, got {self.refine_radius}")
        if not (math.isfinite(self.refine_lr) and self.refine_lr > 0):
            fail(f"refine_lr must be positive, got {self.refine_lr}")
        if not (0.0 < self.min_depth < self.max_depth < math.inf):
            fail(f"need 0 < min_depth < max_depth < inf, got min_depth={self.min_depth}, max_depth={self.max_depth}")
        if int(self.min_pixels) < 1:
            fail(f"min_pixels must be at least 1, got {self.min_pixels}")
        if int(self.max_batch_pixels) < 1:
            fail(f"max_batch_pixels must be positive, got {self.max_batch_pixels}")
        if int(self.sequence_targets) < 1:
            fail(f"sequence_targets must be at least 1, got {self.sequence_targets}")


@dataclass
class CalibrationFrame:
    """One time step: every camera's image and relative depth, and the ego pose.

    Attributes:
        images: camera name -> (H, W, 3) uint8 RGB, the camera's full resolution.
        relative: camera name -> (H, W) relative inverse depth (larger is nearer), same size as the image.
            Only the target frames' maps are read.
        world_from_ego: (4, 4) metric ego pose (ego points -> world).
        valid: camera name -> (H, W) bool, pixels allowed as targets (e.g. not sky, not a dynamic class);
            None or a missing camera: every pixel with a finite relative value.
    """

    images: Mapping[str, np.ndarray]
    relative: Mapping[str, np.ndarray]
    world_from_ego: np.ndarray
    valid: Mapping[str, np.ndarray] | None = None


@dataclass(frozen=True)
class ScaleShift:
    """Calibration of one camera: ``1 / depth = scale * relative + shift``.

    Attributes:
        scale, shift: in the relative map's units (NaN when the camera could not be calibrated).
        loss: final robust photometric loss (trimmed mean of per-pixel errors, intensities in [0, 1]).
        pixels: number of pixels that the trimmed mean averaged (0: not calibrated).
    """

    scale: float
    shift: float
    loss: float
    pixels: int

    @property
    def ok(self) -> bool:
        """Whether the camera was calibrated (finite scale > 0)."""
        return self.pixels > 0 and math.isfinite(self.scale) and math.isfinite(self.shift) and self.scale > 0

    def apply(self, relative: np.ndarray, valid: np.ndarray | None = None, max_depth: float = math.inf) -> np.ndarray:
        """(H, W) float32 metric depth from an (H, W) relative map, as :meth:`DepthMap.to_metric`.

        0 where ``valid`` is False, the relative value is not finite, ``scale * r + shift <= 0`` or the
        depth exceeds ``max_depth``; all 0 when the camera was not calibrated.
        """
        rel = np.asarray(relative, dtype=np.float32)
        mask = np.ones(rel.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        if not self.ok:
            return np.zeros(rel.shape, dtype=np.float32)
        return DepthMap(rel, "relative", mask).to_metric(self.scale, self.shift, max_depth)


# ---------------------------------------------------------------------------------------- fitting
def working_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """(w, h) of an image ``width`` x ``height`` shrunk to at most ``max_width`` wide (aspect kept)."""
    if width <= max_width:
        return width, height
    return max_width, max(1, round(height * max_width / width))


def _pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-average (..., C, H, W) to (..., C, h, w) (size = (h, w)); unchanged when already that size."""
    if tuple(x.shape[-2:]) == size:
        return x
    lead = x.shape[:-3]
    out = F.adaptive_avg_pool2d(x.reshape(-1, *x.shape[-3:]), size)
    return out.reshape(*lead, *out.shape[-3:])


@dataclass
class _Level:
    """One resolution of one camera group: C cameras, T targets, S source slots per target.

    tgt (C, T, ch, h, w) and src (C, T, S, ch, h, w) intensities in [0, 1] (ch = 3 RGB or 1 luminance);
    a (C, T, S, 3, h, w) and b (C, T, S, 3) the warp coefficients (rows 0 and 1 in grid_sample's normalised
    units, see ``_sample_grid``); slot (C, T, S) bool, a source exists;
    valid (C, T, h, w) bool target pixels; rn (C, T, h, w) normalised relative map; identity (C, T, h, w)
    the auto-mask error; tgt_mu, tgt_var (C, T, ch, h, w) the target's 3x3 SSIM mean and variance; tgt_pad
    (C, T, ch, h + 2, w + 2) the target reflection-padded by one pixel (SSIM's windows).
    """

    tgt: torch.Tensor
    src: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    slot: torch.Tensor
    valid: torch.Tensor
    rn: torch.Tensor
    identity: torch.Tensor
    tgt_mu: torch.Tensor
    tgt_var: torch.Tensor
    tgt_pad: torch.Tensor

    @property
    def size(self) -> tuple[int, int]:
        return int(self.tgt.shape[-2]), int(self.tgt.shape[-1])


def _check_frames(
    frames: Sequence[CalibrationFrame], targets: Sequence[int], rig: CameraRig, need_relative: bool = True
) -> None:
    for i, frame in enumerate(frames):
        pose = np.asarray(frame.world_from_ego)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise ValueError(f"frame {i}: world_from_ego must be a finite 4x4 matrix, got shape {pose.shape}")
        for cam in rig:
            if cam.name not in frame.images:
                raise ValueError(f"frame {i}: no image for camera {cam.name!r}")
            shape = np.shape(frame.images[cam.name])
            if shape != (cam.height, cam.width, 3):
                raise ValueError(
                    f"frame {i} camera {cam.name!r}: image shape {shape}, expected {(cam.height, cam.width, 3)}"
                )
    for t in targets:
        for cam in rig:
            if need_relative and cam.name not in frames[t].relative:
                raise ValueError(f"target frame {t}: no relative depth for camera {cam.name!r}")
            for what, maps in (("relative", frames[t].relative), ("valid", frames[t].valid or {})):
                if cam.name in maps and np.shape(maps[cam.name]) != (cam.height, cam.width):
                    raise ValueError(
                        f"target frame {t} camera {cam.name!r}: {what} shape {np.shape(maps[cam.name])}, "
                        f"expected {(cam.height, cam.width)}"
                    )


def _overlaps(tgt: Camera, src: Camera, depth: float = 10.0, stride: int = 8, min_fraction: float = 0.05) -> bool:
    """Whether at least ``min_fraction`` of the target's pixel rays, at ``depth`` m, land in the source image."""
    dirs, z = tgt.pixel_rays(stride)
    pts_cam = (dirs * (depth / z)[..., None]).reshape(-1, 3)
    pts_ego = pts_cam @ tgt.ego_from_cam[:3, :3].T + tgt.ego_from_cam[:3, 3]
    uv, d = src.project(pts_ego)
    return bool(np.mean((d > 0.1) & src.in_image(uv)) >= min_fraction)


def _slots(
    frames: Sequence[CalibrationFrame], targets: Sequence[int], cams: Sequence[Camera], config: CalibrationConfig
) -> list[list[list[tuple[int, int, bool]]]]:
    """Per camera, per target: (source frame, source camera index in ``cams``, counts for identity) slots."""
    out = []
    for ci, cam in enumerate(cams):
        per_target = []
        others = [cj for cj, other in enumerate(cams) if cj != ci and _overlaps(cam, other)]
        for t in targets:
            sources = [t + o for o in config.neighbours if 0 <= t + o < len(frames)]
            slots = [(s, ci, True) for s in sources]
            if config.cross_camera:
                slots += [(s, cj, False) for s in [t, *sources] for cj in others]
            per_target.append(slots)
        out.append(per_target)
    return out


def _image(
    frames: Sequence[CalibrationFrame], index: int, name: str, size: tuple[int, int], gray: bool, cache: dict
) -> torch.Tensor:
    """(3, h, w) RGB or (1, h, w) luminance in [0, 1] of one camera's image, area-averaged to ``size`` (cached)."""
    key = (index, name, size, gray)
    if key not in cache:
        img = torch.from_numpy(np.ascontiguousarray(frames[index].images[name])).permute(2, 0, 1).float() / 255.0
        if gray:
            img = (LUMA[:, None, None] * img).sum(dim=0, keepdim=True)
        cache[key] = _pool(img, size)
    return cache[key]


def _build_level(
    frames: Sequence[CalibrationFrame],
    targets: Sequence[int],
    cams: Sequence[Camera],
    slots: list[list[list[tuple[int, int, bool]]]],
    rel: torch.Tensor,
    valid: torch.Tensor,
    size: tuple[int, int],
    config: CalibrationConfig,
    cache: dict,
    generator: torch.Generator,
) -> _Level:
    """Tensors of one resolution; ``rel`` (C, T, H, W) already normalised, ``valid`` (C, T, H, W) float in [0, 1]."""
    h, w = size
    n_cams, n_targets = len(cams), len(targets)
    n_slots = max(len(s) for per_cam in slots for s in per_cam)
    small = [cam.resized(w, h) for cam in cams]
    poses = [np.asarray(f.world_from_ego, dtype=np.float64) for f in frames]
    tgt = torch.stack(
        [torch.stack([_image(frames, t, cam.name, size, config.grayscale, cache) for t in targets]) for cam in cams]
    )
    src = torch.zeros(n_cams, n_targets, n_slots, tgt.shape[2], h, w)
    transforms = np.tile(np.eye(4), (n_cams, n_targets, n_slots, 1, 1))
    k_src = np.tile(np.eye(3), (n_cams, n_targets, n_slots, 1, 1))
    slot = torch.zeros(n_cams, n_targets, n_slots, dtype=torch.bool)
    use_identity = torch.zeros(n_cams, n_targets, n_slots, dtype=torch.bool)
    for ci, cam in enumerate(small):
        for ti, t in enumerate(targets):
            for si, (s, cj, identity) in enumerate(slots[ci][ti]):
                other = small[cj]
                src[ci, ti, si] = _image(frames, s, other.name, size, config.grayscale, cache)
                transforms[ci, ti, si] = other.cam_from_ego @ invert_transform(poses[s]) @ poses[t] @ cam.ego_from_cam
                k_src[ci, ti, si] = other.K
                slot[ci, ti, si] = True
                use_identity[ci, ti, si] = identity
    k_tgt = torch.from_numpy(np.stack([c.K for c in small]))[:, None, None].expand(n_cams, n_targets, n_slots, 3, 3)
    a, b = warp_coefficients(k_tgt, torch.from_numpy(k_src), torch.from_numpy(transforms), h, w)
    # grid_sample's units folded into the warp: rows 0 / 1 become (2 u / (w - 1) - 1) z and (2 v / (h - 1) - 1) z
    norm = torch.tensor([[2.0 / max(w - 1, 1), 0.0, -1.0], [0.0, 2.0 / max(h - 1, 1), -1.0], [0.0, 0.0, 1.0]])
    a = torch.einsum("ij,...jhw->...ihw", norm.to(a.dtype), a)
    b = torch.einsum("ij,...j->...i", norm.to(b.dtype), b)
    ident = photometric_error(
        src.flatten(0, 2), tgt[:, :, None].expand_as(src).flatten(0, 2), config.ssim_weight
    ).reshape(n_cams, n_targets, n_slots, h, w)
    # monodepth2 breaks ties between identity and reprojection with a little noise (seeded here)
    ident = ident + 1e-5 * torch.randn(ident.shape, generator=generator)
    ident = torch.where(use_identity[..., None, None], ident, torch.full_like(ident, math.inf)).amin(dim=2)
    rn = _pool(rel, size)
    ok = _pool(valid, size) > 1 - 1e-4
    flat = tgt.flatten(0, 1)
    moments = box3(F.pad(torch.cat([flat, flat * flat], dim=1), (1, 1, 1, 1), mode="reflect"))
    mu, sq = moments.view(n_cams, n_targets, 2 * tgt.shape[2], h, w).split(tgt.shape[2], dim=2)
    pad = F.pad(flat, (1, 1, 1, 1), mode="reflect").view(n_cams, n_targets, tgt.shape[2], h + 2, w + 2)
    return _Level(tgt, src, a.float(), b.float(), slot, ok, rn, ident, mu, sq - mu * mu, pad)


def _pixel_loss(level: _Level, inv_depth: torch.Tensor, config: CalibrationConfig, stride: int = 1) -> torch.Tensor:
    """(N, C, T, h, w) candidate inverse depths -> (N, C, T, h', w') per-pixel loss (min over sources, auto-mask).

    Only every ``stride``-th pixel (rows and columns) is scored (h' = ceil(h / stride)): the same numbers as
    ``_pixel_loss(...)[..., ::stride, ::stride]``, the sources still warped at every pixel (SSIM's windows).
    """
    n = inv_depth.shape[0]
    k = int(stride)
    n_cams, n_targets, n_slots = level.slot.shape
    channels = level.tgt.shape[2]
    h, w = level.size
    inv = inv_depth.clamp(1.0 / config.max_depth, 1.0 / config.min_depth)
    grid, inside = _sample_grid(level, inv, k)
    inside = inside & level.slot[None, ..., None, None]
    src = level.src[None].expand(n, -1, -1, -1, -1, -1, -1).reshape(-1, channels, h, w)
    warped = F.grid_sample(src, grid.reshape(-1, h, w, 2), mode="bilinear", padding_mode="border", align_corners=True)
    err = _warped_error(warped.view(n, n_cams, n_targets, n_slots, channels, h, w), level, config.ssim_weight, k)
    reproj = torch.where(inside, err, torch.full_like(err, math.inf)).amin(dim=3)
    identity = level.identity[None, ..., ::k, ::k]
    if config.automask:
        return torch.minimum(reproj, identity)
    return torch.where(torch.isfinite(reproj), reproj, identity.expand_as(reproj))


def _sample_grid(level: _Level, inv: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``grid_sample`` grid of every source slot at (N, C, T, h, w) inverse depths (no gradient).

    The level's coefficients are already in ``grid_sample``'s normalised units, so each grid coordinate is one
    multiply-add and one division in place (the same grid as ``grid_from_homogeneous`` up to float rounding, at a
    third of its passes over memory), laid out (..., 2, h, w) and returned as a permuted view.
    Returns grid (N, C, T, S, h, w, 2) clamped to [-2, 2] and (N, C, T, S, h', w') bool ``inside`` at every
    ``stride``-th pixel: in front of the source camera and within its pixel centres.
    """
    k = int(stride)
    inv = inv[:, :, :, None]  # (N, C, T, 1, h, w)
    z = torch.addcmul(level.a[None, :, :, :, 2], inv, level.b[None, :, :, :, 2, None, None])
    front = z > 1e-6
    z.masked_fill_(~front, 1.0)
    # (N, C, T, S, 2, h, w), contiguous for the arithmetic; grid_sample reads it through a permuted view
    uv = torch.addcmul(level.a[None, :, :, :, :2], inv[:, :, :, :, None], level.b[None, :, :, :, :2, None, None])
    uv.div_(z[:, :, :, :, None])
    inside = front[..., ::k, ::k] & (uv[..., ::k, ::k].abs() <= 1.0).all(dim=4)
    grid = uv.clamp_(-2.0, 2.0).permute(0, 1, 2, 3, 5, 6, 4)
    return grid, inside


def _warped_error(warped: torch.Tensor, level: _Level, ssim_weight: float, stride: int = 1) -> torch.Tensor:
    """:func:`photometric_error` of (N, C, T, S, ch, h, w) warped sources against the level's targets.

    The same numbers as ``photometric_error(warped, target)``, with the target's SSIM moments computed once
    (``level.tgt_mu`` / ``tgt_var``) and broadcast instead of being pooled again for every warp.
    Returns (N, C, T, S, h', w'): every ``stride``-th pixel (rows and columns) only.
    """
    k = int(stride)
    x = warped
    y = level.tgt[None, :, :, None]
    l1 = (x[..., ::k, ::k] - y[..., ::k, ::k]).abs().mean(dim=4)
    if ssim_weight == 0:
        return l1
    shape = x.shape
    # pad(x * y) == pad(x) * pad(y) for a reflection pad: pad the warp once, the target is padded in the level
    xp = F.pad(x.flatten(0, 3), (1, 1, 1, 1), mode="reflect").view(*shape[:5], shape[5] + 2, shape[6] + 2)
    mx, xx, xy = box3(xp, k), box3(xp * xp, k), box3(xp * level.tgt_pad[None, :, :, None], k)
    my, vy = level.tgt_mu[None, :, :, None, ..., ::k, ::k], level.tgt_var[None, :, :, None, ..., ::k, ::k]
    num = (2 * mx * my + SSIM_C1) * (2 * (xy - mx * my) + SSIM_C2)
    den = (mx * mx + my * my + SSIM_C1) * (xx - mx * mx + vy + SSIM_C2)
    dssim = ((1 - num / den) / 2).clamp(0, 1).mean(dim=4)
    return ssim_weight * dssim + (1 - ssim_weight) * l1


def _trimmed_mean(loss: torch.Tensor, valid: torch.Tensor, quantile: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the lowest ``quantile`` of each camera's valid pixel losses (differentiable).

    Args:
        loss: (N, C, P) per-pixel losses; valid: (C, P) bool.
    Returns:
        (N, C) trimmed means and (C,) the number of pixels averaged.
    """
    count = valid.sum(dim=-1)
    k = torch.clamp(torch.floor(quantile * count.double()).long(), min=1)
    masked = torch.where(valid[None], loss, torch.full_like(loss, math.inf))
    # One kthvalue for every camera: camera c's row gets (k_max - k_c) extra -inf values (and +inf to fill the
    # rest), so that its k_max-th smallest is its k_c-th smallest loss.
    k_max, spare = int(k.max()), int(k.max() - k.min())
    thr_input = masked
    if spare:
        lead = torch.arange(spare)[None, :] < (k_max - k)[:, None]  # (C, spare)
        fill = torch.where(lead, -math.inf, math.inf).to(loss.dtype).expand(loss.shape[0], -1, -1)
        thr_input = torch.cat([masked, fill], dim=-1)
    thr = thr_input.kthvalue(k_max, dim=-1).values  # (N, C)
    below = masked < thr[..., None]
    total = torch.where(below, masked, torch.zeros_like(masked)).sum(dim=-1) + (k - below.sum(dim=-1)) * thr
    return total / k, k


def _level_loss(level: _Level, inv_depth: torch.Tensor, config: CalibrationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, T, h, w) inverse depths -> (N, C) exact robust loss per camera, (C,) pixels averaged."""
    loss = _pixel_loss(level, inv_depth, config)
    n, n_cams = loss.shape[:2]
    return _trimmed_mean(loss.reshape(n, n_cams, -1), level.valid.reshape(n_cams, -1), config.trim_quantile)


def _sweep(level: _Level, planes: torch.Tensor, config: CalibrationConfig, stride: int = 1) -> torch.Tensor:
    """Cost volume: (D, C, T, h, w) inverse-depth planes -> (D, C, T, h', w') per-pixel loss (no gradient).

    Only every ``stride``-th pixel (rows and columns) of the loss is kept (h' = ceil(h / stride)).
    """
    n_cams, n_targets, n_slots = level.slot.shape
    h, w = level.size
    chunk = max(1, int(config.max_batch_pixels) // (n_cams * n_targets * n_slots * h * w))
    with torch.no_grad():
        return torch.cat(
            [_pixel_loss(level, planes[i : i + chunk], config, stride) for i in range(0, len(planes), chunk)]
        )


def _interpolate(cost: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of a (D, C, T, h, w) cost volume at (N, C, T, h, w) plane coordinates (clamped)."""
    depth = cost.shape[0]
    pos = pos.clamp(0, depth - 1)
    i0 = pos.detach().floor().long().clamp(max=depth - 2)
    frac = pos - i0
    c0 = torch.gather(cost, 0, i0)
    c1 = torch.gather(cost, 0, i0 + 1)
    return c0 + frac * (c1 - c0)


def _grid_candidates(config: CalibrationConfig) -> torch.Tensor:
    """(N, 2) normalised (s, t): near/far anchor depths on a log grid in [min_depth, max_depth], far > near."""
    depths = np.geomspace(config.min_depth, config.max_depth, int(config.search_steps))
    pairs = [(1 / near - 1 / far, 1 / far) for i, near in enumerate(depths) for far in depths[i + 1 :]]
    return torch.tensor(pairs, dtype=torch.float32)


def _inverse(st: torch.Tensor, rn: torch.Tensor) -> torch.Tensor:
    """(N, 2) normalised (s, t) and (C, T, h, w) normalised relative maps -> (N, C, T, h, w) inverse depth.

    ``st`` may also be (N, C, 2): one pair per camera.
    """
    if st.dim() == 2:
        st = st[:, None, :].expand(-1, rn.shape[0], -1)
    return st[..., 0, None, None, None] * rn[None] + st[..., 1, None, None, None]


def _search(level: _Level, config: CalibrationConfig) -> torch.Tensor:
    """Coarse grid search over (s, t) on a plane-sweep cost volume: (C, 2) best normalised (s, t) per camera."""
    n_cams, n_targets = level.slot.shape[:2]
    h, w = level.size
    lo, hi = math.log(1.0 / config.max_depth), math.log(1.0 / config.min_depth)
    n_planes = int(config.search_planes)
    planes = torch.exp(torch.linspace(lo, hi, n_planes))
    # candidates are scored on every search_stride-th pixel of the volume (a sample of the same loss)
    k = int(config.search_stride)
    cost = _sweep(level, planes[:, None, None, None, None].expand(-1, n_cams, n_targets, h, w), config, k)
    rn, valid = level.rn[..., ::k, ::k], level.valid[..., ::k, ::k].reshape(n_cams, -1)
    step = (hi - lo) / (n_planes - 1)
    cands = _grid_candidates(config)
    chunk = max(1, int(config.max_batch_pixels) // (n_cams * n_targets * h * w))
    losses = []
    with torch.no_grad():
        for start in range(0, len(cands), chunk):
            inv = _inverse(cands[start : start + chunk], rn).clamp(math.exp(lo), math.exp(hi))
            pixel = _interpolate(cost, (torch.log(inv) - lo) / step)
            losses.append(_trimmed_mean(pixel.flatten(2), valid, config.trim_quantile)[0])
    return cands[torch.cat(losses).argmin(dim=0)]


def _refine(level: _Level, init: torch.Tensor, config: CalibrationConfig) -> torch.Tensor:
    """Adam on log(s) and t around ``init`` (C, 2) normalised (s, t), on local cost volumes; returns (C, 2).

    Each round sweeps ``refine_planes`` depth ratios ``exp(linspace(-radius, radius))`` around the current
    depth map (exact for a pure change of scale) and runs Adam on the interpolated trimmed loss, keeping
    each camera's best iterate; the next round re-centres with a third of the radius. The volumes and the loss
    use every ``refine_stride``-th pixel.
    """
    n_cams = init.shape[0]
    k = int(config.refine_stride)
    rn = level.rn[..., ::k, ::k]
    valid = level.valid[..., ::k, ::k].reshape(n_cams, -1)
    lo, hi = 1.0 / config.max_depth, 1.0 / config.min_depth
    best = init.clone()
    n_planes = int(config.refine_planes)
    for round_index in range(int(config.refine_rounds)):
        radius = float(config.refine_radius) / 3**round_index
        inv0 = _inverse(best[None], level.rn)[0].clamp(lo, hi)  # (C, T, h, w)
        ratios = torch.exp(torch.linspace(-radius, radius, n_planes))
        cost = _sweep(level, inv0[None] * ratios[:, None, None, None, None], config, k)
        inv0 = inv0[..., ::k, ::k]
        step = 2 * radius / (n_planes - 1)
        s0, t0 = best[:, 0].clone(), best[:, 1].clone()

        def loss_of(
            st: torch.Tensor,
            inv0: torch.Tensor = inv0,
            cost: torch.Tensor = cost,
            step: float = step,
            radius: float = radius,
        ) -> torch.Tensor:
            inv = _inverse(st[None], rn)[0].clamp(lo, hi)
            pixel = _interpolate(cost, ((torch.log(inv / inv0) + radius) / step)[None])
            return _trimmed_mean(pixel.flatten(2), valid, config.trim_quantile)[0][0]

        with torch.no_grad():
            best_loss = loss_of(best)
        log_s = torch.log(s0).requires_grad_(True)
        dt = torch.zeros(n_cams, requires_grad=True)  # shift change, in units of s0
        iters = int(config.refine_iters)
        moments = [(torch.zeros(n_cams), torch.zeros(n_cams)) for _ in range(2)]
        for it in range(iters):
            st = torch.stack([torch.exp(log_s), t0 + dt * s0], dim=1)
            loss = loss_of(st)
            with torch.no_grad():
                better = loss < best_loss
                best = torch.where(better[:, None], st.detach(), best)
                best_loss = torch.where(better, loss.detach(), best_loss)
            grads = torch.autograd.grad(loss.sum(), [log_s, dt])
            # Adam (Kingma & Ba 2015; betas 0.9, 0.999) with a cosine-decayed rate, written out: two
            # parameters per camera do not need torch.optim (whose import alone costs a second)
            lr = config.refine_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * it / iters)))
            with torch.no_grad():
                for param, grad, (m, v) in zip((log_s, dt), grads, moments, strict=True):
                    m.mul_(0.9).add_(0.1 * grad)
                    v.mul_(0.999).add_(0.001 * grad * grad)
                    m_hat = m / (1 - 0.9 ** (it + 1))
                    v_hat = v / (1 - 0.999 ** (it + 1))
                    param -= lr * m_hat / (v_hat.sqrt() + 1e-8)
    return best


def _validate_call(
    frames: Sequence[CalibrationFrame],
    targets: Sequence[int],
    rig: CameraRig,
    config: CalibrationConfig,
    need_relative: bool = True,
) -> list[int]:
    targets = [int(t) for t in targets]
    if not targets:
        raise ValueError("calibration needs at least one target frame")
    if len(set(targets)) != len(targets):
        raise ValueError(f"target frames must be distinct, got {targets}")
    for t in targets:
        if not 0 <= t < len(frames):
            raise ValueError(f"target frame {t} is outside the {len(frames)} frames given")
        if not any(0 <= t + o < len(frames) for o in config.neighbours):
            raise ValueError(
                f"target frame {t} has no neighbour frame (offsets {config.neighbours}) among the {len(frames)} given"
            )
    sizes = {(cam.width, cam.height) for cam in rig}
    if config.cross_camera and len(sizes) > 1:
        raise ValueError(f"cross_camera needs cameras of one image size, the rig has {sorted(sizes)}")
    _check_frames(frames, targets, rig, need_relative)
    return targets


def _target_valid(
    frames: Sequence[CalibrationFrame], targets: Sequence[int], name: str, values: np.ndarray
) -> np.ndarray:
    """(T, H, W) bool: finite ``values`` (T, H, W) inside each target frame's ``valid`` mask for camera ``name``."""
    mask = np.isfinite(values)
    for ti, t in enumerate(targets):
        valid = frames[t].valid
        if valid is not None and name in valid:
            mask[ti] &= np.asarray(valid[name], dtype=bool)
    return mask


def _groups(rig: CameraRig) -> list[list[Camera]]:
    """Cameras grouped by image size (each group is batched)."""
    sizes = sorted({(cam.width, cam.height) for cam in rig})
    return [[cam for cam in rig if (cam.width, cam.height) == size] for size in sizes]


def calibration_loss(
    frames: Sequence[CalibrationFrame],
    targets: Sequence[int],
    rig: CameraRig,
    depth: Sequence[Mapping[str, np.ndarray]],
    config: CalibrationConfig | None = None,
) -> dict[str, tuple[float, int]]:
    """The robust photometric loss that :func:`fit_scale_shift` minimises, for given metric depth maps.

    Args:
        frames, targets, rig, config: as for :func:`fit_scale_shift` (relative maps are not read).
        depth: per target, camera name -> (H, W) metric depth along the optical axis (<= 0: unknown, not scored).
    Returns:
        camera name -> (trimmed-mean loss over the scored pixels at the working resolution, pixels averaged);
        (NaN, 0) for a camera without a scored pixel.
    """
    config = config or CalibrationConfig()
    targets = _validate_call(frames, targets, rig, config, need_relative=False)
    if len(depth) != len(targets):
        raise ValueError(f"need one depth dict per target frame, got {len(depth)} for {len(targets)} targets")
    generator = torch.Generator().manual_seed(int(config.seed))
    out: dict[str, tuple[float, int]] = {}
    for group in _groups(rig):
        invs, valids = [], []
        for cam in group:
            d = np.stack([np.asarray(dm[cam.name], dtype=np.float32) for dm in depth])
            if d.shape[1:] != (cam.height, cam.width):
                raise ValueError(f"camera {cam.name!r}: depth shape {d.shape[1:]}, expected {(cam.height, cam.width)}")
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = np.where(d > 0, 1.0 / d, np.nan)
            mask = _target_valid(frames, targets, cam.name, inv)
            invs.append(np.where(mask, inv, 0.0))
            valids.append(mask)
        work = working_size(group[0].width, group[0].height, int(config.max_width))
        level = _build_level(
            frames,
            targets,
            group,
            _slots(frames, targets, group, config),
            torch.from_numpy(np.stack(invs).astype(np.float32)),
            torch.from_numpy(np.stack(valids).astype(np.float32)),
            (work[1], work[0]),
            config,
            {},
            generator,
        )
        with torch.no_grad():
            loss, pixels = _level_loss(level, level.rn[None], config)
        for ci, cam in enumerate(group):
            scored = int(level.valid[ci].sum())
            out[cam.name] = (float(loss[0, ci]), int(pixels[ci])) if scored else (math.nan, 0)
    return {cam.name: out[cam.name] for cam in rig}


def fit_scale_shift(
    frames: Sequence[CalibrationFrame],
    targets: Sequence[int],
    rig: CameraRig,
    config: CalibrationConfig | None = None,
) -> dict[str, ScaleShift]:
    """One ``(scale, shift)`` per camera, shared by every target frame.

    Each target frame is warped from its neighbours ``target + offset`` (``config.neighbours``) that exist
    in ``frames``; per-frame calibration is ``targets=[i]``, sequence calibration ``targets=range(len(frames))``.

    Args:
        frames: the sequence (or a window of it); every frame needs every camera's image, the targets
            also their relative maps.
        targets: indices into ``frames`` of the frames whose relative maps are calibrated.
        rig: the cameras, at the images' resolution.
        config: settings (default :class:`CalibrationConfig`).
    Returns:
        camera name -> :class:`ScaleShift` (NaN with ``pixels = 0`` for a camera with fewer than
        ``config.min_pixels`` valid target pixels).
    Raises:
        ValueError: no target, a target out of range or without any neighbour, missing or mis-sized inputs,
            or ``cross_camera`` with cameras of different sizes.
    """
    config = config or CalibrationConfig()
    targets = _validate_call(frames, targets, rig, config)
    generator = torch.Generator().manual_seed(int(config.seed))
    lo_pct, hi_pct = config.anchor_percentiles
    result: dict[str, ScaleShift] = {}
    for group in _groups(rig):
        rels, valids, anchors = [], [], []
        for cam in group:
            rel = np.stack([np.asarray(frames[t].relative[cam.name], dtype=np.float32) for t in targets])
            mask = _target_valid(frames, targets, cam.name, rel)
            values = rel[mask]
            lo, hi = np.percentile(values, [lo_pct, hi_pct]) if values.size else (0.0, 1.0)
            if not hi > lo:
                hi = lo + 1.0  # a constant map has no depth structure: any span normalises it
            rels.append(np.where(mask, (rel - lo) / (hi - lo), 0.0))
            valids.append(mask)
            anchors.append((float(lo), float(hi)))
        width, height = group[0].width, group[0].height
        work = working_size(width, height, int(config.max_width))
        search = working_size(width, height, min(int(config.search_width), work[0]))
        rel_t = torch.from_numpy(np.stack(rels).astype(np.float32))
        valid_t = torch.from_numpy(np.stack(valids).astype(np.float32))
        cache: dict = {}
        slots = _slots(frames, targets, group, config)
        fine = _build_level(frames, targets, group, slots, rel_t, valid_t, (work[1], work[0]), config, cache, generator)
        keep = [ci for ci in range(len(group)) if int(fine.valid[ci].sum()) >= int(config.min_pixels)]
        for ci, cam in enumerate(group):
            if ci not in keep:
                result[cam.name] = ScaleShift(math.nan, math.nan, math.nan, 0)
        if not keep:
            continue
        fine = _subset(fine, keep)
        if search == work:
            coarse = fine
        else:
            coarse = _subset(
                _build_level(
                    frames, targets, group, slots, rel_t, valid_t, (search[1], search[0]), config, cache, generator
                ),
                keep,
            )
        init = _search(coarse, config)
        best = _refine(fine, init, config)
        with torch.no_grad():
            loss, pixels = _level_loss(fine, _inverse(best[None], fine.rn), config)
        for row, ci in enumerate(keep):
            lo, hi = anchors[ci]
            s, t = float(best[row, 0]), float(best[row, 1])
            scale = s / (hi - lo)
            result[group[ci].name] = ScaleShift(scale, t - scale * lo, float(loss[0, row]), int(pixels[row]))
    return {cam.name: result[cam.name] for cam in rig}


def _subset(level: _Level, keep: list[int]) -> _Level:
    """The level restricted to cameras ``keep`` (indices into its C)."""
    idx = torch.tensor(keep, dtype=torch.long)
    return _Level(*(getattr(level, f).index_select(0, idx) for f in _Level.__dataclass_fields__))


def sequence_targets(length: int, most: int) -> list[int]:
    """At most ``most`` evenly spaced frame positions of a ``length``-frame scene (first and last included)."""
    if length <= most:
        return list(range(length))
    return sorted({int(round(x)) for x in np.linspace(0, length - 1, most)})


def calibrate_sequence(
    frames: Sequence[CalibrationFrame],
    rig: CameraRig,
    config: CalibrationConfig | None = None,
    progress: bool = False,
) -> list[dict[str, ScaleShift]]:
    """Calibrate every frame of a sequence.

    ``mode="frame"``: :func:`fit_scale_shift` with ``targets=[i]`` for each frame; ``mode="sequence"``: one
    call with up to ``config.sequence_targets`` evenly spaced frames as targets, and every entry of the list
    is that same dict.

    Args:
        progress: show a tqdm progress bar (frame mode).
    Returns:
        per frame, camera name -> :class:`ScaleShift`.
    """
    config = config or CalibrationConfig()
    if len(frames) < 2:
        raise ValueError(f"calibration needs at least two frames (the ego must move between them), got {len(frames)}")
    if config.mode == "sequence":
        shared = fit_scale_shift(frames, sequence_targets(len(frames), config.sequence_targets), rig, config)
        return [shared for _ in frames]
    from tqdm import tqdm

    return [
        fit_scale_shift(frames, [i], rig, config)
        for i in tqdm(range(len(frames)), desc="calibrate depth", unit="frame", disable=not progress)
    ]


# ---------------------------------------------------------------------------------------- measurement
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m occ_training.labels.depth_calibration``: the accuracy measurement of docs/pseudo_labels.md.

    Renders a synthetic sequence (demo preset), simulates a relative depth model from the ground truth as
    ``r = a / d + b`` (sky: ``r = b``) times ``1 + noise * N(0, 1)`` per pixel, calibrates it in frame and
    sequence mode with valid = not sky (optionally also not a dynamic class), and prints AbsRel / delta<1.25
    against the ground truth (0.5-80 m) for the naive mapping ``depth = 1 / r`` and after calibration.
    """
    import argparse
    import tempfile
    import time
    from pathlib import Path

    from occ_ros.core.vocabulary import OCC3D
    from occ_ros.datasets.synth import SynthReader
    from occ_ros.eval.depth import DepthMetric
    from occ_training.synth.sequence import generate

    parser = argparse.ArgumentParser(prog="python -m occ_training.labels.depth_calibration", description=main.__doc__)
    parser.add_argument("--seed", type=int, default=2, help="synthetic world seed")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--mode", choices=(*CALIBRATION_MODES, "both"), default="both")
    parser.add_argument("--a", type=float, default=3.7, help="simulated relative map: r = a / d + b")
    parser.add_argument("--b", type=float, default=0.2)
    parser.add_argument("--noise", type=float, default=0.03, help="multiplicative per-pixel noise (std)")
    parser.add_argument("--exclude-dynamic", action="store_true", help="valid also excludes dynamic classes")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--config",
        type=Path,
        help="label settings YAML whose calibrator section is used (e.g. config/labels/default.yaml, the preset of "
        "occ labels); default: this module's defaults",
    )
    args = parser.parse_args(argv)
    base = CalibrationConfig()
    if args.config is not None:
        from .pipeline import load_label_settings  # the pipeline imports this module

        base = load_label_settings(args.config)[0].calibrator
    torch.set_num_threads(args.threads)
    dynamic = np.nonzero(OCC3D.dynamic_mask())[0]
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        reader = SynthReader(generate(Path(tmp) / "seq", frames=args.frames, seed=args.seed, progress=False))
        frames, gts = [], []
        for i in range(len(reader)):
            sample, depth, sem = reader.load(i), reader.depth(i), reader.semantics_2d(i)
            rel, valid = {}, {}
            for name, d in depth.items():
                inv = np.where(d > 0, 1.0 / np.maximum(d, 1e-6), 0.0)
                noise = 1 + args.noise * rng.standard_normal(d.shape)
                rel[name] = ((args.a * inv + args.b) * noise).astype(np.float32)
                valid[name] = (sem[name] != 255) & ~(np.isin(sem[name], dynamic) & args.exclude_dynamic)
            frames.append(CalibrationFrame(sample.images, rel, sample.world_from_ego, valid))
            gts.append(depth)
        rig = reader.rig
    print(
        f"seed {args.seed}, {len(frames)} frames, r = {args.a} / d + {args.b}, noise {args.noise:.0%}, "
        f"valid = not sky{' and not dynamic' if args.exclude_dynamic else ''}; truth scale {1 / args.a:.4f}, "
        f"shift {-args.b / args.a:.4f}"
    )
    naive = ScaleShift(1.0, 0.0, math.nan, 1)
    modes = CALIBRATION_MODES if args.mode == "both" else (args.mode,)
    for mode in modes:
        start = time.perf_counter()
        result = calibrate_sequence(frames, rig, replace(base, mode=mode))
        seconds = time.perf_counter() - start
        before, after = DepthMetric(0.5, 80.0), DepthMetric(0.5, 80.0)
        for frame, gt, fit in zip(frames, gts, result, strict=True):
            for name in rig.names:
                before.update(naive.apply(frame.relative[name]), gt[name])
                after.update(fit[name].apply(frame.relative[name]), gt[name])
        b, a = before.compute(), after.compute()
        per = seconds / len(frames)
        print(
            f"{mode:8s}: AbsRel {b.abs_rel:.3f} -> {a.abs_rel:.3f}, delta<1.25 {b.delta1:.3f} -> {a.delta1:.3f} "
            f"({a.pixels} px); {seconds:.1f} s ({per:.2f} s per frame, {len(rig)} cameras)"
        )
        for name in rig.names:
            distinct = result if mode == "frame" else result[:1]
            scales = " ".join(f"{fit[name].scale * args.a:.3f}" for fit in distinct)
            print(f"    {name:16s} scale / truth: {scales}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
