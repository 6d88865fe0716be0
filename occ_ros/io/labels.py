"""The project's label file, ``labels.npz``: Occ3D's arrays plus the grid they lie on (the one reader and writer).

Pseudo-labels (``occ labels``), predictions (``occ predict``, ``occ replay --predictions``) and the synthetic
ground truth (``occ synth``) are all written by :func:`save_labels` and read by :func:`load_labels`. A file is a
compressed npz (docs/conventions.md)::

    semantics    (X, Y, Z) uint8   class indices [x, y, z] (free = the vocabulary's last class; 255 = no label)
    mask_camera  (X, Y, Z) uint8   0/1, voxels the cameras observe (optional)
    mask_lidar   (X, Y, Z) uint8   0/1, voxels the LiDAR observes (optional)
    grid         () unicode        JSON of :meth:`GridSpec.to_dict` (range_min, range_max, voxel_size, shape)

plus any extra arrays of the writer (e.g. the pseudo-labels' ``depth_scale`` / ``depth_shift``). ``grid`` is a
plain unicode array, so any numpy >= 1.21 reads it without pickle. Official Occ3D files have no ``grid``: a
(200, 200, 16) file without one is on :meth:`GridSpec.occ3d`; other files without one take the grid their
reader knows (``load_labels(grid=...)``) or have none (``OccupancyLabels.grid`` is None).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from occ_ros.core.grid import GridSpec

from .atomic import PathLike, atomic_savez_compressed

#: File name of a label / prediction file (``<root>/<scene>/<frame>/labels.npz``).
LABELS_FILE = "labels.npz"
#: Keys of a ``labels.npz`` file: Occ3D's arrays, and the grid (absent from official Occ3D files).
SEMANTICS_KEY = "semantics"
MASK_KEYS = ("mask_camera", "mask_lidar")
GRID_KEY = "grid"


class LabelFileError(ValueError):
    """A label or prediction file is missing, corrupt, or not what was expected (names the file)."""


@dataclass(frozen=True)
class OccupancyLabels:
    """Semantic occupancy on a grid, with optional visibility masks.

    Attributes:
        semantics: (X, Y, Z) uint8 labels of the vocabulary (free = ``vocabulary.free_index``);
            ``IGNORE_LABEL`` marks voxels without a label (never in Occ3D files).
        mask_camera: (X, Y, Z) bool, voxels observed by the cameras (Occ3D ``mask_camera``), or None.
        mask_lidar: (X, Y, Z) bool, voxels observed by the LiDAR (Occ3D ``mask_lidar``;
            SemanticKITTI: not ``invalid``), or None.
        grid: the grid (ego frame) the labels lie on, its shape (X, Y, Z); None only where it is unknown (a file
            without a stored grid that no reader vouches for).
        extra: the file's other arrays, by key (pseudo-labels: per-camera ``depth_scale`` / ``depth_shift``).
    """

    semantics: np.ndarray
    mask_camera: np.ndarray | None = None
    mask_lidar: np.ndarray | None = None
    grid: GridSpec | None = None
    extra: Mapping[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        sem = np.asarray(self.semantics)
        if sem.ndim != 3 or sem.dtype != np.uint8:
            raise ValueError(f"semantics must be a 3-D uint8 array, got {sem.dtype} {sem.shape}")
        if self.grid is not None and self.grid.shape != sem.shape:
            raise ValueError(f"semantics have shape {sem.shape}, but their grid is {self.grid.describe()}")
        for name in MASK_KEYS:
            mask = getattr(self, name)
            if mask is not None:
                mask = np.asarray(mask)
                if mask.shape != sem.shape:
                    raise ValueError(f"{name} has shape {mask.shape}, semantics {sem.shape}")
                object.__setattr__(self, name, mask.astype(bool, copy=False))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.semantics.shape)  # type: ignore[return-value]

    def mask(self, which: str) -> np.ndarray | None:
        """``camera`` / ``lidar`` mask, or None for ``none`` (all voxels). Raises if the mask is absent."""
        if which == "none":
            return None
        if which not in ("camera", "lidar"):
            raise ValueError(f"mask must be camera, lidar or none, got {which!r}")
        mask = getattr(self, f"mask_{which}")
        if mask is None:
            raise ValueError(f"these labels have no {which} mask")
        return mask

    def arrays(self) -> dict[str, np.ndarray]:
        """The Occ3D ``labels.npz`` arrays (masks as uint8, as in the official files), without the grid."""
        out = {SEMANTICS_KEY: self.semantics}
        for name in MASK_KEYS:
            mask = getattr(self, name)
            if mask is not None:
                out[name] = mask.astype(np.uint8)
        return out


def grid_array(grid: GridSpec) -> np.ndarray:
    """The stored form of a grid: a 0-d unicode array of its JSON (sorted keys, exact floats)."""
    return np.array(json.dumps(grid.to_dict(), sort_keys=True))


def save_labels(path: PathLike, labels: OccupancyLabels, extra: Mapping[str, np.ndarray] | None = None) -> None:
    """Write ``labels`` (which must know their grid) to ``path`` atomically, with ``extra`` arrays beside them.

    Output is byte-identical for identical inputs.

    Raises:
        ValueError: the labels have no grid, or an extra array reuses a reserved key.
    """
    if labels.grid is None:
        raise ValueError(f"{path}: a label file carries its grid; these labels have none")
    extra = dict(extra or {})
    clash = sorted(set(extra) & {SEMANTICS_KEY, GRID_KEY, *MASK_KEYS})
    if clash:
        raise ValueError(f"{path}: extra arrays {clash} would overwrite the label file's own")
    atomic_savez_compressed(path, **labels.arrays(), **{GRID_KEY: grid_array(labels.grid)}, **extra)


def _stored_grid(path: Path, value: np.ndarray) -> GridSpec:
    try:
        if value.dtype.kind != "U" or value.ndim != 0:
            raise ValueError(f"expected a unicode scalar, got {value.dtype} {value.shape}")
        return GridSpec.from_dict(json.loads(str(value[()])))
    except (ValueError, TypeError, AttributeError) as err:  # JSONDecodeError is a ValueError
        raise LabelFileError(f"{path}: its {GRID_KEY!r} entry is not a grid spec ({err})") from None


def load_labels(
    path: str | Path,
    num_classes: int | None = None,
    shape: tuple[int, ...] | None = None,
    require_masks: bool = False,
    grid: GridSpec | None = None,
) -> OccupancyLabels:
    """Read a ``labels.npz`` (ground truth, pseudo-labels or prediction; official Occ3D files too), validating it.

    The result's grid is the stored one; for a file without one (an official Occ3D file, or a file written before
    label files carried their grid), ``grid`` when given, else :meth:`GridSpec.occ3d` for a (200, 200, 16) file,
    else None.

    Args:
        path: the ``.npz`` file; it must hold ``semantics`` (uint8 [x, y, z]) and may hold
            ``mask_camera`` / ``mask_lidar`` (uint8 or bool, same shape) and ``grid`` (module docstring).
        num_classes: if given, every label must lie in ``0..num_classes-1``.
        shape: if given, the expected (X, Y, Z).
        require_masks: both masks must be present (ground truth).
        grid: if given, the grid the labels must lie on (the reader's dataset grid).
    Raises:
        LabelFileError: naming the file, for a missing or corrupt file, a missing key, a wrong dtype, shape or
            label range, a stored grid whose shape is not the array's, or a grid other than ``grid``.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if SEMANTICS_KEY not in keys:
                raise LabelFileError(f"{path}: no {SEMANTICS_KEY!r} array (keys: {sorted(keys) or 'none'})")
            semantics = npz[SEMANTICS_KEY]
            masks = {name: npz[name] for name in MASK_KEYS if name in keys}
            stored = npz[GRID_KEY] if GRID_KEY in keys else None
            extra = {key: npz[key] for key in sorted(keys - {SEMANTICS_KEY, GRID_KEY, *MASK_KEYS})}
    except FileNotFoundError:
        raise LabelFileError(f"{path}: file not found") from None
    except LabelFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise LabelFileError(f"{path}: not a readable .npz file ({type(err).__name__}: {err})") from None
    if semantics.dtype != np.uint8:
        raise LabelFileError(f"{path}: {SEMANTICS_KEY} has dtype {semantics.dtype}, expected uint8")
    if semantics.ndim != 3:
        raise LabelFileError(f"{path}: {SEMANTICS_KEY} has shape {semantics.shape}, expected [x, y, z]")
    file_grid = _stored_grid(path, stored) if stored is not None else None
    if file_grid is not None and file_grid.shape != semantics.shape:
        raise LabelFileError(
            f"{path}: {SEMANTICS_KEY} has shape {semantics.shape}, but the file's grid is {file_grid.describe()}"
        )
    if shape is not None and tuple(semantics.shape) != tuple(shape):
        raise LabelFileError(f"{path}: {SEMANTICS_KEY} has shape {semantics.shape}, expected {tuple(shape)}")
    if grid is not None:
        if file_grid is not None and file_grid != grid:
            raise LabelFileError(f"{path}: the file's grid is {file_grid.describe()}, expected {grid.describe()}")
        if grid.shape != semantics.shape:
            raise LabelFileError(
                f"{path}: {SEMANTICS_KEY} has shape {semantics.shape}, expected the {grid.shape} of {grid.describe()}"
            )
    if file_grid is None:
        occ3d = GridSpec.occ3d()
        file_grid = grid if grid is not None else occ3d if semantics.shape == occ3d.shape else None
    if num_classes is not None and semantics.size:
        top = int(semantics.max())
        if top >= num_classes:
            bad = int(np.count_nonzero(semantics >= num_classes))
            raise LabelFileError(
                f"{path}: {bad} labels are outside 0..{num_classes - 1} (max {top}); "
                f"expected classes of a {num_classes}-class vocabulary"
            )
    for name, mask in masks.items():
        if mask.shape != semantics.shape:
            raise LabelFileError(f"{path}: {name} has shape {mask.shape}, {SEMANTICS_KEY} {semantics.shape}")
        if mask.dtype not in (np.uint8, np.bool_):
            raise LabelFileError(f"{path}: {name} has dtype {mask.dtype}, expected uint8 or bool")
    if require_masks:
        missing = [name for name in MASK_KEYS if name not in masks]
        if missing:
            raise LabelFileError(f"{path}: ground truth lacks {', '.join(missing)}")
    return OccupancyLabels(
        semantics=semantics,
        mask_camera=masks.get("mask_camera"),
        mask_lidar=masks.get("mask_lidar"),
        grid=file_grid,
        extra=extra,
    )
