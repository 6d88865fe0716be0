"""ESPNetv2 (width s = 2.0) with the EdgeNets bottom-up segmentation decoder, for the Cityscapes weights.

A from-scratch implementation of the network of S. Mehta et al., "ESPNetv2: A Light-weight, Power Efficient,
and General Purpose Convolutional Neural Network" (CVPR 2019), with the segmentation head of the public
EdgeNets repository (MIT), written so that the released Cityscapes weights
(``shared/models/espnetv2_cityscapes/espnetv2_s_2.0_city_1024x512.pth``, 814,351 parameters, 526 tensors)
load with ``strict=True``: every module name below mirrors a key of that state_dict.

Structure (input H x W, multiples of 32; channels for s = 2.0):

* ``base_net.level1``: 3x3 conv stride 2, 3 -> 32, BN, PReLU (H/2).
* ``base_net.level2_0`` / ``level3_0`` / ``level4_0``: strided blocks (H/4, H/8, H/16; 128, 256, 512 channels):
  concat(3x3 average pool of the input, strided EESP) + input reinforcement (the image, average-pooled to the
  block's resolution, through 3x3 CBR 3->3 and 1x1 CB 3->C), then PReLU.
* ``base_net.level3`` (3 EESP blocks, 256 ch) and ``base_net.level4`` (7 EESP blocks, 512 ch).
* EESP block (k = 4 branches): grouped 1x1 reduction (groups k) -> 4 depth-wise 3x3 convs with dilations
  from the receptive-field limit (sorted ascending) -> hierarchical feature fusion (branch i += branch i-1)
  -> concat -> BN+PReLU -> grouped 1x1 expansion (groups k) + BN -> residual -> PReLU. The strided EESP
  inside a down-sampling block returns before the residual and the activation.
* Decoder: ``bu_dec_l1`` (pyramid pool at H/16) -> x2 bilinear upsampling + gated projection of the level-3
  features (``merge_enc_dec_l2``) -> BN+PReLU (``bu_br_l2``) -> ``bu_dec_l2``, and the same at H/4 and H/2;
  ``bu_dec_l4`` gives the 20 class scores at H/2, resized bilinearly to H x W. Every bilinear resize uses
  ``align_corners=True`` as the original does.
* Efficient pyramid pool: 1x1 CBR projection to 10 channels, then per scale in (2.0, 1.5, 1.0, 0.5, 0.1) a
  depth-wise 3x3 conv at the rescaled size (down: adaptive average pool, conv, bilinear up; up: bilinear up,
  conv, adaptive average pool back; each side at least 5), concat, BN+PReLU, channel shuffle (5 groups),
  grouped 3x3 CBR (groups 10), 1x1 conv, then BN+PReLU (bias instead for the last one).

Input: RGB, ``(rgb / 255 - MEAN) / STD`` (ImageNet statistics), NCHW float32. Output: (N, 20, H, W) scores
in Cityscapes trainId order plus one background channel (:data:`CITYSCAPES_CLASSES`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from occ_ros.io.atomic import atomic_write_bytes

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
NUM_CLASSES = 20
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
    "background",
)
CITYSCAPES_TO_SEMANTICKITTI: dict[str, str | None] = {
    "road": "road",
    "sidewalk": "sidewalk",
    "building": "building",
    "wall": "building",
    "fence": "fence",
    "pole": "pole",
    "traffic light": "traffic-sign",
    "traffic sign": "traffic-sign",
    "vegetation": "vegetation",
    "terrain": "terrain",
    "sky": None,
    "person": "person",
    "rider": "bicyclist",
    "car": "car",
    "truck": "truck",
    "bus": "other-vehicle",
    "train": "other-vehicle",
    "motorcycle": "motorcycle",
    "bicycle": "bicycle",
    "background": None,
}
"""Cityscapes class -> SemanticKITTI learning-class name (None: no counterpart), as in the weights' README."""

WEIGHTS_RELATIVE = Path("models") / "espnetv2_cityscapes" / "espnetv2_s_2.0_city_1024x512.pth"
"""The weights' path below the project's ``shared/`` folder."""

# s = 2.0 configuration (channels of levels 1-4), EESP repetitions and receptive-field limits per level.
_CHANNELS = (32, 128, 256, 512)
_BRANCHES = 4
_REPEATS_L3, _REPEATS_L4 = 3, 7
_R_LIM_L2_0, _R_LIM_L3_0, _R_LIM_L3, _R_LIM_L4_0, _R_LIM_L4 = 13, 11, 9, 9, 7
_PYRAMID_SCALES = (2.0, 1.5, 1.0, 0.5, 0.1)
_MIN_PYRAMID_SIZE = 5


# ---------------------------------------------------------------------------------------------- building blocks
class _ConvBnAct(nn.Module):
    """conv (no bias) -> BN -> PReLU, as attributes ``conv`` / ``bn`` / ``act`` (encoder naming)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, bias=False, groups=groups)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.PReLU(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class _ConvBn(nn.Module):
    """conv (no bias) -> BN, as ``conv`` / ``bn``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, 1, (kernel - 1) // 2, bias=False, groups=groups)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class _BnAct(nn.Module):
    """BN -> PReLU, as ``bn`` / ``act``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class _DepthwiseDilated(nn.Module):
    """Depth-wise 3x3 conv with dilation ``d`` ("same" padding), as ``conv``."""

    def __init__(self, channels: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            channels, channels, 3, stride, padding=dilation, dilation=dilation, groups=channels, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _SeqConvBnAct(nn.Module):
    """conv -> BN -> PReLU as one ``nn.Sequential`` named ``cbr`` (decoder naming: ``cbr.0/1/2``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int = 1) -> None:
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, 1, (kernel - 1) // 2, bias=False, groups=groups),
            nn.BatchNorm2d(c_out),
            nn.PReLU(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cbr(x)


class _SeqBnAct(nn.Module):
    """BN -> PReLU as one ``nn.Sequential`` named ``br`` (decoder naming: ``br.0/1``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.br = nn.Sequential(nn.BatchNorm2d(channels), nn.PReLU(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.br(x)


class ChannelShuffle(nn.Module):
    """(N, g*c, H, W) -> (N, c*g, H, W): channel ``i*c + j`` moves to ``j*g + i`` (ShuffleNet)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        return x.reshape(n, c, h, w)


def _pool_matrix(size_in: int, size_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(size_out, size_in) matrix of adaptive average pooling along one axis (PyTorch's bins:
    ``[floor(i * n / m), ceil((i + 1) * n / m))``)."""
    m = np.zeros((size_out, size_in), dtype=np.float64)  # numpy, so that a tracer sees one constant
    for i in range(size_out):
        start = (i * size_in) // size_out
        end = -((-(i + 1) * size_in) // size_out)
        m[i, start:end] = 1.0 / (end - start)
    return torch.from_numpy(m).to(dtype=dtype, device=device)


def adaptive_avg_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d``; while exporting (ONNX / tracing) the same pooling as two constant matrix
    products, because the TorchScript ONNX exporter only handles output sizes that divide the input."""
    if not (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()):
        return F.adaptive_avg_pool2d(x, size)
    h_in, w_in = int(x.shape[-2]), int(x.shape[-1])
    rows = _pool_matrix(h_in, size[0], x.dtype, x.device)
    cols = _pool_matrix(w_in, size[1], x.dtype, x.device)
    return torch.matmul(torch.matmul(rows, x), cols.t())


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


# ---------------------------------------------------------------------------------------------- encoder
def _dilations(branches: int, r_lim: int) -> list[int]:
    """Dilation per EESP branch: kernel "sizes" 3, 5, 7, ... (receptive field of a 3x3 conv with dilation
    (k - 1) / 2), each capped back to 3 beyond ``r_lim``, sorted ascending."""
    sizes = sorted(3 + 2 * i if 3 + 2 * i <= r_lim else 3 for i in range(branches))
    return [(s - 1) // 2 for s in sizes]


class EESP(nn.Module):
    """Extremely Efficient Spatial Pyramid block: reduce -> split -> transform (dilated depth-wise) ->
    hierarchical fusion -> merge (grouped 1x1) -> residual -> PReLU.

    With ``stride=2`` (inside :class:`StridedEESP`) it returns the merged features before the residual and the
    activation (``module_act`` exists but is unused there, as in the weights)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, branches: int = _BRANCHES, r_lim: int = 7) -> None:
        super().__init__()
        width = c_out // branches
        if width * branches != c_out:
            raise ValueError(f"EESP: {c_out} output channels do not split into {branches} equal branches")
        self.stride = stride
        self.proj_1x1 = _ConvBnAct(c_in, width, 1, groups=branches)
        self.spp_dw = nn.ModuleList(_DepthwiseDilated(width, stride, d) for d in _dilations(branches, r_lim))
        self.conv_1x1_exp = _ConvBn(c_out, c_out, 1, groups=branches)
        self.br_after_cat = _BnAct(c_out)
        self.module_act = nn.PReLU(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.proj_1x1(x)
        branches: list[torch.Tensor] = []
        for conv in self.spp_dw:
            y = conv(reduced)
            branches.append(y if not branches else y + branches[-1])  # hierarchical feature fusion
        merged = self.conv_1x1_exp(self.br_after_cat(torch.cat(branches, dim=1)))
        if self.stride == 2:
            return merged
        if merged.shape == x.shape:
            merged = merged + x
        return self.module_act(merged)


class StridedEESP(nn.Module):
    """Down-sampling block: concat(3x3/2 average pool of ``x``, strided EESP of ``x``) + input reinforcement
    from the image at the output resolution, then PReLU."""

    def __init__(self, c_in: int, c_out: int, r_lim: int, branches: int = _BRANCHES) -> None:
        super().__init__()
        self.eesp = EESP(c_in, c_out - c_in, stride=2, branches=branches, r_lim=r_lim)
        self.inp_reinf = nn.Sequential(_ConvBnAct(3, 3, 3), _ConvBn(3, c_out, 1))
        self.act = nn.PReLU(c_out)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1)  # count_include_pad=True, as nn.AvgPool2d
        out = torch.cat([pooled, self.eesp(x)], dim=1)
        if image.shape[-2:] != pooled.shape[-2:]:
            raise ValueError(f"input reinforcement at {tuple(image.shape[-2:])}, features {tuple(pooled.shape[-2:])}")
        return self.act(out + self.inp_reinf(image))


class ESPNetv2Encoder(nn.Module):
    """The ESPNetv2 backbone up to level 4 (H/16); returns the outputs of levels 1-4."""

    def __init__(self) -> None:
        super().__init__()
        c1, c2, c3, c4 = _CHANNELS
        self.level1 = _ConvBnAct(3, c1, 3, stride=2)
        self.level2_0 = StridedEESP(c1, c2, r_lim=_R_LIM_L2_0)
        self.level3_0 = StridedEESP(c2, c3, r_lim=_R_LIM_L3_0)
        self.level3 = nn.ModuleList(EESP(c3, c3, r_lim=_R_LIM_L3) for _ in range(_REPEATS_L3))
        self.level4_0 = StridedEESP(c3, c4, r_lim=_R_LIM_L4_0)
        self.level4 = nn.ModuleList(EESP(c4, c4, r_lim=_R_LIM_L4) for _ in range(_REPEATS_L4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # the image average-pooled (3x3, stride 2, pad 1) to H/2, H/4, H/8, H/16 for the input reinforcement
        pyramid = []
        img = x
        for _ in range(4):
            img = F.avg_pool2d(img, kernel_size=3, stride=2, padding=1)
            pyramid.append(img)
        l1 = self.level1(x)
        l2 = self.level2_0(l1, pyramid[1])
        l3 = self.level3_0(l2, pyramid[2])
        for block in self.level3:
            l3 = block(l3)
        l4 = self.level4_0(l3, pyramid[3])
        for block in self.level4:
            l4 = block(l4)
        return l1, l2, l3, l4


# ---------------------------------------------------------------------------------------------- decoder
class EfficientPyramidPool(nn.Module):
    """Project to ``proj`` channels, depth-wise 3x3 at several scales, merge, expand to ``c_out``."""

    def __init__(
        self, c_in: int, proj: int, c_out: int, scales: Sequence[float] = _PYRAMID_SCALES, last_bn_act: bool = True
    ) -> None:
        super().__init__()
        self.scales = tuple(sorted(scales, reverse=True))
        n = len(self.scales)
        self.projection_layer = _SeqConvBnAct(c_in, proj, 1)
        self.stages = nn.ModuleList(nn.Conv2d(proj, proj, 3, 1, 1, bias=False, groups=proj) for _ in range(n))
        self.merge_layer = nn.Sequential(
            _SeqBnAct(proj * n),
            ChannelShuffle(n),
            _SeqConvBnAct(proj * n, proj, 3, groups=proj),
            nn.Conv2d(proj, c_out, 1, bias=not last_bn_act),
        )
        self.br: nn.Module = _SeqBnAct(c_out) if last_bn_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection_layer(x)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        outs = []
        for scale, conv in zip(self.scales, self.stages, strict=True):
            hs = max(int(math.ceil(h * scale)), _MIN_PYRAMID_SIZE)
            ws = max(int(math.ceil(w * scale)), _MIN_PYRAMID_SIZE)
            if scale < 1.0:
                y = _resize(conv(adaptive_avg_pool(x, (hs, ws))), (h, w))
            elif scale > 1.0:
                y = adaptive_avg_pool(conv(_resize(x, (hs, ws))), (h, w))
            else:
                y = conv(x)
            outs.append(y)
        return self.br(self.merge_layer(torch.cat(outs, dim=1)))


class GatedProjection(nn.Module):
    """Encoder -> decoder skip: grouped 3x3 CBR (groups gcd(c_in, c_out)) scaled per channel by
    sigmoid(1x1 conv of the global average)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.wt_layer = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_in, c_out, 1, bias=False), nn.Sigmoid())
        self.expansion_layer = _SeqConvBnAct(c_in, c_out, 3, groups=math.gcd(c_in, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expansion_layer(x) * self.wt_layer(x)


class ESPNetv2Segmentation(nn.Module):
    """ESPNetv2 (s = 2.0) + bottom-up decoder: normalised RGB (N, 3, H, W) -> scores (N, classes, H, W)."""

    def __init__(self, num_classes: int = NUM_CLASSES, decoder_base: int = 16) -> None:
        super().__init__()
        c1, c2, c3, c4 = _CHANNELS
        d1, d2, d3 = 4 * decoder_base, 3 * decoder_base, 2 * decoder_base
        proj = min(num_classes // 2, decoder_base)
        self.base_net = ESPNetv2Encoder()
        self.bu_dec_l1 = EfficientPyramidPool(c4, proj, d1)
        self.bu_dec_l2 = EfficientPyramidPool(d1, proj, d2)
        self.bu_dec_l3 = EfficientPyramidPool(d2, proj, d3)
        self.bu_dec_l4 = EfficientPyramidPool(d3, proj, num_classes, last_bn_act=False)
        self.merge_enc_dec_l2 = GatedProjection(c3, d1)
        self.merge_enc_dec_l3 = GatedProjection(c2, d2)
        self.merge_enc_dec_l4 = GatedProjection(c1, d3)
        self.bu_br_l2 = nn.Sequential(nn.BatchNorm2d(d1), nn.PReLU(d1))
        self.bu_br_l3 = nn.Sequential(nn.BatchNorm2d(d2), nn.PReLU(d2))
        self.bu_br_l4 = nn.Sequential(nn.BatchNorm2d(d3), nn.PReLU(d3))

    @staticmethod
    def _up2(x: torch.Tensor) -> torch.Tensor:
        return _resize(x, (2 * int(x.shape[-2]), 2 * int(x.shape[-1])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (int(x.shape[-2]), int(x.shape[-1]))
        l1, l2, l3, l4 = self.base_net(x)
        y = self.bu_dec_l1(l4)
        y = self.bu_dec_l2(self.bu_br_l2(self._up2(y) + self.merge_enc_dec_l2(l3)))
        y = self.bu_dec_l3(self.bu_br_l3(self._up2(y) + self.merge_enc_dec_l3(l2)))
        y = self.bu_dec_l4(self.bu_br_l4(self._up2(y) + self.merge_enc_dec_l4(l1)))
        return _resize(y, size)


# ---------------------------------------------------------------------------------------------- helpers
def default_weights_path(repo_root: str | Path | None = None) -> Path:
    """``<repo>/../shared/models/espnetv2_cityscapes/espnetv2_s_2.0_city_1024x512.pth`` (may not exist)."""
    if repo_root is None:
        from occ_ros.core.resources import shared_dir

        return shared_dir() / WEIGHTS_RELATIVE
    return Path(repo_root).parent / "shared" / WEIGHTS_RELATIVE


def load_espnetv2(weights_path: str | Path | None = None, device: str | torch.device = "cpu") -> ESPNetv2Segmentation:
    """The network with the Cityscapes weights loaded strictly, in eval mode."""
    path = Path(weights_path) if weights_path is not None else default_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ESPNetv2 weights not found")
    model = ESPNetv2Segmentation()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def preprocess(rgb: np.ndarray, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, h, w) normalised float32; ``size`` = (h, w) resizes first with PIL's
    bilinear filter (as the EdgeNets test script does)."""
    from PIL import Image

    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
    if size is not None and (img.shape[0], img.shape[1]) != tuple(size):
        img = np.asarray(Image.fromarray(img).resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR))
    x = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0).contiguous()


def export_espnetv2_onnx(
    weights_path: str | Path, out_path: str | Path, height: int = 384, width: int = 1248, opset: int = 17
) -> Path:
    """Export the network with the weights at ``weights_path`` to ONNX (static ``1 x 3 x height x width`` input
    named ``image``, normalised as :func:`preprocess`; output ``logits`` (1, 20, height, width)).

    The TorchScript-based exporter is used (as ``occ_export.onnx_export``); the adaptive average pools are
    exported as constant matrix products (:func:`adaptive_avg_pool`). The file passes ``onnx.checker``'s full
    check before this returns.
    """
    import io
    import warnings

    import onnx

    if height % 32 or width % 32:
        raise ValueError(f"height and width must be multiples of 32, got {height}x{width}")
    model = load_espnetv2(weights_path)
    example = torch.zeros(1, 3, height, width)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            cast(Any, buffer),  # the stubs name only paths; file-like objects are accepted
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
            input_names=["image"],
            output_names=["logits"],
        )
    proto = onnx.load_model_from_string(buffer.getvalue())
    proto.producer_name = "occ_ros"
    proto.doc_string = (
        f"ESPNetv2 s=2.0 Cityscapes segmentation (EdgeNets weights), input 1x3x{height}x{width} RGB normalised with "
        f"mean {MEAN} std {STD}; output 1x{NUM_CLASSES}x{height}x{width} scores: {', '.join(CITYSCAPES_CLASSES)}"
    )
    onnx.checker.check_model(proto, full_check=True)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, proto.SerializeToString())
    return out


def build_espnetv2_onnx(weights_path: str | Path, out_path: str | Path, size: tuple[int, int]) -> Path:
    """The ``espnetv2_onnx`` build recipe of model cards: :func:`export_espnetv2_onnx` at ``size`` = (H, W)."""
    return export_espnetv2_onnx(weights_path, out_path, height=size[0], width=size[1])
