"""Speed of the hardware layer alone: access path, stores, TLBI, rule checker, checker memory.

Run: ``python benchmarks/hw_speed.py [--quick] [--json]``.  Each figure is
the median of several runs, in CPU time of the measuring thread
(``time.thread_time``), so that other load on the machine inflates it less
than wall time would.  4K granule, Neoverse N1 preset (4 CPUs, 1280-entry
TLBs), the rule checker off and on.

- ``hit``: loads served by the TLB: a whole ``access`` call of one page
  (what a Python caller pays per call) and per page of a 64-page call.
- ``miss+walk``: loads of 4K pages after ``TLBI VMALLE1IS`` (a walk and a
  fill per page).
- ``write of 1 GiB mapped`` (``--quick``: 256 MiB): every page stored,
  4K pages (a walk per page: the TLB holds 1280 entries) or 64K contiguous
  blocks (a walk per 16 pages); ``1 GiB hits``: the same, 64K blocks, the
  second pass over 64 MiB that the TLB holds.
- ``store``: ``PtePool.store`` from Python (the Python call is most of it;
  the checker's share is the difference between off and on).
- ``tlbi_op``/``dsb_op``: from Python, 4 CPUs' TLBs probed.
- ``ptl_release``: after one store, after a whole table stored.
- ``checker bytes / mapped PTE``: the checker's arrays with 1 GiB mapped
  (the descriptor pool itself is 8 bytes per PTE plus table slack).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # idle BLAS threads spin and steal CPU

import numpy as np

from contpte.hw.hardware import Hardware
from contpte.hw.tables import AddressSpace
from contpte.hw.tlbi import DSB_ISH, TLBI_ASIDE1IS, TLBI_VALE1IS

GIB_PAGES = 1 << 18


def timed(fn: Callable[[], object], reps: int) -> float:
    """Median CPU seconds (this thread) of ``reps`` calls of ``fn``."""
    out = []
    for _ in range(reps):
        t = time.thread_time()
        fn()
        out.append(time.thread_time() - t)
    return statistics.median(out)


def mapped(npages: int, cont: bool, checker: bool) -> tuple[Hardware, AddressSpace]:
    """A machine with ``npages`` pages mapped from VA 0 to PFN 0 (64K blocks or 4K pages)."""
    hw = Hardware(npages + 1024, checker=checker)
    s = hw.new_space(1, "bench")
    fmt = hw.fmt
    pool = hw.pool
    n = hw.ptrs_per_pte
    vals = [fmt.mk_page(i, cont=cont) for i in range(n)]
    step = n << hw.page_shift
    for t in range((npages + n - 1) // n):
        slot = s.alloc_pte_table(t)
        base = slot << pool.shift
        for i in range(min(n, npages - t * n)):
            pool.store(base + i, vals[i] + t * step)
        if hw.checker is not None:
            hw.checker.ptl_release(s, slot)
    return hw, s


def on_off(checker: bool) -> str:
    return "checker on" if checker else "checker off"


def bench(quick: bool) -> dict[str, float]:
    r: dict[str, float] = {}
    reps = 3 if quick else 7
    n = 20000
    for checker in (False, True):
        # -- TLB hits ---------------------------------------------------------
        hw, s = mapped(512, False, checker)
        out = np.zeros(64, dtype=np.uint64)
        hw.access(0, s, 0, 64, False, out=out)

        def one(hw: Hardware = hw, s: AddressSpace = s, n: int = n) -> None:
            acc = hw.access
            for _ in range(n):
                acc(0, s, 0, 1, False)

        r[f"hit: access() of 1 page from Python (ns/call), {on_off(checker)}"] = timed(one, reps) / n * 1e9

        def many(hw: Hardware = hw, s: AddressSpace = s, n: int = n, out: np.ndarray = out) -> None:
            acc = hw.access
            for _ in range(n // 64):
                acc(0, s, 0, 64, False, None, out)

        r[f"hit: 4K pages, 64 per call (ns/page), {on_off(checker)}"] = (
            timed(many, reps) / (n // 64 * 64) * 1e9
        )
        # -- miss + walk -------------------------------------------------------
        hw, s = mapped(4096, False, checker)

        def walk(hw: Hardware = hw, s: AddressSpace = s) -> None:
            hw.tlbi_op(TLBI_ASIDE1IS, 1, -1, 0)
            hw.access(0, s, 0, 4096, False)

        r[f"miss+walk: 4K pages (ns/page), {on_off(checker)}"] = timed(walk, reps) / 4096 * 1e9
    # -- write of 1 GiB mapped -----------------------------------------------------
    npages = GIB_PAGES // (4 if quick else 1)
    size = "256 MiB" if quick else "1 GiB"
    for cont in (False, True):
        for checker in (False, True):
            hw, s = mapped(npages, cont, checker)
            hw.access(0, s, 0, npages, True, 1)

            def write(hw: Hardware = hw, s: AddressSpace = s, npages: int = npages) -> None:
                hw.access(0, s, 0, npages, True, 7)

            what = "64K blocks" if cont else "4K pages"
            r[f"write {size} mapped, {what} (ns/page), {on_off(checker)}"] = (
                timed(write, max(3, reps // 2)) / npages * 1e9
            )
            if cont:
                small = min(npages, 1 << 14)  # 64 MiB: 1024 entries, the TLB holds them

                def hits(hw: Hardware = hw, s: AddressSpace = s, small: int = small) -> None:
                    for _ in range(8):
                        hw.access(0, s, 0, small, True, 9)

                hw.access(0, s, 0, small, True, 9)
                r[f"write 64 MiB mapped, 64K blocks, TLB hits (ns/page), {on_off(checker)}"] = (
                    timed(hits, reps) / (8 * small) * 1e9
                )
            if checker and not cont and hw.checker is not None:
                r[f"checker bytes / mapped PTE, {size} of 4K pages"] = hw.checker.memory_bytes() / npages
                r[f"pool bytes / mapped PTE, {size} of 4K pages"] = np.asarray(hw.pool.e).nbytes / npages
            del hw, s
    # -- stores, PTL release -------------------------------------------------------
    for checker in (False, True):
        hw, s = mapped(4096, False, checker)
        pool = hw.pool
        fmt = hw.fmt
        base = s.pte_table(0) << pool.shift
        ro = [fmt.mk_page(i, write=0) for i in range(512)]
        rw = [fmt.mk_page(i) for i in range(512)]

        def wrprotect(pool=pool, base=base, ro=ro, rw=rw) -> None:  # type: ignore[no-untyped-def]
            st = pool.store
            for i in range(512):
                st(base + i, ro[i])
            for i in range(512):
                st(base + i, rw[i])

        r[f"store from Python, write-protect (ns/store), {on_off(checker)}"] = (
            timed(wrprotect, reps) / 1024 * 1e9
        )

        def break_make(hw=hw, pool=pool, base=base, rw=rw) -> None:  # type: ignore[no-untyped-def]
            st = pool.store
            for i in range(512):
                st(base + i, 0)
            hw.tlbi_op(TLBI_ASIDE1IS, 1, -1, 0)
            hw.dsb_op(DSB_ISH)
            for i in range(512):
                st(base + i, rw[i])

        r[f"store from Python, break + make around ASIDE1IS (ns/store), {on_off(checker)}"] = (
            timed(break_make, reps) / 1024 * 1e9
        )
        chk = hw.checker
        if chk is not None:
            slot = s.pte_table(0)

            def release_one(pool=pool, base=base, ro=ro, rw=rw, chk=chk, s=s, slot=slot) -> None:  # type: ignore[no-untyped-def]
                for _ in range(1000):
                    pool.store(base + 7, ro[7])
                    chk.ptl_release(s, slot)
                    pool.store(base + 7, rw[7])
                    chk.ptl_release(s, slot)

            def stores_one(pool=pool, base=base, ro=ro, rw=rw) -> None:  # type: ignore[no-untyped-def]
                for _ in range(1000):
                    pool.store(base + 7, ro[7])
                    pool.store(base + 7, rw[7])

            r["ptl_release after one store (ns)"] = (
                (timed(release_one, reps) - timed(stores_one, reps)) / 2000 * 1e9
            )

            def release_all(pool=pool, base=base, ro=ro, rw=rw, chk=chk, s=s, slot=slot) -> float:  # type: ignore[no-untyped-def]
                spent = 0.0
                for vals in (ro, rw) * 50:
                    for i in range(512):
                        pool.store(base + i, vals[i])
                    t = time.thread_time()
                    chk.ptl_release(s, slot)
                    spent += time.thread_time() - t
                return spent

            r["ptl_release after a whole table stored (us)"] = (
                statistics.median(release_all() for _ in range(reps)) / 100 * 1e6
            )
    # -- TLBI, DSB ---------------------------------------------------------------
    for checker in (False, True):
        hw, s = mapped(4096, False, checker)
        for cpu in range(4):
            hw.access(cpu, s, 0, 1024, False)

        def tlbi(hw: Hardware = hw, n: int = n) -> None:
            op = hw.tlbi_op
            for i in range(n):
                op(TLBI_VALE1IS, 1, (i & 4095) << 12, 3)

        r[f"tlbi_op(TLBI_VALE1IS) from Python, 4 CPUs (ns), {on_off(checker)}"] = timed(tlbi, reps) / n * 1e9

        def dsb(hw: Hardware = hw, n: int = n) -> None:
            op = hw.dsb_op
            for _ in range(n):
                op(DSB_ISH)

        r[f"dsb_op(DSB_ISH) from Python (ns), {on_off(checker)}"] = timed(dsb, reps) / n * 1e9

        def by_name(hw: Hardware = hw, n: int = n) -> None:
            for i in range(n):
                hw.tlbi("VALE1IS", asid=1, va=(i & 4095) << 12, ttl=3)

        r[f"tlbi('VALE1IS') by name from Python (ns), {on_off(checker)}"] = timed(by_name, reps) / n * 1e9

        def baseline(n: int = n) -> None:
            f = int
            for i in range(n):
                f(i)

        r["(a Python loop calling a builtin: the call overhead in the figures above) (ns)"] = (
            timed(baseline, reps) / n * 1e9
        )
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="256 MiB instead of 1 GiB, fewer runs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = bench(args.quick)
    if args.json:
        print(json.dumps(r, indent=1))
        return
    w = max(len(k) for k in r)
    for k, v in r.items():
        print(f"{k:<{w}}  {v:10.1f}")


if __name__ == "__main__":
    main()
