#!/usr/bin/env python3
"""The OnePlus validators' share of a ``contpte fuzz --variant arm64-oneplus`` run.

    python benchmarks/oneplus_check.py [--steps 20000] [--seed 5] [--runs 5]

Fuzzes the ``arm64-oneplus`` variant (``check=True``, as ``contpte fuzz``)
three ways in turn, ``--runs`` times each, interleaved so that a change in
the machine's load hits all three alike:

- ``on``: every validator, as shipped;
- ``timed``: the same, with the block validator (``check/cont_pte.py``)
  and the hugepage-pool validator (``check/chp_pool.py``) timed at their
  entry points (``after_syscall``): microseconds per call of each;
- ``off``: those two replaced by no-ops (every other validator on).

It prints the median machine-steps/s of each, the ratio ``on/off`` (1.0:
the two validators cost nothing) and the two validators' median share of
the ``timed`` run's fuzzing time.  Every run fuzzes the same episodes
(same seed), so the figures compare like with like; run it before and
after a change to the validators and read the ratios within each run.
Wall-clock figures on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import contpte.check.chp_pool as chp_check
import contpte.check.cont_pte as cont_check
from contpte.workloads.fuzz import FuzzConfig, fuzz


class Timed:
    """A validator with ``after_syscall`` timed; the rest passes through."""

    def __init__(self, v: Any, book: dict[str, list[float]], name: str) -> None:
        self.v = v
        self.book = book
        self.name = name

    def after_syscall(self, *a: Any) -> None:
        t0 = time.perf_counter()
        try:
            self.v.after_syscall(*a)
        finally:
            got = self.book.setdefault(self.name, [0.0, 0.0])
            got[0] += time.perf_counter() - t0
            got[1] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.v, name)


class Off:
    """A validator that checks nothing."""

    def __init__(self, machine: Any) -> None:
        pass

    def after_syscall(self, *a: Any) -> None:
        pass


def run(mode: str, steps: int, seed: int) -> tuple[float, float, dict[str, list[float]]]:
    """One fuzz run: (machine-steps/s, fuzzing seconds, validator -> [seconds, calls])."""
    book: dict[str, list[float]] = {}
    classes = (cont_check.ContPteCheck, chp_check.ChpPoolCheck)
    if mode == "off":
        vars(cont_check)["ContPteCheck"] = Off
        vars(chp_check)["ChpPoolCheck"] = Off
    elif mode == "timed":
        vars(cont_check)["ContPteCheck"] = lambda m: Timed(classes[0](m), book, "cont_pte")
        vars(chp_check)["ChpPoolCheck"] = lambda m: Timed(classes[1](m), book, "chp_pool")
    try:
        res = fuzz(FuzzConfig(steps=steps, seed=seed, variants=["arm64-oneplus"]))
    finally:
        vars(cont_check)["ContPteCheck"] = classes[0]
        vars(chp_check)["ChpPoolCheck"] = classes[1]
    return res.steps_per_second, res.fuzz_seconds, book


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    rate: dict[str, list[float]] = {"on": [], "timed": [], "off": []}
    share: dict[str, list[float]] = {"cont_pte": [], "chp_pool": []}
    per_call: dict[str, list[float]] = {"cont_pte": [], "chp_pool": []}
    calls: dict[str, float] = {}
    for _ in range(args.runs):
        for mode in rate:
            sps, secs, book = run(mode, args.steps, args.seed)
            rate[mode].append(sps)
            for name, (t, n) in book.items():
                share[name].append(t / secs)
                per_call[name].append(1e6 * t / max(n, 1))
                calls[name] = n
    med = {mode: statistics.median(v) for mode, v in rate.items()}
    print(f"arm64-oneplus fuzz, {args.steps} steps, seed {args.seed}, median of {args.runs} runs")
    for mode in rate:
        print(f"  {mode:6} {med[mode]:9,.0f} machine-steps/s")
    print(f"  on/off {med['on'] / med['off']:.2f} (1.00: the two validators cost nothing)")
    for name in share:
        if share[name]:
            print(
                f"  {name:9} {statistics.median(per_call[name]):8.1f} us per call, "
                f"{calls[name]:,.0f} calls, {100 * statistics.median(share[name]):.1f}% of the timed run"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
