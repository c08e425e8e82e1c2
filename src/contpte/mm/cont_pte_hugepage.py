"""The OnePlus "dynamic hugepage" design: 64K blocks managed by core-mm.

Models: mm/cont_pte_hugepage.c and its hooks in mm/memory.c of
OnePlusOSS/android_kernel_oneplus_sm8550 (5.15; the files read are at
commits 40ddc543cdcf and c56550493ad7, see docs/oneplus.md), the design
Barry Song (OPPO) described in the review of the contpte series.  Selected
by ``Machine(policy="oneplus")`` (``Kernel.oneplus``); arm64 only.

Core-mm, not the arch backend, decides where the Contiguous bit goes: an
anonymous write fault in an eligible VMA (named by prctl, 2 MB or more)
allocates a whole 64K block from the cont-pte hugepage pool and writes its
16 PTEs with the bit set, break-before-make (``cont_pte_set_huge_pte_at``:
clear the 16 entries, flush the range, write them).  The block is one
mapping for the rmap (the entire mapcount, as for a PMD-mapped THP) and
holds one reference per mapping.  Whatever touches part of a block splits
it first (``_split_huge_cont_pte_locked``): the 16 entries are rewritten
without the bit, each page gets its own mapcount and reference, and from
then on the folio is an ordinary PTE-mapped large folio.

A ``pte_t *`` is an int (the descriptor's index in the machine's pool), a
``struct page *`` of a block its first pfn.  Not compiled (called from the
compiled ``memory.py``, which imports it; it must not import ``memory``).
"""

from __future__ import annotations

from typing import Any

from ..counters import counter
from ..errors import KernelBug
from .chp_pool import HPAGE_CONT_PTE_ORDER, alloc_cont_pte_hugepage
from .kernel import PAGE_ZERO, REF_GETS, THP_FAULT_ALLOC, THP_FAULT_FALLBACK, THP_SPLIT_PMD
from .memmap import PG_cont, PG_double_map, folio_ref_add
from .mm_h import pte_offset_map_lock, pte_unmap_unlock, userfaultfd_armed, vm_normal_folio
from .mm_types import (
    FAULT_FLAG_WRITE,
    MM_ANONPAGES,
    VM_CONT_PTE,
    VM_FAULT_FALLBACK,
    VM_SHARED,
    VM_WRITE,
    is_cow_mapping,
    vma_is_anonymous,
    vma_mm,
)
from .rmap import (
    RMAP_EXCLUSIVE,
    anon_vma_prepare,
    folio_add_large_mapcount,
    folio_add_new_anon_rmap,
    folio_needs_cow_for_dma,
    folio_sub_large_mapcount,
    folio_try_dup_anon_rmap_pmd,
    rmap_changed,
)

__all__ = [
    "HPAGE_CONT_PTE_NR",
    "VM_CONT_PTE",
    "CHP_VMA_NAMES",
    "prctl_set_vma_name",
    "transhuge_cont_pte_vma_suitable",
    "cont_pte_none",
    "cont_pte_trans_huge",
    "cont_pte_set_huge_pte_at",
    "cont_pte_set_huge_pte_wrprotect",
    "cont_pte_huge_ptep_get_and_clear",
    "cont_pte_huge_ptep_get_and_clear_flush",
    "split_huge_cont_pte_address",
    "split_cont_pte_range",
    "do_huge_cont_pte_anonymous_page",
    "copy_present_cont_pte",
]

#: HPAGE_CONT_PTE_NR: the PTEs (and pages) of a block with 4K pages.
HPAGE_CONT_PTE_NR = 1 << HPAGE_CONT_PTE_ORDER
#: The two anon VMA names the design maps with blocks (``NATIVE_HEAP``,
#: ``DALVIK_MAIN_HEAP`` in mm/cont_pte_hugepage.c).
CHP_VMA_NAMES = ("libc_malloc", "dalvik-main space (region space)")
#: ``handle_chp_prctl_user_addrs()``: a named range shorter than this is not eligible.
CHP_MIN_LEN = 2 << 20
#: include/uapi/linux/prctl.h and mm/madvise.c: ANON_VMA_NAME_MAX_LEN (with the NUL).
ANON_VMA_NAME_MAX_LEN = 80

EINVAL = 22
ENOMEM = 12
EBADF = 9
EAGAIN = 11

_C: dict[str, int] = {}


def count_vm_chp_event(k: Any, name: str, n: int = 1) -> None:
    """``count_vm_chp_events()`` and the design's atomic counters: count ``chp.<name>`` by ``n``."""
    cid = _C.get(name)
    if cid is None:
        cid = _C[name] = counter("chp." + name)
    k.counters.inc(cid, n)


def _haddr(k: Any, addr: int) -> int:
    return int(addr) & ~((int(k.PAGE_SIZE) << HPAGE_CONT_PTE_ORDER) - 1)


# -- eligibility ----------------------------------------------------------------
def prctl_set_vma_name(mm: Any, start: int, length: int, name: str | None) -> int:
    """Name ``[start, start+length)`` like prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME); 0 or -errno.

    Models: kernel/sys.c ``prctl_set_vma()`` -> mm/madvise.c
    ``madvise_set_anon_name()`` (EINVAL for an unaligned start, a range
    that wraps, a name of ``ANON_VMA_NAME_MAX_LEN`` characters or more or
    with a character outside printable ASCII or one of ``\\`$[]``; EBADF
    for a file mapping; ENOMEM if part of the range is unmapped, the mapped
    parts still named), plus the design's hook
    (``handle_chp_prctl_user_addrs()``): the name "libc_malloc" or
    "dalvik-main space (region space)" on a range of 2 MB or more makes the
    VMAs eligible for 64K blocks (``VM_CONT_PTE``); any other name (or
    none) makes them ineligible.  The hook's UID blacklist, the libc.so
    owner check and the 32-bit exclusion are not modelled.  The name itself
    is not kept (the model has no /proc/PID/maps names).
    """
    from .madvise import madvise_update_vma

    k = mm.kernel
    ps = k.PAGE_SIZE
    if name is not None:
        if len(name) >= ANON_VMA_NAME_MAX_LEN:
            return -EINVAL
        for ch in name:
            if not (0x20 <= ord(ch) < 0x7F) or ch in "\\`$[]":
                return -EINVAL
    if start & (ps - 1) or length < 0:
        return -EINVAL
    length = (length + ps - 1) & ~(ps - 1)
    end = start + length
    if end < start:
        return -EINVAL
    if end == start:
        return 0
    eligible = name in CHP_VMA_NAMES and length >= CHP_MIN_LEN
    unmapped = False
    cur = start
    vmas = mm.vmas_in(start, end)
    for v in vmas:
        if v.vm_start > cur:
            unmapped = True
        cur = v.vm_end
        if not vma_is_anonymous(v):
            return -EBADF
    if cur < end:
        unmapped = True
    for v in vmas:
        s = max(start, v.vm_start)
        e = min(end, v.vm_end)
        if eligible:
            madvise_update_vma(v, s, e, VM_CONT_PTE, 0)
        else:
            madvise_update_vma(v, s, e, 0, VM_CONT_PTE)
    return -ENOMEM if unmapped else 0


def transhuge_cont_pte_vma_suitable(vma: Any, haddr: int) -> bool:
    """May the block at ``haddr`` of ``vma`` be mapped whole?

    Models: mm/cont_pte_hugepage.c ``transhuge_cont_pte_vma_suitable()``
    for anonymous memory: the VMA is named for hugepages, is private, and
    holds the whole aligned block.  (brk and stack VMAs, which the design
    refuses, do not exist in the model; file blocks are not modelled.)
    With ``cont_pte_hugepage_on_qemu`` every private anonymous VMA is named
    (CONFIG_CONT_PTE_HUGEPAGE_ON_QEMU).
    """
    k = vma_mm(vma).kernel
    if not vma_is_anonymous(vma) or vma.vm_flags & VM_SHARED:
        return False
    if not vma.vm_flags & VM_CONT_PTE and not k.options["cont_pte_hugepage_on_qemu"]:
        return False
    return bool(vma.vm_start <= haddr and haddr + (k.PAGE_SIZE << HPAGE_CONT_PTE_ORDER) <= vma.vm_end)


def cont_pte_none(k: Any, ptep: int) -> bool:
    """Models: ``cont_pte_none()``: all 16 entries of the block at ``ptep`` are none."""
    a = k.arch
    return all(a.pte_none(a.ptep_get(ptep + i)) for i in range(HPAGE_CONT_PTE_NR))


def cont_pte_trans_huge(k: Any, ptep: int, reason: str) -> bool:
    """Is the block holding ``ptep`` a whole Contiguous block?  A partial one is a bug.

    Models: mm/cont_pte_hugepage.c ``cont_pte_trans_huge(ptep, reason)``
    (CONFIG_CHP_ABMORMAL_PTES_DEBUG): counts the entries with the Contiguous
    bit; some but not all 16 is a corrupt block, recorded by ``reason`` (the
    call site: ``chp.corrupt_cont_pte.<reason>``) and ``CHP_BUG_ON``.
    """
    a = k.arch
    base = ptep & ~(HPAGE_CONT_PTE_NR - 1)
    vals = [a.ptep_get(base + i) for i in range(HPAGE_CONT_PTE_NR)]
    nr = sum(1 for v in vals if a.pte_cont(v))
    if 0 < nr < HPAGE_CONT_PTE_NR:
        count_vm_chp_event(k, "corrupt_cont_pte." + reason)
        raise KernelBug("CHP_BUG_ON", f"corrupted cont_pte ({reason}): {nr} of 16 entries Contiguous", None)
    return nr == HPAGE_CONT_PTE_NR


# -- the design's own PTE helpers (copied there from arm64 hugetlbpage.c) ---------
def _get_clear_flush(vma: Any, addr: int, ptep: int, flush: bool) -> int:
    """Clear the 16 entries, gathering dirty and young into the first; flush if asked.

    Models: mm/cont_pte_hugepage.c ``get_clear_flush()``.
    """
    mm = vma_mm(vma)
    a = mm.kernel.arch
    ps = mm.kernel.PAGE_SIZE
    orig = a.ptep_get(ptep)
    valid = a.pte_valid(orig)
    for i in range(HPAGE_CONT_PTE_NR):
        pte = a.ptep_get_and_clear(mm, addr + i * ps, ptep + i)
        if a.pte_dirty(pte):
            orig = a.pte_mkdirty(orig)
        if a.pte_young(pte):
            orig = a.pte_mkyoung(orig)
    if valid and flush:
        a.flush_tlb_range(vma, addr, addr + HPAGE_CONT_PTE_NR * ps)
    return int(orig)


def cont_pte_huge_ptep_get_and_clear(vma: Any, addr: int, ptep: int) -> int:
    """Clear a whole block without a flush (the caller's mmu_gather flushes).

    Models: ``cont_pte_huge_ptep_get_and_clear()``.  Context: PTL held; ``addr``
    and ``ptep`` at the block's first entry.
    """
    return _get_clear_flush(vma, addr, ptep, False)


def cont_pte_huge_ptep_get_and_clear_flush(vma: Any, addr: int, ptep: int) -> int:
    """Models: ``cont_pte_huge_ptep_get_and_clear_flush()``: clear a whole block and flush it."""
    return _get_clear_flush(vma, addr, ptep, True)


def _clear_flush(vma: Any, addr: int, ptep: int) -> None:
    """Models: ``clear_flush()``: clear the 16 entries, then flush the range."""
    mm = vma_mm(vma)
    a = mm.kernel.arch
    ps = mm.kernel.PAGE_SIZE
    for i in range(HPAGE_CONT_PTE_NR):
        a.pte_clear(mm, addr + i * ps, ptep + i)
    a.flush_tlb_range(vma, addr, addr + HPAGE_CONT_PTE_NR * ps)


def cont_pte_set_huge_pte_at(vma: Any, addr: int, ptep: int, pte: int) -> None:
    """Write a whole block: break (clear and flush) then make the 16 Contiguous entries.

    Models: mm/cont_pte_hugepage.c ``cont_pte_set_huge_pte_at()``: each
    entry maps the next page, with ``pte``'s attributes and the Contiguous
    bit.  ``pte``: the first entry.  Context: PTL held; aligned block.
    """
    mm = vma_mm(vma)
    k = mm.kernel
    a = k.arch
    pfn = a.pte_pfn(pte)
    if pfn & (HPAGE_CONT_PTE_NR - 1) or _haddr(k, addr) != addr:
        raise KernelBug("CHP_BUG_ON", f"unaligned block pfn {pfn:#x} at {addr:#x}", addr)
    prot = a.pte_pgprot(a.pte_mkcont(pte))
    _clear_flush(vma, addr, ptep)
    for i in range(HPAGE_CONT_PTE_NR):
        a.set_pte_at(mm, addr + i * k.PAGE_SIZE, ptep + i, a.pfn_pte(pfn + i, prot))


def cont_pte_set_huge_pte_wrprotect(vma: Any, addr: int, ptep: int) -> None:
    """Write-protect a whole block: clear and flush it, then write it read-only.

    Models: ``cont_pte_set_huge_pte_wrprotect()``.
    """
    mm = vma_mm(vma)
    k = mm.kernel
    a = k.arch
    pte = a.pte_wrprotect(_get_clear_flush(vma, addr, ptep, True))
    prot = a.pte_pgprot(pte)
    pfn = a.pte_pfn(pte)
    for i in range(HPAGE_CONT_PTE_NR):
        a.set_pte_at(mm, addr + i * k.PAGE_SIZE, ptep + i, a.pfn_pte(pfn + i, prot))


# -- split ------------------------------------------------------------------------
def _split_huge_cont_pte_locked(vma: Any, ptep: int, haddr: int) -> None:
    """Turn a block mapping into 16 PTE mappings with per-page mapcounts.

    Models: mm/cont_pte_hugepage.c ``__split_huge_cont_pte_locked()`` for
    anonymous memory, without ``freeze`` (migration entries are not
    modelled): the entries are read, the block is cleared and flushed, each
    entry is written again without the Contiguous bit (its own young and
    dirty kept), and the block's one reference and entire mapcount become
    16 references and per-page mapcounts (``page_ref_add(head, 15)``, then
    ``_mapcount`` of each page).  If other mms still map the block whole
    (entire mapcount > 1) the folio becomes "double mapped"
    (``PageDoubleMap``, ``chp.double_map``); 5.15's extra per-page
    ``_mapcount`` that comes with it is an encoding ``page_mapcount()``
    subtracts again, so the model keeps the logical counts only.  Counts
    ``thp_split_pmd`` as the design does (``THP_SPLIT_CONT_PTE``) and
    ``chp.split``.  Context: PTL held; ``ptep``/``haddr`` at the block's
    first entry.
    """
    mm = vma_mm(vma)
    k = mm.kernel
    a: Any = k.arch  # arm64 (pte_mknoncont)
    mem = k.memmap
    ps = k.PAGE_SIZE
    first = a.ptep_get(ptep)
    if not a.pte_cont(first) or _haddr(k, haddr) != haddr:
        raise KernelBug("CHP_BUG_ON", f"split of a non-block at {haddr:#x}", haddr, [first])
    if haddr < vma.vm_start or haddr + HPAGE_CONT_PTE_NR * ps > vma.vm_end:
        raise KernelBug("VM_BUG_ON_VMA", f"block at {haddr:#x} leaves the VMA", haddr)
    k.counters.inc(THP_SPLIT_PMD, 1)
    count_vm_chp_event(k, "split")
    folio = vm_normal_folio(vma, haddr, first)
    old = [a.ptep_get(ptep + i) for i in range(HPAGE_CONT_PTE_NR)]
    if folio >= 0:
        # The new PTE mappings' references come before their mapcounts.
        folio_ref_add(mem, folio, HPAGE_CONT_PTE_NR - 1)
        k.counters.inc(REF_GETS, 1)
    cont_pte_huge_ptep_get_and_clear_flush(vma, haddr, ptep)
    for i in range(HPAGE_CONT_PTE_NR):
        a.set_pte_at(mm, haddr + i * ps, ptep + i, a.pte_mknoncont(old[i]))
    if folio < 0:
        return
    for i in range(HPAGE_CONT_PTE_NR):
        mem.mapcount[folio + i] += 1
    folio_add_large_mapcount(mem, folio, HPAGE_CONT_PTE_NR, vma)
    if int(mem.entire_mapcount[folio]) > 1 and not int(mem.flags[folio]) & PG_double_map:
        mem.flags[folio] |= PG_double_map
        count_vm_chp_event(k, "double_map")
    mem.entire_mapcount[folio] -= 1
    folio_sub_large_mapcount(mem, folio, 1, vma)
    if int(mem.entire_mapcount[folio]) == 0:
        mem.flags[folio] &= 0xFFFFFFFF & ~PG_double_map
    rmap_changed(k, folio)


def split_huge_cont_pte_address(vma: Any, address: int) -> None:
    """Split the block holding ``address``, if it is one.

    Models: mm/cont_pte_hugepage.c ``split_huge_cont_pte_address()`` (takes
    and drops the PTL).
    """
    mm = vma_mm(vma)
    k = mm.kernel
    haddr = _haddr(k, address)
    ptep = pte_offset_map_lock(mm, haddr, False)
    if ptep < 0:
        return
    pte = k.arch.ptep_get(ptep)
    if k.arch.pte_present(pte) and k.arch.pte_cont(pte):
        cont_pte_trans_huge(k, ptep, "split")
        _split_huge_cont_pte_locked(vma, ptep, haddr)
    pte_unmap_unlock(mm, ptep)


def split_cont_pte_range(vma: Any, start: int, end: int) -> None:
    """Split every block of ``vma`` that overlaps ``[start, end)``.

    Model helper (like ``split_huge_pmd_address()`` over a range): the
    walks the model does not teach about blocks (mprotect, MADV_FREE,
    MADV_COLD/PAGEOUT, mremap, khugepaged, uffd-wp, NUMA hinting, reclaim's
    rmap walk) call it first, and then see an ordinary PTE-mapped large
    folio.  Nothing to do outside ``policy="oneplus"``.
    """
    k = vma_mm(vma).kernel
    if not k.oneplus:
        return
    size = k.PAGE_SIZE << HPAGE_CONT_PTE_ORDER
    addr = _haddr(k, max(start, vma.vm_start))
    end = min(end, vma.vm_end)
    while addr < end:
        if addr >= vma.vm_start and addr + size <= vma.vm_end:
            split_huge_cont_pte_address(vma, addr)
        addr += size


# -- mm/memory.c hooks ------------------------------------------------------------
def do_huge_cont_pte_anonymous_page(vmf: Any) -> int:
    """Map a whole 64K block on an anonymous write fault; 0 or VM_FAULT_FALLBACK.

    Models: mm/memory.c (OnePlus) ``do_huge_cont_pte_anonymous_page()`` and
    ``__do_huge_cont_pte_anonymous_page()``: a suitable VMA, a block from
    the pool (``alloc_cont_pte_hugepage()``, zeroed), then, under the PTL,
    all 16 entries none (``cont_pte_none``: another thread may have mapped
    a page in the range since; the scheduler's ``chp.alloc`` point is that
    window, bug catalog ``chp_fault_no_cont_pte_none_recheck``);
    the 16 PTEs are written writable, dirty, young and Contiguous
    (``cont_pte_set_huge_pte_at``), one entire mapping is added and the RSS
    grows by 16.  An allocation failure counts ``thp_fault_fallback`` and
    ``chp.thp_do_anon_pages_fallback``; the caller then maps a base page.
    A read fault falls back too: the design maps the huge zero page's first
    64K there, which the model does not (docs/oneplus.md).
    """
    vma = vmf.vma
    mm = vma_mm(vma)
    k = mm.kernel
    a = k.arch
    haddr = _haddr(k, vmf.address)
    if not transhuge_cont_pte_vma_suitable(vma, haddr):
        return VM_FAULT_FALLBACK
    if not vmf.flags & FAULT_FLAG_WRITE or userfaultfd_armed(vma):
        return VM_FAULT_FALLBACK
    anon_vma_prepare(vma)
    pfn = alloc_cont_pte_folio(k, True)
    if pfn < 0:
        k.counters.inc(THP_FAULT_FALLBACK, 1)
        count_vm_chp_event(k, "thp_do_anon_pages_fallback")
        return VM_FAULT_FALLBACK
    count_vm_chp_event(k, "thp_do_anon_pages")
    hook = k.hw.yield_hook
    if hook is not None:
        # The block is allocated before the PTL is taken (the pool may wake
        # kswapd): other threads of the mm (read locks only are held) may
        # fault and madvise in the block's range meanwhile.
        hook("chp.alloc", haddr)
    ptep = pte_offset_map_lock(mm, haddr, True)
    fault_ptep = ptep + ((vmf.address - haddr) >> k.page_shift)
    if not a.pte_none(a.ptep_get(fault_ptep)):
        pte_unmap_unlock(mm, ptep)
        k.folio_put(pfn, 1)
        return 0
    if not k.bug("chp_fault_no_cont_pte_none_recheck") and not cont_pte_none(k, ptep):
        pte_unmap_unlock(mm, ptep)
        k.folio_put(pfn, 1)
        return VM_FAULT_FALLBACK
    entry = a.pfn_pte(pfn, vma.vm_page_prot)
    if vma.vm_flags & VM_WRITE:
        entry = a.pte_mkwrite(a.pte_mkdirty(entry))
    entry = a.pte_mkyoung(entry)
    cont_pte_set_huge_pte_at(vma, haddr, ptep, entry)
    folio_add_new_anon_rmap(pfn, vma, haddr, RMAP_EXCLUSIVE, True)
    mm.add_mm_counter(MM_ANONPAGES, HPAGE_CONT_PTE_NR)
    k.counters.inc(THP_FAULT_ALLOC, 1)
    pte_unmap_unlock(mm, ptep)
    return 0


def _prep_cont_pte_folio(k: Any, pfn: int, zero: bool) -> None:
    """``SetPageCont()`` + ``prep_compound_page(page, HPAGE_CONT_PTE_ORDER)``: a block as a folio."""
    mem = k.memmap
    mem.prep(pfn, HPAGE_CONT_PTE_ORDER)
    mem.flags[pfn] |= PG_cont
    k.counters.add("folio.alloc", 1)
    k.counters.add("folio.alloc_pages", HPAGE_CONT_PTE_NR)
    if zero:
        for i in range(HPAGE_CONT_PTE_NR):
            k.arch.clear_highpage(pfn + i)
        k.counters.inc(PAGE_ZERO, HPAGE_CONT_PTE_NR)


def alloc_cont_pte_folio(k: Any, zero: bool) -> int:
    """A block from the pool prepared as an order-4 folio, or -1 (``alloc_cont_pte_hugepage()``)."""
    pfn = alloc_cont_pte_hugepage(k, 0)
    if pfn < 0:
        return -1  # counted by the pool (page_alloc_failed)
    _prep_cont_pte_folio(k, pfn, zero)
    return pfn


def copy_present_cont_pte(dst_vma: Any, src_vma: Any, dst_pte: int, src_pte: int, addr: int, rss: Any) -> int:
    """Copy a whole block to the child at fork; 0, or -EAGAIN to split it instead.

    Models: mm/memory.c (OnePlus) ``copy_present_cont_pte()``: one
    reference (``get_page``) and one entire-mapcount dup (``page_dup_rmap(page,
    true)``) for the block, RSS + 16; a CoW mapping's block is
    write-protected in the parent as a whole
    (``cont_pte_set_huge_pte_wrprotect``: clear, flush, rewrite) and the
    child's block written old (and clean in a shared mapping) with
    ``cont_pte_set_huge_pte_at``.  The design has no pinned-page check
    (5.15 has no PageAnonExclusive); the model returns -EAGAIN for a block
    that may be pinned, and the caller splits it and copies page by page
    as mainline does (docs/oneplus.md).  Context: both PTLs held; aligned.
    """
    k = vma_mm(src_vma).kernel
    a = k.arch
    mem = k.memmap
    pte = a.ptep_get(src_pte)
    folio = vm_normal_folio(src_vma, addr, pte)
    if folio >= 0:
        if folio_needs_cow_for_dma(src_vma, folio):
            return -EAGAIN
        folio_ref_add(mem, folio, 1)
        k.counters.inc(REF_GETS, 1)
        if folio_try_dup_anon_rmap_pmd(folio, dst_vma, src_vma):
            raise KernelBug("CHP_BUG_ON", f"block {folio:#x} could not be shared at fork", addr)
        rmap_changed(k, folio)
        rss.c[MM_ANONPAGES] += HPAGE_CONT_PTE_NR
    if is_cow_mapping(src_vma.vm_flags) and a.pte_write(pte):
        cont_pte_set_huge_pte_wrprotect(src_vma, addr, src_pte)
        pte = a.pte_wrprotect(pte)
    if src_vma.vm_flags & VM_SHARED:
        pte = a.pte_mkclean(pte)
    pte = a.pte_mkold(pte)
    cont_pte_set_huge_pte_at(dst_vma, addr, dst_pte, pte)
    count_vm_chp_event(k, "copy_block")
    return 0


def do_wp_cont_pte_page(vmf: Any, folio: int) -> int:
    """A write (or unshare) fault on a write-protected block: reuse it whole or copy it whole.

    Models: mm/memory.c (OnePlus) ``do_wp_page()``'s block branch:
    ``wp_cont_pte_hugepage_reuse()`` makes the 16 entries writable again
    (cleared, then ``cont_pte_set_huge_pte_at``) when the block is this
    mapping's alone (the model asks PageAnonExclusive first, as mainline
    does, then the design's test: one mapping, one reference: ``chp.wp_reuse``);
    otherwise ``wp_page_copy()`` copies it into a new block from the pool
    (``thp_cow``) or, when none is free, into 16 base pages
    (``thp_cow_fallback``), and drops the old block's entire mapping and
    reference.  A block the swap cache still holds (swapped in through it)
    first leaves it when this is its one mapping and no swap PTE refers to
    its slots (``reuse_swap_cont_pte_page()``: ``delete_from_swap_cache``),
    so that it can be reused.  The design's fallback clears and rewrites the 16 entries
    one at a time while the others still carry the Contiguous bit (an
    inconsistent contiguous set); the model clears the block whole first.
    Context: PTL held (``vmf.pte``); released on return.
    """
    from .memmap import PageAnonExclusive, PG_swapcache, SetPageAnonExclusive
    from .mm_h import maybe_mkwrite
    from .mm_types import FAULT_FLAG_UNSHARE, VM_FAULT_OOM

    vma = vmf.vma
    mm = vma_mm(vma)
    k = mm.kernel
    a = k.arch
    mem = k.memmap
    ps = k.PAGE_SIZE
    haddr = _haddr(k, vmf.address)
    ptep = vmf.pte - ((vmf.address - haddr) >> k.page_shift)
    cont_pte_trans_huge(k, ptep, "wp_page")
    unshare = bool(vmf.flags & FAULT_FLAG_UNSHARE)
    nr = HPAGE_CONT_PTE_NR
    exclusive = PageAnonExclusive(mem, a.pte_pfn(vmf.orig_pte))
    if (
        not exclusive
        and int(mem.flags[folio]) & PG_swapcache
        and int(mem.entire_mapcount[folio]) == 1
        and int(mem.large_mapcount[folio]) == 1
    ):
        # reuse_swap_cont_pte_page(): the one mapping and no swap count left
        # (no sibling's swap PTE): the block leaves the swap cache.
        from .swapfile import folio_free_swap

        folio_free_swap(k, k.swap, folio)
    if exclusive or (
        int(mem.entire_mapcount[folio]) == 1
        and int(mem.large_mapcount[folio]) == 1
        and int(mem.refcount[folio]) == 1
    ):
        SetPageAnonExclusive(mem, folio, nr)
        if not unshare:
            entry = a.pte_mkyoung(a.ptep_get(ptep))
            entry = maybe_mkwrite(a.pte_mkdirty(entry), vma)
            cont_pte_huge_ptep_get_and_clear(vma, haddr, ptep)
            cont_pte_set_huge_pte_at(vma, haddr, ptep, entry)
            count_vm_chp_event(k, "wp_reuse")
            k.counters.add("fault.wp_reuse", 1)
        pte_unmap_unlock(mm, vmf.pte)
        return 0
    k.counters.add("fault.wp_copy", 1)
    anon_vma_prepare(vma)
    new = alloc_cont_pte_folio(k, False)
    base: list[int] = []
    if new < 0:
        for _ in range(nr):
            p = k.folio_alloc(0, False)
            if p < 0:
                for q in base:
                    k.folio_put(q, 1)
                pte_unmap_unlock(mm, vmf.pte)
                return VM_FAULT_OOM
            base.append(p)
    prot = a.pte_pgprot(a.pfn_pte(0, vma.vm_page_prot))
    if new >= 0:
        for i in range(nr):
            a.copy_user_highpage(new + i, folio + i, haddr + i * ps, vma)
        k.counters.add("page.copy", nr)
        entry = a.pte_mkyoung(a.pfn_pte(new, prot))
        if not unshare:
            entry = maybe_mkwrite(a.pte_mkdirty(entry), vma)
        cont_pte_set_huge_pte_at(vma, haddr, ptep, entry)
        folio_add_new_anon_rmap(new, vma, haddr, RMAP_EXCLUSIVE, True)
        count_vm_chp_event(k, "thp_cow")
    else:
        for i in range(nr):
            a.copy_user_highpage(base[i], folio + i, haddr + i * ps, vma)
        k.counters.add("page.copy", nr)
        cont_pte_huge_ptep_get_and_clear_flush(vma, haddr, ptep)
        for i in range(nr):
            entry = a.pte_mkyoung(a.pfn_pte(base[i], prot))
            if not unshare:
                entry = maybe_mkwrite(a.pte_mkdirty(entry), vma)
            folio_add_new_anon_rmap(base[i], vma, haddr + i * ps, RMAP_EXCLUSIVE, False)
            a.set_pte_at(mm, haddr + i * ps, ptep + i, entry)
        count_vm_chp_event(k, "thp_cow_fallback")
    page_remove_anon_compound_rmap(folio, vma)
    k.folio_put(folio, 1)  # the block mapping's reference
    pte_unmap_unlock(mm, vmf.pte)
    return 0


def split_vma_cont_pte(vma: Any, addr: int) -> None:
    """A VMA is about to be split at ``addr``: split the block across it.

    Model helper, the block analogue of ``vma_adjust_trans_huge()``
    (mm/huge_memory.c), so that no block ever spans two VMAs.
    """
    k = vma_mm(vma).kernel
    if k.oneplus and _haddr(k, addr) != addr and vma.vm_start <= _haddr(k, addr):
        if _haddr(k, addr) + (k.PAGE_SIZE << HPAGE_CONT_PTE_ORDER) <= vma.vm_end:
            split_huge_cont_pte_address(vma, addr)


def page_remove_anon_compound_rmap(folio: int, vma: Any) -> None:
    """Remove one whole-block mapping of ``folio``.

    Models: 5.15 mm/rmap.c ``page_remove_rmap(page, true)`` ->
    ``page_remove_anon_compound_rmap()`` for a block: the entire mapcount
    drops; when the last whole mapping goes, ``PageDoubleMap`` is cleared
    (``TestClearPageDoubleMap``).  The model's ``folio_remove_rmap_pmd``
    does the counting.
    """
    from .rmap import folio_remove_rmap_pmd

    mem = vma_mm(vma).kernel.memmap
    folio_remove_rmap_pmd(folio, vma)
    if int(mem.entire_mapcount[folio]) == 0:
        mem.flags[folio] &= 0xFFFFFFFF & ~PG_double_map


# -- reclaim and swap (mm/rmap.c, mm/vmscan.c, mm/memory.c of the design) ----------
def cont_pte_unmap_first_entry(k: Any, folio: int, addr: int) -> bool:
    """May reclaim go on unmapping a block folio in this VMA? Its first entry is cleared.

    Models: mm/rmap.c (OnePlus) ``try_to_unmap_one()``'s checks at the first
    anon entry of a ``ContPteHugePageHead`` in a VMA (after its block was
    split by ``TTU_SPLIT_HUGE_PMD``): the walk must start at the block's
    first entry (else ``mapped_walk_start_from_non_head``), and all 16
    pages must have the same mapcount ("double map happened at the last
    moment", ``mapped_walk_lastmoment_doublemap``): a block some mm maps
    only in part is not reclaimed.  False: the caller restores the entry
    and stops the walk (the folio stays mapped and is kept).
    """
    mem = k.memmap
    if _haddr(k, addr) != addr:
        count_vm_chp_event(k, "mapped_walk_start_from_non_head")
        return False
    first = int(mem.mapcount[folio])
    for i in range(1, HPAGE_CONT_PTE_NR):
        if int(mem.mapcount[folio + i]) != first:
            count_vm_chp_event(k, "mapped_walk_lastmoment_doublemap")
            return False
    return True


def cont_pte_unmap_block_whole(vma: Any, addr: int, ptep: int, folio: int) -> None:
    """Bug catalog ``chp_reclaim_double_map_whole``: unmap a mapping of a block as one block.

    Not the design: reclaim that takes every mapping of a block folio for a
    whole-block mapping (no ``PageDoubleMap`` refusal, no split first)
    clears the 16 entries of the block holding ``addr``, writes a swap entry
    for each page it mapped, and drops one entire mapping and one reference.
    Right for a whole mapping; a split mapping's 16 per-page mapcounts and
    15 of its references stay behind with no PTE left to them.
    """
    from .mm_types import MM_SWAPENTS
    from .swapfile import swap_duplicate

    mm = vma_mm(vma)
    k = mm.kernel
    a: Any = k.arch
    mem = k.memmap
    si = k.swap
    haddr = _haddr(k, addr)
    hptep = ptep - ((addr - haddr) >> k.page_shift)
    old = [a.ptep_get(hptep + i) for i in range(HPAGE_CONT_PTE_NR)]
    cont_pte_huge_ptep_get_and_clear_flush(vma, haddr, hptep)
    n = 0
    for i, pte in enumerate(old):
        if not a.pte_present(pte) or not folio <= a.pte_pfn(pte) < folio + HPAGE_CONT_PTE_NR:
            if pte:
                a.set_pte_at(mm, haddr + i * k.PAGE_SIZE, hptep + i, pte)
            continue
        page = a.pte_pfn(pte)
        if a.pte_dirty(pte):
            from .memmap import folio_mark_dirty

            folio_mark_dirty(mem, folio)
        entry = int(si.folio_swap[folio]) + (page - folio)
        swap_duplicate(si, entry)
        a.set_pte_at(mm, haddr + i * k.PAGE_SIZE, hptep + i, a.swp_entry(si.type, entry))
        n += 1
    mm.add_mm_counter(MM_ANONPAGES, -n)
    mm.add_mm_counter(MM_SWAPENTS, n)
    if int(mem.entire_mapcount[folio]) > 0:
        page_remove_anon_compound_rmap(folio, vma)
    k.folio_put(folio, 1)


def is_cont_pte_swap(k: Any, ptep: int, cached: int = -1) -> int:
    """The first swap offset of a block swapped out whole at ``ptep``, or -1.

    Models: mm/memory.c (OnePlus) ``is_cont_pte_swap()``: the 16 entries
    from the block's first are all swap entries of the THP swap device,
    entry ``i`` at an offset ``i`` modulo 16.  The design relies on its
    THP swap device (``is_thp_swap()``, ``THP_SWAP_PRIO_MAGIC``), whose
    16-slot clusters hold one block each, and on the cluster's
    ``CLUSTER_FLAG_DOUBLE_MAP``; the model has one device for blocks and
    base pages, so it asks for one aligned range of 16 consecutive slots
    in a cluster of order-4 allocations (the slots a block was given, not
    16 base pages' that happen to follow each other).  With ``cached`` (a
    block folio the swap cache holds, ``do_swap_page()``'s hit) the 16
    slots must be that folio's, page ``i`` in slot ``i``; without, none may
    be in the swap cache and all must be in or all out of the zeromap
    (what the whole-block read needs).  Context: PTL held; ``ptep`` at the
    block's first entry.
    """
    from .swapfile import non_swapcache_batch, swap_zeromap_batch

    a = k.arch
    si = k.swap
    base = -1
    for i in range(HPAGE_CONT_PTE_NR):
        pte = a.ptep_get(ptep + i)
        if not a.is_swap_pte(pte) or a.swp_type(pte) != si.type:
            return -1
        off = a.swp_offset(pte)
        if off % HPAGE_CONT_PTE_NR != i:
            return -1
        if i == 0:
            base = off
        elif off != base + i:
            return -1
    if int(si.ci_order[base // si.cluster_nr]) != HPAGE_CONT_PTE_ORDER:
        return -1
    if cached >= 0:
        for i in range(HPAGE_CONT_PTE_NR):
            if int(si.cache[base + i]) != cached + i:
                return -1
        return base
    if non_swapcache_batch(si, base, HPAGE_CONT_PTE_NR) != HPAGE_CONT_PTE_NR:
        return -1
    if swap_zeromap_batch(si, base, HPAGE_CONT_PTE_NR) != HPAGE_CONT_PTE_NR:
        return -1
    return base


def page_add_anon_rmap_cont(folio: int, vma: Any, exclusive: bool) -> None:
    """Add one whole-block mapping of an anon block folio already in the rmap.

    Models: 5.15 mm/rmap.c ``do_page_add_anon_rmap(head, vma, haddr,
    RMAP_COMPOUND)`` (6.1: ``page_add_anon_rmap()``) for a block: one more
    entire mapcount; with ``exclusive`` (``RMAP_EXCLUSIVE``) every page
    becomes PageAnonExclusive.  PageDoubleMap is not set here (the design
    sets it only when it splits).
    """
    from .memmap import SetPageAnonExclusive

    k = vma_mm(vma).kernel
    mem = k.memmap
    mem.entire_mapcount[folio] += 1
    folio_add_large_mapcount(mem, folio, 1, vma)
    if exclusive:
        SetPageAnonExclusive(mem, folio, HPAGE_CONT_PTE_NR)
    k.counters.add("rmap.op", 1)
    k.counters.add("rmap.pages", HPAGE_CONT_PTE_NR)
    rmap_changed(k, folio)


def _read_thp_no_swapcache_fallback(k: Any, base: int, prefix: str) -> list[int] | None:
    """16 base pages read from the block's slots, outside the swap cache; None on OOM.

    Models: mm/memory.c (OnePlus) ``read_thp_no_swapcache_fallback()`` and
    the caller's ``<prefix>_fallback_alloc_success``/``_fail`` counts
    (``prefix``: ``thp_swpin_no_swapcache`` or ``thp_swpin_swapcache``).
    """
    from .swapfile import swap_read_folio

    pages: list[int] = []
    for _ in range(HPAGE_CONT_PTE_NR):
        p = k.folio_alloc(0, False)
        if p < 0:
            for q in pages:
                k.folio_put(q, 1)
            count_vm_chp_event(k, prefix + "_fallback_alloc_fail")
            return None
        pages.append(p)
    for i, p in enumerate(pages):
        swap_read_folio(k, k.swap, p, base + i)
    count_vm_chp_event(k, prefix + "_fallback_alloc_success")
    return pages


def do_swap_cont_pte_page(vmf: Any, swapcache: int) -> int:
    """Swap a whole block in; -1 if the design does not take this fault (mainline's path).

    Models: mm/memory.c (OnePlus) ``do_swap_page()``'s block branches, in
    a suitable VMA (``transhuge_cont_pte_vma_suitable``) whose 16 entries
    are one swapped block (``is_cont_pte_swap``, under the PTL):

    - ``swapcache`` (the folio ``lookup_swap_cache()`` found for the
      faulting entry, with a reference; -1 if none) is a block folio
      (``ContPteHugePage``) whose slots the 16 entries are: it is mapped
      whole again (``thp_swpin_hit_swapcache``, no read, not a major
      fault).  A block folio whose entries are not one swapped block (a
      sibling split its mapping, or mapped part of it) takes the
      per-page path (``goto basepages``: -1), as does any other folio.
    - no folio, a synchronous device and a swap count of 1 ("skip
      swapcache"): ``chp.thp_swpin_no_swapcache_entry``; a block from the
      pool (``..._alloc_success``) is read outside the swap cache; none
      free: ``..._alloc_fail``, ``..._fallback_entry`` and 16 base pages
      (``read_thp_no_swapcache_fallback``, ``..._fallback_alloc_success``
      or ``..._fallback_alloc_fail`` and VM_FAULT_OOM).
    - no folio otherwise (a swap count above 1: the slots are shared with
      a sibling; or a device that is not synchronous):
      ``read_swap_cache_thp()``, ``chp.thp_swpin_swapcache_entry``: a
      block from the pool joins the swap cache for the 16 slots
      (``cont_pte_swapcache_prepare()``, ``add_to_swap_cache()``) and is
      read (``..._alloc_success``); a sibling that faults later finds it
      there (the first branch).  No block free
      (``RET_STATUS_ALLOC_THP_FAIL``): ``..._prepare_fail``,
      ``..._fallback_entry`` and 16 base pages outside the swap cache, as
      above (``thp_swpin_swapcache_fallback_alloc_*``).

    The block is mapped whole under the PTL after ``is_cont_pte_swap``
    again (else, for a block this fault read, VM_FAULT_RETRY: the access
    faults again; for a hit, the per-page path): the 16 slots' counts go
    (``cont_pte_swap_entry_free``), the swap cache is let go of where
    mainline's ``should_try_to_free_swap()`` says so, RSS +16, swap
    entries -16, one entire mapping.  It is mapped writable (and dirty on
    a write fault) and exclusive where it is certainly exclusive: a block
    never in the swap cache, or an exclusive swap PTE (the 6.1 variant's
    ``exclusive || folio_ref_count(folio) == 1``; 5.15 asks
    ``reuse_swap_cont_pte_page()``, which needs PageAnonExclusive's
    predecessor, the map and swap counts).  Otherwise it is mapped
    read-only and a write fault goes on to ``do_wp_page()``'s block branch
    (``do_wp_cont_pte_page``: reuse or ``thp_cow``).  The 16 base pages
    of a fallback are fresh: mapped writable on a write ("no swapcache no
    cow").  A fresh folio is exclusive: the model sets PageAnonExclusive,
    which 5.15 does not have.  Context: no PTL held on entry; released on
    return.
    """
    from .memmap import PG_swapbacked
    from .memory import should_try_to_free_swap
    from .mm_types import MM_SWAPENTS, VM_FAULT_OOM
    from .swapfile import (
        SWP_SYNCHRONOUS_IO,
        _swap_count,
        folio_free_swap,
        swap_free_nr,
        swap_read_folio,
        swapin_folio,
    )

    vma = vmf.vma
    mm = vma_mm(vma)
    k = mm.kernel
    a: Any = k.arch
    mem = k.memmap
    si = k.swap
    ps = k.PAGE_SIZE
    haddr = _haddr(k, vmf.address)
    if swapcache >= 0 and not (
        int(mem.flags[swapcache]) & PG_cont and int(mem.order[swapcache]) == HPAGE_CONT_PTE_ORDER
    ):
        return -1
    if not transhuge_cont_pte_vma_suitable(vma, haddr) or userfaultfd_armed(vma):
        return -1
    ptep = pte_offset_map_lock(mm, haddr, False)
    if ptep < 0:
        return -1
    fault_ptep = ptep + ((vmf.address - haddr) >> k.page_shift)
    if a.ptep_get(fault_ptep) != vmf.orig_pte:
        pte_unmap_unlock(mm, ptep)
        if swapcache >= 0:
            k.folio_put(swapcache, 1)
        return 0  # pte_changed: another thread got here first
    write = bool(vmf.flags & FAULT_FLAG_WRITE)
    folio = swapcache
    pages: list[int] = []
    thp_swpin = False
    if swapcache >= 0:
        # The hit: checked and mapped under one PTL hold.
        base = is_cont_pte_swap(k, ptep, swapcache)
        if base < 0:
            pte_unmap_unlock(mm, ptep)
            return -1  # goto basepages
        count_vm_chp_event(k, "thp_swpin_hit_swapcache")
        k.counters.add("swap.cache_hit", 1)
    else:
        base = is_cont_pte_swap(k, ptep)
        pte_unmap_unlock(mm, ptep)
        if base < 0:
            return -1
        offset = a.swp_offset(vmf.orig_pte)
        prefix = (
            "thp_swpin_no_swapcache"
            if si.flags & SWP_SYNCHRONOUS_IO and _swap_count(si, offset) == 1
            else "thp_swpin_swapcache"
        )
        count_vm_chp_event(k, prefix + "_entry")
        anon_vma_prepare(vma)
        folio = alloc_cont_pte_folio(k, False)
        if folio >= 0:
            thp_swpin = True
            count_vm_chp_event(k, prefix + "_alloc_success")
            if prefix == "thp_swpin_swapcache":
                swapin_folio(k, si, folio, base)  # read_swap_cache_thp() + swap_readpage()
                swapcache = folio
            else:
                pages = [folio]
                swap_read_folio(k, si, folio, base)
        else:
            if prefix == "thp_swpin_swapcache":
                count_vm_chp_event(k, "thp_swpin_swapcache_prepare_fail")
            else:
                count_vm_chp_event(k, "thp_swpin_no_swapcache_alloc_fail")
            count_vm_chp_event(k, prefix + "_fallback_entry")
            got = _read_thp_no_swapcache_fallback(k, base, prefix)
            if got is None:
                return VM_FAULT_OOM
            pages = got
        k.counters.add("pgmajfault", 1)
        for p in [folio] if folio >= 0 else pages:
            mem.flags[p] |= PG_swapbacked
        ptep = pte_offset_map_lock(mm, haddr, True)
        if (
            ptep < 0
            or is_cont_pte_swap(k, ptep, swapcache) != base
            or not transhuge_cont_pte_vma_suitable(vma, haddr)
        ):
            # The design retries the fault (VM_FAULT_RETRY): the access faults
            # again (a block read into the swap cache stays there).
            if ptep >= 0:
                pte_unmap_unlock(mm, ptep)
            for p in [folio] if folio >= 0 else pages:
                k.folio_put(p, 1)
            return 0
    uffd_wp = a.pte_swp_uffd_wp(vmf.orig_pte)
    swap_free_nr(si, base, HPAGE_CONT_PTE_NR)  # cont_pte_swap_entry_free()
    if folio >= 0 and swapcache >= 0 and should_try_to_free_swap(k, folio, vma, vmf.flags, 1):
        folio_free_swap(k, si, folio)
    mm.add_mm_counter(MM_ANONPAGES, HPAGE_CONT_PTE_NR)
    mm.add_mm_counter(MM_SWAPENTS, -HPAGE_CONT_PTE_NR)
    if folio >= 0:
        exclusive = swapcache < 0 or bool(a.pte_swp_exclusive(vmf.orig_pte))
        if swapcache >= 0 and not exclusive and int(mem.refcount[folio]) == 1:
            exclusive = True
        pte = a.pfn_pte(folio, vma.vm_page_prot)
        if exclusive and write:
            if vma.vm_flags & VM_WRITE:
                pte = a.pte_mkwrite(pte)
            pte = a.pte_mkdirty(pte)
            vmf.flags &= ~FAULT_FLAG_WRITE
        if uffd_wp:
            pte = a.pte_wrprotect(a.pte_mkuffd_wp(pte))
        cont_pte_set_huge_pte_at(vma, haddr, ptep, a.pte_mkcont(pte))
        if thp_swpin:
            folio_add_new_anon_rmap(folio, vma, haddr, RMAP_EXCLUSIVE if exclusive else 0, True)
        else:
            page_add_anon_rmap_cont(folio, vma, exclusive)
    else:
        for i, p in enumerate(pages):
            pte = a.pfn_pte(p, vma.vm_page_prot)
            if write:
                # "no swapcache no cow"
                if vma.vm_flags & VM_WRITE:
                    pte = a.pte_mkwrite(pte)
                pte = a.pte_mkdirty(pte)
            if uffd_wp:
                pte = a.pte_wrprotect(a.pte_mkuffd_wp(pte))
            folio_add_new_anon_rmap(p, vma, haddr + i * ps, RMAP_EXCLUSIVE, False)
            a.set_pte_at(mm, haddr + i * ps, ptep + i, pte)
        vmf.flags &= ~FAULT_FLAG_WRITE
    if vmf.flags & FAULT_FLAG_WRITE:
        # Not certainly exclusive: do_wp_page() (its block branch) reuses or copies it.
        vmf.pte = fault_ptep
        vmf.orig_pte = a.ptep_get(fault_ptep)
        return do_wp_cont_pte_page(vmf, folio)
    a.update_mmu_cache_range(vma, haddr, ptep, HPAGE_CONT_PTE_NR)
    pte_unmap_unlock(mm, ptep)
    return 0
