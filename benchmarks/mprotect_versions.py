#!/usr/bin/env python3
"""How much faster is the model's 1 GiB mprotect at kernel 7.2 than at 6.12?  (issue 17)

v6.17 batched mprotect (``mprotect_batch``, and on arm64
``modify_prot_ptes_opt``): a folded 64K block is cleared and set again
folded instead of being unfolded by the first ``ptep_modify_prot_start()``
and refolded by the last ``set_pte_at()`` (docs/versions.md).  For each
kernel version a process on an arm64 machine writes ``--size`` of private
anonymous memory in 64K folios (uniform: every block folded), then
``mprotect(PROT_READ)`` and ``mprotect(PROT_READ|PROT_WRITE)`` of the whole
region are timed (CPU time of this process, the collector paused),
``--runs`` times with the versions taking turns; medians are reported with
the counters of one rw->r.  ``--check`` runs the validators after every
syscall.

Runs standalone: ``python benchmarks/mprotect_versions.py [--json] [--size 1G] [--runs 5] [--check]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import contpte
from contpte.system.machine import parse_bytes

KERNELS = ("6.12", "7.2")
PMD_SIZE = 2 << 20
COUNTERS = ("contpte.unfold", "contpte.fold", "tlbi.total", "pte.read", "pte.write", "pte.atomic")


def build(kernel: str, size: int, check: bool) -> tuple[contpte.Machine, contpte.Process, int]:
    """A machine at ``kernel`` with ``size`` bytes written in 64K folios at a 2M-aligned address."""
    m = contpte.Machine(
        arch="arm64", memory=2 * size, cpus=2, mthp={"64K": "always"}, thp="never", check=check, kernel=kernel
    )
    p = m.spawn()
    base = p.mmap(size + 2 * PMD_SIZE, prot="none")
    a = p.mmap(size, prot="rw", flags="private|anonymous|fixed", addr=(base + PMD_SIZE - 1) & ~(PMD_SIZE - 1))
    p.write(a, size, 1)
    return m, p, a


def timed(p: contpte.Process, a: int, size: int, prot: str) -> float:
    gc.disable()
    try:
        t0 = time.process_time_ns()
        p.mprotect(a, size, prot)
        return (time.process_time_ns() - t0) / 1e9
    finally:
        gc.enable()


def run(size: int, runs: int, check: bool) -> dict[str, Any]:
    cases = {k: build(k, size, check) for k in KERNELS}
    samples: dict[str, dict[str, list[float]]] = {k: {"ro": [], "rw": []} for k in KERNELS}
    counters: dict[str, dict[str, int]] = {}
    for i in range(runs):
        for k, (m, p, a) in cases.items():
            before = m.stats()
            samples[k]["ro"].append(timed(p, a, size, "r"))
            if i == 0:
                after = m.stats()
                counters[k] = {n: after[n] - before[n] for n in COUNTERS}
            samples[k]["rw"].append(timed(p, a, size, "rw"))
    med = {k: {op: statistics.median(v) for op, v in s.items()} for k, s in samples.items()}
    ratio = {op: med["6.12"][op] / med["7.2"][op] for op in ("ro", "rw")}
    return {
        "size": size,
        "runs": runs,
        "check": check,
        "seconds": med,
        "ratio_6.12_over_7.2": ratio,
        "counters": counters,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", default="1G", help="memory written and mprotected (default 1G)")
    ap.add_argument("--runs", type=int, default=5, help="rw->r->rw rounds per version (median reported)")
    ap.add_argument("--check", action="store_true", help="run the validators after every syscall")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    res = run(parse_bytes(args.size), args.runs, args.check)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"mprotect of {args.size} of 64K folios on arm64, validators {'on' if args.check else 'off'}")
    for k in KERNELS:
        s = res["seconds"][k]
        print(f"  kernel {k}: rw->r {s['ro']:.4f} s, r->rw {s['rw']:.4f} s; one rw->r: {res['counters'][k]}")
    r = res["ratio_6.12_over_7.2"]
    print(f"  6.12 / 7.2: rw->r {r['ro']:.2f}x, r->rw {r['rw']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
