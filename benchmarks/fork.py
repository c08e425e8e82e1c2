#!/usr/bin/env python3
"""How long does the model take to fork 1 GiB?  (issue "Core-mm model")

For each backend (arm64, generic) and each folio size (64K mTHP, 4K base
pages), a process touches ``--size`` of private anonymous memory; then the
wall-clock time of ``fork()`` alone is measured (``check=False``: no
validators), the child exits (not timed), and this repeats ``--runs`` times
after a first fork (which also write-protects the parent, and is reported
apart).  The median is reported, with the counters of one fork for context.
There is no target yet: this records where the model stands.  Touching 1 GiB
of 4K pages (one simulated fault per page) dominates the run time.

Runs standalone: ``python benchmarks/fork.py [--json] [--size 1G] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import contpte
from contpte.system.machine import parse_bytes

FOLIOS: dict[str, dict[str, str]] = {"64K": {"64K": "always"}, "4K": {}}
"""Folio size -> the Machine's ``mthp`` setting that gives it."""

COUNTERS = (
    "fork.ptes",
    "fork.batch",
    "pte.read",
    "pte.write",
    "tlbi.total",
    "contpte.fold",
    "contpte.unfold",
)


def _timed_fork(m: contpte.Machine, p: contpte.Process) -> tuple[float, dict[str, int]]:
    """Fork once (timed), let the child exit (not timed); the counters of the fork."""
    before = m.stats()
    t0 = time.perf_counter()
    child = p.fork()
    elapsed = time.perf_counter() - t0
    after = m.stats()
    child.exit()
    return elapsed, {
        k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS if after.get(k, 0) - before.get(k, 0)
    }


def bench_one(arch: str, folio: str, size: int, runs: int) -> dict[str, Any]:
    """Fork times of a process with ``size`` bytes of ``folio``-sized anon folios on ``arch``.

    The first fork also write-protects the parent's PTEs; the ``runs`` forks
    after it find them read-only already, as every fork of the will-it-scale
    loop after its first does.  The median of those is the headline figure.
    """
    m = contpte.Machine(arch=arch, memory=2 * size + (64 << 20), cpus=4, mthp=FOLIOS[folio], check=False)
    p = m.spawn()
    a = p.mmap(size, prot="rw", flags="private|anonymous")
    t0 = time.perf_counter()
    p.write(a, size, value=1)
    touch = time.perf_counter() - t0
    first, first_counters = _timed_fork(m, p)
    times = []
    counters: dict[str, int] = {}
    for _ in range(runs):
        t, counters = _timed_fork(m, p)
        times.append(t)
    return {
        "arch": arch,
        "folio": folio,
        "size_bytes": size,
        "runs": runs,
        "fork_seconds_median": statistics.median(times),
        "fork_seconds": times,
        "first_fork_seconds": first,
        "touch_seconds": touch,
        "counters_per_fork": counters,
        "counters_first_fork": first_counters,
    }


def bench_all(
    size: int = 1 << 30,
    runs: int = 5,
    arches: Sequence[str] = ("arm64", "generic"),
    folios: Sequence[str] = tuple(FOLIOS),
    progress: Any = None,
) -> dict[str, Any]:
    """Every (backend, folio size) configuration; what ``--json`` prints."""
    results = []
    for arch in arches:
        for folio in folios:
            r = bench_one(arch, folio, size, runs)
            results.append(r)
            if progress is not None:
                progress(r)
    return {
        "benchmark": "fork",
        "kernel": contpte.KERNEL_VERSION,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
    }


def _print_row(r: dict[str, Any]) -> None:
    print(
        f"{r['arch']:8} {r['folio']:>4} folios: fork of {r['size_bytes'] >> 20} MiB takes "
        f"{1000 * r['fork_seconds_median']:9.1f} ms (median of {r['runs']}; first fork "
        f"{1000 * r['first_fork_seconds']:.1f} ms, touching it {r['touch_seconds']:.1f} s); "
        + ", ".join(f"{k} {v:,}" for k, v in r["counters_per_fork"].items()),
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument(
        "--size", default="1G", help="memory the parent touches before forking (default: %(default)s)"
    )
    ap.add_argument("--runs", type=int, default=5, help="forks per configuration; the median is reported")
    ap.add_argument(
        "--arch", action="append", choices=("arm64", "generic"), help="backend(s) (default: both)"
    )
    ap.add_argument("--folio", action="append", choices=tuple(FOLIOS), help="folio size(s) (default: both)")
    ap.add_argument("--json", action="store_true", help="print JSON on stdout")
    args = ap.parse_args(argv)
    try:
        size = parse_bytes(args.size, "--size")
    except contpte.ContpteError as e:
        print(f"fork.py: error: {e}", file=sys.stderr)
        return 2
    if args.runs < 1:
        print("fork.py: error: --runs must be at least 1", file=sys.stderr)
        return 2
    out = bench_all(
        size,
        args.runs,
        args.arch or ("arm64", "generic"),
        args.folio or tuple(FOLIOS),
        progress=None if args.json else _print_row,
    )
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
