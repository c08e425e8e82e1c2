"""The arm64 PTE format and the public pgtable API with transparent contpte.

Models: arch/arm64/include/asm/pgtable.h, pgtable-hwdef.h, pgtable-prot.h
(Linux v6.12), plus the out-of-line arm64 helpers core-mm reaches through
them: arch/arm64/mm/fault.c ``__ptep_set_access_flags()``,
arch/arm64/mm/mmu.c ``ptep_modify_prot_start/commit()`` and
arch/arm64/mm/mmap.c ``vm_get_page_prot()``.

Layering as in the kernel:

- ``_x`` methods are the kernel's private ``__x`` helpers: they act on raw
  descriptors and ignore PTE_CONT (contpte.c itself uses only these).
- The public methods are what core-mm calls.  With ``contpte=True``
  (CONFIG_ARM64_CONTPTE=y) they fold/unfold contiguous blocks transparently:
  setters strip PTE_CONT from the caller's PTE, getters gather access/dirty
  over the block and deliberately leak PTE_CONT back (``pte_leaf_size``).
  With ``contpte=False`` every public helper is its private form.

Model-only knobs (``Machine`` passes them): ``contpte``,
``wrprotect_ptes_opt``, ``teardown_opt``, ``bbml2_noabort``,
``wrprotect_refold``; see
``Arm64Pgtable.OPTIONS``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import numpy as np

from ...errors import ModelUsageError
from ..pgtable import (
    CYDP_CLEAR_DIRTY,
    CYDP_CLEAR_YOUNG,
    GatherLike,
    MmLike,
    Pgtable,
    PteBatches,
    PtePtr,
    VmaLike,
)
from . import contpte, tlbflush
from .pgtable_prot import (
    _SWP_OFFSET_MASK,
    _SWP_OFFSET_SHIFT,
    _SWP_TYPE_MASK,
    _SWP_TYPE_SHIFT,
    _U64,
    CONT_PTES_BY_SHIFT,
    PMD_PRESENT_INVALID,
    PROTECTION_MAP,
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
    PTE_UFFD_WP,
    PTE_USER,
    PTE_UXN,
    PTE_VALID,
    PTE_WRITE,
    VM_EXEC,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
)

__all__ = ["Arm64Pgtable"]


#: The bits pte_modify() replaces (v6.12: includes POE's pkey index).
_PTE_MODIFY_MASK = (
    PTE_USER
    | PTE_PXN
    | PTE_UXN
    | PTE_RDONLY
    | PTE_PRESENT_INVALID
    | PTE_VALID
    | PTE_WRITE
    | PTE_GP
    | PTE_ATTRINDX_MASK
    | PTE_PO_IDX_MASK
)

# numpy twins of the masks for the vectorised block loops.
_NP_VALID = np.uint64(PTE_VALID)
_NP_RDONLY = np.uint64(PTE_RDONLY)
_NP_NOT_RDONLY = np.uint64(~PTE_RDONLY & _U64)
_NP_AF = np.uint64(PTE_AF)
_NP_NOT_AF = np.uint64(~PTE_AF & _U64)
_NP_WRITE = np.uint64(PTE_WRITE)
_NP_NOT_WRITE = np.uint64(~PTE_WRITE & _U64)
_NP_DIRTY = np.uint64(PTE_DIRTY)
_NP_NOT_DIRTY = np.uint64(~PTE_DIRTY & _U64)
_NP_CONT = np.uint64(PTE_CONT)
_NP_ZERO = np.uint64(0)
_NP_ACCESS_BITS = np.uint64(PTE_RDONLY | PTE_AF | PTE_WRITE | PTE_DIRTY)
_SH_WRITE_TO_DIRTY = np.uint64(PTE_DIRTY.bit_length() - PTE_WRITE.bit_length())
_SH_RDONLY_TO_DIRTY = np.uint64(PTE_DIRTY.bit_length() - PTE_RDONLY.bit_length())


class Arm64Pgtable(Pgtable):
    """arm64: the VMSA PTE format, transparent contpte, broadcast TLBI.

    Models: arch/arm64/include/asm/pgtable.h (v6.12).
    """

    name = "arm64"
    OPTIONS: dict[str, Any] = {
        # CONFIG_ARM64_CONTPTE.  False: every public helper is its __ form.
        "contpte": True,
        # False: wrprotect_ptes() write-protects one PTE at a time (the
        # pre-"batch fork" kernel), so every folded block unfolds at fork.
        "wrprotect_ptes_opt": True,
        # False: [get_and_]clear_full_ptes() clear one PTE at a time, so
        # every folded block unfolds at munmap/exit.
        "teardown_opt": True,
        # True: contpte_convert() skips its intermediate TLBI (v6.16+,
        # system_supports_bbml2_noabort()).  The rule checker flags it on
        # hardware without BBML2 and no-abort.
        "bbml2_noabort": False,
        # True: ptep_set_wrprotect() (and every nr == 1 write-protect) tries
        # to fold the block again after write-protecting its entry, as the
        # contpte series' v4 posting did ("arm64/mm: Wire up PTE_CONT for
        # user mappings", LKML 2023-12-18, patch 14 of 16: unfold,
        # __ptep_set_wrprotect(), contpte_try_fold()).  Mainline (v6.9) only
        # folds from set_ptes().  A per-PTE write-protect of a folded block
        # then unfolds it at its first entry and folds it at its last.
        "wrprotect_refold": False,
    }

    def __init__(self, hw: Any, page_shift: int = 12, **options: Any) -> None:
        if page_shift not in CONT_PTES_BY_SHIFT:
            raise ModelUsageError(f"arm64: page_shift {page_shift} is not a granule (12, 14 or 16)")
        super().__init__(hw, page_shift=page_shift, **options)
        self.PFN_PTE_SHIFT = page_shift
        #: Output address bits [47:PAGE_SHIFT] (48-bit PA; LPA/LPA2 not modelled).
        self.PTE_ADDR_LOW = ((1 << 48) - 1) & ~((1 << page_shift) - 1)
        self._np_addr = np.uint64(self.PTE_ADDR_LOW)
        self.CONT_PTES = CONT_PTES_BY_SHIFT[page_shift]
        self.CONT_PTE_SIZE = self.CONT_PTES * self.PAGE_SIZE
        self.CONT_PTE_MASK = ~(self.CONT_PTE_SIZE - 1) & _U64
        self.contpte_enabled = bool(self.options["contpte"])
        self.wrprotect_ptes_opt = bool(self.options["wrprotect_ptes_opt"])
        self.teardown_opt = bool(self.options["teardown_opt"])
        self.bbml2_noabort = bool(self.options["bbml2_noabort"])
        self.wrprotect_refold = bool(self.options["wrprotect_refold"])

    def folio_range_of_pfn(self, pfn: int) -> tuple[int, int]:
        """Return ``(first_pfn, nr_pages)`` of the folio containing ``pfn``.

        Models: ``page_folio(pfn_to_page(pfn))`` + ``folio_nr_pages()``, as
        ``__contpte_try_fold()`` uses them.  The Machine installs the lookup
        in ``folio_lookup`` (core-mm's mem_map); arm64 asks core-mm nothing
        else, and core-mm never sees PTE_CONT.
        """
        return super().folio_range_of_pfn(pfn)

    # ==================================================================
    # PTE format (scalar helpers on pte_t values).
    # ==================================================================
    def pte_valid(self, pte: int) -> bool:
        return bool(pte & PTE_VALID)

    def pte_present_invalid(self, pte: int) -> bool:
        return (pte & (PTE_VALID | PTE_PRESENT_INVALID)) == PTE_PRESENT_INVALID

    def pte_present(self, pte: int) -> bool:
        """v6.12: valid, or present-invalid (PROT_NONE, pmd_mkinvalid)."""
        return bool(pte & PTE_VALID) or (pte & (PTE_VALID | PTE_PRESENT_INVALID)) == PTE_PRESENT_INVALID

    def pte_pfn(self, pte: int) -> int:
        return (pte & self.PTE_ADDR_LOW) >> self.PAGE_SHIFT

    def pfn_pte(self, pfn: int, prot: int) -> int:
        return ((pfn << self.PAGE_SHIFT) & self.PTE_ADDR_LOW) | prot

    def pte_pgprot(self, pte: int) -> int:
        return pte & ~self.PTE_ADDR_LOW & _U64

    def pte_advance_pfn(self, pte: int, nr: int) -> int:
        return self.pfn_pte(self.pte_pfn(pte) + nr, self.pte_pgprot(pte))

    def pte_write(self, pte: int) -> bool:
        return bool(pte & PTE_WRITE)

    def pte_rdonly(self, pte: int) -> bool:
        return bool(pte & PTE_RDONLY)

    def pte_user(self, pte: int) -> bool:
        return bool(pte & PTE_USER)

    def pte_user_exec(self, pte: int) -> bool:
        return not pte & PTE_UXN

    def pte_hw_dirty(self, pte: int) -> bool:
        return bool(pte & PTE_WRITE) and not pte & PTE_RDONLY

    def pte_sw_dirty(self, pte: int) -> bool:
        return bool(pte & PTE_DIRTY)

    def pte_dirty(self, pte: int) -> bool:
        return bool(pte & PTE_DIRTY) or (bool(pte & PTE_WRITE) and not pte & PTE_RDONLY)

    def pte_young(self, pte: int) -> bool:
        return bool(pte & PTE_AF)

    def pte_special(self, pte: int) -> bool:
        return bool(pte & PTE_SPECIAL)

    def pte_mkspecial(self, pte: int) -> int:
        return pte | PTE_SPECIAL

    def pte_devmap(self, pte: int) -> bool:
        return bool(pte & PTE_DEVMAP)

    def pte_cont(self, pte: int) -> bool:
        return bool(pte & PTE_CONT)

    def pte_valid_cont(self, pte: int) -> bool:
        return (pte & (PTE_VALID | PTE_CONT)) == (PTE_VALID | PTE_CONT)

    def pte_mkcont(self, pte: int) -> int:
        # v6.12 also forced PTE_TYPE_PAGE (0b11), which makes a present-invalid
        # (PROT_NONE / NUMA-hinting) PTE valid: fork's batch copy of such a
        # block gave the child valid, non-user PTEs that pte_protnone() no
        # longer recognises, so its next access faulted forever.  Found by
        # `contpte fuzz` (fork-copy rule); the model takes the upstream fix
        # "arm64/mm: Drop setting PTE_TYPE_PAGE in pte_mkcont()" (A. Khandual,
        # Nov 2024): only PTE_CONT is set.
        return pte | PTE_CONT

    def pte_mknoncont(self, pte: int) -> int:
        return pte & ~PTE_CONT

    def pte_leaf_size(self, pte: int) -> int:
        """The size the TLB caches for ``pte`` (perf_get_pgtable_size)."""
        return self.CONT_PTE_SIZE if pte & PTE_CONT else self.PAGE_SIZE

    def pte_mkwrite(self, pte: int) -> int:
        """``pte_mkwrite_novma()``, v6.12 form.

        Sets WRITE and clears RDONLY unconditionally, so the result is
        hardware-dirty.  (From ~v6.18 RDONLY is cleared only if sw-dirty.)
        """
        return (pte | PTE_WRITE) & ~PTE_RDONLY

    def pte_wrprotect(self, pte: int) -> int:
        """Clear WRITE, set RDONLY; a hardware-dirty PTE keeps its dirtiness in PTE_DIRTY."""
        if pte & PTE_WRITE and not pte & PTE_RDONLY:
            pte |= PTE_DIRTY
        return (pte & ~PTE_WRITE) | PTE_RDONLY

    def pte_mkclean(self, pte: int) -> int:
        """Clear the sw dirty bit and set RDONLY (which clears hw dirtiness)."""
        return (pte & ~PTE_DIRTY) | PTE_RDONLY

    def pte_mkdirty(self, pte: int) -> int:
        """Set the sw dirty bit; clear RDONLY only if writable (else it stays read-only)."""
        pte |= PTE_DIRTY
        if pte & PTE_WRITE:
            pte &= ~PTE_RDONLY
        return pte

    def pte_mkold(self, pte: int) -> int:
        return pte & ~PTE_AF

    def pte_mkyoung(self, pte: int) -> int:
        return pte | PTE_AF

    def pte_mkinvalid(self, pte: int) -> int:
        return (pte | PTE_PRESENT_INVALID) & ~PTE_VALID

    def pte_same(self, a: int, b: int) -> bool:
        """arm64 ``pte_same()``: PTE_RDONLY is ignored on present PTEs.

        RDONLY toggles with hardware dirty-bit management, so two PTEs that
        differ only in it map the same page with the same permission.
        """
        if self.pte_present(a):
            a &= ~PTE_RDONLY
        if self.pte_present(b):
            b &= ~PTE_RDONLY
        return a == b

    def pte_modify(self, pte: int, newprot: int) -> int:
        """Replace the permission bits, keeping pfn and A/D (hw dirty survives in PTE_DIRTY)."""
        if self.pte_hw_dirty(pte):
            pte |= PTE_DIRTY
        pte = (pte & ~_PTE_MODIFY_MASK) | (newprot & _PTE_MODIFY_MASK)
        # If the new prot made a sw-dirty PTE hw-clean, make it hw-dirty again.
        if pte & PTE_DIRTY:
            pte = self.pte_mkdirty(pte)
        return pte

    def pte_protnone(self, pte: int) -> bool:
        """NUMA-hinting/PROT_NONE: present-invalid, no user access, UXN set."""
        return self.pte_present_invalid(pte) and not pte & PTE_USER and bool(pte & PTE_UXN)

    def pte_uffd_wp(self, pte: int) -> bool:
        return bool(pte & PTE_UFFD_WP)

    def pte_mkuffd_wp(self, pte: int) -> int:
        return self.pte_wrprotect(pte | PTE_UFFD_WP)

    def pte_clear_uffd_wp(self, pte: int) -> int:
        return pte & ~PTE_UFFD_WP

    # arm64 has no soft-dirty: the base class's no-op helpers apply.

    def pte_access_permitted(self, pte: int, write: bool) -> bool:
        return (pte & (PTE_VALID | PTE_USER)) == (PTE_VALID | PTE_USER) and (
            not write or bool(pte & PTE_WRITE)
        )

    # -- swap entries (non-present PTEs) --------------------------------
    def swp_entry(self, type_: int, offset: int) -> int:
        """The swap PTE for (type, offset).  Models: ``__swp_entry()`` + ``__swp_entry_to_pte()``."""
        return ((type_ & _SWP_TYPE_MASK) << _SWP_TYPE_SHIFT) | (
            (offset & _SWP_OFFSET_MASK) << _SWP_OFFSET_SHIFT
        )

    def swp_type(self, pte: int) -> int:
        """Models: ``__swp_type(__pte_to_swp_entry(pte))``."""
        return (pte >> _SWP_TYPE_SHIFT) & _SWP_TYPE_MASK

    def swp_offset(self, pte: int) -> int:
        """Models: ``__swp_offset(__pte_to_swp_entry(pte))``."""
        return (pte >> _SWP_OFFSET_SHIFT) & _SWP_OFFSET_MASK

    def pte_swp_exclusive(self, pte: int) -> bool:
        return bool(pte & PTE_SWP_EXCLUSIVE)

    def pte_swp_mkexclusive(self, pte: int) -> int:
        return pte | PTE_SWP_EXCLUSIVE

    def pte_swp_clear_exclusive(self, pte: int) -> int:
        return pte & ~PTE_SWP_EXCLUSIVE

    def pte_swp_uffd_wp(self, pte: int) -> bool:
        return bool(pte & PTE_SWP_UFFD_WP)

    def pte_swp_mkuffd_wp(self, pte: int) -> int:
        return pte | PTE_SWP_UFFD_WP

    def pte_swp_clear_uffd_wp(self, pte: int) -> int:
        return pte & ~PTE_SWP_UFFD_WP

    def ptes_decode(
        self, entries: np.ndarray, fields: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Decode raw PTEs with numpy bit operations (model-only: validators, pagemap).

        Raw per-entry bits, no gathering over blocks; counts no reads.
        ``valid`` is what the walker would translate (bit 0).  ``fields``:
        only these keys (default all).
        """
        v = np.asarray(entries, dtype=np.uint64)
        valid = (v & _NP_VALID) != _NP_ZERO
        present = valid | ((v & np.uint64(PTE_VALID | PTE_PRESENT_INVALID)) == np.uint64(PTE_PRESENT_INVALID))

        def want(f: str) -> bool:
            return fields is None or f in fields

        out = {"valid": valid, "present": present}
        if want("pfn"):
            out["pfn"] = np.where(
                present, (v & self._np_addr) >> np.uint64(self.PAGE_SHIFT), _NP_ZERO
            ).astype(np.int64)
        if want("write"):
            out["write"] = present & ((v & _NP_WRITE) != _NP_ZERO)
        if want("dirty"):
            out["dirty"] = present & self._np_dirty(v)
        if want("young"):
            out["young"] = present & ((v & _NP_AF) != _NP_ZERO)
        if want("cont"):
            out["cont"] = present & ((v & _NP_CONT) != _NP_ZERO)
        if want("special"):
            out["special"] = present & ((v & np.uint64(PTE_SPECIAL)) != _NP_ZERO)
        return out

    def vm_get_page_prot(self, vm_flags: int) -> int:
        """The pgprot for a VMA.  Models: arch/arm64/mm/mmap.c ``vm_get_page_prot()``.

        BTI (PTE_GP), MTE (Normal-Tagged) and GCS flags are not modelled.
        """
        return PROTECTION_MAP[vm_flags & (VM_READ | VM_WRITE | VM_EXEC | VM_SHARED)]

    # -- PMD (level-2 block) values --------------------------------------
    def pte_pmd(self, pte: int) -> int:
        """A block PMD with ``pte``'s attributes: ``pmd_mkhuge(pte_pmd(pte))``.

        The kernel's ``pte_pmd`` is the identity; core-mm always makes huge
        PMDs through ``pmd_mkhuge``, which clears PMD_TABLE_BIT so bits[1:0]
        read 0b01 (block) instead of 0b11 (table).
        """
        return pte & ~PTE_TABLE_BIT

    def pmd_pte(self, pmd: int) -> int:
        """The PTE-format view of a PMD (identity, as in the kernel)."""
        return pmd

    def pmd_mkinvalid(self, pmd: int) -> int:
        """Invalid for the walker but still present for software (THP split, migration)."""
        return (pmd | PMD_PRESENT_INVALID) & ~PTE_VALID

    # ==================================================================
    # Private primitives: the kernel's __x helpers (raw, CONT-blind).
    # ==================================================================
    def _pte_clear(self, mm: MmLike, addr: int, ptep: PtePtr) -> None:
        """Models: ``__pte_clear()``: a plain store of 0."""
        ptep.table.store(ptep.idx, 0)

    def _set_pte(self, ptep: PtePtr, pte: int) -> None:
        """Models: ``__set_pte()``."""
        ptep.table.store(ptep.idx, pte)

    def _block_peek(self, ptep: PtePtr, nr: int, counted: int | None = None) -> np.ndarray:
        """A copy of ``nr`` raw entries, counting ``counted`` (default ``nr``) loads.

        The C loops stop early at times; the caller says how many
        ``__ptep_get()`` the kernel would really have executed.
        """
        self.counters.add("pte.read", nr if counted is None else counted)
        return ptep.table.entries[ptep.idx : ptep.idx + nr].copy()

    def _np_dirty(self, vals: np.ndarray) -> np.ndarray:
        """Vector ``pte_dirty()``."""
        sw = (vals & _NP_DIRTY) != _NP_ZERO
        hw = ((vals & _NP_WRITE) != _NP_ZERO) & ((vals & _NP_RDONLY) == _NP_ZERO)
        result: np.ndarray = sw | hw
        return result

    def _np_wrprotect(self, vals: np.ndarray) -> np.ndarray:
        """Vector ``pte_wrprotect()``."""
        # hw dirty (WRITE and not RDONLY) becomes sw DIRTY; one buffer, in place
        out: np.ndarray = np.bitwise_and(vals, _NP_WRITE | _NP_RDONLY)
        hw_dirty = out == _NP_WRITE
        np.bitwise_and(vals, _NP_NOT_WRITE, out=out)
        out |= _NP_RDONLY
        np.bitwise_or(out, _NP_DIRTY, out=out, where=hw_dirty)
        return out

    def _gather_young_dirty(self, pte: int, vals: np.ndarray) -> int:
        """OR the access/dirty state of ``vals`` into ``pte`` (pte_mkdirty/pte_mkyoung)."""
        if bool(self._np_dirty(vals).any()):
            pte = self.pte_mkdirty(pte)
        if bool(((vals & _NP_AF) != _NP_ZERO).any()):
            pte = self.pte_mkyoung(pte)
        return pte

    def _clear_full_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, nr: int, full: bool) -> None:
        """Models: ``__clear_full_ptes()``: ``nr`` xchg with 0 (one array store)."""
        self.counters.add("pte.atomic", nr)
        ptep.table.store_many(ptep.idx, np.zeros(nr, dtype=np.uint64))

    def _get_and_clear_full_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, nr: int, full: bool) -> int:
        """Models: ``__get_and_clear_full_ptes()``: the first PTE with A/D of all ``nr`` ORed in."""
        old = ptep.table.entries[ptep.idx : ptep.idx + nr].copy()
        self.counters.add("pte.atomic", nr)
        ptep.table.store_many(ptep.idx, np.zeros(nr, dtype=np.uint64))
        return self._gather_young_dirty(int(old[0]), old[1:])

    def _ptep_test_and_clear_young(self, vma: VmaLike, addr: int, ptep: PtePtr) -> bool:
        """Models: ``__ptep_test_and_clear_young()``: a cmpxchg clearing AF."""
        old = self._atomic_update(ptep, self._ptep_get(ptep), self.pte_mkold)
        return bool(old & PTE_AF)

    def _ptep_clear_flush_young(self, vma: VmaLike, addr: int, ptep: PtePtr) -> bool:
        """Models: ``__ptep_clear_flush_young()``.

        The trailing DSB is elided: at worst a CPU keeps using a young TLB
        entry and reclaim picks a hot page; the next context switch's DSB
        completes the invalidation.
        """
        young = self._ptep_test_and_clear_young(vma, addr, ptep)
        if young:
            tlbflush.flush_tlb_page_nosync(self, vma, addr)
        return young

    def _ptep_set_wrprotect_from(self, mm: MmLike, addr: int, ptep: PtePtr, pte: int) -> None:
        """Models: ``___ptep_set_wrprotect()``: cmpxchg loop from an already-read ``pte``.

        The loop matters after an unfold: the caller's copy lacks the access/
        dirty bits the conversion gathered, so the first cmpxchg fails and
        the loop retries with the repainted value, losing nothing.
        """
        self._atomic_update(ptep, pte, self.pte_wrprotect)

    def _ptep_set_wrprotect(self, mm: MmLike, addr: int, ptep: PtePtr) -> None:
        """Models: ``__ptep_set_wrprotect()``: read, then move hw dirty to PTE_DIRTY and set RDONLY."""
        self._ptep_set_wrprotect_from(mm, addr, ptep, self._ptep_get(ptep))

    def _wrprotect_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, nr: int) -> None:
        """Models: ``__wrprotect_ptes()``: ``nr`` x (read + cmpxchg), one array store."""
        self.counters.add("pte.read", nr)
        self._wrprotect_block(ptep, nr)

    def _wrprotect_block(self, ptep: PtePtr, nr: int) -> None:
        """The ``nr`` cmpxchg of ``__wrprotect_ptes()`` (reads counted by the caller)."""
        old = ptep.table.entries[ptep.idx : ptep.idx + nr]
        new = self._np_wrprotect(old)
        self.counters.add("pte.atomic", nr)
        ptep.table.store_many(ptep.idx, new)

    def _atomic_update(self, ptep: PtePtr, pte: int, fn: Callable[[int], int]) -> int:
        """A kernel cmpxchg loop: store ``fn(old)`` until no one raced; return ``old``.

        ``pte`` is the value the caller read.  The model is sequential, so
        the loop only retries when the caller's copy is stale (e.g. read
        before an unfold repainted the block).
        """
        t = ptep.table
        while not t.cmpxchg(ptep.idx, pte, fn(pte)):
            pte = int(t.entries[ptep.idx])
        return pte

    def _clear_young_dirty_ptes(self, vma: VmaLike, addr: int, ptep: PtePtr, nr: int, flags: int) -> None:
        """Models: ``__clear_young_dirty_ptes()`` (MADV_FREE).

        Both flags: a plain store per PTE; one flag: a cmpxchg per PTE.
        """
        old = self._block_peek(ptep, nr)
        new = old
        if flags & CYDP_CLEAR_YOUNG:
            new = new & _NP_NOT_AF
        if flags & CYDP_CLEAR_DIRTY:
            new = (new & _NP_NOT_DIRTY) | _NP_RDONLY
        if flags != (CYDP_CLEAR_YOUNG | CYDP_CLEAR_DIRTY):
            self.counters.add("pte.atomic", nr)
        ptep.table.store_many(ptep.idx, new)

    def _ptep_set_access_flags(self, vma: VmaLike, addr: int, ptep: PtePtr, entry: int, dirty: bool) -> bool:
        """Make a PTE more permissive in place; True if it changed.

        Models: arch/arm64/mm/fault.c ``__ptep_set_access_flags()`` (v6.12).
        Only RDONLY/AF/WRITE/DIRTY are taken from ``entry``, ORed in with a
        cmpxchg (RDONLY ends as the more permissive of the two) so that a
        concurrent hardware A/D update is never lost.  No break-before-make:
        the change only relaxes permissions.  With ``dirty`` a stale
        read-only TLB entry is flushed (v6.12: broadcast ``flush_tlb_page``).
        """
        pte = self._ptep_get(ptep)
        if self.pte_same(pte, entry):
            return False
        bits = (entry & (PTE_RDONLY | PTE_AF | PTE_WRITE | PTE_DIRTY)) ^ PTE_RDONLY
        self._atomic_update(ptep, pte, lambda v: ((v ^ PTE_RDONLY) | bits) ^ PTE_RDONLY)
        if dirty:
            tlbflush.flush_tlb_page(self, vma, addr)
        return True

    def _ptep_set_access_flags_block(self, vma: VmaLike, ptep: PtePtr, nr: int, entry: int) -> None:
        """``nr`` x ``__ptep_set_access_flags(entry, dirty=0)`` from ``ptep``, vectorised.

        Entries that are already ``pte_same`` as ``entry`` are left alone
        (no cmpxchg), exactly like the per-PTE C loop.
        """
        t = ptep.table
        old = self._block_peek(ptep, nr)
        present = ((old & _NP_VALID) != _NP_ZERO) | (
            (old & np.uint64(PTE_VALID | PTE_PRESENT_INVALID)) == np.uint64(PTE_PRESENT_INVALID)
        )
        cmp_old = np.where(present, old & _NP_NOT_RDONLY, old)
        cmp_entry = entry & ~PTE_RDONLY if self.pte_present(entry) else entry
        same = cmp_old == np.uint64(cmp_entry)
        bits = np.uint64((entry & (PTE_RDONLY | PTE_AF | PTE_WRITE | PTE_DIRTY)) ^ PTE_RDONLY)
        new = ((old ^ _NP_RDONLY) | bits) ^ _NP_RDONLY
        changed = ~same
        n = int(changed.sum())
        if n == 0:
            return
        self.counters.add("pte.atomic", n)
        if n == nr:
            t.store_many(ptep.idx, new)
        else:
            for i in np.flatnonzero(changed):
                t.store(ptep.idx + int(i), int(new[i]))

    # ==================================================================
    # Public API (what core-mm calls).
    # ==================================================================
    def ptep_get(self, ptep: PtePtr) -> int:
        """Read a PTE; inside a folded block, with the block's access/dirty ORed in.

        Models: arm64 ``ptep_get()``.  PTE_CONT leaks out on purpose.

        Context: PTL held.
        """
        pte = self._ptep_get(ptep)
        if not self.contpte_enabled or (pte & (PTE_VALID | PTE_CONT)) != (PTE_VALID | PTE_CONT):
            return pte
        return contpte.contpte_ptep_get(self, ptep, pte)

    def ptep_get_lockless(self, ptep: PtePtr) -> int:
        """Models: arm64 ``ptep_get_lockless()``.

        Context: no PTL (GUP-fast, lockless fault paths).
        """
        pte = self._ptep_get(ptep)
        if not self.contpte_enabled or (pte & (PTE_VALID | PTE_CONT)) != (PTE_VALID | PTE_CONT):
            return pte
        return contpte.contpte_ptep_get_lockless(self, ptep)

    def set_pte(self, ptep: PtePtr, pte: int) -> None:
        """Models: arm64 ``set_pte()``: no mm/addr, so it cannot unfold; warns instead.

        Core-mm never calls it.
        """
        if self.contpte_enabled:
            orig = self._ptep_get(ptep)
            self.VM_WARN_ON(
                self.pte_valid_cont(orig), "set_pte over a valid contpte block", None, [orig, pte]
            )
            pte = self.pte_mknoncont(pte)
        self._set_pte(ptep, pte)

    def set_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, pte: int, nr: int) -> None:
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
        pte &= ~PTE_CONT
        if nr == 1:
            contpte.contpte_try_unfold(self, mm, addr, ptep, self._ptep_get(ptep), "set_ptes")
            self._set_ptes(mm, addr, ptep, pte, 1)
            contpte.contpte_try_fold(self, mm, addr, ptep, pte)
        else:
            contpte.contpte_set_ptes(self, mm, addr, ptep, pte, nr)

    def pte_clear(self, mm: MmLike, addr: int, ptep: PtePtr) -> None:
        """Models: arm64 ``pte_clear()``: unfold, then a plain store of 0.

        Context: PTL held.
        """
        if self.contpte_enabled:
            contpte.contpte_try_unfold(self, mm, addr, ptep, self._ptep_get(ptep), "pte_clear")
        self._pte_clear(mm, addr, ptep)

    def ptep_get_and_clear(
        self, mm: MmLike, addr: int, ptep: PtePtr, *, caller: str = "ptep_get_and_clear"
    ) -> int:
        """Clear one PTE and return it.  Models: arm64 ``ptep_get_and_clear()``.

        The returned value is not gathered, but the unfold has already
        smeared the block's access/dirty into every member.
        ``caller`` (model only) names the unfold counter.

        Context: PTL held.
        """
        if self.contpte_enabled:
            contpte.contpte_try_unfold(self, mm, addr, ptep, self._ptep_get(ptep), caller)
        return self._ptep_get_and_clear(mm, addr, ptep)

    def clear_full_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, nr: int, full: bool) -> None:
        """Clear ``nr`` PTEs of one folio (zap of an anon folio).

        Models: arm64 ``clear_full_ptes()``.  Fully covered blocks stay
        folded until cleared: no unfold, no TLBI (mmu_gather flushes later).

        Context: PTL held; one folio; one PMD.
        """
        if not self.contpte_enabled:
            self._clear_full_ptes(mm, addr, ptep, nr, full)
        elif not self.teardown_opt:
            self._per_pte_unfold(mm, addr, ptep, nr, "clear_full_ptes", cont_only=False)
            self._clear_full_ptes(mm, addr, ptep, nr, full)
        elif nr == 1:
            contpte.contpte_try_unfold(self, mm, addr, ptep, self._ptep_get(ptep), "clear_full_ptes")
            self._clear_full_ptes(mm, addr, ptep, nr, full)
        else:
            contpte.contpte_clear_full_ptes(self, mm, addr, ptep, nr, full)

    def get_and_clear_full_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, nr: int, full: bool) -> int:
        """Clear ``nr`` PTEs; return the first with access/dirty of all ORed in.

        Models: arm64 ``get_and_clear_full_ptes()``.

        Context: PTL held; one folio; one PMD.
        """
        if not self.contpte_enabled:
            return self._get_and_clear_full_ptes(mm, addr, ptep, nr, full)
        if not self.teardown_opt:
            self._per_pte_unfold(mm, addr, ptep, nr, "get_and_clear_full_ptes", cont_only=False)
            return self._get_and_clear_full_ptes(mm, addr, ptep, nr, full)
        if nr == 1:
            contpte.contpte_try_unfold(self, mm, addr, ptep, self._ptep_get(ptep), "get_and_clear_full_ptes")
            return self._get_and_clear_full_ptes(mm, addr, ptep, nr, full)
        return contpte.contpte_get_and_clear_full_ptes(self, mm, addr, ptep, nr, full)

    def ptep_test_and_clear_young(self, vma: VmaLike, addr: int, ptep: PtePtr) -> bool:
        """Models: arm64 ``ptep_test_and_clear_young()``: whole block, no unfold.

        Context: PTL held.
        """
        pte = self._ptep_get(ptep)
        if not self.contpte_enabled or not self.pte_valid_cont(pte):
            return self._ptep_test_and_clear_young(vma, addr, ptep)
        return contpte.contpte_ptep_test_and_clear_young(self, vma, addr, ptep)

    def ptep_clear_flush_young(self, vma: VmaLike, addr: int, ptep: PtePtr) -> bool:
        """Models: arm64 ``ptep_clear_flush_young()``: whole block, nosync flush.

        Context: PTL held.
        """
        pte = self._ptep_get(ptep)
        if not self.contpte_enabled or not self.pte_valid_cont(pte):
            return self._ptep_clear_flush_young(vma, addr, ptep)
        return contpte.contpte_ptep_clear_flush_young(self, vma, addr, ptep)

    def wrprotect_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, nr: int) -> None:
        """Write-protect ``nr`` PTEs of one folio (fork, the parent's side).

        Models: arm64 ``wrprotect_ptes()``.  Whole blocks stay folded and
        get no TLBI here (fork's ``flush_tlb_mm`` follows); partial blocks
        unfold.  ``wrprotect_ptes_opt=False``: one PTE at a time through
        the ``nr == 1`` path, so every block unfolds.

        Context: PTL held; one folio; one PMD.
        """
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
            self._per_pte_unfold(mm, addr, ptep, nr, "wrprotect_ptes", cont_only=True)
            self._wrprotect_block(ptep, nr)
        else:
            contpte.contpte_wrprotect_ptes(self, mm, addr, ptep, nr)

    def _wrprotect_pte(self, mm: MmLike, addr: int, ptep: PtePtr, caller: str) -> None:
        """The ``nr == 1`` fast path of ``wrprotect_ptes()``.

        Only present PTEs get here, so PTE_CONT alone decides the unfold and
        the CONT-stripped copy saves a re-read (fork is sensitive to it).
        """
        pte = self._ptep_get(ptep)
        if pte & PTE_CONT:
            contpte._contpte_try_unfold(self, mm, addr, ptep, pte, caller)
            pte &= ~PTE_CONT
        self._ptep_set_wrprotect_from(mm, addr, ptep, pte)
        if self.wrprotect_refold:
            contpte.contpte_try_fold(self, mm, addr, ptep, self._ptep_get(ptep))

    def ptep_set_wrprotect(self, mm: MmLike, addr: int, ptep: PtePtr) -> None:
        """Models: arm64 ``ptep_set_wrprotect()`` = ``wrprotect_ptes(nr=1)``.

        Context: PTL held.
        """
        if not self.contpte_enabled:
            self._ptep_set_wrprotect(mm, addr, ptep)
        else:
            self._wrprotect_pte(mm, addr, ptep, "ptep_set_wrprotect")

    def _per_pte_unfold(
        self, mm: MmLike, addr: int, ptep: PtePtr, nr: int, caller: str, cont_only: bool
    ) -> None:
        """The unfolds a per-PTE loop of ``nr == 1`` calls would do, block by block.

        Used by the historical variants (``wrprotect_ptes_opt=False``,
        ``teardown_opt=False``).  In the per-PTE loop only the first entry
        of each block within the range can still be CONT (its unfold
        repaints the whole block), so testing that entry per block gives
        the same unfolds in the same order.  Every one of the ``nr`` calls
        reads its entry once: those reads are counted here; the stores are
        left to the caller's vectorised private helper.
        """
        self.counters.add("pte.read", nr)
        cp = self.CONT_PTES
        i = 0
        while i < nr:
            pte = int(ptep.table.entries[ptep.idx + i])
            want = pte & PTE_CONT if cont_only else self.pte_valid_cont(pte)
            if want:
                a = addr + i * self.PAGE_SIZE
                contpte._contpte_try_unfold(self, mm, a, ptep + i, pte, caller)
                if cont_only and int(ptep.table.entries[ptep.idx + i]) != pte & ~PTE_CONT:
                    # ___ptep_set_wrprotect()'s first cmpxchg fails on the
                    # repainted entry and re-reads it.
                    self.counters.add("pte.atomic")
                    self.counters.add("pte.read")
            i += cp - ((ptep.idx + i) & (cp - 1))

    def ptep_set_access_flags(self, vma: VmaLike, addr: int, ptep: PtePtr, entry: int, dirty: bool) -> bool:
        """Make a PTE more permissive after a fault; True if anything changed.

        Models: arm64 ``ptep_set_access_flags()``.

        Context: PTL held.
        """
        if not self.contpte_enabled:
            return self._ptep_set_access_flags(vma, addr, ptep, entry, dirty)
        pte = self._ptep_get(ptep)
        entry &= ~PTE_CONT
        if not self.pte_valid_cont(pte):
            return self._ptep_set_access_flags(vma, addr, ptep, entry, dirty)
        return contpte.contpte_ptep_set_access_flags(self, vma, addr, ptep, entry, dirty)

    def clear_young_dirty_ptes(self, vma: VmaLike, addr: int, ptep: PtePtr, nr: int, flags: int) -> None:
        """Models: arm64 ``clear_young_dirty_ptes()`` (MADV_FREE): no unfold.

        Context: PTL held; one folio; one PMD.
        """
        if not self.contpte_enabled:
            self._clear_young_dirty_ptes(vma, addr, ptep, nr, flags)
        elif nr == 1 and not self._ptep_get(ptep) & PTE_CONT:
            self._clear_young_dirty_ptes(vma, addr, ptep, nr, flags)
        else:
            contpte.contpte_clear_young_dirty_ptes(self, vma, addr, ptep, nr, flags)

    def pte_batch_hint(self, ptep: PtePtr, pte: int) -> int:
        """How many PTEs from ``ptep`` map contiguous memory with the same prot.

        Models: arm64 ``pte_batch_hint()``: the rest of a folded block.
        """
        if not self.contpte_enabled or not self.pte_valid_cont(pte):
            return 1
        return self.CONT_PTES - (ptep.idx & (self.CONT_PTES - 1))

    def ptep_modify_prot_start(self, vma: VmaLike, addr: int, ptep: PtePtr) -> int:
        """Start a protection change of one PTE (mprotect).

        Models: arch/arm64/mm/mmu.c ``ptep_modify_prot_start()`` (v6.12):
        ``ptep_get_and_clear()``, so a folded block unfolds.  The Cortex-A510
        erratum 2645198 BBM path (exec -> non-exec) is not modelled.

        Context: PTL held.
        """
        return self.ptep_get_and_clear(vma.vm_mm, addr, ptep, caller="ptep_modify_prot_start")

    def ptep_modify_prot_commit(self, vma: VmaLike, addr: int, ptep: PtePtr, old_pte: int, pte: int) -> None:
        """Models: arch/arm64/mm/mmu.c ``ptep_modify_prot_commit()`` = ``set_pte_at()``.

        Rewriting the last PTE of a block may fold it again.

        Context: PTL held.
        """
        self.set_pte_at(vma.vm_mm, addr, ptep, pte)

    def pmdp_set_access_flags(self, vma: VmaLike, addr: int, pmd_index: int, entry: int, dirty: bool) -> bool:
        """Make a huge PMD more permissive in place; True if it changed.

        Models: arm64 ``pmdp_set_access_flags()`` = ``__ptep_set_access_flags()``
        on the PMD: access bits merged (no break-before-make), and a
        ``flush_tlb_page()`` of ``addr`` if ``dirty``.

        Context: PMD lock held.
        """
        space = vma.vm_mm.space
        old = space.pmd_load(pmd_index)
        if self.pte_same(old, entry):
            return False
        bits = (entry & (PTE_RDONLY | PTE_AF | PTE_WRITE | PTE_DIRTY)) ^ PTE_RDONLY
        self.counters.add("pte.atomic")
        space.pmd_store(pmd_index, ((old ^ PTE_RDONLY) | bits) ^ PTE_RDONLY)
        if dirty:
            tlbflush.flush_tlb_page(self, vma, addr)
        return True

    # ==================================================================
    # TLB maintenance (asm/tlbflush.h, asm/tlb.h).
    # ==================================================================
    def flush_tlb_mm(self, mm: MmLike) -> None:
        """Models: arm64 ``flush_tlb_mm()``: one ASIDE1IS."""
        tlbflush.flush_tlb_mm(self, mm)

    def flush_tlb_range(self, vma: VmaLike, start: int, end: int) -> None:
        """Models: arm64 ``flush_tlb_range()``: not leaf-only, level unknown."""
        tlbflush.flush_tlb_range(self, vma, start, end)

    def flush_tlb_page(self, vma: VmaLike, addr: int) -> None:
        """Models: arm64 ``flush_tlb_page()``: one VALE1IS + DSB ISH."""
        tlbflush.flush_tlb_page(self, vma, addr)

    def flush_pmd_tlb_range(self, vma: VmaLike, start: int, end: int) -> None:
        """Models: arm64 ``flush_pmd_tlb_range()``: PMD stride, level 2."""
        tlbflush.flush_pmd_tlb_range(self, vma, start, end)

    def flush_tlb_fix_spurious_fault(self, vma: VmaLike, addr: int, ptep: PtePtr | None) -> None:
        """Models: arm64 ``flush_tlb_fix_spurious_fault()``: nothing.

        arm64 invalidates with broadcast TLBIs, so a spurious fault that
        another CPU already fixed needs no local invalidation.
        """

    def tlb_flush(self, tlb: GatherLike) -> None:
        """Models: arch/arm64/include/asm/tlb.h ``tlb_flush()``."""
        tlbflush.tlb_flush(self, tlb)

    # ==================================================================
    # Bulk forms for core-mm's fast paths (model-only; see Pgtable).
    # ==================================================================
    BULK = True

    def pte_pfn_v(self, vals: np.ndarray) -> np.ndarray:
        return ((vals & self._np_addr) >> np.uint64(self.PAGE_SHIFT)).astype(np.int64)

    def pte_write_v(self, vals: np.ndarray) -> np.ndarray:
        return np.asarray((vals & _NP_WRITE) != _NP_ZERO)

    def pte_uffd_wp_v(self, vals: np.ndarray) -> np.ndarray:
        return np.asarray((vals & np.uint64(PTE_UFFD_WP)) != _NP_ZERO)

    def pte_wrprotect_v(self, vals: np.ndarray) -> np.ndarray:
        return self._np_wrprotect(vals)

    def pte_mkwrite_v(self, vals: np.ndarray) -> np.ndarray:
        return (vals | _NP_WRITE) & _NP_NOT_RDONLY

    def pte_mkold_v(self, vals: np.ndarray) -> np.ndarray:
        return vals & _NP_NOT_AF

    def pte_mkclean_v(self, vals: np.ndarray) -> np.ndarray:
        return (vals & _NP_NOT_DIRTY) | np.uint64(PTE_RDONLY)

    def _valid_cont_v(self, vals: np.ndarray) -> np.ndarray:
        vc = np.uint64(PTE_VALID | PTE_CONT)
        return np.asarray((vals & vc) == vc)

    def bulk_plain_v(self, raw: np.ndarray) -> np.ndarray:
        bad = np.uint64(PTE_SPECIAL | PTE_UFFD_WP)
        return np.asarray(((raw & _NP_VALID) != _NP_ZERO) & ((raw & bad) == _NP_ZERO))

    def bulk_uniform_reads(self, raw: np.ndarray) -> tuple[int, int, int] | None:
        """Every entry plain and not CONT: (1, 1, 0); every one valid CONT: a
        block's first entry visited, ``contpte_ptep_get`` on it (``1 +
        CONT_PTES`` loads, one gather)."""
        if not len(raw):
            return None
        cont = PTE_CONT if self.contpte_enabled else 0
        every = int(np.bitwise_and.reduce(raw))  # bits set in every entry
        some = int(np.bitwise_or.reduce(raw))  # bits set in some entry
        if not every & PTE_VALID or some & (PTE_SPECIAL | PTE_UFFD_WP):
            return None
        if not some & cont:
            return 1, 1, 0
        if every & cont:
            return self.CONT_PTES, 1 + self.CONT_PTES, 1
        return None

    def bulk_ptep_get(self, raw: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``ptep_get()`` of the entries at ``pos``: in a folded block, the block's A/D ORed in.

        Mirrors ``ptep_get()`` -> ``contpte_ptep_get()``: one load, plus
        CONT_PTES loads for an entry that is valid and CONT.
        """
        rv = raw[pos]
        n = len(pos)
        if not self.contpte_enabled:
            return rv, np.ones(n, dtype=np.int64), np.zeros(n, dtype=bool)
        cp = self.CONT_PTES
        vc = self._valid_cont_v(rv)
        if not vc.any():
            return rv, np.ones(n, dtype=np.int64), vc
        reads = 1 + cp * vc.astype(np.int64)
        ad_bits = PTE_DIRTY | PTE_AF | PTE_WRITE | PTE_RDONLY
        every = int(np.bitwise_and.reduce(raw))
        if not (every ^ int(np.bitwise_or.reduce(raw))) & ad_bits:
            # every entry in the same access/dirty state: a block's gathered
            # state is each member's own (young: AF already set)
            if not every & PTE_DIRTY and not (every & PTE_WRITE and not every & PTE_RDONLY):
                return rv, reads, vc  # clean: nothing to OR in
            add = _NP_DIRTY
            clear = _NP_NOT_RDONLY if every & PTE_WRITE else ~_NP_ZERO
            if vc.all():
                return (rv | add) & clear, reads, vc
            return np.where(vc, (rv | add) & clear, rv), reads, vc
        bidx = pos[vc] // cp
        blocks = raw.reshape(-1, cp)
        if len(bidx) != len(blocks):
            blocks = blocks[bidx]
        # pte_dirty(): sw DIRTY, or hw dirty (WRITE and not RDONLY, moved onto
        # the DIRTY bit) on any member; pte_young(): AF on any member
        ad = np.left_shift(blocks, _SH_WRITE_TO_DIRTY)
        t = np.invert(blocks)
        np.left_shift(t, _SH_RDONLY_TO_DIRTY, out=t)
        ad &= t
        ad &= _NP_DIRTY
        ad |= blocks
        ored = np.bitwise_or.reduce(ad, axis=1)
        dirty = (ored & _NP_DIRTY) != _NP_ZERO
        young = (ored & _NP_AF) != _NP_ZERO
        g = rv[vc]
        g = np.where(dirty, g | _NP_DIRTY, g)
        g = np.where(dirty & ((g & _NP_WRITE) != _NP_ZERO), g & _NP_NOT_RDONLY, g)
        g = np.where(young, g | _NP_AF, g)
        out = rv.copy()
        out[vc] = g
        return out, reads, vc

    def bulk_batch_visited(self, raw: np.ndarray, inr: np.ndarray) -> np.ndarray | None:
        """``pte_batch_hint()`` jumps from a folded entry to its block's end.

        So in each block the chain lands on every entry up to and including
        the first (in range) valid CONT one, and on none after it.
        """
        if not self.contpte_enabled:
            return None
        vc = self._valid_cont_v(raw) & inr
        if not vc.any():
            return None
        cp = self.CONT_PTES
        before = np.cumsum(vc.reshape(-1, cp), axis=1, dtype=np.int16).reshape(-1) - vc
        return np.asarray(inr & (before == 0))

    def bulk_count_ptep_get(self, reads: int, gathers: int) -> None:
        self.counters.add("pte.read", reads)
        if gathers:
            self.counters.add(contpte.CALL_PTEP_GET, gathers)

    def _partial_ends(
        self, vals: np.ndarray, sm: np.ndarray, nm: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``contpte_try_unfold_partial()`` of batches ``(sm, nm)``: which read head/tail; None if one unfolds."""
        cp = self.CONT_PTES
        idx = sm & (self.PTRS_PER_PTE - 1)
        head = ((idx & (cp - 1)) != 0) | (nm < cp)
        tail = ((idx + nm) & (cp - 1)) != 0
        if not len(vals) or not int(np.bitwise_or.reduce(vals)) & PTE_CONT:
            return head, tail  # no CONT entry: nothing to unfold
        if (head & self._valid_cont_v(vals[sm])).any() or (
            tail & self._valid_cont_v(vals[sm + nm - 1])
        ).any():
            return None
        return head, tail

    def bulk_wrprotect_ptes(
        self, vals: np.ndarray, b: PteBatches
    ) -> tuple[np.ndarray, dict[str, int]] | None:
        """``wrprotect_ptes()`` per batch, when none of the calls unfolds.

        Mirrors ``wrprotect_ptes()``: ``nr == 1`` -> ``_wrprotect_pte``
        (read, cmpxchg); ``nr > 1`` -> ``contpte_wrprotect_ptes`` (partial
        block ends read by ``contpte_try_unfold_partial``, then
        ``__wrprotect_ptes``), or the per-PTE variant without
        ``wrprotect_ptes_opt``; ``__wrprotect_ptes`` with contpte off.
        """
        if self.wrprotect_refold and self.contpte_enabled:
            return None  # an nr == 1 call may fold: the one-by-one calls decide
        total = b.total
        counts: dict[str, int] = {"pte.atomic": total, "pte.write": total}
        if not self.contpte_enabled:
            counts["pte.read"] = total
        elif b.stride == 1:  # every call nr == 1: _wrprotect_pte, no CONT entry
            starts = vals if total == b.n else vals[b.starts]
            if len(starts) and int(np.bitwise_or.reduce(starts)) & PTE_CONT:
                return None
            counts["pte.read"] = total
        else:
            one = b.nrs == 1
            n1 = int(one.sum())
            if n1 and ((vals[b.starts[one]] & _NP_CONT) != _NP_ZERO).any():
                return None
            many = ~one
            sm = b.starts[many] if n1 else b.starts
            nm = b.nrs[many] if n1 else b.nrs
            if self.wrprotect_ptes_opt:
                ends = self._partial_ends(vals, sm, nm)
                if ends is None:
                    return None
                head, tail = ends
                k = int(many.sum())
                if k:
                    counts[contpte.CALL_WRPROTECT] = k
                    counts[contpte.CALL_UNFOLD_PARTIAL] = k
                counts["pte.read"] = n1 + int(head.sum()) + int(tail.sum()) + int(nm.sum())
            else:
                if (b.mask() & ((vals & _NP_CONT) != _NP_ZERO)).any():
                    return None
                counts["pte.read"] = total
        if total == 0:
            return vals, counts
        if total == b.n:
            return self._np_wrprotect(vals), counts
        return np.where(b.mask(), self._np_wrprotect(vals), vals), counts

    def bulk_set_ptes(
        self, b: PteBatches, ptes: np.ndarray, folio_first: np.ndarray, folio_nr: np.ndarray
    ) -> tuple[np.ndarray, dict[str, int]] | None:
        """``set_ptes()`` per batch into none entries, when none of the calls folds.

        Mirrors ``set_ptes()``: ``nr == 1`` -> the unfold test (one read),
        one store, ``contpte_try_fold`` (which enters ``__contpte_try_fold``
        on a block's last entry; a folio covering the block could fold it:
        None); ``nr > 1`` -> ``contpte_set_ptes`` (PTE_CONT on every whole,
        VA- and PA-aligned block).
        """
        if not len(b):
            return np.zeros(b.n, dtype=np.uint64), {}
        counts: dict[str, int] = {"pte.write": b.total}
        nb = len(b)
        p = ptes
        full = b.stride and b.total == b.n  # uniform batches tiling every entry
        if self.contpte_enabled:
            cp = self.CONT_PTES
            p = ptes & np.uint64(~PTE_CONT & _U64)
            if b.stride > 1:
                n1 = 0
            else:
                one = np.ones(nb, dtype=bool) if b.stride else b.nrs == 1
                n1 = nb if b.stride else int(one.sum())
                # contpte_try_fold() enters __contpte_try_fold only on a block's last entry
                if full:
                    cand = np.arange(cp - 1, nb, cp, dtype=np.int64)
                else:
                    cand = np.flatnonzero(one & ((b.starts & (cp - 1)) == cp - 1))
                pc = p[cand]
                pfn = self.pte_pfn_v(pc)
                fold = (
                    ((pfn & (cp - 1)) == cp - 1)
                    & ((pc & _NP_VALID) != _NP_ZERO)
                    & ((pc & np.uint64(PTE_SPECIAL)) == _NP_ZERO)
                )
                if fold.any():
                    ic = b.starts[cand] & (self.PTRS_PER_PTE - 1)
                    fstart = ic - (pfn - folio_first[cand])
                    cstart = ic & ~(cp - 1)
                    if (fold & (fstart <= cstart) & (fstart + folio_nr[cand] >= cstart + cp)).any():
                        return None
                    counts[contpte.CALL_TRY_FOLD] = int(fold.sum())
            counts["pte.read"] = n1
            k = nb - n1
            if k:
                counts[contpte.CALL_SET_PTES] = k
        if full:
            st = b.stride
            if st == 1:
                vals = p.copy() if p is ptes else p
            else:
                offs = np.arange(st, dtype=np.uint64) << np.uint64(self.PAGE_SHIFT)
                vals = (p[:, None] + offs[None, :]).reshape(-1)
            if not (self.contpte_enabled and counts.get(contpte.CALL_SET_PTES)) or st < self.CONT_PTES:
                return vals, counts  # no block whole in one batch
            # every block whole in one batch: PTE_CONT if all are PA-aligned
            cp = self.CONT_PTES
            if bool(((self.pte_pfn_v(vals[::cp]) & (cp - 1)) == 0).all()):
                vals |= _NP_CONT
                return vals, counts
        bid = b.bid()
        mask = b.mask()
        vals = p[bid] + (b.offset().astype(np.uint64) << np.uint64(self.PAGE_SHIFT))
        vals = np.where(mask, vals, _NP_ZERO)
        if self.contpte_enabled and counts.get(contpte.CALL_SET_PTES):
            cp = self.CONT_PTES
            starts, nrs = b.starts, b.nrs
            bs = np.arange(0, b.n, cp, dtype=np.int64)
            bb = bid[bs]
            s_b = starts[bb]
            whole = (
                mask[bs]
                & (nrs[bb] > 1)
                & (s_b <= bs)
                & (s_b + nrs[bb] >= bs + cp)
                & ((self.pte_pfn_v(vals[bs]) & (cp - 1)) == 0)
            )
            if whole.any():
                vals = np.where(np.repeat(whole, cp), vals | _NP_CONT, vals)
        return vals, counts

    def bulk_clear_full_ptes(self, vals: np.ndarray, b: PteBatches, full: bool) -> dict[str, int] | None:
        """``clear_full_ptes()`` per batch, when none of the calls unfolds.

        Mirrors ``clear_full_ptes()``: ``nr == 1`` -> the unfold test (one
        read) and one xchg; ``nr > 1`` -> ``contpte_clear_full_ptes``
        (partial block ends read by ``contpte_try_unfold_partial``); the
        per-PTE variant without ``teardown_opt``.
        """
        total = b.total
        counts: dict[str, int] = {"pte.atomic": total, "pte.write": total}
        if not self.contpte_enabled:
            return counts
        if not self.teardown_opt:
            if (b.mask() & self._valid_cont_v(vals)).any():
                return None
            counts["pte.read"] = total
            return counts
        if b.stride == 1:  # every call nr == 1
            starts = vals if total == b.n else vals[b.starts]
            if (
                len(starts)
                and int(np.bitwise_or.reduce(starts)) & PTE_CONT
                and self._valid_cont_v(starts).any()
            ):
                return None
            counts["pte.read"] = total
            return counts
        one = b.nrs == 1
        if self._valid_cont_v(vals[b.starts[one]]).any():
            return None
        many = ~one
        ends = self._partial_ends(vals, b.starts[many], b.nrs[many])
        if ends is None:
            return None
        head, tail = ends
        k = int(many.sum())
        if k:
            counts[contpte.CALL_CLEAR_FULL] = k
            counts[contpte.CALL_UNFOLD_PARTIAL] = k
        counts["pte.read"] = int(one.sum()) + int(head.sum()) + int(tail.sum())
        return counts
