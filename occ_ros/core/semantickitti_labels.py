"""SemanticKITTI label maps: learning classes and the official raw id -> learning id tables.

Pure label-space definitions (like :mod:`occ_ros.core.vocabulary`), no file readers: the SSC metric
(:mod:`occ_ros.eval.ssc`) and the SemanticKITTI reader (:mod:`occ_ros.datasets.semantickitti`, which re-exports
every name here) both use them.

Label ids: *raw* ids (10 car, 252 moving-car, ...) are stored in files; *learning* ids 0..19 are the evaluation
classes (0 = empty in completion, :data:`IGNORE_LABEL` 255 = ignore). The maps ship in
``config/datasets/semantic-kitti.yaml`` (the official ``semantic-kitti.yaml``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.core.rig import config_path
from occ_ros.core.vocabulary import IGNORE_LABEL

#: Learning classes: 0 = empty (``free``) plus 19 semantic classes.
NUM_LEARNING_CLASSES = 20
#: Our names (snake_case, vocabulary order) of learning ids 1..19.
LEARNING_CLASS_NAMES: tuple[str, ...] = (
    "car", "bicycle", "motorcycle", "truck", "other_vehicle", "person", "bicyclist", "motorcyclist",
    "road", "parking", "sidewalk", "other_ground", "building", "fence", "vegetation", "trunk",
    "terrain", "pole", "traffic_sign",
)  # fmt: skip
#: The official names of learning ids 1..19 (``labels[learning_map_inv[i]]`` of ``semantic-kitti.yaml``, hyphenated):
#: the class keys of semantic-kitti-api ``evaluate_completion.py`` (its ``scores.txt`` has ``iou_<name>``) and so of
#: the SSC metric's results and JSON. :data:`LEARNING_CLASS_NAMES` stays the vocabulary's snake_case spelling.
OFFICIAL_CLASS_NAMES: tuple[str, ...] = tuple(name.replace("_", "-") for name in LEARNING_CLASS_NAMES)
DATASET_CONFIG = ("datasets", "semantic-kitti.yaml")


@dataclass(frozen=True)
class SemanticKittiConfig:
    """The official ``semantic-kitti.yaml`` (raw ids are ints; ``color_map`` is BGR)."""

    labels: dict[int, str]
    color_map_bgr: dict[int, tuple[int, int, int]]
    learning_map: dict[int, int]
    learning_map_inv: dict[int, int]
    learning_ignore: dict[int, bool]
    split: dict[str, list[int]]
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> SemanticKittiConfig:
        required = ("labels", "learning_map", "learning_map_inv", "learning_ignore", "split")
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a mapping with keys {list(required)}")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"{source}: missing {missing}")
        try:
            cfg = cls(
                labels={int(k): str(v) for k, v in data["labels"].items()},
                color_map_bgr={
                    int(k): tuple(int(c) for c in v)  # type: ignore[misc]
                    for k, v in (data.get("color_map") or {}).items()
                },
                learning_map={int(k): int(v) for k, v in data["learning_map"].items()},
                learning_map_inv={int(k): int(v) for k, v in data["learning_map_inv"].items()},
                learning_ignore={int(k): bool(v) for k, v in data["learning_ignore"].items()},
                split={str(k): [int(s) for s in v] for k, v in data["split"].items()},
                source=source,
            )
        except (AttributeError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: malformed SemanticKITTI config ({err})") from None
        bad = {k: v for k, v in cfg.learning_map.items() if not 0 <= v < NUM_LEARNING_CLASSES or k < 0}
        if bad:
            raise ValueError(f"{source}: learning_map values must be in 0..{NUM_LEARNING_CLASSES - 1}: {bad}")
        if sorted(cfg.learning_map_inv) != list(range(NUM_LEARNING_CLASSES)):
            raise ValueError(f"{source}: learning_map_inv must cover learning ids 0..{NUM_LEARNING_CLASSES - 1}")
        return cfg

    def class_name(self, learning_id: int) -> str:
        """Official (hyphenated) name of a learning id, e.g. 5 -> ``other-vehicle``."""
        return self.labels[self.learning_map_inv[learning_id]]


@functools.lru_cache(maxsize=8)
def _load_config_cached(path: str) -> SemanticKittiConfig:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ValueError(f"cannot read SemanticKITTI config {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"SemanticKITTI config {path} is not valid YAML: {err}") from None
    return SemanticKittiConfig.from_dict(data, source=path)


def load_semantickitti_config(path: str | Path | SemanticKittiConfig | None = None) -> SemanticKittiConfig:
    """The label maps from ``path`` (default: the shipped ``config/datasets/semantic-kitti.yaml``)."""
    if isinstance(path, SemanticKittiConfig):
        return path
    path = config_path(*DATASET_CONFIG) if path is None else Path(path)
    return _load_config_cached(str(Path(path).resolve()))


def completion_lut(config: SemanticKittiConfig | str | Path | None = None) -> np.ndarray:
    """The official completion remap table, raw id -> learning id (int16; -1 for unknown raw ids).

    As semantic-kitti-api ``evaluate_completion.py``: ``lut[k] = learning_map[k]``, then learning
    id 0 -> 255 (invalid), then ``lut[0] = 0`` (only raw 0 "empty" stays empty).
    """
    cfg = load_semantickitti_config(config)
    lut = np.full(max(cfg.learning_map) + 1, -1, dtype=np.int16)
    lut[list(cfg.learning_map)] = list(cfg.learning_map.values())
    lut[lut == 0] = IGNORE_LABEL
    lut[0] = 0
    return lut


def remap_completion(raw: np.ndarray, config: SemanticKittiConfig | str | Path | None = None) -> np.ndarray:
    """Raw SemanticKITTI ids (any shape, integer) -> uint8 learning ids 0..19, 255 = ignore.

    Raises:
        ValueError: listing raw ids that the learning map does not know (never silently mapped).
    """
    raw = np.asarray(raw)
    if raw.dtype.kind not in "iu":
        raise ValueError(f"raw labels must be integers, got {raw.dtype}")
    lut = completion_lut(config)
    if raw.size == 0:
        return np.zeros(raw.shape, dtype=np.uint8)
    out = lut[np.clip(raw, 0, lut.size - 1)]
    bad = (raw < 0) | (raw >= lut.size) | (out < 0)
    if bad.any():
        unknown = np.unique(raw[bad]).tolist()
        raise ValueError(f"unknown SemanticKITTI raw label ids {unknown[:20]} (not in learning_map)")
    return out.astype(np.uint8)


__all__ = [
    "DATASET_CONFIG",
    "LEARNING_CLASS_NAMES",
    "NUM_LEARNING_CLASSES",
    "OFFICIAL_CLASS_NAMES",
    "SemanticKittiConfig",
    "completion_lut",
    "load_semantickitti_config",
    "remap_completion",
]
