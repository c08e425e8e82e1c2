"""The vectorised fast paths (mm/memory_bulk.py) against the kernel-shaped code.

Two machines run the same random workload, one with ``kernel.fast_paths``
off (fork's table copy, write fault-in, and zap: munmap, MADV_DONTNEED,
exit; a small ``MAX_GATHER_BATCH`` forces the gather's mid-zap flushes).  After every step they must agree on everything observable: page
tables, mem_map arrays, frame contents, RSS, the buddy allocator, every
CPU's TLB (content and LRU order) and every counter -- or raise the same
error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contpte
from contpte.mm import mmu_gather
from contpte.mm.memory_bulk import lock_break_points

MTHP = [{}, {"16K": "always"}, {"64K": "always"}, {"64K": "always", "16K": "always"}, {"128K": "always"}]


def snapshot(m: contpte.Machine) -> dict[str, Any]:
    k = m.kernel
    mem = k.memmap
    out: dict[str, Any] = {"counters": m.stats()}
    for name in (
        "head",
        "order",
        "flags",
        "mapcount",
        "refcount",
        "pincount",
        "entire_mapcount",
        "large_mapcount",
        "mapping",
        "index",
    ):
        out["mem." + name] = getattr(mem, name).tobytes()
    out["data"] = m.hw.memory.data.tobytes()
    out["buddy"] = [sorted(fl) for fl in k.buddy.free_lists]
    out["buddy.free_order"] = k.buddy.free_order.tobytes()
    out["buddy.nr_free"] = k.buddy.nr_free
    out["deferred"] = sorted(k.deferred_split)
    out["tlbs"] = [t.snapshot() for t in m.hw.tlbs]
    for i, mm in enumerate(k.mms):
        sp = mm.space
        out[f"mm{i}.tables"] = {idx: t.entries.tobytes() for idx, t in sorted(sp.tables.items())}
        out[f"mm{i}.pmds"] = dict(sorted(sp.pmds.items()))
        out[f"mm{i}.rss"] = list(mm.rss)
    return out


def diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    for key in a:
        if a[key] != b.get(key):
            if key == "counters":
                ka, kb = a[key], b[key]
                bad = {n: (ka.get(n), kb.get(n)) for n in set(ka) | set(kb) if ka.get(n) != kb.get(n)}
                return f"counters differ (fast, reference): {bad}"
            return f"{key} differs"
    return ""


ops_st = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "mmap",
                "write",
                "write",
                "fork",
                "fork",
                "exit",
                "mprotect",
                "dontneed",
                "free",
                "munmap",
                "read",
                "write_all",
            ]
        ),
        st.integers(0, 1 << 30),
        st.integers(0, 1 << 30),
    ),
    min_size=3,
    max_size=16,
)


def run(params: dict[str, Any], ops: list[tuple[str, int, int]], fast: bool) -> list[Any]:
    # a small gather forces the mmu_gather's mid-zap flushes (zap fast path)
    saved = mmu_gather.MAX_GATHER_BATCH
    mmu_gather.MAX_GATHER_BATCH = params.get("gather", saved)
    try:
        return _run(params, ops, fast)
    finally:
        mmu_gather.MAX_GATHER_BATCH = saved


def _run(params: dict[str, Any], ops: list[tuple[str, int, int]], fast: bool) -> list[Any]:
    m = contpte.Machine(
        arch=params["arch"],
        memory="64M",
        cpus=2,
        mthp=params["mthp"],
        thp=params["thp"],
        check=params["check"],
        **params["opts"],
    )
    m.kernel.fast_paths = fast
    procs = [m.spawn()]
    maps: list[tuple[int, int]] = []
    trace: list[Any] = []
    ps = m.page_size
    per = ps // 8  # PTEs per table
    for op, x, y in ops:
        p = procs[x % len(procs)]
        try:
            if op == "mmap" or not maps:
                if params.get("tables"):
                    # whole page tables (a PMD-aligned start): the fast paths' uniform case
                    n = per * (1 + y % params["tables"])
                    addr = p.mmap((n + per) * ps)
                    addr = (addr + per * ps - 1) & ~(per * ps - 1)
                else:
                    n = 1 + y % 700
                    addr = p.mmap(n * ps)
                maps.append((addr, n))
                if op == "mmap":
                    trace.append(("mmap", addr))
                    continue
            base, n = maps[y % len(maps)]
            off = x % n
            cnt = 1 + (y >> 8) % (n - off)
            a = base + off * ps
            if op == "write":
                p.write(a, cnt * ps, x & 0xFFFF)
            elif op == "write_all":
                p.write(base, n * ps, y & 0xFFFF)
            elif op == "read":
                trace.append(p.read(a, cnt * ps).tobytes())
            elif op == "fork":
                procs.append(p.fork())
            elif op == "exit" and len(procs) > 1:
                procs.remove(p)
                p.exit()
            elif op == "mprotect":
                p.mprotect(a, cnt * ps, "r" if x & 1 else "rw")
            elif op == "dontneed":
                p.madvise(a, cnt * ps, "dontneed")
            elif op == "free":
                p.madvise(a, cnt * ps, "free")
            elif op == "munmap":
                p.munmap(a, cnt * ps)
            trace.append((op, "ok"))
        except (OSError, contpte.ContpteError) as e:
            trace.append((op, type(e).__name__, getattr(e, "rule", None)))
        trace.append(snapshot(m))
    return trace


params_st = st.fixed_dictionaries(
    {
        "arch": st.sampled_from(["arm64", "generic"]),
        "mthp": st.sampled_from(MTHP),
        "thp": st.sampled_from(["never", "madvise", "always"]),
        "check": st.booleans(),
        "opts": st.sampled_from(
            [{}, {}, {"wrprotect_ptes_opt": False}, {"teardown_opt": False}, {"contpte": False}]
        ),
        "gather": st.sampled_from([10000, 10000, 37, 300]),
    }
)


def assert_fast_equals_reference(params: dict[str, Any], ops: list[tuple[str, int, int]]) -> None:
    """The same workload with the fast paths on and off leaves equal state after every step."""
    fast = run(params, ops, True)
    ref = run(params, ops, False)
    assert len(fast) == len(ref)
    for i, (f, r) in enumerate(zip(fast, ref, strict=True)):
        if isinstance(f, dict):
            d = diff(f, r)
            assert not d, f"step {i}: {d}"
        else:
            assert f == r, f"step {i}: {f!r} != {r!r}"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params_st, ops_st)
def test_fast_paths_equal_reference(params: dict[str, Any], ops: list[tuple[str, int, int]]) -> None:
    assert_fast_equals_reference(params, ops)


table_ops_st = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "mmap",
                "write_all",
                "write_all",
                "fork",
                "fork",
                "fork",
                "exit",
                "write",
                "mprotect",
                "dontneed",
                "free",
                "munmap",
                "read",
            ]
        ),
        st.integers(0, 1 << 30),
        st.integers(0, 1 << 30),
    ),
    min_size=3,
    max_size=10,
)


table_params_st = st.fixed_dictionaries(
    {
        "arch": st.sampled_from(["arm64", "arm64", "generic"]),
        "mthp": st.sampled_from(MTHP),
        "thp": st.sampled_from(["never", "never", "madvise", "always"]),
        "check": st.booleans(),
        "opts": st.sampled_from(
            [{}, {}, {}, {"wrprotect_ptes_opt": False}, {"teardown_opt": False}, {"contpte": False}]
        ),
        "gather": st.sampled_from([10000, 10000, 37, 300]),
    }
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table_params_st, table_ops_st, st.sampled_from([1, 2]))
def test_fast_paths_whole_tables(
    params: dict[str, Any], ops: list[tuple[str, int, int]], tables: int
) -> None:
    """Mappings of whole page tables, written in full first: every PTE
    present, folios of one order (order 0, 16K, 64K with contpte blocks,
    128K), writable or not, partly mprotected, CoW-broken or zapped: the
    uniform batches of the fast paths."""
    params = {**params, "tables": tables}
    ops = [("mmap", 0, tables - 1), ("write_all", 0, 0), *ops]
    assert_fast_equals_reference(params, ops)


def _uniform_trace(
    arch: str, mthp: dict[str, str], opts: dict[str, Any], check: bool, reverse: bool, fast: bool
) -> list[Any]:
    """Whole page tables of one folio order forked, CoW-broken, mprotected in part, zapped.

    ``reverse``: the second table faulted in first (the pages of the two
    tables not consecutive, the second's below the first's).
    """
    m = contpte.Machine(arch=arch, memory="64M", cpus=2, mthp=mthp, thp="never", check=check, **opts)
    m.kernel.fast_paths = fast
    ps = m.page_size
    tbl = ps // 8 * ps  # bytes one table maps
    p = m.spawn()
    a = p.mmap(4 * tbl)
    a = (a + tbl - 1) & ~(tbl - 1)
    out: list[Any] = []
    for t in (1, 0) if reverse else (0, 1):
        p.write(a + t * tbl, tbl, 1)
    p.madvise(a, 2 * tbl, "free")  # clean and old
    p.fork().exit()
    out.append(snapshot(m))
    p.write(a + 3 * ps, tbl, 1)  # dirty again: here and there in a block
    p.fork().exit()
    out.append(snapshot(m))
    p.mprotect(a + tbl + ps, 2 * ps, "r")  # write bits differ inside a folio
    c1 = p.fork()  # (nearly) every batch writable: the parent write-protected
    out.append(snapshot(m))
    p.mprotect(a + tbl + ps, 2 * ps, "rw")
    c2 = p.fork()  # nothing writable
    out.append(snapshot(m))
    c1.write(a + 5 * ps, 3 * ps, 2)  # CoW copies: another order among them, other pfns
    p.write(a + tbl + 7 * ps, ps, 4)
    c3 = c1.fork()
    c4 = p.fork()
    out.append(snapshot(m))
    p.write(a, 2 * tbl, 5)  # the parent's own copies: other pfns, writable
    c5 = p.fork()
    out.append(snapshot(m))
    c2.exit()
    p.munmap(a + tbl, tbl)
    out.append(snapshot(m))
    for c in (c1, c3, c4, c5):
        c.exit()
    out.append(snapshot(m))
    return out


def test_fast_paths_uniform_tables() -> None:
    """Each folio order, backend and option: the uniform fast path against the reference."""
    k4: dict[str, str] = {}
    k16, k64 = {"16K": "always"}, {"64K": "always"}
    cases: list[tuple[str, dict[str, str], dict[str, Any], bool, bool]] = [
        *(("arm64", mthp, {}, False, False) for mthp in MTHP if len(mthp) < 2),
        *(("arm64", mthp, {}, False, True) for mthp in (k4, k16)),
        ("arm64", k64, {"wrprotect_ptes_opt": False, "teardown_opt": False}, True, True),
        ("arm64", k64, {"contpte": False}, False, True),
        ("generic", k4, {}, False, True),
        ("generic", k16, {}, False, False),
    ]
    for arch, mthp, opts, check, reverse in cases:
        fast = _uniform_trace(arch, mthp, opts, check, reverse, True)
        ref = _uniform_trace(arch, mthp, opts, check, reverse, False)
        for i, (f, r) in enumerate(zip(fast, ref, strict=True)):
            d = diff(f, r)
            assert not d, f"{arch} {opts} {mthp} check={check} reverse={reverse} step {i}: {d}"


def test_lock_break_points_rule() -> None:
    """The closed forms agree with the loop's rule."""

    def loop(ws: list[int]) -> int:
        b, p = 0, 0
        for i, w in enumerate(ws):
            if i and p >= 32:
                b, p = b + 1, 0
            p += w
        return b

    rng = np.random.default_rng(1)
    for _ in range(300):
        kind = rng.integers(0, 3)
        n = int(rng.integers(0, 80))
        if kind == 0:
            ws = [int(rng.choice([1, 8, 16, 24, 32, 128]))] * n
        elif kind == 1:
            ws = [int(x) for x in rng.choice([32, 64, 128, 4096], n)]
        else:
            ws = [int(x) for x in rng.choice([1, 1, 1, 8, 16, 24, 128], n)]
        assert lock_break_points(np.array(ws, dtype=np.int64)) == loop(ws)


def _pmd_fork_trace(arch: str, check: bool, fast: bool) -> list[Any]:
    """PMD-mapped THPs (some split, some partly unmapped) forked twice: the bulk PMD copy."""
    m = contpte.Machine(arch=arch, memory="64M", cpus=2, mthp={}, thp="always", check=check)
    m.kernel.fast_paths = fast
    p = m.spawn()
    pmd = 2 << 20
    a = p.mmap(9 * pmd)
    a = (a + pmd - 1) & ~(pmd - 1)
    out: list[Any] = []
    p.write(a, 6 * pmd, 7)
    p.munmap(a + 2 * pmd + 4096, 4096)  # splits one PMD map: PTEs between PMD maps
    c = p.fork()
    out.append(snapshot(m))
    c.write(a, 4096, 9)
    p.write(a + pmd, 4096, 3)
    c2 = c.fork()
    out.append(snapshot(m))
    c2.exit()
    c.exit()
    out.append(snapshot(m))
    return out


def test_bulk_pmd_copy_equals_copy_huge_pmd() -> None:
    for arch in ("arm64", "generic"):
        for check in (False, True):
            fast = _pmd_fork_trace(arch, check, True)
            ref = _pmd_fork_trace(arch, check, False)
            assert any(v for k, v in fast[0].items() if k.endswith(".pmds"))  # PMD maps were copied
            for i, (f, r) in enumerate(zip(fast, ref, strict=True)):
                d = diff(f, r)
                assert not d, f"{arch} check={check} step {i}: {d}"
