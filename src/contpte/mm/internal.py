"""Core-mm internal helpers: PTE batching.

Models: mm/internal.h ``folio_pte_batch_flags()`` and its ``FPB_*`` flags
and mm/util.c ``folio_pte_batch()``, in the shape of Linux v6.17+ (the
"mm: folio_pte_batch() improvements" series, David Hildenbrand, v6.17:
``FPB_IGNORE_*`` became ``FPB_RESPECT_*``, the ``bool *any_*`` out
parameters became ``FPB_MERGE_*`` flags that update a copy of the first
PTE, and the flag-less callers got ``folio_pte_batch()``).  v6.12's
``folio_pte_batch(folio, addr, ptep, pte, max_nr, flags, &any_writable,
&any_young, &any_dirty)`` computes the same batches: its callers here pass
the equivalent flags (``FPB_IGNORE_DIRTY`` is the absence of
``FPB_RESPECT_DIRTY``, ``&any_writable`` + ``pte_mkwrite()`` is
``FPB_MERGE_WRITE``, ...).  The one version difference inside the
function is where a batch stops at the folio's end
(``Kernel.fpb_cap_at_folio_end``, v6.15).

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

if not cython.compiled:
    from ..arch.pgtable import Pgtable, VmaLike
    from ..cdefs import i64, u64
    from .kernel import Kernel

__all__ = [
    "BoolPtr",
    "FolioPtr",
    "PtePtr",
    "folio_pte_batch",
    "folio_pte_batch_flags",
    "FPB_RESPECT_DIRTY",
    "FPB_RESPECT_SOFT_DIRTY",
    "FPB_RESPECT_WRITE",
    "FPB_MERGE_WRITE",
    "FPB_MERGE_YOUNG_DIRTY",
    "pte_move_swp_offset",
    "pte_next_swp_offset",
    "swap_pte_batch",
]

#: Compare PTEs respecting the dirty bit (v6.12: without ``FPB_IGNORE_DIRTY``).
FPB_RESPECT_DIRTY = cython.declare(i64, 1 << 0)
#: Compare PTEs respecting the soft-dirty bit (v6.12: without ``FPB_IGNORE_SOFT_DIRTY``).
FPB_RESPECT_SOFT_DIRTY = cython.declare(i64, 1 << 1)
#: Compare PTEs respecting the write bit (v6.17, mprotect and mremap; v6.12 always ignored it).
FPB_RESPECT_WRITE = cython.declare(i64, 1 << 2)
#: Make ``*ptentp`` writable if any PTE of the batch is (v6.12: ``*any_writable``).
FPB_MERGE_WRITE = cython.declare(i64, 1 << 3)
#: Make ``*ptentp`` young / dirty if any PTE of the batch is (v6.12: ``*any_young``, ``*any_dirty``).
FPB_MERGE_YOUNG_DIRTY = cython.declare(i64, 1 << 4)


@cython.final
@cython.freelist(8)
@cython.cclass
class BoolPtr:
    """A ``bool *`` out-parameter (``&force_flush``).

    Hot paths make one with ``BoolPtr.__new__(BoolPtr)`` (from a free list,
    no ``__init__`` call) and set ``value`` themselves.
    """

    def __init__(self, value: cython.bint = False) -> None:
        self.value = value


@cython.final
@cython.freelist(8)
@cython.cclass
class PtePtr:
    """A ``pte_t *`` to a *copy* of a PTE (``&ptent``), updated by ``FPB_MERGE_*``.

    Hot paths make one with ``PtePtr.__new__(PtePtr)`` and set ``value``.
    """

    def __init__(self, value: u64 = 0) -> None:
        self.value = value


@cython.final
@cython.cclass
class FolioPtr:
    """A ``struct folio **`` out-parameter (``&prealloc``): a head pfn, -1 for NULL."""

    def __init__(self, value: i64 = -1) -> None:
        self.value = value


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_pte_batch_flags(
    k: Kernel, folio: i64, vma: VmaLike | None, ptep: i64, ptentp: PtePtr, max_nr: i64, flags: i64
) -> i64:
    """Count the PTEs from ``ptep`` that map consecutive pages of ``folio``.

    Models: mm/internal.h ``folio_pte_batch_flags()`` (v6.17+; v6.12's
    ``folio_pte_batch()``).  Each PTE is compared with the expected next one
    after ``__pte_batch_clear_ignored()``: access bit always cleared, dirty,
    soft-dirty and write bits cleared unless ``FPB_RESPECT_*`` says to keep
    them; the batch stops at the first mismatch (none, swap, another pfn,
    protnone, uffd-wp, a respected bit that differs).  ``FPB_MERGE_WRITE``
    makes ``ptentp.value`` writable (``pte_mkwrite(pte, vma)``) if a PTE
    after the first is writable, ``FPB_MERGE_YOUNG_DIRTY`` young / dirty
    likewise.  Follows ``pte_batch_hint()`` (the rest of a folded block is
    one step, its entries never read).

    Where it stops at the end of the folio: from v6.15
    (``k.fpb_cap_at_folio_end``, commit 7b08b74f3d99 "mm: fix
    folio_pte_batch() on XEN PV") ``max_nr`` is first capped to the folio's
    remaining pages, so the entry after the folio is never read; before
    (v6.12) the loop reads it and stops on its pfn (``folio_end_pfn``).

    ``k``: the mem_map's kernel (the model's stand-in for the global
    ``struct page`` array); ``ptentp``: ``pte_t *``, a copy of the first
    PTE (``ptep_get()``), mapping a page of the large ``folio``.

    Context: PTL held; ``max_nr`` >= 1 stays within one VMA and one page table.
    """
    a: Pgtable = k.arch
    bug_none: cython.bint = k.bug("fork_batch_across_pte_none")
    bug_uffd: cython.bint = k.bug("fork_batch_ignores_uffd_wp")
    bug_protnone: cython.bint = k.bug("fork_batch_mixes_protnone")
    pte: u64 = ptentp.value
    first_prot: u64 = a.pte_pgprot(pte)
    folio_end_pfn: i64 = folio + (cython.cast(i64, 1) << cython.cast(i64, k.memmap.order[folio]))
    capped: cython.bint = k.fpb_cap_at_folio_end
    if capped:
        max_nr = min(max_nr, folio_end_pfn - a.pte_pfn(pte))
    any_writable: cython.bint = False
    any_young: cython.bint = False
    any_dirty: cython.bint = False
    nr: i64 = a.pte_batch_hint(ptep, pte)
    expected: u64 = _fpb_norm(a, a.pte_advance_pfn(pte, nr), flags, bug_uffd, bug_protnone, first_prot)
    ptep += nr
    p: u64
    raw: u64
    cur_nr: i64
    while nr < max_nr:
        raw = a.ptep_get(ptep)
        if bug_none and raw == 0:
            # Bug catalog: a hole is taken as the expected next PTE.
            expected = a.pte_advance_pfn(expected, 1)
            ptep += 1
            nr += 1
            continue
        p = _fpb_norm(a, raw, flags, bug_uffd, bug_protnone, first_prot)
        if not a.pte_same(p, expected):
            break
        if not capped and a.pte_pfn(p) >= folio_end_pfn:
            break  # v6.12: the next folio's first page, physically adjacent
        if flags & FPB_MERGE_WRITE:
            any_writable |= a.pte_write(raw)
        if flags & FPB_MERGE_YOUNG_DIRTY:
            any_young |= a.pte_young(raw)
            any_dirty |= a.pte_dirty(raw)
        cur_nr = a.pte_batch_hint(ptep, p)
        expected = a.pte_advance_pfn(expected, cur_nr)
        ptep += cur_nr
        nr += cur_nr
    if any_writable:
        ptentp.value = a.pte_mkwrite(ptentp.value)
    if any_young:
        ptentp.value = a.pte_mkyoung(ptentp.value)
    if any_dirty:
        ptentp.value = a.pte_mkdirty(ptentp.value)
    return min(nr, max_nr)


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_pte_batch(k: Kernel, folio: i64, ptep: i64, pte: u64, max_nr: i64) -> i64:
    """``folio_pte_batch_flags()`` with no flags: dirty, soft-dirty and write ignored, nothing merged.

    Models: mm/util.c ``folio_pte_batch()`` (v6.17+; zap's v6.12 call with
    ``FPB_IGNORE_DIRTY | FPB_IGNORE_SOFT_DIRTY`` and no out-parameters).
    """
    ptentp: PtePtr = PtePtr.__new__(PtePtr)
    ptentp.value = pte
    return folio_pte_batch_flags(k, folio, None, ptep, ptentp, max_nr, 0)


@cython.cfunc
@cython.exceptval(-1, check=True)
@cython.inline
def _fpb_norm(
    a: Pgtable, p: u64, flags: i64, bug_uffd: cython.bint, bug_protnone: cython.bint, first_prot: u64
) -> u64:
    """Models: mm/internal.h ``__pte_batch_clear_ignored()``."""
    if not flags & FPB_RESPECT_DIRTY:
        p = a.pte_mkclean(p)
    if not flags & FPB_RESPECT_SOFT_DIRTY:
        p = a.pte_clear_soft_dirty(p)
    if bug_uffd:  # bug catalog: the uffd-wp bit is ignored
        p = a.pte_clear_uffd_wp(p)
    if bug_protnone and a.pte_present(p):  # bug catalog: protection ignored
        p = a.pte_modify(p, first_prot)
    if not flags & FPB_RESPECT_WRITE:
        p = a.pte_wrprotect(p)
    return a.pte_mkold(p)


@cython.ccall
@cython.exceptval(-1, check=True)
def pte_move_swp_offset(a: Pgtable, pte: u64, delta: i64) -> u64:
    """The swap PTE ``delta`` slots on, with the same swp bits.

    Models: mm/internal.h ``pte_move_swp_offset()``: type and offset
    re-encoded, soft-dirty, exclusive and uffd-wp kept.
    """
    new: u64 = a.swp_entry(a.swp_type(pte), a.swp_offset(pte) + delta)
    if a.pte_swp_exclusive(pte):
        new = a.pte_swp_mkexclusive(new)
    if a.pte_swp_uffd_wp(pte):
        new = a.pte_swp_mkuffd_wp(new)
    return new


@cython.ccall
@cython.exceptval(-1, check=True)
def pte_next_swp_offset(a: Pgtable, pte: u64) -> u64:
    """Models: mm/internal.h ``pte_next_swp_offset()``."""
    return pte_move_swp_offset(a, pte, 1)


@cython.ccall
@cython.exceptval(-1, check=True)
def swap_pte_batch(a: Pgtable, start_ptep: i64, max_nr: i64, pte: u64) -> i64:
    """How many PTEs from ``start_ptep`` hold consecutive swap entries with the same bits.

    Models: mm/internal.h ``swap_pte_batch()`` (v6.10+): each next entry
    must equal the previous one moved by one slot (``pte_same`` with
    ``pte_next_swp_offset``: same type, exclusive and uffd-wp bits; no
    memory cgroups in the model).  ``max_nr`` stays within one table.
    """
    expected: u64 = pte_next_swp_offset(a, pte)
    ptep: i64 = start_ptep + 1
    end: i64 = start_ptep + max_nr
    while ptep < end:
        if a.ptep_get(ptep) != expected:
            break
        expected = pte_next_swp_offset(a, expected)
        ptep += 1
    return ptep - start_ptep


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        FPB_RESPECT_DIRTY=FPB_RESPECT_DIRTY,
        FPB_RESPECT_SOFT_DIRTY=FPB_RESPECT_SOFT_DIRTY,
        FPB_RESPECT_WRITE=FPB_RESPECT_WRITE,
        FPB_MERGE_WRITE=FPB_MERGE_WRITE,
        FPB_MERGE_YOUNG_DIRTY=FPB_MERGE_YOUNG_DIRTY,
    )
