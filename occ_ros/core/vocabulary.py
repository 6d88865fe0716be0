"""The class vocabulary: names, colours, text prompts, and which classes move.

The default is Occ3D-nuScenes' 18 classes in official order (0 ``others`` ...
16 ``vegetation``, 17 ``free``). Custom vocabularies load from YAML::

    name: my_robot
    classes:
      - {name: floor, color: [128, 64, 128], prompts: [floor, ground], dynamic: false, surface: true}
      - ...
      - {name: free, color: [255, 255, 255], prompts: [], dynamic: false}

The last class must be ``free`` (the empty-space label), as in Occ3D.

``surface: true`` marks a drivable or flat ground class (road, sidewalk, terrain...): the one place that says which
classes a vehicle may drive over or stand on. The costmap (:mod:`occ_ros.pipeline.costmap`) treats every other
non-free class as an obstacle by default. A class without the key is a surface exactly when its name is in
:data:`SURFACE_CLASS_NAMES` (the surface classes of Occ3D-nuScenes and SemanticKITTI), so vocabularies saved before
the flag existed (model metadata, checkpoints) keep their meaning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FREE_NAME = "free"
#: Label value meaning "not evaluated / unknown" in label arrays (e.g. SemanticKITTI's invalid voxels); never a
#: class (a vocabulary has at most 255 classes, 0..254).
IGNORE_LABEL = 255
#: Names of the drivable / flat ground classes of Occ3D-nuScenes (``driveable_surface``, ``other_flat``,
#: ``sidewalk``, ``terrain``) and SemanticKITTI (``road``, ``parking``, ``sidewalk``, ``other_ground``,
#: ``terrain``): a class whose ``surface`` flag is not given is a surface exactly when its name is here.
#: ``vegetation``, ``manmade`` (buildings, poles, signs) and every object class are not surfaces.
SURFACE_CLASS_NAMES = frozenset(
    {"driveable_surface", "drivable_surface", "other_flat", "sidewalk", "terrain", "road", "parking", "other_ground"}
)


@dataclass(frozen=True)
class SemanticClass:
    """One vocabulary entry.

    Attributes:
        name: snake_case identifier, also the key in metric tables.
        color: RGB display colour, 0..255.
        prompts: text prompts for open-vocabulary teachers (empty only for ``free``).
        dynamic: True for classes that move (their points are not aggregated over time).
        surface: True for a drivable or flat ground class (not an obstacle of the costmap); None (not given) =
            whether ``name`` is in :data:`SURFACE_CLASS_NAMES`. Always a bool after construction.
    """

    name: str
    color: tuple[int, int, int]
    prompts: tuple[str, ...] = ()
    dynamic: bool = False
    surface: bool | None = None

    def __post_init__(self) -> None:
        if self.surface is None:
            object.__setattr__(self, "surface", self.name in SURFACE_CLASS_NAMES)
        else:
            object.__setattr__(self, "surface", bool(self.surface))


@dataclass(frozen=True)
class Vocabulary:
    """An ordered list of classes; the index of a class is its label value."""

    name: str
    classes: tuple[SemanticClass, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [c.name for c in self.classes]
        if len(names) < 2:
            raise ValueError(f"vocabulary {self.name!r} needs at least one class and 'free'")
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"vocabulary {self.name!r} repeats class names {dupes}")
        if names[-1] != FREE_NAME:
            raise ValueError(f"vocabulary {self.name!r}: the last class must be {FREE_NAME!r}, got {names[-1]!r}")
        if len(names) > 255:
            raise ValueError(f"vocabulary {self.name!r} has {len(names)} classes; labels are uint8 (max 255)")
        for c in self.classes:
            if len(c.color) != 3 or not all(0 <= int(v) <= 255 for v in c.color):
                raise ValueError(f"vocabulary {self.name!r}: class {c.name!r} color must be 3 ints in 0..255")

    # ------------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def free_index(self) -> int:
        """Label value of empty space (the last class)."""
        return len(self.classes) - 1

    @property
    def num_semantic(self) -> int:
        """Number of non-free classes (those averaged in mIoU)."""
        return len(self.classes) - 1

    def index(self, name: str) -> int:
        """Label value of a class name."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"class {name!r} is not in vocabulary {self.name!r}; known: {self.names}") from None

    def colors(self) -> np.ndarray:
        """(C, 3) uint8 RGB palette indexed by label."""
        return np.array([c.color for c in self.classes], dtype=np.uint8)

    def dynamic_mask(self) -> np.ndarray:
        """(C,) bool, True for classes that move."""
        return np.array([c.dynamic for c in self.classes], dtype=bool)

    def surface_mask(self) -> np.ndarray:
        """(C,) bool, True for the drivable / flat ground classes (``surface``; never ``free``)."""
        return np.array([bool(c.surface) and c.name != FREE_NAME for c in self.classes], dtype=bool)

    def prompts(self) -> list[tuple[str, ...]]:
        """Text prompts per non-free class; raises if a class has none."""
        missing = [c.name for c in self.classes[:-1] if not c.prompts]
        if missing:
            raise ValueError(f"vocabulary {self.name!r}: classes {missing} have no text prompts")
        return [c.prompts for c in self.classes[:-1]]

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; ``surface`` is written only where it differs from the name's default
        (:data:`SURFACE_CLASS_NAMES`), so vocabularies that keep the defaults serialise (and hash) as before."""
        classes = []
        for c in self.classes:
            entry: dict[str, Any] = {"name": c.name, "color": list(c.color), "prompts": list(c.prompts)}
            entry["dynamic"] = c.dynamic
            if bool(c.surface) != (c.name in SURFACE_CLASS_NAMES):
                entry["surface"] = bool(c.surface)
            classes.append(entry)
        return {"name": self.name, "classes": classes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Vocabulary:
        if not isinstance(data, Mapping) or "classes" not in data:
            raise ValueError(f"{source}: a vocabulary needs a 'classes' list")
        classes = []
        for i, entry in enumerate(data["classes"]):
            if not isinstance(entry, Mapping) or "name" not in entry or "color" not in entry:
                raise ValueError(f"{source}: classes[{i}] needs 'name' and 'color', got {entry!r}")
            unknown = set(entry) - {"name", "color", "prompts", "dynamic", "surface"}
            if unknown:
                raise ValueError(f"{source}: classes[{i}] has unknown keys {sorted(unknown)}")
            prompts = entry.get("prompts") or []
            if isinstance(prompts, str):
                prompts = [prompts]
            classes.append(
                SemanticClass(
                    name=str(entry["name"]),
                    color=tuple(int(v) for v in entry["color"]),  # type: ignore[arg-type]
                    prompts=tuple(str(p) for p in prompts),
                    dynamic=bool(entry.get("dynamic", False)),
                    surface=None if entry.get("surface") is None else bool(entry["surface"]),
                )
            )
        try:
            return cls(name=str(data.get("name", Path(source).stem)), classes=tuple(classes))
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Vocabulary:
        from .config import load_yaml_mapping

        return cls.from_dict(load_yaml_mapping(path, "vocabulary file"), source=str(path))

    @classmethod
    def occ3d(cls) -> Vocabulary:
        """The 18 Occ3D-nuScenes classes in official order."""
        return OCC3D

    @classmethod
    def load(cls, name_or_path: str | Path) -> Vocabulary:
        """``occ3d``, the name of a shipped vocabulary (``config/vocabularies/<name>.yaml``, e.g. ``semantickitti``)
        or a YAML path."""
        text = str(name_or_path)
        if text == "occ3d":
            return OCC3D
        if text.isidentifier():
            from occ_ros.core.resources import config_dir

            shipped = config_dir() / "vocabularies" / f"{text}.yaml"
            if shipped.is_file():
                return cls.from_yaml(shipped)
        return cls.from_yaml(name_or_path)


def _occ3d_classes() -> Sequence[SemanticClass]:
    # Colours follow the palette of the Occ3D / CVPR 2023 occupancy challenge visualisations.
    table = [
        ("others", (0, 0, 0), ("object", "debris", "trash bin"), False),
        ("barrier", (255, 120, 50), ("barrier", "concrete barrier", "fence"), False),
        ("bicycle", (255, 192, 203), ("bicycle", "bike"), True),
        ("bus", (255, 255, 0), ("bus",), True),
        ("car", (0, 150, 245), ("car", "sedan", "suv", "van"), True),
        ("construction_vehicle", (0, 255, 255), ("construction vehicle", "excavator", "crane"), True),
        ("motorcycle", (200, 180, 0), ("motorcycle", "scooter"), True),
        ("pedestrian", (255, 0, 0), ("pedestrian", "person"), True),
        ("traffic_cone", (255, 240, 150), ("traffic cone",), False),
        ("trailer", (135, 60, 0), ("trailer",), True),
        ("truck", (160, 32, 240), ("truck", "lorry"), True),
        ("driveable_surface", (255, 0, 255), ("road", "street", "asphalt"), False),
        ("other_flat", (139, 137, 137), ("traffic island", "parking lot", "rail track"), False),
        ("sidewalk", (75, 0, 75), ("sidewalk", "pavement"), False),
        ("terrain", (150, 240, 80), ("grass", "terrain", "soil"), False),
        ("manmade", (230, 230, 250), ("building", "wall", "pole", "traffic sign"), False),
        ("vegetation", (0, 175, 0), ("tree", "bush", "vegetation"), False),
        (FREE_NAME, (255, 255, 255), (), False),
    ]
    return [SemanticClass(name, color, prompts, dynamic) for name, color, prompts, dynamic in table]


OCC3D = Vocabulary(name="occ3d", classes=tuple(_occ3d_classes()))
