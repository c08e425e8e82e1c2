"""A plain PTE format on a Flat (x86-like) MMU with the pgtable.h fallbacks.

Models: include/linux/pgtable.h generic fallbacks (Linux v6.12) with an
x86-style PTE layout and x86-style TLB shootdown (local INVLPG/INVPCID plus
IPIs to the CPUs in ``mm_cpumask``, one full flush above
``tlb_single_page_flush_ceiling`` = 33 pages, arch/x86/mm/tlb.c).

This backend has no contiguous hint: ``pte_batch_hint`` is 1 and every
batch helper is a loop over single PTEs (vectorised where the result is the
same).  Running a workload here and on arm64 must give the same observable
behaviour; only the cost differs.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from ..counters import counter
from .pgtable import MmLike, Pgtable, PteBatches, PtePtr, VmaLike

__all__ = ["GenericPgtable"]

# Hardware bits (Flat format, x86-like).
_PAGE_PRESENT = 1 << 0
_PAGE_RW = 1 << 1
_PAGE_USER = 1 << 2
_PAGE_ACCESSED = 1 << 5
_PAGE_DIRTY = 1 << 6
_PAGE_PSE = 1 << 7
_PAGE_NX = 1 << 63
# Software bits.
_PAGE_PROTNONE = 1 << 8  # x86 reuses GLOBAL when !PRESENT
_PAGE_SPECIAL = 1 << 9
_PAGE_UFFD_WP = 1 << 10
_PAGE_SOFT_DIRTY = 1 << 11
_PFN_SHIFT = 12
_U64 = (1 << 64) - 1
_PFN_MASK = ((1 << 52) - 1) & ~((1 << _PFN_SHIFT) - 1)

_VM_READ, _VM_WRITE, _VM_EXEC, _VM_SHARED = 1, 2, 4, 8

#: Bits pte_modify() keeps (x86 _PAGE_CHG_MASK): pfn, A/D, special, soft-dirty, uffd-wp.
_PAGE_CHG_MASK = _PFN_MASK | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_SPECIAL | _PAGE_SOFT_DIRTY | _PAGE_UFFD_WP

TLB_SINGLE_PAGE_FLUSH_CEILING = 33
"""arch/x86/mm/tlb.c: above this many pages a full flush is cheaper."""

IPI = counter("ipi.tlb_shootdown")


class GenericPgtable(Pgtable):
    """include/linux/pgtable.h fallbacks on a Flat MMU (no contiguous bit)."""

    name = "generic"
    OPTIONS: dict[str, Any] = {}

    def __init__(self, hw: Any, page_shift: int = 12, **options: Any) -> None:
        super().__init__(hw, page_shift=page_shift, **options)
        self.PFN_PTE_SHIFT = page_shift

    # -- format ---------------------------------------------------------------
    def pte_present(self, pte: int) -> bool:
        return bool(pte & (_PAGE_PRESENT | _PAGE_PROTNONE))

    def pte_pfn(self, pte: int) -> int:
        return (pte & _PFN_MASK) >> self.PFN_PTE_SHIFT

    def pfn_pte(self, pfn: int, prot: int) -> int:
        return (pfn << self.PFN_PTE_SHIFT) | (prot & ~_PFN_MASK)

    def pte_pgprot(self, pte: int) -> int:
        return pte & ~_PFN_MASK

    def pte_write(self, pte: int) -> bool:
        return bool(pte & _PAGE_RW)

    def pte_dirty(self, pte: int) -> bool:
        return bool(pte & _PAGE_DIRTY)

    def pte_young(self, pte: int) -> bool:
        return bool(pte & _PAGE_ACCESSED)

    def pte_special(self, pte: int) -> bool:
        return bool(pte & _PAGE_SPECIAL)

    def pte_mkspecial(self, pte: int) -> int:
        return pte | _PAGE_SPECIAL

    def pte_mkwrite(self, pte: int) -> int:
        return pte | _PAGE_RW

    def pte_wrprotect(self, pte: int) -> int:
        return pte & ~_PAGE_RW

    def pte_mkclean(self, pte: int) -> int:
        return pte & ~_PAGE_DIRTY

    def pte_mkdirty(self, pte: int) -> int:
        return pte | _PAGE_DIRTY | _PAGE_SOFT_DIRTY

    def pte_mkold(self, pte: int) -> int:
        return pte & ~_PAGE_ACCESSED

    def pte_mkyoung(self, pte: int) -> int:
        return pte | _PAGE_ACCESSED

    def pte_modify(self, pte: int, newprot: int) -> int:
        return (pte & _PAGE_CHG_MASK) | (newprot & ~_PAGE_CHG_MASK)

    def pte_protnone(self, pte: int) -> bool:
        return (pte & (_PAGE_PRESENT | _PAGE_PROTNONE)) == _PAGE_PROTNONE

    def pte_uffd_wp(self, pte: int) -> bool:
        return bool(pte & _PAGE_UFFD_WP)

    def pte_mkuffd_wp(self, pte: int) -> int:
        return self.pte_wrprotect(pte | _PAGE_UFFD_WP)

    def pte_clear_uffd_wp(self, pte: int) -> int:
        return pte & ~_PAGE_UFFD_WP

    def pte_soft_dirty(self, pte: int) -> bool:
        return bool(pte & _PAGE_SOFT_DIRTY)

    def pte_mksoft_dirty(self, pte: int) -> int:
        return pte | _PAGE_SOFT_DIRTY

    def pte_clear_soft_dirty(self, pte: int) -> int:
        return pte & ~_PAGE_SOFT_DIRTY

    def ptes_decode(
        self, entries: np.ndarray, fields: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        e = entries.astype(np.uint64, copy=False)

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

    def vm_get_page_prot(self, vm_flags: int) -> int:
        """Models: arch/x86/mm/pgprot.c ``vm_get_page_prot()`` (protection_map)."""
        if not vm_flags & (_VM_READ | _VM_WRITE | _VM_EXEC):
            return _PAGE_PROTNONE | _PAGE_ACCESSED
        prot = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
        if (vm_flags & _VM_WRITE) and (vm_flags & _VM_SHARED):
            prot |= _PAGE_RW
        if not vm_flags & _VM_EXEC:
            prot |= _PAGE_NX
        return prot

    def pte_pmd(self, pte: int) -> int:
        return pte | _PAGE_PSE

    def pmd_pte(self, pmd: int) -> int:
        return pmd & ~_PAGE_PSE

    def pmd_mkinvalid(self, pmd: int) -> int:
        return pmd & ~_PAGE_PRESENT

    # -- vectorised fallbacks (same stores and counters as the C loops) -------
    def wrprotect_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, nr: int) -> None:
        """Models: include/linux/pgtable.h ``wrprotect_ptes()`` (a loop of atomics)."""
        if nr == 1:
            self._ptep_set_wrprotect(mm, addr, ptep)
            return
        t = ptep.table
        vals = t.entries[ptep.idx : ptep.idx + nr] & np.uint64(~_PAGE_RW & ((1 << 64) - 1))
        self.counters.add("pte.atomic", nr)
        t.store_many(ptep.idx, vals)

    def clear_full_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, nr: int, full: bool) -> None:
        """Models: include/linux/pgtable.h ``clear_full_ptes()`` (a loop of xchg)."""
        if nr == 1:
            self._ptep_get_and_clear(mm, addr, ptep)
            return
        self.counters.add("pte.atomic", nr)
        ptep.table.store_many(ptep.idx, np.zeros(nr, dtype=np.uint64))

    def get_and_clear_full_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, nr: int, full: bool) -> int:
        """Models: include/linux/pgtable.h ``get_and_clear_full_ptes()``."""
        if nr == 1:
            return self._ptep_get_and_clear(mm, addr, ptep)
        t = ptep.table
        old = t.entries[ptep.idx : ptep.idx + nr].copy()
        self.counters.add("pte.atomic", nr)
        t.store_many(ptep.idx, np.zeros(nr, dtype=np.uint64))
        ored = int(np.bitwise_or.reduce(old)) & (_PAGE_DIRTY | _PAGE_ACCESSED)
        return int(old[0]) | ored

    # -- bulk forms for core-mm's fast paths (see Pgtable) ---------------------
    BULK = True

    def pte_pfn_v(self, vals: np.ndarray) -> np.ndarray:
        return ((vals & np.uint64(_PFN_MASK)) >> np.uint64(self.PFN_PTE_SHIFT)).astype(np.int64)

    def pte_write_v(self, vals: np.ndarray) -> np.ndarray:
        return np.asarray((vals & np.uint64(_PAGE_RW)) != 0)

    def pte_uffd_wp_v(self, vals: np.ndarray) -> np.ndarray:
        return np.asarray((vals & np.uint64(_PAGE_UFFD_WP)) != 0)

    def pte_wrprotect_v(self, vals: np.ndarray) -> np.ndarray:
        return vals & np.uint64(~_PAGE_RW & _U64)

    def pte_mkwrite_v(self, vals: np.ndarray) -> np.ndarray:
        return vals | np.uint64(_PAGE_RW)

    def pte_mkold_v(self, vals: np.ndarray) -> np.ndarray:
        return vals & np.uint64(~_PAGE_ACCESSED & _U64)

    def pte_clear_soft_dirty_v(self, vals: np.ndarray) -> np.ndarray:
        return vals & np.uint64(~_PAGE_SOFT_DIRTY & _U64)

    def pte_mkclean_v(self, vals: np.ndarray) -> np.ndarray:
        return vals & np.uint64(~_PAGE_DIRTY & _U64)

    def bulk_plain_v(self, raw: np.ndarray) -> np.ndarray:
        bad = np.uint64(_PAGE_SPECIAL | _PAGE_UFFD_WP)
        return np.asarray(((raw & np.uint64(_PAGE_PRESENT)) != 0) & ((raw & bad) == 0))

    def bulk_uniform_reads(self, raw: np.ndarray) -> tuple[int, int, int] | None:
        if not len(raw) or not int(np.bitwise_and.reduce(raw)) & _PAGE_PRESENT:
            return None
        return None if int(np.bitwise_or.reduce(raw)) & (_PAGE_SPECIAL | _PAGE_UFFD_WP) else (1, 1, 0)

    def bulk_wrprotect_ptes(
        self, vals: np.ndarray, b: PteBatches
    ) -> tuple[np.ndarray, dict[str, int]] | None:
        """``wrprotect_ptes()`` per batch: one atomic per PTE (nr == 1 reads uncounted too)."""
        counts = {"pte.atomic": b.total, "pte.write": b.total}
        if b.total == 0:
            return vals, counts
        if b.total == b.n:
            return self.pte_wrprotect_v(vals), counts
        return np.where(b.mask(), self.pte_wrprotect_v(vals), vals), counts

    def bulk_set_ptes(
        self, b: PteBatches, ptes: np.ndarray, folio_first: np.ndarray, folio_nr: np.ndarray
    ) -> tuple[np.ndarray, dict[str, int]] | None:
        """``set_ptes()`` per batch: ``__set_ptes``, one store per PTE."""
        if not len(b):
            return np.zeros(b.n, dtype=np.uint64), {}
        if b.stride and b.total == b.n:  # uniform batches tiling every entry
            if b.stride == 1:
                return ptes.copy(), {"pte.write": b.total}
            offs = np.arange(b.stride, dtype=np.uint64) << np.uint64(self.PFN_PTE_SHIFT)
            return (ptes[:, None] + offs[None, :]).reshape(-1), {"pte.write": b.total}
        bid = b.bid()
        vals = ptes[bid] + (b.offset().astype(np.uint64) << np.uint64(self.PFN_PTE_SHIFT))
        out = np.where(b.mask(), vals, np.uint64(0))
        return out, {"pte.write": b.total}

    def bulk_clear_full_ptes(self, vals: np.ndarray, b: PteBatches, full: bool) -> dict[str, int] | None:
        """``clear_full_ptes()`` per batch: one xchg per PTE."""
        return {"pte.atomic": b.total, "pte.write": b.total}

    # -- TLB maintenance (x86 style) ------------------------------------------
    def _shootdown(self, mm: MmLike, vas: list[int] | None) -> None:
        hw = self.hw
        asid = mm.space.asid
        me = hw.current_cpu
        for cpu in sorted(mm.cpumask | {me}):
            if cpu != me:
                if cpu not in mm.cpumask:
                    continue
                hw.ipi(me, cpu)
                self.counters.add(IPI)
            if vas is None:
                hw.invpcid(cpu, asid)
            else:
                for va in vas:
                    hw.invlpg(cpu, asid, va)

    def flush_tlb_mm(self, mm: MmLike) -> None:
        """Models: arch/x86/mm/tlb.c ``flush_tlb_mm()``."""
        self._shootdown(mm, None)

    def flush_tlb_range(self, vma: VmaLike, start: int, end: int) -> None:
        """Models: arch/x86/mm/tlb.c ``flush_tlb_mm_range()``."""
        pages = (end - start) >> self.page_shift
        if pages > TLB_SINGLE_PAGE_FLUSH_CEILING:
            self._shootdown(vma.vm_mm, None)
        else:
            self._shootdown(vma.vm_mm, [start + (i << self.page_shift) for i in range(pages)])

    def flush_tlb_fix_spurious_fault(self, vma: VmaLike, addr: int, ptep: PtePtr | None) -> None:
        """x86: a spurious fault needs only a local invalidation."""
        self.hw.invlpg(self.hw.current_cpu, vma.vm_mm.space.asid, addr)
