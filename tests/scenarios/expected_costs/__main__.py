"""``python -m tests.scenarios.expected_costs [--update] [OPERATION...]``.

Recompute the expected-cost files, print how they differ from the stored
ones, and with ``--update`` rewrite them.  Exit status 1 when a difference
remains (without ``--update``).
"""

from __future__ import annotations

import argparse
import sys

from . import OPERATIONS, compute, diff_text, load, path, render


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.scenarios.expected_costs", description=__doc__)
    ap.add_argument("--update", action="store_true", help="rewrite the files with the recomputed costs")
    ap.add_argument(
        "operations", nargs="*", metavar="OPERATION", help=f"default: all ({', '.join(OPERATIONS)})"
    )
    args = ap.parse_args(argv)
    names = args.operations or list(OPERATIONS)
    unknown = [n for n in names if n not in OPERATIONS]
    if unknown:
        ap.error(f"unknown operation(s) {', '.join(unknown)}; known: {', '.join(OPERATIONS)}")
    differ = False
    for name in names:
        got = compute(name)
        text = diff_text(name, load(name), got)
        if text:
            print(text)
            differ = True
            if args.update:
                path(name).write_text(render(name, got))
                print(f"  -> wrote {path(name)}")
        else:
            print(f"{name}: unchanged")
    return 1 if differ and not args.update else 0


if __name__ == "__main__":
    sys.exit(main())
