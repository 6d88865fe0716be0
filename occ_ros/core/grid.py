"""The voxel grid: one spec shared by labels, training, export, the node and replay.

Frames and indexing (docs/conventions.md): the grid lives in the ego frame
(base_link: x forward, y left, z up, metres). Arrays are indexed ``[x, y, z]`` as in
Occ3D, so ``labels[i, j, k]`` is the voxel whose centre is
``range_min + (i + 0.5, j + 0.5, k + 0.5) * voxel_size``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class GridSpec:
    """An axis-aligned voxel grid in the ego frame.

    Attributes:
        range_min: (x, y, z) of the grid's lower corner, metres.
        range_max: (x, y, z) of the grid's upper corner, metres.
        voxel_size: edge lengths (x, y, z), metres.
    """

    range_min: Vec3
    range_max: Vec3
    voxel_size: Vec3

    def __post_init__(self) -> None:
        for name in ("range_min", "range_max", "voxel_size"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3 or not all(np.isfinite(value)):
                raise ValueError(f"GridSpec.{name} must be 3 finite numbers, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        for axis in range(3):
            lo, hi, size = self.range_min[axis], self.range_max[axis], self.voxel_size[axis]
            if size <= 0:
                raise ValueError(f"GridSpec.voxel_size[{axis}] must be > 0, got {size}")
            if hi <= lo:
                raise ValueError(f"GridSpec.range_max[{axis}]={hi} must exceed range_min[{axis}]={lo}")
            cells = (hi - lo) / size
            if abs(cells - round(cells)) > 1e-6 * max(1.0, cells):
                raise ValueError(f"GridSpec axis {axis}: extent {hi - lo} m is not a whole number of {size} m voxels")

    # ------------------------------------------------------------------ presets
    @classmethod
    def occ3d(cls) -> GridSpec:
        """Occ3D-nuScenes: 200x200x16 voxels of 0.4 m over [-40,-40,-1, 40,40,5.4]."""
        return cls((-40.0, -40.0, -1.0), (40.0, 40.0, 5.4), (0.4, 0.4, 0.4))

    @classmethod
    def demo(cls) -> GridSpec:
        """A coarse CPU-friendly grid: 80x80x8 voxels of 0.8 m over [-32,-32,-1, 32,32,5.4]."""
        return cls((-32.0, -32.0, -1.0), (32.0, 32.0, 5.4), (0.8, 0.8, 0.8))

    @classmethod
    def named(cls, name: str) -> GridSpec:
        """A preset by name: ``occ3d`` or ``demo``."""
        presets = {"occ3d": cls.occ3d, "demo": cls.demo}
        if name not in presets:
            raise ValueError(f"unknown grid preset {name!r}; expected one of {sorted(presets)}")
        return presets[name]()

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel counts (X, Y, Z)."""
        return tuple(  # type: ignore[return-value]
            int(round((hi - lo) / s))
            for lo, hi, s in zip(self.range_min, self.range_max, self.voxel_size, strict=False)
        )

    @property
    def num_voxels(self) -> int:
        x, y, z = self.shape
        return x * y * z

    # ------------------------------------------------------------------ conversions
    def points_to_indices(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voxel indices of metric points.

        Args:
            points: (..., 3) ego-frame points, metres.
        Returns:
            indices: (..., 3) int64 [i, j, k] (meaningful only where ``inside``).
            inside: (...) bool, True where the point lies in the half-open grid box.
        """
        points = np.asarray(points, dtype=np.float64)
        lo = np.asarray(self.range_min)
        size = np.asarray(self.voxel_size)
        idx = np.floor((points - lo) / size).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < np.asarray(self.shape)), axis=-1)
        return idx, inside

    def indices_to_centers(self, indices: np.ndarray) -> np.ndarray:
        """Metric centres (..., 3) of voxel indices (..., 3)."""
        indices = np.asarray(indices, dtype=np.float64)
        return np.asarray(self.range_min) + (indices + 0.5) * np.asarray(self.voxel_size)

    def voxel_centers(self) -> np.ndarray:
        """All voxel centres as an (X, Y, Z, 3) float64 array in the ego frame."""
        axes = [
            lo + (np.arange(n) + 0.5) * s for lo, n, s in zip(self.range_min, self.shape, self.voxel_size, strict=False)
        ]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    def flat_index(self, indices: np.ndarray) -> np.ndarray:
        """Row-major flat index of (..., 3) voxel indices, matching ``array.reshape(-1)``."""
        indices = np.asarray(indices, dtype=np.int64)
        _, ny, nz = self.shape
        return (indices[..., 0] * ny + indices[..., 1]) * nz + indices[..., 2]

    # ------------------------------------------------------------------ (de)serialisation
    def coarsened(self, factor: int) -> GridSpec:
        """The same volume with voxels ``factor`` times larger on every axis (each shape must divide)."""
        if int(factor) != factor or factor < 1 or any(n % factor for n in self.shape):
            raise ValueError(f"cannot coarsen a {self.shape} grid by {factor}: every axis must divide by it")
        return GridSpec(self.range_min, self.range_max, tuple(v * factor for v in self.voxel_size))  # type: ignore[arg-type]

    def coarsening_of(self, fine: GridSpec) -> int | None:
        """The integer factor ``f`` with ``fine.coarsened(f) == self`` (1 when equal), or None."""
        if fine.range_min != self.range_min or fine.range_max != self.range_max:
            return None
        ratios = [c / f for c, f in zip(self.voxel_size, fine.voxel_size, strict=True)]
        factor = round(ratios[0])
        if factor < 1 or any(abs(r - factor) > 1e-6 * factor for r in ratios):
            return None
        try:
            return factor if fine.coarsened(factor) == self else None
        except ValueError:
            return None

    def describe(self) -> str:
        """Shape, voxel size and bounds for messages, e.g. ``200x200x16 voxels of 0.4 m over x [-40, 40] y [-40, 40]
        z [-1, 5.4] m`` (numbers as short as exact)."""
        x, y, z = self.shape
        size = (
            f"{_num(self.voxel_size[0])} m"
            if len(set(self.voxel_size)) == 1
            else "x".join(_num(v) for v in self.voxel_size) + " m"
        )
        bounds = " ".join(
            f"{axis} [{_num(lo)}, {_num(hi)}]"
            for axis, lo, hi in zip("xyz", self.range_min, self.range_max, strict=True)
        )
        return f"{x}x{y}x{z} voxels of {size} over {bounds} m"

    def to_dict(self) -> dict[str, Any]:
        return {
            "range_min": list(self.range_min),
            "range_max": list(self.range_max),
            "voxel_size": list(self.voxel_size),
            "shape": list(self.shape),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GridSpec:
        """Inverse of :meth:`to_dict`; a stored ``shape`` is checked, not trusted."""
        missing = {"range_min", "range_max", "voxel_size"} - set(data)
        if missing:
            raise ValueError(f"grid spec is missing {sorted(missing)}")
        spec = cls(tuple(data["range_min"]), tuple(data["range_max"]), tuple(data["voxel_size"]))
        if "shape" in data and tuple(data["shape"]) != spec.shape:
            raise ValueError(f"grid spec shape {tuple(data['shape'])} disagrees with its range/voxel size {spec.shape}")
        return spec


def _num(value: float) -> str:
    """``value`` in the shortest of ``%g`` and ``repr`` that reads back exactly."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def coarsening_factor(grid: GridSpec, target: GridSpec, what: str = "labels", target_what: str = "the target") -> int:
    """How many voxels of ``target`` per axis make one of ``grid`` (1: the same grid), for putting labels of
    ``grid`` on ``target`` with :func:`upsample_labels` (or ``target``'s labels on ``grid`` with :func:`pool_labels`).

    Raises:
        ValueError: naming both grids (shape, voxel size, bounds) when ``grid`` is neither ``target`` nor ``target``
            coarsened by a whole factor (:meth:`GridSpec.coarsening_of`); ``what`` / ``target_what`` name their owners.
    """
    factor = grid.coarsening_of(target)
    if factor is None:
        raise ValueError(
            f"grid mismatch: {what} has grid {grid.describe()}, but {target_what} has grid {target.describe()} "
            f"(the first must equal the second or coarsen it by a whole factor)"
        )
    return factor


def resample_labels(
    labels: np.ndarray, grid: GridSpec, src_from_dst: np.ndarray, fill: int, dst_grid: GridSpec | None = None
) -> np.ndarray:
    """Move a label volume into another frame by nearest-voxel lookup.

    Every voxel centre of the destination grid (in the destination ego frame) is transformed into
    the source frame and takes the label of the source voxel containing it; centres falling outside
    the source grid get ``fill``.

    Args:
        labels: (X, Y, Z) labels on ``grid``, in the source ego frame.
        grid: the source grid.
        src_from_dst: (4, 4) transform from the destination frame to the source frame
            (e.g. ``inv(world_from_src) @ world_from_dst`` for two ego poses).
        fill: label for voxels with no source (e.g. the vocabulary's free index).
        dst_grid: destination grid (default: the same spec).
    Returns:
        (X', Y', Z') labels of the destination grid, same dtype as ``labels``.
    """
    labels = np.asarray(labels)
    if labels.shape != grid.shape:
        raise ValueError(f"labels have shape {labels.shape}, grid {grid.shape}")
    dst = dst_grid or grid
    T = np.asarray(src_from_dst, dtype=np.float64)
    centres = dst.voxel_centers().reshape(-1, 3)
    src_pts = centres @ T[:3, :3].T + T[:3, 3]
    idx, inside = grid.points_to_indices(src_pts)
    out = np.full(centres.shape[0], fill, dtype=labels.dtype)
    out[inside] = labels[idx[inside, 0], idx[inside, 1], idx[inside, 2]]
    return out.reshape(dst.shape)


def pool_labels(
    labels: np.ndarray, factor: int, free: int, mask: np.ndarray | None = None, ignore: int = 255
) -> tuple[np.ndarray, np.ndarray]:
    """Labels of a grid coarsened by ``factor`` (:meth:`GridSpec.coarsened`) from the fine ones.

    A coarse voxel is occupied when any of its ``factor**3`` observed children is; it then takes the most
    frequent class among its occupied observed children (the lowest class index on a tie). Otherwise it is
    ``free`` when some child is observed, ``ignore`` when none is.

    Args:
        labels: (X, Y, Z) uint8 classes, ``free`` for empty, ``ignore`` for unlabelled.
        mask: (X, Y, Z) bool, observed voxels (default: every labelled one).
    Returns:
        (X/f, Y/f, Z/f) uint8 labels and the (X/f, Y/f, Z/f) bool mask of coarse voxels with an observed child.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or any(n % factor for n in labels.shape):
        raise ValueError(f"cannot pool a {labels.shape} label grid by {factor}: every axis must divide by it")
    observed = labels != ignore if mask is None else np.asarray(mask, dtype=bool) & (labels != ignore)
    X, Y, Z = (n // factor for n in labels.shape)

    def blocks(a: np.ndarray) -> np.ndarray:  # (X*Y*Z, f**3): the children of every coarse voxel
        return a.reshape(X, factor, Y, factor, Z, factor).transpose(0, 2, 4, 1, 3, 5).reshape(X * Y * Z, -1)

    lab, obs = blocks(labels), blocks(observed)
    occupied = obs & (lab != free)
    cell, child = np.nonzero(occupied)
    num = int(max(int(labels.max(initial=0)), free)) + 1
    votes = np.bincount(cell * num + lab[cell, child].astype(np.int64), minlength=X * Y * Z * num)
    winner = votes.reshape(X * Y * Z, num).argmax(axis=1)
    out = np.where(obs.any(axis=1), free, ignore).astype(labels.dtype)
    any_occupied = occupied.any(axis=1)
    out[any_occupied] = winner[any_occupied]
    return out.reshape(X, Y, Z), obs.any(axis=1).reshape(X, Y, Z)


def upsample_labels(labels: np.ndarray, factor: int) -> np.ndarray:
    """(X, Y, Z) labels of a coarsened grid -> (fX, fY, fZ) labels of the fine grid (every child takes its parent's)."""
    out = np.asarray(labels)
    for axis in range(3):
        out = np.repeat(out, factor, axis=axis)
    return out
