"""The pgtable API surface core-mm calls, with the generic fallbacks.

Models: include/linux/pgtable.h (Linux v6.12) and mm/pgtable-generic.c.

``Pgtable`` is the base of every backend.  Its public methods are the
functions core-mm calls (``set_ptes``, ``wrprotect_ptes``,
``get_and_clear_full_ptes``, ...); their bodies here are the generic
fallbacks of include/linux/pgtable.h, built on an arch's private
primitives (``_ptep_get``, ``_set_pte``, ...: the kernel's ``__ptep_get``,
``__set_pte``).  A backend overrides what its kernel overrides
(arm64 with ``__HAVE_ARCH_*``), and supplies the PTE format (the ``pte_*``
bit helpers) and the TLB flush functions.

A PTE value is a u64 (``pte_t``); a PTE pointer is an int (``pte_t *``):
the descriptor's index in the machine's ``PtePool``, so ``ptep + n`` works
as in C.  A PMD pointer is the pair (mm, level-2 index).

The parts of ``struct mm_struct``, ``struct vm_area_struct`` and ``struct
mmu_gather`` the arch layer reads are the base classes ``MmLike``,
``VmaLike`` and ``GatherLike`` here; core-mm's types extend them (as the
kernel's arch code reads the generic structs).

Compiled (docs/core.md).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import cython
import numpy as np

from ..errors import KernelBug, ModelUsageError

if not cython.compiled:
    from ..cdefs import i64, u64
    from ..counters import PTE_READ, Counters, count
    from ..hw.hardware import Hardware
    from ..hw.tables import AddressSpace, PtePool

__all__ = [
    "MmLike",
    "VmaLike",
    "GatherLike",
    "Pgtable",
    "CYDP_CLEAR_YOUNG",
    "CYDP_CLEAR_DIRTY",
]

CYDP_CLEAR_YOUNG = cython.declare(i64, 0x01)
CYDP_CLEAR_DIRTY = cython.declare(i64, 0x02)


@cython.cclass
class MmLike:
    """What the arch layer reads of a ``struct mm_struct``.

    ``space``: the hardware translation regime (ASID, tables);
    ``cpumask``: the CPUs it ran on (``mm_cpumask``, a set of ints);
    ``is_kernel_mm``: init_mm / efi_mm (never gets PTE_CONT).
    """

    def __init__(self, space: AddressSpace) -> None:
        self.space: AddressSpace = space
        self.cpumask: set[int] = set()
        self.is_kernel_mm = False


@cython.cclass
class VmaLike:
    """What the arch layer reads of a ``struct vm_area_struct``."""

    def __init__(self, mm: MmLike, start: i64, end: i64, flags: i64) -> None:
        self.vm_mm: MmLike = mm
        self.vm_start = start
        self.vm_end = end
        self.vm_flags = flags


@cython.cclass
class GatherLike:
    """What the arch's ``tlb_flush()`` reads of a ``struct mmu_gather``."""

    def __init__(self, mm: MmLike, fullmm: bool) -> None:
        self.mm: MmLike = mm
        self.fullmm = fullmm
        self.need_flush_all = False
        self.freed_tables = False
        self.cleared_ptes = False
        self.cleared_pmds = False
        self.cleared_puds = False
        self.start = -1
        self.end = 0


@cython.cclass
class Pgtable:
    """A pgtable backend: PTE format, private primitives, public API, TLB flush.

    Subclasses set the geometry (``page_shift``), implement the format and
    the primitives, and override the public functions their kernel
    overrides.
    """

    #: Options this backend understands (Machine passes only these).
    OPTIONS: dict[str, Any] = {}

    def __init__(self, hw: Hardware, page_shift: i64 = 12, **options: Any) -> None:
        known = type(self).OPTIONS
        unknown = set(options) - set(known)
        if unknown:
            raise ModelUsageError(f"arch {self.name}: unknown option(s) {', '.join(sorted(unknown))}")
        self.options = {**known, **options}
        self.hw: Hardware = hw
        self.pool: PtePool = hw.pool
        self.counters: Counters = hw.counters
        self.page_shift = page_shift
        self.PAGE_SHIFT = page_shift
        self.PAGE_SIZE = 1 << page_shift
        self.PTRS_PER_PTE = 1 << (page_shift - 3)
        self.PMD_SHIFT = page_shift + (page_shift - 3)
        self.PMD_SIZE = 1 << self.PMD_SHIFT
        self.HPAGE_PMD_ORDER = self.PMD_SHIFT - page_shift
        self.HPAGE_PMD_NR = 1 << self.HPAGE_PMD_ORDER
        self.PFN_PTE_SHIFT = 12
        #: Entries in a contiguous block (1 where the arch has none).
        self.CONT_PTES = 1
        #: Bytes a contiguous block maps (``CONT_PTE_SIZE``).
        self.CONT_PTE_SIZE = self.PAGE_SIZE
        #: CPU features the arch's TLB maintenance uses (set by backends
        #: that have them): range TLBIs (FEAT_TLBIRANGE), KPTI's doubled TLBIs.
        self.tlbirange = False
        self.kpti = False
        #: arm64 (v6.17+ kernels on BBML2_NOABORT CPUs): contpte_convert()
        #: skips its intermediate TLBI.  Read by contpte.c.
        self.bbml2_noabort = False
        #: arm64 (v6.17+): contpte_ptep_get() stops once young and dirty are seen.
        self.ptep_get_early_exit = False
        #: arm64 (v7.0+): contpte_ptep_set_access_flags() is a no-op only if
        #: every member already has the access flags (not the gathered view).
        self.access_flags_subptes = False
        #: arm64 (v6.19+): a fault that only relaxed permissions or set the
        #: Access flag flushes this CPU's TLB only (VALE1, DSB NSH).
        self.tlbi_nobroadcast = False
        #: arm64 (v6.19+): ``pte_needs_flush()`` / ``huge_pmd_needs_flush()``
        #: say no flush for a change of software bits only.
        self.pte_flags_need_flush = False
        #: core-mm's mem_map ``head`` and ``order`` arrays (the Machine sets
        #: them): what an arch that must check folio coverage (the arm64
        #: fold) reads through ``folio_range_of_pfn``.
        self.folio_head = np.zeros(0, dtype=np.int64)
        self.folio_order = np.zeros(0, dtype=np.int8)
        #: Bug catalog entries turned on (contpte.bugs; the Machine sets it).
        self.bugs: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        """The backend's name (``"arm64"``, ``"generic"``)."""
        return "abstract"

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def bug(self, name: str) -> cython.bint:
        """Is bug-catalog entry ``name`` re-introduced on this machine (contpte.bugs)?"""
        return bool(self.bugs) and name in self.bugs

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def folio_first_pfn(self, pfn: i64) -> i64:
        """The first pfn of the folio containing ``pfn`` (``page_folio(pfn_to_page())``)."""
        if self.folio_head.shape[0] == 0:
            raise ModelUsageError(f"arch {self.name}: folio lookup not installed (the Machine installs it)")
        return cython.cast(i64, self.folio_head[pfn])

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def folio_nr_pages_of(self, head: i64) -> i64:
        """``folio_nr_pages()`` of the folio whose head is ``head``."""
        return cython.cast(i64, 1) << cython.cast(i64, self.folio_order[head])

    def folio_range_of_pfn(self, pfn: int) -> tuple[int, int]:
        """``(first_pfn, nr_pages)`` of the folio containing ``pfn``."""
        head = self.folio_first_pfn(pfn)
        return head, self.folio_nr_pages_of(head)

    # ------------------------------------------------------------------
    # PTE format: bit helpers (u64 values).  Subclasses implement.
    # ------------------------------------------------------------------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_none(self, pte: u64) -> cython.bint:
        return pte == 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_present(self, pte: u64) -> cython.bint:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_valid(self, pte: u64) -> cython.bint:
        """The hardware would translate it."""
        return self.pte_present(pte) and not self.pte_protnone(pte)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_pfn(self, pte: u64) -> i64:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pfn_pte(self, pfn: i64, prot: u64) -> u64:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_pgprot(self, pte: u64) -> u64:
        """Every bit except the output address."""
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_advance_pfn(self, pte: u64, nr: i64) -> u64:
        return pte + (cython.cast(u64, nr) << self.PFN_PTE_SHIFT)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_next_pfn(self, pte: u64) -> u64:
        return self.pte_advance_pfn(pte, 1)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_write(self, pte: u64) -> cython.bint:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_dirty(self, pte: u64) -> cython.bint:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_young(self, pte: u64) -> cython.bint:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_special(self, pte: u64) -> cython.bint:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkspecial(self, pte: u64) -> u64:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkwrite(self, pte: u64) -> u64:
        """``pte_mkwrite(pte, vma)``/``pte_mkwrite_novma``."""
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_wrprotect(self, pte: u64) -> u64:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkclean(self, pte: u64) -> u64:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkdirty(self, pte: u64) -> u64:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkold(self, pte: u64) -> u64:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkyoung(self, pte: u64) -> u64:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_same(self, a: u64, b: u64) -> cython.bint:
        """Models: include/linux/pgtable.h ``pte_same()``: the raw values are equal.

        Neither arm64 (v6.12 has no ``__HAVE_ARCH_PTE_SAME``) nor x86
        overrides it.
        """
        return a == b

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_accessible(self, mm: MmLike, pte: u64) -> cython.bint:
        """Could a TLB hold a translation from ``pte``?

        Models: include/linux/pgtable.h ``pte_accessible()``, the fallback
        for arches without their own: always.
        """
        return True

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_modify(self, pte: u64, newprot: u64) -> u64:
        """Change the permission bits of ``pte`` to ``newprot`` (keeps pfn, A/D)."""
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_protnone(self, pte: u64) -> cython.bint:
        return False

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_uffd_wp(self, pte: u64) -> cython.bint:
        return False

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkuffd_wp(self, pte: u64) -> u64:
        return pte

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_clear_uffd_wp(self, pte: u64) -> u64:
        return pte

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_soft_dirty(self, pte: u64) -> cython.bint:
        return False

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mksoft_dirty(self, pte: u64) -> u64:
        return pte

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_clear_soft_dirty(self, pte: u64) -> u64:
        return pte

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_cont(self, pte: u64) -> cython.bint:
        """Model-only: does the raw descriptor carry a contiguous hint (pagemap)."""
        return False

    # -- swap entries (non-present PTEs: include/linux/swapops.h) ---------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def swp_entry(self, type_: i64, offset: i64) -> u64:
        """The swap PTE for (type, offset).  Models: ``__swp_entry()`` + ``__swp_entry_to_pte()``."""
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def swp_type(self, pte: u64) -> i64:
        """Models: ``__swp_type(__pte_to_swp_entry(pte))``."""
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def swp_offset(self, pte: u64) -> i64:
        """Models: ``__swp_offset(__pte_to_swp_entry(pte))``."""
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_exclusive(self, pte: u64) -> cython.bint:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_mkexclusive(self, pte: u64) -> u64:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_clear_exclusive(self, pte: u64) -> u64:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_uffd_wp(self, pte: u64) -> cython.bint:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_mkuffd_wp(self, pte: u64) -> u64:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_swp_clear_uffd_wp(self, pte: u64) -> u64:
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def is_swap_pte(self, pte: u64) -> cython.bint:
        """Models: include/linux/swapops.h ``is_swap_pte()``: not none and not present."""
        return pte != 0 and not self.pte_present(pte)

    def ptes_decode(
        self, entries: np.ndarray, fields: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Decode an array of raw PTEs (model-only, for validators and pagemap).

        Keys: ``valid`` (the hardware would translate it), ``present``,
        ``pfn``, ``write``, ``dirty``, ``young``, ``cont``, ``special``; raw
        per-entry bits (no gathering).  Counts no reads.  This fallback uses
        the scalar helpers; backends override it with numpy bit operations.
        ``fields``: the keys the caller needs (a backend may leave out the
        others; ``valid`` and ``present`` always there).
        """
        vals = [int(x) for x in entries]
        present = np.array([bool(v) and self.pte_present(v) for v in vals], dtype=bool)
        return {
            "valid": present & ~np.array([bool(v) and self.pte_protnone(v) for v in vals], dtype=bool),
            "present": present,
            "pfn": np.array([self.pte_pfn(v) if p else 0 for v, p in zip(vals, present)], dtype=np.int64),
            "write": np.array([p and self.pte_write(v) for v, p in zip(vals, present)], dtype=bool),
            "dirty": np.array([p and self.pte_dirty(v) for v, p in zip(vals, present)], dtype=bool),
            "young": np.array([p and self.pte_young(v) for v, p in zip(vals, present)], dtype=bool),
            "cont": np.array([p and self.pte_cont(v) for v, p in zip(vals, present)], dtype=bool),
            "special": np.array([p and self.pte_special(v) for v, p in zip(vals, present)], dtype=bool),
        }

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def vm_get_page_prot(self, vm_flags: i64) -> u64:
        """The ``pgprot_t`` for a VMA's flags (protection_map)."""
        raise NotImplementedError

    # PMD (level-2 block) values share the PTE's attribute bits.
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_pmd(self, pte: u64) -> u64:
        """A huge (block) PMD value with the attributes of ``pte``."""
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmd_pte(self, pmd: u64) -> u64:
        """The PTE-format view of a block PMD (for the pte_* helpers)."""
        raise NotImplementedError

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmd_mkinvalid(self, pmd: u64) -> u64:
        raise NotImplementedError

    # ------------------------------------------------------------------
    # Private primitives (kernel: __ptep_get, __set_pte, ...).
    # ------------------------------------------------------------------
    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _ptep_get(self, ptep: i64) -> u64:
        """Models: ``__ptep_get()``: one raw load."""
        return self.pool.load(ptep)

    @cython.cfunc
    def _set_pte(self, ptep: i64, pte: u64) -> None:
        """Models: ``__set_pte()``: one raw store."""
        self.pool.store(ptep, pte)

    @cython.cfunc
    def _set_ptes(self, mm: MmLike, addr: i64, ptep: i64, pte: u64, nr: i64) -> None:
        """Models: ``__set_ptes()``: ``nr`` raw stores of consecutive pfns."""
        pool: PtePool = self.pool
        step: u64 = cython.cast(u64, 1) << self.PFN_PTE_SHIFT
        i: i64
        for i in range(nr):
            pool.store(ptep + i, pte)
            pte += step

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _ptep_get_and_clear(self, mm: MmLike, addr: i64, ptep: i64) -> u64:
        """Models: ``__ptep_get_and_clear()``: atomic xchg with 0."""
        return self.pool.xchg(ptep, 0)

    @cython.cfunc
    def _ptep_set_wrprotect(self, mm: MmLike, addr: i64, ptep: i64) -> None:
        """Models: ``__ptep_set_wrprotect()``: atomic read-modify-write."""
        old: u64 = self.pool.peek(ptep)
        self.pool.cmpxchg(ptep, old, self.pte_wrprotect(old))

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _ptep_test_and_clear_young(self, vma: VmaLike, addr: i64, ptep: i64) -> cython.bint:
        old: u64 = self.pool.peek(ptep)
        if not self.pte_young(old):
            count(self.counters, PTE_READ, 1)
            return False
        self.pool.cmpxchg(ptep, old, self.pte_mkold(old))
        return True

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _ptep_set_access_flags(
        self, vma: VmaLike, addr: i64, ptep: i64, entry: u64, dirty: cython.bint
    ) -> cython.bint:
        """Models: mm/pgtable-generic.c ``ptep_set_access_flags()``."""
        old: u64 = self._ptep_get(ptep)
        changed: cython.bint = not self.pte_same(old, entry)
        if changed:
            self._set_pte(ptep, entry)
            self.flush_tlb_fix_spurious_fault(vma, addr, ptep)
        return changed

    # The private helpers of an arch with contiguous blocks (arm64): declared
    # here so that arch/arm64/mm/contpte.c (``contpte.py``) can call them on
    # any ``Pgtable``; only such an arch implements them.
    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _gather_young_dirty(self, pte: u64, ptep: i64, nr: i64) -> u64:
        """``pte`` with the access/dirty state of ``nr`` entries from ``ptep`` ORed in."""
        raise NotImplementedError(f"arch {self.name} has no contiguous blocks")

    @cython.cfunc
    def _clear_full_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64, full: cython.bint) -> None:
        """Models: arm64 ``__clear_full_ptes()``."""
        raise NotImplementedError(f"arch {self.name} has no contiguous blocks")

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _get_and_clear_full_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64, full: cython.bint) -> u64:
        """Models: arm64 ``__get_and_clear_full_ptes()``."""
        raise NotImplementedError(f"arch {self.name} has no contiguous blocks")

    @cython.cfunc
    def _wrprotect_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64) -> None:
        """Models: arm64 ``__wrprotect_ptes()``."""
        raise NotImplementedError(f"arch {self.name} has no contiguous blocks")

    @cython.cfunc
    def _clear_young_dirty_ptes(self, vma: VmaLike, addr: i64, ptep: i64, nr: i64, flags: i64) -> None:
        """Models: arm64 ``__clear_young_dirty_ptes()``."""
        raise NotImplementedError(f"arch {self.name} has no contiguous blocks")

    @cython.cfunc
    def _ptep_set_access_flags_block(self, vma: VmaLike, ptep: i64, nr: i64, entry: u64) -> None:
        """``nr`` x ``__ptep_set_access_flags(entry, dirty=0)`` (arm64)."""
        raise NotImplementedError(f"arch {self.name} has no contiguous blocks")

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_mkcont(self, pte: u64) -> u64:
        """Set the contiguous hint (archs with contiguous blocks)."""
        raise NotImplementedError(f"arch {self.name} has no contiguous blocks")

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_valid_cont(self, pte: u64) -> cython.bint:
        """Valid and contiguous (false where the arch has no contiguous hint)."""
        return False

    # ------------------------------------------------------------------
    # Public API (include/linux/pgtable.h generic fallbacks).
    # ------------------------------------------------------------------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_get(self, ptep: i64) -> u64:
        """Models: ``ptep_get()``."""
        return self._ptep_get(ptep)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_get_lockless(self, ptep: i64) -> u64:
        """Models: ``ptep_get_lockless()``."""
        return self.ptep_get(ptep)

    @cython.ccall
    def set_ptes(self, mm: MmLike, addr: i64, ptep: i64, pte: u64, nr: i64) -> None:
        """Map ``nr`` consecutive pages of one folio.

        Models: include/linux/pgtable.h ``set_ptes()``.

        Context: PTL held; all ``nr`` entries none before; one folio; one PMD.
        """
        self._set_ptes(mm, addr, ptep, pte, nr)

    @cython.ccall
    def set_pte_at(self, mm: MmLike, addr: i64, ptep: i64, pte: u64) -> None:
        """Models: ``set_pte_at()`` = ``set_ptes(nr=1)``."""
        self.set_ptes(mm, addr, ptep, pte, 1)

    @cython.ccall
    def pte_clear(self, mm: MmLike, addr: i64, ptep: i64) -> None:
        self.ptep_get_and_clear(mm, addr, ptep)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_get_and_clear(self, mm: MmLike, addr: i64, ptep: i64) -> u64:
        """Models: ``ptep_get_and_clear()``."""
        return self._ptep_get_and_clear(mm, addr, ptep)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_get_and_clear_full(self, mm: MmLike, addr: i64, ptep: i64, full: cython.bint) -> u64:
        return self.ptep_get_and_clear(mm, addr, ptep)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def get_and_clear_full_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64, full: cython.bint) -> u64:
        """Clear ``nr`` PTEs; return the first with dirty/young ORed over all.

        Models: include/linux/pgtable.h ``get_and_clear_full_ptes()``.
        """
        pte: u64 = self.ptep_get_and_clear_full(mm, addr, ptep, full)
        t: u64
        i: i64
        for i in range(1, nr):
            t = self.ptep_get_and_clear_full(mm, addr + i * self.PAGE_SIZE, ptep + i, full)
            if self.pte_dirty(t):
                pte = self.pte_mkdirty(pte)
            if self.pte_young(t):
                pte = self.pte_mkyoung(pte)
        return pte

    @cython.ccall
    def clear_full_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64, full: cython.bint) -> None:
        """Models: include/linux/pgtable.h ``clear_full_ptes()``."""
        i: i64
        for i in range(nr):
            self.ptep_get_and_clear_full(mm, addr + i * self.PAGE_SIZE, ptep + i, full)

    @cython.ccall
    def ptep_set_wrprotect(self, mm: MmLike, addr: i64, ptep: i64) -> None:
        self._ptep_set_wrprotect(mm, addr, ptep)

    @cython.ccall
    def wrprotect_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64) -> None:
        """Write-protect ``nr`` PTEs of one folio.

        Models: include/linux/pgtable.h ``wrprotect_ptes()``.
        """
        i: i64
        for i in range(nr):
            self.ptep_set_wrprotect(mm, addr + i * self.PAGE_SIZE, ptep + i)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_test_and_clear_young(self, vma: VmaLike, addr: i64, ptep: i64) -> cython.bint:
        return self._ptep_test_and_clear_young(vma, addr, ptep)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_clear_flush_young(self, vma: VmaLike, addr: i64, ptep: i64) -> cython.bint:
        """Models: mm/pgtable-generic.c ``ptep_clear_flush_young()``."""
        young: cython.bint = self.ptep_test_and_clear_young(vma, addr, ptep)
        if young:
            self.flush_tlb_page(vma, addr)
        return young

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def clear_flush_young_ptes(self, vma: VmaLike, addr: i64, ptep: i64, nr: i64) -> cython.bint:
        """Make ``nr`` PTEs of one folio old, flushing each that was young; True if any was.

        Models: include/linux/pgtable.h ``clear_flush_young_ptes()`` (v7.0+):
        a loop over ``ptep_clear_flush_young()``.  Called by
        ``folio_referenced_one()`` with ``young_ptes_batch``.

        Context: PTL held; consecutive pages of one folio, one PMD.
        """
        young: cython.bint = False
        i: i64
        for i in range(nr):
            if self.ptep_clear_flush_young(vma, addr + i * self.PAGE_SIZE, ptep + i):
                young = True
        return young

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_set_access_flags(
        self, vma: VmaLike, addr: i64, ptep: i64, entry: u64, dirty: cython.bint
    ) -> cython.bint:
        """Make a PTE more permissive (fault fix-up); True if it changed."""
        return self._ptep_set_access_flags(vma, addr, ptep, entry, dirty)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_clear_flush(self, vma: VmaLike, addr: i64, ptep: i64) -> u64:
        """Models: mm/pgtable-generic.c ``ptep_clear_flush()``: the flush only
        if a TLB may hold the entry (``pte_accessible()``)."""
        mm: MmLike = vma.vm_mm
        pte: u64 = self.ptep_get_and_clear(mm, addr, ptep)
        if self.pte_accessible(mm, pte):
            self.flush_tlb_page(vma, addr)
        return pte

    @cython.ccall
    def clear_young_dirty_ptes(self, vma: VmaLike, addr: i64, ptep: i64, nr: i64, flags: i64) -> None:
        """Models: include/linux/pgtable.h ``clear_young_dirty_ptes()``."""
        i: i64
        a: i64
        pte: u64
        for i in range(nr):
            a = addr + i * self.PAGE_SIZE
            if flags == CYDP_CLEAR_YOUNG:
                self.ptep_test_and_clear_young(vma, a, ptep + i)
            else:
                pte = self.ptep_get_and_clear(vma.vm_mm, a, ptep + i)
                if flags & CYDP_CLEAR_YOUNG:
                    pte = self.pte_mkold(pte)
                if flags & CYDP_CLEAR_DIRTY:
                    pte = self.pte_mkclean(pte)
                self.set_pte_at(vma.vm_mm, a, ptep + i, pte)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_batch_hint(self, ptep: i64, pte: u64) -> i64:
        """Models: ``pte_batch_hint()``: 1 (no contiguous hint)."""
        return 1

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def get_and_clear_ptes(self, mm: MmLike, addr: i64, ptep: i64, nr: i64) -> u64:
        """Models: include/linux/pgtable.h ``get_and_clear_ptes()`` (v6.17) = ``get_and_clear_full_ptes(full=0)``."""
        return self.get_and_clear_full_ptes(mm, addr, ptep, nr, False)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def ptep_modify_prot_start(self, vma: VmaLike, addr: i64, ptep: i64) -> u64:
        """Models: ``ptep_modify_prot_start()`` (mprotect, per PTE in v6.12)."""
        return self.ptep_get_and_clear(vma.vm_mm, addr, ptep)

    @cython.ccall
    def ptep_modify_prot_commit(self, vma: VmaLike, addr: i64, ptep: i64, old_pte: u64, pte: u64) -> None:
        """Models: ``ptep_modify_prot_commit()`` = ``set_pte_at``."""
        self.set_pte_at(vma.vm_mm, addr, ptep, pte)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def modify_prot_start_ptes(self, vma: VmaLike, addr: i64, ptep: i64, nr: i64) -> u64:
        """Start a protection change of ``nr`` PTEs of one folio; the first, with A/D of all ORed in.

        Models: include/linux/pgtable.h ``modify_prot_start_ptes()`` (v6.17,
        the fallback): a loop of ``ptep_modify_prot_start()``.

        Context: PTL held; consecutive pages of one folio, equal bits but
        young/dirty; one PMD.
        """
        pte: u64 = self.ptep_modify_prot_start(vma, addr, ptep)
        tmp: u64
        i: i64
        for i in range(1, nr):
            tmp = self.ptep_modify_prot_start(vma, addr + i * self.PAGE_SIZE, ptep + i)
            if self.pte_dirty(tmp):
                pte = self.pte_mkdirty(pte)
            if self.pte_young(tmp):
                pte = self.pte_mkyoung(pte)
        return pte

    @cython.ccall
    def modify_prot_commit_ptes(
        self, vma: VmaLike, addr: i64, ptep: i64, old_pte: u64, pte: u64, nr: i64
    ) -> None:
        """Commit ``pte`` (pfn advancing) to ``nr`` PTEs started by ``modify_prot_start_ptes()``.

        Models: include/linux/pgtable.h ``modify_prot_commit_ptes()`` (v6.17,
        the fallback): a loop of ``ptep_modify_prot_commit()``.

        Context: PTL held; one folio; one PMD.
        """
        i: i64
        for i in range(nr):
            self.ptep_modify_prot_commit(vma, addr + i * self.PAGE_SIZE, ptep + i, old_pte, pte)
            # Advance the pfn only, the same prot.
            old_pte = self.pte_next_pfn(old_pte)
            pte = self.pte_next_pfn(pte)

    # -- page-table pages (asm-generic/pgalloc.h, asm/pgalloc.h, asm-generic/tlb.h)
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_alloc_one(self, mm: MmLike, pmd_index: i64) -> i64:
        """Allocate a zeroed PTE table; its ``pgtable_t`` (the pool slot).

        Models: include/asm-generic/pgalloc.h ``pte_alloc_one()``.  The
        model's pool records which level-2 index a table is for, so the
        index is passed here rather than at ``pmd_populate``.
        """
        return self.pool.slot_alloc(mm.space.asid, pmd_index)

    @cython.ccall
    def pmd_populate(self, mm: MmLike, pmd_index: i64, pgtable: i64) -> None:
        """Point the PMD at PTE table ``pgtable``.

        Models: arch/arm64/include/asm/pgalloc.h ``pmd_populate()``: the
        table descriptor overwrites whatever the entry held (after a THP
        split, the invalidated block descriptor).

        Context: the PMD lock (``pmd_install``) or the split's PMD lock held.
        """
        space: AddressSpace = mm.space
        if space.pmd_peek(pmd_index):
            space.pmd_store(pmd_index, 0)
        space.hook_table(pmd_index, pgtable)

    @cython.ccall
    def pmd_clear(self, mm: MmLike, pmd_index: i64) -> None:
        """Models: ``pmd_clear()``: the PMD entry becomes none (a table or a block)."""
        space: AddressSpace = mm.space
        if space.unhook_table(pmd_index) < 0 and space.pmd_peek(pmd_index):
            space.pmd_store(pmd_index, 0)

    @cython.ccall
    def pte_free_tlb(self, tlb: GatherLike, pgtable: i64, addr: i64) -> None:
        """Free a PTE table unhooked by ``pmd_clear``; the gather flushes the walk caches.

        Models: ``__pte_free_tlb()``, the arch half of include/asm-generic/tlb.h
        ``pte_free_tlb()`` (whose generic half, the flush range and
        ``freed_tables``, is ``MmuGather.pte_free_tlb``).  The model frees at
        once: nothing walks a table no PMD points to (arm64 frees through RCU).
        """
        tlb.freed_tables = True
        self.pool.slot_free(pgtable)

    @cython.ccall
    def pte_free(self, mm: MmLike, pgtable: i64) -> None:
        """Free a PTE table no PMD points to any more, at once (no gather).

        Models: include/asm-generic/pgalloc.h ``pte_free()``.  khugepaged's
        PMD collapse takes the table out with ``pmdp_collapse_flush()``; the
        kernel deposits it for a later split of the new PMD
        (``pgtable_trans_huge_deposit``), the model frees it (its split
        allocates a table).
        """
        self.pool.slot_free(pgtable)

    # -- the page allocator's arch hook (include/linux/gfp.h) ----------------
    @cython.ccall
    def arch_free_page(self, page: i64, order: i64) -> None:
        """The frames of ``page`` (``1 << order``) go back to the allocator.

        Models: ``arch_free_page()``, called by ``free_pages_prepare()``
        (a no-op on arm64 and x86).  The model's hardware checks here that
        no CPU still reaches the frames through its TLB (the rule
        ``freed-frame-in-tlb``: pages freed before the TLB flush that covers
        their unmapped PTEs).
        """
        if self.hw.checker is not None:
            self.hw.checker.on_frames_free(page, cython.cast(i64, 1) << order)

    # -- page contents (include/linux/highmem.h, asm/page.h) ----------------
    @cython.ccall
    def clear_highpage(self, page: i64) -> None:
        """Zero a page.  Models: include/linux/highmem.h ``clear_highpage()`` -> ``clear_page()``."""
        self.hw.memory.fill(page, 1, 0)

    @cython.ccall
    def copy_user_highpage(self, to: i64, from_: i64, vaddr: i64, vma: VmaLike) -> None:
        """Copy a user page (CoW).

        Models: include/linux/highmem.h ``copy_user_highpage()`` (arm64:
        arch/arm64/mm/copypage.c, ``copy_highpage()`` + ``flush_dcache_page()``).
        ``to``, ``from_``: ``struct page *`` (pfns).
        """
        self.hw.memory.copy(to, from_, 1)

    @cython.ccall
    def memcpy_to_page(self, page: i64, from_: u64) -> None:
        """Fill a page from a buffer (a file read).

        Models: include/linux/highmem.h ``memcpy_to_page()`` with offset 0
        and a whole page: a model page holds one u64, ``from_``.
        """
        self.hw.memory.fill(page, 1, from_)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def memcpy_from_page(self, page: i64) -> u64:
        """Models: include/linux/highmem.h ``memcpy_from_page()`` of a whole page: its u64."""
        return cython.cast(u64, self.hw.memory.v[page])

    # -- PMD-level ---------------------------------------------------------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmdp_get(self, mm: MmLike, pmd_index: i64) -> u64:
        return mm.space.pmd_load(pmd_index)

    @cython.ccall
    def set_pmd_at(self, mm: MmLike, addr: i64, pmd_index: i64, pmd: u64) -> None:
        mm.space.pmd_store(pmd_index, pmd)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmdp_huge_get_and_clear(self, mm: MmLike, addr: i64, pmd_index: i64) -> u64:
        space: AddressSpace = mm.space
        old: u64 = space.pmd_load(pmd_index)
        space.pmd_store(pmd_index, 0)
        return old

    @cython.ccall
    def pmdp_set_wrprotect(self, mm: MmLike, addr: i64, pmd_index: i64) -> None:
        space: AddressSpace = mm.space
        old: u64 = space.pmd_load(pmd_index)
        space.pmd_store(pmd_index, self.pte_pmd(self.pte_wrprotect(self.pmd_pte(old))))

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmdp_invalidate(self, vma: VmaLike, addr: i64, pmd_index: i64) -> u64:
        """Models: ``pmdp_invalidate()``: make the block invalid, flush it."""
        space: AddressSpace = vma.vm_mm.space
        old: u64 = space.pmd_load(pmd_index)
        space.pmd_store(pmd_index, self.pmd_mkinvalid(old))
        start: i64 = pmd_index << self.PMD_SHIFT
        self.flush_pmd_tlb_range(vma, start, start + self.PMD_SIZE)
        return old

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmdp_collapse_flush(self, vma: VmaLike, address: i64, pmd_index: i64) -> i64:
        """Take the PTE table out of the PMD and flush the PMD's range; the table (``pgtable_t``).

        Models: mm/pgtable-generic.c ``pmdp_collapse_flush()`` (arm64 and
        x86 use the generic one): ``pmdp_huge_get_and_clear()`` of a PMD
        pointing to a table, then ``flush_tlb_range()`` over the whole PMD,
        so no CPU keeps a translation from the table's PTEs before the
        collapsed mapping replaces them.  The table keeps its entries (the
        caller reads and clears them) and can be hooked back with
        ``pmd_populate()``.  -1 if the PMD holds no table.

        Context: mmap_lock held for write; the PMD lock held.
        """
        space: AddressSpace = vma.vm_mm.space
        pgtable: i64 = space.unhook_table(pmd_index)
        if not self.bug("khugepaged_collapse_no_flush"):
            self.flush_tlb_range(vma, address, address + self.PMD_SIZE)
        return pgtable

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmdp_clear_flush_young(self, vma: VmaLike, addr: i64, pmd_index: i64) -> cython.bint:
        """Make a huge PMD old, flushing its range if it was young; True if it was.

        Models: mm/pgtable-generic.c ``pmdp_clear_flush_young()`` ->
        ``pmdp_test_and_clear_young()`` (arm64: the Access flag cleared in
        place, a change that needs no break-before-make), then
        ``flush_pmd_tlb_range()``.  Called by ``folio_referenced_one()``
        for a PMD-mapped THP.

        Context: the PMD lock held; ``pmd_index`` maps a huge PMD.
        """
        space: AddressSpace = vma.vm_mm.space
        old: u64 = space.pmd_load(pmd_index)
        pte: u64 = self.pmd_pte(old)
        if not self.pte_young(pte):
            return False
        space.pmd_store(pmd_index, self.pte_pmd(self.pte_mkold(pte)))
        start: i64 = pmd_index << self.PMD_SHIFT
        self.flush_pmd_tlb_range(vma, start, start + self.PMD_SIZE)
        return True

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmdp_set_access_flags(
        self, vma: VmaLike, addr: i64, pmd_index: i64, entry: u64, dirty: cython.bint
    ) -> cython.bint:
        space: AddressSpace = vma.vm_mm.space
        old: u64 = space.pmd_load(pmd_index)
        if old == entry:
            return False
        space.pmd_store(pmd_index, entry)
        start: i64 = pmd_index << self.PMD_SHIFT
        self.flush_pmd_tlb_range(vma, start, start + self.PMD_SIZE)
        return True

    # ------------------------------------------------------------------
    # TLB maintenance (arch-specific).
    # ------------------------------------------------------------------
    @cython.ccall
    def flush_tlb_mm(self, mm: MmLike) -> None:
        raise NotImplementedError

    @cython.ccall
    def flush_tlb_range(self, vma: VmaLike, start: i64, end: i64) -> None:
        raise NotImplementedError

    @cython.ccall
    def flush_tlb_page(self, vma: VmaLike, addr: i64) -> None:
        self.flush_tlb_range(vma, addr, addr + self.PAGE_SIZE)

    @cython.ccall
    def flush_pmd_tlb_range(self, vma: VmaLike, start: i64, end: i64) -> None:
        self.flush_tlb_range(vma, start, end)

    @cython.ccall
    def flush_tlb_fix_spurious_fault(self, vma: VmaLike, addr: i64, ptep: i64) -> None:
        """Models: include/linux/pgtable.h ``flush_tlb_fix_spurious_fault()``: ``flush_tlb_page()``."""
        self.flush_tlb_page(vma, addr)

    @cython.ccall
    def flush_tlb_fix_spurious_fault_pmd(self, vma: VmaLike, addr: i64, pmd_index: i64) -> None:
        """Models: include/linux/pgtable.h ``flush_tlb_fix_spurious_fault_pmd()`` (v6.19): nothing."""

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pte_needs_flush(self, oldpte: u64, newpte: u64) -> cython.bint:
        """Models: include/asm-generic/tlb.h ``pte_needs_flush()``: always."""
        return True

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def huge_pmd_needs_flush(self, oldpmd: u64, newpmd: u64) -> cython.bint:
        """Models: include/asm-generic/tlb.h ``huge_pmd_needs_flush()``: always."""
        return True

    @cython.ccall
    def tlb_flush(self, tlb: GatherLike) -> None:
        """Models: asm-generic/tlb.h ``tlb_flush()`` (the mmu_gather flush)."""
        if tlb.fullmm or tlb.need_flush_all:
            self.flush_tlb_mm(tlb.mm)
        elif tlb.end > tlb.start:
            self.flush_tlb_range(VmaLike(tlb.mm, tlb.start, tlb.end, 0), tlb.start, tlb.end)

    @cython.ccall
    def update_mmu_cache_range(self, vma: VmaLike, addr: i64, ptep: i64, nr: i64) -> None:
        """Models: ``update_mmu_cache_range()``: nothing to do on these arches."""

    @cython.ccall
    def ptl_release(self, mm: MmLike, ptep: i64) -> None:
        """Model hook: core-mm is about to drop the PTL of ``ptep``'s table.

        The hardware may now observe the table freely, so the rule checker
        verifies that every contiguous set changed in it is consistent.
        ``ptep`` may be any entry of the table (or -1: nothing to check).
        """
        if self.hw.checker is not None and ptep >= 0:
            self.hw.checker.ptl_release(mm.space, ptep >> self.pool.shift)

    # -- helpers for subclasses ------------------------------------------
    def VM_WARN_ON(
        self, cond: bool, what: str, addr: int | None = None, ptes: list[int] | None = None
    ) -> None:
        """A kernel ``VM_WARN_ON``: raise the model's invariant error."""
        if cond:
            raise KernelBug("VM_WARN_ON", what, addr, ptes)


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(CYDP_CLEAR_YOUNG=CYDP_CLEAR_YOUNG, CYDP_CLEAR_DIRTY=CYDP_CLEAR_DIRTY)
