"""The layer diagram of docs/architecture.md is a contract: `lint-imports` (pyproject ``[tool.importlinter]``).

The tree passes it, and a deliberate bad import into a copy of the tree breaks it, with the contract and the
offending import named. Lazy imports inside functions count like module-level ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"
#: import name -> folder (setup.py PACKAGE_DIRS)
PACKAGES = {
    "occ_ros": "occ_ros",
    "occ_training": "training/occ_training",
    "occ_export": "export/occ_export",
    "occ_tools": "tools/occ_tools",
}

pytestmark = pytest.mark.skipif(not LINT.exists(), reason=f"import-linter is not installed next to {sys.executable}")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the repository's contracts over the packages found first on ``root``."""
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run(
        [str(LINT), str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four import packages side by side under one root (the layout grimp finds on PYTHONPATH)."""
    root = tmp_path_factory.mktemp("layers")
    for name, folder in PACKAGES.items():
        shutil.copytree(REPO / folder, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_the_tree_keeps_its_layers(tree_copy: Path) -> None:
    proc = _lint(tree_copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 2 kept, 0 broken." in proc.stdout


@pytest.mark.parametrize(
    ("module", "code", "contract", "import_named"),
    [
        # the runtime reaching up into training (the very import the old CLI made, lazily)
        (
            "occ_ros/pipeline/pipeline.py",
            "\n\ndef _bad() -> None:\n    from occ_training.trainer import loop  # noqa: F401\n",
            "The tree is the layer diagram",
            "occ_ros.pipeline.pipeline -> occ_training.trainer.loop",
        ),
        # core importing a layer above it
        (
            "occ_ros/core/grid.py",
            "\nimport occ_ros.eval.ssc  # noqa: E402,F401\n",
            "The tree is the layer diagram",
            "occ_ros.core.grid -> occ_ros.eval.ssc",
        ),
        # the robot's runtime importing torch, lazily
        (
            "occ_ros/node/runtime.py",
            "\n\ndef _bad() -> None:\n    import torch  # noqa: F401\n",
            "imports neither torch nor the model layer",
            "occ_ros.node.runtime -> torch",
        ),
    ],
    ids=["runtime->training", "core->eval", "node->torch"],
)
def test_a_bad_import_breaks_the_contract(
    tree_copy: Path, tmp_path: Path, module: str, code: str, contract: str, import_named: str
) -> None:
    root = tmp_path / "tree"
    shutil.copytree(tree_copy, root)
    path = root / module
    path.write_text(path.read_text() + code)
    proc = _lint(root)
    out = " ".join((proc.stdout + proc.stderr).split())  # rich wraps long lines
    assert proc.returncode == 1, out
    broken = out.split("Broken contracts", 1)[-1]
    assert contract in broken, out
    assert import_named in broken, out
