"""The arm64 PTE format and the public pgtable API with transparent contpte.

Models: arch/arm64/include/asm/pgtable.h, pgtable-hwdef.h, pgtable-prot.h
(Linux v6.12), plus the out-of-line arm64 helpers core-mm reaches through
them: arch/arm64/mm/fault.c ``__ptep_set_access_flags()``,
arch/arm64/mm/mmu.c ``ptep_modify_prot_start/commit()`` and
arch/arm64/mm/mmap.c ``vm_get_page_prot()``.

Layering as in the kernel:

- ``_x`` methods are the kernel's private ``__x`` helpers: they act on raw
  descriptors and ignore PTE_CONT (contpte.c itself uses only these).
  They are C-only methods (``@cython.cfunc``), declared in the ``Pgtable``
  base so that contpte.c's functions (``contpte.py``) can call them.
- The public methods are what core-mm calls.  With ``contpte=True``
  (CONFIG_ARM64_CONTPTE=y) they fold/unfold contiguous blocks transparently:
  setters strip PTE_CONT from the caller's PTE, getters gather access/dirty
  over the block and deliberately leak PTE_CONT back (``pte_leaf_size``).
  With ``contpte=False`` every public helper is its private form.

Every C loop over PTEs is a loop here too, counting the same descriptor
loads, stores and atomics (``pte.read``/``pte.write``/``pte.atomic``).

Model-only knobs (``Machine`` passes them): ``contpte``,
``wrprotect_ptes_opt``, ``teardown_opt``, ``bbml2_noabort``,
``wrprotect_refold``, ``set_ptes_fold``, ``batch_hint``; see
``Arm64Pgtable.OPTIONS``.

Compiled (docs/core.md); ``Arm64Pgtable`` is a final class, so a call of
one of its methods through the ``Pgtable`` base costs a C virtual call.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import cython
import numpy as np

from ...errors import ModelUsageError

if not cython.compiled:
    from ...cdefs import i64, u64
    from ...counters import PTE_ATOMIC, PTE_READ, count
    from ...hw.tables import AddressSpace, PtePool
    from ..pgtable import CYDP_CLEAR_DIRTY, CYDP_CLEAR_YOUNG, GatherLike, MmLike, Pgtable, VmaLike
    from . import contpte, tlbflush
    from .pgtable_prot import (
        _SWP_OFFSET_MASK,
        _SWP_OFFSET_SHIFT,
        _SWP_TYPE_MASK,
        _SWP_TYPE_SHIFT,
        PMD_PRESENT_INVALID,
        PTE_AF,
        PTE_ATTRINDX_MASK,
        PTE_CONT,
        PTE_DEVMAP,
        PTE_DIRTY,
        PTE_GP,
        PTE_PO_IDX_MASK,
        PTE_PRESENT_INVALID,
        PTE_PXN,
        PTE_RDONLY,
        PTE_SPECIAL,
        PTE_SWP_EXCLUSIVE,
        PTE_SWP_UFFD_WP,
        PTE_TABLE_BIT,
        PTE_TYPE_PAGE,
        PTE_UFFD_WP,
        PTE_USER,
        PTE_UXN,
        PTE_VALID,
        PTE_WRITE,
        U64_MAX,
        VM_EXEC,
        VM_READ,
        VM_SHARED,
        VM_WRITE,
    )

from .pgtable_prot import CONT_PTES_BY_SHIFT, PROTECTION_MAP

__all__ = ["Arm64Pgtable"]

#: The bits pte_modify() replaces (v6.12: includes POE's pkey index).
_PTE_MODIFY_MASK = cython.declare(
    u64,
    PTE_USER
    | PTE_PXN
    | PTE_UXN
    | PTE_RDONLY
    | PTE_PRESENT_INVALID
    | PTE_VALID
    | PTE_WRITE
    | PTE_GP
    | PTE_ATTRINDX_MASK
    | PTE_PO_IDX_MASK,
)
_NOT_PTE_MODIFY_MASK = cython.declare(u64, U64_MAX & ~_PTE_MODIFY_MASK)
_NOT_RDONLY = cython.declare(u64, U64_MAX & ~PTE_RDONLY)
_NOT_WRITE = cython.declare(u64, U64_MAX & ~PTE_WRITE)
_NOT_DIRTY = cython.declare(u64, U64_MAX & ~PTE_DIRTY)
_NOT_AF = cython.declare(u64, U64_MAX & ~PTE_AF)
_NOT_CONT = cython.declare(u64, U64_MAX & ~PTE_CONT)
_NOT_UFFD_WP = cython.declare(u64, U64_MAX & ~PTE_UFFD_WP)
_NOT_VALID = cython.declare(u64, U64_MAX & ~PTE_VALID)
_NOT_TABLE_BIT = cython.declare(u64, U64_MAX & ~PTE_TABLE_BIT)
_NOT_SWP_EXCLUSIVE = cython.declare(u64, U64_MAX & ~PTE_SWP_EXCLUSIVE)
_NOT_SWP_UFFD_WP = cython.declare(u64, U64_MAX & ~PTE_SWP_UFFD_WP)
_ACCESS_BITS = cython.declare(u64, PTE_RDONLY | PTE_AF | PTE_WRITE | PTE_DIRTY)
#: ``PTE_SWBITS_MASK`` (v6.19 pgtable-hwdef.h): bit 63 and bits [58:55], ignored by the walker.
_PTE_SWBITS_MASK = cython.declare(u64, (cython.cast(u64, 1) << 63) | (cython.cast(u64, 0xF) << 55))


@cython.final
@cython.cclass
class Arm64Pgtable(Pgtable):
    """arm64: the VMSA PTE format, transparent contpte, broadcast TLBI.

    Models: arch/arm64/include/asm/pgtable.h (v6.12).
    """

    OPTIONS: dict[str, Any] = {
        # CONFIG_ARM64_CONTPTE.  False: every public helper is its __ form.
        "contpte": True,
        # False: wrprotect_ptes() write-protects one PTE at a time (the
        # pre-"batch fork" kernel), so every folded block unfolds at fork.
        "wrprotect_ptes_opt": True,
        # False: [get_and_]clear_full_ptes() clear one PTE at a time, so
        # every folded block unfolds at munmap/exit.
        "teardown_opt": True,
        # True: contpte_convert() skips its intermediate TLBI (v6.17+,
        # system_supports_bbml2_noabort(); the Machine resolves its "cpu"
        # value from the CPU preset).  The rule checker flags it on
        # hardware without BBML2 and no-abort.
        "bbml2_noabort": False,
        # True (v6.17+): contpte_ptep_get() and contpte_ptep_get_lockless()
        # stop reading the block once they have seen young and dirty.
        "ptep_get_early_exit": False,
        # True (v7.0+, the fix 97c5550b7631): contpte_ptep_set_access_flags()
        # is a no-op only if every member has the entry's access bits.
        "access_flags_subptes": False,
        # True (v6.9, f0c2264958e1 "arm64/mm: automatically fold contpte
        # mappings", the contpte series' last patch, v6 18/18): set_ptes()
        # with nr == 1 tries to fold the block after writing its last entry
        # (contpte_try_fold()).  False: the series up to v6 patch 17, whose
        # "Wire up PTE_CONT for user mappings" (4602e5757bcc) folds only
        # what one set_ptes() call writes as whole aligned blocks and
        # otherwise never folds ("folding is not performed in this initial
        # implementation").
        "set_ptes_fold": True,
        # True (v6.9, c6ec76a2ebc5 "mm: add pte_batch_hint() to reduce
        # scanning in folio_pte_batch()" with fb5451e5f72b "arm64/mm:
        # implement pte_batch_hint()", v6 patches 15 and 16):
        # pte_batch_hint() is the rest of a folded block, so
        # folio_pte_batch() reads a folded block once.  False: the generic
        # hint of 1, every entry read through ptep_get() (a folded entry
        # gathering its whole block).
        "batch_hint": True,
        # True: ptep_set_wrprotect() (and every nr == 1 write-protect) tries
        # to fold the block again after write-protecting its entry, as the
        # contpte series' v4 posting did ("arm64/mm: Wire up PTE_CONT for
        # user mappings", LKML 2023-12-18, patch 14 of 16: unfold,
        # __ptep_set_wrprotect(), contpte_try_fold()).  Mainline (v6.9) only
        # folds from set_ptes().  A per-PTE write-protect of a folded block
        # then unfolds it at its first entry and folds it at its last.
        "wrprotect_refold": False,
        # True (v6.17, commit 7efa1cd5f89b "arm64: add batched versions of
        # ptep_modify_prot_start/commit", Dev Jain): modify_prot_start_ptes()
        # is get_and_clear_ptes() and modify_prot_commit_ptes() is
        # set_ptes(), so a batched mprotect (core-mm's mprotect_batch) of
        # whole contiguous blocks neither unfolds nor refolds them.  False:
        # the generic per-PTE loops (v6.12 has no batched mprotect).
        "modify_prot_ptes_opt": False,
        # True (v6.19, Huang Ying's "arm64, tlbflush: don't TLBI broadcast if
        # page reused in write fault"): a fault that only relaxed permissions
        # or set the Access flag flushes this CPU's TLB only:
        # __ptep_set_access_flags() with local_flush_tlb_page(),
        # contpte_ptep_set_access_flags() with local_flush_tlb_contpte(), and
        # flush_tlb_fix_spurious_fault() (a nop before) and its PMD form with
        # local_flush_tlb_page_nonotify().  Other CPUs' stale, less
        # permissive entries fault spuriously and are flushed there.
        "tlbi_nobroadcast": False,
        # True (v6.19): arm64's pte_needs_flush()/huge_pmd_needs_flush():
        # mprotect queues no flush for a valid PTE/PMD whose change is in
        # software bits only (PTE_SWBITS_MASK); before, the generic "always".
        "pte_flags_need_flush": False,
    }

    def __init__(self, hw: Any, page_shift: i64 = 12, **options: Any) -> None:
        if page_shift not in CONT_PTES_BY_SHIFT:
            raise ModelUsageError(f"arm64: page_shift {page_shift} is not a granule (12, 14 or 16)")
        super().__init__(hw, page_shift, **options)
        self.PFN_PTE_SHIFT = page_shift
        #: Output address bits [47:PAGE_SHIFT] (48-bit PA; LPA/LPA2 not modelled).
        self.PTE_ADDR_LOW = ((1 << 48) - 1) & ~((1 << page_shift) - 1)
        self.NOT_ADDR_LOW = U64_MAX & ~self.PTE_ADDR_LOW
        self.CONT_PTES = CONT_PTES_BY_SHIFT[page_shift]
        self.CONT_PTE_SIZE = self.CONT_PTES * self.PAGE_SIZE
        self.CONT_PTE_MASK = U64_MAX & ~(self.CONT_PTE_SIZE - 1)
        self.contpte_enabled = bool(self.options["contpte"])
        self.wrprotect_ptes_opt = bool(self.options["wrprotect_ptes_opt"])
        self.teardown_opt = bool(self.options["teardown_opt"])
        self.bbml2_noabort = bool(self.options["bbml2_noabort"])
        self.wrprotect_refold = bool(self.options["wrprotect_refold"])
        self.set_ptes_fold = bool(self.options["set_ptes_fold"])
        self.batch_hint = bool(self.options["batch_hint"])
        self.modify_prot_ptes_opt = bool(self.options["modify_prot_ptes_opt"])
        self.ptep_get_early_exit = bool(self.options["ptep_get_early_exit"])
        self.access_flags_subptes = bool(self.options["access_flags_subptes"])
        self.tlbi_nobroadcast = bool(self.options["tlbi_nobroadcast"])
        self.pte_flags_need_flush = bool(self.options["pte_flags_need_flush"])
        self.tlbirange = bool(hw.features.tlbirange)
        self.kpti = bool(hw.features.kpti)

    @property
    def name(self) -> str:
        return "arm64"

    # ==================================================================
    # PTE format (scalar helpers on pte_t values).
    # ==================================================================
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_valid(self, pte: u64) -> cython.bint:
        return (pte & PTE_VALID) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_present_invalid(self, pte: u64) -> cython.bint:
        return (pte & (PTE_VALID | PTE_PRESENT_INVALID)) == PTE_PRESENT_INVALID

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_present(self, pte: u64) -> cython.bint:
        """v6.12: valid, or present-invalid (PROT_NONE, pmd_mkinvalid)."""
        return (pte & PTE_VALID) != 0 or (pte & (PTE_VALID | PTE_PRESENT_INVALID)) == PTE_PRESENT_INVALID

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_pfn(self, pte: u64) -> i64:
        return cython.cast(i64, (pte & self.PTE_ADDR_LOW) >> self.PAGE_SHIFT)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pfn_pte(self, pfn: i64, prot: u64) -> u64:
        return ((cython.cast(u64, pfn) << self.PAGE_SHIFT) & self.PTE_ADDR_LOW) | prot

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_pgprot(self, pte: u64) -> u64:
        return pte & self.NOT_ADDR_LOW

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_advance_pfn(self, pte: u64, nr: i64) -> u64:
        return self.pfn_pte(self.pte_pfn(pte) + nr, pte & self.NOT_ADDR_LOW)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_write(self, pte: u64) -> cython.bint:
        return (pte & PTE_WRITE) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_rdonly(self, pte: u64) -> cython.bint:
        return (pte & PTE_RDONLY) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_user(self, pte: u64) -> cython.bint:
        return (pte & PTE_USER) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_user_exec(self, pte: u64) -> cython.bint:
        return (pte & PTE_UXN) == 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_hw_dirty(self, pte: u64) -> cython.bint:
        return (pte & PTE_WRITE) != 0 and (pte & PTE_RDONLY) == 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_sw_dirty(self, pte: u64) -> cython.bint:
        return (pte & PTE_DIRTY) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_dirty(self, pte: u64) -> cython.bint:
        return (pte & PTE_DIRTY) != 0 or ((pte & PTE_WRITE) != 0 and (pte & PTE_RDONLY) == 0)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_young(self, pte: u64) -> cython.bint:
        return (pte & PTE_AF) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_special(self, pte: u64) -> cython.bint:
        return (pte & PTE_SPECIAL) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkspecial(self, pte: u64) -> u64:
        return pte | PTE_SPECIAL

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_devmap(self, pte: u64) -> cython.bint:
        return (pte & PTE_DEVMAP) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_cont(self, pte: u64) -> cython.bint:
        return (pte & PTE_CONT) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_valid_cont(self, pte: u64) -> cython.bint:
        return (pte & (PTE_VALID | PTE_CONT)) == (PTE_VALID | PTE_CONT)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkcont(self, pte: u64) -> u64:
        """Models: arm64 ``pte_mkcont()``, as fixed in v6.13: set PTE_CONT.

        v6.12's also forces PTE_TYPE_PAGE (0b11), which makes a present-invalid
        (PROT_NONE / NUMA-hinting) entry valid when ``contpte_set_ptes()``
        maps a whole block of them (fork's batch copy): the child gets
        valid, non-user PTEs that ``pte_protnone()`` no longer recognises,
        and a NUMA-hinting fault on them never resolves.  That is the bug
        catalog's ``pte_mkcont_sets_type_page``; by default the model
        follows the kernel the arm64 oracle boots (docs/kernel.md a.1).
        """
        if self.bug("pte_mkcont_sets_type_page"):
            return pte | PTE_CONT | PTE_TYPE_PAGE
        return pte | PTE_CONT

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mknoncont(self, pte: u64) -> u64:
        return pte & _NOT_CONT

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_leaf_size(self, pte: u64) -> i64:
        """The size the TLB caches for ``pte`` (perf_get_pgtable_size)."""
        return self.CONT_PTE_SIZE if pte & PTE_CONT else self.PAGE_SIZE

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkwrite(self, pte: u64) -> u64:
        """``pte_mkwrite_novma()``, v6.12 form.

        Sets WRITE and clears RDONLY unconditionally, so the result is
        hardware-dirty.  (From ~v6.18 RDONLY is cleared only if sw-dirty.)
        """
        return (pte | PTE_WRITE) & _NOT_RDONLY

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_wrprotect(self, pte: u64) -> u64:
        """Clear WRITE, set RDONLY; a hardware-dirty PTE keeps its dirtiness in PTE_DIRTY."""
        if (pte & PTE_WRITE) != 0 and (pte & PTE_RDONLY) == 0:
            pte |= PTE_DIRTY
        return (pte & _NOT_WRITE) | PTE_RDONLY

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkclean(self, pte: u64) -> u64:
        """Clear the sw dirty bit and set RDONLY (which clears hw dirtiness)."""
        return (pte & _NOT_DIRTY) | PTE_RDONLY

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkdirty(self, pte: u64) -> u64:
        """Set the sw dirty bit; clear RDONLY only if writable (else it stays read-only)."""
        pte |= PTE_DIRTY
        if pte & PTE_WRITE:
            pte &= _NOT_RDONLY
        return pte

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkold(self, pte: u64) -> u64:
        return pte & _NOT_AF

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkyoung(self, pte: u64) -> u64:
        return pte | PTE_AF

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkinvalid(self, pte: u64) -> u64:
        return (pte | PTE_PRESENT_INVALID) & _NOT_VALID

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_accessible(self, mm: MmLike, pte: u64) -> cython.bint:
        """Models: arm64 ``pte_accessible()``: a valid entry; a present one
        (PROT_NONE included) only while ``mm_tlb_flush_pending(mm)``.

        The model's deferred flushes (mmu_gather, mprotect) end before any
        ``ptep_clear_flush()`` caller runs, so none is pending here.
        """
        return self.pte_valid(pte)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_modify(self, pte: u64, newprot: u64) -> u64:
        """Replace the permission bits, keeping pfn and A/D (hw dirty survives in PTE_DIRTY)."""
        if self.pte_hw_dirty(pte):
            pte |= PTE_DIRTY
        pte = (pte & _NOT_PTE_MODIFY_MASK) | (newprot & _PTE_MODIFY_MASK)
        # If the new prot made a sw-dirty PTE hw-clean, make it hw-dirty again.
        if pte & PTE_DIRTY:
            pte = self.pte_mkdirty(pte)
        return pte

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_protnone(self, pte: u64) -> cython.bint:
        """NUMA-hinting/PROT_NONE: present-invalid, no user access, UXN set."""
        return self.pte_present_invalid(pte) and (pte & PTE_USER) == 0 and (pte & PTE_UXN) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_uffd_wp(self, pte: u64) -> cython.bint:
        return (pte & PTE_UFFD_WP) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkuffd_wp(self, pte: u64) -> u64:
        return self.pte_wrprotect(pte | PTE_UFFD_WP)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_clear_uffd_wp(self, pte: u64) -> u64:
        return pte & _NOT_UFFD_WP

    # arm64 has no soft-dirty: the base class's no-op helpers apply.

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_access_permitted(self, pte: u64, write: cython.bint) -> cython.bint:
        return (pte & (PTE_VALID | PTE_USER)) == (PTE_VALID | PTE_USER) and (
            not write or (pte & PTE_WRITE) != 0
        )

    # -- swap entries (non-present PTEs) --------------------------------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def swp_entry(self, type_: i64, offset: i64) -> u64:
        """The swap PTE for (type, offset).  Models: ``__swp_entry()`` + ``__swp_entry_to_pte()``."""
        return ((cython.cast(u64, type_) & _SWP_TYPE_MASK) << _SWP_TYPE_SHIFT) | (
            (cython.cast(u64, offset) & _SWP_OFFSET_MASK) << _SWP_OFFSET_SHIFT
        )

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def swp_type(self, pte: u64) -> i64:
        """Models: ``__swp_type(__pte_to_swp_entry(pte))``."""
        return cython.cast(i64, (pte >> _SWP_TYPE_SHIFT) & _SWP_TYPE_MASK)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def swp_offset(self, pte: u64) -> i64:
        """Models: ``__swp_offset(__pte_to_swp_entry(pte))``."""
        return cython.cast(i64, (pte >> _SWP_OFFSET_SHIFT) & _SWP_OFFSET_MASK)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_exclusive(self, pte: u64) -> cython.bint:
        return (pte & PTE_SWP_EXCLUSIVE) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_mkexclusive(self, pte: u64) -> u64:
        return pte | PTE_SWP_EXCLUSIVE

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_clear_exclusive(self, pte: u64) -> u64:
        return pte & _NOT_SWP_EXCLUSIVE

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_uffd_wp(self, pte: u64) -> cython.bint:
        return (pte & PTE_SWP_UFFD_WP) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_mkuffd_wp(self, pte: u64) -> u64:
        return pte | PTE_SWP_UFFD_WP

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_clear_uffd_wp(self, pte: u64) -> u64:
        return pte & _NOT_SWP_UFFD_WP

    def ptes_decode(
        self, entries: np.ndarray, fields: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Decode raw PTEs with numpy bit operations (model-only: validators, pagemap).

        Raw per-entry bits, no gathering over blocks; counts no reads.
        ``valid`` is what the walker would translate (bit 0).  ``fields``:
        only these keys (default all).
        """
        v = np.asarray(entries, dtype=np.uint64)
        zero = np.uint64(0)
        valid = (v & np.uint64(PTE_VALID)) != zero
        present = valid | ((v & np.uint64(PTE_VALID | PTE_PRESENT_INVALID)) == np.uint64(PTE_PRESENT_INVALID))

        def want(f: str) -> bool:
            return fields is None or f in fields

        out = {"valid": valid, "present": present}
        if want("pfn"):
            pfn = (v & np.uint64(self.PTE_ADDR_LOW)) >> np.uint64(self.PAGE_SHIFT)
            out["pfn"] = np.where(present, pfn, zero).astype(np.int64)
        if want("write"):
            out["write"] = present & ((v & np.uint64(PTE_WRITE)) != zero)
        if want("dirty"):
            sw = (v & np.uint64(PTE_DIRTY)) != zero
            hw = ((v & np.uint64(PTE_WRITE)) != zero) & ((v & np.uint64(PTE_RDONLY)) == zero)
            out["dirty"] = present & (sw | hw)
        if want("young"):
            out["young"] = present & ((v & np.uint64(PTE_AF)) != zero)
        if want("cont"):
            out["cont"] = present & ((v & np.uint64(PTE_CONT)) != zero)
        if want("special"):
            out["special"] = present & ((v & np.uint64(PTE_SPECIAL)) != zero)
        return out

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def vm_get_page_prot(self, vm_flags: i64) -> u64:
        """The pgprot for a VMA.  Models: arch/arm64/mm/mmap.c ``vm_get_page_prot()``.

        BTI (PTE_GP), MTE (Normal-Tagged) and GCS flags are not modelled.
        """
        return cython.cast(u64, PROTECTION_MAP[vm_flags & (VM_READ | VM_WRITE | VM_EXEC | VM_SHARED)])

    # -- PMD (level-2 block) values --------------------------------------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_pmd(self, pte: u64) -> u64:
        """A block PMD with ``pte``'s attributes: ``pmd_mkhuge(pte_pmd(pte))``.

        The kernel's ``pte_pmd`` is the identity; core-mm always makes huge
        PMDs through ``pmd_mkhuge``, which clears PMD_TABLE_BIT so bits[1:0]
        read 0b01 (block) instead of 0b11 (table).
        """
        return pte & _NOT_TABLE_BIT

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmd_pte(self, pmd: u64) -> u64:
        """The PTE-format view of a PMD (identity, as in the kernel)."""
        return pmd

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmd_mkinvalid(self, pmd: u64) -> u64:
        """Invalid for the walker but still present for software (THP split, migration)."""
        return (pmd | PMD_PRESENT_INVALID) & _NOT_VALID

    # ==================================================================
    # Private primitives: the kernel's __x helpers (raw, CONT-blind).
    # ==================================================================
    @cython.cfunc
    def _pte_clear(self, mm: MmLike, addr: i64, ptep: i64) -> None:
        """Models: ``__pte_clear()``: a plain store of 0."""
        self.pool.store(ptep, 0)

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _gather_young_dirty(self, pte: u64, ptep: i64, nr: i64) -> u64:
        """OR the access/dirty state of the ``nr`` entries from ``ptep`` into ``pte``.

        Reads them uncounted (the caller counts the loads the C loop makes).
        """
        pool: PtePool = self.pool
        i: i64
        v: u64
        for i in range(ptep, ptep + nr):
            v = pool.peek(i)
            if self.pte_dirty(v):
                pte = self.pte_mkdirty(pte)
            if v & PTE_AF:
                pte |= PTE_AF
        return pte

    @cython.cfunc
    def _clear_full_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64, full: cython.bint) -> None:
        """Models: ``__clear_full_ptes()``: ``nr`` xchg with 0."""
        pool: PtePool = self.pool
        i: i64
        for i in range(ptep, ptep + nr):
            pool.xchg(i, 0)

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _get_and_clear_full_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64, full: cython.bint) -> u64:
        """Models: ``__get_and_clear_full_ptes()``: the first PTE with A/D of all ``nr`` ORed in."""
        pool: PtePool = self.pool
        pte: u64 = self._gather_young_dirty(pool.peek(ptep), ptep + 1, nr - 1)
        i: i64
        for i in range(ptep, ptep + nr):
            pool.xchg(i, 0)
        return pte

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _ptep_test_and_clear_young(self, vma: VmaLike, addr: i64, ptep: i64) -> cython.bint:
        """Models: ``__ptep_test_and_clear_young()``: a cmpxchg clearing AF."""
        pool: PtePool = self.pool
        old: u64 = self._ptep_get(ptep)
        while not pool.cmpxchg(ptep, old, old & _NOT_AF):
            old = pool.peek(ptep)
        return (old & PTE_AF) != 0

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _ptep_clear_flush_young(self, vma: VmaLike, addr: i64, ptep: i64) -> cython.bint:
        """Models: ``__ptep_clear_flush_young()``.

        The trailing DSB is elided: at worst a CPU keeps using a young TLB
        entry and reclaim picks a hot page; the next context switch's DSB
        completes the invalidation.
        """
        young: cython.bint = self._ptep_test_and_clear_young(vma, addr, ptep)
        if young:
            tlbflush.flush_tlb_page_nosync(self, vma, addr)
        return young

    @cython.cfunc
    def _ptep_set_wrprotect_from(self, mm: MmLike, addr: i64, ptep: i64, pte: u64) -> None:
        """Models: ``___ptep_set_wrprotect()``: cmpxchg loop from an already-read ``pte``.

        The loop matters after an unfold: the caller's copy lacks the access/
        dirty bits the conversion gathered, so the first cmpxchg fails and
        the loop retries with the repainted value, losing nothing.
        """
        pool: PtePool = self.pool
        while not pool.cmpxchg(ptep, pte, self.pte_wrprotect(pte)):
            pte = pool.peek(ptep)

    @cython.cfunc
    def _ptep_set_wrprotect(self, mm: MmLike, addr: i64, ptep: i64) -> None:
        """Models: ``__ptep_set_wrprotect()``: read, then move hw dirty to PTE_DIRTY and set RDONLY."""
        self._ptep_set_wrprotect_from(mm, addr, ptep, self._ptep_get(ptep))

    @cython.cfunc
    def _wrprotect_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64) -> None:
        """Models: ``__wrprotect_ptes()``: ``nr`` x ``__ptep_set_wrprotect()``."""
        i: i64
        for i in range(nr):
            self._ptep_set_wrprotect(mm, addr, ptep + i)

    @cython.cfunc
    def _clear_young_dirty_ptes(self, vma: VmaLike, addr: i64, ptep: i64, nr: i64, flags: i64) -> None:
        """Models: ``__clear_young_dirty_ptes()`` (MADV_FREE).

        Both flags: a load and a plain store per PTE; one flag: a load and a
        cmpxchg per PTE.
        """
        pool: PtePool = self.pool
        both: cython.bint = flags == (CYDP_CLEAR_YOUNG | CYDP_CLEAR_DIRTY)
        i: i64
        old: u64
        new: u64
        for i in range(ptep, ptep + nr):
            old = pool.load(i)
            new = old
            if flags & CYDP_CLEAR_YOUNG:
                new &= _NOT_AF
            if flags & CYDP_CLEAR_DIRTY:
                new = (new & _NOT_DIRTY) | PTE_RDONLY
            if both:
                pool.store(i, new)
            else:
                pool.cmpxchg(i, old, new)

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _ptep_set_access_flags(
        self, vma: VmaLike, addr: i64, ptep: i64, entry: u64, dirty: cython.bint
    ) -> cython.bint:
        """Make a PTE more permissive in place; True if it changed.

        Models: arch/arm64/mm/fault.c ``__ptep_set_access_flags()`` (v6.12).
        Only RDONLY/AF/WRITE/DIRTY are taken from ``entry``, ORed in with a
        cmpxchg (RDONLY ends as the more permissive of the two) so that a
        concurrent hardware A/D update is never lost.  No break-before-make:
        the change only relaxes permissions.  With ``dirty`` a stale
        read-only TLB entry is flushed (v6.12: broadcast ``flush_tlb_page``;
        ``tlbi_nobroadcast``, v6.19: ``local_flush_tlb_page``, this CPU only).
        """
        pool: PtePool = self.pool
        pte: u64 = self._ptep_get(ptep)
        if self.pte_same(pte, entry):
            return False
        bits: u64 = (entry & _ACCESS_BITS) ^ PTE_RDONLY
        while not pool.cmpxchg(ptep, pte, ((pte ^ PTE_RDONLY) | bits) ^ PTE_RDONLY):
            pte = pool.peek(ptep)
        if dirty:
            if self.tlbi_nobroadcast:
                tlbflush.local_flush_tlb_page(self, vma, addr)
            else:
                tlbflush.flush_tlb_page(self, vma, addr)
        return True

    @cython.cfunc
    def _ptep_set_access_flags_block(self, vma: VmaLike, ptep: i64, nr: i64, entry: u64) -> None:
        """``nr`` x ``__ptep_set_access_flags(entry, dirty=0)`` from ``ptep``.

        Each entry is read once; those already ``pte_same`` as ``entry`` are
        left alone (no cmpxchg), exactly like the per-PTE C loop.
        """
        pool: PtePool = self.pool
        bits: u64 = (entry & _ACCESS_BITS) ^ PTE_RDONLY
        i: i64
        old: u64
        for i in range(ptep, ptep + nr):
            old = pool.load(i)
            if not self.pte_same(old, entry):
                pool.cmpxchg(i, old, ((old ^ PTE_RDONLY) | bits) ^ PTE_RDONLY)

    # arm64 has no soft-dirty bit (!CONFIG_HAVE_ARCH_SOFT_DIRTY): the base
    # class's include/linux/pgtable.h no-op helpers apply.

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
        last entry (``set_ptes_fold``; the series before its last patch
        never folds here).  ``nr > 1``: ``contpte_set_ptes()`` sets PTE_CONT
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
            if self.set_ptes_fold:
                contpte.contpte_try_fold(self, mm, addr, ptep, pte)
        else:
            contpte.contpte_set_ptes(self, mm, addr, ptep, pte, nr)

    @cython.ccall
    def set_pte_at(self, mm: MmLike, addr: i64, ptep: i64, pte: u64) -> None:
        """Models: ``set_pte_at()`` = ``set_ptes(mm, addr, ptep, pte, 1)``."""
        self.set_ptes(mm, addr, ptep, pte, 1)

    @cython.ccall
    def update_mmu_cache_range(self, vma: VmaLike, addr: i64, ptep: i64, nr: i64) -> None:
        """Models: arm64 ``update_mmu_cache_range()``: nothing (no cache maintenance needed)."""

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

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _ptep_get_and_clear_caller(self, mm: MmLike, addr: i64, ptep: i64, caller: str) -> u64:
        """``ptep_get_and_clear()``; ``caller`` (model only) names the unfold counter."""
        if self.contpte_enabled:
            contpte.contpte_try_unfold(self, mm, addr, ptep, self._ptep_get(ptep), caller)
        return self._ptep_get_and_clear(mm, addr, ptep)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_get_and_clear_full(self, mm: MmLike, addr: i64, ptep: i64, full: cython.bint) -> u64:
        """Models: ``ptep_get_and_clear_full()`` (the pgtable.h fallback arm64 uses)."""
        return self._ptep_get_and_clear_caller(mm, addr, ptep, "ptep_get_and_clear")

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

        v7.0+ goes through ``test_and_clear_young_ptes(..., 1)``, the same
        ``contpte_test_and_clear_young_ptes()`` for one PTE of a block.

        Context: PTL held.
        """
        pte: u64 = self._ptep_get(ptep)
        if not self.contpte_enabled or not self.pte_valid_cont(pte):
            return self._ptep_test_and_clear_young(vma, addr, ptep)
        return contpte.contpte_test_and_clear_young_ptes(self, vma, addr, ptep, 1)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_clear_flush_young(self, vma: VmaLike, addr: i64, ptep: i64) -> cython.bint:
        """Models: arm64 ``ptep_clear_flush_young()``: whole block, nosync flush.

        Context: PTL held.
        """
        pte: u64 = self._ptep_get(ptep)
        if not self.contpte_enabled or not self.pte_valid_cont(pte):
            return self._ptep_clear_flush_young(vma, addr, ptep)
        return contpte.contpte_clear_flush_young_ptes(self, vma, addr, ptep, 1)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def clear_flush_young_ptes(self, vma: VmaLike, addr: i64, ptep: i64, nr: i64) -> cython.bint:
        """Models: arm64 ``clear_flush_young_ptes()`` (v7.0+): one young test and one flush for the batch.

        A single unfolded PTE takes ``__ptep_clear_flush_young()``; anything
        else ``contpte_clear_flush_young_ptes()`` over the batch widened to
        whole blocks (one nosync range flush if any was young).  Called by
        ``folio_referenced_one()`` with ``young_ptes_batch``.

        Context: PTL held; consecutive pages of one folio, one PMD.
        """
        if not self.contpte_enabled or (nr == 1 and not self.pte_cont(self._ptep_get(ptep))):
            if nr == 1:
                return self._ptep_clear_flush_young(vma, addr, ptep)
            return Pgtable.clear_flush_young_ptes(self, vma, addr, ptep, nr)
        return contpte.contpte_clear_flush_young_ptes(self, vma, addr, ptep, nr)

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
            if self.wrprotect_refold:
                # The per-PTE loop, each call unfolding and maybe refolding.
                for i in range(nr):
                    self._wrprotect_pte(mm, addr + i * self.PAGE_SIZE, ptep + i, "wrprotect_ptes")
                return
            self._per_pte_unfold(mm, addr, ptep, nr, "wrprotect_ptes", True)
            # The stores of the per-PTE loop (its reads counted above).
            pool = self.pool
            for i in range(ptep, ptep + nr):
                old = pool.peek(i)
                pool.cmpxchg(i, old, self.pte_wrprotect(old))
        else:
            contpte.contpte_wrprotect_ptes(self, mm, addr, ptep, nr)

    @cython.cfunc
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
        if self.wrprotect_refold:
            contpte.contpte_try_fold(self, mm, addr, ptep, self._ptep_get(ptep))

    @cython.ccall
    def ptep_set_wrprotect(self, mm: MmLike, addr: i64, ptep: i64) -> None:
        """Models: arm64 ``ptep_set_wrprotect()`` = ``wrprotect_ptes(nr=1)``.

        Context: PTL held.
        """
        if not self.contpte_enabled:
            self._ptep_set_wrprotect(mm, addr, ptep)
        else:
            self._wrprotect_pte(mm, addr, ptep, "ptep_set_wrprotect")

    @cython.cfunc
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

        Models: arm64 ``pte_batch_hint()``: the rest of a folded block;
        with ``batch_hint=False`` the generic fallback of 1 (before v6.9's
        c6ec76a2ebc5 and fb5451e5f72b).
        """
        if not self.contpte_enabled or not self.batch_hint or not self.pte_valid_cont(pte):
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
    def modify_prot_start_ptes(self, vma: VmaLike, addr: i64, ptep: i64, nr: i64) -> u64:
        """Start a protection change of ``nr`` PTEs of one folio (batched mprotect).

        Models: arch/arm64/mm/mmu.c ``modify_prot_start_ptes()`` (v6.17,
        ``modify_prot_ptes_opt``): ``get_and_clear_ptes()``, so only blocks
        the batch covers partly unfold; whole blocks are cleared folded, with
        no TLBI (mprotect's mmu_gather flushes the range).  ``nr == 1`` is
        ``ptep_modify_prot_start()``.  Without the option: the generic loop
        of ``ptep_modify_prot_start()``, which unfolds every block.

        Context: PTL held; one folio; one PMD.
        """
        if not self.modify_prot_ptes_opt:
            return Pgtable.modify_prot_start_ptes(self, vma, addr, ptep, nr)
        mm: MmLike = vma.vm_mm
        if nr == 1:
            return self.ptep_modify_prot_start(vma, addr, ptep)
        # get_and_clear_ptes() -> get_and_clear_full_ptes(full=0), its unfolds
        # counted as modify_prot_start_ptes'.
        if not self.contpte_enabled:
            return self._get_and_clear_full_ptes(mm, addr, ptep, nr, False)
        if not self.teardown_opt:
            self._per_pte_unfold(mm, addr, ptep, nr, "modify_prot_start_ptes", False)
            return self._get_and_clear_full_ptes(mm, addr, ptep, nr, False)
        return contpte.contpte_get_and_clear_full_ptes(
            self, mm, addr, ptep, nr, False, "modify_prot_start_ptes"
        )

    @cython.ccall
    def modify_prot_commit_ptes(
        self, vma: VmaLike, addr: i64, ptep: i64, old_pte: u64, pte: u64, nr: i64
    ) -> None:
        """Commit ``pte`` to ``nr`` PTEs of one folio (batched mprotect).

        Models: arch/arm64/mm/mmu.c ``modify_prot_commit_ptes()`` (v6.17,
        ``modify_prot_ptes_opt``): ``set_ptes()``, which sets PTE_CONT
        directly on every whole aligned block.  Without the option: the
        generic loop of ``ptep_modify_prot_commit()`` (the last entry of a
        block refolds it).

        Context: PTL held; the ``nr`` entries none (started); one folio; one PMD.
        """
        if not self.modify_prot_ptes_opt:
            Pgtable.modify_prot_commit_ptes(self, vma, addr, ptep, old_pte, pte, nr)
            return
        self.set_ptes(vma.vm_mm, addr, ptep, pte, nr)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmdp_set_access_flags(
        self, vma: VmaLike, addr: i64, pmd_index: i64, entry: u64, dirty: cython.bint
    ) -> cython.bint:
        """Make a huge PMD more permissive in place; True if it changed.

        Models: arm64 ``pmdp_set_access_flags()`` = ``__ptep_set_access_flags()``
        on the PMD: access bits merged (no break-before-make), and a
        ``flush_tlb_page()`` of ``addr`` if ``dirty`` (``tlbi_nobroadcast``,
        v6.19: ``local_flush_tlb_page()``).

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
            if self.tlbi_nobroadcast:
                tlbflush.local_flush_tlb_page(self, vma, addr)
            else:
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
        """Models: arm64 ``flush_tlb_fix_spurious_fault()``.

        v6.12: nothing: arm64 invalidated with broadcast TLBIs, so a
        spurious fault that another CPU already fixed needs no local
        invalidation.  ``tlbi_nobroadcast`` (v6.19): the relaxing CPU
        flushed only its own TLB, so this CPU may hold the stale entry:
        ``local_flush_tlb_page_nonotify()``.
        """
        if self.tlbi_nobroadcast:
            tlbflush.local_flush_tlb_page_nonotify(self, vma, addr)

    @cython.ccall
    def flush_tlb_fix_spurious_fault_pmd(self, vma: VmaLike, addr: i64, pmd_index: i64) -> None:
        """Models: arm64 ``flush_tlb_fix_spurious_fault_pmd()`` (v6.19): ``local_flush_tlb_page_nonotify()``.

        Without ``tlbi_nobroadcast`` the generic nop.
        """
        if self.tlbi_nobroadcast:
            tlbflush.local_flush_tlb_page_nonotify(self, vma, addr)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_needs_flush(self, oldpte: u64, newpte: u64) -> cython.bint:
        """Models: arm64 ``pte_needs_flush()`` = ``__pte_flags_need_flush()`` (v6.19).

        With ``pte_flags_need_flush``: no flush for an invalid old PTE (the
        walker caches nothing of it) or a change of software bits only
        (``PTE_SWBITS_MASK``).  Without: the generic "always".
        """
        if not self.pte_flags_need_flush:
            return True
        if not oldpte & PTE_VALID:
            return False
        return ((oldpte ^ newpte) & ~_PTE_SWBITS_MASK) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def huge_pmd_needs_flush(self, oldpmd: u64, newpmd: u64) -> cython.bint:
        """Models: arm64 ``huge_pmd_needs_flush()`` (v6.19): ``pte_needs_flush()`` on the PMD."""
        return self.pte_needs_flush(oldpmd, newpmd)

    @cython.ccall
    def tlb_flush(self, tlb: GatherLike) -> None:
        """Models: arch/arm64/include/asm/tlb.h ``tlb_flush()``."""
        tlbflush.tlb_flush(self, tlb)
