"""The one sample type every dataset reader produces (and, re-exported from :mod:`occ_ros.io.labels`, the label file).

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

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import CameraRig
from occ_ros.core.undistort import undistort
from occ_ros.core.vocabulary import IGNORE_LABEL, Vocabulary
from occ_ros.io.labels import (
    LABELS_FILE,
    MASK_KEYS,
    SEMANTICS_KEY,
    LabelFileError,
    OccupancyLabels,
    load_labels,
    save_labels,
)

__all__ = [
    "IGNORE_LABEL",
    "LABELS_FILE",
    "MASK_KEYS",
    "SEMANTICS_KEY",
    "DatasetReader",
    "LabelFileError",
    "OccupancyLabels",
    "Sample",
    "load_labels",
    "save_labels",
]


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

    def undistorted(self) -> Sample:
        """This sample with every image undistorted to its camera's ``K`` and a rig without distortion (itself when
        no camera has distortion).

        :func:`~occ_ros.core.preprocess.preprocess` undistorts on its own; this is for code that reads the raw
        images with the rig's pinhole geometry (teachers, depth, projections).
        """
        if not any(c.distortion_model for c in self.rig):
            return self
        images = {name: undistort(image, self.rig[name]) for name, image in self.images.items()}
        return replace(self, rig=self.rig.undistorted(), images=images)


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
