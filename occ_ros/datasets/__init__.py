"""Dataset readers: every source (synthetic world, nuScenes + Occ3D, SemanticKITTI, rosbag2)
becomes a sequence of the one :class:`~occ_ros.datasets.sample.Sample` type."""

from __future__ import annotations

from pathlib import Path

from .sample import DatasetReader, LabelFileError, OccupancyLabels, Sample, load_labels

__all__ = ["DatasetReader", "LabelFileError", "OccupancyLabels", "Sample", "load_labels", "open_dataset"]


def open_dataset(path: str | Path, kind: str = "auto", load_gt: bool = True, **options: object) -> DatasetReader:
    """Open a dataset directory with the right reader.

    Args:
        path: an ``occ synth`` directory (has ``meta.json``), a nuScenes root (has ``v1.0-*/``),
            a SemanticKITTI root (has ``sequences/``), or a rosbag2 directory (has ``metadata.yaml``;
            needs ``config=`` the camera YAML).
        kind: ``auto``, ``synth``, ``nuscenes``, ``semantickitti`` or ``rosbag``.
        load_gt: read ground truth when the dataset has it.
        options: passed to the reader's constructor.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such dataset directory")
    if kind == "auto":
        if (root / "meta.json").exists():
            kind = "synth"
        elif any(p.is_dir() for p in root.glob("v1.0-*")):
            kind = "nuscenes"
        elif (root / "sequences").is_dir():
            kind = "semantickitti"
        elif (root / "metadata.yaml").exists() or any(root.glob("*.mcap")) or any(root.glob("*.db3")):
            kind = "rosbag"
        else:
            raise ValueError(
                f"{root}: cannot tell the dataset kind (expected meta.json, v1.0-*/, sequences/ or a rosbag2 "
                "metadata.yaml); name the kind with --kind (synth, nuscenes, semantickitti or rosbag)"
            )
    if kind == "synth":
        from .synth import SynthReader

        return SynthReader(root, load_gt=load_gt)
    if kind == "nuscenes":
        from .nuscenes import NuScenesReader

        if "version" not in options:
            versions = sorted(p.name for p in root.glob("v1.0-*") if p.is_dir())
            if len(versions) != 1:
                raise ValueError(
                    f"{root}: found nuScenes versions {versions}; choose one with --version (occ inspect) or keep "
                    "one v1.0-* folder"
                )
            options["version"] = versions[0]
        if not load_gt:
            options.setdefault("gt_root", False)
        return NuScenesReader(root, **options)  # type: ignore[arg-type]
    if kind == "semantickitti":
        from .semantickitti import SemanticKittiReader

        return SemanticKittiReader(root, load_gt=load_gt, **options)  # type: ignore[arg-type]
    if kind == "rosbag":
        from .rosbag_reader import RosbagReader

        if "config" not in options:
            raise ValueError(
                f"{root}: a rosbag2 bag is read as a dataset with its camera/topic YAML: pass --dataset-config YAML "
                "(a template: config/datasets/rosbag_example.yaml)"
            )
        return RosbagReader(root, options.pop("config"), **options)  # type: ignore[arg-type]
    raise ValueError(f"unknown dataset kind {kind!r}; expected auto, synth, nuscenes, semantickitti or rosbag")
