"""Relative-depth calibration (occ_training.labels.depth_calibration) and the depth metric (occ_ros/eval/depth.py).

Geometry and SSIM against hand-computed cases; the photometric objective on a rendered sequence (the true
depth explains the images, scaled depths do not); calibration of a simulated relative depth model
``r = a / d + b`` (+3 % noise) in frame and sequence mode, with moving vehicles among the valid pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from occ_ros.core.rig import CameraRig
from occ_ros.core.transforms import invert_transform, make_transform
from occ_ros.core.vocabulary import OCC3D
from occ_ros.datasets.synth import SynthReader
from occ_ros.eval.depth import DepthMetric, DepthResult
from occ_training.labels.depth_calibration import (
    CalibrationConfig,
    CalibrationFrame,
    ScaleShift,
    calibrate_sequence,
    calibration_loss,
    fit_scale_shift,
)
from occ_training.labels.depth_calibration import _sample_grid as sample_grid
from occ_training.labels.depth_calibration import _trimmed_mean as trimmed_mean
from occ_training.photometric import (
    SSIM_C1,
    SSIM_C2,
    backproject,
    box3,
    grid_from_homogeneous,
    photometric_error,
    project,
    ssim,
    warp_coefficients,
    warp_grid,
)
from occ_training.synth.sequence import generate
from occ_training.teachers.base import DepthMap

# the simulated relative depth model: r = A / d + B, i.e. truth scale = 1 / A, shift = -B / A
A, B, NOISE = 3.7, 0.2, 0.03
FRAMES = 3  # the smallest sequence with a middle frame (neighbours on both sides)
DYNAMIC = np.nonzero(OCC3D.dynamic_mask())[0]


@dataclass
class Synthetic:
    reader: SynthReader
    frames: list[CalibrationFrame]  # relative maps simulated from GT; valid = not sky
    depth: list[dict[str, np.ndarray]]  # ground truth, metres (0 = sky)
    semantics: list[dict[str, np.ndarray]]


def _synthetic(root: Path, seed: int) -> Synthetic:
    reader = SynthReader(generate(root, frames=FRAMES, seed=seed, preset="demo", progress=False))
    rng = np.random.default_rng(seed)
    frames, depths, sems = [], [], []
    for i in range(len(reader)):
        sample, depth, sem = reader.load(i), reader.depth(i), reader.semantics_2d(i)
        relative = {}
        for name, d in depth.items():
            inverse = np.where(d > 0, 1.0 / np.maximum(d, 1e-6), 0.0)  # sky: 1/d = 0 -> r = B
            noise = 1.0 + NOISE * rng.standard_normal(d.shape)
            relative[name] = ((A * inverse + B) * noise).astype(np.float32)
        valid = {name: s != 255 for name, s in sem.items()}  # sky excluded; moving vehicles stay in
        frames.append(CalibrationFrame(sample.images, relative, sample.world_from_ego, valid))
        depths.append(depth)
        sems.append(sem)
    return Synthetic(reader, frames, depths, sems)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Synthetic:
    """Seed 2: vehicles (lead car, oncoming traffic) cover up to ~20 % of a camera's valid pixels."""
    return _synthetic(tmp_path_factory.mktemp("calib") / "seq", seed=2)


def _depth_metrics(data: Synthetic, fits: list[dict[str, ScaleShift]]) -> DepthResult:
    metric = DepthMetric(min_depth=0.5, max_depth=80.0)
    for frame, gt, fit in zip(data.frames, data.depth, fits, strict=True):
        for name in data.reader.rig.names:
            metric.update(fit[name].apply(frame.relative[name]), gt[name])
    return metric.compute()


NAIVE = ScaleShift(scale=1.0, shift=0.0, loss=math.nan, pixels=1)  # depth = 1 / r


# ---------------------------------------------------------------------------------------- geometry
def _plane_camera() -> tuple[torch.Tensor, int, int]:
    return torch.tensor([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]], dtype=torch.float64), 80, 100


def test_backproject_and_project_hand_case():
    K, height, width = _plane_camera()
    depth = torch.full((1, height, width), 10.0, dtype=torch.float64)
    points = backproject(depth, K)
    assert points.shape == (1, height, width, 3)
    # pixel (u=70, v=20): x = (70 - 50) * 10 / 100 = 2 (right), y = (20 - 40) * 10 / 100 = -2 (up), z = 10
    assert torch.allclose(points[0, 20, 70], torch.tensor([2.0, -2.0, 10.0], dtype=torch.float64))
    assert torch.allclose(points[0, 40, 50], torch.tensor([0.0, 0.0, 10.0], dtype=torch.float64))
    uv, z = project(points, K)
    v, u = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    assert torch.allclose(uv[0, ..., 0], u.double()) and torch.allclose(uv[0, ..., 1], v.double())
    assert torch.allclose(z, depth)


def test_warp_grid_fronto_parallel_plane_pure_x_translation():
    """A plane at 10 m, the source camera 1 m to the right: every pixel moves f * 1 / 10 = 10 px left."""
    K, height, width = _plane_camera()
    src_cam_from_tgt_cam = torch.from_numpy(make_transform(np.eye(3), [-1.0, 0.0, 0.0]))  # p_src = p_tgt - (1, 0, 0)
    depth = torch.full((1, height, width), 10.0, dtype=torch.float64)
    grid, valid = warp_grid(depth, K, K, src_cam_from_tgt_cam, (height, width))
    assert grid.shape == (1, height, width, 2) and valid.shape == (1, height, width)
    u_src = (grid[0, ..., 0] + 1) / 2 * (width - 1)  # align_corners=True pixel coordinates
    v_src = (grid[0, ..., 1] + 1) / 2 * (height - 1)
    v, u = torch.meshgrid(torch.arange(height).double(), torch.arange(width).double(), indexing="ij")
    inside = u >= 10
    assert torch.allclose(u_src[inside], u[inside] - 10) and torch.allclose(v_src, v)
    assert torch.equal(valid[0], inside)  # the first 10 columns land left of the source image
    # sampling a horizontal ramp through the grid reproduces the shift exactly
    ramp = u[None, None].clone()
    warped = F.grid_sample(ramp, grid, mode="bilinear", align_corners=True)
    assert torch.allclose(warped[0, 0][inside], u[inside] - 10)
    # twice the depth halves the shift
    grid2, _ = warp_grid(depth * 2, K, K, src_cam_from_tgt_cam, (height, width))
    assert torch.allclose(((grid2[0, ..., 0] + 1) / 2 * (width - 1))[u >= 5], (u - 5)[u >= 5])


def test_grid_from_homogeneous_without_autograd_gives_the_same_grid():
    """The in-place path (no autograd: calibration sweeps) against the differentiable one (rendering losses)."""
    gen = torch.Generator().manual_seed(4)
    p = torch.randn(2, 3, 3, 5, 7, generator=gen) * torch.tensor([40.0, 30.0, 1.0])[:, None, None]
    p[0, 0, 2, 0, 0] = -1.0  # behind the camera
    with torch.no_grad():
        fast, fast_valid = grid_from_homogeneous(p, (6, 9))
    slow, slow_valid = grid_from_homogeneous(p.clone().requires_grad_(True), (6, 9))
    assert torch.equal(fast, slow.detach()) and torch.equal(fast_valid, slow_valid)
    assert not fast_valid[0, 0, 0, 0] and fast_valid.any() and not fast_valid.all()
    front = p[..., 2, :, :] > 1e-6  # grid_sample coordinates in front of the camera: 2 u / (W - 1) - 1, clamped
    u = p[..., 0, :, :] / p[..., 2, :, :]
    assert torch.allclose(fast[..., 0][front], (2 * u / 8 - 1).clamp(-2, 2)[front], atol=1e-6)


def test_calibration_sampling_grid_matches_grid_from_homogeneous():
    """The sweeps' grid (coefficients pre-normalised, written in place) against warp_coefficients + the reference."""
    K, height, width = _plane_camera()
    gen = torch.Generator().manual_seed(7)
    transforms = torch.stack(
        [
            torch.from_numpy(make_transform(np.eye(3), [0.3, -0.2, -1.5])),
            torch.from_numpy(make_transform(np.diag([-1.0, 1.0, -1.0]), [0.0, 0.0, -2.0])),  # facing away
        ]
    )[None, None]  # (C=1, T=1, S=2, 4, 4)
    a, b = warp_coefficients(K, K, transforms, height, width)  # (1, 1, 2, 3, h, w), (1, 1, 2, 3)
    inv = (0.02 + 1.5 * torch.rand(2, 1, 1, height, width, generator=gen, dtype=torch.float64)).float()
    p = a.float()[None] + b.float()[None, ..., None, None] * inv[:, :, :, None, None]
    ref_grid, ref_valid = grid_from_homogeneous(p, (height, width))
    # grid_sample units by hand: x' = 2 x / (W - 1) - z, y' = 2 y / (H - 1) - z
    norm = torch.tensor(
        [[2.0 / (width - 1), 0.0, -1.0], [0.0, 2.0 / (height - 1), -1.0], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    level = SimpleNamespace(a=torch.einsum("ij,...jhw->...ihw", norm, a).float(), b=(b @ norm.T).float())
    with torch.no_grad():
        grid, inside = sample_grid(level, inv, 2)  # type: ignore[arg-type]
    assert grid.shape == ref_grid.shape == (2, 1, 1, 2, height, width, 2)
    front = p[..., 2, :, :] > 1e-6
    assert torch.allclose(grid[front], ref_grid[front], atol=5e-5)  # float32 rounding: < 0.003 px
    assert torch.equal(inside, ref_valid[..., ::2, ::2])
    assert inside[:, :, :, 0].any() and not inside[:, :, :, 1].any()


def test_trimmed_mean_per_camera_against_sorting():
    """One kthvalue for cameras of different valid counts: each camera's mean of its lowest floor(0.8 n) losses."""
    gen = torch.Generator().manual_seed(3)
    loss = torch.rand(2, 3, 50, generator=gen, dtype=torch.float64)
    valid = torch.zeros(3, 50, dtype=torch.bool)
    valid[0, :50], valid[1, :10], valid[2, 5:17] = True, True, True  # 50, 10, 12 valid -> k = 40, 8, 9
    means, k = trimmed_mean(loss, valid, 0.8)
    assert k.tolist() == [40, 8, 9]
    for c, kc in enumerate((40, 8, 9)):
        for n in range(2):
            expected = loss[n, c][valid[c]].sort().values[:kc].mean()
            assert means[n, c].item() == pytest.approx(expected.item(), rel=1e-12)


def test_warp_grid_behind_the_camera_is_invalid():
    K, height, width = _plane_camera()
    backwards = torch.from_numpy(make_transform(np.diag([-1.0, 1.0, -1.0]), [0.0, 0.0, 0.0]))  # yaw 180 degrees
    _, valid = warp_grid(torch.full((1, height, width), 5.0, dtype=torch.float64), K, K, backwards, (height, width))
    assert not valid.any()


def test_true_depth_reconstructs_the_target_image(synth):
    """Warp frame 0 into frame 1 with the ground-truth depth: far closer to the target than with 0.5x / 2x depth."""
    s0, s1 = synth.reader.load(0), synth.reader.load(1)
    gt, sem = synth.depth[1], synth.semantics[1]
    ratios = []
    for cam in synth.reader.rig:
        T = cam.cam_from_ego @ invert_transform(s0.world_from_ego) @ s1.world_from_ego @ cam.ego_from_cam
        K = torch.from_numpy(np.array(cam.K))
        src = torch.from_numpy(s0.images[cam.name].copy()).permute(2, 0, 1)[None].float() / 255
        tgt = torch.from_numpy(s1.images[cam.name].copy()).permute(2, 0, 1)[None].float() / 255
        static = torch.from_numpy((gt[cam.name] > 0) & ~np.isin(sem[cam.name], DYNAMIC))
        errors = {}
        for factor in (1.0, 0.5, 2.0):
            depth = torch.from_numpy(np.where(gt[cam.name] > 0, gt[cam.name] * factor, 1.0))[None].double()
            grid, valid = warp_grid(depth, K, K, torch.from_numpy(T), (cam.height, cam.width))
            warped = F.grid_sample(src, grid.float(), mode="bilinear", align_corners=True)
            if factor == 1.0:
                mask = static & valid[0]
                assert mask.float().mean() > 0.3, cam.name
            errors[factor] = float((warped - tgt).abs().mean(dim=1)[0][mask].mean())
        assert errors[1.0] < 0.8 * min(errors[0.5], errors[2.0]), (cam.name, errors)
        ratios.append(errors[1.0] / min(errors[0.5], errors[2.0]))
    assert np.mean(ratios) < 0.6, ratios


def test_robust_loss_is_lowest_at_the_true_depth(synth):
    frames = [
        CalibrationFrame(f.images, {}, f.world_from_ego, {n: (s != 255) & ~np.isin(s, DYNAMIC) for n, s in sem.items()})
        for f, sem in zip(synth.frames, synth.semantics, strict=True)
    ]
    losses = {
        factor: calibration_loss(frames, [1], synth.reader.rig, [{n: d * factor for n, d in synth.depth[1].items()}])
        for factor in (1.0, 0.5, 0.8, 1.25, 2.0)
    }
    for name in synth.reader.rig.names:
        true, pixels = losses[1.0][name]
        assert pixels > 2000, name
        assert true < 0.6 * min(losses[0.8][name][0], losses[1.25][name][0]), (name, losses)
        assert true < 0.5 * min(losses[0.5][name][0], losses[2.0][name][0]), (name, losses)


# ---------------------------------------------------------------------------------------- SSIM / error
def test_ssim_identical_images_is_one_and_error_zero():
    x = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(x, x), torch.ones_like(x), atol=1e-5)
    assert torch.allclose(photometric_error(x, x), torch.zeros(2, 9, 11), atol=1e-6)


def test_ssim_hand_computed_centre_pixel():
    """3x3 images, centre pixel: its window is the whole image (no padding involved)."""
    x = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    x[0, 0, 1, 1] = 1.0
    y = 0.5 * x
    mu_x, mu_y = 1 / 9, 1 / 18
    var_x = 1 / 9 - mu_x**2  # E[x^2] - mu^2 = 8/81
    var_y = 0.25 / 9 - mu_y**2  # 2/81
    cov = 0.5 / 9 - mu_x * mu_y  # 4/81
    expected = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    )
    assert expected == pytest.approx(0.6422, abs=1e-4)
    assert float(ssim(x, y)[0, 0, 1, 1]) == pytest.approx(expected, rel=1e-9)
    # photometric error = 0.85 * (1 - SSIM) / 2 + 0.15 * |x - y| (channel mean), at the centre |x - y| = 0.5
    pe = photometric_error(x, y)
    assert float(pe[0, 1, 1]) == pytest.approx(0.85 * (1 - expected) / 2 + 0.15 * 0.5, rel=1e-9)


def test_box3_is_avg_pool2d_at_every_stride_and_in_its_gradient():
    """The separable 3x3 mean against torch's own 3x3 average pooling (an independent implementation)."""
    x = torch.rand(2, 3, 13, 17, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for stride in (1, 2, 3, 5):
        expected = F.avg_pool2d(x, 3, stride=stride)
        # avg_pool2d keeps windows that fit (floor); box3 keeps every stride-th centre (ceil): compare the common part
        got = box3(x, stride)
        assert got.shape[-2:] == (math.ceil(11 / stride), math.ceil(15 / stride))
        assert torch.allclose(got[..., : expected.shape[-2], : expected.shape[-1]], expected, rtol=0, atol=1e-12)
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    weights = torch.rand(2, 3, 11, 15, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (box3(a) * weights).sum().backward()
    (F.avg_pool2d(b, 3, stride=1) * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-12)
    # float32: the same numbers to float precision
    x32 = x.float()
    assert torch.allclose(box3(x32), F.avg_pool2d(x32, 3, stride=1), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="3x3"):
        box3(torch.zeros(1, 1, 2, 5))


def test_ssim_equals_the_avg_pool_formula_it_replaced():
    """ssim (box3) against the monodepth2 formula written with avg_pool2d."""
    gen = torch.Generator().manual_seed(3)
    x, y = torch.rand(2, 3, 10, 12, generator=gen), torch.rand(2, 3, 10, 12, generator=gen)
    pad = lambda t: F.pad(t, (1, 1, 1, 1), mode="reflect")  # noqa: E731
    mx, my = F.avg_pool2d(pad(x), 3, 1), F.avg_pool2d(pad(y), 3, 1)
    sx = F.avg_pool2d(pad(x * x), 3, 1) - mx * mx
    sy = F.avg_pool2d(pad(y * y), 3, 1) - my * my
    sxy = F.avg_pool2d(pad(x * y), 3, 1) - mx * my
    expected = ((2 * mx * my + SSIM_C1) * (2 * sxy + SSIM_C2)) / ((mx**2 + my**2 + SSIM_C1) * (sx + sy + SSIM_C2))
    assert torch.allclose(ssim(x, y), expected, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------- calibration
@pytest.mark.parametrize("mode", ["frame", "sequence", "preset"])
def test_calibration_recovers_metric_depth(synth, mode):
    """Dataclass defaults per frame / per sequence, and the label preset (config/labels/default.yaml: refinement
    on every 2nd pixel) per frame."""
    from occ_ros.core.resources import config_dir
    from occ_training.labels.pipeline import load_label_settings

    preset = load_label_settings(config_dir() / "labels" / "default.yaml")[0].calibrator
    assert preset.refine_stride == 2  # the preset this case is about
    config = preset if mode == "preset" else CalibrationConfig(mode=mode)  # type: ignore[arg-type]
    fits = calibrate_sequence(synth.frames, synth.reader.rig, config)
    assert len(fits) == FRAMES
    if mode == "sequence":
        assert all(f is fits[0] for f in fits)
    before = _depth_metrics(synth, [dict.fromkeys(synth.reader.rig.names, NAIVE)] * FRAMES)
    after = _depth_metrics(synth, fits)
    assert before.abs_rel > 0.5 and before.delta1 < 0.1
    assert after.abs_rel < 0.10, after
    assert after.delta1 > 0.9, after
    assert after.pixels > 0.9 * before.pixels  # calibrated depth covers the image
    for fit in fits:
        for name, ss in fit.items():
            assert ss.ok and ss.pixels > 1000 and 0 < ss.loss < 0.05, (name, ss)
            assert ss.scale * A == pytest.approx(1.0, abs=0.15), (name, ss)  # truth: scale = 1 / A


def test_moving_vehicles_do_not_break_calibration(tmp_path):
    """Seed 4: moving vehicles cover up to 50 % of a camera's valid (non-sky) pixels; nothing masks them."""
    from occ_training.synth.world import urban_world

    data = _synthetic(tmp_path / "seq", seed=4)
    world = urban_world(4, (FRAMES - 1) / 12.0)
    ego = world.ego.pose(0.0)[:3, 3]
    moving_near = [o for o in world.moving_objects if np.hypot(o.x - ego[0], o.y - ego[1]) < 30]
    assert len(moving_near) >= 3  # the lead and following cars at least
    dyn_fraction = max(
        float(np.isin(s, DYNAMIC)[fr.valid[n]].mean())  # type: ignore[index]
        for fr, sem in zip(data.frames, data.semantics, strict=True)
        for n, s in sem.items()
    )
    assert dyn_fraction > 0.4
    fits = calibrate_sequence(data.frames, data.reader.rig, CalibrationConfig(mode="frame"))
    after = _depth_metrics(data, fits)
    assert after.abs_rel < 0.10 and after.delta1 > 0.9, after


def test_fit_scale_shift_errors_and_uncalibratable_camera(synth):
    rig = synth.reader.rig
    with pytest.raises(ValueError, match="no neighbour"):
        fit_scale_shift(synth.frames[:1], [0], rig)
    with pytest.raises(ValueError, match="outside"):
        fit_scale_shift(synth.frames, [FRAMES], rig)
    with pytest.raises(ValueError, match="at least one target"):
        fit_scale_shift(synth.frames, [], rig)
    with pytest.raises(ValueError, match="at least two frames"):
        calibrate_sequence(synth.frames[:1], rig)
    bad = CalibrationFrame(synth.frames[0].images, {}, synth.frames[0].world_from_ego)
    with pytest.raises(ValueError, match="no relative depth"):
        fit_scale_shift([bad, synth.frames[1]], [0], rig)
    # a camera with no valid pixel cannot be calibrated: NaN, pixels = 0, no depth -- the others still are
    blind = dict(synth.frames[1].valid or {})
    blind["CAM_BACK"] = np.zeros_like(blind["CAM_BACK"])
    frames = list(synth.frames[:3])
    frames[1] = CalibrationFrame(frames[1].images, frames[1].relative, frames[1].world_from_ego, blind)
    fit = fit_scale_shift(frames, [1], rig, CalibrationConfig(refine_rounds=1))
    assert not fit["CAM_BACK"].ok and fit["CAM_BACK"].pixels == 0 and math.isnan(fit["CAM_BACK"].scale)
    assert not fit["CAM_BACK"].apply(frames[1].relative["CAM_BACK"]).any()
    assert fit["CAM_FRONT"].ok and fit["CAM_FRONT"].scale * A == pytest.approx(1.0, abs=0.15)


def test_scale_shift_apply_matches_depth_map_convention():
    rel = np.array([[1.0, 2.0], [0.5, -1.0]], dtype=np.float32)
    ss = ScaleShift(scale=0.5, shift=0.1, loss=0.0, pixels=4)
    expected = DepthMap(rel, "relative", np.ones_like(rel, dtype=bool)).to_metric(0.5, 0.1)
    assert np.array_equal(ss.apply(rel), expected)
    # 1/d = 0.5 r + 0.1: r = 1 -> 1/0.6 m, r = 2 -> 1/1.1 m, r = 0.5 -> 1/0.35 m, r = -1 -> negative -> 0
    assert np.allclose(ss.apply(rel), [[1 / 0.6, 1 / 1.1], [1 / 0.35, 0.0]])
    assert np.allclose(ss.apply(rel, max_depth=2.0), [[1 / 0.6, 1 / 1.1], [0.0, 0.0]])
    assert np.allclose(ss.apply(rel, valid=np.array([[True, False], [True, True]])), [[1 / 0.6, 0], [1 / 0.35, 0]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "window"}, "mode must be one of"),
        ({"neighbours": ()}, "distinct non-zero"),
        ({"neighbours": (0, 1)}, "distinct non-zero"),
        ({"neighbours": (1, 1)}, "distinct non-zero"),
        ({"neighbours": ("a",)}, "integer frame offsets"),
        ({"max_width": 4}, "max_width"),
        ({"ssim_weight": 1.5}, "ssim_weight"),
        ({"trim_quantile": 0.0}, "trim_quantile"),
        ({"anchor_percentiles": (95.0, 5.0)}, "anchor_percentiles"),
        ({"search_planes": 1}, "search_planes"),
        ({"search_stride": 0}, "search_stride"),
        ({"refine_stride": 0}, "refine_stride"),
        ({"refine_iters": -1}, "refine_iters"),
        ({"refine_lr": 0.0}, "refine_lr"),
        ({"refine_radius": -0.1}, "refine_radius"),
        ({"min_depth": 0.0}, "min_depth"),
        ({"min_depth": 10.0, "max_depth": 5.0}, "min_depth"),
        ({"min_pixels": 0}, "min_pixels"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CalibrationConfig(**kwargs)


def test_config_accepts_list_neighbours():
    assert CalibrationConfig(neighbours=[-2, 1]).neighbours == (-2, 1)  # type: ignore[arg-type]


def test_cross_camera_needs_one_image_size(synth):
    cams = list(synth.reader.rig)
    small = cams[0].resized(100, 56)
    rig = CameraRig((small, *cams[1:]))
    with pytest.raises(ValueError, match="one image size"):
        fit_scale_shift(synth.frames, [1], rig, CalibrationConfig(cross_camera=True))


# ---------------------------------------------------------------------------------------- depth metric
def test_depth_metric_hand_computed():
    pred = np.array([[1.8, 4.0], [1.0, 0.0]])
    gt = np.array([[1.0, 4.0], [2.0, 3.0]])  # (1, 1): no prediction -> not evaluated
    metric = DepthMetric()
    metric.update(pred, gt)
    r = metric.compute()
    # pairs (1.8, 1), (4, 4), (1, 2); ratios max(p/g, g/p) = 1.8, 1, 2
    assert r.pixels == 3 and r.samples == 1
    assert r.abs_rel == pytest.approx((0.8 / 1 + 0 + 1 / 2) / 3)
    assert r.sq_rel == pytest.approx((0.64 / 1 + 0 + 1 / 2) / 3)
    assert r.rmse == pytest.approx(math.sqrt((0.64 + 0 + 1) / 3))
    assert (r.delta1, r.delta2, r.delta3) == pytest.approx((1 / 3, 1 / 3, 2 / 3))  # 1.25, 1.5625, 1.953
    assert r.to_dict()["abs_rel"] == pytest.approx(r.abs_rel)


def test_depth_metric_mask_and_depth_caps():
    pred = np.array([[1.0, 2.0, 3.0, 50.0]])
    gt = np.array([[0.4, 2.0, 6.0, 100.0]])
    capped = DepthMetric(min_depth=0.5, max_depth=80.0)
    capped.update(pred, gt)
    assert capped.compute().pixels == 2  # 0.4 m and 100 m ground truth are outside the range
    assert capped.compute().abs_rel == pytest.approx((0 + 0.5) / 2)
    masked = DepthMetric()
    masked.update(pred, gt, mask=np.array([[False, False, True, False]]))
    assert masked.compute().pixels == 1 and masked.compute().abs_rel == pytest.approx(0.5)
    with pytest.raises(ValueError, match="mask shape"):
        masked.update(pred, gt, mask=np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="differs"):
        masked.update(pred, gt[:, :2])
    with pytest.raises(ValueError, match="min_depth"):
        DepthMetric(min_depth=5.0, max_depth=1.0)


def test_depth_metric_merge_equals_single_pass_and_reset():
    rng = np.random.default_rng(0)
    images = [(rng.uniform(1, 30, (6, 7)), rng.uniform(0, 30, (6, 7))) for _ in range(4)]
    single, first, second = DepthMetric(0.5, 80.0), DepthMetric(0.5, 80.0), DepthMetric(0.5, 80.0)
    for i, (pred, gt) in enumerate(images):
        single.update(pred, gt)
        (first if i < 2 else second).update(pred, gt)
    first.merge(second)
    a, b = single.compute(), first.compute()
    assert a.pixels == b.pixels and a.samples == b.samples == 4
    for field in ("abs_rel", "sq_rel", "rmse", "delta1", "delta2", "delta3"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-12)
    with pytest.raises(ValueError, match="same min_depth"):
        first.merge(DepthMetric())
    first.reset()
    assert first.compute().pixels == 0


def test_depth_metric_empty_is_nan():
    """No evaluated pixel: every score NaN (None in to_dict), nothing raises -- as an absent class in Occ3D."""
    metric = DepthMetric()
    metric.update(np.zeros((2, 2)), np.ones((2, 2)))  # no prediction anywhere
    r = metric.compute()
    assert r.pixels == 0 and r.samples == 1
    assert all(math.isnan(getattr(r, f)) for f in ("abs_rel", "sq_rel", "rmse", "delta1", "delta2", "delta3"))
    assert r.to_dict()["abs_rel"] is None and r.to_dict()["pixels"] == 0
