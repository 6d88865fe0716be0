"""A ResNet-18/34 image backbone with a stride-16 output, laid out like torchvision's ResNet.

The trunk (``conv1``, ``bn1``, ``layer1`` .. ``layer3``) uses torchvision's module names and shapes,
so an ImageNet ``resnet18`` / ``resnet34`` state dict downloaded from torchvision loads into it with
strict key checking (:meth:`ResNetBackbone.load_pretrained`); its ``layer4.*`` and ``fc.*`` entries
are not used (the output stride is 16) and are reported as ignored. Two small extra modules,
``fpn.lateral8`` / ``fpn.lateral16`` / ``fpn.fuse``, fuse the stride-8 (``layer2``) and stride-16
(``layer3``) maps into one ``out_channels`` map at stride 16; they are always trained from scratch.

Geometry: the input height and width must be multiples of 16 (:class:`OccupancyNetwork` pads its
images to that), and the output has ``H / 16`` x ``W / 16`` cells. Feature cell ``(r, c)`` stands for
the image pixels ``[16 c, 16 c + 15] x [16 r, 16 r + 15]`` (the "area" convention that nearest and
``align_corners=False`` resampling use; see ``view_transform.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 16
"""Input padding multiple: the deepest map (``layer3``) has stride 16."""
OUTPUT_STRIDES = (8, 16)
"""Strides the fused output map may have."""
LAYOUTS: dict[int, tuple[int, int, int, int]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
"""BasicBlock counts per stage (torchvision); layer4's count is listed for reference only."""

TRUNK_MODULES = ("conv1", "bn1", "layer1", "layer2", "layer3")
"""Top-level module names shared with torchvision's ResNet."""

TORCHVISION_UNUSED = ("layer4.", "fc.")
"""Key prefixes of a torchvision ResNet state dict that this backbone does not have (ignored on load)."""


class PretrainedError(ValueError):
    """Pretrained weights cannot be loaded: names the file and the offending keys."""


@dataclass(frozen=True)
class PretrainedReport:
    """What :meth:`ResNetBackbone.load_pretrained` did.

    Attributes:
        path: the file read.
        loaded: keys copied into the backbone.
        ignored: keys of the file the backbone does not use (torchvision's ``layer4.*`` and ``fc.*``).
        kept: backbone keys the file lacks and that kept their initial values (``fpn.*`` when the file is
            a torchvision trunk, and ``num_batches_tracked`` counters absent from old torchvision files).
    """

    path: Path
    loaded: tuple[str, ...]
    ignored: tuple[str, ...]
    kept: tuple[str, ...]


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: two 3x3 conv-BN layers with a residual connection.

    Module names (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample.0``, ``downsample.1``) match
    torchvision. Input (B, in_channels, H, W) -> output (B, channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class StrideFusion(nn.Module):
    """FPN-like fusion of the stride-8 and stride-16 maps into one map at ``output_stride`` (16 or 8).

    Output stride 16: ``lateral8`` is a 2x2 stride-2 conv, so stride-16 cell ``j`` sees exactly the
    stride-8 cells ``2j`` and ``2j + 1`` (the area convention); ``lateral16`` is a 1x1 conv.
    Output stride 8: ``lateral8`` is a 1x1 conv and the 1x1-convolved stride-16 map is upsampled x2
    (bilinear, ``align_corners=False``: cell centres stay where the area convention puts them).
    Either way the sum goes through a 3x3 conv-BN-ReLU (``fuse``).
    """

    def __init__(self, channels8: int, channels16: int, out_channels: int, output_stride: int = STRIDE) -> None:
        super().__init__()
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
        self.output_stride = output_stride
        kernel = 2 if output_stride == 16 else 1
        self.lateral8 = nn.Sequential(
            nn.Conv2d(channels8, out_channels, kernel, stride=kernel, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.lateral16 = nn.Sequential(nn.Conv2d(channels16, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.fuse = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, c8: torch.Tensor, c16: torch.Tensor) -> torch.Tensor:
        """(B, channels8, 2h, 2w), (B, channels16, h, w) -> (B, out_channels, h, w) at output stride 16,
        (B, out_channels, 2h, 2w) at output stride 8."""
        high = self.lateral16(c16)
        if self.output_stride == 8:
            high = F.interpolate(high, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.fuse(self.lateral8(c8) + high)


class ResNetBackbone(nn.Module):
    """ResNet-18/34 trunk up to ``layer3`` plus a stride-8/16 fusion; output stride 16 or 8.

    Args:
        depth: 18 or 34 (torchvision's BasicBlock layouts).
        base_channels: width of ``layer1`` (64 in torchvision's ResNet; e.g. 16 for CPU work).
            ``layer2`` has twice and ``layer3`` four times as many channels.
        out_channels: channels of the fused output map.
        output_stride: 16 (the fused map at ``layer3``'s resolution) or 8 (at ``layer2``'s: four times the
            cells for about the same compute, which small and distant objects need).
    """

    def __init__(
        self, depth: int = 18, base_channels: int = 64, out_channels: int = 128, output_stride: int = STRIDE
    ) -> None:
        super().__init__()
        if depth not in LAYOUTS:
            raise ValueError(f"ResNetBackbone depth must be one of {sorted(LAYOUTS)}, got {depth}")
        if base_channels < 1 or out_channels < 1:
            raise ValueError(f"ResNetBackbone channels must be >= 1, got {base_channels}, {out_channels}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"ResNetBackbone output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
        self.stride = output_stride
        self.depth = depth
        self.base_channels = base_channels
        self.out_channels = out_channels
        b = base_channels
        self.conv1 = nn.Conv2d(3, b, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(b)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        blocks = LAYOUTS[depth]
        self.layer1 = self._stage(b, b, blocks[0], stride=1)
        self.layer2 = self._stage(b, 2 * b, blocks[1], stride=2)
        self.layer3 = self._stage(2 * b, 4 * b, blocks[2], stride=2)
        self.fpn = StrideFusion(2 * b, 4 * b, out_channels, output_stride)
        self._init_weights()

    @staticmethod
    def _stage(in_channels: int, channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_channels, channels, stride)]
        layers += [BasicBlock(channels, channels) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # torchvision's initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def feature_size(height: int, width: int, output_stride: int = STRIDE) -> tuple[int, int]:
        """Output (h, w) for an image of ``height`` x ``width`` pixels (before padding to multiples of 16):
        (ceil(H / s), ceil(W / s)) for output stride ``s``."""
        return -(-height // output_stride), -(-width // output_stride)

    def forward(self, images: torch.Tensor, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Image features.

        Args:
            images: (B, 3, H16, W16) normalised images padded to multiples of 16.
            image_size: (H, W) before padding; at output stride 8 the map is cropped to ceil(H / 8) x
                ceil(W / 8) cells so that it covers the real image with less than one cell of padding.
                None: the padded size.
        Returns:
            (B, out_channels, h, w) features, ``(h, w) = feature_size(H, W, stride)``; cell (r, c) covers
            pixels [s c, s c + s - 1] x [s r, s r + s - 1].
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        c8 = self.layer2(self.layer1(x))
        c16 = self.layer3(c8)
        out = self.fpn(c8, c16)
        height, width = image_size or tuple(images.shape[-2:])
        h, w = self.feature_size(height, width, self.stride)
        return out[..., :h, :w]

    # ------------------------------------------------------------------ pretrained weights
    def load_pretrained(self, path: str | Path) -> PretrainedReport:
        """Load trunk weights from a local state-dict file (``torch.load(weights_only=True)``).

        Accepted files: this backbone's own ``state_dict()``; a torchvision ResNet-18/34 state dict
        (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight`` ...; its ``layer4.*`` / ``fc.*`` are
        ignored and ``fpn.*`` keeps its initialisation); a full :class:`OccupancyNetwork` state dict
        (keys under ``backbone.``); any of these wrapped in ``{"state_dict": ...}`` or ``{"model": ...}``
        or prefixed ``module.`` (DistributedDataParallel).

        Every trunk key (``conv1``, ``bn1``, ``layer1`` .. ``layer3``) must be present with this
        backbone's shape (``num_batches_tracked`` counters may be absent, as in old torchvision files);
        ``fpn.*`` is all-or-nothing.

        Raises:
            PretrainedError: unreadable file, or missing / unexpected / mismatched keys; the message names
                the file and lists the keys.
        """
        path = Path(path)
        state = _read_state_dict(path)
        own = self.state_dict()
        optional = {k for k in own if k.endswith("num_batches_tracked")}
        fpn_keys = {k for k in own if k.startswith("fpn.")}
        required = {k for k in own if k.split(".")[0] in TRUNK_MODULES} - optional
        if fpn_keys & set(state):
            required |= fpn_keys - optional
        missing = sorted(required - set(state))
        ignored = sorted(k for k in state if k not in own and k.startswith(TORCHVISION_UNUSED))
        unexpected = sorted(k for k in state if k not in own and not k.startswith(TORCHVISION_UNUSED))
        mismatched = sorted(
            f"{k}: file {tuple(state[k].shape)} vs backbone {tuple(own[k].shape)}"
            for k in state
            if k in own and tuple(state[k].shape) != tuple(own[k].shape)
        )
        problems = []
        if missing:
            problems.append(f"missing keys {_preview(missing)}")
        if unexpected:
            problems.append(f"unexpected keys {_preview(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches {_preview(mismatched)}")
        if problems:
            raise PretrainedError(
                f"pretrained backbone weights {path} do not fit ResNetBackbone(depth={self.depth}, "
                f"base_channels={self.base_channels}): " + "; ".join(problems)
            )
        loaded = sorted(k for k in state if k in own)
        merged = dict(own)
        merged.update({k: state[k] for k in loaded})
        self.load_state_dict(merged, strict=True)
        kept = sorted(set(own) - set(loaded))
        return PretrainedReport(path, tuple(loaded), tuple(ignored), tuple(kept))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A flat ``{key: tensor}`` dict from a checkpoint file, unwrapped and with prefixes stripped."""
    if not path.is_file():
        raise PretrainedError(f"pretrained backbone weights {path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle / zip errors have many types
        raise PretrainedError(f"pretrained backbone weights {path} cannot be read as a state dict: {err}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj:
        raise PretrainedError(f"pretrained backbone weights {path}: expected a non-empty state dict (key -> tensor)")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise PretrainedError(f"pretrained backbone weights {path}: entries that are not tensors: {_preview(bad)}")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    return state


def _preview(keys: Iterable[str], limit: int = 12) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    more = f", ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"[{shown}{more}] ({len(keys)})"


def pad_to_stride(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Zero-pad (..., H, W) images at the bottom / right up to multiples of 16 (static amounts).

    Zero is the dataset mean colour of normalised images. ``height`` / ``width`` are the static image
    size (from the model config), so the padding is a constant ``Pad`` node in an exported graph.
    """
    pad_h = (-height) % STRIDE
    pad_w = (-width) % STRIDE
    if pad_h == 0 and pad_w == 0:
        return images
    return F.pad(images, (0, pad_w, 0, pad_h))
