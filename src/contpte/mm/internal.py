"""Core-mm internal helpers: PTE batching.

Models: mm/internal.h (Linux v6.12) ``folio_pte_batch()`` and its flags.

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64, u64
    from .kernel import Kernel

__all__ = [
    "BoolPtr",
    "FolioPtr",
    "folio_pte_batch",
    "FPB_IGNORE_DIRTY",
    "FPB_IGNORE_SOFT_DIRTY",
    "FPB_RESPECT_WRITE",
]

FPB_IGNORE_DIRTY = cython.declare(i64, 1 << 0)
FPB_IGNORE_SOFT_DIRTY = cython.declare(i64, 1 << 1)
#: Compare the write bit too (v6.17's ``FPB_RESPECT_WRITE``, BIT(2) as there:
#: mremap's batch must not mix writable and read-only PTEs).
FPB_RESPECT_WRITE = cython.declare(i64, 1 << 2)


@cython.final
@cython.freelist(8)
@cython.cclass
class BoolPtr:
    """A ``bool *`` out-parameter (``&any_writable``).

    Hot paths make one with ``BoolPtr.__new__(BoolPtr)`` (from a free list,
    no ``__init__`` call) and set ``value`` themselves.
    """

    def __init__(self, value: cython.bint = False) -> None:
        self.value = value


@cython.final
@cython.cclass
class FolioPtr:
    """A ``struct folio **`` out-parameter (``&prealloc``): a head pfn, -1 for NULL."""

    def __init__(self, value: i64 = -1) -> None:
        self.value = value


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_pte_batch(
    k: Kernel,
    folio: i64,
    addr: i64,
    start_ptep: i64,
    pte: u64,
    max_nr: i64,
    flags: i64,
    any_writable: BoolPtr | None,
    any_young: BoolPtr | None = None,
    any_dirty: BoolPtr | None = None,
) -> i64:
    """Count the PTEs from ``start_ptep`` that map consecutive pages of ``folio``.

    Models: mm/internal.h ``folio_pte_batch()`` (v6.12): compare each PTE
    with the expected one after ``pte_wrprotect`` + ``pte_mkold`` (young is
    always ignored, write unless ``FPB_RESPECT_WRITE``, v6.17's flag for
    mremap) and, per ``flags``, ``pte_mkclean`` and ``pte_clear_soft_dirty``; stop at the first mismatch (none, swap,
    another pfn, protnone, uffd-wp, a different dirty bit) or at the end of
    the folio.  ``any_writable.value`` is set if a PTE after the first is
    writable; ``any_young.value`` / ``any_dirty.value`` (cleared first, as
    the kernel does) if one after the first is young / dirty.  Follows
    ``pte_batch_hint`` (skips the tail of a contiguous block: one read per
    block).  ``k``: the mem_map's kernel (the model's stand-in for the
    global ``struct page`` array).

    Context: PTL held; ``pte`` maps a page of the large ``folio``;
    ``max_nr`` stays within one VMA and one page table.
    """
    a: Pgtable = k.arch
    bug_none: cython.bint = k.bug("fork_batch_across_pte_none")
    bug_uffd: cython.bint = k.bug("fork_batch_ignores_uffd_wp")
    bug_protnone: cython.bint = k.bug("fork_batch_mixes_protnone")
    first_prot: u64 = a.pte_pgprot(pte)
    folio_end_pfn: i64 = folio + (cython.cast(i64, 1) << cython.cast(i64, k.memmap.order[folio]))
    nr: i64 = a.pte_batch_hint(start_ptep, pte)
    expected: u64 = _fpb_norm(a, a.pte_advance_pfn(pte, nr), flags, bug_uffd, bug_protnone, first_prot)
    ptep: i64 = start_ptep + nr
    end: i64 = start_ptep + max_nr
    p: u64
    h: i64
    writable: cython.bint
    young: cython.bint
    dirty: cython.bint
    if any_young is not None:
        any_young.value = False
    if any_dirty is not None:
        any_dirty.value = False
    while ptep < end:
        p = a.ptep_get(ptep)
        if bug_none and p == 0:
            # Bug catalog: a hole is taken as the expected next PTE.
            expected = a.pte_advance_pfn(expected, 1)
            ptep += 1
            continue
        writable = a.pte_write(p)
        young = any_young is not None and a.pte_young(p)
        dirty = any_dirty is not None and a.pte_dirty(p)
        p = _fpb_norm(a, p, flags, bug_uffd, bug_protnone, first_prot)
        if not a.pte_same(p, expected):
            break
        if a.pte_pfn(p) >= folio_end_pfn:
            break
        if any_writable is not None and writable:
            any_writable.value = True
        if young and any_young is not None:
            any_young.value = True
        if dirty and any_dirty is not None:
            any_dirty.value = True
        h = a.pte_batch_hint(ptep, p)
        expected = a.pte_advance_pfn(expected, h)
        ptep += h
    return min(ptep - start_ptep, max_nr)


@cython.cfunc
@cython.exceptval(-1, check=True)
@cython.inline
def _fpb_norm(
    a: Pgtable, p: u64, flags: i64, bug_uffd: cython.bint, bug_protnone: cython.bint, first_prot: u64
) -> u64:
    """``__pte_batch_clear_ignored()`` + ``pte_wrprotect(pte_mkold())``."""
    if flags & FPB_IGNORE_DIRTY:
        p = a.pte_mkclean(p)
    if flags & FPB_IGNORE_SOFT_DIRTY:
        p = a.pte_clear_soft_dirty(p)
    if bug_uffd:  # bug catalog: the uffd-wp bit is ignored
        p = a.pte_clear_uffd_wp(p)
    if bug_protnone and a.pte_present(p):  # bug catalog: protection ignored
        p = a.pte_modify(p, first_prot)
    if flags & FPB_RESPECT_WRITE:
        return a.pte_mkold(p)
    return a.pte_wrprotect(a.pte_mkold(p))


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        FPB_IGNORE_DIRTY=FPB_IGNORE_DIRTY,
        FPB_IGNORE_SOFT_DIRTY=FPB_IGNORE_SOFT_DIRTY,
        FPB_RESPECT_WRITE=FPB_RESPECT_WRITE,
    )
