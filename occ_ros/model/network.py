"""The camera-only 3D semantic occupancy network (docs/model.md).

Data flow for a batch of B rigs of N cameras::

    images (B, N, 3, H, W) --pad to x16, flatten--> (B*N, 3, H16, W16)
        --ResNetBackbone--> (B*N, F, H16/16, W16/16)
        --VoxelSampler(K, cam_from_ego)--> BEV (B, F * z_samples, X, Y)
        --neck "bev":    residual 2D BEV encoder  --> (B, bev_channels, X, Y)  --2D heads, channel-to-height-->
          neck "conv3d": 2D stem, 1x1 conv + reshape to (B, C3, Z, X, Y), 3D convs --1x1x1 Conv3d heads-->
        semantics (B, num_classes, X, Y, Z), density (B, 1, X, Y, Z), features (B, clip_dim, X, Y, Z)

The grid is in the ego frame (x forward, y left, z up), outputs are indexed ``[x, y, z]`` like the
labels (``occ_ros.core.grid``). Intrinsics and extrinsics are forward inputs. Every op exports to
ONNX opset 17 and TensorRT: 2D convolutions, 3D convolutions (``conv3d`` neck only), 2D ``grid_sample``,
bilinear resize, reshape / transpose, elementwise maths; shapes are static given the config.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from occ_ros.core.config import Range, check_fields
from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import surround_rig

from .backbone import LAYOUTS, OUTPUT_STRIDES, BasicBlock, ResNetBackbone, pad_to_stride
from .view_transform import VoxelSampler

NECKS = ("bev", "conv3d")


@dataclass(frozen=True)
class ModelConfig:
    """Settings of :class:`OccupancyNetwork`; the defaults are the CPU demo (6 x 112 x 200 images, 80x80x8 grid).

    Attributes:
        image_height, image_width: network input size in pixels (the size ``K`` refers to). Any size >= 32;
            sizes that are not multiples of 16 are zero-padded at the bottom / right inside the network.
        num_cameras: cameras per rig (N).
        backbone_depth: ResNet depth, 18 or 34.
        backbone_channels: width of the ResNet's ``layer1`` (64 = torchvision's ResNet, needed for
            ImageNet weights; smaller for CPU work).
        feature_channels: channels of the image feature map the view transform samples (F).
        output_stride: image pixels per feature cell of that map, 16 or 8 (8: four times the cells, which
            small and distant objects need, for about the same backbone compute).
        z_samples: sampling heights per BEV cell; BEV input channels are F * z_samples.
        bev_channels: width of the BEV encoder (neck "bev") or of the 2D stem (neck "conv3d").
        neck: ``"bev"`` (2D residual BEV encoder, FlashOcc) or ``"conv3d"`` (lift to 3D, 3D convs).
        bev_blocks: residual blocks per BEV encoder stage (neck "bev").
        bev_stages: BEV encoder stages; stage s has bev_channels * 2**s channels at 1 / 2**s of X and Y, and
            a top-down path brings them back to full resolution. X and Y must be divisible by 2**(bev_stages-1).
        conv3d_channels: channels per voxel after lifting (neck "conv3d").
        conv3d_layers: residual 3x3x3 blocks after lifting (neck "conv3d").
        depth_bins: 0 = plain sampling; D > 0 = depth-aware sampling: a 1x1 conv on the image features predicts a
            distribution over D depth bins per feature cell (output ``depth_logits``, supervised by the training
            loss ``lift_depth``), and every sampled point is also weighted by the probability of its own depth
            (:func:`~occ_ros.model.view_transform.depth_bin_weight`), one more BEV input channel per height
            sample.
        depth_max: depth covered by the bins, metres; 0 = the grid's farthest horizontal corner from the ego origin.
        num_classes: semantic classes including ``free`` (``len(vocabulary)``).
        clip_dim: channels of the per-voxel feature head (e.g. a CLIP embedding size); 0 = no such head.
        min_depth: voxel points closer than this (optical-axis depth, metres) to a camera are not sampled.
        views_per_point: a voxel point is sampled from at most this many of the cameras that see it (the
            lowest-indexed ones; :func:`~occ_ros.model.view_transform.select_views`). 2 fits surround rigs, whose
            views overlap pairwise; ``>= num_cameras`` averages over every camera that sees the point.
        grid: the voxel grid: a :class:`GridSpec`, a preset name (``demo``, ``occ3d``) or a
            ``GridSpec.to_dict()`` mapping; always a :class:`GridSpec` after construction.
    """

    image_height: Annotated[int, Range(ge=32)] = 112
    image_width: Annotated[int, Range(ge=32)] = 200
    num_cameras: Annotated[int, Range(ge=1)] = 6
    backbone_depth: int = 18
    backbone_channels: Annotated[int, Range(ge=1)] = 16
    feature_channels: Annotated[int, Range(ge=1)] = 32
    output_stride: int = 16
    z_samples: Annotated[int, Range(ge=1)] = 4
    bev_channels: Annotated[int, Range(ge=1)] = 32
    neck: str = "bev"
    bev_blocks: Annotated[int, Range(ge=1)] = 1
    bev_stages: Annotated[int, Range(ge=1)] = 3
    conv3d_channels: Annotated[int, Range(ge=1)] = 8
    conv3d_layers: Annotated[int, Range(ge=0)] = 2
    depth_bins: Annotated[int, Range(ge=0)] = 0
    depth_max: Annotated[float, Range(ge=0)] = 0.0
    num_classes: Annotated[int, Range(ge=2, le=255)] = 18
    clip_dim: Annotated[int, Range(ge=0)] = 0
    min_depth: Annotated[float, Range(gt=0)] = 0.1
    views_per_point: Annotated[int, Range(ge=1)] = 2
    grid: GridSpec | dict[str, Any] | str = field(default="demo")

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", _resolve_grid(self.grid))
        check_fields(self)  # the declared Ranges: image size >= 32, channels and counts >= 1, depth settings >= 0
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"ModelConfig.output_stride must be one of {OUTPUT_STRIDES}, got {self.output_stride}")
        if self.backbone_depth not in LAYOUTS:
            raise ValueError(f"ModelConfig.backbone_depth must be one of {sorted(LAYOUTS)}, got {self.backbone_depth}")
        if self.neck not in NECKS:
            raise ValueError(f"ModelConfig.neck must be one of {list(NECKS)}, got {self.neck!r}")
        if not 2 <= self.num_classes <= 255:
            raise ValueError(f"ModelConfig.num_classes must be in 2..255 (including free), got {self.num_classes}")
        if self.clip_dim < 0:
            raise ValueError(f"ModelConfig.clip_dim must be >= 0 (0 = no feature head), got {self.clip_dim}")
        if not self.min_depth > 0:
            raise ValueError(f"ModelConfig.min_depth must be > 0 metres, got {self.min_depth}")
        if self.neck == "bev":
            factor = 2 ** (self.bev_stages - 1)
            nx, ny, _ = self.grid_spec.shape
            if nx % factor or ny % factor:
                raise ValueError(
                    f"ModelConfig.bev_stages={self.bev_stages} needs the grid's X and Y divisible by {factor}, "
                    f"got {nx} x {ny}"
                )

    # ------------------------------------------------------------------ derived
    @property
    def grid_spec(self) -> GridSpec:
        assert isinstance(self.grid, GridSpec)
        return self.grid

    @property
    def depth_range(self) -> float:
        """Depth covered by the depth bins, metres (``depth_max``, or the grid's farthest horizontal corner)."""
        if self.depth_max > 0:
            return float(self.depth_max)
        lo, hi = self.grid_spec.range_min, self.grid_spec.range_max
        return math.hypot(max(abs(lo[0]), abs(hi[0])), max(abs(lo[1]), abs(hi[1])))

    @property
    def image_size(self) -> tuple[int, int]:
        return self.image_height, self.image_width

    @property
    def feature_size(self) -> tuple[int, int]:
        """(h, w) of the image feature map the view transform samples (at ``output_stride``)."""
        return ResNetBackbone.feature_size(self.image_height, self.image_width, self.output_stride)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML / JSON; ``from_mapping(ModelConfig, cfg.to_dict())`` gives it back."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["grid"] = self.grid_spec.to_dict()
        return data

    # ------------------------------------------------------------------ presets
    @classmethod
    def demo(cls, **overrides: Any) -> ModelConfig:
        """CPU demo: 6 x 112 x 200 images, the 80x80x8 demo grid, small channels."""
        return cls(**overrides)

    @classmethod
    def occ3d(cls, **overrides: Any) -> ModelConfig:
        """Occ3D-nuScenes scale: 6 x 256 x 704 images, 200x200x16 grid, ResNet-18 at full width."""
        settings: dict[str, Any] = {
            "image_height": 256,
            "image_width": 704,
            "backbone_channels": 64,
            "feature_channels": 64,
            "z_samples": 8,
            "bev_channels": 64,
            "bev_blocks": 2,
            "conv3d_channels": 32,
            "grid": "occ3d",
        }
        settings.update(overrides)
        return cls(**settings)


def _resolve_grid(grid: Any) -> GridSpec:
    if isinstance(grid, GridSpec):
        return grid
    if isinstance(grid, str):
        try:
            return GridSpec.named(grid)
        except ValueError as err:
            raise ValueError(f"ModelConfig.grid: {err}") from None
    if isinstance(grid, Mapping):
        try:
            return GridSpec.from_dict(grid)
        except (TypeError, ValueError) as err:
            raise ValueError(f"ModelConfig.grid: {err}") from None
    raise ValueError(f"ModelConfig.grid must be a GridSpec, a preset name or a mapping, got {grid!r}")


# ---------------------------------------------------------------------------------------------- necks
def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class BevEncoder(nn.Module):
    """Residual 2D BEV encoder with a top-down path (FlashOcc's CustomResNet + FPN_LSS, smaller).

    (B, in_channels, X, Y) -> stem 1x1 (channel reduction) -> stages of BasicBlocks (stage s: channels * 2**s
    at stride 2**s) -> top-down: upsample x2 (bilinear), concatenate with the next shallower stage, 3x3 conv
    -> (B, channels, X, Y).
    """

    def __init__(self, in_channels: int, channels: int, stages: int, blocks: int) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(in_channels, channels, kernel=1)
        widths = [channels * 2**s for s in range(stages)]
        self.stages = nn.ModuleList()
        for s, width in enumerate(widths):
            prev = widths[max(s - 1, 0)]
            layers = [BasicBlock(prev, width, stride=1 if s == 0 else 2)]
            layers += [BasicBlock(width, width) for _ in range(blocks - 1)]
            self.stages.append(nn.Sequential(*layers))
        # up[s] fuses stage s with the (upsampled) output of the deeper levels.
        self.up = nn.ModuleList(_conv_bn_relu(widths[s] + widths[s + 1], widths[s]) for s in range(stages - 1))

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, X, Y) -> (B, channels, X, Y)."""
        x = self.stem(bev)
        levels = []
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        x = levels[-1]
        for s in range(len(levels) - 2, -1, -1):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = self.up[s](torch.cat([levels[s], x], dim=1))
        return x


class BasicBlock3d(nn.Module):
    """Two 3x3x3 conv-BN layers with a residual connection; (B, C, D, H, W) -> same shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(channels)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class Conv3dNeck(nn.Module):
    """BEV features -> voxel features: 2D stem (1x1 conv, one residual block), 1x1 conv to C3 * Z channels,
    reshape, residual 3x3x3 blocks.

    (B, in_channels, X, Y) -> (B, channels3d, Z, X, Y) (depth axis = height; the heads move it last).
    """

    def __init__(
        self, in_channels: int, bev_channels: int, channels3d: int, shape: tuple[int, int, int], layers: int
    ) -> None:
        super().__init__()
        self.channels3d = channels3d
        self.shape = shape  # (X, Y, Z)
        self.stem = nn.Sequential(
            _conv_bn_relu(in_channels, bev_channels, kernel=1), BasicBlock(bev_channels, bev_channels)
        )
        self.lift = nn.Conv2d(bev_channels, channels3d * shape[2], 1)
        self.blocks = nn.Sequential(*[BasicBlock3d(channels3d) for _ in range(layers)])

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        x = self.lift(self.stem(bev))  # (B, C3 * Z, X, Y), channel c * Z + z
        nx, ny, nz = self.shape
        x = x.reshape(-1, self.channels3d, nz, nx, ny)
        return self.blocks(F.relu(x))


# ---------------------------------------------------------------------------------------------- heads
class ChannelToHeightHead(nn.Module):
    """2D 1x1 conv to ``out_channels * Z`` channels, reshaped to voxels (FlashOcc's channel-to-height).

    (B, in_channels, X, Y) -> conv -> (B, out_channels * Z, X, Y) -> reshape (B, out_channels, Z, X, Y)
    -> permute -> (B, out_channels, X, Y, Z).
    """

    def __init__(self, in_channels: int, out_channels: int, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.shape = shape  # (X, Y, Z), static so that the exported Reshape has a constant shape
        self.conv = nn.Conv2d(in_channels, out_channels * shape[2], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nx, ny, nz = self.shape
        y = self.conv(x).reshape(-1, self.out_channels, nz, nx, ny)
        return y.permute(0, 1, 3, 4, 2)


class VoxelHead(nn.Module):
    """1x1x1 Conv3d on (B, in_channels, Z, X, Y) -> (B, out_channels, X, Y, Z)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).permute(0, 1, 3, 4, 2)


# ---------------------------------------------------------------------------------------------- network
class OccupancyNetwork(nn.Module):
    """Multi-camera images -> semantic occupancy, density and (optionally) per-voxel features.

    Submodules: ``backbone`` (:class:`ResNetBackbone`), ``sampler`` (:class:`VoxelSampler`), ``neck``
    (:class:`BevEncoder` or :class:`Conv3dNeck`), ``head_conv`` (shared 3x3 conv-BN-ReLU before the heads),
    ``semantic_head``, ``density_head`` and ``feature_head`` (only when ``clip_dim > 0``).

    Buffer ``decision_bias`` (num_classes,): added to the semantic logits before the argmax that makes labels
    (:func:`decision_logits`; zero unless training calibrated it, :mod:`occ_training.trainer.logit_adjustment`).
    Checkpoints without it load with zeros.
    """

    decision_bias: torch.Tensor

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        grid = config.grid_spec
        shape = grid.shape
        self.backbone = ResNetBackbone(
            config.backbone_depth, config.backbone_channels, config.feature_channels, config.output_stride
        )
        self.sampler = VoxelSampler(
            grid,
            config.z_samples,
            config.image_size,
            config.feature_size,
            stride=config.output_stride,
            min_depth=config.min_depth,
            views_per_point=config.views_per_point,
        )
        self.depth_head: nn.Module | None = (
            nn.Conv2d(config.feature_channels, config.depth_bins, 1) if config.depth_bins else None
        )
        bev_in = (config.feature_channels + (1 if config.depth_bins else 0)) * config.z_samples
        self.head_conv: nn.Module
        if config.neck == "bev":
            self.neck: nn.Module = BevEncoder(bev_in, config.bev_channels, config.bev_stages, config.bev_blocks)
            self.head_conv = _conv_bn_relu(config.bev_channels, config.bev_channels)
            self.semantic_head: nn.Module = ChannelToHeightHead(config.bev_channels, config.num_classes, shape)
            self.density_head: nn.Module = ChannelToHeightHead(config.bev_channels, 1, shape)
            self.feature_head: nn.Module | None = (
                ChannelToHeightHead(config.bev_channels, config.clip_dim, shape) if config.clip_dim else None
            )
        else:
            c3 = config.conv3d_channels
            self.neck = Conv3dNeck(bev_in, config.bev_channels, c3, shape, config.conv3d_layers)
            self.head_conv = nn.Identity()
            self.semantic_head = VoxelHead(c3, config.num_classes)
            self.density_head = VoxelHead(c3, 1)
            self.feature_head = VoxelHead(c3, config.clip_dim) if config.clip_dim else None
        self.register_buffer("decision_bias", torch.zeros(config.num_classes))
        self.register_load_state_dict_pre_hook(_zero_decision_bias_if_missing)

    def forward(self, images: torch.Tensor, K: torch.Tensor, cam_from_ego: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predict occupancy for B rigs.

        Args:
            images: (B, N, 3, H, W) float images, normalised (e.g. ImageNet mean / std), H x W = the config's size.
            K: (B, N, 3, 3) float intrinsics for that image size (pixel centres at integers).
            cam_from_ego: (B, N, 4, 4) float transforms from the ego frame to each camera's optical frame.
        Returns:
            ``semantics``: (B, num_classes, X, Y, Z) logits (last class = free);
            ``density``: (B, 1, X, Y, Z) non-negative (softplus) volume density;
            ``features``: (B, clip_dim, X, Y, Z) unnormalised per-voxel embeddings, only when ``clip_dim > 0``;
            ``depth_logits``: (B, N, depth_bins, h, w) per-feature-cell depth-bin logits, only when ``depth_bins > 0``.
            All indexed [x, y, z] in the ego frame of the grid.
        """
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self._check_inputs(images, K, cam_from_ego)
        cfg = self.config
        x = pad_to_stride(images.reshape(-1, 3, cfg.image_height, cfg.image_width), cfg.image_height, cfg.image_width)
        feats = self.backbone(x, cfg.image_size)  # (B*N, F, h, w)
        depth_logits = None
        if self.depth_head is not None:
            depth_logits = self.depth_head(feats)  # (B*N, D, h, w)
            bev = self.sampler(feats, K, cam_from_ego, depth_logits.softmax(dim=1), cfg.depth_range)
        else:
            bev = self.sampler(feats, K, cam_from_ego)  # (B, F*z_samples, X, Y)
        y = self.head_conv(self.neck(bev))
        out = {"semantics": self.semantic_head(y), "density": F.softplus(self.density_head(y))}
        if self.feature_head is not None:
            out["features"] = self.feature_head(y)
        if depth_logits is not None:
            out["depth_logits"] = depth_logits.reshape(*images.shape[:2], *depth_logits.shape[1:])
        return out

    def _check_inputs(self, images: torch.Tensor, K: torch.Tensor, cam_from_ego: torch.Tensor) -> None:
        cfg = self.config
        if images.dim() != 5 or tuple(images.shape[2:]) != (3, cfg.image_height, cfg.image_width):
            raise ValueError(
                f"images must be (B, N, 3, {cfg.image_height}, {cfg.image_width}), got {tuple(images.shape)}"
            )
        if images.shape[1] != cfg.num_cameras:
            raise ValueError(f"images hold {images.shape[1]} cameras, the model is built for {cfg.num_cameras}")
        lead = tuple(images.shape[:2])
        if tuple(K.shape) != (*lead, 3, 3):
            raise ValueError(f"K must be {(*lead, 3, 3)} for images {tuple(images.shape)}, got {tuple(K.shape)}")
        if tuple(cam_from_ego.shape) != (*lead, 4, 4):
            raise ValueError(f"cam_from_ego must be {(*lead, 4, 4)}, got {tuple(cam_from_ego.shape)}")

    def parameter_count(self, trainable_only: bool = False) -> int:
        """Number of parameters (buffers excluded)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def example_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random images with a plausible surround rig (for export, FLOP counts and timing).

        Returns ``(images, K, cam_from_ego)`` with the shapes :meth:`forward` takes, on the model's device.
        """
        cfg = self.config
        device = next(self.parameters()).device
        images = torch.randn(batch_size, cfg.num_cameras, 3, cfg.image_height, cfg.image_width, device=device)
        K_np, cam_from_ego_np = surround_rig(cfg.num_cameras, cfg.image_height, cfg.image_width)
        K, cam_from_ego = torch.from_numpy(K_np), torch.from_numpy(cam_from_ego_np)
        expand = (batch_size, cfg.num_cameras)
        return images, K.to(device).expand(*expand, 3, 3), cam_from_ego.to(device).expand(*expand, 4, 4)


def _zero_decision_bias_if_missing(
    module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *args: Any
) -> None:
    """Load-state pre-hook: checkpoints from before ``decision_bias`` existed decide by the plain argmax."""
    key = prefix + "decision_bias"
    if key not in state_dict:
        state_dict[key] = torch.zeros_like(cast(torch.Tensor, module.decision_bias))


def decision_logits(semantics: torch.Tensor, decision_bias: torch.Tensor) -> torch.Tensor:
    """(B, C, X, Y, Z) semantic logits + the (C,) decision bias: the scores whose argmax is the label."""
    return semantics + decision_bias.to(semantics.dtype).reshape(1, -1, 1, 1, 1)


def predict_labels(outputs: Mapping[str, torch.Tensor], decision_bias: torch.Tensor | None = None) -> torch.Tensor:
    """(B, X, Y, Z) uint8 class indices: argmax over classes of ``outputs["semantics"]`` (+ ``decision_bias``)."""
    scores = outputs["semantics"] if decision_bias is None else decision_logits(outputs["semantics"], decision_bias)
    return scores.argmax(dim=1).to(torch.uint8)


@dataclass(frozen=True)
class FlopEstimate:
    """FLOPs of one forward pass as counted by ``torch.utils.flop_counter.FlopCounterMode``.

    Counts convolutions and matrix products (2 FLOPs per multiply-accumulate); grid_sample, batch norm,
    activations and other elementwise ops are not counted.

    Attributes:
        flops: total FLOPs.
        macs: flops / 2.
        by_module: FLOPs per top-level submodule (``backbone``, ``sampler``, ``neck``, ...).
        batch_size: rigs in the counted pass.
    """

    flops: int
    macs: int
    by_module: dict[str, int]
    batch_size: int


def flops(config: ModelConfig, batch_size: int = 1) -> FlopEstimate:
    """Count the FLOPs of one forward pass of ``OccupancyNetwork(config)`` on ``batch_size`` rigs.

    The model and its inputs live on the ``meta`` device, so nothing is computed or allocated.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = OccupancyNetwork(config).eval()
    images, K, cam_from_ego = model.example_inputs(batch_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(images, K, cam_from_ego)
    by_module: dict[str, int] = {}
    for name, ops in counter.get_flop_counts().items():
        parts = name.split(".")
        if len(parts) == 2:  # "OccupancyNetwork.<child>"
            by_module[parts[1]] = int(sum(ops.values()))
    total = int(counter.get_total_flops())
    return FlopEstimate(flops=total, macs=total // 2, by_module=by_module, batch_size=batch_size)
