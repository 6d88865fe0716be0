"""Before / after in one run: a benchmark command alternated between a baseline commit and this tree.

The baseline's files (``git archive REF``) are unpacked beside this checkout, at ``<repo>/../<repo>.ab-<sha>``, so
that its ``../shared`` is the same folder. Each round runs the command once with the baseline's packages first on
``PYTHONPATH`` and once with this tree's, in alternating order (AB, BA, AB, ...) so that a drift in machine load
hits both sides alike. The command runs from this checkout (so a new benchmark script can time old code), and
must write a JSON object to the path substituted for ``{json}``; every numeric leaf becomes a metric (nested keys
joined with ``.``; list items by index). The report gives, per metric, the median before, the median after and the
median of the per-round ratios after / before.

Usage::

    .venv/bin/python bench/ab.py --baseline f5ca2fb --rounds 3 [--json OUT] [--metric REGEX ...] -- \\
        .venv/bin/python bench/labels_bench.py --frames 16 --json {json}

``PYTHONSAFEPATH=1`` keeps ``python -c`` / ``-m`` from putting the cwd ahead of the tree (Python 3.11+; on 3.10
run a script). ``OCC_AB_SIDE`` is set to ``before`` or ``after`` for the command, for benchmarks that need to know.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from occ_ros.io.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("", "training", "export", "tools")


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a JSON value, keyed by their dotted path (bools and strings dropped)."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, (int, float)):
        return {prefix: float(value)}
    items: list[tuple[str, Any]]
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return {}
    out: dict[str, float] = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}.{key}" if prefix else key))
    return out


def baseline_tree(ref: str) -> Path:
    """The files of ``ref`` unpacked beside this checkout (reused when already there)."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"], capture_output=True, text=True
    )
    if sha.returncode:
        raise SystemExit(f"--baseline {ref!r}: not a commit of {REPO} ({sha.stderr.strip()})")
    tree = REPO.parent / f"{REPO.name}.ab-{sha.stdout.strip()[:12]}"
    if not (tree / ".complete").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(["git", "-C", str(REPO), "archive", sha.stdout.strip()], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        if archive.wait():
            raise SystemExit(f"git archive {ref} failed")
        (tree / ".complete").touch()
    return tree


def run_side(command: list[str], tree: Path, side: str, scratch: Path, index: int) -> dict[str, float]:
    out = scratch / f"{side}_{index}.json"
    argv = [part.replace("{json}", str(out)) for part in command]
    env = dict(os.environ)
    paths = [str(tree / d) if d else str(tree) for d in PACKAGE_DIRS]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["OCC_AB_SIDE"] = side
    env["PYTHONSAFEPATH"] = "1"  # python -c / -m would otherwise put the cwd (this checkout) first on sys.path
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode or not out.exists():
        raise SystemExit(
            f"{side} run {index} failed (exit {done.returncode}): {shlex.join(argv)}\n{done.stdout[-2000:]}"
            f"{done.stderr[-4000:]}"
        )
    return flatten(json.loads(out.read_text()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="git ref of the 'before' code")
    ap.add_argument("--rounds", type=int, default=3, help="before/after pairs (default 3)")
    ap.add_argument("--metric", action="append", default=[], help="only metrics matching this regex (repeatable)")
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- the benchmark command, with {json}")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or not any("{json}" in part for part in command):
        ap.error("give the benchmark command after --, with {json} where it writes its JSON")
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    before_tree = baseline_tree(args.baseline)
    load = [os.getloadavg()[0]]
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="occ_ab_") as scratch:
        for i in range(args.rounds):
            order = [("before", before_tree), ("after", REPO)]
            for side, tree in order if i % 2 == 0 else order[::-1]:
                runs[side].append(run_side(command, tree, side, Path(scratch), i))
                load.append(os.getloadavg()[0])
                print(f"round {i + 1}/{args.rounds} {side} done", file=sys.stderr)
    keys = [k for k in runs["after"][0] if k in runs["before"][0]]
    if args.metric:
        keys = [k for k in keys if any(re.search(p, k) for p in args.metric)]
    rows = []
    for key in keys:
        b = [r[key] for r in runs["before"] if key in r]
        a = [r[key] for r in runs["after"] if key in r]
        pairs = zip(runs["after"], runs["before"], strict=True)  # round i's after with round i's before
        ratios = [ra[key] / rb[key] for ra, rb in pairs if key in ra and key in rb and rb[key]]
        rows.append(
            {
                "metric": key,
                "before": statistics.median(b),
                "after": statistics.median(a),
                "ratio": statistics.median(ratios) if ratios else None,
            }
        )
    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    report = {
        "baseline": args.baseline,
        "command": shlex.join(command),
        "rounds": args.rounds,
        "machine": f"{machine}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}",
        "load_1min": {"min": min(load), "max": max(load)},
        "seconds": round(time.time() - started, 1),
        "metrics": rows,
    }
    print(
        f"{report['command']}\nbaseline {args.baseline}, {args.rounds} rounds, {report['machine']}, "
        f"load {min(load):.1f}-{max(load):.1f}\n"
    )
    print("| metric | before | after | after / before |\n|---|---|---|---|")
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"| {r['metric']} | {r['before']:.4g} | {r['after']:.4g} | {ratio} |")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
