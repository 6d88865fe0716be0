"""Packaging: package.xml, setup.py metadata, sdist contents and a real colcon build."""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = "occ_ros"

REQUIRED_EXEC_DEPENDS = {
    "rclpy",
    "std_msgs",
    "sensor_msgs",
    "geometry_msgs",
    "visualization_msgs",
    "nav_msgs",
    "diagnostic_msgs",
    "diagnostic_updater",
    "tf2_ros_py",
    "message_filters",
    "launch",
    "launch_ros",
    "python3-numpy",
    "python3-yaml",
    "python3-scipy",
    "python3-opencv",
}
REQUIRED_TEST_DEPENDS = {
    "ament_copyright",
    "ament_flake8",
    "ament_pep257",
    "python3-pytest",
    "launch_testing",
    "launch_testing_ros",
    "launch_pytest",
}
CONSOLE_SCRIPTS = {
    "occ": "occ_tools.cli:main",
    "occupancy_node": "occ_ros.node.occupancy_node:main",
    "occupancy_lifecycle_node": "occ_ros.node.occupancy_node:lifecycle_main",
}
IMPORT_PACKAGES = {
    "occ_ros": "occ_ros",
    "occ_training": "training/occ_training",
    "occ_export": "export/occ_export",
    "occ_tools": "tools/occ_tools",
}
# Inference backends are plugins (occ_ros.inference.backend.backend_class).
BACKENDS = {
    "onnxruntime": "occ_ros.inference.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "occ_ros.inference.tensorrt_backend:TensorRTBackend",
    "torch": "occ_ros.model.torch_backend:TorchBackend",
}

# Top-level entries of the repo that are never part of the package source.
_NOT_SOURCE_TOP = {".git", ".venv", "out", "build", "install", "log", "dist"}
_NOT_SOURCE_ANY = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}


# --------------------------------------------------------------------------- helpers
def _setup_kwargs() -> dict[str, Any]:
    """Run setup.py with ``setuptools.setup`` replaced, returning its keyword arguments."""
    import setuptools

    captured: dict[str, Any] = {}
    original = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)  # type: ignore[assignment]
    cwd = os.getcwd()
    try:
        os.chdir(REPO)
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    finally:
        os.chdir(cwd)
        setuptools.setup = original
    assert captured, "setup.py did not call setuptools.setup()"
    return captured


def _repo_files(pattern: str) -> list[str]:
    return sorted(p.relative_to(REPO).as_posix() for p in REPO.glob(pattern) if p.is_file())


def _copy_source(dest: Path) -> None:
    """Copy the package source (not venv, outputs, VCS or caches) to ``dest``."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n in _NOT_SOURCE_ANY or n.endswith(".egg-info")}
        if Path(directory).resolve() == REPO:
            skipped |= {n for n in names if n in _NOT_SOURCE_TOP}
        return skipped

    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)


def _package_xml() -> dict[str, Any]:
    """name/version/format/license/depends/build_type of package.xml.

    Uses catkin_pkg (a colcon-ros dependency, validating like ROS tools do) when importable.
    """
    path = REPO / "package.xml"
    try:
        from catkin_pkg.package import parse_package
    except ImportError:
        root = ET.parse(path).getroot()
        export = root.find("export")
        return {
            "parser": "xml.etree",
            "format": int(root.get("format", "1")),
            "name": root.findtext("name"),
            "version": root.findtext("version"),
            "licenses": [e.text for e in root.findall("license")],
            "exec_depends": {e.text for e in root.findall("exec_depend")} | {e.text for e in root.findall("depend")},
            "test_depends": {e.text for e in root.findall("test_depend")} | {e.text for e in root.findall("depend")},
            "build_type": export.findtext("build_type") if export is not None else None,
        }
    pkg = parse_package(str(path))
    pkg.validate()
    return {
        "parser": "catkin_pkg",
        "format": pkg.package_format,
        "name": pkg.name,
        "version": pkg.version,
        "licenses": [str(lic) for lic in pkg.licenses],
        "exec_depends": {d.name for d in pkg.exec_depends},
        "test_depends": {d.name for d in pkg.test_depends},
        "build_type": pkg.get_build_type(),
    }


# --------------------------------------------------------------------------- package.xml
def test_package_xml() -> None:
    info = _package_xml()
    assert info["format"] == 3
    assert info["name"] == PKG
    assert re.fullmatch(r"\d+\.\d+\.\d+", info["version"] or "")
    assert info["licenses"] == ["Apache-2.0"]
    assert info["build_type"] == "ament_python"
    assert REQUIRED_EXEC_DEPENDS <= info["exec_depends"], REQUIRED_EXEC_DEPENDS - info["exec_depends"]
    assert REQUIRED_TEST_DEPENDS <= info["test_depends"], REQUIRED_TEST_DEPENDS - info["test_depends"]
    # ament_python packages have no build tool dependency on ament_cmake.
    assert "ament_cmake" not in (REPO / "package.xml").read_text(encoding="utf-8")


def test_ament_resource_marker_and_setup_cfg() -> None:
    assert (REPO / "resource" / PKG).is_file()
    cfg = (REPO / "setup.cfg").read_text(encoding="utf-8")
    assert re.search(r"^\[develop\]\s*\nscript_dir\s*=\s*\$base/lib/occ_ros\s*$", cfg, re.M)
    assert re.search(r"^\[install\]\s*\ninstall_scripts\s*=\s*\$base/lib/occ_ros\s*$", cfg, re.M)


# --------------------------------------------------------------------------- setup.py
def test_setup_metadata() -> None:
    kw = _setup_kwargs()
    assert kw["name"] == PKG
    assert kw["version"] == _package_xml()["version"], "setup.py and package.xml versions differ"

    packages = set(kw["packages"])
    assert set(IMPORT_PACKAGES) <= packages
    for name, folder in IMPORT_PACKAGES.items():
        if name != folder:
            assert Path(kw["package_dir"][name]).as_posix() == folder
        # every import name is findable as a path: the folder ends in the import's own name
        assert Path(folder).name == name, folder
    # Every folder with Python modules below each import root is a package and is packaged (a folder without
    # __init__.py works from the source tree but is left out of a non-editable install, e.g. `colcon build`).
    for name, folder in IMPORT_PACKAGES.items():
        for module in (REPO / folder).rglob("*.py"):
            rel = module.parent.relative_to(REPO / folder)
            if any(part.startswith((".", "__")) or part in ("build", "tests") for part in rel.parts):
                continue
            dotted = ".".join((name, *rel.parts)) if rel.parts else name
            assert (module.parent / "__init__.py").is_file(), f"{module.parent} has modules but no __init__.py"
            assert dotted in packages, f"{dotted} ({module.parent}) not packaged"

    scripts = dict(
        (name.strip(), target.strip())
        for name, target in (s.split("=", 1) for s in kw["entry_points"]["console_scripts"])
    )
    assert scripts == CONSOLE_SCRIPTS

    # OpenCV must not be a hard requirement: in ROS it comes from apt's python3-opencv.
    assert not any("opencv" in r for r in kw["install_requires"])
    assert any("opencv" in r for r in kw["extras_require"]["cv"])
    assert {"synth", "train", "export", "dev", "cv"} <= set(kw["extras_require"])
    assert any(r.replace(" ", "") == "torch==2.13.0" for r in kw["extras_require"]["train"])


def test_setup_data_files() -> None:
    data_files = {dest: set(srcs) for dest, srcs in _setup_kwargs()["data_files"]}
    assert data_files["share/ament_index/resource_index/packages"] == {"resource/occ_ros"}
    assert "package.xml" in data_files["share/occ_ros"]
    assert data_files.get("share/occ_ros/launch", set()) == set(_repo_files("launch/*.launch.py"))
    config = _repo_files("config/**/*")
    assert config, "config/ has no files"
    for path in config:
        dest = "share/occ_ros/" + str(Path(path).parent.as_posix())
        assert path in data_files.get(dest, set()), f"{path} not installed to {dest}"
    # Only files, never folders (setuptools would fail on a folder).
    for srcs in data_files.values():
        for src in srcs:
            assert (REPO / src).is_file(), src


def test_installed_distribution_entry_points() -> None:
    """The dist installed in this environment (make venv: pip -e) exposes both console scripts."""
    from importlib import metadata

    try:
        dist = metadata.distribution(PKG)
    except metadata.PackageNotFoundError:
        pytest.skip("occ_ros is not installed in this environment (run `make venv`)")
    eps = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    for name, target in CONSOLE_SCRIPTS.items():
        assert eps.get(name) == target


def test_constraints_pin_torch() -> None:
    lines = [
        line.split("#", 1)[0].replace(" ", "")
        for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()
    ]
    assert "torch==2.13.0" in lines


def test_sdist_is_complete(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _copy_source(src)
    proc = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "dist")],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (archive,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    expected = {
        "setup.py",
        "setup.cfg",
        "package.xml",
        "constraints.txt",
        "resource/occ_ros",
        "occ_ros/__init__.py",
        "training/occ_training/__init__.py",
        "export/occ_export/__init__.py",
        "tools/occ_tools/__init__.py",
        *_repo_files("launch/*.launch.py"),
        *_repo_files("config/**/*"),
    }
    assert expected <= names, sorted(expected - names)


# --------------------------------------------------------------------------- colcon
@pytest.mark.colcon
@pytest.mark.parametrize("symlink", [False, True], ids=["install", "symlink-install"])
def test_colcon_build(tmp_path: Path, symlink: bool) -> None:
    """`colcon build` of the package (ament_python) in a scratch workspace, without ROS installed.

    Then, as a user would: source the workspace's setup.bash and import the three packages.
    """
    colcon = Path(sys.executable).parent / "colcon"
    if not colcon.exists():
        pytest.skip(f"colcon is not installed next to {sys.executable} (pip install colcon-common-extensions)")

    ws = tmp_path / "ws"
    _copy_source(ws / "src" / PKG)
    env = dict(os.environ)
    env["COLCON_HOME"] = str(tmp_path / "colcon_home")  # no user defaults / mixins
    env.pop("COLCON_DEFAULTS_FILE", None)
    cmd = [str(colcon), "build", "--base-paths", "src", "--build-base", "B", "--install-base", "I"]
    if symlink:
        cmd.append("--symlink-install")
    proc = subprocess.run(cmd, cwd=ws, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
    logs = "\n".join(p.read_text(errors="replace") for p in ws.glob("log/latest_build/*/stdout_stderr.log"))
    assert proc.returncode == 0, f"colcon build failed:\n{proc.stdout}\n{proc.stderr}\n{logs}"

    prefix = ws / "I" / PKG
    assert (prefix / "share" / PKG / "package.xml").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PKG).is_file()
    for script in CONSOLE_SCRIPTS:
        assert (prefix / "lib" / PKG / script).is_file(), f"lib/{PKG}/{script} not installed"
    for path in _repo_files("config/**/*") + _repo_files("launch/*.launch.py"):
        assert (prefix / "share" / PKG / path).is_file(), f"{path} not installed"

    # The entry points name the right functions (plain install: in the install space;
    # symlink install: in the build space's egg-info, which the .egg-link points to).
    (entry_points,) = (
        (ws / "B" / PKG).glob("*.egg-info/entry_points.txt")
        if symlink
        else prefix.glob("lib/python3*/site-packages/occ_ros-*/entry_points.txt")
    )
    text = entry_points.read_text()
    for name, target in (CONSOLE_SCRIPTS | BACKENDS).items():
        assert re.search(rf"^{name}\s*=\s*{re.escape(target)}\s*$", text, re.M), text

    # Source the workspace like a user and import from it (not from this repo's editable install).
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is needed to source the colcon workspace")
    code = (
        "import occ_ros, occ_training, occ_export, occ_tools.cli, occ_ros.pipeline.pipeline; "
        "import occ_training.trainer.loop; "
        "from occ_ros.inference.backend import backend_class; backend_class('onnxruntime'); "
        "print(occ_ros.__file__); print(occ_training.__file__); print(occ_training.trainer.loop.__file__); "
        "print(occ_tools.cli.__file__)"
    )
    probe = subprocess.run(
        [bash, "-c", f'source I/setup.bash && exec "{sys.executable}" -c "{code}"'],
        cwd=ws,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    for line in probe.stdout.split():
        assert Path(line).resolve().is_relative_to(ws.resolve()), f"{line} imported from outside the workspace"
