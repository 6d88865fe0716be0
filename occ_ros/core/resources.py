"""Locating the package's shipped files (``config/``, ``models/``) in a source tree, a pip install or a colcon install,
and the CPUs this process may use (:func:`usable_cpus`).

Both folders are found by one lookup (:func:`_find_shipped`), in this order:

1. ``$OCC_ROS_CONFIG_DIR`` / ``$OCC_ROS_MODELS_DIR`` (an explicit override);
2. the source tree (editable installs: ``<repo>/config``, ``<repo>/models``);
3. ``<sys.prefix>/share/occ_ros/<folder>`` (pip installs, via setup.py data_files);
4. ``<share>/<folder>`` with ``<share>`` from the ament index (colcon installs, ROS 2 sourced): colcon installs
   into its own prefix (``install/occ_ros``), not ``sys.prefix``, so only the index knows where that is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

PACKAGE = "occ_ros"


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one (a container's or ``taskset``'s
    limit), else ``os.cpu_count()``."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def source_root() -> Path:
    """The source tree holding this package (the repository in a checkout or editable install)."""
    return Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """``<repo>/../shared``: the fixtures and teacher models laid beside a checkout (may not exist)."""
    return source_root().parent / "shared"


def _ament_share() -> tuple[Path | None, str]:
    """``share/occ_ros`` from the ament index, or ``(None, why not)`` (ROS 2 not sourced, package not indexed)."""
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None, "not available (ament_index_python is not importable: is ROS 2 sourced?)"
    try:
        return Path(get_package_share_directory(PACKAGE)), ""
    except (LookupError, ValueError) as exc:  # PackageNotFoundError is a KeyError
        return None, f"{PACKAGE} is not in it ({exc})"


def _find_shipped(folder: str, env_var: str, is_it: Callable[[Path], bool], what: str) -> Path:
    """The first candidate for the shipped ``folder`` (see the module docstring) that ``is_it`` accepts.

    Raises FileNotFoundError naming every place looked in.
    """
    env = os.environ.get(env_var)
    candidates = [Path(env)] if env else []
    candidates.append(source_root() / folder)
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / folder)
    for path in candidates:
        if is_it(path):
            return path
    share, why_not = _ament_share()  # only now: the index is not needed (nor imported) when found above
    if share is not None:
        candidates.append(share / folder)
        if is_it(share / folder):
            return share / folder
    looked = ", ".join(str(p) for p in candidates)
    if share is None:
        looked += f"; ament index: {why_not}"
    raise FileNotFoundError(f"cannot find occ_ros' {what}; looked in {looked} (set {env_var} to override)")


def config_dir() -> Path:
    """The ``config/`` directory shipped with occ_ros (the one with ``rigs/``)."""
    return _find_shipped("config", "OCC_ROS_CONFIG_DIR", lambda p: (p / "rigs").is_dir(), "config directory")


def models_dir() -> Path:
    """The ``models/`` directory with the shipped checkpoints (``demo.ckpt``)."""
    return _find_shipped(
        "models", "OCC_ROS_MODELS_DIR", lambda p: (p / "demo.ckpt").is_file(), "shipped models (models/demo.ckpt)"
    )
