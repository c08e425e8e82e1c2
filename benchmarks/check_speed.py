#!/usr/bin/env python3
"""The validators' own cost: per syscall, per fork/exit, and their memory.

    python benchmarks/check_speed.py [syscalls] [fork] [memory] [--size 256M] [--folio 64K]

- ``syscalls``: single-page read, write, mprotect, write fault, MADV_DONTNEED
  with ``check=False``, and with ``check=True`` split into the part spent in
  the validators' entry points (``Validators.*``) and the rest (the kernel and
  the hardware rule checker), with 16 MiB and 1 GiB mapped.  Each call
  reaches a new state (no call repeats one), best of several runs.
- ``fork``: fault-in, fork (the first, then the median of later ones) and
  child exit of ``--size``, and the validators' share.
- ``memory``: what the validators keep per mapping after fault-in and fork
  (their per-frame arrays, allocated with the Machine, included).

Wall-clock figures on a shared machine are noisy: read the ratios within
one run.  ``valgrind --tool=callgrind`` counts instructions when they are
not enough.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

import contpte

PAGE = 4096


def parse_size(text: str) -> int:
    units = {"K": 10, "M": 20, "G": 30}
    return int(text[:-1]) << units[text[-1].upper()] if text[-1].upper() in units else int(text)


class Timed:
    """The Machine's validators with every entry point timed."""

    def __init__(self, v: Any) -> None:
        self.v = v
        self.t = 0.0

    def __getattr__(self, name: str) -> Any:
        f = getattr(self.v, name)

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                self.t += time.perf_counter() - t0

        return timed


def machine(check: bool, folio: str, nbytes: int) -> Any:
    mthp = {} if folio in ("4K", "2M") else {folio: "always"}
    thp = "always" if folio == "2M" else "never"
    m = contpte.Machine(
        arch="arm64", memory=max(2 * nbytes, 256 << 20), cpus=2, mthp=mthp, thp=thp, check=check
    )
    if check:
        m.validators = Timed(m.validators)
    return m


def per_call(
    f: Callable[[int], None], timed: Timed | None, n: int = 1000, reps: int = 7
) -> tuple[float, float]:
    """Best of ``reps`` runs of ``n`` calls f(k) (k counts on): (seconds per call, of which validators)."""
    best = (1e9, 0.0)
    k = 0
    for _ in range(reps):
        v0 = timed.t if timed else 0.0
        t0 = time.perf_counter()
        for _ in range(n):
            f(k)
            k += 1
        dt = (time.perf_counter() - t0) / n
        if dt < best[0]:
            best = (dt, ((timed.t - v0) / n) if timed else 0.0)
    return best


def _syscalls(check: bool, folio: str, mapped: int) -> dict[str, tuple[float, float]]:
    m = machine(check, folio, mapped)
    p = m.spawn()
    a = p.mmap(mapped)
    p.write(a, mapped, 1)
    b = p.mmap(64 << 20)
    npages = mapped // PAGE
    timed = m.validators if check else None
    ops: dict[str, Callable[[int], None]] = {
        "read": lambda k: p.read(a + (k * 97 % npages) * PAGE, PAGE),
        "write": lambda k: p.write(a + (k * 97 % npages) * PAGE, PAGE, k),
        # each page made read-only, then writable again
        "mprotect": lambda k: p.mprotect(a + ((k >> 1) * 97 % npages) * PAGE, PAGE, "rw" if k & 1 else "r"),
        "fault": lambda k: p.write(b + (k % 16384) * PAGE, PAGE, 5),
        # DONTNEED of the pages just faulted in
        "dontneed": lambda k: p.madvise(b + (k % 16384) * PAGE, PAGE, "dontneed"),
    }
    return {name: per_call(f, timed) for name, f in ops.items()}


def syscalls(folio: str) -> None:
    for mapped in (16 << 20, 1 << 30):
        off = _syscalls(False, folio, mapped)
        on = _syscalls(True, folio, mapped)
        print(f"\n{folio} folios, {mapped >> 20} MiB mapped: microseconds per call")
        print(f"{'':10} {'off':>8} {'on':>8} {'validators':>11} {'on/off':>7} {'valid./off':>10}")
        for name in off:
            t0, _ = off[name]
            t1, val = on[name]
            print(
                f"{name:10} {t0 * 1e6:8.1f} {t1 * 1e6:8.1f} {val * 1e6:11.1f} {t1 / t0:7.2f} {val / t0:10.2f}"
            )


def _fork(check: bool, folio: str, nbytes: int) -> str:
    m = machine(check, folio, nbytes)
    timed = m.validators if check else None
    p = m.spawn()
    pmd = 2 << 20
    a = p.mmap(nbytes + pmd)
    a = (a + pmd - 1) & ~(pmd - 1)
    out: dict[str, list[tuple[float, float]]] = {}

    def run(name: str, f: Callable[[], Any]) -> Any:
        gc.collect()
        v0 = timed.t if timed else 0.0
        t0 = time.perf_counter()
        r = f()
        out.setdefault(name, []).append((time.perf_counter() - t0, (timed.t - v0) if timed else 0.0))
        return r

    run("fault-in", lambda: p.write(a, nbytes, 1))
    for _ in range(4):
        c = run("fork", p.fork)
        run("exit", c.exit)
    line = []
    for name, xs in out.items():
        if name == "fork":
            line.append(f"fork first {xs[0][0] * 1e3:.1f} ({xs[0][1] * 1e3:.1f} validators)")
            xs = xs[1:]
        t = statistics.median(x[0] for x in xs)
        v = statistics.median(x[1] for x in xs)
        line.append(f"{name} {t * 1e3:.1f} ({v * 1e3:.1f} validators)")
    return f"check {'on ' if check else 'off'}: " + ", ".join(line)


def fork(folio: str, nbytes: int) -> None:
    print(f"\n{folio} folios, {nbytes >> 20} MiB: milliseconds")
    for check in (False, True):
        print(_fork(check, folio, nbytes))


def memory(folio: str, nbytes: int) -> None:
    import tracemalloc

    for distinct in (False, True):
        m = contpte.Machine(
            arch="arm64",
            memory=max(2 * nbytes, 256 << 20),
            cpus=2,
            mthp={} if folio in ("4K", "2M") else {folio: "always"},
            thp="always" if folio == "2M" else "never",
            check=True,
        )
        gc.collect()
        tracemalloc.start()
        p = m.spawn()
        pmd = 2 << 20
        a = p.mmap(nbytes + pmd)
        a = (a + pmd - 1) & ~(pmd - 1)
        pages = nbytes // PAGE
        p.write(a, nbytes, np.arange(1, pages + 1, dtype=np.uint64) if distinct else 1)
        after_fault = m.validators.nbytes() / pages
        c = p.fork()
        kept = m.validators.nbytes() / (2 * pages)
        cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        frames = 2 * m.validators.shadow.nr
        print(
            f"{folio} {'distinct values' if distinct else 'one value'}: validators keep "
            f"{after_fault:.2f} B/page after fault-in, {kept:.2f} B/mapping after fork "
            f"({frames / (2 * pages):.2f} of it the per-frame arrays); whole simulator beyond "
            f"mem_map: {cur / (2 * pages):.1f} B/mapping (peak {peak / (2 * pages):.1f})"
        )
        c.exit()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="*", default=["syscalls", "fork", "memory"])
    ap.add_argument("--size", default="256M")
    ap.add_argument("--folio", default="64K")
    args = ap.parse_args(argv)
    nbytes = parse_size(args.size)
    if "syscalls" in args.what:
        syscalls(args.folio)
    if "fork" in args.what:
        fork(args.folio, nbytes)
    if "memory" in args.what:
        memory(args.folio, nbytes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
