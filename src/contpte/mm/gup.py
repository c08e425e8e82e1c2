"""Long-term pins (pin_user_pages_fast / pin_user_pages with FOLL_LONGTERM).

Models: mm/gup.c (Linux v6.12).  ``pin_user_pages_fast`` (the entry
io_uring's fixed buffers use) is ``gup_fast_fallback``: GUP-fast first
(``gup_fast``: a lockless walk with IRQs off; per PTE ``ptep_get_lockless``,
``try_grab_folio_fast``, then the re-check that the PTE did not change;
``mm->write_protect_seq`` read before and re-checked after, so a fork that
write-protected meanwhile makes it drop every pin it took), then the slow
path for the rest under the mmap_lock.  The slow path ``__get_user_pages`` faults in each page
as needed (a write pin breaks CoW; a read-only pin of a shared anon page
unshares it first, ``gup_must_unshare``), then ``try_grab_folio(FOLL_PIN)``
raises the refcount by GUP_PIN_COUNTING_BIAS for order-0 folios or by one
plus ``_pincount`` for large ones, and sets MMF_HAS_PINNED on the mm.

Compiled (docs/core.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cython

from ..counters import counter

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64, u64
    from ..counters import count
    from ..hw.tables import AddressSpace
    from .kernel import Kernel
    from .memmap import (
        GUP_PIN_COUNTING_BIAS,
        MemMap,
        PageAnonExclusive,
        folio_ref_add,
        folio_ref_count,
        folio_test_anon,
    )
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

__all__ = ["pin_user_pages", "pin_user_pages_fast", "gup_fast", "gup_fast_pte_range", "unpin_user_pages"]

PINS = cython.declare(i64, counter("gup.pin"))
UNPINS = cython.declare(i64, counter("gup.unpin"))
FAST = cython.declare(i64, counter("gup.fast"))
FAST_BACKOUT = cython.declare(i64, counter("gup.fast_backout"))

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


@cython.cfunc
def _pinned(k: Kernel, mm: MmStruct, addr: i64, pfn: i64) -> None:
    """A page is pinned for ``addr``: tell the validators (``k.on_pin_page``)."""
    if k.on_pin_page is not None:
        k.on_pin_page(mm, addr, pfn)


@cython.ccall
@cython.exceptval(-1, check=True)
def gup_fast_pte_range(mm: MmStruct, addr: i64, end: i64, write: cython.bint, pages: Any) -> i64:
    """Pin the pages of ``[addr, end)`` (one page table) locklessly; how many (stops at the first miss).

    Models: mm/gup.c ``gup_fast_pte_range()`` (v6.12) for FOLL_PIN |
    FOLL_LONGTERM: ``ptep_get_lockless`` (on arm64 a folded block is
    ``contpte_ptep_get_lockless``); a protnone, not permitted
    (``pte_access_permitted``: a write pin needs a writable PTE) or special
    entry ends the walk; ``try_grab_folio_fast`` (fails on a folio being
    freed, refcount 0); then ``pte_val(pte) != pte_val(ptep_get(ptep))``:
    the PTE changed since it was read, the pin is dropped and the walk ends
    (bug catalog ``gup_fast_no_pte_recheck``: no re-check); a long-term pin
    of a non-shmem file folio (``gup_fast_folio_allowed``) and a read pin
    that must unshare (``gup_must_unshare``) end it too.  Between the read
    and the grab another CPU may change the PTE (``k.yield_hook(
    "gup_fast_pte_range")``: GUP-fast holds no lock, only IRQs off, which
    keeps the page table from being freed).  The pfns pinned are appended
    to ``pages`` (``struct page **pages``).

    Context: IRQs disabled; no mmap_lock, no PTL.
    """
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    ptep: i64 = mm.space.pte_ptr(addr)
    nr: i64 = 0
    pte: u64
    pfn: i64
    folio: i64
    if ptep < 0:
        return 0
    while addr < end:
        pte = a.ptep_get_lockless(ptep)
        if not a.pte_present(pte) or a.pte_protnone(pte):
            break
        if write and not a.pte_write(pte):  # pte_access_permitted()
            break
        if a.pte_special(pte):
            break
        pfn = a.pte_pfn(pte)
        if k.yield_hook is not None:
            k.yield_hook("gup_fast_pte_range", mm, addr)
        # try_grab_folio_fast(): folio_try_get() fails on a folio being freed,
        # and the page must still belong to the folio it was in.
        folio = cython.cast(i64, mem.head[pfn])
        if folio < 0 or folio_ref_count(mem, folio) <= 0:
            break  # freed meanwhile (a free frame has no folio)
        _grab(mem, folio)
        if not k.bug("gup_fast_no_pte_recheck") and pte != a.ptep_get(ptep):
            _ungrab(k, folio)
            count(k.counters, FAST_BACKOUT, 1)
            break
        if (
            write
            and not folio_test_anon(mem, folio)
            and (
                mem.mapping[folio] < 0
                or not cython.cast(File, k.files[cython.cast(i64, mem.mapping[folio])]).shmem
            )
        ):
            _ungrab(k, folio)  # gup_fast_folio_allowed(): no writable long-term pin of file pages
            break
        if not a.pte_write(pte) and folio_test_anon(mem, folio) and not PageAnonExclusive(mem, pfn):
            _ungrab(k, folio)  # gup_must_unshare()
            break
        _pinned(k, mm, addr, pfn)
        pages.append(pfn)
        nr += 1
        ptep += 1
        addr += k.PAGE_SIZE
    return nr


@cython.ccall
@cython.exceptval(-1, check=True)
def gup_fast(mm: MmStruct, start: i64, end: i64, write: cython.bint, pages: Any) -> i64:
    """Pin what GUP-fast can of ``[start, end)``; how many pages (from ``start``).

    Models: mm/gup.c ``gup_fast()`` (v6.12) for FOLL_PIN: the
    ``write_protect_seq`` read first (odd: a fork is write-protecting this
    mm: pin nothing), the walk (``gup_fast_pgd_range``; a PMD-mapped range
    is left to the slow path in the model), then ``read_seqcount_retry``:
    a fork wrote meanwhile, every pin taken is dropped
    (``gup_fast_unpin_user_pages``).  Bug catalog
    ``gup_fast_no_write_protect_seq``: no seqcount checks (the race
    57efa1fe5957 closed).

    Context: IRQs disabled during the walk; no lock.
    """
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    check_seq: cython.bint = not k.bug("gup_fast_no_write_protect_seq")
    seq: i64 = mm.write_protect_seq
    if check_seq and seq & 1:
        return 0
    first: i64 = len(pages)
    addr: i64 = start
    nxt: i64
    got: i64
    while addr < end:
        nxt = min((addr & ~(a.PMD_SIZE - 1)) + a.PMD_SIZE, end)
        if mm.space.pmd_peek(addr >> a.PMD_SHIFT):
            break
        got = gup_fast_pte_range(mm, addr, nxt, write, pages)
        addr += got << k.page_shift
        if addr != nxt:
            break
    nr: i64 = len(pages) - first
    if check_seq and mm.write_protect_seq != seq:
        for pfn in pages[first:]:
            _ungrab(k, cython.cast(i64, k.memmap.head[pfn]))
        count(k.counters, FAST_BACKOUT, nr)
        del pages[first:]
        return 0
    return nr


@cython.ccall
@cython.exceptval(-1, check=True)
def pin_user_pages_fast(mm: MmStruct, start: i64, nr_pages: i64, write: cython.bint, pages: Any) -> i64:
    """Pin ``nr_pages`` from ``start``, GUP-fast first; 0 or -errno (nothing stays pinned on error).

    Models: mm/gup.c ``pin_user_pages_fast()`` -> ``gup_fast_fallback()``
    (v6.12) with FOLL_LONGTERM: ``gup_fast``, then ``__gup_longterm_locked``
    for the rest under the mmap_lock for read (``k.on_mmap_read_lock``: a
    scheduler blocks there while another thread's step holds it for write;
    the fast pins are dropped first and the whole pin retried after).  The
    model returns all or nothing: the slow path's error drops the fast pins.
    The pfns pinned are appended to ``pages`` (``struct page **pages``) and
    to ``mm.pinned``.
    """
    k: Kernel = mm.kernel
    fast: Any = []
    mm.has_pinned = True  # mm_set_has_pinned_flag()
    nr: i64 = gup_fast(mm, start, start + nr_pages * k.PAGE_SIZE, write, fast)
    count(k.counters, FAST, nr)
    count(k.counters, PINS, nr)
    ret: i64 = 0
    if nr < nr_pages:
        if k.on_mmap_read_lock is not None:
            try:
                k.on_mmap_read_lock(mm)
            except BaseException:
                unpin_user_pages(mm, fast)
                raise
        ret = pin_user_pages(mm, start + nr * k.PAGE_SIZE, nr_pages - nr, write, fast)
        if ret:
            unpin_user_pages(mm, fast[:nr])
            return ret
    else:
        mm.pinned.extend(fast)
    pages.extend(fast)
    return 0


@cython.cfunc
def _ungrab(k: Kernel, folio: i64) -> None:
    """``gup_put_folio(folio, 1, FOLL_PIN)`` of a pin not handed out."""
    mem: MemMap = k.memmap
    if cython.cast(i64, mem.order[folio]) > 0:
        mem.pincount[folio] -= 1
        k.folio_put(folio, 1)
    else:
        k.folio_put(folio, GUP_PIN_COUNTING_BIAS)


@cython.ccall
@cython.exceptval(-1, check=True)
def pin_user_pages(mm: MmStruct, start: i64, nr_pages: i64, write: cython.bint, pages: Any = None) -> i64:
    """Pin ``nr_pages`` from ``start``; 0 or -errno (nothing stays pinned on error).

    Models: mm/gup.c ``__gup_longterm_locked()`` -> ``__get_user_pages()``
    (the slow path).  The pinned pfns are added to ``mm.pinned`` (the
    model's record of the caller's ``struct page *`` array) and to
    ``pages`` if given (after the GUP-fast pins it holds, which join
    ``mm.pinned`` too).

    Context: mmap_lock held for read.
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
        _pinned(k, mm, addr, pfn)
        done.append(pfn)
        count(k.counters, PINS, 1)
    mm.has_pinned = True
    if pages is not None:
        # The GUP-fast pins before these (pin_user_pages_fast), then these.
        mm.pinned.extend(pages)
        pages.extend(done)
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
    globals().update(PINS=PINS, UNPINS=UNPINS, FAST=FAST, FAST_BACKOUT=FAST_BACKOUT)
