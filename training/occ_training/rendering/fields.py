"""The network's voxel volumes as a continuous field read at ray samples.

The occupancy network predicts, per batch element, volumes on a :class:`~occ_ros.core.grid.GridSpec` in the ego
frame, indexed ``[x, y, z]``: ``density`` (B, 1, X, Y, Z) >= 0 (per metre), ``semantics`` logits (B, C, X, Y, Z)
and optionally ``features`` (B, D, X, Y, Z). :class:`VoxelField` interpolates them at ego-frame points.

Coordinate mapping: voxel ``[i, j, k]`` covers ``range_min + [i, i + 1) * voxel_size`` (x) etc., its value sits
at the centre. ``F.grid_sample`` with ``align_corners=False`` puts normalised -1 / +1 at the outer *edges* of the
first / last cell, so a point ``p`` maps to ``2 (p - range_min) / (range_max - range_min) - 1`` per axis. A
5-D input is (N, C, D, H, W) and the grid's last dimension is ordered (W, H, D); our volume (B, C, X, Y, Z) is
read as D = X, H = Y, W = Z, so the normalised ego coordinates are passed reversed, ``(z, y, x)``. No copy or
permute of the volume is needed. Outside the box the edge voxels are repeated (``padding_mode="border"``);
the samplers keep samples inside the box anyway.

3-D ``grid_sample`` is used in training only (it is never exported).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from occ_ros.core.grid import GridSpec
from occ_training.rendering.rays import RaySamples

Interpolation = Literal["trilinear", "nearest"]


@dataclass
class FieldOutputs:
    """Field values at ray samples.

    Attributes:
        density: (B, R, S) volume density >= 0, per metre.
        semantics: (B, R, S, C) class logits (C includes ``free``, last), or None.
        features: (B, R, S, D) features, or None.
    """

    density: torch.Tensor
    semantics: torch.Tensor | None = None
    features: torch.Tensor | None = None


def normalized_coordinates(points: torch.Tensor, grid: GridSpec) -> torch.Tensor:
    """``grid_sample`` coordinates of ego-frame points for a (B, C, X, Y, Z) volume.

    Args:
        points: (..., 3) ego-frame points (x, y, z), metres.
        grid: the volume's grid.
    Returns:
        (..., 3) normalised coordinates ordered (z, y, x) -- i.e. (W, H, D) of a volume read as D = X,
        H = Y, W = Z -- for ``align_corners=False``: -1 / +1 at the grid box's faces.
    """
    lo = torch.tensor(grid.range_min, dtype=points.dtype, device=points.device)
    hi = torch.tensor(grid.range_max, dtype=points.dtype, device=points.device)
    normalized = 2.0 * (points - lo) / (hi - lo) - 1.0
    return normalized.flip(-1)


def sample_volume(
    volume: torch.Tensor, points: torch.Tensor, grid: GridSpec, interpolation: Interpolation = "trilinear"
) -> torch.Tensor:
    """Read a voxel volume at ego-frame points.

    Args:
        volume: (B, C, X, Y, Z) values on ``grid`` (array index [x, y, z]).
        points: (B, R, S, 3) ego-frame points.
        grid: the volume's grid; its shape must equal the volume's (X, Y, Z).
        interpolation: ``trilinear`` (between voxel centres) or ``nearest`` (the value of the voxel containing
            the point: piecewise constant, exact voxel boundaries).
    Returns:
        (B, R, S, C) values.
    """
    if volume.dim() != 5 or tuple(volume.shape[2:]) != grid.shape:
        raise ValueError(f"sample_volume: volume must be (B, C, *{grid.shape}), got {tuple(volume.shape)}")
    batch, rays, samples = points.shape[:3]
    coords = normalized_coordinates(points.to(volume.dtype), grid).reshape(batch, rays, samples, 1, 3)
    mode = "bilinear" if interpolation == "trilinear" else "nearest"  # "bilinear" is trilinear on 5-D input
    out = F.grid_sample(volume, coords, mode=mode, padding_mode="border", align_corners=False)  # (B, C, R, S, 1)
    return out[..., 0].permute(0, 2, 3, 1)


class VoxelField(nn.Module):
    """Reads the network's volumes at ray samples (no parameters).

    Args:
        grid: the grid of the volumes.
        interpolation: ``trilinear`` (default; smooth, gradients reach the 8 surrounding voxels) or ``nearest``.
    """

    def __init__(self, grid: GridSpec, interpolation: Interpolation = "trilinear") -> None:
        super().__init__()
        if interpolation not in ("trilinear", "nearest"):
            raise ValueError(f"VoxelField: interpolation must be 'trilinear' or 'nearest', got {interpolation!r}")
        self.grid = grid
        self.interpolation: Interpolation = interpolation

    def forward(
        self,
        samples: RaySamples,
        density: torch.Tensor,
        semantics: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> FieldOutputs:
        """Interpolate the volumes at ``samples.positions``.

        Args:
            samples: (B, R, S) samples in the ego frame.
            density: (B, 1, X, Y, Z) density >= 0 (per metre).
            semantics: optional (B, C, X, Y, Z) logits.
            features: optional (B, D, X, Y, Z) features.
        Returns:
            :class:`FieldOutputs` with density (B, R, S), semantics (B, R, S, C), features (B, R, S, D).
        """
        if density.dim() != 5 or density.shape[1] != 1:
            raise ValueError(f"VoxelField: density must be (B, 1, X, Y, Z), got {tuple(density.shape)}")
        # one grid_sample per volume: concatenating them first would copy every volume
        out = FieldOutputs(density=self._read(density, samples)[..., 0].clamp(min=0.0))
        if semantics is not None:
            out.semantics = self._read(semantics, samples)
        if features is not None:
            out.features = self._read(features, samples)
        return out

    def _read(self, volume: torch.Tensor, samples: RaySamples) -> torch.Tensor:
        return sample_volume(volume, samples.positions, self.grid, self.interpolation)
