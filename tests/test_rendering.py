"""Volume rendering and its losses (occ_training.rendering): against hand computations and independent implementations.

Rays and slab intersection by hand; the voxel field read at voxel centres (catches any axis-order mistake);
an opaque wall renders its depth, class and full accumulation; Lovász-softmax against the Lovász extension
computed from its threshold-integral definition; the RadOcc KL against scipy and the affinity loss against a
per-segment loop; the photometric loss on a textured plane; and an end-to-end fit of a free density + semantics
volume to a wall seen by a camera.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import rel_entr

from occ_ros.core.config import ConfigError, from_mapping
from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import Camera
from occ_ros.core.transforms import invert_transform, make_transform
from occ_ros.datasets.sample import IGNORE_LABEL
from occ_training.rendering.fields import VoxelField, normalized_coordinates, sample_volume
from occ_training.rendering.losses import (
    RenderingLossConfig,
    cell_depth_targets,
    class_weights_from_frequencies,
    clip_distillation_loss,
    depth_loss,
    lift_depth_loss,
    lovasz_softmax,
    photometric_errors,
    photometric_loss,
    ray_termination_kl,
    sample_feature_map,
    sample_image,
    segment_affinity_loss,
    semantic_loss,
    voxel_loss,
)
from occ_training.rendering.rays import (
    RayBundle,
    RaySamples,
    UniformSampler,
    camera_rays,
    image_pixels,
    intersect_box,
    sample_pixels,
)
from occ_training.rendering.renderer import (
    RenderingConfig,
    RenderOutputs,
    VolumeRenderer,
    render_depth,
    render_features,
    render_semantics,
    weights_from_density,
)

# optical <- ego rotation of a camera looking along ego +x: optical x = -ego y, optical y = -ego z, optical z = ego x
FORWARD = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def forward_camera(centre: tuple[float, float, float], width: int = 16, height: int = 12, f: float = 20.0) -> Camera:
    """A pinhole camera at ego point ``centre`` looking along ego +x."""
    K = np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
    ego_from_cam = make_transform(FORWARD.T, centre)
    return Camera("CAM", "cam_optical_frame", width, height, K, invert_transform(ego_from_cam))


def rays_of(camera: Camera, pixels: torch.Tensor | None = None, dtype: torch.dtype = torch.float64) -> RayBundle:
    """Rays of one camera (B = N = 1) through ``pixels`` (P, 2), default every pixel."""
    if pixels is None:
        pixels = image_pixels(camera.height, camera.width, dtype=dtype)
    K = torch.tensor(camera.K, dtype=dtype)[None, None]
    T = torch.tensor(camera.cam_from_ego, dtype=dtype)[None, None]
    return camera_rays(K, T, pixels.to(dtype)[None, None])


def single_rays(origins: list[list[float]], directions: list[list[float]]) -> RayBundle:
    o = torch.tensor(origins, dtype=torch.float64)[None]
    d = F.normalize(torch.tensor(directions, dtype=torch.float64), dim=-1)[None]
    count = o.shape[1]
    return RayBundle(o, d, torch.ones(1, count, dtype=torch.float64), torch.zeros(1, count, 2), torch.zeros(1, count))


# ---------------------------------------------------------------------------------------- rays
def test_camera_rays_match_the_rig_camera():
    camera = forward_camera((1.0, 0.5, 1.5))
    rays = rays_of(camera)
    count = camera.width * camera.height
    assert rays.origins.shape == (1, count, 3) and rays.directions.shape == (1, count, 3) and rays.shape == (1, count)
    dirs_optical, z_per_unit = camera.pixel_rays()  # independent: numpy, rows top to bottom
    expected = dirs_optical.reshape(-1, 3) @ camera.ego_from_cam[:3, :3].T
    assert np.allclose(rays.directions[0].numpy(), expected)
    assert np.allclose(rays.z_per_unit[0].numpy(), z_per_unit.reshape(-1))
    assert np.allclose(rays.origins[0].numpy(), camera.center_ego)
    assert torch.allclose(rays.directions.norm(dim=-1), torch.ones(1, count, dtype=torch.float64))
    # the principal point looks straight ahead; a pixel right of it looks to the ego's right (-y)
    centre = rays_of(camera, torch.tensor([[7.5, 5.5], [12.0, 5.5]]))
    assert torch.allclose(centre.directions[0, 0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    assert centre.directions[0, 1, 1] < 0 and centre.directions[0, 1, 2] == pytest.approx(0.0, abs=1e-12)
    # a point on the ray at optical depth d projects back onto the pixel
    point = centre.origins[0, 1] + 10.0 / centre.z_per_unit[0, 1] * centre.directions[0, 1]
    uv, depth = camera.project(point[None].numpy())
    assert np.allclose(uv[0], [12.0, 5.5]) and depth[0] == pytest.approx(10.0)


def test_camera_rays_are_camera_major():
    cams = [forward_camera((0.0, 0.0, 1.0)), forward_camera((0.0, 3.0, 1.0))]
    K = torch.tensor(np.stack([c.K for c in cams]), dtype=torch.float32)[None]
    T = torch.tensor(np.stack([c.cam_from_ego for c in cams]), dtype=torch.float32)[None]
    pixels = torch.tensor([[[0.0, 0.0], [1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])[None]
    rays = camera_rays(K, T, pixels)
    assert rays.camera_index.tolist() == [[0, 0, 0, 1, 1, 1]]
    assert torch.equal(rays.pixels, pixels.flatten(1, 2))
    assert torch.allclose(rays.origins[0, 3:], torch.tensor([0.0, 3.0, 1.0]))


def test_slab_entry_and_exit_by_hand():
    box_min, box_max = torch.tensor([0.0, -1.0, 0.0]), torch.tensor([2.0, 1.0, 1.0])
    s2 = math.sqrt(2.0)
    rays = single_rays(
        [[-1.0, 0.0, 0.5], [-1.0, -2.0, 0.5], [1.0, 0.0, 0.5], [-1.0, 0.0, 2.0], [-1.0, 0.0, 0.5], [-1.0, -3.0, 0.5]],
        [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [1.0, 0.2, 0.0]],
    )
    t_near, t_far, hit = intersect_box(rays.origins, rays.directions, box_min.double(), box_max.double())
    # 0: straight through x in [0, 2] from x = -1; 1: diagonal, x and y slabs both [sqrt 2, 3 sqrt 2];
    # 2: starts inside, leaves through the top (near clips to 0); 3: parallel to z above the box;
    # 4: points away; 5: crosses the x slab before reaching the y slab
    assert hit.tolist() == [[True, True, True, False, False, False]]
    assert torch.allclose(t_near[0, :3], torch.tensor([1.0, s2, 0.0], dtype=torch.float64))
    assert torch.allclose(t_far[0, :3], torch.tensor([3.0, 3 * s2, 0.5], dtype=torch.float64))
    assert torch.all(t_near[0, 3:] == 0) and torch.all(t_far[0, 3:] == 0)
    # near / far bounds clip the segment
    t_near, t_far, _ = intersect_box(rays.origins[:, :1], rays.directions[:, :1], box_min, box_max, near=1.5, far=2.5)
    assert t_near.item() == pytest.approx(1.5) and t_far.item() == pytest.approx(2.5)


def test_uniform_sampler_bins_and_misses():
    grid = GridSpec((0.0, -1.0, 0.0), (2.0, 1.0, 1.0), (0.5, 0.5, 0.5))
    rays = single_rays([[-1.0, 0.0, 0.5], [-1.0, 0.0, 2.0]], [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    sampler = UniformSampler(grid, num_samples=4)
    samples = sampler(rays)
    assert samples.positions.shape == (1, 2, 4, 3) and samples.t.shape == (1, 2, 4)
    assert torch.allclose(samples.t[0, 0], torch.tensor([1.25, 1.75, 2.25, 2.75], dtype=torch.float64))
    assert torch.allclose(samples.deltas[0, 0], torch.full((4,), 0.5, dtype=torch.float64))
    assert torch.allclose(samples.positions[0, 0, :, 0], torch.tensor([0.25, 0.75, 1.25, 1.75], dtype=torch.float64))
    assert samples.hit.tolist() == [[True, False]]
    assert torch.all(samples.deltas[0, 1] == 0)  # missing ray: zero-length samples, no weight
    weights, _ = weights_from_density(torch.full((1, 2, 4), 1e6, dtype=torch.float64), samples.deltas)
    assert torch.all(weights[0, 1] == 0)
    # stratified jitter only in training, inside each bin, reproducible with a generator
    jit1 = sampler(rays, training=True, generator=torch.Generator().manual_seed(3))
    jit2 = sampler(rays, training=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(jit1.t, jit2.t) and not torch.equal(jit1.t[0, 0], samples.t[0, 0])
    assert torch.all((jit1.t[0, 0] >= samples.starts[0, 0]) & (jit1.t[0, 0] <= samples.ends[0, 0]))
    assert torch.equal(UniformSampler(grid, 4, stratified=False)(rays, training=True).t, samples.t)


def test_sample_pixels_distinct_reproducible_and_weighted():
    batch, cams, height, width, count = 2, 3, 30, 40, 100
    a = sample_pixels(batch, cams, height, width, count, torch.Generator().manual_seed(0))
    b = sample_pixels(batch, cams, height, width, count, torch.Generator().manual_seed(0))
    assert a.shape == (batch, cams, count, 2) and torch.equal(a, b)
    assert a[..., 0].min() >= 0 and a[..., 0].max() <= width - 1 and a[..., 1].max() <= height - 1
    assert torch.equal(a, a.round())
    flat = (a[..., 1] * width + a[..., 0]).long()
    for row in flat.reshape(-1, count):
        assert row.unique().numel() == count  # without replacement
    labelled = torch.zeros(batch, cams, height, width, dtype=torch.bool)
    labelled[..., :6, :20] = True  # 10 % of the pixels
    uniform_share = labelled.float().mean().item()
    picks = sample_pixels(batch, cams, height, width, count, torch.Generator().manual_seed(1), labelled, 0.5)
    hits = labelled.reshape(batch, cams, -1).gather(2, (picks[..., 1] * width + picks[..., 0]).long())
    assert 0.35 < hits.float().mean().item() < 0.7  # ~0.55 of the probability mass is on labelled pixels
    assert uniform_share == pytest.approx(0.1)
    # only labelled pixels wanted but too few of them: they are all taken, the rest fills up with others
    few = torch.zeros(1, 1, 3, 4, dtype=torch.bool)
    few[0, 0, 1, 2] = few[0, 0, 2, 3] = True
    picks = sample_pixels(1, 1, 3, 4, 5, torch.Generator().manual_seed(0), few, 1.0)
    flat = (picks[0, 0, :, 1] * 4 + picks[0, 0, :, 0]).long()
    assert {6, 11} <= set(flat.tolist()) and flat.unique().numel() == 5


# ---------------------------------------------------------------------------------------- field
ODD_GRID = GridSpec((-1.0, 2.0, -0.5), (1.0, 2.75, 1.5), (0.5, 0.25, 1.0))  # 4 x 3 x 2, anisotropic, offset


def _indexed_volume(grid: GridSpec) -> torch.Tensor:
    i, j, k = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    return torch.from_numpy(100.0 * i + 10.0 * j + k)[None, None]  # (1, 1, X, Y, Z), value = 100 i + 10 j + k


@pytest.mark.parametrize("interpolation", ["trilinear", "nearest"])
def test_voxel_field_reads_each_voxel_at_its_centre(interpolation):
    grid = ODD_GRID
    assert grid.shape == (4, 3, 2)
    volume = _indexed_volume(grid)
    centres = torch.from_numpy(grid.voxel_centers()).reshape(1, -1, 1, 3)
    values = sample_volume(volume, centres, grid, interpolation)
    assert values.shape == (1, 24, 1, 1)
    assert torch.allclose(values.reshape(grid.shape), volume[0, 0])


def test_normalized_coordinates_map_box_faces_to_minus_one_and_one():
    lo = torch.tensor(ODD_GRID.range_min, dtype=torch.float64)
    hi = torch.tensor(ODD_GRID.range_max, dtype=torch.float64)
    out = normalized_coordinates(torch.stack([lo, hi, torch.tensor([0.0, 2.0, 1.5], dtype=torch.float64)]), ODD_GRID)
    assert torch.allclose(out, torch.tensor([[-1.0] * 3, [1.0] * 3, [1.0, -1.0, 0.0]], dtype=torch.float64))


def test_voxel_field_trilinear_midpoints_and_outputs():
    grid = ODD_GRID
    volume = _indexed_volume(grid)
    c = grid.indices_to_centers
    points = np.stack(
        [
            (c([1, 1, 0]) + c([2, 1, 0])) / 2,  # x midpoint -> (110 + 210) / 2
            (c([1, 0, 1]) + c([1, 1, 1])) / 2,  # y midpoint -> (101 + 111) / 2
            (c([3, 2, 0]) + c([3, 2, 1])) / 2,  # z midpoint -> (320 + 321) / 2
            (c([0, 0, 0]) + c([1, 1, 1])) / 2,  # centre of 8 voxels -> mean of 0, 1, 10, 11, 100, 101, 110, 111
        ]
    )
    got = sample_volume(volume, torch.from_numpy(points).reshape(1, 4, 1, 3), grid)[0, :, 0, 0]
    assert torch.allclose(got, torch.tensor([160.0, 106.0, 320.5, 55.5], dtype=torch.float64))
    # nearest: a point just inside voxel (2, 1, 0) reads that voxel
    inside = torch.from_numpy(c([2, 1, 0]) - np.array([0.24, 0.12, 0.49])).reshape(1, 1, 1, 3)
    assert sample_volume(volume, inside, grid, "nearest").item() == 210.0
    # VoxelField: density, semantics and features in the documented layouts
    field = VoxelField(grid)
    samples = RaySamples(*([torch.zeros(1, 1, 1)] * 8))
    samples.positions = torch.from_numpy(points).reshape(1, 2, 2, 3)
    semantics = torch.cat([volume, -volume, volume * 2], dim=1)
    out = field(samples, volume, semantics=semantics, features=volume.repeat(1, 5, 1, 1, 1))
    assert out.density.shape == (1, 2, 2) and out.semantics.shape == (1, 2, 2, 3) and out.features.shape == (1, 2, 2, 5)
    assert torch.allclose(out.density.reshape(-1), got)
    assert torch.allclose(out.semantics[..., 2].reshape(-1), 2 * got)


# ---------------------------------------------------------------------------------------- renderer
def test_weights_from_density_by_hand():
    density = torch.tensor([[[1.0, 2.0, 0.0]]], dtype=torch.float64)
    deltas = torch.full((1, 1, 3), 0.5, dtype=torch.float64)
    weights, trans = weights_from_density(density, deltas)
    e = math.exp
    assert torch.allclose(trans[0, 0], torch.tensor([1.0, e(-0.5), e(-1.5)], dtype=torch.float64))
    expected = [1 - e(-0.5), e(-0.5) * (1 - e(-1.0)), 0.0]
    assert torch.allclose(weights[0, 0], torch.tensor(expected, dtype=torch.float64))


WALL_GRID = GridSpec((0.0, -2.0, -1.5), (10.0, 2.0, 2.5), (1.0, 1.0, 1.0))  # 10 x 4 x 4
WALL_I = 6  # the wall fills x in [6, 7)


def _wall_volumes(num_classes: int = 4, wall_class: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    density = torch.zeros(1, 1, *WALL_GRID.shape, dtype=torch.float64)
    density[:, :, WALL_I] = 1e4
    logits = torch.zeros(1, num_classes, *WALL_GRID.shape, dtype=torch.float64)
    logits[:, -1] = 10.0  # free everywhere ...
    logits[:, -1, WALL_I] = 0.0
    logits[:, wall_class, WALL_I] = 10.0  # ... but the wall
    return density, logits


@pytest.mark.parametrize("interpolation", ["nearest", "trilinear"])
def test_opaque_wall_renders_its_depth_class_and_full_accumulation(interpolation):
    camera = forward_camera((-2.0, 0.0, 0.5), width=8, height=6, f=20.0)  # every ray meets the wall inside the grid
    rays = rays_of(camera)
    samples = UniformSampler(WALL_GRID, num_samples=256, stratified=False)(rays)
    spacing = float(samples.deltas.max())
    density, logits = _wall_volumes()
    out = VoxelField(WALL_GRID, interpolation)(samples, density, semantics=logits)
    weights, _ = weights_from_density(out.density, samples.deltas)
    depth, acc = render_depth(weights, samples, rays.z_per_unit)
    assert torch.all(weights.sum(-1) <= 1 + 1e-12) and torch.allclose(acc, torch.ones_like(acc), atol=1e-6)
    face = WALL_I - (-2.0)  # optical depth of the wall's entry face: x = 6 seen from x = -2
    if interpolation == "nearest":
        assert torch.allclose(depth, torch.full_like(depth, face), atol=spacing)
    else:  # trilinear density rises from the previous voxel's centre: the ray stops within half a voxel before the face
        assert torch.all((depth > face - 0.5) & (depth <= face + spacing))
    probs = render_semantics(weights, out.semantics)
    assert probs.shape == (1, rays.shape[1], 3)  # free dropped
    assert torch.all(probs.argmax(-1) == 1) and torch.allclose(probs.sum(-1), acc)
    for mode in ("expected", "normalized"):
        assert torch.allclose(render_depth(weights, samples, rays.z_per_unit, mode)[0], depth, atol=1e-5)
    assert torch.all(render_semantics(weights, out.semantics, "logits").argmax(-1) == 1)


def test_empty_volume_renders_nothing():
    camera = forward_camera((-2.0, 0.0, 0.5), width=8, height=6)
    rays = rays_of(camera)
    samples = UniformSampler(WALL_GRID, num_samples=32)(rays)
    density = torch.zeros(1, 1, *WALL_GRID.shape, dtype=torch.float64)
    features = torch.randn(1, 7, *WALL_GRID.shape, dtype=torch.float64)
    out = VoxelField(WALL_GRID)(samples, density, features=features)
    weights, trans = weights_from_density(out.density, samples.deltas)
    assert torch.all(weights == 0) and torch.all(trans == 1)
    depth, acc = render_depth(weights, samples, rays.z_per_unit)
    assert torch.all(acc == 0)
    assert torch.allclose(depth, samples.t_far * rays.z_per_unit)  # "far": the ray leaves the grid
    assert torch.all(render_depth(weights, samples, rays.z_per_unit, "expected")[0] == 0)
    assert torch.all(render_features(weights, out.features) == 0)


def test_render_features_weighted_and_normalised():
    weights = torch.tensor([[[0.2, 0.5, 0.0]]])
    features = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]]])
    out = render_features(weights, features)
    assert torch.allclose(out[0, 0], F.normalize(torch.tensor([0.2, 0.5]), dim=0))


def test_rendering_config_from_mapping():
    config = from_mapping(RenderingConfig, {"samples_per_ray": 48, "depth_mode": "normalized"})
    assert config.samples_per_ray == 48 and config.depth_mode == "normalized"
    with pytest.raises(ValueError):
        RenderingConfig(depth_mode="median")


@pytest.mark.parametrize(
    ("cls", "name", "words"),
    [
        (RenderingConfig, "depth_mode", ["far", "expected", "normalized"]),
        (RenderingConfig, "semantic_mode", ["probs", "logits"]),
        (RenderingConfig, "interpolation", ["trilinear", "nearest"]),
        (RenderingLossConfig, "depth_kind", ["l1", "silog"]),
        (RenderingLossConfig, "affinity_kind", ["l1", "mse"]),
        (RenderingLossConfig, "class_weighting", ["none", "enet"]),
    ],
)
def test_a_bad_word_names_the_field_and_the_choices(cls, name, words):
    # loaded from YAML: from_mapping checks the Literal type
    with pytest.raises(ConfigError) as info:
        from_mapping(cls, {name: "median"}, where="train.yaml: section")
    assert f"train.yaml: section.{name}" in str(info.value) and str(words) in str(info.value)
    # built directly: the config's own check (occ_ros.core.config.check_fields)
    with pytest.raises(ValueError, match=re.escape(f"{cls.__name__}: {name} must be one of {words}, got 'median'")):
        cls(**{name: "median"})
    for word in words:
        assert getattr(cls(**{name: word}), name) == word


# ---------------------------------------------------------------------------------------- the render step
LINE_GRID = GridSpec((0.0, 0.0, 0.0), (4.0, 1.0, 1.0), (1.0, 1.0, 1.0))  # 4 x 1 x 1 voxels along x


def test_the_render_step_returns_typed_outputs_and_the_hand_computed_depth():
    # ray 0 enters the box at x = 0 (t = 1) and leaves at x = 4 (t = 5); ray 1 points away from the box
    origins = torch.tensor([[[-1.0, 0.5, 0.5], [-1.0, 0.5, 0.5]]], dtype=torch.float64)
    directions = torch.tensor([[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]], dtype=torch.float64)
    z_per_unit = torch.tensor([[0.8, 1.0]], dtype=torch.float64)  # optical depth = 0.8 t along ray 0
    rays = RayBundle(origins, directions, z_per_unit, torch.zeros(1, 2, 2), torch.zeros(1, 2, dtype=torch.long))
    samples = UniformSampler(LINE_GRID, num_samples=8, stratified=False)(rays)  # bins of 0.5 m, middles
    sigma = 2.0  # voxel 2 (x in [2, 3), t in [3, 4)) holds density 2 / m, every other voxel 0
    density = torch.zeros(1, 1, 4, 1, 1, dtype=torch.float64)
    density[0, 0, 2] = sigma
    logits = torch.zeros(1, 3, 4, 1, 1, dtype=torch.float64)  # classes 0, 1 and free (last)
    logits[0, 1, 2] = 10.0
    features = torch.randn(1, 5, 4, 1, 1, dtype=torch.float64)
    fields = VoxelField(LINE_GRID, "nearest")(samples, density, logits, features)
    out = VolumeRenderer(depth_mode="far", free_index=2)(fields, samples, rays.z_per_unit)

    assert isinstance(out, RenderOutputs)
    assert out.weights.shape == (1, 2, 8)
    for per_ray in (out.depth, out.accumulation, out.hit, out.exit_depth):
        assert per_ray.shape == (1, 2)
    assert out.semantics is not None and out.semantics.shape == (1, 2, 2)  # free dropped
    assert out.features is not None and out.features.shape == (1, 2, 5)
    # by hand: the samples at t = 3.25 and 3.75 lie in the dense voxel, each bin 0.5 m long
    stop = 1.0 - math.exp(-0.5 * sigma)
    w1, w2 = stop, math.exp(-0.5 * sigma) * stop
    rest = math.exp(-sigma)  # "far": the remaining mass ends at the box exit, t = 5
    assert out.weights[0, 0].tolist() == pytest.approx([0, 0, 0, 0, w1, w2, 0, 0], abs=1e-12)
    assert float(out.accumulation[0, 0]) == pytest.approx(1.0 - rest, abs=1e-12)
    assert float(out.depth[0, 0]) == pytest.approx(0.8 * (3.25 * w1 + 3.75 * w2 + 5.0 * rest), abs=1e-12)
    assert float(out.exit_depth[0, 0]) == pytest.approx(0.8 * 5.0)
    assert float(out.semantics[0, 0, 1]) == pytest.approx((w1 + w2) * math.exp(10) / (math.exp(10) + 1))
    assert float(out.features[0, 0].norm()) == pytest.approx(1.0)
    # the ray that misses the box renders nothing
    assert out.hit.tolist() == [[True, False]]
    assert torch.all(out.weights[0, 1] == 0) and float(out.depth[0, 1]) == 0.0 and float(out.exit_depth[0, 1]) == 0.0
    assert torch.all(out.features[0, 1] == 0)
    # an opaque voxel stops the ray at its first sample; without semantics / features the outputs are None
    fields = VoxelField(LINE_GRID, "nearest")(samples, density * 1e4)
    opaque = VolumeRenderer()(fields, samples, rays.z_per_unit)
    assert float(opaque.depth[0, 0]) == pytest.approx(0.8 * 3.25) and opaque.semantics is None
    assert opaque.features is None


# ---------------------------------------------------------------------------------------- voxel loss
def _jaccard_loss(mispredicted: np.ndarray, truth: np.ndarray) -> float:
    """Jaccard loss of a class when the elements of ``mispredicted`` flip: 1 - |G \\ M| / |G u M|."""
    union = np.sum(truth | mispredicted)
    return 0.0 if union == 0 else 1.0 - np.sum(truth & ~mispredicted) / union


def _lovasz_by_threshold_integral(errors: np.ndarray, truth: np.ndarray) -> float:
    """Lovász extension of a set function with f(empty) = 0 on [0, 1]^p: integral_0^1 f({i: m_i >= t}) dt."""
    levels = np.unique(np.concatenate([[0.0, 1.0], errors]))
    return sum((b - a) * _jaccard_loss(errors >= b, truth) for a, b in zip(levels[:-1], levels[1:], strict=True))


def test_lovasz_softmax_matches_the_lovasz_extension_definition():
    rng = np.random.default_rng(0)
    for trial in range(5):
        n, c = 9, 4
        probs = rng.dirichlet(np.ones(c), size=n)
        labels = rng.integers(0, c - 1, size=n)  # class c - 1 absent: excluded from the "present" average
        labels[:3] = [0, 1, 2]
        expected = np.mean(
            [_lovasz_by_threshold_integral(np.abs((labels == k) - probs[:, k]), labels == k) for k in range(c - 1)]
        )
        got = lovasz_softmax(torch.from_numpy(probs), torch.from_numpy(labels))
        assert got.item() == pytest.approx(expected, abs=1e-12), trial
    # with all classes: the absent one's loss is its largest false-positive probability's extension
    got_all = lovasz_softmax(torch.from_numpy(probs), torch.from_numpy(labels), present_only=False)
    absent = _lovasz_by_threshold_integral(probs[:, c - 1], np.zeros(n, dtype=bool))
    assert got_all.item() == pytest.approx((expected * (c - 1) + absent) / c, abs=1e-12)


def _random_voxel_problem(seed: int = 0, classes: int = 4, shape: tuple[int, ...] = (2, 4, 3, 2)):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], classes, *shape[1:], generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, shape, generator=gen).to(torch.uint8)
    mask = torch.rand(shape, generator=gen) > 0.4
    return logits, labels, mask


def test_voxel_loss_perfect_prediction_is_near_zero_and_gradients_flow():
    logits, labels, mask = _random_voxel_problem()
    perfect = 30.0 * F.one_hot(labels.long(), 4).movedim(-1, 1).double()
    assert voxel_loss(perfect, labels, mask).item() < 1e-8
    logits.requires_grad_(True)
    loss = voxel_loss(logits, labels, mask, class_weights=torch.tensor([1.0, 2.0, 3.0, 0.5]), lovasz_weight=1.0)
    loss.backward()
    grad = logits.grad.norm(dim=1)
    assert loss.item() > 0.1 and torch.isfinite(logits.grad).all()
    assert torch.all(grad[~mask] == 0) and torch.all(grad[mask] > 0)


def test_voxel_loss_ignores_masked_and_ignore_voxels():
    logits, labels, mask = _random_voxel_problem(1)
    base = voxel_loss(logits, labels, mask)
    logits2, labels2 = logits.clone(), labels.clone()
    logits2.movedim(1, -1)[~mask] = torch.randn(int((~mask).sum()), 4, dtype=torch.float64)
    labels2[~mask] = (labels2[~mask] + 1) % 4
    assert voxel_loss(logits2, labels2, mask).item() == pytest.approx(base.item(), abs=1e-12)
    # IGNORE_LABEL behaves like a masked voxel
    labels3 = labels.clone()
    labels3[~mask] = IGNORE_LABEL
    assert voxel_loss(logits, labels3).item() == pytest.approx(base.item(), abs=1e-12)
    # cross-entropy part alone equals PyTorch's weighted CE on the masked voxels
    weights = torch.tensor([1.0, 2.0, 3.0, 0.5], dtype=torch.float64)
    ce = F.cross_entropy(logits.movedim(1, -1)[mask], labels[mask].long(), weight=weights)
    assert voxel_loss(logits, labels, mask, weights, lovasz_weight=0.0).item() == pytest.approx(ce.item())
    nothing = voxel_loss(logits.requires_grad_(True), labels, torch.zeros_like(mask))
    assert nothing.item() == 0.0
    nothing.backward()


def test_class_weights_from_frequencies():
    w = class_weights_from_frequencies(torch.tensor([0.0, 10.0, 90.0]))
    assert torch.allclose(w, torch.tensor([1 / math.log(1.02), 1 / math.log(1.12), 1 / math.log(1.92)]))
    assert w[0] > w[1] > w[2]


# ---------------------------------------------------------------------------------------- rendered 2D losses
def test_depth_loss_l1_and_silog():
    rendered = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    target = torch.tensor([[1.5, 2.0, 0.0, 2.0]])  # third: no target
    assert depth_loss(rendered, target).item() == pytest.approx((0.5 + 0.0 + 2.0) / 3)
    valid = torch.tensor([[True, True, True, False]])
    assert depth_loss(rendered, target, valid).item() == pytest.approx(0.25)
    assert depth_loss(2 * target, target, kind="silog", silog_lambda=1.0).item() == pytest.approx(0.0, abs=1e-5)
    assert depth_loss(2 * target, target, kind="silog", silog_lambda=0.0).item() == pytest.approx(math.log(2))


def test_cell_depth_targets_take_the_nearest_positive_depth_of_each_cell():
    depth = torch.tensor(
        [
            [5.0, 0.0, 9.0, 8.0, 7.0],
            [4.0, 6.0, 0.0, 3.0, 0.0],
            [0.0, 0.0, 2.5, 0.0, 1.0],
        ]
    )[None]
    # stride 2 over a 3 x 5 map: 2 x 3 cells, the last row and column padded
    cells = cell_depth_targets(depth, 2, (2, 3))
    assert cells.tolist() == [[[4.0, 3.0, 7.0], [0.0, 2.5, 1.0]]]
    with pytest.raises(ValueError, match="do not cover"):
        cell_depth_targets(depth, 2, (1, 3))


def test_lift_depth_loss_is_the_cross_entropy_of_the_nearest_depths_bin():
    depth = torch.zeros(1, 2, 4)
    depth[0, :, :2] = torch.tensor([[3.0, 9.0], [0.0, 4.5]])  # cell 0: nearest 3 m -> bin 1 of 4 over 8 m
    depth[0, :, 2:] = 20.0  # cell 1: beyond 8 m -> the last bin
    logits = torch.zeros(1, 4, 1, 2)
    assert lift_depth_loss(logits, depth, 2, 8.0).item() == pytest.approx(math.log(4))
    logits[0, 1, 0, 0] = logits[0, 3, 0, 1] = 30.0
    assert lift_depth_loss(logits, depth, 2, 8.0).item() == pytest.approx(0.0, abs=1e-6)
    logits.requires_grad_(True)
    empty = lift_depth_loss(logits, torch.zeros(1, 2, 4), 2, 8.0)
    assert empty.item() == 0.0 and empty.requires_grad


def test_semantic_loss_nll_confidence_and_ignore():
    rendered = torch.tensor([[[0.7, 0.2], [0.1, 0.5], [0.3, 0.3]]])
    labels = torch.tensor([[0, 1, IGNORE_LABEL]])
    assert semantic_loss(rendered, labels).item() == pytest.approx(-(math.log(0.7) + math.log(0.5)) / 2)
    conf = torch.tensor([[1.0, 0.5, 1.0]])
    assert semantic_loss(rendered, labels, conf).item() == pytest.approx(-(math.log(0.7) + 0.5 * math.log(0.5)) / 2)
    logits = torch.log(rendered)
    ce = F.cross_entropy(logits[0, :2], labels[0, :2])
    assert semantic_loss(logits, labels, kind="logits").item() == pytest.approx(ce.item())


def _texture(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return 0.5 + 0.25 * torch.sin(0.31 * u + 0.13 * v) + 0.2 * torch.cos(0.17 * v - 0.23 * u) * torch.sin(0.05 * u)


def test_photometric_loss_prefers_the_true_depth_of_a_plane():
    """A textured fronto-parallel plane at 10 m; sources 1 m to the right and to the left (10 px shifts)."""
    K = torch.tensor([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    height, width = 80, 100
    v, u = torch.meshgrid(torch.arange(height).double(), torch.arange(width).double(), indexing="ij")
    target = _texture(u, v).expand(1, 3, height, width)
    # p_src = p_tgt - (+-1, 0, 0): a point seen at target pixel u lands at u -+ 10 in the sources
    sources = torch.stack([_texture(u + 10, v), _texture(u - 10, v)])[None, :, None].expand(1, 2, 3, height, width)
    transforms = torch.stack([torch.from_numpy(make_transform(np.eye(3), [s, 0.0, 0.0])) for s in (-1.0, 1.0)])[None]
    Ks = K.expand(1, 2, 3, 3)

    def loss(depth: float, automask: bool = False) -> torch.Tensor:
        d = torch.full((1, height, width), depth, dtype=torch.float64, requires_grad=True)
        return photometric_loss(d, target, sources, K[None], Ks, transforms, automask=automask), d

    true, d = loss(10.0)
    assert true.item() < 1e-6
    for scale in (0.7, 1.5):
        assert loss(10.0 * scale)[0].item() > 0.05
    wrong, d = loss(15.0)
    wrong.backward()
    assert torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0
    # auto-masking: the identity error caps the loss, the true depth still wins
    assert loss(10.0, True)[0].item() < 1e-6 and loss(15.0, True)[0].item() <= wrong.item()
    errors, valid = photometric_errors(
        torch.full((1, height, width), 10.0, dtype=torch.float64), target, sources, K[None], Ks, transforms
    )
    assert valid.all()  # every pixel is seen by one of the two sources (min over sources)
    crop = torch.zeros(1, 2, 3, 10, 10, dtype=torch.float64)
    with pytest.raises(ValueError):
        photometric_loss(torch.ones(1, 10, 10), target[..., :10, :10], crop[..., :5], K[None], Ks, transforms)


# ---------------------------------------------------------------------------------------- features
def test_sample_image_and_feature_map_pixel_convention():
    full = torch.arange(12.0).reshape(1, 1, 1, 3, 4)  # an (H, W) = (3, 4) map at image resolution
    pixels = torch.tensor([[[[0.0, 0.0], [3.0, 2.0], [1.0, 2.0], [1.5, 0.0]]]])
    got = sample_image(full, pixels, (3, 4))[0, 0, :, 0]
    assert torch.allclose(got, torch.tensor([0.0, 11.0, 9.0, 1.5]), atol=1e-5)
    # a 2 x 2 feature map over a 4 x 4 image: cell (r, c) covers pixels 2r..2r+1, its centre is pixel 2r + 0.5
    coarse = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    features = torch.stack([coarse, -coarse], dim=-1)[None, None]  # (1, 1, h, w, D = 2)
    pixels = torch.tensor([[[[0.5, 0.5], [2.5, 0.5], [1.5, 1.5], [2.5, 2.5]]]])
    got = sample_feature_map(features, pixels, (4, 4))
    assert got.shape == (1, 1, 4, 2)
    assert torch.allclose(got[0, 0, :, 0], torch.tensor([1.0, 2.0, 2.5, 4.0]))
    assert torch.allclose(sample_feature_map(features.permute(0, 1, 4, 2, 3), pixels, (4, 4), False), got)


def test_clip_distillation_loss():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 8, generator=gen)
    assert clip_distillation_loss(feats, 3.0 * feats).item() == pytest.approx(0.0, abs=1e-6)
    a = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    b = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    assert clip_distillation_loss(a, b).item() == pytest.approx((1.0 + (1 - 1 / math.sqrt(2))) / 2)
    assert clip_distillation_loss(a, b, torch.tensor([[False, True]])).item() == pytest.approx(1 - 1 / math.sqrt(2))


# ---------------------------------------------------------------------------------------- RadOcc
def test_ray_termination_kl():
    gen = torch.Generator().manual_seed(0)
    teacher = torch.rand(2, 3, 6, generator=gen, dtype=torch.float64) * 0.2
    student = torch.rand(2, 3, 6, generator=gen, dtype=torch.float64) * 0.1
    assert ray_termination_kl(teacher, teacher, eps=0.0).item() == pytest.approx(0.0, abs=1e-12)
    got = ray_termination_kl(student, teacher, eps=0.0).item()
    p = (teacher / teacher.sum(-1, keepdim=True)).numpy()
    q = (student / student.sum(-1, keepdim=True)).numpy()
    assert got == pytest.approx(rel_entr(p, q).sum(-1).mean(), rel=1e-10) and got > 0
    # eps smoothing changes little; a teacher ray with no mass is ignored, whatever the student does there
    assert ray_termination_kl(student, teacher).item() == pytest.approx(got, rel=1e-4)
    teacher2 = teacher.clone()
    teacher2[0, 0] = 0.0
    reference = rel_entr(p, q).sum(-1).reshape(-1)[1:].mean()
    assert ray_termination_kl(student, teacher2, eps=0.0).item() == pytest.approx(reference, rel=1e-10)
    # hand case: p = (1/2, 1/2, 0), q = (1/4, 1/4, 1/2) -> KL = log 2
    hand = ray_termination_kl(torch.tensor([[[0.1, 0.1, 0.2]]]), torch.tensor([[[0.3, 0.3, 0.0]]]), eps=0.0)
    assert hand.item() == pytest.approx(math.log(2))
    student.requires_grad_(True)
    ray_termination_kl(student, teacher2, min_mass=0.0).backward()  # the empty teacher ray must not give NaN
    assert torch.isfinite(student.grad).all() and torch.all(student.grad[0, 0] == 0)


def _affinity_by_loop(student: torch.Tensor, teacher: torch.Tensor, segments: torch.Tensor) -> float:
    per_segment = []
    for b in range(student.shape[0]):
        for seg in segments[b].unique().tolist():
            if seg < 0:
                continue
            idx = (segments[b] == seg).nonzero()[:, 0].tolist()
            if len(idx) < 2:
                continue
            diffs = []
            for i in idx:
                for j in idx:
                    if i != j:
                        cs = F.cosine_similarity(student[b, i], student[b, j], dim=0)
                        ct = F.cosine_similarity(teacher[b, i], teacher[b, j], dim=0)
                        diffs.append(abs(float(cs - ct)))
            per_segment.append(np.mean(diffs))
    return float(np.mean(per_segment))


def test_segment_affinity_loss():
    gen = torch.Generator().manual_seed(0)
    batch, rays, dim = 2, 12, 5
    student = torch.randn(batch, rays, dim, generator=gen, dtype=torch.float64)
    teacher = torch.randn(batch, rays, dim, generator=gen, dtype=torch.float64)
    segments = torch.tensor([[0, 0, 1, 1, 1, 0, 2, -1, 1, 0, 3, 3], [0, 1, 0, 1, 0, 1, 7, 7, 7, -1, -1, 4]])
    assert segment_affinity_loss(teacher, teacher, segments).item() == pytest.approx(0.0, abs=1e-12)
    got = segment_affinity_loss(student, teacher, segments)
    assert got.item() == pytest.approx(_affinity_by_loop(student, teacher, segments), rel=1e-10) and got.item() > 0
    # invariant to the order of the rays
    perm = torch.randperm(rays, generator=gen)
    shuffled = segment_affinity_loss(student[:, perm], teacher[:, perm], segments[:, perm])
    assert shuffled.item() == pytest.approx(got.item(), rel=1e-12)
    # cross-segment (and cross-batch) pairs do not count: rotating one segment's student features changes every
    # affinity between that segment and the others, none within it
    rotation = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))[0]
    rotated = student.clone()
    rotated[0, segments[0] == 1] = rotated[0, segments[0] == 1] @ rotation
    rotated[1, segments[1] == 0] = rotated[1, segments[1] == 0] @ rotation  # id 0 of batch 1 is not id 0 of batch 0
    assert segment_affinity_loss(rotated, teacher, segments).item() == pytest.approx(got.item(), rel=1e-10)
    # capping keeps the first rays of a large segment; mse variant; gradients flow
    assert segment_affinity_loss(student, teacher, segments, max_rays_per_segment=2).item() > 0
    assert segment_affinity_loss(student, teacher, segments, kind="mse").item() > 0
    student.requires_grad_(True)
    segment_affinity_loss(student, teacher, segments).backward()
    assert torch.isfinite(student.grad).all()
    lonely = torch.tensor([[0, 1, 2, -1, 3, 4, 5, 6, 8, 9, 10, 11]] * 2)
    assert segment_affinity_loss(student, teacher, lonely).item() == 0.0


def test_rendering_loss_config():
    config = from_mapping(RenderingLossConfig, {"depth": 0.5, "voxel_lovasz": 0.0, "affinity_kind": "mse"})
    assert config.enabled("depth") and not config.enabled("voxel_lovasz") and not config.enabled("clip")
    total, logs = config.total(
        {"voxel_ce": torch.tensor(2.0), "voxel_lovasz": torch.tensor(100.0), "depth": torch.tensor(4.0)}
    )
    assert total.item() == pytest.approx(2.0 + 0.5 * 4.0) and set(logs) == {"voxel_ce", "depth"}
    with pytest.raises(KeyError):
        config.total({"dpeth": torch.tensor(1.0)})
    with pytest.raises(ValueError):
        RenderingLossConfig(depth=-1.0)


# ---------------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("interpolation", ["trilinear", "nearest"])
def test_fit_a_free_volume_to_a_wall_through_rendering(interpolation):
    """Depth + semantic rendering losses alone put a wall of the right class at the right place."""
    torch.manual_seed(0)
    grid = GridSpec((0.0, -4.0, -1.0), (8.0, 4.0, 3.0), (0.5, 0.5, 0.5))  # 16 x 16 x 8
    wall_x, wall_class, classes = 6.0, 1, 4  # classes: 0, 1 (wall), 2, free
    camera = forward_camera((0.0, 0.0, 1.0), width=16, height=12, f=20.0)  # sees the wall at x = 6 inside the grid
    rays = rays_of(camera, dtype=torch.float32)
    target_depth = torch.full(rays.z_per_unit.shape, wall_x)  # fronto-parallel: optical depth 6 for every pixel
    target_labels = torch.full(rays.z_per_unit.shape, wall_class)
    sampler = UniformSampler(grid, num_samples=48)
    field = VoxelField(grid, interpolation)
    raw_density = torch.full((1, 1, *grid.shape), -5.0, requires_grad=True)
    logits = torch.zeros(1, classes, *grid.shape, requires_grad=True)
    optimiser = torch.optim.Adam([raw_density, logits], lr=0.5)
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        samples = sampler(rays, training=True, generator=generator)
        out = field(samples, F.softplus(raw_density), semantics=logits)
        weights, _ = weights_from_density(out.density, samples.deltas)
        depth, _ = render_depth(weights, samples, rays.z_per_unit)
        probs = render_semantics(weights, out.semantics)
        loss = depth_loss(depth, target_depth) + semantic_loss(probs, target_labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert depth_loss(depth, target_depth).item() < 0.2
    # argmax occupancy: occupied where a voxel is more likely opaque than not, with its best non-free class
    with torch.no_grad():
        density = F.softplus(raw_density)[0, 0]
        occupied = (1 - torch.exp(-density * 0.5)) > 0.5
        classes_of = logits[0, :-1].argmax(0)
    # along (almost) every pixel's ray the first occupied voxel is the wall's, x in [6, 6.5), with the wall's class;
    # the space in front of it is free (a stray foggy voxel may survive 100 steps on one ray or two)
    dense = UniformSampler(grid, num_samples=400, stratified=False)(rays_of(camera))
    idx, inside = grid.points_to_indices(dense.positions[0].numpy())
    occ = occupied.numpy()[idx[..., 0], idx[..., 1], idx[..., 2]] & inside
    assert occ.any(axis=1).all()
    first = occ.argmax(axis=1)
    hit = idx[np.arange(len(first)), first]
    assert np.mean(hit[:, 0] == 12) >= 0.95 and np.all(hit[:, 0] <= 12), np.unique(hit[:, 0], return_counts=True)
    wall = hit[hit[:, 0] == 12]
    assert np.all(classes_of.numpy()[wall[:, 0], wall[:, 1], wall[:, 2]] == wall_class)
