"""Locating the package's shipped files (``config/``) in a source tree, a pip install or a colcon install."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def config_dir() -> Path:
    """The ``config/`` directory shipped with occ_ros.

    Looked up in order: ``$OCC_ROS_CONFIG_DIR``; the source tree (editable installs);
    ``<prefix>/share/occ_ros/config`` (pip and colcon installs, via setup.py data_files);
    the ament index, when ROS 2 is sourced.
    """
    env = os.environ.get("OCC_ROS_CONFIG_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "config")
    candidates.append(Path(sys.prefix) / "share" / "occ_ros" / "config")
    try:  # pragma: no cover - only with ROS 2 sourced
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("occ_ros")) / "config")
    except Exception:
        pass
    for path in candidates:
        if (path / "rigs").is_dir():
            return path
    raise FileNotFoundError(
        "cannot find occ_ros' config directory; looked in "
        + ", ".join(str(p) for p in candidates)
        + " (set OCC_ROS_CONFIG_DIR to override)"
    )


def models_dir() -> Path:
    """The ``models/`` directory with the shipped checkpoints (``demo.ckpt``).

    Looked up in order: ``$OCC_ROS_MODELS_DIR``; the source tree; ``<prefix>/share/occ_ros/models``.
    """
    env = os.environ.get("OCC_ROS_MODELS_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "models")
    candidates.append(Path(sys.prefix) / "share" / "occ_ros" / "models")
    for path in candidates:
        if (path / "demo.ckpt").is_file():
            return path
    raise FileNotFoundError(
        "cannot find the shipped models (models/demo.ckpt); looked in " + ", ".join(str(p) for p in candidates)
    )
