"""bench/ab.py: the before side runs the baseline commit's code, the after side this tree's, alternated."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_ab", REPO / "bench" / "ab.py")
assert spec is not None and spec.loader is not None
ab = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ab)


def test_flatten_keeps_numeric_leaves_by_dotted_path() -> None:
    value = {"a": {"x": 1, "y": [2.5, "s"]}, "ok": True, "name": "n", "b": 3}
    assert ab.flatten(value) == {"a.x": 1.0, "a.y.0": 2.5, "b": 3.0}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="PYTHONSAFEPATH (python -c) needs Python 3.11")
@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs a git checkout")
def test_before_runs_the_baseline_tree_and_after_this_one(tmp_path: Path) -> None:
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    probe = (
        "import json, os, sys, occ_ros; "
        "json.dump({'in_repo': int(os.path.dirname(os.path.dirname(occ_ros.__file__)) == sys.argv[2]), "
        "'side': os.environ['OCC_AB_SIDE']}, open(sys.argv[1], 'w'))"
    )
    report = tmp_path / "report.json"
    ab.main(
        [
            "--baseline",
            head,
            "--rounds",
            "2",
            "--json",
            str(report),
            "--",
            sys.executable,
            "-c",
            probe,
            "{json}",
            str(REPO),
        ]
    )
    rows = {r["metric"]: r for r in json.loads(report.read_text())["metrics"]}
    assert rows["in_repo"]["before"] == 0.0  # the baseline's unpacked copy, not this checkout
    assert rows["in_repo"]["after"] == 1.0
    assert ab.baseline_tree(head).name == f"{REPO.name}.ab-{head[:12]}"


def test_a_bad_ref_is_named() -> None:
    with pytest.raises(SystemExit, match="not-a-ref"):
        ab.baseline_tree("not-a-ref")
