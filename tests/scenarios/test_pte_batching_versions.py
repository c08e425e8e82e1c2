"""PTE batching in core-mm after v6.12: the same batches, fewer reads, unfolds and TLBIs.

- ``fpb_cap_at_folio_end`` (v6.15, "mm: fix folio_pte_batch() on XEN PV"):
  ``folio_pte_batch()`` caps ``max_nr`` at the folio's end, so fork, zap and
  MADV_FREE no longer read the PTE after each batch;
- ``prot_numa_batch_skip`` (v6.17): NUMA hinting skips a folio it leaves
  alone one batch at a time;
- ``mprotect_batch`` (v6.17) with arm64's ``modify_prot_ptes_opt`` (v6.17):
  mprotect changes a folio's PTEs in one ``modify_prot_start_ptes()`` /
  ``modify_prot_commit_ptes()``, which on arm64 are ``get_and_clear_ptes()``
  and ``set_ptes()``: a folded block is cleared and set again folded, never
  unfolded.

Every expected count is derived in the comments from the kernel code (v6.12
and v7.2 sources), not measured.  The machine: 4K pages, 64K mTHP, the
Neoverse N1 preset (no FEAT_TLBIRANGE), 4 folded blocks written once (dirty
and young).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import contpte

PAGE = 4096
BLOCK = 64 << 10
NBLOCKS = 4
SIZE = NBLOCKS * BLOCK
ARENA = 0x10_0000_0000
#: ``ptep_get()`` of an entry of a folded block on arm64: ``__ptep_get()``
#: sees PTE_CONT, then ``contpte_ptep_get()`` reads all 16 entries of the block
#: to gather their access/dirty bits.
PTEP_GET_FOLDED = 1 + 16
#: The same from v6.17 (``ptep_get_early_exit``): ``contpte_ptep_get()`` stops
#: once it has seen young and dirty; a written block's first entry is both,
#: and the loop reads it twice (the dirty test, then the young search from it).
PTEP_GET_FOLDED_EARLY = 1 + 2


def machine(arch: str, kernel: str, **options: Any) -> tuple[contpte.Machine, contpte.Process, int]:
    m = contpte.Machine(
        arch=arch, memory="64M", cpus=4, mthp={"64K": "always"}, check=True, seed=0, kernel=kernel, **options
    )
    p = m.spawn()
    a = p.mmap(SIZE, flags="private|anonymous|fixed", addr=ARENA)
    p.write(a, SIZE, 1)
    return m, p, a


def cost(m: contpte.Machine, names: tuple[str, ...], op: Callable[..., Any], *args: Any) -> dict[str, int]:
    """The deltas of counters ``names`` over ``op(*args)``; the validators run after it."""
    before = m.stats()
    op(*args)
    after = m.stats()
    m.check()
    return {n: after[n] - before[n] for n in names}


MPROTECT = (
    "contpte.unfold",
    "contpte.fold",
    "contpte.convert",
    "tlbi.VALE1IS",
    "tlbi.total",
    "pte.atomic",
    "pte.write",
)


@pytest.mark.parametrize("prot", ["r", "rw"])
def test_mprotect_of_folded_blocks_arm64(prot: str) -> None:
    """rw -> r -> rw of four folded 64K blocks (the second step is the r -> rw upgrade).

    v6.12 (one PTE per iteration): the first ``ptep_modify_prot_start()`` of
    a block unfolds it (``contpte_convert``: 16 xchg to clear, 16 TLBI
    VALE1IS, 16 stores), each PTE is then cleared (xchg) and set again
    (``set_pte_at``: a store), and the set of the block's last entry folds it
    again (``contpte_try_fold`` -> ``contpte_convert``: 16 xchg, 16 TLBIs, 16
    stores).  Per block: 1 unfold, 1 fold, 32 TLBIs, 48 atomics, 96 stores.

    v7.2 (``change_present_ptes(nr=16)``): ``modify_prot_start_ptes()`` is
    ``get_and_clear_ptes()``: the block is wholly covered, so
    ``contpte_try_unfold_partial()`` does nothing and ``__get_and_clear_full_ptes()``
    clears the 16 entries (16 xchg); ``modify_prot_commit_ptes()`` is
    ``set_ptes(16)`` -> ``contpte_set_ptes()``: 16 stores with PTE_CONT, no
    conversion.  Per block: 16 atomics, 32 stores, no TLBI.  The reads: the
    loop's ``ptep_get()`` of the block's first entry (3, v6.17's early exit) and none in
    ``folio_pte_batch_flags()`` (``pte_batch_hint()`` gives 16, ``max_nr`` is
    capped at the folio's 16 pages).

    Both: the mmu_gather flushes the 64 changed pages at the end of the VMA
    (``__flush_tlb_range``, 64 pages <= MAX_DVM_OPS, no range TLBI on N1:
    64 TLBI VALE1IS).  ``pte_needs_flush()`` is true for both directions
    (the write permission is a hardware bit).
    """
    got: dict[str, dict[str, int]] = {}
    for kernel in ("6.12", "7.2"):
        m, p, a = machine("arm64", kernel)
        if prot == "rw":
            p.mprotect(a, SIZE, "r")
        got[kernel] = cost(m, (*MPROTECT, "pte.read"), p.mprotect, a, SIZE, prot)
        pm = p.pagemap(a, SIZE)
        assert pm["cont"].all() and pm["present"].all()
        assert pm["writable"].all() == (prot == "rw") and pm["dirty"].all()
        assert p.read(a, SIZE).tolist() == [1] * (SIZE // PAGE)
    n = NBLOCKS
    flush = SIZE // PAGE
    old = got["6.12"]
    del old["pte.read"]
    assert old == {
        "contpte.unfold": n,
        "contpte.fold": n,
        "contpte.convert": 2 * n,
        "tlbi.VALE1IS": 32 * n + flush,
        "tlbi.total": 32 * n + flush,
        "pte.atomic": 48 * n,
        "pte.write": 96 * n,
    }
    assert got["7.2"] == {
        "contpte.unfold": 0,
        "contpte.fold": 0,
        "contpte.convert": 0,
        "tlbi.VALE1IS": flush,
        "tlbi.total": flush,
        "pte.atomic": 16 * n,
        "pte.write": 32 * n,
        "pte.read": PTEP_GET_FOLDED_EARLY * n,
    }


def test_mprotect_arm64_option_alone_is_the_generic_loop() -> None:
    """v7.2 core-mm with arm64's batched functions turned off costs what v6.12 does.

    The generic ``modify_prot_start_ptes()`` loops over ``ptep_modify_prot_start()``,
    whose first call unfolds the block; the generic commit loops over
    ``set_pte_at()``, whose last call folds it again.
    """
    m, p, a = machine("arm64", "7.2", modify_prot_ptes_opt=False)
    got = cost(m, ("contpte.unfold", "contpte.fold", "tlbi.total"), p.mprotect, a, SIZE, "r")
    assert got == {
        "contpte.unfold": NBLOCKS,
        "contpte.fold": NBLOCKS,
        "tlbi.total": 32 * NBLOCKS + SIZE // PAGE,
    }


def test_mprotect_of_part_of_a_block_unfolds_it_in_both() -> None:
    """A batch covering half a block: ``contpte_try_unfold_partial()`` unfolds it (v7.2), as v6.12 does.

    v7.2: the batch is the 8 PTEs up to the range's end; ``set_ptes(8)``
    cannot fold half a block, so the block stays unfolded.  Unfold: 16 TLBIs;
    the flush of the 8 pages: 8.
    """
    for kernel in ("6.12", "7.2"):
        m, p, a = machine("arm64", kernel)
        names = ("contpte.unfold", "contpte.fold", "tlbi.total")
        got = cost(m, names, p.mprotect, a + BLOCK, BLOCK // 2, "r")
        assert got == {"contpte.unfold": 1, "contpte.fold": 0, "tlbi.total": 16 + 8}, kernel
        unfolds = m.stats()
        name = (
            "contpte.unfold.ptep_modify_prot_start"
            if kernel == "6.12"
            else "contpte.unfold.modify_prot_start_ptes"
        )
        assert unfolds[name] == 1, kernel
        assert not p.pagemap(a + BLOCK, BLOCK)["cont"].any()


@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_mprotect_upgrade_follows_each_page_exclusivity(arch: str) -> None:
    """r -> rw makes writable exactly the PageAnonExclusive pages, in both versions.

    After fork and the child's exit no page is PageAnonExclusive; a write to
    page 0 reuses it (``cow_reuse_large``, on for both here) and makes it
    exclusive again.  v7.2: rw -> r batches by the write bit
    (``FPB_RESPECT_WRITE``: page 0 alone, then pages 1-15); r -> rw is one
    batch of 16 whose commit ``commit_anon_folio_batch()`` splits into the
    runs [0] (exclusive: writable) and [1, 16) (not).  v6.12 decides per
    PTE with ``can_change_pte_writable()``.
    """
    for kernel in ("6.12", "7.2"):
        m, p, a = machine(arch, kernel, cow_reuse_large=True)
        p.fork().exit()
        p.write(a, PAGE, 2)
        p.mprotect(a, BLOCK, "r")
        assert not p.pagemap(a, BLOCK)["writable"].any()
        p.mprotect(a, BLOCK, "rw")
        pm = p.pagemap(a, BLOCK)
        assert pm["writable"].tolist() == [True] + [False] * 15, kernel
        assert not pm["cont"].any()
        p.write(a + PAGE, PAGE, 3)  # a write fault, then reused (cow_reuse_large)
        assert p.read(a, 3 * PAGE).tolist() == [2, 3, 1]
        m.check()


def _fork(p: contpte.Process, a: int) -> Callable[[], Any]:
    return lambda: p.fork()


def _munmap(p: contpte.Process, a: int) -> Callable[[], Any]:
    return lambda: p.munmap(a, SIZE)


def _free(p: contpte.Process, a: int) -> Callable[[], Any]:
    return lambda: p.madvise(a, SIZE, "free")


@pytest.mark.parametrize("op", [_fork, _munmap, _free], ids=["fork", "munmap", "madv_free"])
@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_batches_stop_reading_at_the_folio_end_from_v6_15(arch: str, op: Callable[..., Any]) -> None:
    """fork, zap and MADV_FREE batch each 64K folio whole; before v6.15 each batch also reads the next PTE.

    The four folios are physically consecutive, so v6.14's
    ``folio_pte_batch()`` takes the next folio's first PTE for the expected
    one and stops only on its pfn (``folio_end_pfn``): one extra
    ``ptep_get()`` for each of the 3 batches that end before the VMA does
    (the last is stopped by ``max_nr``).  On arm64 that entry is the first
    of a folded block: 17 reads and a ``contpte_ptep_get()`` call; on
    generic, 1 read.  v6.15 caps ``max_nr`` at the folio's end first.
    """
    got = {}
    for kernel in ("6.14", "6.15"):
        m, p, a = machine(arch, kernel)
        got[kernel] = cost(m, ("pte.read", "call.contpte_ptep_get", "pte.write", "tlbi.total"), op(p, a))
    extra = (NBLOCKS - 1) * (PTEP_GET_FOLDED if arch == "arm64" else 1)
    assert got["6.14"]["pte.read"] - got["6.15"]["pte.read"] == extra
    calls = NBLOCKS - 1 if arch == "arm64" else 0
    assert got["6.14"]["call.contpte_ptep_get"] - got["6.15"]["call.contpte_ptep_get"] == calls
    for k in ("pte.write", "tlbi.total"):
        assert got["6.14"][k] == got["6.15"][k]


@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_numa_hinting_skips_shared_folios_a_batch_at_a_time_from_v6_17(arch: str) -> None:
    """NUMA hinting after fork leaves the parent's shared CoW folios alone.

    v6.16: every PTE is looked at (``ptep_get()``), found to map a shared
    folio of a CoW mapping and skipped: 64 reads on generic, and on arm64,
    where fork's ``wrprotect_ptes()`` left the blocks folded, 64 x 17.  v6.17:
    the first PTE of each folio (3 reads on arm64: ``contpte_ptep_get()``
    stops early from v6.17), then ``folio_pte_batch(flags=0)`` skips the
    rest (arm64: ``pte_batch_hint()`` 16, capped at the folio: no further
    read; generic: the 15 other entries).
    """
    got = {}
    for kernel in ("6.16", "6.17"):
        m, p, a = machine(arch, kernel)
        p.fork()
        got[kernel] = cost(m, ("pte.read", "numa_pte_updates", "pte.write"), p.numa_hint, a, SIZE)
        assert p.pagemap(a, SIZE)["present"].all()
    pages = SIZE // PAGE
    if arch == "arm64":
        assert got == {
            "6.16": {"pte.read": pages * PTEP_GET_FOLDED, "numa_pte_updates": 0, "pte.write": 0},
            "6.17": {"pte.read": NBLOCKS * PTEP_GET_FOLDED_EARLY, "numa_pte_updates": 0, "pte.write": 0},
        }
    else:
        assert got == {
            "6.16": {"pte.read": pages, "numa_pte_updates": 0, "pte.write": 0},
            "6.17": {"pte.read": pages, "numa_pte_updates": 0, "pte.write": 0},
        }
