"""Camera rays and their samples along the voxel grid (nerfstudio's ``RayBundle`` / ``RaySamples`` split).

Frames (docs/conventions.md): rays live in the ego frame (x forward, y left, z up, metres). A camera's
optical frame has x right, y down, z forward; ``cam_from_ego`` maps ego points into it and ``K`` maps
optical-frame points to pixels, with pixel (0, 0) the centre of the top-left pixel. Directions are unit
vectors, so the ray parameter ``t`` is metric distance along the ray; the optical-axis depth of the point
at ``t`` is ``t * z_per_unit``.

Shapes: ``B`` batch, ``N`` cameras, ``R`` rays per batch element (``N * rays_per_camera`` when the rays
come from :func:`camera_rays`, camera-major), ``S`` samples per ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from occ_ros.core.grid import GridSpec


# ---------------------------------------------------------------------------------------- rays
@dataclass
class RayBundle:
    """Rays in the ego frame.

    Attributes:
        origins: (B, R, 3) ray origins (the camera centres), ego frame, metres.
        directions: (B, R, 3) unit directions, ego frame.
        z_per_unit: (B, R) optical-frame z of the unit direction (optical depth = t * z_per_unit).
        pixels: (B, R, 2) pixel coordinates (u right, v down; centres at integers) the rays pass through,
            for looking up 2D targets.
        camera_index: (B, R) int64 index of the ray's camera in the rig (0..N-1).
    """

    origins: torch.Tensor
    directions: torch.Tensor
    z_per_unit: torch.Tensor
    pixels: torch.Tensor
    camera_index: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        """(B, R)."""
        return int(self.origins.shape[0]), int(self.origins.shape[1])


def camera_rays(K: torch.Tensor, cam_from_ego: torch.Tensor, pixels: torch.Tensor) -> RayBundle:
    """Rays through given pixels of every camera.

    Args:
        K: (B, N, 3, 3) intrinsics of the images the pixels refer to.
        cam_from_ego: (B, N, 4, 4) ego -> optical frame transforms (rigid).
        pixels: (B, N, P, 2) pixel coordinates (u, v) per camera (centres at integers).
    Returns:
        A :class:`RayBundle` with R = N * P rays per batch element, camera-major (ray ``n * P + p`` is
        pixel ``p`` of camera ``n``), i.e. ``pixels.flatten(1, 2)`` order.
    """
    if K.shape[-2:] != (3, 3) or cam_from_ego.shape[-2:] != (4, 4) or pixels.shape[-1] != 2:
        raise ValueError(
            f"camera_rays: bad shapes K {tuple(K.shape)}, T {tuple(cam_from_ego.shape)}, pixels {tuple(pixels.shape)}"
        )
    batch, cams, count = pixels.shape[:3]
    dtype = pixels.dtype
    homog = torch.cat([pixels, torch.ones_like(pixels[..., :1])], dim=-1)  # (B, N, P, 3)
    dirs_cam = torch.einsum("bnij,bnpj->bnpi", torch.linalg.inv(K.to(dtype)), homog)
    dirs_cam = dirs_cam / dirs_cam.norm(dim=-1, keepdim=True)
    rot = cam_from_ego[..., :3, :3].to(dtype)  # optical <- ego
    trans = cam_from_ego[..., :3, 3].to(dtype)
    # ego_from_cam = [R^T, -R^T t]: directions rotate by R^T, the origin is the optical centre -R^T t
    dirs_ego = torch.einsum("bnji,bnpj->bnpi", rot, dirs_cam)
    centres = -torch.einsum("bnji,bnj->bni", rot, trans)  # (B, N, 3)
    origins = centres[:, :, None, :].expand(batch, cams, count, 3)
    index = torch.arange(cams, device=pixels.device).view(1, cams, 1).expand(batch, cams, count)
    return RayBundle(
        origins=origins.reshape(batch, cams * count, 3),
        directions=dirs_ego.reshape(batch, cams * count, 3),
        z_per_unit=dirs_cam[..., 2].reshape(batch, cams * count),
        pixels=pixels.reshape(batch, cams * count, 2),
        camera_index=index.reshape(batch, cams * count),
    )


def image_pixels(
    height: int, width: int, stride: int = 1, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """(H' * W', 2) pixel centres (u, v) of every ``stride``-th row and column, row-major (rows top to bottom).

    H' = ceil(H / stride), W' = ceil(W / stride), as :meth:`occ_ros.core.rig.Camera.pixel_rays`; reshape a
    rendered (..., H' * W') result to (..., H', W').
    """
    v, u = torch.meshgrid(
        torch.arange(0, height, stride, dtype=dtype, device=device),
        torch.arange(0, width, stride, dtype=dtype, device=device),
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1).reshape(-1, 2)


def sample_pixels(
    batch: int,
    num_cameras: int,
    height: int,
    width: int,
    rays_per_camera: int,
    generator: torch.Generator,
    labelled: torch.Tensor | None = None,
    labelled_fraction: float = 0.0,
    device: torch.device | None = None,
) -> torch.Tensor:
    """A random subset of distinct pixels per camera.

    Without ``labelled`` (or with ``labelled_fraction = 0``) every pixel is equally likely. With it, a pixel
    is drawn with probability ``(1 - f) / (H W) + f * labelled / (#labelled)`` (f = ``labelled_fraction``), so
    about a fraction f of the rays land on labelled pixels (e.g. where the 2D teacher gave a label or depth).
    Pixels are drawn without replacement (Gumbel top-k, which samples sequentially proportional to the
    probabilities); a camera with fewer labelled pixels than asked for fills up with unlabelled ones.

    Args:
        batch, num_cameras: B, N.
        height, width: image size (H, W) the pixels refer to.
        rays_per_camera: P <= H * W.
        generator: a seeded CPU :class:`torch.Generator` (the draw is reproducible for a seed, on any device).
        labelled: optional (B, N, H, W) bool, pixels to favour.
        labelled_fraction: f in [0, 1].
    Returns:
        (B, N, P, 2) float32 pixel coordinates (u, v) at integer pixel centres, on ``device``.
    """
    total = height * width
    if not 0 < rays_per_camera <= total:
        raise ValueError(f"sample_pixels: rays_per_camera must be in 1..{total}, got {rays_per_camera}")
    if not 0.0 <= labelled_fraction <= 1.0:
        raise ValueError(f"sample_pixels: labelled_fraction must lie in [0, 1], got {labelled_fraction}")
    uniform = torch.rand((batch, num_cameras, total), generator=generator)
    if labelled is None or labelled_fraction == 0.0:
        keys = uniform  # a random permutation's first P entries
    else:
        if tuple(labelled.shape) != (batch, num_cameras, height, width):
            raise ValueError(
                f"sample_pixels: labelled must be {(batch, num_cameras, height, width)}, got {tuple(labelled.shape)}"
            )
        lab = labelled.reshape(batch, num_cameras, total).to("cpu", torch.float64)
        count = lab.sum(dim=-1, keepdim=True)
        prob = (1.0 - labelled_fraction) / total + labelled_fraction * lab / count.clamp(min=1.0)
        prob = torch.where(count > 0, prob, torch.full_like(prob, 1.0 / total))
        gumbel = -torch.log(-torch.log(uniform.double().clamp(1e-12, 1.0 - 1e-12)))
        keys = torch.log(prob.clamp(min=1e-300)) + gumbel
    flat = keys.topk(rays_per_camera, dim=-1).indices
    pixels = torch.stack([flat % width, flat // width], dim=-1).to(torch.float32)
    return pixels.to(device) if device is not None else pixels


# ---------------------------------------------------------------------------------------- samples
@dataclass
class RaySamples:
    """Samples along rays inside the grid box.

    Each ray's segment ``[t_near, t_far]`` inside the box is cut into S equal bins; sample i represents
    bin ``[starts_i, ends_i]`` and sits at ``t_i`` (the bin middle, or a random point of the bin in
    stratified training).

    Attributes:
        positions: (B, R, S, 3) ego-frame sample points ``origin + t * direction``.
        t: (B, R, S) distance of each sample along the (unit) ray, metres.
        starts, ends: (B, R, S) bin edges along the ray.
        deltas: (B, R, S) bin lengths ``ends - starts`` (0 for rays that miss the grid).
        t_near, t_far: (B, R) the ray's entry and exit of the box (both 0 for rays that miss it).
        hit: (B, R) bool, the ray crosses the box (with ``t_far > t_near``).
    """

    positions: torch.Tensor
    t: torch.Tensor
    starts: torch.Tensor
    ends: torch.Tensor
    deltas: torch.Tensor
    t_near: torch.Tensor
    t_far: torch.Tensor
    hit: torch.Tensor


def intersect_box(
    origins: torch.Tensor,
    directions: torch.Tensor,
    box_min: torch.Tensor,
    box_max: torch.Tensor,
    near: float = 0.0,
    far: float = float("inf"),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slab intersection of rays with an axis-aligned box.

    Per axis the ray is inside the slab for ``t`` between ``(lo - o) / d`` and ``(hi - o) / d``; a ray parallel
    to an axis (``d = 0``) is inside that slab for every ``t`` when ``lo <= o <= hi`` and never otherwise. The
    box interval is the intersection over axes, clipped to ``[near, far]``.

    Args:
        origins, directions: (..., 3) rays (directions need not be unit; t is in units of their length).
        box_min, box_max: (3,) box corners.
        near, far: bounds on t (``near = 0``: only in front of the origin).
    Returns:
        t_near, t_far: (...) entry and exit; 0 and 0 where the ray misses.
        hit: (...) bool, ``t_far > t_near``.
    """
    lo = box_min.to(origins)
    hi = box_max.to(origins)
    parallel = directions == 0
    safe = torch.where(parallel, torch.ones_like(directions), directions)
    t0 = (lo - origins) / safe
    t1 = (hi - origins) / safe
    t_enter = torch.minimum(t0, t1)
    t_exit = torch.maximum(t0, t1)
    inside = (origins >= lo) & (origins <= hi)
    inf = torch.full_like(t_enter, float("inf"))
    t_enter = torch.where(parallel, torch.where(inside, -inf, inf), t_enter)
    t_exit = torch.where(parallel, torch.where(inside, inf, -inf), t_exit)
    t_near = t_enter.amax(dim=-1).clamp(min=near)
    t_far = t_exit.amin(dim=-1).clamp(max=far)
    hit = t_far > t_near
    zero = torch.zeros_like(t_near)
    return torch.where(hit, t_near, zero), torch.where(hit, t_far, zero), hit


def grid_box(
    grid: GridSpec, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """(3,) tensors ``range_min`` and ``range_max`` of a grid."""
    return (
        torch.tensor(grid.range_min, dtype=dtype, device=device),
        torch.tensor(grid.range_max, dtype=dtype, device=device),
    )


class UniformSampler:
    """S samples per ray, evenly spaced between the ray's entry into and exit from the grid box.

    Args:
        grid: the voxel grid (its box bounds the samples).
        num_samples: S.
        stratified: in training, place each sample uniformly at random within its bin (an unbiased estimate of
            the density integral that covers the whole segment over iterations); in eval, at the bin middle.
        near: samples start at ``t >= near`` (metres from the origin; e.g. to skip the ego body).
        far: samples end at ``t <= far``.
    """

    def __init__(
        self, grid: GridSpec, num_samples: int, stratified: bool = True, near: float = 0.0, far: float = float("inf")
    ) -> None:
        if int(num_samples) < 1:
            raise ValueError(f"UniformSampler: num_samples must be >= 1, got {num_samples}")
        if not 0.0 <= near < far:
            raise ValueError(f"UniformSampler: need 0 <= near < far, got near={near}, far={far}")
        self.grid = grid
        self.num_samples = int(num_samples)
        self.stratified = bool(stratified)
        self.near = float(near)
        self.far = float(far)

    def __call__(self, rays: RayBundle, training: bool = False, generator: torch.Generator | None = None) -> RaySamples:
        """Sample ``rays``; jitter only when ``training`` and the sampler is stratified.

        ``generator`` (optional, on the rays' device) makes the jitter reproducible.
        """
        box_min, box_max = grid_box(self.grid, rays.origins.device, rays.origins.dtype)
        t_near, t_far, hit = intersect_box(rays.origins, rays.directions, box_min, box_max, self.near, self.far)
        steps = torch.linspace(0.0, 1.0, self.num_samples + 1, device=t_near.device, dtype=t_near.dtype)
        edges = t_near[..., None] + (t_far - t_near)[..., None] * steps  # (B, R, S + 1)
        starts, ends = edges[..., :-1], edges[..., 1:]
        if training and self.stratified:
            u = torch.rand(starts.shape, generator=generator, device=starts.device, dtype=starts.dtype)
        else:
            u = torch.full_like(starts, 0.5)
        t = starts + (ends - starts) * u
        positions = rays.origins[..., None, :] + t[..., None] * rays.directions[..., None, :]
        return RaySamples(positions, t, starts, ends, ends - starts, t_near, t_far, hit)
