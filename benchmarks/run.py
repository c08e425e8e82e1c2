#!/usr/bin/env python3
"""Benchmark runner: the simulator's own speed, against the real kernel.

    python benchmarks/run.py [NAME ...] [--repeat 5] [--json]

Benchmarks live here, never as timed assertions in tests.  Each benchmark is
a function registered with ``@benchmark``; it returns a dict of measurements
(seconds, medians over ``repeat`` runs).  numbers.md: "a ratio in one run is
the only honest comparison on shared machines", so ``host_fork`` (the real
kernel) and ``sim_fork`` (the model) are meant to run together.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

Result = dict[str, object]
BENCHMARKS: dict[str, Callable[[int], Result]] = {}

THP = Path("/sys/kernel/mm/transparent_hugepage")


def benchmark(fn: Callable[[int], Result]) -> Callable[[int], Result]:
    BENCHMARKS[fn.__name__] = fn
    return fn


def _thp_setting(size_kb: int) -> str:
    try:
        text = (THP / f"hugepages-{size_kb}kB" / "enabled").read_text()
    except OSError:
        return "unavailable"
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if start >= 0 else text.strip()


@benchmark
def host_fork(repeat: int) -> Result:
    """Real kernel: parent-side fork() of a process with 1 GiB touched anonymous memory."""
    import numpy as np

    size = 1 << 30
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    pages = np.frombuffer(buf, dtype=np.uint8)
    pages[::4096] = 1  # touch every page
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        times.append(time.perf_counter() - t0)
        os.waitpid(pid, 0)
    del pages
    buf.close()
    return {"seconds_median": statistics.median(times), "runs": times, "mthp_64kB": _thp_setting(64)}


@benchmark
def sim_fork(repeat: int) -> Result:
    """The model: wall time of simulating one fork of 128 MiB of 64K folios, per configuration."""
    from contpte.cost import fork_bench

    out: Result = {}
    for config in fork_bench.CONFIGS:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fork_bench.simulate_fork(config, 1)
            times.append(time.perf_counter() - t0)
        out[config] = {"seconds_median": statistics.median(times), "runs": times}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all: {', '.join(BENCHMARKS)})")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(
            f"run.py: unknown benchmark(s) {', '.join(unknown)}; have {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    results: dict[str, Result] = {}
    for name in names:
        try:
            results[name] = BENCHMARKS[name](args.repeat)
        except Exception as e:  # a benchmark that cannot run says why; the others still run
            results[name] = {"error": f"{type(e).__name__}: {e}"}
        if not args.json:
            print(f"{name}: {json.dumps(results[name])}", file=sys.stderr)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
