"""The page-table and VMA helpers every core-mm file uses.

Models: include/linux/mm.h (Linux v6.12): ``pte_offset_map_lock`` /
``pte_unmap_unlock``, ``mm_counter_file``, ``maybe_mkwrite``,
``vma_wants_manual_pte_write_upgrade``; and three functions the header
declares for all of mm/ whose bodies live in .c files:
mm/memory.c ``vm_normal_folio()``, mm/mprotect.c ``can_change_pte_writable()``
and mm/vma.c ``vma_wants_writenotify()``; and the ``MM_CP_*`` flags of
``change_protection()`` (mm/mprotect.c and mm/huge_memory.c's
``change_huge_pmd()`` both take them); and include/linux/userfaultfd_k.h's
``userfaultfd_armed()``, ``userfaultfd_pte_wp()`` and
``userfaultfd_huge_pmd_wp()`` (the fault paths of memory.c and
huge_memory.c ask them); include/linux/mm_inline.h ``folio_is_file_lru()``.  They are here rather than in the
model's memory.py/mprotect.py/mmap.py because those modules use each other
and compiled modules may not import in a cycle (docs/core.md).

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64, u64
    from ..hw.tables import AddressSpace
    from .kernel import Kernel
    from .memmap import MemMap, PageAnonExclusive, PG_lazyfree, folio_test_anon
    from .mm_types import (
        MM_FILEPAGES,
        MM_SHMEMPAGES,
        VM_SHARED,
        VM_UFFD_WP,
        VM_WRITE,
        MmStruct,
        Vma,
        vma_mm,
    )

__all__ = [
    "pte_index",
    "pte_offset_map_lock",
    "pte_unmap_unlock",
    "mm_counter_file",
    "vm_normal_folio",
    "maybe_mkwrite",
    "vma_wants_writenotify",
    "vma_wants_manual_pte_write_upgrade",
    "maybe_change_pte_writable",
    "can_change_private_pte_writable",
    "can_change_shared_pte_writable",
    "can_change_pte_writable",
    "folio_is_file_lru",
    "userfaultfd_armed",
    "userfaultfd_pte_wp",
    "userfaultfd_huge_pmd_wp",
    "MM_CP_TRY_CHANGE_WRITABLE",
    "MM_CP_PROT_NUMA",
    "MM_CP_UFFD_WP",
    "MM_CP_UFFD_WP_RESOLVE",
    "MM_CP_UFFD_WP_ALL",
]

# include/linux/mm.h: the cp_flags of change_protection().
#: Try to make PTEs writable where the write fault would (exclusive anon, dirty shared).
MM_CP_TRY_CHANGE_WRITABLE = cython.declare(i64, 1 << 0)
#: NUMA hinting: map PAGE_NONE so the next access faults.
MM_CP_PROT_NUMA = cython.declare(i64, 1 << 1)
#: userfaultfd write-protect: set the uffd-wp bit.
MM_CP_UFFD_WP = cython.declare(i64, 1 << 2)
#: userfaultfd write-protect resolve: clear the uffd-wp bit.
MM_CP_UFFD_WP_RESOLVE = cython.declare(i64, 1 << 3)
MM_CP_UFFD_WP_ALL = cython.declare(i64, (1 << 2) | (1 << 3))


@cython.ccall
@cython.exceptval(-1, check=True)
def pte_index(k: Kernel, addr: i64) -> i64:
    """``pte_index()``: the entry of ``addr`` in its level-3 table."""
    return (addr >> k.page_shift) & (k.arch.PTRS_PER_PTE - 1)


@cython.ccall
@cython.exceptval(-1, check=True)
def pte_offset_map_lock(mm: MmStruct, addr: i64, alloc: cython.bint = False) -> i64:
    """Map and lock the PTE table for ``addr`` (``pte_offset_map_lock``/``pte_alloc``).

    Returns the ``pte_t *`` of ``addr``, or -1 when there is no table (and
    ``alloc`` is false) or a PMD maps the range.
    """
    space: AddressSpace = mm.space
    pmd_idx: i64 = addr >> space.pmd_shift
    if space.pmds and pmd_idx in space.pmds:
        return -1
    slot: i64 = space.pte_table(pmd_idx)
    if slot < 0:
        if not alloc:
            return -1
        slot = _pte_alloc(mm, pmd_idx)
    return (slot << space.pool.shift) | ((addr >> space.page_shift) & (space.ptrs_per_pte - 1))


@cython.ccall
@cython.exceptval(-1, check=True)
def _pte_alloc(mm: MmStruct, pmd_index: i64) -> i64:
    """Give the PMD at ``pmd_index`` a new, empty PTE table; its slot.

    Models: mm/memory.c ``__pte_alloc()``: ``pte_alloc_one()`` then
    ``pmd_install()``, which hooks it in with ``pmd_populate()``.  (The
    kernel returns 0 or -ENOMEM; the model's pool grows instead of failing.)

    Context: mmap_lock held; the PMD is none.
    """
    arch: Pgtable = mm.kernel.arch
    pgtable: i64 = arch.pte_alloc_one(mm, pmd_index)
    arch.pmd_populate(mm, pmd_index, pgtable)
    return pgtable


@cython.ccall
def pte_unmap_unlock(mm: MmStruct, ptep: i64) -> None:
    """Drop the PTL: the hardware may now observe the table (rule checks)."""
    if ptep >= 0:
        mm.kernel.arch.ptl_release(mm, ptep)


@cython.ccall
@cython.exceptval(-1, check=True)
def mm_counter_file(folio: i64, k: Kernel) -> i64:
    """``mm_counter_file()``: the RSS counter of a file folio (shmem or file)."""
    f = k.files.get(cython.cast(i64, k.memmap.mapping[folio]))
    return MM_SHMEMPAGES if f is not None and f.shmem else MM_FILEPAGES


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_is_file_lru(k: Kernel, folio: i64) -> cython.bint:
    """The folio is on the file LRU: not swap-backed.

    Models: include/linux/mm_inline.h ``folio_is_file_lru()``
    (``!folio_test_swapbacked()``).  The model keeps no PG_swapbacked; it
    derives it as the kernel sets it: anon folios are swap-backed until
    MADV_FREE makes them lazyfree, shmem folios always, page-cache folios
    of regular files never.
    """
    mem: MemMap = k.memmap
    if folio_test_anon(mem, folio):
        return (cython.cast(i64, mem.flags[folio]) & PG_lazyfree) != 0
    f = k.files.get(cython.cast(i64, mem.mapping[folio]))
    return f is None or not f.shmem


@cython.ccall
@cython.exceptval(-1, check=True)
def vm_normal_folio(vma: Vma, addr: i64, pte: u64) -> i64:
    """The folio a present PTE maps, or -1 for special mappings (zero page).

    Models: mm/memory.c ``vm_normal_page()``/``vm_normal_folio()``.
    """
    k: Kernel = vma_mm(vma).kernel
    arch: Pgtable = k.arch
    if arch.pte_special(pte):
        return -1
    return cython.cast(i64, k.memmap.head[arch.pte_pfn(pte)])


@cython.ccall
@cython.exceptval(-1, check=True)
def maybe_mkwrite(pte: u64, vma: Vma) -> u64:
    """``maybe_mkwrite()``: writable iff the VMA is."""
    if vma.vm_flags & VM_WRITE:
        return vma_mm(vma).kernel.arch.pte_mkwrite(pte)
    return pte


@cython.ccall
@cython.exceptval(-1, check=True)
def vma_wants_writenotify(vma: Vma) -> cython.bint:
    """A shared writable mapping of a file with writeback: write faults must notify.

    Models: mm/vma.c ``vma_wants_writenotify()`` (v6.12) ending in
    ``vma_fs_can_writeback()``: a regular file needs its folios marked dirty
    on the first write, so its PTEs start read-only; shmem (tmpfs, shared
    anonymous memory) has no writeback and maps writable at once.
    """
    if (vma.vm_flags & (VM_WRITE | VM_SHARED)) != (VM_WRITE | VM_SHARED):
        return False
    return vma.vm_file is not None and not vma.vm_file.shmem


@cython.ccall
@cython.exceptval(-1, check=True)
def vma_wants_manual_pte_write_upgrade(vma: Vma) -> cython.bint:
    """Models: include/linux/mm.h ``vma_wants_manual_pte_write_upgrade()``."""
    if vma.vm_flags & VM_SHARED:
        return vma_wants_writenotify(vma)
    return (vma.vm_flags & VM_WRITE) != 0


@cython.ccall
@cython.exceptval(-1, check=True)
def userfaultfd_armed(vma: Vma) -> cython.bint:
    """A userfaultfd is registered on ``vma`` (``vm_flags & __VM_UFFD_FLAGS``).

    Models: include/linux/userfaultfd_k.h ``userfaultfd_armed()``; the model
    registers write-protect mode only (VM_UFFD_WP: no MISSING or MINOR).
    """
    return (vma.vm_flags & VM_UFFD_WP) != 0


@cython.ccall
@cython.exceptval(-1, check=True)
def userfaultfd_pte_wp(vma: Vma, pte: u64) -> cython.bint:
    """Models: include/linux/userfaultfd_k.h ``userfaultfd_pte_wp()``: a uffd-wp VMA and PTE."""
    return (vma.vm_flags & VM_UFFD_WP) != 0 and vma_mm(vma).kernel.arch.pte_uffd_wp(pte)


@cython.ccall
@cython.exceptval(-1, check=True)
def userfaultfd_huge_pmd_wp(vma: Vma, pmd: u64) -> cython.bint:
    """Models: include/linux/userfaultfd_k.h ``userfaultfd_huge_pmd_wp()``."""
    a: Pgtable = vma_mm(vma).kernel.arch
    return (vma.vm_flags & VM_UFFD_WP) != 0 and a.pte_uffd_wp(a.pmd_pte(pmd))


@cython.ccall
@cython.exceptval(-1, check=True)
def maybe_change_pte_writable(vma: Vma, pte: u64) -> cython.bint:
    """May mprotect make ``pte`` writable without a write fault, as far as the VMA and PTE tell?

    Models: mm/mprotect.c ``maybe_change_pte_writable()`` (v6.17's split of
    v6.12's ``can_change_pte_writable()``, the same tests): not for a
    PROT_NONE / NUMA-hinting PTE, nor one uffd-wp tracks (soft-dirty
    tracking is not modelled).
    """
    k: Kernel = vma_mm(vma).kernel
    if not vma.vm_flags & VM_WRITE:
        return False
    if k.arch.pte_protnone(pte):
        return False
    return not userfaultfd_pte_wp(vma, pte)


@cython.ccall
@cython.exceptval(-1, check=True)
def can_change_private_pte_writable(vma: Vma, addr: i64, pte: u64) -> cython.bint:
    """Models: mm/mprotect.c ``can_change_private_pte_writable()``: an exclusive anon page."""
    k: Kernel = vma_mm(vma).kernel
    folio: i64
    if not maybe_change_pte_writable(vma, pte):
        return False
    folio = vm_normal_folio(vma, addr, pte)
    return (
        folio >= 0 and folio_test_anon(k.memmap, folio) and PageAnonExclusive(k.memmap, k.arch.pte_pfn(pte))
    )


@cython.ccall
@cython.exceptval(-1, check=True)
def can_change_shared_pte_writable(vma: Vma, pte: u64) -> cython.bint:
    """Models: mm/mprotect.c ``can_change_shared_pte_writable()``: a dirty PTE (the FS was told)."""
    if not maybe_change_pte_writable(vma, pte):
        return False
    return vma_mm(vma).kernel.arch.pte_dirty(pte)


@cython.ccall
@cython.exceptval(-1, check=True)
def can_change_pte_writable(vma: Vma, addr: i64, pte: u64) -> cython.bint:
    """Models: mm/mprotect.c ``can_change_pte_writable()``."""
    if not vma.vm_flags & VM_SHARED:
        return can_change_private_pte_writable(vma, addr, pte)
    return can_change_shared_pte_writable(vma, pte)


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        MM_CP_TRY_CHANGE_WRITABLE=MM_CP_TRY_CHANGE_WRITABLE,
        MM_CP_PROT_NUMA=MM_CP_PROT_NUMA,
        MM_CP_UFFD_WP=MM_CP_UFFD_WP,
        MM_CP_UFFD_WP_RESOLVE=MM_CP_UFFD_WP_RESOLVE,
        MM_CP_UFFD_WP_ALL=MM_CP_UFFD_WP_ALL,
    )
