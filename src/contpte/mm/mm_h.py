"""The page-table and VMA helpers every core-mm file uses.

Models: include/linux/mm.h (Linux v6.12): ``pte_offset_map_lock`` /
``pte_unmap_unlock``, ``mm_counter_file``, ``maybe_mkwrite``,
``vma_wants_manual_pte_write_upgrade``; and three functions the header
declares for all of mm/ whose bodies live in .c files:
mm/memory.c ``vm_normal_folio()``, mm/mprotect.c ``can_change_pte_writable()``
and mm/vma.c ``vma_wants_writenotify()``.  They are here rather than in the
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
    from .memmap import PageAnonExclusive, folio_test_anon
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
    "can_change_pte_writable",
]


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
def can_change_pte_writable(vma: Vma, addr: i64, pte: u64) -> cython.bint:
    """Models: mm/mprotect.c ``can_change_pte_writable()``."""
    k: Kernel = vma_mm(vma).kernel
    a: Pgtable = k.arch
    folio: i64
    if not vma.vm_flags & VM_WRITE:
        return False
    if a.pte_protnone(pte):
        return False
    if vma.vm_flags & VM_UFFD_WP and a.pte_uffd_wp(pte):
        return False
    if not vma.vm_flags & VM_SHARED:
        folio = vm_normal_folio(vma, addr, pte)
        return folio >= 0 and folio_test_anon(k.memmap, folio) and PageAnonExclusive(k.memmap, a.pte_pfn(pte))
    return a.pte_dirty(pte)
