"""TLB maintenance: __flush_tlb_range thresholds, range ops, KPTI, the mmu_gather flush."""

from __future__ import annotations

import pytest
from arm64kit import OTHER_ASID, Env, cpu_features, gather
from hypothesis import given, settings
from hypothesis import strategies as st

from contpte.arch.arm64 import tlbflush
from contpte.arch.arm64.tlbflush import MAX_TLBI_RANGE_PAGES
from contpte.errors import InvariantViolation

BASE = 1 << 30


def tlbi_counts(env: Env) -> dict[str, int]:
    return {k[5:]: v for k, v in env.c.snapshot().items() if k.startswith("tlbi.")}


def flush(env: Env, pages: int, stride_pages: int = 1, last_level: bool = True, level: int = 3) -> None:
    a = env.arch
    tlbflush._flush_tlb_range(
        a, env.vma, BASE, BASE + pages * a.PAGE_SIZE, stride_pages * a.PAGE_SIZE, last_level, level
    )


def range_ops(p: int) -> int:
    """docs/arm-rules.md §3.4 oracle: ops for p pages (stride PAGE_SIZE, p <= 2**21)."""
    if p == MAX_TLBI_RANGE_PAGES:
        return 1
    return (p & 1) + sum(1 for s in range(4) if (p >> (5 * s + 1)) & 31)


def range_chunks(p: int) -> list[int]:
    """arm-rules §3.4 oracle: the pages each op covers, in issue order (scale 3 down to 0, then a lone page)."""
    if p == MAX_TLBI_RANGE_PAGES:
        return [p]
    chunks = [((p >> (5 * s + 1)) & 31) << (5 * s + 1) for s in range(3, -1, -1)]
    return [c for c in chunks if c] + ([1] if p & 1 else [])


@pytest.mark.parametrize(("shift", "max_ops"), [(12, 512), (14, 2048), (16, 8192)])
def test_max_dvm_ops_threshold_without_tlbirange(make_env: type[Env], shift: int, max_ops: int) -> None:
    e = make_env(page_shift=shift)
    flush(e, max_ops - 1)
    assert tlbi_counts(e) == {"VALE1IS": max_ops - 1}
    assert e.c.get("dsb.ishst") == 1 and e.c.get("dsb.ish") == 1
    e.clear_log()
    flush(e, max_ops)
    assert tlbi_counts(e) == {"ASIDE1IS": 1}  # flush_tlb_mm fallback
    # flush_tlb_mm's own DSB ISH, then __flush_tlb_range's
    assert e.c.get("dsb.ish") == 2


def test_order_dsb_ishst_tlbis_dsb_ish(env: Env) -> None:
    env.plant_pages(BASE - 4096, 5)
    env.plant(BASE, level=2)
    env.plant_pages(BASE, 3, asid=OTHER_ASID)
    flush(env, 3)
    assert env.instructions() == {"dsb.ishst": 1, "tlbi.VALE1IS": 3, "dsb.ish": 1}
    # one VALE1IS per page, the mm's ASID, TTL level 3 (a level-2 entry stays)
    assert env.flushed_pages(BASE - 4096, 5) == [BASE, BASE + 4096, BASE + 8192]
    assert env.cached(BASE, level=2)
    assert env.flushed_pages(BASE, 3, asid=OTHER_ASID) == []


def test_flush_completes_the_tlbis_after_the_break() -> None:
    """The order: the rule checker accepts the make only after TLBIs issued after the
    break and completed by a DSB (an ISHST completes none)."""
    e = Env(checker=True)
    e.break_pages(BASE, 3)
    flush(e, 3)
    e.make_pages(BASE, 3)


def test_not_last_level_uses_vae1is_and_unknown_level(env: Env) -> None:
    env.plant(BASE)
    env.plant(BASE, level=2)
    env.arch.flush_tlb_range(env.vma, BASE, BASE + 2 * 4096)
    assert tlbi_counts(env) == {"VAE1IS": 2}
    # no level hint: entries of any level go
    assert not env.cached(BASE) and not env.cached(BASE, level=2)


def test_range_ops_with_tlbirange(make_env: type[Env]) -> None:
    e = make_env(features=cpu_features(tlbirange=True))
    flush(e, 1)
    assert tlbi_counts(e) == {"VALE1IS": 1}  # a lone page: a single op
    e.clear_log()
    e.plant_pages(BASE, 17)
    e.plant(BASE, level=2)
    flush(e, 16)  # a contpte block: one range op
    assert tlbi_counts(e) == {"RVALE1IS": 1}
    # one op covering exactly 16 pages (scale 0, num 7: (7+1) << 1), TTL 3
    assert e.flushed_pages(BASE, 17) == [BASE + i * 4096 for i in range(16)]
    assert e.cached(BASE, level=2)
    e.clear_log()
    flush(e, 17)
    assert tlbi_counts(e) == {"RVALE1IS": 1, "VALE1IS": 1}
    e.clear_log()
    flush(e, 4096)  # far above MAX_DVM_OPS: still ranges
    assert tlbi_counts(e) == {"RVALE1IS": 1}
    e.clear_log()
    end = BASE + MAX_TLBI_RANGE_PAGES * 4096
    for va in (BASE, end - 4096, end):
        e.plant(va)
    flush(e, MAX_TLBI_RANGE_PAGES)
    assert tlbi_counts(e) == {"RVALE1IS": 1}
    # one op covering 2**21 pages: scale 3, num 31
    assert not e.cached(BASE) and not e.cached(end - 4096) and e.cached(end)
    e.clear_log()
    flush(e, MAX_TLBI_RANGE_PAGES + 1)
    assert tlbi_counts(e) == {"ASIDE1IS": 1}


@settings(max_examples=200, deadline=None)
@given(st.integers(1, MAX_TLBI_RANGE_PAGES))
def test_range_op_count_and_coverage(pages: int) -> None:
    e = Env(features=cpu_features(tlbirange=True))
    # probes at both ends of each op the oracle expects, and just outside the range
    edges = {BASE - 4096, BASE + pages * 4096}
    va = BASE
    for n in range_chunks(pages):
        edges |= {va, va + (n - 1) * 4096}
        va += n * 4096
    for v in edges:
        e.plant(v)
    flush(e, pages)
    ops = sum(tlbi_counts(e).values())
    assert ops == range_ops(pages) and ops <= 5
    # the ops cover [BASE, BASE + pages) and nothing beside it
    assert sorted(v for v in edges if not e.cached(v)) == sorted(edges - {BASE - 4096, BASE + pages * 4096})


def test_kpti_doubles_every_user_tlbi(make_env: type[Env]) -> None:
    e = make_env(features=cpu_features(kpti=True))
    flush(e, 16)
    assert tlbi_counts(e) == {"VALE1IS": 32}
    e.clear_log()
    e.arch.flush_tlb_mm(e.mm)
    assert tlbi_counts(e) == {"ASIDE1IS": 2}
    e = make_env(features=cpu_features(kpti=True, tlbirange=True))
    flush(e, 16)
    assert tlbi_counts(e) == {"RVALE1IS": 2}


def test_nosync_has_no_trailing_dsb(make_env: type[Env]) -> None:
    e = make_env(checker=True)
    a = e.arch
    e.break_pages(BASE, 4)
    e.clear_log()
    tlbflush._flush_tlb_range_nosync(a, e.vma, BASE, BASE + 4 * 4096, 4096, True, 3)
    assert e.instructions() == {"dsb.ishst": 1, "tlbi.VALE1IS": 4}
    # the TLBIs are issued but not complete: a make now breaks the rules ...
    with pytest.raises(InvariantViolation, match="completed by a DSB"):
        e.make_pages(BASE, 1)
    # ... until a DSB ISH completes them
    e2 = make_env(checker=True)
    e2.break_pages(BASE, 4)
    tlbflush._flush_tlb_range_nosync(e2.arch, e2.vma, BASE, BASE + 4 * 4096, 4096, True, 3)
    e2.hw.dsb("ish")
    e2.make_pages(BASE, 4)


def test_flush_tlb_page_and_mm(env: Env) -> None:
    for asid in (7, OTHER_ASID):
        env.plant_pages(BASE, 2, asid=asid)
        env.plant(BASE, level=2, asid=asid)
    env.arch.flush_tlb_page(env.vma, BASE + 123)
    assert env.instructions() == {"dsb.ishst": 1, "tlbi.VALE1IS": 1, "dsb.ish": 1}
    # VALE1IS of the page holding BASE + 123, ASID 7, no level hint
    assert env.flushed_pages(BASE, 2) == [BASE] and not env.cached(BASE, level=2)
    assert env.flushed_pages(BASE, 2, asid=OTHER_ASID) == [] and env.cached(BASE, level=2, asid=OTHER_ASID)
    env.clear_log()
    env.plant_pages(BASE, 2)
    env.arch.flush_tlb_mm(env.mm)
    assert env.instructions() == {"dsb.ishst": 1, "tlbi.ASIDE1IS": 1, "dsb.ish": 1}
    # ASIDE1IS 7: every entry of the mm goes, other ASIDs stay
    assert env.flushed_pages(BASE, 2) == [BASE, BASE + 4096]
    assert env.flushed_pages(BASE, 2, asid=OTHER_ASID) == [] and env.cached(BASE, level=2, asid=OTHER_ASID)
    env.clear_log()
    env.plant(BASE)
    env.arch.flush_tlb_fix_spurious_fault(env.vma, BASE, env.ptep(0))
    assert env.instructions() == {} and env.cached(BASE)  # arm64: broadcast TLBIs make it unnecessary


def test_flush_pmd_tlb_range_strides_by_pmd(env: Env) -> None:
    a = env.arch
    for i in range(3):
        env.plant(BASE + i * a.PMD_SIZE, level=2)
    env.plant(BASE)
    env.arch.flush_pmd_tlb_range(env.vma, BASE, BASE + 2 * a.PMD_SIZE)
    assert tlbi_counts(env) == {"VAE1IS": 2}
    # one per PMD at BASE and BASE + PMD_SIZE, TTL level 2 (a level-3 entry stays)
    assert [env.cached(BASE + i * a.PMD_SIZE, level=2) for i in range(3)] == [False, False, True]
    assert env.cached(BASE)
    env.clear_log()
    env.arch.flush_pmd_tlb_range(env.vma, BASE, BASE + 512 * a.PMD_SIZE)
    assert tlbi_counts(env) == {"ASIDE1IS": 1}


def test_stride_rounds_the_range(env: Env) -> None:
    a = env.arch
    tlbflush._flush_tlb_range(a, env.vma, BASE + 4096, BASE + a.PMD_SIZE - 4096, a.PMD_SIZE, True, 2)
    assert tlbi_counts(env) == {"VALE1IS": 1}


def test_tlb_flush_fullmm(env: Env) -> None:
    env.plant(BASE)
    g = gather(env.mm, 0, 1 << 30, fullmm=True, cleared_ptes=True)
    env.arch.tlb_flush(g)
    # exit: the ASID is never reused without a full flush
    assert env.instructions() == {} and env.cached(BASE)
    g.freed_tables = True
    env.arch.tlb_flush(g)
    assert tlbi_counts(env) == {"ASIDE1IS": 1}


def test_tlb_flush_range(env: Env) -> None:
    def plant() -> None:
        env.plant(BASE)
        env.plant(BASE, level=2)

    plant()
    g = gather(env.mm, BASE, BASE + 32 * 4096, cleared_ptes=True)
    env.arch.tlb_flush(g)
    assert tlbi_counts(env) == {"VALE1IS": 32}
    assert not env.cached(BASE) and env.cached(BASE, level=2)  # TTL level 3
    env.clear_log()
    plant()
    g.freed_tables = True  # walk caches too, no level hint
    env.arch.tlb_flush(g)
    assert tlbi_counts(env) == {"VAE1IS": 32}
    assert not env.cached(BASE) and not env.cached(BASE, level=2)
    env.clear_log()
    plant()
    a = env.arch
    g = gather(env.mm, BASE, BASE + 2 * a.PMD_SIZE, cleared_pmds=True)
    env.arch.tlb_flush(g)
    assert tlbi_counts(env) == {"VALE1IS": 2}
    assert env.cached(BASE) and not env.cached(BASE, level=2)  # TTL level 2
