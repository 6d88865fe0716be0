"""The one sample type every dataset reader produces, and the Occ3D label file format.

A :class:`Sample` is one synchronized multi-camera frame: the images, the :class:`CameraRig`
that took them, the ego pose and the timestamps, plus ground truth when the dataset has it.
Training, pseudo-labelling, evaluation and replay all consume this type, whatever the source
(synthetic world, nuScenes + Occ3D, SemanticKITTI, or any rosbag2 recording).

Frames (docs/conventions.md): ``world_from_ego`` is the pose of the ego frame (base_link,
x forward, y left, z up) in the dataset's fixed frame (``odom`` for bags and the synthetic
world, ``global`` for nuScenes, the first LiDAR pose for SemanticKITTI). Labels are indexed
``[x, y, z]`` on the sample's :class:`GridSpec`, in the ego frame.
"""

from __future__ import annotations

import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import CameraRig
from occ_ros.core.vocabulary import Vocabulary

#: File name of an Occ3D label / prediction file (``<root>/<scene>/<frame>/labels.npz``).
LABELS_FILE = "labels.npz"
#: Keys of an Occ3D ``labels.npz`` file.
SEMANTICS_KEY = "semantics"
MASK_KEYS = ("mask_camera", "mask_lidar")
#: Label value meaning "not evaluated / unknown" (e.g. SemanticKITTI's invalid voxels).
IGNORE_LABEL = 255


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
    """

    semantics: np.ndarray
    mask_camera: np.ndarray | None = None
    mask_lidar: np.ndarray | None = None

    def __post_init__(self) -> None:
        sem = np.asarray(self.semantics)
        if sem.ndim != 3 or sem.dtype != np.uint8:
            raise ValueError(f"semantics must be a 3-D uint8 array, got {sem.dtype} {sem.shape}")
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
        """The Occ3D ``labels.npz`` arrays (masks as uint8, as in the official files)."""
        out = {SEMANTICS_KEY: self.semantics}
        for name in MASK_KEYS:
            mask = getattr(self, name)
            if mask is not None:
                out[name] = mask.astype(np.uint8)
        return out


def load_labels(
    path: str | Path,
    num_classes: int | None = None,
    shape: tuple[int, ...] | None = None,
    require_masks: bool = False,
) -> OccupancyLabels:
    """Read an Occ3D-format ``labels.npz`` (ground truth or prediction), validating it.

    Args:
        path: the ``.npz`` file; it must hold ``semantics`` (uint8 [x, y, z]) and may hold
            ``mask_camera`` / ``mask_lidar`` (uint8 or bool, same shape).
        num_classes: if given, every label must lie in ``0..num_classes-1``.
        shape: if given, the expected (X, Y, Z).
        require_masks: both masks must be present (ground truth).
    Raises:
        LabelFileError: naming the file, for a missing or corrupt file, a missing key, or a wrong
            dtype, shape or label range.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if SEMANTICS_KEY not in keys:
                raise LabelFileError(f"{path}: no {SEMANTICS_KEY!r} array (keys: {sorted(keys) or 'none'})")
            semantics = npz[SEMANTICS_KEY]
            masks = {name: npz[name] for name in MASK_KEYS if name in keys}
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
    if shape is not None and tuple(semantics.shape) != tuple(shape):
        raise LabelFileError(f"{path}: {SEMANTICS_KEY} has shape {semantics.shape}, expected {tuple(shape)}")
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
        semantics=semantics, mask_camera=masks.get("mask_camera"), mask_lidar=masks.get("mask_lidar")
    )


@dataclass
class Sample:
    """One synchronized multi-camera frame.

    Attributes:
        dataset: reader kind (``synth``, ``nuscenes``, ``semantickitti``, ``rosbag``).
        scene: scene / sequence / bag name.
        frame: frame id within the scene (synthetic frame number, nuScenes sample token,
            SemanticKITTI frame number, bag sample index); GT and predictions live at
            ``<root>/<scene>/<frame>/labels.npz``.
        index: position of the frame in its scene (0-based).
        stamp_ns: sample time, nanoseconds (the reference camera's header stamp for bags).
        rig: the cameras, in the order of ``images``.
        images: camera name -> (H, W, 3) uint8 RGB; empty when the reader was asked not to load images.
        image_stamps_ns: camera name -> header stamp, nanoseconds.
        world_from_ego: (4, 4) pose of the ego frame in the dataset's fixed frame at ``stamp_ns``.
        grid: the label grid (ego frame), or None when the dataset has no grid.
        vocabulary: the label vocabulary.
        gt: ground-truth occupancy, or None.
        extras: reader-specific extras (e.g. ``lidar_ego_position``), documented per reader.
    """

    dataset: str
    scene: str
    frame: str
    index: int
    stamp_ns: int
    rig: CameraRig
    images: dict[str, np.ndarray]
    image_stamps_ns: dict[str, int]
    world_from_ego: np.ndarray
    grid: GridSpec | None
    vocabulary: Vocabulary
    gt: OccupancyLabels | None = None
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``<scene>/<frame>``: the relative directory of this frame's label files."""
        return f"{self.scene}/{self.frame}"

    def image_list(self) -> list[np.ndarray]:
        """Images in rig order (raises naming the camera if one is missing)."""
        missing = [name for name in self.rig.names if name not in self.images]
        if missing:
            raise KeyError(f"sample {self.key}: no image for camera(s) {missing}")
        return [self.images[name] for name in self.rig.names]


class DatasetReader(ABC):
    """A sequence of :class:`Sample` s, indexable and iterable; readers load lazily.

    Subclasses implement ``__len__`` and :meth:`load`. ``load(i, images=False)`` must be cheap
    (no image decoding) so that metrics needing only poses can walk a whole dataset.
    """

    kind: str = "dataset"

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load(self, index: int, images: bool = True) -> Sample:
        """The sample at ``index`` (0-based, ``IndexError`` outside), with or without its images."""

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"{self.kind} reader: index {index} out of range 0..{len(self) - 1}")
        return self.load(index)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self.load(i)

    def write_prediction(self, out: str | Path, sample: Sample, semantics: np.ndarray) -> Path | None:
        """Write ``semantics`` (the grid's vocabulary labels of ``sample``) in the dataset's official prediction
        format under ``out``, for its own evaluation tools; returns the file, or None when the dataset has no
        such format (the Occ3D ``labels.npz`` written beside it is then the only output)."""
        return None

    def scenes(self) -> dict[str, list[int]]:
        """Scene name -> sample indices in time order (default: walks the samples without images)."""
        out: dict[str, list[int]] = {}
        for i in range(len(self)):
            s = self.load(i, images=False)
            out.setdefault(s.scene, []).append(i)
        return out

    def poses(self) -> Mapping[str, np.ndarray]:
        """Scene name -> (T, 4, 4) world_from_ego of its samples, in time order."""
        out: dict[str, np.ndarray] = {}
        for scene, idx in self.scenes().items():
            out[scene] = np.stack([self.load(i, images=False).world_from_ego for i in idx])
        return out
