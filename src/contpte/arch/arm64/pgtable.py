"""The arm64 public pgtable API with transparent contpte.

Models: arch/arm64/include/asm/pgtable.h (Linux v6.12): the public
functions core-mm calls, plus arch/arm64/mm/mmu.c
``ptep_modify_prot_start/commit()``.  The PTE format and the private ``__x``
helpers are in ``pgtable_base.py``.

Layering as in the kernel:

- ``_x`` methods are the kernel's private ``__x`` helpers: they act on raw
  descriptors and ignore PTE_CONT (contpte.c itself uses only these).
- The public methods are what core-mm calls.  With ``contpte=True``
  (CONFIG_ARM64_CONTPTE=y) they fold/unfold contiguous blocks transparently:
  setters strip PTE_CONT from the caller's PTE, getters gather access/dirty
  over the block and deliberately leak PTE_CONT back (``pte_leaf_size``).
  With ``contpte=False`` every public helper is its private form.

Model-only knobs (``Machine`` passes them): ``contpte``,
``wrprotect_ptes_opt``, ``teardown_opt``, ``bbml2_noabort``; see
``Arm64PgtableBase.OPTIONS``.

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

if not cython.compiled:
    from ...cdefs import i64, u64
    from ...counters import PTE_ATOMIC, PTE_READ, count
    from ...hw.tables import AddressSpace, PtePool
    from ..pgtable import GatherLike, MmLike, VmaLike
    from . import contpte, tlbflush
    from .pgtable_base import _ACCESS_BITS, _NOT_CONT, Arm64PgtableBase
    from .pgtable_prot import PTE_CONT, PTE_RDONLY, PTE_VALID

__all__ = ["Arm64Pgtable"]


@cython.final
@cython.cclass
class Arm64Pgtable(Arm64PgtableBase):
    """arm64: the VMSA PTE format, transparent contpte, broadcast TLBI.

    Models: arch/arm64/include/asm/pgtable.h (v6.12).
    """

    # ==================================================================
    # Public API (what core-mm calls).
    # ==================================================================
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_get(self, ptep: i64) -> u64:
        """Read a PTE; inside a folded block, with the block's access/dirty ORed in.

        Models: arm64 ``ptep_get()``.  PTE_CONT leaks out on purpose.

        Context: PTL held.
        """
        pte: u64 = self._ptep_get(ptep)
        if not self.contpte_enabled or (pte & (PTE_VALID | PTE_CONT)) != (PTE_VALID | PTE_CONT):
            return pte
        return contpte.contpte_ptep_get(self, ptep, pte)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_get_lockless(self, ptep: i64) -> u64:
        """Models: arm64 ``ptep_get_lockless()``.

        Context: no PTL (GUP-fast, lockless fault paths).
        """
        pte: u64 = self._ptep_get(ptep)
        if not self.contpte_enabled or (pte & (PTE_VALID | PTE_CONT)) != (PTE_VALID | PTE_CONT):
            return pte
        return contpte.contpte_ptep_get_lockless(self, ptep)

    @cython.ccall
    def set_pte(self, ptep: i64, pte: u64) -> None:
        """Models: arm64 ``set_pte()``: no mm/addr, so it cannot unfold; warns instead.

        Core-mm never calls it.
        """
        orig: u64
        if self.contpte_enabled:
            orig = self._ptep_get(ptep)
            if self.pte_valid_cont(orig):
                self.VM_WARN_ON(True, "set_pte over a valid contpte block", None, [orig, pte])
            pte = self.pte_mknoncont(pte)
        self._set_pte(ptep, pte)

    @cython.ccall
    def set_ptes(self, mm: MmLike, addr: i64, ptep: i64, pte: u64, nr: i64) -> None:
        """Map ``nr`` consecutive pages of one folio.

        Models: arm64 ``set_ptes()``.  ``nr == 1``: unfold the block the
        entry is in, write it, then try to fold its block if this was the
        last entry.  ``nr > 1``: ``contpte_set_ptes()`` sets PTE_CONT
        directly on whole aligned blocks.

        Context: PTL held; nr > 1: all entries none before, one folio, one PMD.
        """
        if not self.contpte_enabled:
            self._set_ptes(mm, addr, ptep, pte, nr)
            return
        pte &= _NOT_CONT
        if nr == 1:
            contpte.contpte_try_unfold(self, mm, addr, ptep, self._ptep_get(ptep), "set_ptes")
            self._set_ptes(mm, addr, ptep, pte, 1)
            contpte.contpte_try_fold(self, mm, addr, ptep, pte)
        else:
            contpte.contpte_set_ptes(self, mm, addr, ptep, pte, nr)

    @cython.ccall
    def pte_clear(self, mm: MmLike, addr: i64, ptep: i64) -> None:
        """Models: arm64 ``pte_clear()``: unfold, then a plain store of 0.

        Context: PTL held.
        """
        if self.contpte_enabled:
            contpte.contpte_try_unfold(self, mm, addr, ptep, self._ptep_get(ptep), "pte_clear")
        self._pte_clear(mm, addr, ptep)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_get_and_clear(self, mm: MmLike, addr: i64, ptep: i64) -> u64:
        """Clear one PTE and return it.  Models: arm64 ``ptep_get_and_clear()``.

        The returned value is not gathered, but the unfold has already
        smeared the block's access/dirty into every member.

        Context: PTL held.
        """
        return self._ptep_get_and_clear_caller(mm, addr, ptep, "ptep_get_and_clear")

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def _ptep_get_and_clear_caller(self, mm: MmLike, addr: i64, ptep: i64, caller: str) -> u64:
        """``ptep_get_and_clear()``; ``caller`` (model only) names the unfold counter."""
        if self.contpte_enabled:
            contpte.contpte_try_unfold(self, mm, addr, ptep, self._ptep_get(ptep), caller)
        return self._ptep_get_and_clear(mm, addr, ptep)

    @cython.ccall
    def clear_full_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64, full: cython.bint) -> None:
        """Clear ``nr`` PTEs of one folio (zap of an anon folio).

        Models: arm64 ``clear_full_ptes()``.  Fully covered blocks stay
        folded until cleared: no unfold, no TLBI (mmu_gather flushes later).

        Context: PTL held; one folio; one PMD.
        """
        if not self.contpte_enabled:
            self._clear_full_ptes(mm, addr, ptep, nr, full)
        elif not self.teardown_opt:
            self._per_pte_unfold(mm, addr, ptep, nr, "clear_full_ptes", False)
            self._clear_full_ptes(mm, addr, ptep, nr, full)
        elif nr == 1:
            contpte.contpte_try_unfold(self, mm, addr, ptep, self._ptep_get(ptep), "clear_full_ptes")
            self._clear_full_ptes(mm, addr, ptep, nr, full)
        else:
            contpte.contpte_clear_full_ptes(self, mm, addr, ptep, nr, full)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def get_and_clear_full_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64, full: cython.bint) -> u64:
        """Clear ``nr`` PTEs; return the first with access/dirty of all ORed in.

        Models: arm64 ``get_and_clear_full_ptes()``.

        Context: PTL held; one folio; one PMD.
        """
        if not self.contpte_enabled:
            return self._get_and_clear_full_ptes(mm, addr, ptep, nr, full)
        if not self.teardown_opt:
            self._per_pte_unfold(mm, addr, ptep, nr, "get_and_clear_full_ptes", False)
            return self._get_and_clear_full_ptes(mm, addr, ptep, nr, full)
        if nr == 1:
            contpte.contpte_try_unfold(self, mm, addr, ptep, self._ptep_get(ptep), "get_and_clear_full_ptes")
            return self._get_and_clear_full_ptes(mm, addr, ptep, nr, full)
        return contpte.contpte_get_and_clear_full_ptes(self, mm, addr, ptep, nr, full)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_test_and_clear_young(self, vma: VmaLike, addr: i64, ptep: i64) -> cython.bint:
        """Models: arm64 ``ptep_test_and_clear_young()``: whole block, no unfold.

        Context: PTL held.
        """
        pte: u64 = self._ptep_get(ptep)
        if not self.contpte_enabled or not self.pte_valid_cont(pte):
            return self._ptep_test_and_clear_young(vma, addr, ptep)
        return contpte.contpte_ptep_test_and_clear_young(self, vma, addr, ptep)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_clear_flush_young(self, vma: VmaLike, addr: i64, ptep: i64) -> cython.bint:
        """Models: arm64 ``ptep_clear_flush_young()``: whole block, nosync flush.

        Context: PTL held.
        """
        pte: u64 = self._ptep_get(ptep)
        if not self.contpte_enabled or not self.pte_valid_cont(pte):
            return self._ptep_clear_flush_young(vma, addr, ptep)
        return contpte.contpte_ptep_clear_flush_young(self, vma, addr, ptep)

    @cython.ccall
    def wrprotect_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64) -> None:
        """Write-protect ``nr`` PTEs of one folio (fork, the parent's side).

        Models: arm64 ``wrprotect_ptes()``.  Whole blocks stay folded and
        get no TLBI here (fork's ``flush_tlb_mm`` follows); partial blocks
        unfold.  ``wrprotect_ptes_opt=False``: one PTE at a time through
        the ``nr == 1`` path, so every block unfolds.

        Context: PTL held; one folio; one PMD.
        """
        pool: PtePool
        i: i64
        old: u64
        if not self.contpte_enabled:
            self._wrprotect_ptes(mm, addr, ptep, nr)
        elif nr == 1:
            self._wrprotect_pte(mm, addr, ptep, "wrprotect_ptes")
        elif not self.wrprotect_ptes_opt:
            self._per_pte_unfold(mm, addr, ptep, nr, "wrprotect_ptes", True)
            # The stores of the per-PTE loop (its reads counted above).
            pool = self.pool
            for i in range(ptep, ptep + nr):
                old = pool.peek(i)
                pool.cmpxchg(i, old, self.pte_wrprotect(old))
        else:
            contpte.contpte_wrprotect_ptes(self, mm, addr, ptep, nr)

    @cython.ccall
    def _wrprotect_pte(self, mm: MmLike, addr: i64, ptep: i64, caller: str) -> None:
        """The ``nr == 1`` fast path of ``wrprotect_ptes()``.

        Only present PTEs get here, so PTE_CONT alone decides the unfold and
        the CONT-stripped copy saves a re-read (fork is sensitive to it).
        """
        pte: u64 = self._ptep_get(ptep)
        if pte & PTE_CONT:
            contpte._contpte_try_unfold(self, mm, addr, ptep, pte, caller, True)
            pte &= _NOT_CONT
        self._ptep_set_wrprotect_from(mm, addr, ptep, pte)

    @cython.ccall
    def ptep_set_wrprotect(self, mm: MmLike, addr: i64, ptep: i64) -> None:
        """Models: arm64 ``ptep_set_wrprotect()`` = ``wrprotect_ptes(nr=1)``.

        Context: PTL held.
        """
        if not self.contpte_enabled:
            self._ptep_set_wrprotect(mm, addr, ptep)
        else:
            self._wrprotect_pte(mm, addr, ptep, "ptep_set_wrprotect")

    @cython.ccall
    def _per_pte_unfold(
        self, mm: MmLike, addr: i64, ptep: i64, nr: i64, caller: str, cont_only: cython.bint
    ) -> None:
        """The unfolds a per-PTE loop of ``nr == 1`` calls would do, block by block.

        Used by the historical variants (``wrprotect_ptes_opt=False``,
        ``teardown_opt=False``).  In the per-PTE loop only the first entry
        of each block within the range can still be CONT (its unfold
        repaints the whole block), so testing that entry per block gives
        the same unfolds in the same order.  Every one of the ``nr`` calls
        reads its entry once: those reads are counted here; the stores are
        left to the caller.
        """
        pool: PtePool = self.pool
        count(self.counters, PTE_READ, nr)
        cp: i64 = self.CONT_PTES
        i: i64 = 0
        pte: u64
        want: cython.bint
        while i < nr:
            pte = pool.peek(ptep + i)
            if cont_only:
                want = (pte & PTE_CONT) != 0
            else:
                want = self.pte_valid_cont(pte)
            if want:
                contpte._contpte_try_unfold(self, mm, addr + i * self.PAGE_SIZE, ptep + i, pte, caller, True)
                if cont_only and pool.peek(ptep + i) != pte & _NOT_CONT:
                    # ___ptep_set_wrprotect()'s first cmpxchg fails on the
                    # repainted entry and re-reads it.
                    count(self.counters, PTE_ATOMIC, 1)
                    count(self.counters, PTE_READ, 1)
            i += cp - ((ptep + i) & (cp - 1))

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_set_access_flags(
        self, vma: VmaLike, addr: i64, ptep: i64, entry: u64, dirty: cython.bint
    ) -> cython.bint:
        """Make a PTE more permissive after a fault; True if anything changed.

        Models: arm64 ``ptep_set_access_flags()``.

        Context: PTL held.
        """
        if not self.contpte_enabled:
            return self._ptep_set_access_flags(vma, addr, ptep, entry, dirty)
        pte: u64 = self._ptep_get(ptep)
        entry &= _NOT_CONT
        if not self.pte_valid_cont(pte):
            return self._ptep_set_access_flags(vma, addr, ptep, entry, dirty)
        return contpte.contpte_ptep_set_access_flags(self, vma, addr, ptep, entry, dirty)

    @cython.ccall
    def clear_young_dirty_ptes(self, vma: VmaLike, addr: i64, ptep: i64, nr: i64, flags: i64) -> None:
        """Models: arm64 ``clear_young_dirty_ptes()`` (MADV_FREE): no unfold.

        Context: PTL held; one folio; one PMD.
        """
        if not self.contpte_enabled:
            self._clear_young_dirty_ptes(vma, addr, ptep, nr, flags)
        elif nr == 1 and not self._ptep_get(ptep) & PTE_CONT:
            self._clear_young_dirty_ptes(vma, addr, ptep, nr, flags)
        else:
            contpte.contpte_clear_young_dirty_ptes(self, vma, addr, ptep, nr, flags)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_batch_hint(self, ptep: i64, pte: u64) -> i64:
        """How many PTEs from ``ptep`` map contiguous memory with the same prot.

        Models: arm64 ``pte_batch_hint()``: the rest of a folded block.
        """
        if not self.contpte_enabled or not self.pte_valid_cont(pte):
            return 1
        return self.CONT_PTES - (ptep & (self.CONT_PTES - 1))

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_modify_prot_start(self, vma: VmaLike, addr: i64, ptep: i64) -> u64:
        """Start a protection change of one PTE (mprotect).

        Models: arch/arm64/mm/mmu.c ``ptep_modify_prot_start()`` (v6.12):
        ``ptep_get_and_clear()``, so a folded block unfolds.  The Cortex-A510
        erratum 2645198 BBM path (exec -> non-exec) is not modelled.

        Context: PTL held.
        """
        return self._ptep_get_and_clear_caller(vma.vm_mm, addr, ptep, "ptep_modify_prot_start")

    @cython.ccall
    def ptep_modify_prot_commit(self, vma: VmaLike, addr: i64, ptep: i64, old_pte: u64, pte: u64) -> None:
        """Models: arch/arm64/mm/mmu.c ``ptep_modify_prot_commit()`` = ``set_pte_at()``.

        Rewriting the last PTE of a block may fold it again.

        Context: PTL held.
        """
        self.set_pte_at(vma.vm_mm, addr, ptep, pte)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmdp_set_access_flags(
        self, vma: VmaLike, addr: i64, pmd_index: i64, entry: u64, dirty: cython.bint
    ) -> cython.bint:
        """Make a huge PMD more permissive in place; True if it changed.

        Models: arm64 ``pmdp_set_access_flags()`` = ``__ptep_set_access_flags()``
        on the PMD: access bits merged (no break-before-make), and a
        ``flush_tlb_page()`` of ``addr`` if ``dirty``.

        Context: PMD lock held.
        """
        space: AddressSpace = vma.vm_mm.space
        old: u64 = space.pmd_load(pmd_index)
        if self.pte_same(old, entry):
            return False
        bits: u64 = (entry & _ACCESS_BITS) ^ PTE_RDONLY
        count(self.counters, PTE_ATOMIC, 1)
        space.pmd_store(pmd_index, ((old ^ PTE_RDONLY) | bits) ^ PTE_RDONLY)
        if dirty:
            tlbflush.flush_tlb_page(self, vma, addr)
        return True

    # ==================================================================
    # TLB maintenance (asm/tlbflush.h, asm/tlb.h).
    # ==================================================================
    @cython.ccall
    def flush_tlb_mm(self, mm: MmLike) -> None:
        """Models: arm64 ``flush_tlb_mm()``: one ASIDE1IS."""
        tlbflush.flush_tlb_mm(self, mm)

    @cython.ccall
    def flush_tlb_range(self, vma: VmaLike, start: i64, end: i64) -> None:
        """Models: arm64 ``flush_tlb_range()``: not leaf-only, level unknown."""
        tlbflush.flush_tlb_range(self, vma, start, end)

    @cython.ccall
    def flush_tlb_page(self, vma: VmaLike, addr: i64) -> None:
        """Models: arm64 ``flush_tlb_page()``: one VALE1IS + DSB ISH."""
        tlbflush.flush_tlb_page(self, vma, addr)

    @cython.ccall
    def flush_pmd_tlb_range(self, vma: VmaLike, start: i64, end: i64) -> None:
        """Models: arm64 ``flush_pmd_tlb_range()``: PMD stride, level 2."""
        tlbflush.flush_pmd_tlb_range(self, vma, start, end)

    @cython.ccall
    def flush_tlb_fix_spurious_fault(self, vma: VmaLike, addr: i64, ptep: i64) -> None:
        """Models: arm64 ``flush_tlb_fix_spurious_fault()``: nothing.

        arm64 invalidates with broadcast TLBIs, so a spurious fault that
        another CPU already fixed needs no local invalidation.
        """

    @cython.ccall
    def tlb_flush(self, tlb: GatherLike) -> None:
        """Models: arch/arm64/include/asm/tlb.h ``tlb_flush()``."""
        tlbflush.tlb_flush(self, tlb)
