"""Long-term pins (pin_user_pages with FOLL_LONGTERM).

Models: mm/gup.c (Linux v6.12): ``__get_user_pages`` faults in each page
as needed (a write pin breaks CoW; a read-only pin of a shared anon page
unshares it first, ``gup_must_unshare``), then ``try_grab_folio(FOLL_PIN)``
raises the refcount by GUP_PIN_COUNTING_BIAS for order-0 folios or by one
plus ``_pincount`` for large ones, and sets MMF_HAS_PINNED on the mm.
"""

from __future__ import annotations

import errno

from ..counters import counter
from .memmap import GUP_PIN_COUNTING_BIAS, Folio
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
)

__all__ = ["pin_user_pages", "unpin_user_pages"]

PINS = counter("gup.pin")
UNPINS = counter("gup.unpin")


def _follow_page(mm: MmStruct, addr: int) -> tuple[int, int] | None:
    """The present mapping of ``addr``: (pte-format entry, pfn), or None."""
    k = mm.kernel
    a = k.arch
    idx = addr >> a.PMD_SHIFT
    pmd = mm.space.pmds.get(idx)
    if pmd is not None:
        pte = a.pmd_pte(pmd)
        if not a.pte_present(pte):
            return None
        off = (addr & (a.PMD_SIZE - 1)) >> k.page_shift
        return pte, a.pte_pfn(pte) + off
    t = mm.space.pte_table(idx)
    if t is None:
        return None
    pte = int(t.entries[(addr >> k.page_shift) & (a.PTRS_PER_PTE - 1)])
    if not a.pte_present(pte) or a.pte_protnone(pte):
        return None
    return pte, a.pte_pfn(pte)


def _must_fault(mm: MmStruct, addr: int, pte: int, pfn: int, write: bool) -> int:
    """0 if the page can be pinned as mapped, else the fault flags to use.

    Models: mm/gup.c ``follow_page_pte()`` checks: a write pin needs a
    writable PTE; a read pin of an anon page that is not exclusive must
    unshare it first (``gup_must_unshare``).
    """
    k = mm.kernel
    a = k.arch
    if write:
        return 0 if a.pte_write(pte) else FAULT_FLAG_WRITE
    if a.pte_special(pte):
        return 0
    folio = k.folio(pfn)
    pmd_mapped = (addr >> a.PMD_SHIFT) in mm.space.pmds
    flag_page = folio.pfn if pmd_mapped else pfn
    if folio.test_anon() and not folio.page_anon_exclusive(flag_page):
        return FAULT_FLAG_UNSHARE
    return 0


def pin_user_pages(mm: MmStruct, start: int, nr_pages: int, write: bool) -> int:
    """Pin ``nr_pages`` from ``start``; 0 or -errno (nothing stays pinned on error)."""
    k = mm.kernel
    done: list[int] = []
    for i in range(nr_pages):
        addr = start + i * k.PAGE_SIZE
        vma = mm.vma_lookup(addr)
        if vma is None:
            unpin_user_pages(mm, done)
            return -errno.EFAULT
        if write and not vma.vm_flags & VM_WRITE:
            unpin_user_pages(mm, done)
            return -errno.EFAULT
        if not write and not vma.vm_flags & VM_READ:
            # check_vma_flags(): a read pin (no FOLL_FORCE) needs VM_READ.
            unpin_user_pages(mm, done)
            return -errno.EFAULT
        if write and vma.vm_file is not None and not vma.vm_file.shmem and vma.vm_flags & VM_SHARED:
            # v6.5+: no writable long-term pins of file-backed memory needing writeback.
            unpin_user_pages(mm, done)
            return -errno.EFAULT
        for _ in range(4):
            got = _follow_page(mm, addr)
            flags = FAULT_FLAG_WRITE if write else 0
            if got is not None:
                pte, pfn = got
                need = _must_fault(mm, addr, pte, pfn, write)
                if not need:
                    break
                flags = need
            ret = handle_mm_fault(vma, addr, flags)
            if ret & VM_FAULT_OOM:
                unpin_user_pages(mm, done)
                return -errno.ENOMEM
            if ret & VM_FAULT_UFFD_WP:
                # GUP does not wait for a userfaultfd monitor here: -EFAULT.
                unpin_user_pages(mm, done)
                return -errno.EFAULT
        got = _follow_page(mm, addr)
        if got is None:
            unpin_user_pages(mm, done)
            return -errno.EFAULT
        pfn = got[1]
        folio = k.folio(pfn)
        _grab(folio)
        done.append(pfn)
        k.counters.add(PINS)
    mm.has_pinned = True
    mm.pinned.extend(done)
    return 0


def _grab(folio: Folio) -> None:
    """``try_grab_folio(folio, 1, FOLL_PIN)``."""
    if folio.test_large():
        folio.ref_add(1)
        folio.mem.pincount[folio.pfn] += 1
    else:
        folio.ref_add(GUP_PIN_COUNTING_BIAS)


def unpin_user_pages(mm: MmStruct, pfns: list[int]) -> None:
    """Models: mm/gup.c ``unpin_user_pages()``."""
    k = mm.kernel
    for pfn in pfns:
        folio = k.folio(pfn)
        if folio.test_large():
            folio.mem.pincount[folio.pfn] -= 1
            k.folio_put(folio, 1)
        else:
            k.folio_put(folio, GUP_PIN_COUNTING_BIAS)
        k.counters.add(UNPINS)
