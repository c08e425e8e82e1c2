"""A plain PTE format on a Flat (x86-like) MMU with the pgtable.h fallbacks.

Models: include/linux/pgtable.h generic fallbacks (Linux v6.12) with an
x86-style PTE layout and x86-style TLB shootdown (local INVLPG/INVPCID plus
IPIs to the CPUs in ``mm_cpumask``, one full flush above
``tlb_single_page_flush_ceiling`` = 33 pages, arch/x86/mm/tlb.c).

This backend has no contiguous hint: ``pte_batch_hint`` is 1 and every
batch helper is a loop over single PTEs.  Running a workload here and on
arm64 must give the same observable behaviour; only the cost differs.

Compiled (docs/core.md).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import cython
import numpy as np

from ..counters import counter

if not cython.compiled:
    from ..cdefs import i64, u64
    from ..counters import count
    from ..hw.hardware import Hardware
    from ..hw.tables import PtePool
    from .pgtable import MmLike, Pgtable, VmaLike

__all__ = ["GenericPgtable"]

# Hardware bits (Flat format, x86-like).
_PAGE_PRESENT = cython.declare(u64, 1 << 0)
_PAGE_RW = cython.declare(u64, 1 << 1)
_PAGE_USER = cython.declare(u64, 1 << 2)
_PAGE_ACCESSED = cython.declare(u64, 1 << 5)
_PAGE_DIRTY = cython.declare(u64, 1 << 6)
_PAGE_PSE = cython.declare(u64, 1 << 7)
_PAGE_NX = cython.declare(u64, 1 << 63)
# Software bits.
_PAGE_PROTNONE = cython.declare(u64, 1 << 8)  # x86 reuses GLOBAL when !PRESENT
_PAGE_SPECIAL = cython.declare(u64, 1 << 9)
_PAGE_UFFD_WP = cython.declare(u64, 1 << 10)
_PAGE_SOFT_DIRTY = cython.declare(u64, 1 << 11)
_U64 = (1 << 64) - 1
_PFN_MASK = cython.declare(u64, ((1 << 52) - 1) & ~((1 << 12) - 1))
_NOT_PFN_MASK = cython.declare(u64, _U64 & ~(((1 << 52) - 1) & ~((1 << 12) - 1)))
_NOT_RW = cython.declare(u64, _U64 & ~(1 << 1))
_NOT_DIRTY = cython.declare(u64, _U64 & ~(1 << 6))
_NOT_ACCESSED = cython.declare(u64, _U64 & ~(1 << 5))
_NOT_UFFD_WP = cython.declare(u64, _U64 & ~(1 << 10))
_NOT_SOFT_DIRTY = cython.declare(u64, _U64 & ~(1 << 11))
_NOT_PRESENT = cython.declare(u64, _U64 & ~(1 << 0))
_NOT_PSE = cython.declare(u64, _U64 & ~(1 << 7))
# Swap entries (x86-64 layout, arch/x86/include/asm/pgtable_64.h): type in the
# top 5 bits, offset from bit 9 (above _PAGE_PROTNONE, so never present);
# _PAGE_SWP_EXCLUSIVE is _PAGE_PSE, _PAGE_SWP_UFFD_WP is _PAGE_USER.  (x86
# stores the offset inverted against L1TF; the model stores it plain.)
_SWP_TYPE_SHIFT = cython.declare(u64, 59)
_SWP_OFFSET_FIRST_BIT = cython.declare(u64, 9)
_SWP_OFFSET_MASK = cython.declare(u64, (1 << 50) - 1)
_NOT_USER = cython.declare(u64, _U64 & ~(1 << 2))

_VM_READ = cython.declare(i64, 1)
_VM_WRITE = cython.declare(i64, 2)
_VM_EXEC = cython.declare(i64, 4)
_VM_SHARED = cython.declare(i64, 8)

#: Bits pte_modify() keeps (x86 _PAGE_CHG_MASK): pfn, A/D, special, soft-dirty, uffd-wp.
_PAGE_CHG_MASK = cython.declare(
    u64, _PFN_MASK | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_SPECIAL | _PAGE_SOFT_DIRTY | _PAGE_UFFD_WP
)
_NOT_PAGE_CHG_MASK = cython.declare(u64, _U64 & ~_PAGE_CHG_MASK)

#: arch/x86/mm/tlb.c: above this many pages a full flush is cheaper.
TLB_SINGLE_PAGE_FLUSH_CEILING = cython.declare(i64, 33)

IPI = cython.declare(i64, counter("ipi.tlb_shootdown"))


@cython.final
@cython.cclass
class GenericPgtable(Pgtable):
    """include/linux/pgtable.h fallbacks on a Flat MMU (no contiguous bit)."""

    OPTIONS: dict[str, Any] = {}

    def __init__(self, hw: Any, page_shift: i64 = 12, **options: Any) -> None:
        super().__init__(hw, page_shift, **options)
        self.PFN_PTE_SHIFT = page_shift

    @property
    def name(self) -> str:
        return "generic"

    # -- format ---------------------------------------------------------------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_present(self, pte: u64) -> cython.bint:
        return (pte & (_PAGE_PRESENT | _PAGE_PROTNONE)) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_valid(self, pte: u64) -> cython.bint:
        return (pte & _PAGE_PRESENT) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_accessible(self, mm: MmLike, pte: u64) -> cython.bint:
        """Models: x86 ``pte_accessible()``: _PAGE_PRESENT; a PROT_NONE entry
        only while a TLB flush is pending for ``mm`` (never, at the model's
        ``ptep_clear_flush()`` callers)."""
        return (pte & _PAGE_PRESENT) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_pfn(self, pte: u64) -> i64:
        return cython.cast(i64, (pte & _PFN_MASK) >> self.PFN_PTE_SHIFT)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pfn_pte(self, pfn: i64, prot: u64) -> u64:
        return (cython.cast(u64, pfn) << self.PFN_PTE_SHIFT) | (prot & _NOT_PFN_MASK)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_pgprot(self, pte: u64) -> u64:
        return pte & _NOT_PFN_MASK

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_write(self, pte: u64) -> cython.bint:
        return (pte & _PAGE_RW) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_dirty(self, pte: u64) -> cython.bint:
        return (pte & _PAGE_DIRTY) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_young(self, pte: u64) -> cython.bint:
        return (pte & _PAGE_ACCESSED) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_special(self, pte: u64) -> cython.bint:
        return (pte & _PAGE_SPECIAL) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkspecial(self, pte: u64) -> u64:
        return pte | _PAGE_SPECIAL

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkwrite(self, pte: u64) -> u64:
        return pte | _PAGE_RW

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_wrprotect(self, pte: u64) -> u64:
        return pte & _NOT_RW

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkclean(self, pte: u64) -> u64:
        return pte & _NOT_DIRTY

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkdirty(self, pte: u64) -> u64:
        return pte | _PAGE_DIRTY | _PAGE_SOFT_DIRTY

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkold(self, pte: u64) -> u64:
        return pte & _NOT_ACCESSED

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkyoung(self, pte: u64) -> u64:
        return pte | _PAGE_ACCESSED

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_modify(self, pte: u64, newprot: u64) -> u64:
        return (pte & _PAGE_CHG_MASK) | (newprot & _NOT_PAGE_CHG_MASK)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_protnone(self, pte: u64) -> cython.bint:
        return (pte & (_PAGE_PRESENT | _PAGE_PROTNONE)) == _PAGE_PROTNONE

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_uffd_wp(self, pte: u64) -> cython.bint:
        return (pte & _PAGE_UFFD_WP) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkuffd_wp(self, pte: u64) -> u64:
        return self.pte_wrprotect(pte | _PAGE_UFFD_WP)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_clear_uffd_wp(self, pte: u64) -> u64:
        return pte & _NOT_UFFD_WP

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_soft_dirty(self, pte: u64) -> cython.bint:
        return (pte & _PAGE_SOFT_DIRTY) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mksoft_dirty(self, pte: u64) -> u64:
        return pte | _PAGE_SOFT_DIRTY

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_clear_soft_dirty(self, pte: u64) -> u64:
        return pte & _NOT_SOFT_DIRTY

    # -- swap entries ------------------------------------------------------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def swp_entry(self, type_: i64, offset: i64) -> u64:
        """Models: x86 ``__swp_entry()`` (offset not inverted, see above)."""
        return (cython.cast(u64, type_) << _SWP_TYPE_SHIFT) | (
            (cython.cast(u64, offset) & _SWP_OFFSET_MASK) << _SWP_OFFSET_FIRST_BIT
        )

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def swp_type(self, pte: u64) -> i64:
        return cython.cast(i64, pte >> _SWP_TYPE_SHIFT)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def swp_offset(self, pte: u64) -> i64:
        return cython.cast(i64, (pte >> _SWP_OFFSET_FIRST_BIT) & _SWP_OFFSET_MASK)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_exclusive(self, pte: u64) -> cython.bint:
        return (pte & _PAGE_PSE) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_mkexclusive(self, pte: u64) -> u64:
        return pte | _PAGE_PSE

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_clear_exclusive(self, pte: u64) -> u64:
        return pte & _NOT_PSE

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_uffd_wp(self, pte: u64) -> cython.bint:
        return (pte & _PAGE_USER) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_mkuffd_wp(self, pte: u64) -> u64:
        return pte | _PAGE_USER

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_clear_uffd_wp(self, pte: u64) -> u64:
        return pte & _NOT_USER

    def ptes_decode(
        self, entries: np.ndarray, fields: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        e = np.asarray(entries).astype(np.uint64, copy=False)

        def bit(b: int) -> np.ndarray:
            out: np.ndarray = (e & np.uint64(b)) != 0
            return out

        valid = bit(_PAGE_PRESENT)
        present = valid | bit(_PAGE_PROTNONE)

        def want(f: str) -> bool:
            return fields is None or f in fields

        out = {"valid": valid, "present": present}
        if want("pfn"):
            out["pfn"] = np.where(
                present, (e & np.uint64(_PFN_MASK)) >> np.uint64(self.PFN_PTE_SHIFT), 0
            ).astype(np.int64)
        if want("write"):
            out["write"] = present & bit(_PAGE_RW)
        if want("dirty"):
            out["dirty"] = present & bit(_PAGE_DIRTY)
        if want("young"):
            out["young"] = present & bit(_PAGE_ACCESSED)
        if want("cont"):
            out["cont"] = np.zeros(len(e), dtype=bool)
        if want("special"):
            out["special"] = present & bit(_PAGE_SPECIAL)
        return out

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def vm_get_page_prot(self, vm_flags: i64) -> u64:
        """Models: arch/x86/mm/pgprot.c ``vm_get_page_prot()`` (protection_map)."""
        if not vm_flags & (_VM_READ | _VM_WRITE | _VM_EXEC):
            return _PAGE_PROTNONE | _PAGE_ACCESSED
        prot: u64 = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
        if (vm_flags & _VM_WRITE) and (vm_flags & _VM_SHARED):
            prot |= _PAGE_RW
        if not vm_flags & _VM_EXEC:
            prot |= _PAGE_NX
        return prot

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_pmd(self, pte: u64) -> u64:
        return pte | _PAGE_PSE

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmd_pte(self, pmd: u64) -> u64:
        return pmd & _NOT_PSE

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmd_mkinvalid(self, pmd: u64) -> u64:
        return pmd & _NOT_PRESENT

    # -- the pgtable.h fallbacks this backend uses, defined here so that a
    # call through the base class stays a plain C call (the class is final) --
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_same(self, a: u64, b: u64) -> cython.bint:
        return a == b

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_advance_pfn(self, pte: u64, nr: i64) -> u64:
        return pte + (cython.cast(u64, nr) << self.PFN_PTE_SHIFT)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_batch_hint(self, ptep: i64, pte: u64) -> i64:
        """Models: ``pte_batch_hint()``: 1 (no contiguous hint)."""
        return 1

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_get(self, ptep: i64) -> u64:
        """Models: ``ptep_get()`` = ``READ_ONCE(*ptep)``."""
        return self.pool.load(ptep)

    @cython.ccall
    def set_ptes(self, mm: MmLike, addr: i64, ptep: i64, pte: u64, nr: i64) -> None:
        """Models: include/linux/pgtable.h ``set_ptes()``: ``nr`` x ``set_pte()``, pfn advancing.

        Context: PTL held; all ``nr`` entries none before; one folio; one PMD.
        """
        pool: PtePool = self.pool
        step: u64 = cython.cast(u64, 1) << self.PFN_PTE_SHIFT
        i: i64
        for i in range(ptep, ptep + nr):
            pool.store(i, pte)
            pte += step

    @cython.ccall
    def set_pte_at(self, mm: MmLike, addr: i64, ptep: i64, pte: u64) -> None:
        """Models: ``set_pte_at()`` = ``set_ptes(nr=1)``."""
        self.pool.store(ptep, pte)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_get_and_clear_full(self, mm: MmLike, addr: i64, ptep: i64, full: cython.bint) -> u64:
        """Models: ``ptep_get_and_clear_full()`` -> ``ptep_get_and_clear()``: an xchg with 0."""
        return self.pool.xchg(ptep, 0)

    @cython.ccall
    def update_mmu_cache_range(self, vma: VmaLike, addr: i64, ptep: i64, nr: i64) -> None:
        """Models: x86 ``update_mmu_cache_range()``: nothing."""

    # -- batch helpers (the same stores and counters as the C loops) -------
    @cython.ccall
    def wrprotect_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64) -> None:
        """Models: include/linux/pgtable.h ``wrprotect_ptes()`` (a loop of atomics)."""
        if nr == 1:
            self._ptep_set_wrprotect(mm, addr, ptep)
            return
        pool: PtePool = self.pool
        i: i64
        for i in range(ptep, ptep + nr):
            pool.xchg(i, pool.peek(i) & _NOT_RW)

    @cython.ccall
    def clear_full_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64, full: cython.bint) -> None:
        """Models: include/linux/pgtable.h ``clear_full_ptes()`` (a loop of xchg)."""
        pool: PtePool = self.pool
        i: i64
        for i in range(ptep, ptep + nr):
            pool.xchg(i, 0)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def get_and_clear_full_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64, full: cython.bint) -> u64:
        """Models: include/linux/pgtable.h ``get_and_clear_full_ptes()``."""
        pool: PtePool = self.pool
        pte: u64 = pool.xchg(ptep, 0)
        i: i64
        for i in range(ptep + 1, ptep + nr):
            pte |= pool.xchg(i, 0) & (_PAGE_DIRTY | _PAGE_ACCESSED)
        return pte

    # -- TLB maintenance (x86 style) ------------------------------------------
    @cython.cfunc
    def _shootdown(self, mm: MmLike, start: i64, pages: i64) -> None:
        """Flush ``pages`` pages from ``start`` (-1 pages: the whole mm) everywhere ``mm`` ran."""
        hw: Hardware = self.hw
        asid: i64 = mm.space.asid
        me: i64 = hw.current_cpu
        cpu: i64
        i: i64
        for cpu in sorted(mm.cpumask | {me}):
            if cpu != me:
                if cpu not in mm.cpumask:
                    continue
                hw.ipi(me, cpu)
                count(self.counters, IPI, 1)
            if pages < 0:
                hw.invpcid(cpu, asid)
            else:
                for i in range(pages):
                    hw.invlpg(cpu, asid, start + (i << self.page_shift))

    @cython.ccall
    def flush_tlb_mm(self, mm: MmLike) -> None:
        """Models: arch/x86/mm/tlb.c ``flush_tlb_mm()``."""
        self._shootdown(mm, 0, -1)

    @cython.ccall
    def flush_tlb_range(self, vma: VmaLike, start: i64, end: i64) -> None:
        """Models: arch/x86/mm/tlb.c ``flush_tlb_mm_range()``."""
        pages: i64 = (end - start) >> self.page_shift
        if pages > TLB_SINGLE_PAGE_FLUSH_CEILING:
            self._shootdown(vma.vm_mm, 0, -1)
        else:
            self._shootdown(vma.vm_mm, start, pages)

    @cython.ccall
    def flush_tlb_fix_spurious_fault(self, vma: VmaLike, addr: i64, ptep: i64) -> None:
        """x86: a spurious fault needs only a local invalidation."""
        self.hw.invlpg(self.hw.current_cpu, vma.vm_mm.space.asid, addr)
