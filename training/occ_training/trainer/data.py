"""Training frames: one dataset frame -> the tensors every enabled loss term needs.

:class:`FrameDataset` opens the configured datasets with the project's readers (any of them), runs the one
:func:`~occ_ros.core.preprocess.preprocess` on the images, reads the frame's pseudo-labels (``occ labels``
output) and asks the 2D teachers for depth, semantics and CLIP features. 2D targets are resampled onto the
network image's pixel grid (the inverse of the preprocessing map), so losses never deal with source-image
coordinates. Items are dicts of numpy arrays (``torch``'s default collate stacks them):

======================  ===================  =======================================================
key                     shape / dtype        meaning
======================  ===================  =======================================================
``index``               int                  position in the dataset (seeds per-frame randomness)
``images``              (N, 3, H, W) f32     normalised network input
``K``                   (N, 3, 3) f32        intrinsics of the network images
``cam_from_ego``        (N, 4, 4) f32        extrinsics
``labels``              (X, Y, Z) u8         pseudo-labels (``IGNORE_LABEL`` = unknown)
``label_mask``          (X, Y, Z) bool       their camera mask
``depth``               (N, H, W) f32        metric teacher depth, metres (0 = none)
``sem_labels``          (N, H, W) u8         teacher classes (non-free, ``IGNORE_LABEL`` = none)
``sem_conf``            (N, H, W) f32        teacher confidence of that class
``segments``            (N, H, W) i32        connected components of ``sem_labels`` (-1 = none)
``features``            (N, h, w, D) f32     teacher CLIP features covering the network image
``src_images``          (S, N, 3, H, W) f32  neighbour frames' images in [0, 1] (photometric loss)
``src_from_tgt``        (S, N, 4, 4) f32     target optical frame -> the neighbour's optical frame
``src_valid``           (S,) bool            the neighbour exists
``gt`` / ``gt_mask``    (X, Y, Z)            ground truth and its camera mask (validation)
======================  ===================  =======================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from occ_ros.core.grid import pool_labels
from occ_ros.core.preprocess import PreprocessConfig, preprocess, source_pixels
from occ_ros.core.rig import Camera
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.datasets import open_dataset
from occ_ros.datasets.sample import IGNORE_LABEL, LABELS_FILE, DatasetReader, OccupancyLabels, Sample, load_labels
from occ_training.labels.pipeline import SCALE_KEY, SHIFT_KEY
from occ_training.teachers.factory import build_feature_teacher, build_teachers

from .config import TrainConfig


class DataError(ValueError):
    """Training data that cannot be used (names the dataset, file or frame and what was expected)."""


@dataclass(frozen=True)
class Needs:
    """Which targets the enabled loss terms read."""

    labels: bool = False
    depth: bool = False
    semantics: bool = False
    features: bool = False
    photometric: bool = False
    gt: bool = False

    @classmethod
    def for_training(cls, config: TrainConfig) -> Needs:
        loss = config.loss
        return cls(
            labels=loss.enabled("voxel_ce")
            or loss.enabled("voxel_lovasz")
            or (config.uses_distillation and config.distill.teacher == "labels"),
            depth=loss.enabled("depth") or loss.enabled("lift_depth"),
            semantics=loss.enabled("semantic") or loss.enabled("affinity"),
            features=loss.enabled("clip"),
            photometric=loss.enabled("photometric"),
        )


@dataclass(frozen=True)
class FrameRef:
    """Where a frame lives: reader, sample index, and the sample indices of its scene in time order."""

    reader: int
    index: int
    position: int
    scene: tuple[int, ...]


def open_readers(
    roots: tuple[str, ...], config: TrainConfig, load_gt: bool, sequences: tuple[str, ...] = ()
) -> list[DatasetReader]:
    """One reader per dataset root (``sequences``: only these SemanticKITTI sequences of each root)."""
    options: dict[str, Any] = {}
    if config.data.dataset_config:
        options["config"] = config.data.dataset_config
    if sequences:
        options["sequences"] = list(sequences)
    readers = []
    for root in roots:
        try:
            readers.append(open_dataset(root, config.data.kind, load_gt=load_gt, **options))
        except (FileNotFoundError, ValueError) as err:
            raise DataError(f"data: cannot open {root}: {err}") from None
    return readers


def check_compatible(reader: DatasetReader, root: str, config: TrainConfig, vocabulary: Vocabulary) -> None:
    """Raise :class:`DataError` naming both sides when a dataset's grid, vocabulary or rig size mismatch the model."""
    sample = reader.load(0, images=False)
    if sample.vocabulary.names != vocabulary.names:
        raise DataError(
            f"{root}: the dataset's vocabulary {sample.vocabulary.name!r} ({len(sample.vocabulary)} classes: "
            f"{sample.vocabulary.names}) differs from the model's {vocabulary.name!r} ({len(vocabulary)} classes: "
            f"{vocabulary.names})"
        )
    grid = config.model.grid_spec
    if sample.grid is not None and grid.coarsening_of(sample.grid) is None:
        raise DataError(
            f"{root}: the dataset's grid {sample.grid} is neither the model's grid {grid} nor a finer grid of the "
            "same volume that it coarsens by a whole factor"
        )
    if len(sample.rig) != config.model.num_cameras:
        raise DataError(
            f"{root}: the dataset has {len(sample.rig)} cameras ({list(sample.rig.names)}), the model takes "
            f"{config.model.num_cameras}"
        )


def pool_factor(reader: DatasetReader, config: TrainConfig) -> int:
    """How many dataset voxels per axis make one model voxel (1: the same grid; see :func:`check_compatible`)."""
    grid = reader.load(0, images=False).grid
    return 1 if grid is None else config.model.grid_spec.coarsening_of(grid) or 1


def labels_root(root: str, reader: DatasetReader, labels: str, base: str = "dataset") -> Path:
    """The pseudo-label folder of a dataset (``data.labels``, relative to the dataset folder or a bag's parent, or
    to the current folder when ``base`` is ``cwd``)."""
    path = Path(labels)
    if path.is_absolute() or base == "cwd":
        return path
    base = Path(root).parent if reader.kind == "rosbag" else Path(root)
    return base / path


def to_network_grid(
    maps: np.ndarray, camera: Camera, config: PreprocessConfig, size: tuple[int, int], mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """Resample one camera's source-image map onto a grid covering the network image.

    The map (``(h_m, w_m, C)``, any resolution) covers the camera's source image; output cell ``(i, j)`` of
    ``size = (h, w)`` sits at network pixel ``((j + 0.5) W / w - 0.5, (i + 0.5) H / h - 0.5)`` and reads the map
    there (``mode`` ``nearest`` or ``bilinear``).

    Returns:
        (h, w, C) float32 values (0 outside the source image) and (h, w) bool ``inside``.
    """
    height, width = size
    u = (np.arange(width) + 0.5) * config.width / width - 0.5
    v = (np.arange(height) + 0.5) * config.height / height - 0.5
    us, vs = source_pixels(u[None, :], v[:, None], camera.width, camera.height, config)
    us, vs = np.broadcast_to(us, (height, width)), np.broadcast_to(vs, (height, width))
    gx = 2.0 * (us + 0.5) / camera.width - 1.0
    gy = 2.0 * (vs + 0.5) / camera.height - 1.0
    inside = (np.abs(gx) <= 1.0) & (np.abs(gy) <= 1.0)
    grid = torch.from_numpy(np.stack([gx, gy], axis=-1)[None].astype(np.float32))
    src = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)).permute(2, 0, 1)[None]
    out = F.grid_sample(src, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out[0].permute(1, 2, 0).numpy(), inside


def connected_segments(labels: np.ndarray) -> np.ndarray:
    """(H, W) int32 ids of the 4-connected regions of equal label (``IGNORE_LABEL`` pixels get -1)."""
    import cv2

    out = np.full(labels.shape, -1, dtype=np.int32)
    next_id = 0
    for value in np.unique(labels):
        if value == IGNORE_LABEL:
            continue
        count, comp = cv2.connectedComponents((labels == value).astype(np.uint8), connectivity=4)
        member = comp > 0
        out[member] = comp[member] - 1 + next_id
        next_id += count - 1
    return out


#: Mirror of the ego frame about its x-z plane (y -> -y) and of an optical frame about its y-z plane (x -> -x).
EGO_MIRROR = np.diag([1.0, -1.0, 1.0, 1.0]).astype(np.float32)
OPTICAL_MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0]).astype(np.float32)


def mirror_item(item: dict[str, Any]) -> dict[str, Any]:
    """The training item of the left-right mirrored world (augmentation; needs a grid symmetric in y).

    Mirroring the world about the ego x-z plane turns each camera's image into its horizontal flip, seen by the
    mirrored camera: ``cam_from_ego' = S cam_from_ego M`` (``M``: y -> -y in ego, ``S``: x -> -x in the optical
    frame; the product is a proper rotation again) with ``c_x' = W - 1 - c_x``. A point ``p`` that projects to pixel
    ``(u, v)`` then has its mirror image ``M p`` project to ``(W - 1 - u, v)``. Voxel labels flip along y; every
    per-pixel map flips along its width; neighbour-frame transforms become ``S T S``.
    """
    out = dict(item)
    width = item["images"].shape[-1]
    out["images"] = np.ascontiguousarray(item["images"][..., ::-1])
    K = item["K"].copy()
    K[:, 0, 2] = width - 1 - K[:, 0, 2]
    out["K"] = K
    out["cam_from_ego"] = (OPTICAL_MIRROR @ item["cam_from_ego"] @ EGO_MIRROR).astype(np.float32)
    for key in ("labels", "label_mask", "gt", "gt_mask"):
        if key in item:
            out[key] = np.ascontiguousarray(item[key][:, ::-1])
    for key in ("depth", "sem_labels", "sem_conf", "segments", "src_images"):
        if key in item:
            out[key] = np.ascontiguousarray(item[key][..., ::-1])
    if "features" in item:
        out["features"] = np.ascontiguousarray(item["features"][:, :, ::-1])
    if "src_from_tgt" in item:
        out["src_from_tgt"] = (OPTICAL_MIRROR @ item["src_from_tgt"] @ OPTICAL_MIRROR).astype(np.float32)
    return out


class FrameDataset(Dataset):
    """The frames of ``data.train`` (``split="train"``) or ``data.val`` (``"val"``) with their targets.

    Raises:
        DataError: a dataset that does not open, whose grid / vocabulary / camera count differs from the model,
            or a training frame without its pseudo-label file (names the file and the command that makes it).
    """

    def __init__(self, config: TrainConfig, vocabulary: Vocabulary, split: str = "train") -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be train or val, got {split!r}")
        self.config = config
        self.vocabulary = vocabulary
        self.preprocess_config = config.preprocess()
        roots = config.data.train if split == "train" else config.data.val
        if split == "train" and not roots:
            raise DataError("data.train is empty: list at least one dataset folder or bag")
        # validation scores against the ground truth (or, with val_target: labels, the pseudo-labels), and picks
        # the decision bias against the pseudo-labels
        by_gt = config.data.val_target == "gt"
        val_needs = Needs(gt=by_gt, labels=config.decision.logit_adjustment == "val" or not by_gt)
        self.needs = Needs.for_training(config) if split == "train" else val_needs
        self.roots = roots
        sequences = config.data.train_sequences if split == "train" else config.data.val_sequences
        self.readers = open_readers(roots, config, load_gt=split == "val" and by_gt, sequences=sequences)
        self.frames: list[FrameRef] = []
        self.label_dirs: list[Path] = []
        self.pool: list[int] = []
        for r, (root, reader) in enumerate(zip(roots, self.readers, strict=True)):
            check_compatible(reader, root, config, vocabulary)
            self.pool.append(pool_factor(reader, config))
            self.label_dirs.append(labels_root(root, reader, config.data.labels, config.data.labels_base))
            refs = []
            for indices in reader.scenes().values():
                refs += [FrameRef(r, i, p, tuple(indices)) for p, i in enumerate(indices)]
            if split == "val" and config.data.val_frames and len(refs) > config.data.val_frames:
                keep = np.linspace(0, len(refs) - 1, config.data.val_frames).round().astype(int)
                refs = [refs[k] for k in keep]
            self.frames += refs
        # The pseudo-label file of every frame, resolved once (the reader's scene / frame names need a load).
        self.label_files: list[Path] = []
        if self.needs.labels:
            self.label_files = [self._label_path(ref) for ref in self.frames]
            self._check_labels()
        self._teachers: dict[int, tuple[Any, Any, Any]] = {}
        self._cache: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def camera_names(self) -> tuple[str, ...]:
        """Camera names of the first dataset's rig, in the network's input order."""
        return tuple(self.readers[0].load(0, images=False).rig.names)

    # ------------------------------------------------------------------ checks
    def _label_path(self, ref: FrameRef) -> Path:
        sample = self.readers[ref.reader].load(ref.index, images=False)
        return self.label_dirs[ref.reader] / sample.scene / sample.frame / LABELS_FILE

    def _check_labels(self) -> None:
        missing = [(ref, path) for ref, path in zip(self.frames, self.label_files, strict=True) if not path.exists()]
        if missing:
            reader = missing[0][0].reader  # the sequence of the first missing file, not the first sequence
            raise DataError(
                f"{len(missing)} of {len(self.frames)} training frames have no pseudo-labels, e.g. {missing[0][1]}; "
                f"make them with `occ labels --data {self.roots[reader]} --out {self.label_dirs[reader]}` "
                f"(data.labels = {self.config.data.labels!r})"
            )

    def label_class_counts(self) -> np.ndarray:
        """(C,) int64 counts of each pseudo-label class inside the camera masks of the frames."""
        num_classes = len(self.vocabulary)
        counts = np.zeros(num_classes, dtype=np.int64)
        for ref, path in zip(self.frames, self.label_files, strict=True):
            labels = load_labels(path, num_classes=num_classes)
            semantics, mask = self._pooled(labels.semantics, self._label_mask(labels), self.pool[ref.reader])
            sem = semantics[mask]
            counts += np.bincount(sem[sem < num_classes].ravel(), minlength=num_classes)
        return counts

    def _label_mask(self, labels: OccupancyLabels) -> np.ndarray:
        """(X, Y, Z) bool: the pseudo-label voxels the losses supervise (``data.label_mask``)."""
        mask = labels.mask_camera if labels.mask_camera is not None else np.ones(labels.shape, bool)
        if self.config.data.label_mask == "camera_and_occupied":
            mask = mask | ((labels.semantics != self.vocabulary.free_index) & (labels.semantics != IGNORE_LABEL))
        return mask

    def _pooled(self, semantics: np.ndarray, mask: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels and mask on the model's grid (pooled from a finer dataset grid, :func:`pool_labels`)."""
        if factor == 1:
            return semantics, mask
        pooled, observed = pool_labels(semantics, factor, self.vocabulary.free_index, mask=mask, ignore=IGNORE_LABEL)
        return pooled, observed

    # ------------------------------------------------------------------ teachers
    def _teachers_of(self, r: int) -> tuple[Any, Any, Any]:
        if r not in self._teachers:
            spec = self.config.data.teachers
            seg = depth = feats = None
            if self.needs.semantics or self.needs.depth:
                seg, depth = build_teachers(spec, self.roots[r], self.vocabulary)
            if self.needs.features:
                feats = build_feature_teacher(spec, self.roots[r])
            self._teachers[r] = (seg, depth, feats)
        return self._teachers[r]

    # ------------------------------------------------------------------ items
    def __getitem__(self, i: int) -> dict[str, Any]:
        if i in self._cache:
            return self._cache[i]
        item = self._build(i)
        if self.config.data.cache:
            self._cache[i] = item
        return item

    def _build(self, i: int) -> dict[str, Any]:
        ref = self.frames[i]
        reader = self.readers[ref.reader]
        sample = reader.load(ref.index)
        pre = self.preprocess_config
        net = preprocess(sample.images, sample.rig, pre)
        item: dict[str, Any] = {"index": i, "images": net.images, "K": net.K, "cam_from_ego": net.cam_from_ego}
        size = (pre.height, pre.width)
        calibration: tuple[np.ndarray, np.ndarray] | None = None
        factor = self.pool[ref.reader]
        if self.needs.labels:
            path = self.label_files[i]
            if sample.grid is not None:
                labels = load_labels(path, num_classes=len(self.vocabulary), grid=sample.grid)
            else:
                labels = load_labels(path, num_classes=len(self.vocabulary), shape=self.config.model.grid_spec.shape)
            item["labels"], item["label_mask"] = self._pooled(labels.semantics, self._label_mask(labels), factor)
            if SCALE_KEY in labels.extra:
                calibration = (labels.extra[SCALE_KEY], labels.extra[SHIFT_KEY])
        if self.needs.gt:
            if sample.gt is None:
                raise DataError(f"{self.roots[ref.reader]}: frame {sample.key} has no ground truth for validation")
            gt_mask = sample.gt.mask_camera
            gt_mask = gt_mask if gt_mask is not None else np.ones(sample.gt.shape, bool)
            item["gt"], item["gt_mask"] = self._pooled(sample.gt.semantics, gt_mask, factor)
        seg_teacher, depth_teacher, feature_teacher = self._teachers_of(ref.reader)
        if self.needs.depth:
            item["depth"] = self._depth(sample, depth_teacher, calibration, size)
        if self.needs.semantics:
            item.update(self._semantics(sample, seg_teacher, size))
        if self.needs.features:
            item["features"] = self._features(sample, feature_teacher)
        if self.needs.photometric:
            item.update(self._neighbours(ref, sample, net.cam_from_ego))
        return item

    def _depth(
        self, sample: Sample, teacher: Any, calibration: tuple[np.ndarray, np.ndarray] | None, size: tuple[int, int]
    ) -> np.ndarray:
        maps = teacher.estimate(sample)
        out = np.zeros((len(sample.rig), *size), dtype=np.float32)
        for c, cam in enumerate(sample.rig):
            dmap = maps[cam.name]
            if dmap.kind == "relative":
                if calibration is None:
                    raise DataError(
                        f"sample {sample.key}: the depth teacher is relative but its pseudo-label file has no "
                        f"{SCALE_KEY}/{SHIFT_KEY} (relabel with `occ labels` of this version, or use metric depth)"
                    )
                scale, shift = float(calibration[0][c]), float(calibration[1][c])
                if not (np.isfinite(scale) and np.isfinite(shift)):
                    continue  # camera not calibrated in this frame: no depth target
                metric = dmap.to_metric(scale, shift)
            else:
                metric = dmap.to_metric()
            values, _ = to_network_grid(metric[..., None], cam, self.preprocess_config, size, "nearest")
            out[c] = values[..., 0]
        return out

    def _semantics(self, sample: Sample, teacher: Any, size: tuple[int, int]) -> dict[str, np.ndarray]:
        maps = teacher.segment(sample)
        n = len(sample.rig)
        labels = np.full((n, *size), IGNORE_LABEL, dtype=np.uint8)
        conf = np.zeros((n, *size), dtype=np.float32)
        segments = np.full((n, *size), -1, dtype=np.int32)
        min_conf = self.config.loss.semantic_min_confidence
        for c, cam in enumerate(sample.rig):
            lab, cf = maps[cam.name].labels(min_conf)
            stacked = np.stack([lab.astype(np.float32), cf], axis=-1)
            values, inside = to_network_grid(stacked, cam, self.preprocess_config, size, "nearest")
            labels[c] = np.where(inside, values[..., 0], IGNORE_LABEL).astype(np.uint8)
            conf[c] = np.where(inside, values[..., 1], 0.0)
            segments[c] = connected_segments(labels[c])
        return {"sem_labels": labels, "sem_conf": conf, "segments": segments}

    def _features(self, sample: Sample, teacher: Any) -> np.ndarray:
        maps = teacher.features(sample)
        pre = self.preprocess_config
        out = []
        for cam in sample.rig:
            fmap = maps[cam.name].features
            scale, _ = pre.scale_and_crop(cam.width, cam.height)
            rows = max(1, int(np.ceil(fmap.shape[0] * pre.height / (scale * cam.height))))
            values, _ = to_network_grid(fmap, cam, pre, (rows, fmap.shape[1]), "bilinear")
            out.append(values)
        return np.stack(out)

    def _neighbours(self, ref: FrameRef, sample: Sample, cam_from_ego: np.ndarray) -> dict[str, np.ndarray]:
        offsets = self.config.photometric.neighbours
        pre = self.preprocess_config
        n = len(sample.rig)
        images = np.zeros((len(offsets), n, 3, pre.height, pre.width), dtype=np.float32)
        transforms = np.tile(np.eye(4, dtype=np.float32), (len(offsets), n, 1, 1))
        valid = np.zeros(len(offsets), dtype=bool)
        mean = np.asarray(pre.mean, np.float32)[:, None, None]
        std = np.asarray(pre.std, np.float32)[:, None, None]
        for s, offset in enumerate(offsets):
            p = ref.position + offset
            if not 0 <= p < len(ref.scene):
                continue
            other = self.readers[ref.reader].load(ref.scene[p])
            src = preprocess(other.images, other.rig, pre)
            images[s] = src.images * std + mean
            src_ego_from_tgt_ego = np.linalg.inv(other.world_from_ego) @ sample.world_from_ego
            transforms[s] = src.cam_from_ego @ src_ego_from_tgt_ego @ np.linalg.inv(cam_from_ego)
            valid[s] = True
        return {"src_images": images, "src_from_tgt": transforms.astype(np.float32), "src_valid": valid}
