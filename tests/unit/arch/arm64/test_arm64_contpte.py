"""contpte rules: fold, unfold, block-wide A/D and wrprotect, counters, options."""

from __future__ import annotations

from typing import Any

import pytest
from arm64kit import OTHER_ASID, Env, cpu_features

from contpte.arch.arm64.pgtable_prot import PTE_AF, PTE_CONT, PTE_DIRTY, PTE_RDONLY, PTE_WRITE
from contpte.arch.pgtable import CYDP_CLEAR_DIRTY, CYDP_CLEAR_YOUNG
from contpte.errors import InvariantViolation, KernelBug


def conts(env: Env, idx: int, nr: int) -> list[bool]:
    return [bool(v & PTE_CONT) for v in env.raw(idx, nr)]


def tlbi_total(env: Env) -> int:
    return sum(v for k, v in env.c.snapshot().items() if k.startswith("tlbi."))


def fold_by_single_writes(env: Env, idx: int, pfn: int, nr: int = 16, **kw: object) -> None:
    """Fault-style: one set_ptes(nr=1) per page, low to high, one folio."""
    env.folios.add(pfn, nr)
    p = env.arch.pfn_pte(pfn, env.prot(**kw))  # type: ignore[arg-type]
    for i in range(nr):
        env.arch.set_ptes(env.mm, env.addr(idx + i), env.ptep(idx + i), env.arch.pte_advance_pfn(p, i), 1)


# -- set_ptes(nr > 1) --------------------------------------------------------
def test_set_ptes_batch_sets_cont_directly_without_tlbi(env: Env) -> None:
    env.map(16, 1024, 32)
    assert all(conts(env, 16, 32))
    assert [env.arch.pte_pfn(v) for v in env.raw(16, 32)] == list(range(1024, 1056))
    assert tlbi_total(env) == 0 and env.c.get("contpte.convert") == 0
    assert env.c.get("call.contpte_set_ptes") == 1
    assert env.c.get("pte.write") == 32


def test_set_ptes_only_whole_aligned_chunks_get_cont(env: Env) -> None:
    env.map(8, 1032, 40)  # VA idx 8..47, pfn 1032..1071: both offset 8 -> blocks 16..31, 32..47 whole
    assert conts(env, 8, 40) == [False] * 8 + [True] * 32
    e2 = Env()
    e2.map(16, 1031, 16)  # VA aligned, PA not
    assert not any(conts(e2, 16, 16))


def test_set_ptes_strips_cont_from_caller(env: Env) -> None:
    p = env.arch.pte_mkcont(env.arch.pfn_pte(1000, env.prot()))
    env.folios.add(1000, 1)
    env.arch.set_ptes(env.mm, env.addr(3), env.ptep(3), p, 1)
    assert not env.raw(3)[0] & PTE_CONT


# -- fold --------------------------------------------------------------------
def test_fold_when_last_pte_of_whole_aligned_folio_block_is_written(env: Env) -> None:
    fold_by_single_writes(env, 32, 2048)
    assert all(conts(env, 32, 16))
    assert env.c.get("contpte.fold") == 1 and env.c.get("contpte.convert") == 1
    assert env.c.get("call.__contpte_try_fold") == 1 and env.c.get("call.contpte_convert") == 1
    # one block TLBI inside the conversion: 16 VALE1IS without FEAT_TLBIRANGE
    assert env.c.get("tlbi.VALE1IS") == 16 and env.c.get("dsb.ish") == 1


def test_no_fold_across_folios_or_misaligned_or_reverse(env: Env) -> None:
    # 16 order-0 folios: the folio coverage check fails
    p = env.arch.pfn_pte(4096, env.prot())
    for i in range(16):
        env.arch.set_ptes(env.mm, env.addr(i), env.ptep(i), env.arch.pte_advance_pfn(p, i), 1)
    assert not any(conts(env, 0, 16)) and env.c.get("call.__contpte_try_fold") == 1
    # PA misaligned: the inline check does not even enter __contpte_try_fold
    e = Env()
    fold_by_single_writes(e, 0, 4097)
    assert not any(conts(e, 0, 16)) and e.c.get("call.__contpte_try_fold") == 0
    # written high to low: index 15 comes first (one failed attempt), the
    # block is complete only at index 0, which never tries
    e = Env()
    e.folios.add(4096, 16)
    p = e.arch.pfn_pte(4096, e.prot())
    for i in reversed(range(16)):
        e.arch.set_ptes(e.mm, e.addr(i), e.ptep(i), e.arch.pte_advance_pfn(p, i), 1)
    assert not any(conts(e, 0, 16)) and e.c.get("call.__contpte_try_fold") == 1
    assert e.c.get("pte.read") == 16 + 1  # one read per set_ptes, one before the first mismatch


def test_fold_needs_same_prot_but_ignores_access_dirty(env: Env) -> None:
    env.folios.add(2048, 16)
    a = env.arch
    for i in range(16):
        p = a.pfn_pte(2048 + i, env.prot(write=(i != 3)))
        env.arch.set_ptes(env.mm, env.addr(i), env.ptep(i), p, 1)
    assert not any(conts(env, 0, 16))
    e = Env()
    e.folios.add(2048, 16)
    for i in range(16):
        p = e.arch.pfn_pte(2048 + i, e.prot(dirty=(i == 5), young=(i == 9)))
        e.arch.set_ptes(e.mm, e.addr(i), e.ptep(i), p, 1)
    assert all(conts(e, 0, 16))
    # the fold smeared the ORed access/dirty state into every member
    assert all(e.arch.pte_dirty(v) and e.arch.pte_young(v) for v in e.raw(0, 16))


def test_fold_is_break_before_make(env: Env) -> None:
    env.folios.add(2048, 16)
    p = env.arch.pfn_pte(2048, env.prot())
    for i in range(15):
        env.arch.set_ptes(env.mm, env.addr(i), env.ptep(i), env.arch.pte_advance_pfn(p, i), 1)
    env.plant_pages(env.addr(0), 17)
    env.plant(env.addr(0), level=2)
    env.plant_pages(env.addr(0), 16, asid=OTHER_ASID)
    env.clear_log()
    env.arch.set_ptes(env.mm, env.addr(15), env.ptep(15), env.arch.pte_advance_pfn(p, 15), 1)
    t = env.trace()
    # the write, the break (all 16 zeroed), DSB ISHST + 16 TLBIs + DSB ISH, the make
    assert t[0] == ("store", 15, env.arch.pte_advance_pfn(p, 15))
    assert t[1:17] == [("store", i, 0) for i in range(16)]
    assert t[17] == ("instrs", {"dsb.ishst": 1, "tlbi.VALE1IS": 16, "dsb.ish": 1})
    assert [e[:2] for e in t[18:]] == [("store", i) for i in range(16)]
    assert all(e[2] & PTE_CONT for e in t[18:])
    # the TLBIs: the block's pages (not the next one), the mm's ASID, TTL level 3 (a level-2 entry stays)
    assert env.flushed_pages(env.addr(0), 17) == [env.addr(i) for i in range(16)]
    assert env.cached(env.addr(0), level=2)
    assert env.flushed_pages(env.addr(0), 16, asid=OTHER_ASID) == []


def test_fold_is_break_before_make_under_the_checker() -> None:
    """The order inside the instruction group: the rule checker rejects the make unless
    a TLBI covering each broken entry was issued after the break and completed by a DSB."""
    e = Env(checker=True)
    fold_by_single_writes(e, 0, 2048)
    assert all(conts(e, 0, 16)) and e.c.get("contpte.fold") == 1


def test_fold_not_for_kernel_mm(env: Env) -> None:
    env.mm.is_kernel_mm = True
    fold_by_single_writes(env, 0, 2048)
    assert not any(conts(env, 0, 16)) and env.c.get("call.__contpte_try_fold") == 1
    e = Env()
    e.mm.is_kernel_mm = True
    e.map(0, 2048, 16)
    assert not any(conts(e, 0, 16))


# -- unfold on single-PTE changes ---------------------------------------------
def test_single_pte_set_unfolds_one_block(env: Env) -> None:
    env.map(0, 2048, 48)
    env.clear_log()
    a = env.arch
    new = a.pfn_pte(9999, env.prot())
    env.folios.add(9999, 1)
    a.set_ptes(env.mm, env.addr(20), env.ptep(20), new, 1)
    assert conts(env, 0, 48) == [True] * 16 + [False] * 16 + [True] * 16
    assert env.c.get("contpte.unfold.set_ptes") == 1
    assert env.c.get("call.__contpte_try_unfold") == 1
    assert env.c.get("tlbi.VALE1IS") == 16
    assert env.raw(20)[0] == new


@pytest.mark.parametrize("fn", ["ptep_get_and_clear", "pte_clear"])
def test_clear_one_pte_unfolds(env: Env, fn: str) -> None:
    env.map(0, 2048, 16)
    env.clear_log()
    getattr(env.arch, fn)(env.mm, env.addr(4), env.ptep(4))
    assert env.raw(4)[0] == 0 and not any(conts(env, 0, 16))
    assert env.c.get(f"contpte.unfold.{fn}") == 1


def test_block_refolds_when_its_last_pte_is_rewritten(env: Env) -> None:
    """mprotect-style start/commit on every PTE: unfold at the first, refold at the last."""
    env.map(0, 2048, 16)
    env.clear_log()
    a = env.arch
    for i in range(16):
        old = a.ptep_modify_prot_start(env.vma, env.addr(i), env.ptep(i))
        a.ptep_modify_prot_commit(env.vma, env.addr(i), env.ptep(i), old, a.pte_wrprotect(old))
        if i < 15:
            assert not any(conts(env, 0, 16))
    assert all(conts(env, 0, 16))
    assert env.c.get("contpte.unfold.ptep_modify_prot_start") == 1
    assert env.c.get("contpte.fold") == 1 and env.c.get("contpte.convert") == 2
    assert all(not a.pte_write(v) for v in env.raw(0, 16))


# -- batch clears and wrprotect -------------------------------------------------
def test_full_block_wrprotect_keeps_cont_without_tlbi(env: Env) -> None:
    env.map(0, 2048, 32)
    env.poke(5, clear_bits=PTE_RDONLY)  # hardware dirtied one member
    env.clear_log()
    env.arch.wrprotect_ptes(env.mm, env.addr(0), env.ptep(0), 32)
    assert all(conts(env, 0, 32)) and tlbi_total(env) == 0
    assert all(v & PTE_RDONLY and not v & PTE_WRITE for v in env.raw(0, 32))
    assert env.raw(5)[0] & PTE_DIRTY  # hw dirty moved to the sw bit
    assert env.c.get("call.contpte_wrprotect_ptes") == 1
    assert env.c.get("call.contpte_try_unfold_partial") == 1
    assert env.c.get("call.__contpte_try_unfold") == 0
    assert env.c.get("pte.atomic") == 32


def test_partial_wrprotect_unfolds_only_the_end_blocks(env: Env) -> None:
    env.map(0, 2048, 48)
    env.clear_log()
    env.arch.wrprotect_ptes(env.mm, env.addr(4), env.ptep(4), 40)  # 4..43
    assert conts(env, 0, 48) == [False] * 16 + [True] * 16 + [False] * 16
    assert env.c.get("contpte.unfold.wrprotect_ptes") == 2
    assert env.c.get("tlbi.VALE1IS") == 32
    w = [env.arch.pte_write(v) for v in env.raw(0, 48)]
    assert w == [True] * 4 + [False] * 40 + [True] * 4


def test_unfolds_inside_contpte_c_enter_no_traced_try_unfold(env: Env) -> None:
    """Debian's 6.12 build inlines __contpte_try_unfold into contpte_try_unfold_partial.

    Found by the arm64 oracle (scenarios/dontneed-partial-block.scn): a
    partial batch unfolds through contpte_convert, but ftrace sees no entry
    into __contpte_try_unfold; a single-PTE unfold from pgtable.h does.
    """
    env.map(0, 2048, 48)
    env.clear_log()
    env.arch.wrprotect_ptes(env.mm, env.addr(4), env.ptep(4), 40)
    assert env.c.get("contpte.unfold.wrprotect_ptes") == 2
    assert env.c.get("call.contpte_convert") == 2
    assert env.c.get("call.__contpte_try_unfold") == 0
    env.arch.ptep_get_and_clear(env.mm, env.addr(20), env.ptep(20))
    assert env.c.get("call.__contpte_try_unfold") == 1
    assert env.c.get("call.contpte_convert") == 3


def test_wrprotect_single_pte_unfolds(env: Env) -> None:
    env.map(0, 2048, 16)
    env.clear_log()
    env.arch.ptep_set_wrprotect(env.mm, env.addr(3), env.ptep(3))
    assert not any(conts(env, 0, 16)) and env.c.get("contpte.unfold.ptep_set_wrprotect") == 1
    assert not env.arch.pte_write(env.raw(3)[0]) and env.arch.pte_write(env.raw(4)[0])


@pytest.mark.parametrize("fn", ["clear_full_ptes", "get_and_clear_full_ptes"])
def test_full_block_clears_keep_no_unfold_and_no_tlbi(env: Env, fn: str) -> None:
    env.map(0, 2048, 32)
    env.clear_log()
    getattr(env.arch, fn)(env.mm, env.addr(0), env.ptep(0), 32, True)
    assert env.raw(0, 32) == [0] * 32
    assert tlbi_total(env) == 0 and env.c.get("contpte.convert") == 0
    assert env.c.get(f"call.contpte_{fn}") == 1


@pytest.mark.parametrize("fn", ["clear_full_ptes", "get_and_clear_full_ptes"])
def test_partial_clears_unfold_the_end_blocks(env: Env, fn: str) -> None:
    env.map(0, 2048, 48)
    env.clear_log()
    getattr(env.arch, fn)(env.mm, env.addr(8), env.ptep(8), 32, False)  # 8..39
    assert conts(env, 0, 8) == [False] * 8 and conts(env, 40, 8) == [False] * 8
    assert env.raw(8, 32) == [0] * 32
    assert env.c.get(f"contpte.unfold.{fn}") == 2


def test_get_and_clear_full_ptes_gathers_access_dirty(env: Env) -> None:
    env.map(0, 2048, 16, young=False)
    env.poke(9, set_bits=PTE_AF)
    env.poke(12, clear_bits=PTE_RDONLY)
    pte = env.arch.get_and_clear_full_ptes(env.mm, env.addr(0), env.ptep(0), 16, True)
    assert env.arch.pte_young(pte) and env.arch.pte_dirty(pte) and env.arch.pte_pfn(pte) == 2048


# -- getters --------------------------------------------------------------------
def test_ptep_get_gathers_access_dirty_over_the_block(env: Env) -> None:
    env.map(0, 2048, 16, young=False)
    a = env.arch
    assert not a.pte_young(a.ptep_get(env.ptep(0))) and not a.pte_dirty(a.ptep_get(env.ptep(0)))
    env.poke(7, set_bits=PTE_AF)  # hardware: AF set on one member
    env.poke(11, clear_bits=PTE_RDONLY)  # hardware: DBM dirty on another
    for i in (0, 7, 15):
        g = a.ptep_get(env.ptep(i))
        assert a.pte_young(g) and a.pte_dirty(g) and a.pte_pfn(g) == 2048 + i and g & PTE_CONT
        gl = a.ptep_get_lockless(env.ptep(i))
        assert a.pte_young(gl) and a.pte_dirty(gl)
    assert env.c.get("call.contpte_ptep_get") == 2 + 3
    env.clear_log()
    a.ptep_get(env.ptep(3))
    assert env.c.get("pte.read") == 1 + 16


def test_ptep_get_lockless_rejects_a_misprogrammed_block(env: Env) -> None:
    env.map(0, 2048, 16)
    env.poke(6, clear_bits=PTE_CONT)
    with pytest.raises(InvariantViolation):
        env.arch.ptep_get_lockless(env.ptep(2))


def test_pte_batch_hint(env: Env) -> None:
    env.map(16, 2064, 16)
    env.map(40, 5000, 1)
    a = env.arch
    assert a.pte_batch_hint(env.ptep(16), a.ptep_get(env.ptep(16))) == 16
    assert a.pte_batch_hint(env.ptep(21), a.ptep_get(env.ptep(21))) == 11
    assert a.pte_batch_hint(env.ptep(40), a.ptep_get(env.ptep(40))) == 1


# -- access flags ----------------------------------------------------------------
def test_test_and_clear_young_whole_block_no_tlbi(env: Env) -> None:
    env.map(0, 2048, 16)
    env.clear_log()
    assert env.arch.ptep_test_and_clear_young(env.vma, env.addr(3), env.ptep(3))
    assert not any(v & PTE_AF for v in env.raw(0, 16)) and all(conts(env, 0, 16))
    assert tlbi_total(env) == 0
    assert not env.arch.ptep_test_and_clear_young(env.vma, env.addr(3), env.ptep(3))


def test_clear_flush_young_is_one_nosync_block_flush(env: Env) -> None:
    env.map(0, 2048, 16)
    env.clear_log()
    assert env.arch.ptep_clear_flush_young(env.vma, env.addr(3), env.ptep(3))
    assert env.c.get("tlbi.VALE1IS") == 16 and env.c.get("dsb.ish") == 0
    assert env.c.get("dsb.ishst") == 1 and all(conts(env, 0, 16))
    env.clear_log()
    assert not env.arch.ptep_clear_flush_young(env.vma, env.addr(3), env.ptep(3))
    assert tlbi_total(env) == 0
    e = Env(features=cpu_features(tlbirange=True))
    e.map(0, 2048, 16)
    e.clear_log()
    e.arch.ptep_clear_flush_young(e.vma, e.addr(0), e.ptep(0))
    assert e.c.get("tlbi.RVALE1IS") == 1 and tlbi_total(e) == 1


def test_set_access_flags_ad_only_no_unfold(env: Env) -> None:
    env.map(0, 2048, 16, young=False)
    a = env.arch
    entry = a.pte_mkyoung(a.ptep_get(env.ptep(4))) & ~PTE_CONT
    env.clear_log()
    assert a.ptep_set_access_flags(env.vma, env.addr(4), env.ptep(4), entry, False)
    assert all(conts(env, 0, 16)) and all(v & PTE_AF for v in env.raw(0, 16))
    assert tlbi_total(env) == 0 and env.c.get("contpte.convert") == 0
    # no change: a no-op
    assert not a.ptep_set_access_flags(env.vma, env.addr(4), env.ptep(4), entry, False)
    # dirty fix-up: one block flush
    env.clear_log()
    d = a.pte_mkdirty(entry)
    assert a.ptep_set_access_flags(env.vma, env.addr(4), env.ptep(4), d, True)
    assert all(conts(env, 0, 16)) and all(a.pte_dirty(v) for v in env.raw(0, 16))
    assert env.c.get("tlbi.VALE1IS") == 16 and env.c.get("dsb.ish") == 1


def test_set_access_flags_write_change_unfolds(env: Env) -> None:
    env.map(0, 2048, 16, write=False)
    a = env.arch
    entry = a.pte_mkdirty(a.pte_mkwrite(a.ptep_get(env.ptep(4)))) & ~PTE_CONT
    env.clear_log()
    assert a.ptep_set_access_flags(env.vma, env.addr(4), env.ptep(4), entry, True)
    assert not any(conts(env, 0, 16))
    assert a.pte_write(env.raw(4)[0]) and not a.pte_write(env.raw(5)[0])
    assert env.c.get("contpte.unfold.ptep_set_access_flags") == 1
    # inlined into contpte_ptep_set_access_flags in the real build: no traced entry
    assert env.c.get("call.__contpte_try_unfold") == 0 and env.c.get("call.contpte_convert") == 1
    # block TLBI (16) + the page TLBI for the dirty fix-up
    assert env.c.get("tlbi.VALE1IS") == 17


def test_clear_young_dirty_widens_to_whole_blocks(env: Env) -> None:
    env.map(0, 2048, 32, dirty=True)
    env.clear_log()
    a = env.arch
    a.clear_young_dirty_ptes(env.vma, env.addr(4), env.ptep(4), 20, CYDP_CLEAR_YOUNG | CYDP_CLEAR_DIRTY)
    assert all(conts(env, 0, 32)) and tlbi_total(env) == 0
    assert all(not a.pte_dirty(v) and not a.pte_young(v) for v in env.raw(0, 32))
    assert env.c.get("pte.write") == 32


# -- options ---------------------------------------------------------------------
def test_contpte_off_is_the_private_layer(make_env: type[Env]) -> None:
    e = make_env(contpte=False)
    e.map(0, 2048, 16)
    assert not any(conts(e, 0, 16))
    fold_by_single_writes(e, 16, 4096)
    assert not any(conts(e, 16, 16))
    e.arch.wrprotect_ptes(e.mm, e.addr(0), e.ptep(0), 16)
    assert e.arch.pte_batch_hint(e.ptep(0), e.arch.ptep_get(e.ptep(0))) == 1
    assert not any(k.startswith(("contpte.", "call.")) for k in e.c.snapshot())


def test_wrprotect_ptes_opt_off_unfolds_every_block(make_env: type[Env]) -> None:
    e = make_env(wrprotect_ptes_opt=False)
    e.map(0, 2048, 64)
    e.clear_log()
    e.arch.wrprotect_ptes(e.mm, e.addr(0), e.ptep(0), 64)
    assert not any(conts(e, 0, 64)) and all(not e.arch.pte_write(v) for v in e.raw(0, 64))
    assert e.c.get("contpte.unfold.wrprotect_ptes") == 4
    assert e.c.get("tlbi.VALE1IS") == 64 and e.c.get("call.contpte_wrprotect_ptes") == 0


@pytest.mark.parametrize("fn", ["clear_full_ptes", "get_and_clear_full_ptes"])
def test_teardown_opt_off_unfolds_every_block(make_env: type[Env], fn: str) -> None:
    e = make_env(teardown_opt=False)
    e.map(0, 2048, 64)
    e.poke(40, set_bits=PTE_DIRTY)
    e.clear_log()
    r = getattr(e.arch, fn)(e.mm, e.addr(0), e.ptep(0), 64, True)
    assert e.raw(0, 64) == [0] * 64
    assert e.c.get(f"contpte.unfold.{fn}") == 4 and e.c.get("tlbi.VALE1IS") == 64
    if fn == "get_and_clear_full_ptes":
        assert e.arch.pte_dirty(r)


def test_bbml2_noabort_skips_the_intermediate_tlbi(make_env: type[Env]) -> None:
    e = make_env(bbml2_noabort=True)
    fold_by_single_writes(e, 0, 2048)
    assert all(conts(e, 0, 16)) and e.c.get("contpte.convert") == 1 and tlbi_total(e) == 0


def test_opt_variants_agree_on_final_state(make_env: type[Env]) -> None:
    """Historical variants change cost, not the page-table contents (CONT aside)."""
    states = []
    variants: list[dict[str, Any]] = [{}, {"wrprotect_ptes_opt": False}, {"contpte": False}]
    for opts in variants:
        e = make_env(**opts)
        e.map(0, 2048, 48)
        e.poke(20, clear_bits=PTE_RDONLY)
        e.arch.wrprotect_ptes(e.mm, e.addr(4), e.ptep(4), 40)
        states.append([(v & ~PTE_CONT) for v in e.raw(0, 48)])
    # the unfolds smear A/D within unfolded blocks; compare what core-mm can see
    a = make_env().arch
    seen = [[(a.pte_pfn(v), a.pte_write(v)) for v in s] for s in states]
    assert seen[0] == seen[1] == seen[2]


def test_contpte_set_ptes_nr1_warns(env: Env) -> None:
    from contpte.arch.arm64 import contpte

    with pytest.raises(KernelBug):
        contpte.contpte_set_ptes(
            env.arch, env.mm, env.addr(0), env.ptep(0), env.arch.pfn_pte(1, env.prot()), 1
        )


@pytest.mark.parametrize(("shift", "cont"), [(14, 128), (16, 32)])
def test_other_granules_fold(make_env: type[Env], shift: int, cont: int) -> None:
    e = make_env(page_shift=shift)
    fold_by_single_writes(e, cont, 8 * cont, nr=cont)
    assert all(conts(e, cont, cont)) and e.c.get("contpte.fold") == 1
    e.map(4 * cont, 16 * cont, 2 * cont)
    assert all(conts(e, 4 * cont, 2 * cont))
