"""Long-term pins (pin_user_pages with FOLL_LONGTERM).

Models: mm/gup.c (Linux v6.12): ``__get_user_pages`` faults in each page
as needed (a write pin breaks CoW; a read-only pin of a shared anon page
unshares it first, ``gup_must_unshare``), then ``try_grab_folio(FOLL_PIN)``
raises the refcount by GUP_PIN_COUNTING_BIAS for order-0 folios or by one
plus ``_pincount`` for large ones, and sets MMF_HAS_PINNED on the mm.

Compiled (docs/core.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import cython

from ..counters import declare

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64, u64
    from ..counters import count
    from ..hw.tables import AddressSpace
    from .kernel import Kernel
    from .memmap import GUP_PIN_COUNTING_BIAS, MemMap, PageAnonExclusive, folio_ref_add, folio_test_anon
    from .memory import handle_mm_fault
    from .mm_types import (
        FAULT_FLAG_UNSHARE,
        FAULT_FLAG_WRITE,
        VM_FAULT_OOM,
        VM_FAULT_UFFD_WP,
        VM_READ,
        VM_SHARED,
        VM_WRITE,
        MmStruct,
        Vma,
    )
    from .shmem import File

__all__ = ["pin_user_pages", "unpin_user_pages"]

PINS = cython.declare(i64, declare("gup.pin", "pages", "pages pinned with FOLL_PIN|FOLL_LONGTERM"))
UNPINS = cython.declare(i64, declare("gup.unpin", "pages", "pages unpinned"))

EFAULT = cython.declare(i64, 14)
ENOMEM = cython.declare(i64, 12)


@cython.cfunc
@cython.exceptval(-1, check=True)
def _follow_page(mm: MmStruct, addr: i64) -> u64:
    """The present mapping of ``addr`` as a PTE-format entry, or 0 (none).

    Models: mm/gup.c ``follow_page_mask()`` -> ``follow_pmd_mask()`` /
    ``follow_page_pte()``: the entry's present/protnone checks.  Reads
    uncounted (the model's GUP does not cost descriptor reads).
    """
    space: AddressSpace = mm.space
    a: Pgtable = mm.kernel.arch
    idx: i64 = addr >> a.PMD_SHIFT
    pte: u64
    pmd: u64 = space.pmd_peek(idx)
    if pmd:
        pte = a.pmd_pte(pmd)
        if not a.pte_present(pte):
            return 0
        return pte
    ptep: i64 = space.pte_ptr(addr)
    if ptep < 0:
        return 0
    pte = space.pool.peek(ptep)
    if not a.pte_present(pte) or a.pte_protnone(pte):
        return 0
    return pte


@cython.cfunc
@cython.exceptval(-1, check=True)
def _follow_pfn(mm: MmStruct, addr: i64, pte: u64) -> i64:
    """The pfn of ``addr`` under the present entry ``_follow_page`` returned."""
    a: Pgtable = mm.kernel.arch
    if mm.space.pmd_peek(addr >> a.PMD_SHIFT):
        return a.pte_pfn(pte) + ((addr & (a.PMD_SIZE - 1)) >> a.PAGE_SHIFT)
    return a.pte_pfn(pte)


@cython.cfunc
@cython.exceptval(-1, check=True)
def _must_fault(mm: MmStruct, addr: i64, pte: u64, pfn: i64, write: cython.bint) -> i64:
    """0 if the page can be pinned as mapped, else the fault flags to use.

    Models: mm/gup.c ``follow_page_pte()`` checks: a write pin needs a
    writable PTE; a read pin of an anon page that is not exclusive must
    unshare it first (``gup_must_unshare``).
    """
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    if write:
        return 0 if a.pte_write(pte) else FAULT_FLAG_WRITE
    if a.pte_special(pte):
        return 0
    folio: i64 = cython.cast(i64, mem.head[pfn])
    # A PMD-mapped folio's exclusivity is kept at its head.
    flag_page: i64 = folio if mm.space.pmd_peek(addr >> a.PMD_SHIFT) else pfn
    if folio_test_anon(mem, folio) and not PageAnonExclusive(mem, flag_page):
        return FAULT_FLAG_UNSHARE
    return 0


@cython.cfunc
def _grab(mem: MemMap, folio: i64) -> None:
    """``try_grab_folio(folio, 1, FOLL_PIN)``."""
    if cython.cast(i64, mem.order[folio]) > 0:
        folio_ref_add(mem, folio, 1)
        mem.pincount[folio] += 1
    else:
        folio_ref_add(mem, folio, GUP_PIN_COUNTING_BIAS)


@cython.ccall
@cython.exceptval(-1, check=True)
def pin_user_pages(mm: MmStruct, start: i64, nr_pages: i64, write: cython.bint) -> i64:
    """Pin ``nr_pages`` from ``start``; 0 or -errno (nothing stays pinned on error).

    The pinned pfns are added to ``mm.pinned`` (the model's record of the
    caller's ``struct page *`` array).
    """
    k: Kernel = mm.kernel
    done: list[int] = []
    i: i64
    addr: i64
    _attempt: i64
    flags: i64
    need: i64
    ret: i64
    pte: u64
    pfn: i64
    vma: Vma
    for i in range(nr_pages):
        addr = start + i * k.PAGE_SIZE
        v = mm.vma_lookup(addr)
        if v is None:
            unpin_user_pages(mm, done)
            return -EFAULT
        vma = v
        if write and not vma.vm_flags & VM_WRITE:
            unpin_user_pages(mm, done)
            return -EFAULT
        if not write and not vma.vm_flags & VM_READ:
            # check_vma_flags(): a read pin (no FOLL_FORCE) needs VM_READ.
            unpin_user_pages(mm, done)
            return -EFAULT
        if (
            write
            and vma.vm_file is not None
            and not cython.cast(File, vma.vm_file).shmem
            and vma.vm_flags & VM_SHARED
        ):
            # v6.5+: no writable long-term pins of file-backed memory needing writeback.
            unpin_user_pages(mm, done)
            return -EFAULT
        for _attempt in range(4):
            pte = _follow_page(mm, addr)
            flags = FAULT_FLAG_WRITE if write else 0
            if pte:
                need = _must_fault(mm, addr, pte, _follow_pfn(mm, addr, pte), write)
                if not need:
                    break
                flags = need
            ret = handle_mm_fault(vma, addr, flags)
            if ret & VM_FAULT_OOM:
                unpin_user_pages(mm, done)
                return -ENOMEM
            if ret & VM_FAULT_UFFD_WP:
                # GUP does not wait for a userfaultfd monitor here: -EFAULT.
                unpin_user_pages(mm, done)
                return -EFAULT
        pte = _follow_page(mm, addr)
        if not pte:
            unpin_user_pages(mm, done)
            return -EFAULT
        pfn = _follow_pfn(mm, addr, pte)
        _grab(k.memmap, cython.cast(i64, k.memmap.head[pfn]))
        done.append(pfn)
        count(k.counters, PINS, 1)
    mm.has_pinned = True
    mm.pinned.extend(done)
    return 0


@cython.ccall
def unpin_user_pages(mm: MmStruct, pfns: Sequence[int]) -> None:
    """Models: mm/gup.c ``unpin_user_pages()``."""
    k: Kernel = mm.kernel
    mem: MemMap = k.memmap
    folio: i64
    pfn: i64
    for p in pfns:
        pfn = p
        folio = cython.cast(i64, mem.head[pfn])
        if cython.cast(i64, mem.order[folio]) > 0:
            mem.pincount[folio] -= 1
            k.folio_put(folio, 1)
        else:
            k.folio_put(folio, GUP_PIN_COUNTING_BIAS)
        count(k.counters, UNPINS, 1)


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(PINS=PINS, UNPINS=UNPINS)
