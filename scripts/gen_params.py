#!/usr/bin/env python3
"""Write the files generated from occupancy_node's parameter table (occ_ros/node/params.py: PARAMS, CAMERA_PARAMS):
config/occupancy.param.yaml, schema/occupancy_node.schema.json and the parameter table of docs/node.md.

    .venv/bin/python scripts/gen_params.py            # rewrite the stale ones
    .venv/bin/python scripts/gen_params.py --check    # exit 1 naming each stale one, write nothing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale; write nothing")
    parser.add_argument("--root", type=Path, default=REPO, help="repository root (default: %(default)s)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))  # run from a checkout without installing it
    from occ_ros.node import param_docs

    if args.check:
        stale = param_docs.stale(args.root)
        for rel in stale:
            print(f"{rel} is stale: run {param_docs.GENERATOR}", file=sys.stderr)
        return 1 if stale else 0
    for rel in param_docs.write(args.root):
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
