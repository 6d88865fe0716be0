"""Packaging for occ_ros, a ROS 2 ament_python package that is also a plain pip package.

One distribution, four import packages, each in a folder named like its import (docs/architecture.md):

* ``occ_ros``      <- ``occ_ros/``                runtime + ROS node, and the model (torch only in ``occ_ros.model``)
* ``occ_training`` <- ``training/occ_training/``  pseudo-labels, losses, trainer, synthetic world
* ``occ_export``   <- ``export/occ_export/``      ONNX / TensorRT export
* ``occ_tools``    <- ``tools/occ_tools/``        the ``occ`` CLI, ``occ predict``, ``occ demo``

colcon (ament_python) runs this file directly; ``pip install -e '.[synth,dev,cv]'``
(see the Makefile) uses it through setuptools' legacy PEP 517 backend.

Dependencies: in a ROS install the rosdep keys of package.xml (apt packages) provide
numpy, yaml, scipy, OpenCV...; colcon never installs ``install_requires``. OpenCV is
therefore *not* in ``install_requires``: pip's ``opencv-python-headless`` and apt's
``python3-opencv`` both provide the ``cv2`` module and must not be mixed in one
environment. Plain pip environments add it with the ``cv`` extra.
"""

from __future__ import annotations

import os
import re
from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = "occ_ros"
HERE = os.path.dirname(os.path.abspath(__file__))

# Import name -> folder (relative to this file); each folder is named like its import.
PACKAGE_DIRS = {
    "occ_ros": "occ_ros",
    "occ_training": os.path.join("training", "occ_training"),
    "occ_export": os.path.join("export", "occ_export"),
    "occ_tools": os.path.join("tools", "occ_tools"),
}


def _version() -> str:
    """Single source of truth for the version: package.xml."""
    with open(os.path.join(HERE, "package.xml"), encoding="utf-8") as f:
        match = re.search(r"<version>\s*([^<\s]+)\s*</version>", f.read())
    if not match:
        raise RuntimeError("no <version> in package.xml")
    return match.group(1)


def _packages() -> list[str]:
    """``find_packages`` on each folder, prefixed with its import name."""
    packages: list[str] = []
    for name, folder in PACKAGE_DIRS.items():
        if not os.path.isfile(os.path.join(HERE, folder, "__init__.py")):
            continue
        packages.append(name)
        found = find_packages(where=os.path.join(HERE, folder), exclude=["tests", "tests.*"])
        packages.extend(f"{name}.{sub}" for sub in found)
    return sorted(packages)


def _files(pattern: str) -> list[str]:
    """Files (never folders) matching ``pattern``, relative to this file, sorted."""
    matches = glob(os.path.join(HERE, pattern), recursive=True)
    return sorted(os.path.relpath(p, HERE) for p in matches if os.path.isfile(p))


def _data_files() -> list[tuple[str, list[str]]]:
    share = os.path.join("share", PACKAGE_NAME)
    data_files: list[tuple[str, list[str]]] = [
        (os.path.join("share", "ament_index", "resource_index", "packages"), [os.path.join("resource", PACKAGE_NAME)]),
        (share, ["package.xml"]),
        (os.path.join(share, "launch"), _files(os.path.join("launch", "*.launch.py"))),
    ]
    # Every file under config/, keeping its sub-folder (config/rigs/x.yaml -> share/occ_ros/config/rigs/).
    by_dir: dict[str, list[str]] = {}
    for path in _files(os.path.join("config", "**", "*")):
        by_dir.setdefault(os.path.join(share, os.path.dirname(path)), []).append(path)
    data_files.extend(sorted(by_dir.items()))
    # JSON schemas of the parameter files (schema/occupancy_node.schema.json) -> share/occ_ros/schema/.
    data_files.append((os.path.join(share, "schema"), _files(os.path.join("schema", "*.json"))))
    # Shipped models (models/demo.ckpt) -> share/occ_ros/models/.
    data_files.append((os.path.join(share, "models"), _files(os.path.join("models", "*.ckpt"))))
    return data_files


SYNTH = ["trimesh", "embreex"]

setup(
    name=PACKAGE_NAME,
    version=_version(),
    description="Camera-only 3D semantic occupancy for ROS 2 (node, offline tools, training, export).",
    maintainer="occ_ros maintainers",
    maintainer_email="maintainers@occ-ros.invalid",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=_packages(),
    package_dir={name: folder for name, folder in PACKAGE_DIRS.items() if name != folder},
    package_data={"": ["*.yaml", "*.json", "*.txt", "py.typed"]},
    include_package_data=True,
    data_files=_data_files(),
    zip_safe=False,
    install_requires=[
        "numpy>=1.21",
        "pyyaml",
        "scipy",
        "rosbags>=0.11",
        "tqdm",
        "rich",
        "matplotlib",
    ],
    extras_require={
        # pip environments only; ROS installs use apt's python3-opencv (package.xml).
        "cv": ["opencv-python-headless"],
        # Ray casting for the synthetic world.
        "synth": SYNTH,
        # torch is pinned to the local CPU wheel by constraints.txt (install with -c constraints.txt).
        "train": ["torch==2.13.0", "tensorboard", "transformers", *SYNTH],
        "export": ["onnx", "onnxruntime"],
        "dev": [
            "pytest",
            "pytest-timeout",
            "hypothesis",
            "mypy",
            "types-PyYAML",
            "ruff",
            "import-linter",
            "jsonschema",
            "vulture",
            "mcap",
            "mcap-ros2-support",
            "rclpy-intellisense",
            "colcon-common-extensions",
            "setuptools>=64",
            *SYNTH,
        ],
    },
    entry_points={
        "console_scripts": [
            "occ = occ_tools.cli:main",
            "occupancy_node = occ_ros.node.occupancy_node:main",
            "occupancy_lifecycle_node = occ_ros.node.occupancy_node:lifecycle_main",
        ],
        # Inference backends (occ_ros.inference.backend.backend_class): the torch one lives in the model layer.
        "occ_ros.backends": [
            "onnxruntime = occ_ros.inference.onnxruntime_backend:OnnxRuntimeBackend",
            "tensorrt = occ_ros.inference.tensorrt_backend:TensorRTBackend",
            "torch = occ_ros.model.torch_backend:TorchBackend",
        ],
    },
)
