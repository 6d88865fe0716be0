"""Camera -> BEV view transform by sampling image features at voxel points (Simple-BEV style).

Every BEV cell ``(i, j)`` of the grid gets ``z_samples`` points stacked over the grid's height range.
Each point is projected into every camera with the camera's ``K`` and ``cam_from_ego`` (forward
*inputs*, so one exported engine serves any calibration with the same image size); the stride-16
feature map is sampled there with bilinear 2D ``grid_sample`` and the samples are averaged over the
cameras that see the point (at most ``views_per_point`` of them, :func:`select_views`; one ``grid_sample`` over a
mosaic of the camera maps, so no cameras x channels x points tensor exists, :class:`VoxelSampler`). The heights
are folded into channels, giving BEV features
``(B, C * z_samples, X, Y)`` for 2D convolutions (FlashOcc's channel-to-height, in reverse).

Pixel and feature coordinates (docs/model.md):

- Image pixels follow OpenCV / ``sensor_msgs/CameraInfo``: ``u`` right, ``v`` down, the centre of the
  top-left pixel at (0, 0); pixel ``u`` spans ``[u - 0.5, u + 0.5)``. A point is inside the image when
  ``-0.5 <= u < W - 0.5`` and ``-0.5 <= v < H - 0.5`` (``Camera.in_image``).
- A feature map of ``w`` columns at stride ``s`` covers the image pixels ``[0, s * w - 1]`` (``s * w >= W``:
  the image may have been padded at the right / bottom up to a multiple of ``s``); feature column ``c``
  stands for the pixels ``[s c, s c + s - 1]``, its centre at ``u = s c + (s - 1) / 2``. So the feature
  column coordinate of pixel ``u`` is ``u_f = (u + 0.5) / s - 0.5``.
- ``grid_sample(align_corners=False)`` puts the normalised coordinate -1 on the left edge of column 0
  and +1 on the right edge of column ``w - 1``: ``x = (2 u_f + 1) / w - 1 = 2 (u + 0.5) / (s w) - 1``;
  likewise ``y = 2 (v + 0.5) / (s h) - 1``.

Depth-aware sampling (optional, FB-BEV's depth-aware backward projection): with a per-cell distribution over
``D`` depth bins predicted by the network, each sampled point also reads that distribution at its pixel and takes
the probability of its *own* depth (:func:`depth_bin_weight`). Plain sampling gives every point along a camera
ray the same feature; the weight, one more channel per height sample, tells the BEV encoder which of those
points the image puts a surface at.

Only 2D ``grid_sample`` (ONNX ``GridSample`` on 4-D tensors, TensorRT ``IGridSampleLayer``), ``TopK`` with a
constant K and ``GatherElements`` are used: no 3D sampling, no scatter, no data-dependent control flow or shapes.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from occ_ros.core.grid import GridSpec

DEFAULT_MIN_DEPTH = 0.1
"""Points closer than this (metres of optical-axis depth) to a camera, or behind it, are not sampled."""

GRID_LIMIT = 2.0
"""Normalised sampling coordinates are clamped to [-2, 2]: points far outside any image (only invalid
ones) stay finite and small, and still sample zeros."""


def resolve_stride(image_size: tuple[int, int], feature_size: tuple[int, int], stride: int | None = None) -> int:
    """The image-to-feature stride, checked against the sizes.

    With ``stride=None`` the image must be an exact multiple of the feature map (same factor on both axes);
    with a given stride the feature map must cover the image with less than one cell of padding:
    ``s * (h - 1) < H <= s * h`` and likewise for the width.
    """
    (height, width), (h, w) = image_size, feature_size
    if min(height, width, h, w) < 1:
        raise ValueError(f"image size {image_size} and feature size {feature_size} must be positive")
    if stride is None:
        if height % h or width % w or height // h != width // w:
            raise ValueError(
                f"image size {image_size} is not one stride times feature size {feature_size}; pass the stride"
            )
        return height // h
    if stride < 1 or not (stride * (h - 1) < height <= stride * h and stride * (w - 1) < width <= stride * w):
        raise ValueError(f"a {feature_size} feature map at stride {stride} does not cover a {image_size} image")
    return int(stride)


def project_voxels(
    points_ego: torch.Tensor,
    K: torch.Tensor,
    cam_from_ego: torch.Tensor,
    image_size: tuple[int, int],
    feature_size: tuple[int, int],
    stride: int | None = None,
    min_depth: float = DEFAULT_MIN_DEPTH,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project ego-frame points into every camera's feature map.

    Args:
        points_ego: (P, 3) points in the ego frame (x forward, y left, z up), metres.
        K: (B, N, 3, 3) intrinsics of the N cameras for the image size ``image_size``.
        cam_from_ego: (B, N, 4, 4) transforms from ego to each optical frame (x right, y down, z forward).
        image_size: (H, W) of the (unpadded) images ``K`` refers to.
        feature_size: (h, w) of the feature map that is sampled.
        stride: image pixels per feature cell; None infers it from exact multiples (see :func:`resolve_stride`).
        min_depth: points with optical-axis depth <= this are invalid.
    Returns:
        grid: (B * N, 1, P, 2) normalised (x, y) coordinates for ``F.grid_sample(features, grid,
            align_corners=False)`` on (B * N, C, h, w) features; clamped to [-2, 2].
        valid: (B, N, P) bool, True where the point is in front of the camera (depth > ``min_depth``) and
            inside the real image (``-0.5 <= u < W - 0.5``, ``-0.5 <= v < H - 0.5``).
        depth: (B, N, P) optical-axis depth of each point in each camera, metres (negative behind it).
    """
    height, width = image_size
    h, w = feature_size
    s = resolve_stride(image_size, feature_size, stride)
    batch, cams = K.shape[0], K.shape[1]
    points = points_ego.to(K.dtype).t()  # (3, P)
    cam = torch.matmul(cam_from_ego[..., :3, :3], points) + cam_from_ego[..., :3, 3:]  # (B, N, 3, P) optical frame
    pix = torch.matmul(K, cam)  # (B, N, 3, P); pix[:, :, 2] == depth for a pinhole K (last row 0 0 1)
    depth = cam[:, :, 2]
    z = depth.clamp(min=min_depth)
    u = pix[:, :, 0] / z
    v = pix[:, :, 1] / z
    valid = (depth > min_depth) & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
    gx = (u + 0.5) * (2.0 / (s * w)) - 1.0
    gy = (v + 0.5) * (2.0 / (s * h)) - 1.0
    grid = torch.stack([gx, gy], dim=-1).clamp(-GRID_LIMIT, GRID_LIMIT)  # (B, N, P, 2)
    return grid.reshape(batch * cams, 1, -1, 2), valid, depth


def depth_bin_weight(probs: torch.Tensor, depth: torch.Tensor, depth_max: float) -> torch.Tensor:
    """Probability of each point's own depth under the depth distribution sampled at its pixel.

    Bin ``k`` of ``D`` covers depths ``[k, k + 1) * depth_max / D``; its centre is ``(k + 0.5) * depth_max / D``.
    The probability is interpolated linearly between the two nearest bin centres (depths beyond the first / last
    centre take that bin's), then divided by the largest bin probability at that pixel, so the weight lies in
    [0, 1]: 1 where the distribution peaks, the same for every depth when it is flat.

    Args:
        probs: (..., D, P) per-point bin probabilities (softmax over D, sampled at each point's pixel).
        depth: (..., P) optical-axis depth of each point, metres.
        depth_max: depth covered by the D bins, metres.
    Returns:
        (..., P) weights in [0, 1].
    """
    bins = probs.shape[-2]
    position = (depth / (depth_max / bins) - 0.5).clamp(0.0, bins - 1.0)  # continuous bin index
    centres = torch.arange(bins, dtype=probs.dtype, device=probs.device).reshape(bins, 1)
    tent = (1.0 - (position.unsqueeze(-2) - centres).abs()).clamp(min=0.0)  # (..., D, P) linear interpolation
    peak = probs.amax(dim=-2).clamp(min=1e-6)
    return (probs * tent).sum(dim=-2) / peak


def pillar_points(grid: GridSpec, z_samples: int) -> np.ndarray:
    """Sampling points of every BEV cell, ordered (z_samples, X, Y).

    x and y are the voxel-centre coordinates of the BEV cells; the heights split the grid's z range
    into ``z_samples`` equal bins and take their centres (for ``z_samples == Z`` these are the voxel centres).

    Returns:
        (z_samples, X, Y, 3) float64 ego-frame points, metres.
    """
    if z_samples < 1:
        raise ValueError(f"z_samples must be >= 1, got {z_samples}")
    nx, ny, _ = grid.shape
    (x0, y0, z0), (_, _, z1), (sx, sy, _) = grid.range_min, grid.range_max, grid.voxel_size
    xs = x0 + (np.arange(nx) + 0.5) * sx
    ys = y0 + (np.arange(ny) + 0.5) * sy
    zs = z0 + (np.arange(z_samples) + 0.5) * (z1 - z0) / z_samples
    zz, xx, yy = np.meshgrid(zs, xs, ys, indexing="ij")
    return np.stack([xx, yy, zz], axis=-1)


def _mosaic(maps: torch.Tensor, cams: int, scales: list[float]) -> torch.Tensor:
    """(B * N, C, h, w) camera maps -> (B, C, len(scales) * N * (h + 1), w): the N maps stacked top to bottom, each
    followed by one row of zeros, repeated once per scale (copy k multiplied by ``scales[k]``)."""
    channels, h, w = maps.shape[1:]
    stacked = F.pad(maps, (0, 0, 0, 1)).reshape(-1, cams, channels, h + 1, w)  # zero row below each map
    mosaic = stacked.transpose(1, 2).reshape(-1, channels, cams * (h + 1), w)
    return torch.cat([mosaic * scale for scale in scales], dim=2) if len(scales) > 1 else mosaic * scales[0]


def select_views(valid: torch.Tensor, views: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (at most ``views``) cameras each point is sampled from: the lowest-indexed cameras that see it.

    Args:
        valid: (B, N, P) bool, which cameras see each point (:func:`project_voxels`).
        views: slots per point, ``1 <= views <= N``.
    Returns:
        index: (B, views, P) int64 camera of each slot (an arbitrary camera where the slot is empty);
        used: (B, views, P) bool, True where the slot holds a camera that sees the point.
    A point seen by more than ``views`` cameras keeps the lowest-indexed ones (a deterministic rule, so ONNX
    Runtime, TensorRT and PyTorch pick the same cameras); a surround rig's views overlap pairwise, so at most two
    cameras see almost every point (docs/model.md, "View transform").
    """
    cams = valid.shape[1]
    rank = torch.arange(cams, 0, -1, dtype=torch.float32, device=valid.device).reshape(1, cams, 1)  # N .. 1
    score, index = torch.topk(valid.to(torch.float32) * rank, views, dim=1)  # distinct scores for seeing cameras
    return index, score > 0


class VoxelSampler(nn.Module):
    """Image features -> BEV features by sampling at voxel-pillar points and averaging over cameras.

    Args:
        grid: the voxel grid (ego frame); its X x Y cells are the BEV cells.
        z_samples: sampling heights per BEV cell (e.g. 4 for the demo grid, 8 for Occ3D).
        image_size: (H, W) of the unpadded images (the size ``K`` refers to).
        feature_size: (h, w) of the sampled feature map.
        stride: image pixels per feature cell (None: exact multiple, see :func:`resolve_stride`).
        min_depth: minimum optical-axis depth of a sampled point, metres.
        views_per_point: cameras a point is sampled from at most (:func:`select_views`); capped at the number
            of cameras, which gives the plain average over every camera that sees the point.

    The points are a non-persistent buffer ``points`` (P, 3), P = z_samples * X * Y, ordered (z, x, y).

    No (cameras x channels x points) tensor is materialised. The N feature maps are stacked into one mosaic
    (B, C, N * (h + 1), w), each camera's map followed by one row of zeros, and each point is sampled in one
    2D ``grid_sample`` per slot (``views_per_point`` of them), each (B, C, P). The zero row between cameras keeps
    bilinear sampling at a map's bottom / top edge reading zeros, exactly as ``padding_mode="zeros"`` on the
    camera's own map would. Empty slots sample far outside the mosaic, i.e. exact zeros. The mosaic is repeated
    ``views`` times, copy k scaled by 1 / (k + 1), and a point seen by c cameras samples copy c - 1: the sum over
    its slots is then the mean, with no division of the sampled tensor. The choice of cameras is
    computed in the graph from ``K`` and ``cam_from_ego`` (a (B, N, P) projection without channels), so it
    follows every calibration change; nothing is precomputed from a rig.
    """

    points: torch.Tensor

    def __init__(
        self,
        grid: GridSpec,
        z_samples: int,
        image_size: tuple[int, int],
        feature_size: tuple[int, int],
        stride: int | None = None,
        min_depth: float = DEFAULT_MIN_DEPTH,
        views_per_point: int = 2,
    ) -> None:
        super().__init__()
        if views_per_point < 1:
            raise ValueError(f"views_per_point must be >= 1, got {views_per_point}")
        self.grid = grid
        self.z_samples = int(z_samples)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.feature_size = (int(feature_size[0]), int(feature_size[1]))
        self.stride = resolve_stride(self.image_size, self.feature_size, stride)
        self.min_depth = float(min_depth)
        self.views_per_point = int(views_per_point)
        self.bev_size = grid.shape[:2]
        points = pillar_points(grid, self.z_samples).reshape(-1, 3)
        self.num_points = int(points.shape[0])
        self.register_buffer("points", torch.tensor(points, dtype=torch.float32), persistent=False)

    def forward(
        self,
        features: torch.Tensor,
        K: torch.Tensor,
        cam_from_ego: torch.Tensor,
        depth_probs: torch.Tensor | None = None,
        depth_max: float = 0.0,
    ) -> torch.Tensor:
        """Sample and average; projection and sampling run in float32 (autocast off), the result has ``features.dtype``.

        Args:
            features: (B * N, C, h, w) image features, camera-major within each batch item (as
                ``images.flatten(0, 1)`` orders them).
            K: (B, N, 3, 3) intrinsics for the unpadded image size.
            cam_from_ego: (B, N, 4, 4) ego -> optical transforms.
            depth_probs: optional (B * N, D, h, w) per-cell depth-bin probabilities on the same map as
                ``features``; enables depth-aware sampling (:func:`depth_bin_weight`).
            depth_max: depth covered by the D bins, metres (with ``depth_probs``).
        Returns:
            (B, C * z_samples, X, Y) BEV features in the ego frame, indexed [x, y]; channel
            ``c * z_samples + k`` is feature channel ``c`` at height sample ``k`` (bottom to top): the mean over
            the (at most ``views_per_point``) cameras that see the point. Points no camera sees get zeros. With
            ``depth_probs`` the result has ``(C + 1) * z_samples`` channels: each point's depth weight is one more
            channel after the features (channel ``C * z_samples + k``), averaged over the cameras like them.
        """
        cams = K.shape[1]
        views = min(self.views_per_point, cams)
        nx, ny = self.bev_size
        # Projection and sampling in float32 even under mixed precision: pixel coordinates of ~1000 have a
        # resolution of 0.5 px in float16.
        device_type = features.device.type
        no_autocast = torch.autocast(device_type, enabled=False) if device_type in ("cpu", "cuda") else nullcontext()
        with no_autocast:
            scales = [1.0 / (k + 1) for k in range(views)]
            maps = _mosaic(features.float(), cams, scales)  # (B, C, V N (h + 1), w)
            probs = None if depth_probs is None else _mosaic(depth_probs.float(), cams, scales)
            points = self.points.reshape(self.z_samples, nx * ny, 3)
            # one height at a time: (B, C, X * Y) tensors, never (B, C, P)
            heights = [self._sample(points[k], maps, probs, K.float(), cam_from_ego.float(), views, depth_max)
                       for k in range(self.z_samples)]  # fmt: skip
            bev = torch.stack(heights, dim=2)  # (B, C', z_samples, X * Y)
        return bev.reshape(-1, bev.shape[1] * self.z_samples, nx, ny).to(features.dtype)

    def _sample(
        self,
        points: torch.Tensor,
        maps: torch.Tensor,
        probs: torch.Tensor | None,
        K: torch.Tensor,
        cam_from_ego: torch.Tensor,
        views: int,
        depth_max: float,
    ) -> torch.Tensor:
        """(Q, 3) ego points -> (B, C, Q) mean features over their (at most ``views``) seeing cameras (C + 1 channels
        with depth probabilities); ``maps`` / ``probs`` are the :func:`_mosaic` of the feature / probability maps."""
        cams = K.shape[1]
        h = self.feature_size[0]
        grid, valid, depth = project_voxels(
            points, K, cam_from_ego, self.image_size, self.feature_size, self.stride, self.min_depth
        )
        index, used = select_views(valid, views)  # (B, V, Q)
        count = used.sum(dim=1, keepdim=True)  # (B, 1, Q): cameras averaged at each point
        grid = grid.reshape(-1, cams, points.shape[0], 2)
        gx = torch.gather(grid[..., 0], 1, index)  # (B, V, Q)
        gy = torch.gather(grid[..., 1], 1, index)
        # The mosaic holds V copies of the N maps, copy k scaled by 1 / (k + 1); a point seen by c cameras reads
        # copy c - 1, so the sum over its slots is the mean and the (B, C, Q) result needs no division. Camera
        # n's row coordinate r in copy k lies at row (k N + n) (h + 1) + r of the V N (h + 1) rows:
        # y_mosaic = (2 ((k N + n) (h + 1) + r) + 1) / (V N (h + 1)) - 1, with 2 r + 1 = (y + 1) h.
        rows = views * cams * (h + 1)
        tile = (count - 1).clamp(min=0) * cams + index  # (B, V, Q)
        gy = (2.0 * (h + 1) * tile.to(gy.dtype) + (gy + 1.0) * h) / rows - 1.0
        gy = torch.where(used, gy, torch.full_like(gy, -GRID_LIMIT))  # empty slot: off the mosaic, reads 0
        slots = torch.stack([gx, gy], dim=-1)  # (B, V, Q, 2)
        total: torch.Tensor | None = None
        weight: torch.Tensor | None = None
        for k in range(views):  # one grid_sample per slot
            slot = slots[:, k : k + 1]  # (B, 1, Q, 2)
            sampled = F.grid_sample(maps, slot, mode="bilinear", padding_mode="zeros", align_corners=False).flatten(2)
            total = sampled if total is None else total + sampled  # (B, C, Q)
            if probs is not None:
                p = F.grid_sample(probs, slot, mode="bilinear", padding_mode="zeros", align_corners=False).flatten(2)
                # (B, Q), 0 in an empty slot; free of the probabilities' scale (the copy's 1 / c cancels)
                w_k = depth_bin_weight(p, torch.gather(depth, 1, index[:, k : k + 1]).flatten(1), depth_max)
                weight = w_k if weight is None else weight + w_k
        assert total is not None
        if weight is None:
            return total
        return torch.cat([total, weight.unsqueeze(1) / count.clamp(min=1).to(weight.dtype)], dim=1)
