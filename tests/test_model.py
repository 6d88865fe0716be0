"""The occupancy network: view-transform geometry, calibration inputs, shapes, ONNX parity, pretrained weights."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from occ_ros.core.config import ConfigError, from_mapping
from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import surround_rig
from occ_ros.model.backbone import PretrainedError, ResNetBackbone
from occ_ros.model.network import ModelConfig, OccupancyNetwork, flops, predict_labels
from occ_ros.model.view_transform import VoxelSampler, depth_bin_weight, pillar_points, project_voxels

# Optical frame from ego: x right = -y ego, y down = -z ego, z forward = +x ego.
OPTICAL_FROM_EGO = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
H, W = 112, 200  # the demo image size; not a multiple of 16 in width (padded to 208 -> 13 feature columns)
FEATURE_SIZE = (7, 13)
K_FRONT = np.array([[100.0, 0, 99.5], [0, 100.0, 55.5], [0, 0, 1]])
TINY = {"backbone_channels": 8, "feature_channels": 8, "bev_channels": 8, "conv3d_channels": 4, "z_samples": 2}


def _front_camera(height_m: float = 1.5, yaw_deg: float = 0.0) -> np.ndarray:
    """cam_from_ego of a camera at (0, 0, height_m) looking along ego +x rotated by ``yaw_deg`` about z."""
    yaw = np.deg2rad(yaw_deg)
    ego_from_body = np.eye(4)
    ego_from_body[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    ego_from_body[2, 3] = height_m
    return OPTICAL_FROM_EGO @ np.linalg.inv(ego_from_body)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float32)


def _tiny_model(**overrides) -> OccupancyNetwork:
    torch.manual_seed(0)
    return OccupancyNetwork(ModelConfig(**{**TINY, **overrides})).eval()


# ---------------------------------------------------------------------------------------------- geometry
def test_projection_matches_hand_computed_pixel_and_normalised_coordinates():
    points = _t(
        [
            [10.0, -1.0, 1.0],  # in view: hand-computed below
            [-10.0, 0.0, 1.5],  # behind the camera
            [10.0, -20.0, 1.5],  # far right of the image (u = 299.5)
            [10.0, -9.99, 1.5],  # u = 199.4: last real column
            [10.0, -10.01, 1.5],  # u = 199.6: in the padded part of the feature map, not in the image
            [0.05, 0.0, 1.5],  # in front but closer than min_depth
        ]
    )
    K = _t(K_FRONT)[None, None]
    T = _t(_front_camera())[None, None]
    grid, valid, depth = project_voxels(points, K, T, (H, W), FEATURE_SIZE, stride=16, min_depth=0.1)
    assert grid.shape == (1, 1, 6, 2) and valid.shape == (1, 1, 6)
    # Point 0 relative to the camera: (10, -1, -0.5) ego -> optical (x, y, z) = (1, 0.5, 10)
    # u = 100 * 1 / 10 + 99.5 = 109.5, v = 100 * 0.5 / 10 + 55.5 = 60.5.
    # The 7 x 13 stride-16 map covers 112 x 208 pixels: x = 2 (u + 0.5) / 208 - 1, y = 2 (v + 0.5) / 112 - 1.
    assert grid[0, 0, 0].tolist() == pytest.approx([220 / 208 - 1, 122 / 112 - 1], abs=1e-6)
    # ... i.e. feature-map column (u + 0.5) / 16 - 0.5 = 6.375 and row 3.3125 under align_corners=False
    fx = ((grid[0, 0, 0, 0] + 1) * FEATURE_SIZE[1] - 1) / 2
    fy = ((grid[0, 0, 0, 1] + 1) * FEATURE_SIZE[0] - 1) / 2
    assert (float(fx), float(fy)) == pytest.approx((6.375, 3.3125), abs=1e-5)
    assert valid[0, 0].tolist() == [True, False, False, True, False, False]
    # the front camera looks along ego +x, so the optical-axis depth is the point's x
    assert depth[0, 0].tolist() == pytest.approx([10.0, -10.0, 10.0, 10.0, 10.0, 0.05], abs=1e-5)
    assert grid.abs().max() <= 2.0  # invalid points are clamped, never inf / nan
    # stride=None infers 16 only from exact multiples
    with pytest.raises(ValueError, match="stride"):
        project_voxels(points, K, T, (H, W), FEATURE_SIZE)
    g_exact, _, _ = project_voxels(points, K, T, (112, 208), FEATURE_SIZE)
    assert torch.allclose(g_exact[0, 0, 0], grid[0, 0, 0])


def test_voxel_sampler_reads_the_feature_cell_a_point_projects_onto_and_averages_seeing_cameras():
    # One BEV cell centred at ego (10, 4.4) with one height sample at z = 3.1: relative to the camera
    # (10, 4.4, 1.6) -> optical (-4.4, -1.6, 10) -> u = 55.5 = 16 * 3 + 7.5, v = 39.5 = 16 * 2 + 7.5, the centre
    # of feature cell (row 2, column 3).
    grid = GridSpec((9.6, 4.0, 2.7), (10.4, 4.8, 3.5), (0.8, 0.8, 0.8))
    assert pillar_points(grid, 1).reshape(3).tolist() == pytest.approx([10.0, 4.4, 3.1])
    sampler = VoxelSampler(grid, z_samples=1, image_size=(H, W), feature_size=FEATURE_SIZE, stride=16)
    h, w = FEATURE_SIZE
    cell_value = torch.arange(h * w, dtype=torch.float32).reshape(h, w)  # value r * 13 + c
    front, back = _t(_front_camera()), _t(_front_camera(yaw_deg=180.0))
    K = _t(K_FRONT).expand(1, 3, 3, 3)
    # camera 0 and 2 look forward (camera 2's features are camera 0's + 100), camera 1 looks backward
    feats = torch.stack([cell_value, cell_value + 7, cell_value + 100])[:, None].repeat(1, 2, 1, 1)  # (3, 2, h, w)
    feats[:, 1] *= -1
    T = torch.stack([front, back, front])[None]
    bev = sampler(feats, K, T)
    assert bev.shape == (1, 2, 1, 1)
    expected = (2 * 13 + 3) + 50.0  # mean over the two cameras that see it; the backward one is ignored
    assert bev[0, :, 0, 0].tolist() == pytest.approx([expected, -expected], abs=1e-4)
    # a point no camera sees gets zeros
    bev_none = sampler(feats, K, torch.stack([back, back, back])[None])
    assert bev_none.abs().max() == 0


def test_voxel_sampler_at_output_stride_8_reads_the_stride_8_cell():
    # Ego point (10, 4.8, 3.5), camera at (0, 0, 1.5): optical (-4.8, -2.0, 10) -> u = 51.5 = 8 * 6 + 3.5,
    # v = 35.5 = 8 * 4 + 3.5, the centre of stride-8 cell (row 4, column 6) of a 14 x 25 map (200 = 8 * 25).
    grid = GridSpec((9.6, 4.4, 3.1), (10.4, 5.2, 3.9), (0.8, 0.8, 0.8))
    assert ResNetBackbone.feature_size(H, W, 8) == (14, 25)
    sampler = VoxelSampler(grid, z_samples=1, image_size=(H, W), feature_size=(14, 25), stride=8)
    feats = torch.arange(14 * 25, dtype=torch.float32).reshape(1, 1, 14, 25)  # value r * 25 + c
    bev = sampler(feats, _t(K_FRONT).expand(1, 1, 3, 3), _t(_front_camera())[None, None])
    assert bev[0, 0, 0, 0].item() == pytest.approx(4 * 25 + 6, abs=1e-4)


def _all_camera_mean(sampler: VoxelSampler, feats, K, T, probs=None, depth_max=0.0):
    """The view transform as first written: every camera's map sampled at every point, masked, averaged."""
    grid, valid, depth = project_voxels(sampler.points, K, T, sampler.image_size, sampler.feature_size, sampler.stride)
    cams = K.shape[1]
    out = torch.nn.functional.grid_sample(feats, grid, align_corners=False).reshape(
        -1, cams, feats.shape[1], grid.shape[2]
    )
    if probs is not None:
        p = torch.nn.functional.grid_sample(probs, grid, align_corners=False).reshape(
            -1, cams, probs.shape[1], grid.shape[2]
        )
        out = torch.cat([out, depth_bin_weight(p, depth, depth_max).unsqueeze(2)], dim=2)
    mask = valid.unsqueeze(2).float()
    mean = (out * mask).sum(1) / mask.sum(1).clamp(min=1)
    return mean.reshape(1, -1, *sampler.bev_size), valid


@pytest.mark.parametrize("depth_bins", [0, 5])
def test_the_mosaic_sampler_equals_the_all_camera_mean_on_a_six_camera_surround_rig(depth_bins):
    torch.manual_seed(1)
    cfg = ModelConfig(**{**TINY, "z_samples": 3})
    K, T = (_t(a)[None] for a in surround_rig(6, H, W))
    h, w = cfg.feature_size
    feats = torch.randn(6, 5, h, w)
    probs = torch.rand(6, depth_bins, h, w).softmax(1) if depth_bins else None
    sampler = VoxelSampler(cfg.grid_spec, 3, (H, W), (h, w), stride=16, views_per_point=2)
    everyone = VoxelSampler(cfg.grid_spec, 3, (H, W), (h, w), stride=16, views_per_point=6)
    ref, valid = _all_camera_mean(sampler, feats, K, T, probs, 40.0)
    seen_by = valid.sum(1)[0]
    assert int((seen_by == 2).sum()) > 100 and int(seen_by.max()) == 2  # overlaps exist; never three cameras here
    # float32 coordinates normalised over the taller mosaic (V * N * (h + 1) rows) resolve ~1e-5 of a row
    assert torch.allclose(sampler(feats, K, T, probs, 40.0), ref, atol=1e-4)
    assert torch.allclose(everyone(feats, K, T, probs, 40.0), ref, atol=1e-4)


def test_sampling_at_a_map_edge_reads_zeros_beyond_it_not_the_next_camera():
    # Two front cameras; a point 10 m ahead at z = 0 projects to v = 10 t + 55.5 from a camera at height t: into
    # the bottom image row (v = 111.4, t = 5.59) or the top one (v = -0.4, t = -5.59), where bilinear sampling
    # reaches half a cell past the map. With zero padding that part reads 0, never the neighbouring camera's map.
    grid = GridSpec((9.6, -0.4, -0.25), (10.4, 0.4, 0.25), (0.8, 0.8, 0.5))  # one cell, centre (10, 0, 0)
    sampler = VoxelSampler(grid, z_samples=1, image_size=(H, W), feature_size=FEATURE_SIZE, stride=16)
    K = _t(K_FRONT).expand(1, 2, 3, 3)
    low, high = _t(_front_camera(height_m=5.59)), _t(_front_camera(height_m=-5.59))
    away = _t(_front_camera(yaw_deg=180.0))  # looks backwards: does not see the point

    def maps(v0: float, v1: float) -> torch.Tensor:
        return torch.stack([torch.full((1, *FEATURE_SIZE), v0), torch.full((1, *FEATURE_SIZE), v1)])

    # camera 0 at its bottom edge: row (111.4 + 0.5) / 16 - 0.5 = 6.49375 of rows 0-6; row 7 is padding
    bottom = sampler(maps(0.0, 1000.0), K, torch.stack([low, away])[None])
    assert bottom.item() == 0.0
    # camera 1 at its top edge: row -0.49375, weight 0.50625 on row 0 and 0.49375 on row -1 (padding)
    top = sampler(maps(7.0, 1000.0), K, torch.stack([away, high])[None])
    assert top.item() == pytest.approx(1000.0 * 0.50625, rel=1e-4)


def test_a_point_seen_by_three_cameras_is_sampled_from_the_lowest_indexed_views_per_point():
    grid = GridSpec((9.6, 4.0, 2.7), (10.4, 4.8, 3.5), (0.8, 0.8, 0.8))  # the cell of the averaging test above
    feats = torch.stack([torch.full((1, *FEATURE_SIZE), v) for v in (1.0, 10.0, 100.0)])
    K = _t(K_FRONT).expand(1, 3, 3, 3)
    T = _t(_front_camera()).expand(1, 3, 4, 4)  # three cameras in one place: all see the point
    values = {}
    for views in (1, 2, 3):
        sampler = VoxelSampler(
            grid, z_samples=1, image_size=(H, W), feature_size=FEATURE_SIZE, stride=16, views_per_point=views
        )
        values[views] = sampler(feats, K, T).item()
    assert values == pytest.approx({1: 1.0, 2: 5.5, 3: 37.0})
    with pytest.raises(ValueError, match="views_per_point"):
        VoxelSampler(grid, 1, (H, W), FEATURE_SIZE, stride=16, views_per_point=0)


def test_depth_bin_weight_is_the_interpolated_probability_of_the_points_own_depth_over_the_peak():
    # 8 bins over 16 m: bin k covers [2k, 2k + 2), centre 2k + 1.
    peaked = torch.zeros(8, 1)
    peaked[3] = 0.8
    peaked[4] = 0.2
    depth = torch.tensor([7.0, 8.0, 9.0, 11.0, 0.3, 40.0])
    weight = depth_bin_weight(peaked.expand(8, 6), depth, 16.0)
    # 7 m: bin 3's centre -> 0.8 / 0.8; 8 m: halfway 3-4 -> (0.4 + 0.1) / 0.8; 9 m: bin 4 -> 0.2 / 0.8;
    # 11 m: bin 5 -> 0; 0.3 m: clamped to bin 0 -> 0; 40 m: clamped to bin 7 -> 0
    assert weight.tolist() == pytest.approx([1.0, 0.625, 0.25, 0.0, 0.0, 0.0])
    flat = torch.full((8, 6), 1 / 8)
    assert depth_bin_weight(flat, depth, 16.0).tolist() == pytest.approx([1.0] * 6)


def test_depth_aware_sampling_weights_the_features_by_the_depth_distribution():
    # The point of the stride-8 test at optical depth 10 m; 10 bins over 20 m put 10 m on the edge of bins 4 and 5.
    grid = GridSpec((9.6, 4.4, 3.1), (10.4, 5.2, 3.9), (0.8, 0.8, 0.8))
    sampler = VoxelSampler(grid, z_samples=1, image_size=(H, W), feature_size=(14, 25), stride=8)
    feats = torch.arange(14 * 25, dtype=torch.float32).reshape(1, 1, 14, 25)
    probs = torch.zeros(1, 10, 14, 25)
    probs[:, 5] = 0.6  # everywhere: bin 5 (10-12 m) 0.6, bin 9 0.4
    probs[:, 9] = 0.4
    args = (feats, _t(K_FRONT).expand(1, 1, 3, 3), _t(_front_camera())[None, None])
    bev = sampler(*args, depth_probs=probs, depth_max=20.0)
    assert bev.shape == (1, 2, 1, 1)
    # the feature, then the weight (0.5 * 0 + 0.5 * 0.6) / 0.6 = 0.5
    assert bev[0, :, 0, 0].tolist() == pytest.approx([106.0, 0.5], abs=1e-4)


@pytest.mark.parametrize(("stride", "size"), [(16, (7, 13)), (8, (14, 25))])
def test_backbone_output_stride_gives_the_cells_that_cover_the_image(stride, size):
    backbone = ResNetBackbone(18, base_channels=8, out_channels=6, output_stride=stride).eval()
    padded = torch.zeros(2, 3, 112, 208)  # 112 x 200 padded to multiples of 16
    with torch.no_grad():
        out = backbone(padded, image_size=(H, W))
    assert out.shape == (2, 6, *size)
    model = _tiny_model(output_stride=stride)
    assert model.config.feature_size == size and model.sampler.stride == stride
    with torch.no_grad():
        assert model(*model.example_inputs(1))["semantics"].shape == (1, 18, 80, 80, 8)


# ---------------------------------------------------------------------------------------------- calibration inputs
def test_calibration_is_an_input_and_camera_order_does_not_matter():
    model = _tiny_model(
        image_height=64,
        image_width=96,
        grid={"range_min": [-16, -16, -1], "range_max": [16, 16, 5.4], "voxel_size": [1.0, 1.0, 0.8]},
    )
    torch.manual_seed(1)
    images, K, T = model.example_inputs(1)
    images = torch.randn_like(images)
    with torch.no_grad():
        base = model(images, K, T)["semantics"]
        K2 = K.clone()
        K2[:, :, 0, 0] *= 1.3
        T2 = T.clone()
        T2[:, :, 2, 3] += 0.7  # move every camera 0.7 m along its optical axis
        assert (model(images, K2, T)["semantics"] - base).abs().max() > 1e-3
        assert (model(images, K, T2)["semantics"] - base).abs().max() > 1e-3
        perm = torch.tensor([3, 0, 5, 1, 4, 2])
        permuted = model(images[:, perm], K[:, perm], T[:, perm])["semantics"]
    assert torch.allclose(permuted, base, atol=1e-5)


# ---------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("neck", ["bev", "conv3d"])
@pytest.mark.parametrize("clip_dim", [0, 12])
def test_output_shapes_on_the_demo_grid(neck, clip_dim):
    model = _tiny_model(neck=neck, clip_dim=clip_dim)
    assert model.config.grid_spec == GridSpec.demo() and model.config.feature_size == FEATURE_SIZE
    images, K, T = model.example_inputs(2)
    assert images.shape == (2, 6, 3, 112, 200)
    with torch.no_grad():
        out = model(images, K, T)
    assert out["semantics"].shape == (2, 18, 80, 80, 8)
    assert out["density"].shape == (2, 1, 80, 80, 8)
    assert out["density"].min() >= 0
    if clip_dim:
        assert out["features"].shape == (2, clip_dim, 80, 80, 8)
    else:
        assert "features" not in out
    labels = predict_labels(out)
    assert labels.shape == (2, 80, 80, 8) and labels.dtype == torch.uint8
    assert model.parameter_count() > 0
    with pytest.raises(ValueError, match="images must be"):
        model(images[..., :100], K, T)


def test_flops_are_counted_without_computing():
    estimate = flops(ModelConfig(**TINY))
    assert estimate.flops > 0 and estimate.macs == estimate.flops // 2
    assert {"backbone", "neck", "semantic_head"} <= set(estimate.by_module)


# ---------------------------------------------------------------------------------------------- ONNX
def _to_onnx(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path, outputs: list[str]):
    """``module`` traced to ONNX opset 17 at ``path`` with the network's input names."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        # dynamo=False: the torch.export-based exporter needs onnxscript, and the TorchScript exporter
        # gives a static, constant-folded graph.
        torch.onnx.export(
            module,
            inputs,
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["images", "K", "cam_from_ego"],
            output_names=outputs,
        )
    return path


@pytest.mark.parametrize(("output_stride", "depth_bins"), [(16, 0), (8, 6)])
def test_onnx_export_matches_pytorch_and_uses_only_2d_grid_sample(tmp_path, output_stride, depth_bins):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _tiny_model(clip_dim=4, output_stride=output_stride, depth_bins=depth_bins)
    inputs = model.example_inputs(1)
    path = _to_onnx(model, inputs, tmp_path / "occ.onnx", ["semantics", "density", "features"])
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*graph.value_info, *graph.input, *graph.output]}
    grid_samples = [n for n in graph.node if n.op_type == "GridSample"]
    # per height sample (2), one per camera slot (views_per_point = 2) on the mosaic of the cameras' feature maps
    # (and one more on their depth-probability maps)
    assert len(grid_samples) == 2 * 2 * (2 if depth_bins else 1)
    assert all(ranks[n.input[0]] == 4 and ranks[n.input[1]] == 4 for n in grid_samples)
    assert not {n.op_type for n in graph.node} & {"Loop", "If", "ScatterND", "ScatterElements", "NonZero"}
    topk = [n for n in graph.node if n.op_type == "TopK"]  # the view choice: K must be a constant for TensorRT
    consts = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    assert len(topk) == 2 and all(n.input[1] in consts for n in topk)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(["images", "K", "cam_from_ego"], inputs, strict=True)}
    semantics, density, features = session.run(["semantics", "density", "features"], feeds)
    with torch.no_grad():
        ref = model(*inputs)
    assert np.abs(semantics - ref["semantics"].numpy()).max() < 1e-4
    assert np.abs(density - ref["density"].numpy()).max() < 1e-4
    assert features.shape == tuple(ref["features"].shape)


def test_the_decision_bias_moves_the_argmax_in_the_deployed_graph_and_its_onnx(tmp_path):
    """labels = argmax(semantics + decision_bias), by hand from the raw logits, in PyTorch and ONNX Runtime."""
    ort = pytest.importorskip("onnxruntime")
    from occ_ros.model.deployed import DeployedNetwork

    model = _tiny_model()
    inputs = model.example_inputs(1)
    with torch.no_grad():
        raw = model(*inputs)["semantics"][0].numpy()
    bias = np.zeros(18, np.float32)
    bias[3], bias[17] = 0.05, -0.05  # class 3 wins wherever it is within 0.1 of free, and so on
    expected = (raw + bias[:, None, None, None]).argmax(axis=0)
    assert (expected != raw.argmax(axis=0)).sum() > 0  # the bias matters for this input
    model.decision_bias.copy_(torch.from_numpy(bias))
    deployed = DeployedNetwork(model, ("labels", "confidence"))
    with torch.no_grad():
        labels, _ = deployed(*inputs)
    np.testing.assert_array_equal(labels[0].numpy(), expected)
    path = _to_onnx(deployed, inputs, tmp_path / "deployed.onnx", ["labels", "confidence"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(["images", "K", "cam_from_ego"], inputs, strict=True)}
    onnx_labels = session.run(["labels"], feeds)[0][0]
    assert (onnx_labels == expected).mean() >= 0.999
    assert predict_labels({"semantics": torch.from_numpy(raw)[None]}, model.decision_bias)[0].numpy().tolist() == (
        expected.tolist()
    )


def test_checkpoints_without_a_decision_bias_load_with_zeros_and_other_keys_stay_strict():
    state = _tiny_model().state_dict()
    del state["decision_bias"]
    fresh = _tiny_model()
    fresh.decision_bias.fill_(7.0)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.decision_bias, torch.zeros(18))
    del state["semantic_head.conv.weight"]
    with pytest.raises(RuntimeError, match="semantic_head.conv.weight"):
        fresh.load_state_dict(state)


# ---------------------------------------------------------------------------------------------- pretrained weights
def _torchvision_resnet18_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's ``resnet18().state_dict()``, written out from its architecture."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)

    bn("bn1", 64)
    cin = 64
    for layer, c in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{layer}.{block}"
            shapes[f"{p}.conv1.weight"] = (c, cin if block == 0 else c, 3, 3)
            bn(f"{p}.bn1", c)
            shapes[f"{p}.conv2.weight"] = (c, c, 3, 3)
            bn(f"{p}.bn2", c)
            if block == 0 and cin != c:
                shapes[f"{p}.downsample.0.weight"] = (c, cin, 1, 1)
                bn(f"{p}.downsample.1", c)
        cin = c
    shapes["fc.weight"] = (1000, 512)
    shapes["fc.bias"] = (1000,)
    return shapes


def test_load_pretrained_round_trip_and_torchvision_layout(tmp_path):
    torch.manual_seed(0)
    source = ResNetBackbone(18, 16, 8)
    path = tmp_path / "own.pth"
    torch.save(source.state_dict(), path)
    target = ResNetBackbone(18, 16, 8)
    report = target.load_pretrained(path)
    assert not report.ignored and not report.kept
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in source.state_dict().items())
    # a full network checkpoint (keys under "backbone.") wrapped like a training checkpoint
    net = _tiny_model()
    torch.save({"state_dict": net.state_dict()}, tmp_path / "net.pth")
    ResNetBackbone(18, 8, 8).load_pretrained(tmp_path / "net.pth")

    # torchvision's ImageNet resnet18 layout (no num_batches_tracked, as in its published files)
    shapes = _torchvision_resnet18_shapes()
    tv_state = {k: torch.randn(s) for k, s in shapes.items()}
    tv_path = tmp_path / "resnet18-imagenet.pth"
    torch.save(tv_state, tv_path)
    backbone = ResNetBackbone(18, 64, 32)
    report = backbone.load_pretrained(tv_path)
    assert set(report.ignored) == {k for k in shapes if k.startswith(("layer4.", "fc."))}
    assert {k.split(".")[0] for k in report.kept} <= {"fpn", "bn1", "layer1", "layer2", "layer3"}
    assert all(k.startswith("fpn.") or k.endswith("num_batches_tracked") for k in report.kept)
    own = backbone.state_dict()
    trunk = [k for k in shapes if not k.startswith(("layer4.", "fc."))]
    assert trunk and all(torch.equal(own[k], tv_state[k]) for k in trunk)


def test_load_pretrained_errors_name_the_file_and_the_keys(tmp_path):
    state = ResNetBackbone(18, 16, 8).state_dict()
    del state["bn1.weight"], state["layer2.0.downsample.0.weight"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(PretrainedError) as err:
        ResNetBackbone(18, 16, 8).load_pretrained(path)
    message = str(err.value)
    assert str(path) in message and "bn1.weight" in message and "layer2.0.downsample.0.weight" in message
    # wrong width: shape mismatches; wrong depth: unexpected keys (resnet34 has layer1.2)
    with pytest.raises(PretrainedError, match=r"shape mismatches.*conv1\.weight: file \(16, 3, 7, 7\)"):
        ResNetBackbone(18, 32, 8).load_pretrained(_save(tmp_path, 18, 16))
    with pytest.raises(PretrainedError, match=r"unexpected keys.*layer1\.2\.conv1\.weight"):
        ResNetBackbone(18, 16, 8).load_pretrained(_save(tmp_path, 34, 16))
    with pytest.raises(PretrainedError, match="no such file"):
        ResNetBackbone(18, 16, 8).load_pretrained(tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match=str(garbage)):
        ResNetBackbone(18, 16, 8).load_pretrained(garbage)


def _save(tmp_path, depth: int, base: int):
    path = tmp_path / f"r{depth}_{base}.pth"
    torch.save(ResNetBackbone(depth, base, 8).state_dict(), path)
    return path


# ---------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"neck": "transformer"}, "neck"),
        ({"image_height": 16}, "image_height"),
        ({"image_width": 0}, "image_width"),
        ({"backbone_depth": 50}, "backbone_depth"),
        ({"z_samples": 0}, "z_samples"),
        ({"output_stride": 4}, "output_stride"),
        ({"num_classes": 1}, "num_classes"),
        ({"clip_dim": -1}, "clip_dim"),
        ({"grid": "kitti"}, "grid"),
        ({"bev_stages": 6}, "bev_stages"),  # 80 is not divisible by 32
    ],
)
def test_config_errors_name_the_field(settings, field):
    with pytest.raises(ConfigError, match=rf"model\.{field}|ModelConfig\.{field}"):
        from_mapping(ModelConfig, settings, "model")


def test_config_round_trips_through_plain_data():
    cfg = ModelConfig.occ3d(neck="conv3d", clip_dim=512)
    assert cfg.grid_spec.shape == (200, 200, 16) and cfg.feature_size == (16, 44)
    again = from_mapping(ModelConfig, cfg.to_dict(), "model")
    assert again == cfg
    assert from_mapping(ModelConfig, {"grid": "demo"}).grid == GridSpec.demo()
