"""TLB maintenance: __flush_tlb_range thresholds, range ops, KPTI, the mmu_gather flush."""

from __future__ import annotations

import pytest
from arm64_fakes import Env, FakeFeatures, FakeGather
from hypothesis import given, settings
from hypothesis import strategies as st

from contpte.arch.arm64 import tlbflush
from contpte.arch.arm64.tlbflush import MAX_TLBI_RANGE_PAGES, TLBI_RANGE_PAGES

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
    flush(env, 3)
    assert env.hw.kinds() == ["dsb.ishst", "tlbi", "tlbi", "tlbi", "dsb.ish"]
    assert [e[3] for e in env.hw.tlbis()] == [BASE, BASE + 4096, BASE + 8192]
    assert {(e[1], e[2], e[4]) for e in env.hw.tlbis()} == {("VALE1IS", 7, 3)}


def test_not_last_level_uses_vae1is_and_unknown_level(env: Env) -> None:
    env.arch.flush_tlb_range(env.vma, BASE, BASE + 2 * 4096)
    assert tlbi_counts(env) == {"VAE1IS": 2}
    assert {e[4] for e in env.hw.tlbis()} == {0}


def test_range_ops_with_tlbirange(make_env: type[Env]) -> None:
    e = make_env(features=FakeFeatures(tlbirange=True))
    flush(e, 1)
    assert tlbi_counts(e) == {"VALE1IS": 1}  # a lone page: a single op
    e.clear_log()
    flush(e, 16)  # a contpte block: one range op
    assert tlbi_counts(e) == {"RVALE1IS": 1}
    (ev,) = e.hw.tlbis()
    assert ev[4:] == (0, 7, 3)  # scale 0, num 7: (7+1) << 1 = 16 pages, TTL 3
    e.clear_log()
    flush(e, 17)
    assert tlbi_counts(e) == {"RVALE1IS": 1, "VALE1IS": 1}
    e.clear_log()
    flush(e, 4096)  # far above MAX_DVM_OPS: still ranges
    assert tlbi_counts(e) == {"RVALE1IS": 1}
    e.clear_log()
    flush(e, MAX_TLBI_RANGE_PAGES)
    assert tlbi_counts(e) == {"RVALE1IS": 1}
    assert e.hw.tlbis()[0][4:6] == (3, 31)
    e.clear_log()
    flush(e, MAX_TLBI_RANGE_PAGES + 1)
    assert tlbi_counts(e) == {"ASIDE1IS": 1}


@settings(max_examples=200, deadline=None)
@given(st.integers(1, MAX_TLBI_RANGE_PAGES))
def test_range_op_count_and_coverage(pages: int) -> None:
    e = Env(features=FakeFeatures(tlbirange=True))
    flush(e, pages)
    ops = e.hw.tlbis()
    assert len(ops) == range_ops(pages) and len(ops) <= 5
    # the ops tile [BASE, BASE + pages) exactly, in order, scale descending
    va = BASE
    last_scale = 4
    for ev in ops:
        assert ev[3] == va
        if ev[0] == "tlbi_range":
            scale, num = ev[4], ev[5]
            assert scale < last_scale
            last_scale = scale
            va += TLBI_RANGE_PAGES(num, scale) * 4096
        else:
            va += 4096
    assert va == BASE + pages * 4096


def test_kpti_doubles_every_user_tlbi(make_env: type[Env]) -> None:
    e = make_env(features=FakeFeatures(kpti=True))
    flush(e, 16)
    assert tlbi_counts(e) == {"VALE1IS": 32}
    e.clear_log()
    e.arch.flush_tlb_mm(e.mm)
    assert tlbi_counts(e) == {"ASIDE1IS": 2}
    e = make_env(features=FakeFeatures(kpti=True, tlbirange=True))
    flush(e, 16)
    assert tlbi_counts(e) == {"RVALE1IS": 2}


def test_nosync_has_no_trailing_dsb(env: Env) -> None:
    a = env.arch
    tlbflush._flush_tlb_range_nosync(a, env.vma, BASE, BASE + 4 * 4096, 4096, True, 3)
    assert env.hw.kinds() == ["dsb.ishst"] + ["tlbi"] * 4


def test_flush_tlb_page_and_mm(env: Env) -> None:
    env.arch.flush_tlb_page(env.vma, BASE + 123)
    assert env.hw.events == [("dsb", "ishst"), ("tlbi", "VALE1IS", 7, BASE, 0), ("dsb", "ish")]
    env.clear_log()
    env.arch.flush_tlb_mm(env.mm)
    assert env.hw.events == [("dsb", "ishst"), ("tlbi", "ASIDE1IS", 7, None, 0), ("dsb", "ish")]
    env.clear_log()
    env.arch.flush_tlb_fix_spurious_fault(env.vma, BASE, None)
    assert env.hw.events == []  # arm64: broadcast TLBIs make it unnecessary


def test_flush_pmd_tlb_range_strides_by_pmd(env: Env) -> None:
    a = env.arch
    env.arch.flush_pmd_tlb_range(env.vma, BASE, BASE + 2 * a.PMD_SIZE)
    assert tlbi_counts(env) == {"VAE1IS": 2}
    assert [(e[3], e[4]) for e in env.hw.tlbis()] == [(BASE, 2), (BASE + a.PMD_SIZE, 2)]
    env.clear_log()
    env.arch.flush_pmd_tlb_range(env.vma, BASE, BASE + 512 * a.PMD_SIZE)
    assert tlbi_counts(env) == {"ASIDE1IS": 1}


def test_stride_rounds_the_range(env: Env) -> None:
    a = env.arch
    tlbflush._flush_tlb_range(a, env.vma, BASE + 4096, BASE + a.PMD_SIZE - 4096, a.PMD_SIZE, True, 2)
    assert tlbi_counts(env) == {"VALE1IS": 1}


def test_tlb_flush_fullmm(env: Env) -> None:
    g = FakeGather(env.mm, 0, 1 << 30, fullmm=True, cleared_ptes=True)
    env.arch.tlb_flush(g)
    assert env.hw.events == []  # exit: the ASID is never reused without a full flush
    g.freed_tables = True
    env.arch.tlb_flush(g)
    assert tlbi_counts(env) == {"ASIDE1IS": 1}


def test_tlb_flush_range(env: Env) -> None:
    g = FakeGather(env.mm, BASE, BASE + 32 * 4096, cleared_ptes=True)
    env.arch.tlb_flush(g)
    assert tlbi_counts(env) == {"VALE1IS": 32}
    assert {e[4] for e in env.hw.tlbis()} == {3}
    env.clear_log()
    g.freed_tables = True  # walk caches too, no level hint
    env.arch.tlb_flush(g)
    assert tlbi_counts(env) == {"VAE1IS": 32}
    assert {e[4] for e in env.hw.tlbis()} == {0}
    env.clear_log()
    a = env.arch
    g = FakeGather(env.mm, BASE, BASE + 2 * a.PMD_SIZE, cleared_pmds=True)
    env.arch.tlb_flush(g)
    assert tlbi_counts(env) == {"VALE1IS": 2} and {e[4] for e in env.hw.tlbis()} == {2}
