"""Photometric geometry shared by depth calibration and the rendering losses: warps and the monodepth2 error.

A target pixel at a known depth is back-projected, moved into a source camera and projected again
(:func:`warp_grid`); the source image sampled there is compared with the target by :func:`photometric_error`
(3x3 box-filter SSIM + L1, Godard et al. 2019). :mod:`occ_training.labels.depth_calibration` fits a relative depth
map's scale and shift with it; :mod:`occ_training.rendering.losses` supervises rendered depth with it.

Frames: optical frame x right, y down, z forward; pixel centres at integer ``(u, v)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: SSIM stabilisers for intensities in [0, 1] (Wang et al. 2004; monodepth2).
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def pixel_grid(height: int, width: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(3, H, W) homogeneous pixel centres ``(u, v, 1)``: u = column (x right), v = row (y down)."""
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype), torch.arange(width, dtype=dtype), indexing="ij")
    return torch.stack([u, v, torch.ones_like(u)])


def backproject(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Optical-frame points of every pixel.

    Args:
        depth: (..., H, W) depth along the optical axis (z), metres.
        K: (3, 3) or (..., 3, 3) intrinsics (broadcast against depth's leading dims).
    Returns:
        (..., H, W, 3) points ``depth * K^-1 (u, v, 1)`` in the camera's optical frame (x right, y down, z forward).
    """
    height, width = depth.shape[-2:]
    pix = pixel_grid(height, width, depth.dtype)  # (3, H, W)
    rays = torch.einsum("...ij,jhw->...hwi", torch.linalg.inv(K.to(depth.dtype)), pix)
    return rays * depth[..., None]


def project(points: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates of optical-frame points.

    Args:
        points: (..., 3) points in the camera's optical frame.
        K: (3, 3) or (..., 3, 3) intrinsics, broadcastable to points' leading dims (without the last).
    Returns:
        uv: (..., 2) pixel coordinates (u right, v down; pixel centres at integers); arbitrary where z <= 0.
        z: (...,) depth along the optical axis.
    """
    p = torch.einsum("...ij,...j->...i", K.to(points.dtype), points)
    z = p[..., 2]
    safe = torch.where(z > 1e-6, z, torch.ones_like(z))
    return p[..., :2] / safe[..., None], z


def warp_coefficients(
    K_t: torch.Tensor, K_s: torch.Tensor, src_cam_from_tgt_cam: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear form of the warp in the target's inverse depth.

    A target pixel ``x = (u, v, 1)`` at depth ``d`` lands at the homogeneous source pixel
    ``K_s (R d K_t^-1 x + T) ~ a(x) + b / d`` with ``a(x) = K_s R K_t^-1 x`` and ``b = K_s T``
    (dividing by ``d > 0`` keeps the sign of the source z), so each candidate depth costs one multiply-add.

    Args:
        K_t, K_s: (..., 3, 3) target / source intrinsics.
        src_cam_from_tgt_cam: (..., 4, 4) target optical frame -> source optical frame.
        height, width: target image size.
    Returns:
        a: (..., 3, H, W); b: (..., 3).
    """
    dtype = src_cam_from_tgt_cam.dtype
    rot, trans = src_cam_from_tgt_cam[..., :3, :3], src_cam_from_tgt_cam[..., :3, 3]
    M = K_s.to(dtype) @ rot @ torch.linalg.inv(K_t.to(dtype))
    a = torch.einsum("...ij,jhw->...ihw", M, pixel_grid(height, width, dtype))
    b = torch.einsum("...ij,...j->...i", K_s.to(dtype), trans)
    return a, b


def grid_from_homogeneous(p: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``grid_sample`` grid from homogeneous source pixels.

    Args:
        p: (..., 3, H, W) homogeneous source pixel coordinates (third row proportional to the source z).
        size: (H_s, W_s) source image size.
    Returns:
        grid: (..., H, W, 2) in [-1, 1] for ``grid_sample(..., align_corners=True)`` (clamped to [-2, 2]
            outside, finite everywhere so gradients stay finite).
        valid: (..., H, W) bool, in front of the source camera and inside its image (the bilinear footprint
            within the pixel centres, 0 <= u <= W_s - 1, 0 <= v <= H_s - 1).
    """
    src_h, src_w = size
    z = p[..., 2, :, :]
    front = z > 1e-6
    safe = torch.where(front, z, torch.ones_like(z))
    if torch.is_grad_enabled() and p.requires_grad:
        u = p[..., 0, :, :] / safe
        v = p[..., 1, :, :] / safe
        valid = front & (u >= 0) & (u <= src_w - 1) & (v >= 0) & (v <= src_h - 1)
        gx = (2.0 * u / max(src_w - 1, 1) - 1.0).clamp(-2.0, 2.0)
        gy = (2.0 * v / max(src_h - 1, 1) - 1.0).clamp(-2.0, 2.0)
        return torch.stack([gx, gy], dim=-1), valid
    # Without autograd the same operations, in place in the output: no stack (a strided copy that cost
    # the photometric calibration as much as the bilinear sampling itself).
    grid = torch.empty((*z.shape, 2), dtype=p.dtype)
    valid = front
    for axis, extent in ((0, src_w), (1, src_h)):
        g = grid[..., axis]
        torch.div(p[..., axis, :, :], safe, out=g)
        valid = valid & (g >= 0) & (g <= extent - 1)
        g.mul_(2.0).div_(max(extent - 1, 1)).sub_(1.0).clamp_(-2.0, 2.0)
    return grid, valid


def warp_grid(
    depth: torch.Tensor,
    K_t: torch.Tensor,
    K_s: torch.Tensor,
    src_cam_from_tgt_cam: torch.Tensor,
    size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each target pixel, at the given depth, is seen in the source image.

    Args:
        depth: (B, H, W) target depth along the optical axis, metres (> 0).
        K_t: (B, 3, 3) or (3, 3) target intrinsics; K_s: (B, 3, 3) or (3, 3) source intrinsics.
        src_cam_from_tgt_cam: (B, 4, 4) or (4, 4), target optical frame -> source optical frame.
        size: (H_s, W_s) source image size.
    Returns:
        grid: (B, H, W, 2) for ``F.grid_sample(source, grid, align_corners=True)``.
        valid: (B, H, W) bool, in front of the source camera and inside its image.
    """
    height, width = depth.shape[-2:]
    a, b = warp_coefficients(K_t, K_s, src_cam_from_tgt_cam, height, width)
    p = a.to(depth.dtype) + b.to(depth.dtype)[..., :, None, None] / depth[..., None, :, :]
    return grid_from_homogeneous(p, size)


def box3(padded: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """3x3 box mean of an image padded by one pixel on each side: (..., H + 2, W + 2) -> (..., H', W').

    The same numbers as ``F.avg_pool2d(padded, 3, stride)`` (up to float rounding: the nine values are summed as
    three row sums of three), computed as two separable sums of shifted slices, which on a CPU is several times
    faster than ``avg_pool2d``'s direct 3x3 loop. ``stride`` > 1 keeps every ``stride``-th output row and column
    (``H' = ceil(H / stride)``), computing only those.
    """
    h, w = padded.shape[-2] - 2, padded.shape[-1] - 2
    if h < 1 or w < 1:
        raise ValueError(f"box3 needs an image padded to at least 3x3, got {tuple(padded.shape[-2:])}")
    k = int(stride)
    rows = torch.add(padded[..., 0:h:k, :], padded[..., 1 : h + 1 : k, :]).add_(padded[..., 2 : h + 2 : k, :])
    out = torch.add(rows[..., 0:w:k], rows[..., 1 : w + 1 : k]).add_(rows[..., 2 : w + 2 : k])
    return out.div_(9.0)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity on 3x3 box windows (monodepth2): (B, C, H, W) x2 -> (B, C, H, W) in [-1, 1].

    Means, variances and covariance are 3x3 averages over the reflection-padded images (population
    variance); ``SSIM = (2 mx my + C1)(2 sxy + C2) / ((mx^2 + my^2 + C1)(sx + sy + C2))`` with
    ``C1 = 0.01^2``, ``C2 = 0.03^2`` for intensities in [0, 1]. Identical images give 1.
    """
    c = x.shape[1]
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # one padded pooling for all five moments
    pooled = box3(F.pad(stack, (1, 1, 1, 1), mode="reflect"))
    mx, my, xx, yy, xy = pooled.split(c, dim=1)
    sx = xx - mx * mx
    sy = yy - my * my
    sxy = xy - mx * my
    num = (2 * mx * my + SSIM_C1) * (2 * sxy + SSIM_C2)
    den = (mx * mx + my * my + SSIM_C1) * (sx + sy + SSIM_C2)
    return num / den


def photometric_error(pred: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.85) -> torch.Tensor:
    """Per-pixel monodepth2 error: (B, C, H, W) x2, intensities in [0, 1] -> (B, H, W).

    ``ssim_weight * clamp((1 - SSIM) / 2, 0, 1) + (1 - ssim_weight) * |pred - target|``, averaged over channels.
    """
    l1 = (pred - target).abs().mean(dim=1)
    if ssim_weight == 0:
        return l1
    dssim = ((1 - ssim(pred, target)) / 2).clamp(0, 1).mean(dim=1)
    return ssim_weight * dssim + (1 - ssim_weight) * l1
