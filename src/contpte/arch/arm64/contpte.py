"""Transparent contiguous PTEs: fold, unfold and the block-wide helpers.

Models: arch/arm64/mm/contpte.c (Linux v6.12).

Each function takes the backend (``arch``: an ``Arm64Pgtable``, which holds
the geometry, the PTE format and the private ``__x`` helpers) first, then
the kernel's arguments in the kernel's order.  The loops over a block are
vectorised with numpy; they count the same descriptor loads, stores and
atomics as the C loops (``pte.read``/``pte.write``/``pte.atomic``).

``contpte_convert()`` is the only function that repaints a block: every
fold and unfold goes through it.  Unfold counters are named after the
public function core-mm called (``contpte.unfold.set_ptes``,
``contpte.unfold.wrprotect_ptes``, ...), passed down as ``caller``.
``call.<symbol>`` counts each entry into a contpte.c function the way
ftrace would see it on a real kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...counters import UNFOLD_CALLERS, counter
from ...errors import InvariantViolation, ModelUsageError
from ..pgtable import MmLike, PtePtr, VmaLike
from . import tlbflush
from .pgtable_prot import _U64, PTE_AF, PTE_CONT, PTE_DIRTY, PTE_RDONLY, PTE_VALID

if TYPE_CHECKING:
    from .pgtable import Arm64Pgtable

__all__ = [
    "mm_is_user",
    "contpte_align_down",
    "contpte_try_fold",
    "contpte_try_unfold",
    "contpte_try_unfold_partial",
    "contpte_convert",
    "_contpte_try_fold",
    "_contpte_try_unfold",
    "contpte_ptep_get",
    "contpte_ptep_get_lockless",
    "contpte_set_ptes",
    "contpte_clear_full_ptes",
    "contpte_get_and_clear_full_ptes",
    "contpte_ptep_test_and_clear_young",
    "contpte_ptep_clear_flush_young",
    "contpte_wrprotect_ptes",
    "contpte_clear_young_dirty_ptes",
    "contpte_ptep_set_access_flags",
    "UNFOLD_CALLERS",
]

FOLD = counter("contpte.fold")
CONVERT = counter("contpte.convert")
UNFOLD = "contpte.unfold"
"""The family ``contpte.unfold.<caller>`` (callers: ``UNFOLD_CALLERS``) and its total."""
CALL_CONVERT = counter("call.contpte_convert")
CALL_TRY_FOLD = counter("call.__contpte_try_fold")
CALL_TRY_UNFOLD = counter("call.__contpte_try_unfold")
CALL_UNFOLD_PARTIAL = counter("call.contpte_try_unfold_partial")
CALL_SET_PTES = counter("call.contpte_set_ptes")
CALL_CLEAR_FULL = counter("call.contpte_clear_full_ptes")
CALL_GET_AND_CLEAR_FULL = counter("call.contpte_get_and_clear_full_ptes")
CALL_WRPROTECT = counter("call.contpte_wrprotect_ptes")
CALL_PTEP_GET = counter("call.contpte_ptep_get")
CALL_PTEP_GET_LOCKLESS = counter("call.contpte_ptep_get_lockless")
CALL_TEST_AND_CLEAR_YOUNG = counter("call.contpte_ptep_test_and_clear_young")
CALL_CLEAR_FLUSH_YOUNG = counter("call.contpte_ptep_clear_flush_young")
CALL_CLEAR_YOUNG_DIRTY = counter("call.contpte_clear_young_dirty_ptes")
CALL_SET_ACCESS_FLAGS = counter("call.contpte_ptep_set_access_flags")

#: The unfold counter of each public function that can unfold a block
#: (``UNFOLD_CALLERS``, declared with the counters).
_UNFOLD_NAMES = {c: counter(f"{UNFOLD}.{c}") for c in UNFOLD_CALLERS}

_AF_DIRTY = PTE_AF | PTE_DIRTY
_NOT_RDONLY = np.uint64(~PTE_RDONLY & _U64)


def mm_is_user(mm: MmLike) -> bool:
    """False for init_mm and the EFI mm (the model marks them ``is_kernel_mm``).

    Kernel mappings never get PTE_CONT dynamically: the BBM window of a
    conversion would fault, which user space tolerates (serialised on the
    PTL) but the kernel cannot.
    """
    return not getattr(mm, "is_kernel_mm", False)


def contpte_align_down(arch: Arm64Pgtable, ptep: PtePtr) -> PtePtr:
    """The first entry of ``ptep``'s block."""
    return PtePtr(ptep.table, ptep.idx & ~(arch.CONT_PTES - 1))


def _unfold_counter(caller: str) -> str:
    name = _UNFOLD_NAMES.get(caller)
    if name is None:
        raise ModelUsageError(f"contpte unfold by {caller!r}: not one of UNFOLD_CALLERS")
    return name


# ----------------------------------------------------------------------
# The repaint.
# ----------------------------------------------------------------------
def contpte_convert(arch: Arm64Pgtable, mm: MmLike, addr: int, ptep: PtePtr, pte: int) -> None:
    """Repaint ``ptep``'s whole block from ``pte`` (PTE_CONT set: fold; clear: unfold).

    Models: arch/arm64/mm/contpte.c ``contpte_convert()``.

    Break-before-make: each entry is atomically swapped to 0 (so a
    hardware access/dirty update cannot be lost) and its access/dirty
    state ORed into the new PTE; the block is invalidated from every TLB
    (``__flush_tlb_range``, leaf only, level 3); then all entries are
    written with consecutive pfns.  Every member ends with the block's
    ORed access/dirty state.  With ``bbml2_noabort`` (v6.16+) the
    intermediate TLBI is skipped: BBML2 hardware returns one of the cached
    translations, never an amalgam, and the caller's later TLBI of the
    changed page cleans up.

    Context: PTL held; user mm.
    """
    arch.counters.add(CALL_CONVERT)
    arch.counters.add(CONVERT)
    cp = arch.CONT_PTES
    start_ptep = contpte_align_down(arch, ptep)
    start_addr = addr & arch.CONT_PTE_MASK
    pfn = arch.pte_pfn(pte) & ~(cp - 1)
    pte = arch.pfn_pte(pfn, arch.pte_pgprot(pte))

    # Break: cp x __ptep_get_and_clear() (xchg), gathering A/D as we go.
    t = start_ptep.table
    old = t.entries[start_ptep.idx : start_ptep.idx + cp].copy()
    pte = arch._gather_young_dirty(pte, old)
    if arch.bug("contpte_fold_without_bbm"):
        # Bug catalog: repaint in place, no break and no TLBI.
        arch._set_ptes(mm, start_addr, start_ptep, pte, cp)
        return
    arch.counters.add("pte.atomic", cp)
    t.store_many(start_ptep.idx, np.zeros(cp, dtype=np.uint64))

    if not arch.bbml2_noabort:
        vma = tlbflush.TLB_FLUSH_VMA(mm, 0)
        tlbflush._flush_tlb_range(
            arch, vma, start_addr, start_addr + arch.CONT_PTE_SIZE, arch.PAGE_SIZE, True, 3
        )

    # Make.
    arch._set_ptes(mm, start_addr, start_ptep, pte, cp)


# ----------------------------------------------------------------------
# Fold.
# ----------------------------------------------------------------------
def contpte_try_fold(arch: Arm64Pgtable, mm: MmLike, addr: int, ptep: PtePtr, pte: int) -> None:
    """Fold ``ptep``'s block if ``pte`` was just written as its last entry.

    Models: arm64 pgtable.h ``contpte_try_fold()`` (always inline).  Core-mm
    mostly writes low to high, so the last entry (VA and PA both at index
    CONT_PTES-1) is the moment to check.  Special mappings have no folio
    and never fold.

    Context: PTL held.
    """
    contmask = arch.CONT_PTES - 1
    if (addr >> arch.PAGE_SHIFT) & contmask != contmask:
        return
    if arch.pte_pfn(pte) & contmask == contmask and arch.pte_valid(pte) and not arch.pte_cont(pte):
        if not arch.pte_special(pte):
            _contpte_try_fold(arch, mm, addr, ptep, pte)


def _contpte_try_fold(arch: Arm64Pgtable, mm: MmLike, addr: int, ptep: PtePtr, pte: int) -> None:
    """Fold the block if one folio covers it and all entries are foldable.

    Models: arch/arm64/mm/contpte.c ``__contpte_try_fold()``.  The folio
    comes from the pfn (``arch.folio_range_of_pfn``), assuming it is mapped
    linearly around ``addr``; the pfn-contiguity check then rejects any
    other layout.  Every entry must equal ``pfn_pte(base + i, prot)``
    after mkold/mkclean (``pte_same``, so RDONLY is ignored): valid,
    consecutive pfns from an aligned base, identical permissions, none
    CONT already.  Access/dirty may differ; the fold ORs them.

    Context: PTL held.
    """
    arch.counters.add(CALL_TRY_FOLD)
    if not mm_is_user(mm):
        return
    pfn = arch.pte_pfn(pte)
    first_pfn, nr_pages = arch.folio_range_of_pfn(pfn)
    folio_start = addr - (pfn - first_pfn) * arch.PAGE_SIZE
    folio_end = folio_start + nr_pages * arch.PAGE_SIZE
    cont_start = addr & arch.CONT_PTE_MASK
    cont_end = cont_start + arch.CONT_PTE_SIZE
    if folio_start > cont_start or folio_end < cont_end:
        return

    cp = arch.CONT_PTES
    base = pfn & ~(cp - 1)
    prot = arch.pte_pgprot(arch.pte_mkold(arch.pte_mkclean(pte)))
    expected = np.uint64(arch.pfn_pte(base, prot)) + np.arange(cp, dtype=np.uint64) * np.uint64(
        1 << arch.PAGE_SHIFT
    )
    start = contpte_align_down(arch, ptep)
    raw = start.table.entries[start.idx : start.idx + cp]
    sub = (raw & np.uint64(~_AF_DIRTY & _U64)) | np.uint64(PTE_RDONLY)
    # pte_same(): RDONLY ignored on present PTEs.  ``expected`` is valid, so
    # a non-present ``sub`` differs in bit 0 whatever RDONLY says: masking
    # RDONLY on both sides gives pte_same's answer for every entry.
    ok = (sub & _NOT_RDONLY) == (expected & _NOT_RDONLY)
    if not bool(ok.all()):
        # The C loop stops at the first mismatch.
        arch.counters.add("pte.read", int(np.argmin(ok)) + 1)
        return
    arch.counters.add("pte.read", cp)
    arch.counters.add(FOLD)
    contpte_convert(arch, mm, addr, ptep, arch.pte_mkcont(pte))


# ----------------------------------------------------------------------
# Unfold.
# ----------------------------------------------------------------------
def contpte_try_unfold(
    arch: Arm64Pgtable, mm: MmLike, addr: int, ptep: PtePtr, pte: int, caller: str, traced: bool = True
) -> None:
    """Unfold ``ptep``'s block if ``pte`` (its raw value) is valid and CONT.

    Models: arm64 pgtable.h ``contpte_try_unfold()`` (always inline).
    ``caller`` (model only) is the public function core-mm called;
    ``traced`` as for ``_contpte_try_unfold()``.

    Context: PTL held.
    """
    if (pte & (PTE_VALID | PTE_CONT)) == (PTE_VALID | PTE_CONT):
        _contpte_try_unfold(arch, mm, addr, ptep, pte, caller, traced)


def _contpte_try_unfold(
    arch: Arm64Pgtable, mm: MmLike, addr: int, ptep: PtePtr, pte: int, caller: str, traced: bool = True
) -> None:
    """Repaint a folded block without PTE_CONT (one block TLBI).

    Models: arch/arm64/mm/contpte.c ``__contpte_try_unfold()``.

    ``traced`` False: the call comes from inside contpte.c
    (``contpte_try_unfold_partial()``, ``contpte_ptep_set_access_flags()``),
    where GCC inlines this small function (Debian's 6.12 arm64 build calls
    ``contpte_convert`` straight from both), so ftrace sees no entry and
    ``call.__contpte_try_unfold`` is not counted.  The unfold itself is.

    Context: PTL held; ``pte`` is valid and CONT.
    """
    if traced:
        arch.counters.add(CALL_TRY_UNFOLD)
    if not mm_is_user(mm):
        return
    arch.counters.add(_unfold_counter(caller))
    contpte_convert(arch, mm, addr, ptep, pte & ~PTE_CONT)


def contpte_try_unfold_partial(
    arch: Arm64Pgtable, mm: MmLike, addr: int, ptep: PtePtr, nr: int, caller: str
) -> None:
    """Unfold the blocks that ``[ptep, ptep + nr)`` covers only partly (head and tail).

    Models: arch/arm64/mm/contpte.c ``contpte_try_unfold_partial()``.
    Fully covered blocks stay folded.

    Context: PTL held.
    """
    arch.counters.add(CALL_UNFOLD_PARTIAL)
    cp = arch.CONT_PTES
    if ptep.idx & (cp - 1) or nr < cp:
        contpte_try_unfold(arch, mm, addr, ptep, arch._ptep_get(ptep), caller, traced=False)
    if (ptep.idx + nr) & (cp - 1):
        last_addr = addr + arch.PAGE_SIZE * (nr - 1)
        last_ptep = ptep + (nr - 1)
        contpte_try_unfold(arch, mm, last_addr, last_ptep, arch._ptep_get(last_ptep), caller, traced=False)


# ----------------------------------------------------------------------
# Getters.
# ----------------------------------------------------------------------
def contpte_ptep_get(arch: Arm64Pgtable, ptep: PtePtr, orig_pte: int) -> int:
    """``orig_pte`` with the access/dirty state of its whole block ORed in.

    Models: arch/arm64/mm/contpte.c ``contpte_ptep_get()`` (v6.12: reads all
    CONT_PTES entries; the early exit came later).  Hardware may have set
    AF or dirty on any member, so the block's state is the OR.

    Context: PTL held, so the block cannot change under us.
    """
    arch.counters.add(CALL_PTEP_GET)
    if arch.bug("ptep_get_no_gather"):
        return orig_pte  # bug catalog: only the addressed entry's A/D
    start = contpte_align_down(arch, ptep)
    vals = arch._block_peek(start, arch.CONT_PTES)
    return arch._gather_young_dirty(orig_pte, vals)


def contpte_ptep_get_lockless(arch: Arm64Pgtable, orig_ptep: PtePtr) -> int:
    """Like ``contpte_ptep_get()`` but for readers without the PTL.

    Models: arch/arm64/mm/contpte.c ``contpte_ptep_get_lockless()``.  The
    kernel restarts while any member is not valid+CONT, has the wrong pfn
    or a different prot (ignoring A/D): a fold or unfold is in flight.  The
    model is sequential, so an inconsistent block can only be a persistent
    misprogramming, on which the kernel would spin forever: raise instead.

    Context: no PTL.
    """
    arch.counters.add(CALL_PTEP_GET_LOCKLESS)
    cp = arch.CONT_PTES
    orig_pte = arch._ptep_get(orig_ptep)
    if (orig_pte & (PTE_VALID | PTE_CONT)) != (PTE_VALID | PTE_CONT):
        return orig_pte
    orig_prot = arch.pte_pgprot(arch.pte_mkold(arch.pte_mkclean(orig_pte)))
    start = contpte_align_down(arch, orig_ptep)
    pfn0 = arch.pte_pfn(orig_pte) - (orig_ptep.idx - start.idx)
    vals = arch._block_peek(start, cp)
    addr_mask = np.uint64(arch.PTE_ADDR_LOW)
    pfns = (vals & addr_mask) >> np.uint64(arch.PAGE_SHIFT)
    prots = ((vals & np.uint64(~_AF_DIRTY & _U64)) | np.uint64(PTE_RDONLY)) & np.uint64(
        ~arch.PTE_ADDR_LOW & _U64
    )
    ok = (
        ((vals & np.uint64(PTE_VALID | PTE_CONT)) == np.uint64(PTE_VALID | PTE_CONT))
        & (pfns == np.uint64(pfn0) + np.arange(cp, dtype=np.uint64))
        & (prots == np.uint64(orig_prot))
    )
    if not bool(ok.all()):
        raise InvariantViolation(
            "contig-consistency",
            "contpte_ptep_get_lockless: inconsistent contiguous block (would retry forever)",
            orig_ptep.table.va(start.idx),
            [int(v) for v in vals],
        )
    return arch._gather_young_dirty(orig_pte, vals)


# ----------------------------------------------------------------------
# Batch setters.
# ----------------------------------------------------------------------
def contpte_set_ptes(arch: Arm64Pgtable, mm: MmLike, addr: int, ptep: PtePtr, pte: int, nr: int) -> None:
    """Map ``nr`` pages, setting PTE_CONT on every whole, VA- and PA-aligned block.

    Models: arch/arm64/mm/contpte.c ``contpte_set_ptes()``.  The set_ptes()
    contract says all ``nr`` entries are none before, so nothing needs
    unfolding or invalidating: no TLBI.

    Context: PTL held; nr > 1; one folio; one PMD.
    """
    arch.counters.add(CALL_SET_PTES)
    arch.VM_WARN_ON(nr == 1, "contpte_set_ptes with nr == 1", addr, [pte])
    if not mm_is_user(mm):
        arch._set_ptes(mm, addr, ptep, pte, nr)
        return
    end = addr + (nr << arch.PAGE_SHIFT)
    pfn = arch.pte_pfn(pte)
    prot = arch.pte_pgprot(pte)
    size = arch.CONT_PTE_SIZE
    while True:
        boundary = (addr + size) & arch.CONT_PTE_MASK
        nxt = boundary if boundary - 1 < end - 1 else end
        n = (nxt - addr) >> arch.PAGE_SHIFT
        p = arch.pfn_pte(pfn, prot)
        if ((addr | nxt | (pfn << arch.PAGE_SHIFT)) & (size - 1)) == 0:
            p = arch.pte_mkcont(p)
        else:
            p &= ~PTE_CONT
        arch._set_ptes(mm, addr, ptep, p, n)
        addr = nxt
        ptep = ptep + n
        pfn += n
        if addr == end:
            break


def contpte_clear_full_ptes(
    arch: Arm64Pgtable, mm: MmLike, addr: int, ptep: PtePtr, nr: int, full: bool
) -> None:
    """Clear ``nr`` PTEs, unfolding only partly covered blocks; no TLBI.

    Models: arch/arm64/mm/contpte.c ``contpte_clear_full_ptes()``.

    Context: PTL held; one folio; one PMD.
    """
    arch.counters.add(CALL_CLEAR_FULL)
    contpte_try_unfold_partial(arch, mm, addr, ptep, nr, "clear_full_ptes")
    arch._clear_full_ptes(mm, addr, ptep, nr, full)


def contpte_get_and_clear_full_ptes(
    arch: Arm64Pgtable, mm: MmLike, addr: int, ptep: PtePtr, nr: int, full: bool
) -> int:
    """Like ``contpte_clear_full_ptes()``, returning the first PTE with all A/D ORed.

    Models: arch/arm64/mm/contpte.c ``contpte_get_and_clear_full_ptes()``.

    Context: PTL held; one folio; one PMD.
    """
    arch.counters.add(CALL_GET_AND_CLEAR_FULL)
    contpte_try_unfold_partial(arch, mm, addr, ptep, nr, "get_and_clear_full_ptes")
    return arch._get_and_clear_full_ptes(mm, addr, ptep, nr, full)


# ----------------------------------------------------------------------
# Access/dirty and write-protect: in place, no unfold.
# ----------------------------------------------------------------------
def contpte_ptep_test_and_clear_young(arch: Arm64Pgtable, vma: VmaLike, addr: int, ptep: PtePtr) -> bool:
    """Clear AF on the whole block; True if any member was young.

    Models: arch/arm64/mm/contpte.c ``contpte_ptep_test_and_clear_young()``.
    Core-mm tracks access per folio and a block lies in one folio, so
    clearing the whole block is allowed and avoids an unfold.

    Context: PTL held.
    """
    arch.counters.add(CALL_TEST_AND_CLEAR_YOUNG)
    cp = arch.CONT_PTES
    start = contpte_align_down(arch, ptep)
    old = arch._block_peek(start, cp)
    arch.counters.add("pte.atomic", cp)
    start.table.store_many(start.idx, old & np.uint64(~PTE_AF & _U64))
    return bool(((old & np.uint64(PTE_AF)) != 0).any())


def contpte_ptep_clear_flush_young(arch: Arm64Pgtable, vma: VmaLike, addr: int, ptep: PtePtr) -> bool:
    """Clear AF on the block and, if it was young, invalidate it without a trailing DSB.

    Models: arch/arm64/mm/contpte.c ``contpte_ptep_clear_flush_young()``.
    No DSB for the same reason as ``__ptep_clear_flush_young()``: at worst a
    hot page gets aged, until the next context switch's DSB.

    Context: PTL held.
    """
    arch.counters.add(CALL_CLEAR_FLUSH_YOUNG)
    young = contpte_ptep_test_and_clear_young(arch, vma, addr, ptep)
    if young:
        start = addr & arch.CONT_PTE_MASK
        tlbflush._flush_tlb_range_nosync(
            arch, vma, start, start + arch.CONT_PTE_SIZE, arch.PAGE_SIZE, True, 3
        )
    return young


def contpte_wrprotect_ptes(arch: Arm64Pgtable, mm: MmLike, addr: int, ptep: PtePtr, nr: int) -> None:
    """Write-protect ``nr`` PTEs, unfolding only partly covered blocks.

    Models: arch/arm64/mm/contpte.c ``contpte_wrprotect_ptes()``.  Whole
    blocks are write-protected in place with no TLBI: until the later
    mmu_gather/fork flush the page may or may not act read-only, and after
    it, it is (Arm ARM "Misprogramming the Contiguous bit", tightened for
    Linux).  A block write-protected on only a subset would stay
    unpredictable after the flush, so partial blocks unfold.

    Context: PTL held; one folio; one PMD.
    """
    arch.counters.add(CALL_WRPROTECT)
    if not arch.bug("wrprotect_partial_block_no_unfold"):
        contpte_try_unfold_partial(arch, mm, addr, ptep, nr, "wrprotect_ptes")
    arch._wrprotect_ptes(mm, addr, ptep, nr)


def contpte_clear_young_dirty_ptes(
    arch: Arm64Pgtable, vma: VmaLike, addr: int, ptep: PtePtr, nr: int, flags: int
) -> None:
    """Clear access and/or dirty on ``nr`` PTEs, widened to whole blocks at the ends.

    Models: arch/arm64/mm/contpte.c ``contpte_clear_young_dirty_ptes()``
    (MADV_FREE).  Clearing A/D with PTE_CONT set is architecturally safe,
    and core-mm tracks A/D per folio, so no unfold.

    Context: PTL held; one folio; one PMD.
    """
    arch.counters.add(CALL_CLEAR_YOUNG_DIRTY)
    start = addr
    end = start + nr * arch.PAGE_SIZE
    if arch._ptep_get(ptep + (nr - 1)) & PTE_CONT:
        end = (end + arch.CONT_PTE_SIZE - 1) & arch.CONT_PTE_MASK
    if arch._ptep_get(ptep) & PTE_CONT:
        start &= arch.CONT_PTE_MASK
        ptep = contpte_align_down(arch, ptep)
    arch._clear_young_dirty_ptes(vma, start, ptep, (end - start) // arch.PAGE_SIZE, flags)


def contpte_ptep_set_access_flags(
    arch: Arm64Pgtable, vma: VmaLike, addr: int, ptep: PtePtr, entry: int, dirty: bool
) -> bool:
    """Fault fix-up on a folded block; True if anything changed.

    Models: arch/arm64/mm/contpte.c ``contpte_ptep_set_access_flags()``
    (v6.12 form).  The no-op test compares ``entry`` with the *gathered*
    block PTE.  If the write bit is unchanged, the access flags are set on
    every member (software A/D management would otherwise fault on each
    sibling) and, if ``dirty``, the block is flushed once.  If the write bit
    changes (e.g. reuse after CoW), the block unfolds first.  Nothing
    refolds here.

    Context: PTL held; ``entry`` has no PTE_CONT.
    """
    arch.counters.add(CALL_SET_ACCESS_FLAGS)
    orig_pte = arch.ptep_get(ptep) & ~PTE_CONT
    if orig_pte == entry:
        return False
    if arch.pte_write(orig_pte) == arch.pte_write(entry):
        start_ptep = contpte_align_down(arch, ptep)
        start_addr = addr & arch.CONT_PTE_MASK
        # ``entry`` is not advanced per member: only its access bits are used.
        arch._ptep_set_access_flags_block(vma, start_ptep, arch.CONT_PTES, entry)
        if dirty:
            tlbflush._flush_tlb_range(
                arch, vma, start_addr, start_addr + arch.CONT_PTE_SIZE, arch.PAGE_SIZE, True, 3
            )
    else:
        _contpte_try_unfold(arch, vma.vm_mm, addr, ptep, orig_pte, "ptep_set_access_flags", traced=False)
        arch._ptep_set_access_flags(vma, addr, ptep, entry, dirty)
    return True
