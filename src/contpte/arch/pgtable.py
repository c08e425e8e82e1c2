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

PTE values are plain Python ``int`` (a ``pte_t``); a PTE pointer is a
``PtePtr`` (a ``pte_t *``: a level-3 table and an index) that supports
``ptep + n`` as in C.  A PMD pointer is the pair (mm, level-2 index).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import KernelBug, ModelUsageError
from ..hw.tables import AddressSpace, PteTable

if TYPE_CHECKING:
    pass

__all__ = [
    "PtePtr",
    "MmLike",
    "VmaLike",
    "GatherLike",
    "Pgtable",
    "CYDP_CLEAR_YOUNG",
    "CYDP_CLEAR_DIRTY",
    "batch_positions",
    "PteBatches",
]

CYDP_CLEAR_YOUNG = 0x01
CYDP_CLEAR_DIRTY = 0x02


def batch_positions(starts: np.ndarray, nrs: np.ndarray) -> np.ndarray:
    """Every position of the batches ``(starts[i], nrs[i])``, in order (int64)."""
    total = int(nrs.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.cumsum(nrs) - nrs
    return np.repeat(starts.astype(np.int64) - first, nrs) + np.arange(total, dtype=np.int64)


class PteBatches:
    """Batches ``(starts[i], nrs[i])`` over ``n`` stacked entries, with per-entry views.

    The per-entry arrays (which batch an entry is in, its offset in it)
    are computed once and shared by the bulk forms that need them.
    """

    def __init__(self, starts: np.ndarray | None, nrs: np.ndarray | None, n: int, stride: int = 0) -> None:
        self.n = n
        #: Nonzero: every batch has ``stride`` entries and starts at a
        #: multiple of ``stride`` (a bulk form may then work on rows of it).
        self.stride = stride
        if starts is None or nrs is None:  # uniform(): made when first asked for
            assert stride
            self._starts = self._nrs = None
            self._len = n // stride
        else:
            self._starts = starts.astype(np.int64, copy=False)
            self._nrs = nrs.astype(np.int64, copy=False)
            self._len = len(self._starts)
        self.total = self._len * stride if stride else int(self.nrs.sum())
        self._bid: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._offset: np.ndarray | None = None

    @classmethod
    def uniform(cls, n: int, nr: int) -> "PteBatches":
        """Batches of ``nr`` entries tiling all ``n`` entries."""
        return cls(None, None, n, stride=nr)

    @property
    def starts(self) -> np.ndarray:
        if self._starts is None:
            self._starts = np.arange(0, self.n, self.stride, dtype=np.int64)
        return self._starts

    @property
    def nrs(self) -> np.ndarray:
        if self._nrs is None:
            self._nrs = np.full(self._len, self.stride, dtype=np.int64)
        return self._nrs

    def __len__(self) -> int:
        return self._len

    def subset(self, sel: np.ndarray) -> "PteBatches":
        return PteBatches(self.starts[sel], self.nrs[sel], self.n, self.stride)

    def rows(self) -> np.ndarray:
        """With a stride: which rows of ``stride`` entries are batches (bool)."""
        assert self.stride
        sel = np.zeros(self.n // self.stride, dtype=bool)
        sel[self.starts // self.stride] = True
        return sel

    def mask(self) -> np.ndarray:
        """Entries in a batch."""
        if self._mask is None:
            if self.total == self.n:
                self._mask = np.ones(self.n, dtype=bool)
            elif self.stride:
                self._mask = np.repeat(self.rows(), self.stride)
            else:
                d = np.zeros(self.n + 1, dtype=np.int32)
                d[self.starts] += 1
                d[self.starts + self.nrs] -= 1
                self._mask = np.cumsum(d[:-1]) > 0
        return self._mask

    def bid(self) -> np.ndarray:
        """The batch of each entry (meaningful where ``mask()``)."""
        if self._bid is None and len(self.starts) == self.n:
            self._bid = np.arange(self.n, dtype=np.int64)  # every entry its own batch
        if self._bid is None:
            mark = np.zeros(self.n, dtype=np.int32)
            mark[self.starts] = 1
            self._bid = np.cumsum(mark, dtype=np.int64) - 1
            self._bid[self._bid < 0] = 0
        return self._bid

    def offset(self) -> np.ndarray:
        """Each entry's offset in its batch (meaningful where ``mask()``)."""
        if self._offset is None:
            if not len(self.starts) or len(self.starts) == self.n:
                self._offset = np.zeros(self.n, dtype=np.int64)
            else:
                self._offset = np.arange(self.n, dtype=np.int64) - self.starts[self.bid()]
        return self._offset


class PtePtr:
    """A ``pte_t *``: entry ``idx`` of a level-3 table."""

    __slots__ = ("table", "idx")

    def __init__(self, table: PteTable, idx: int) -> None:
        self.table = table
        self.idx = idx

    def __add__(self, n: int) -> "PtePtr":
        return PtePtr(self.table, self.idx + n)

    def __sub__(self, other: "PtePtr") -> int:
        return self.idx - other.idx

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PtePtr) and other.table is self.table and other.idx == self.idx

    def __hash__(self) -> int:
        return hash((id(self.table), self.idx))

    def __repr__(self) -> str:
        return f"PtePtr(va={self.table.va(self.idx):#x})"


class MmLike(Protocol):
    """What the arch layer needs of a ``struct mm_struct``."""

    space: AddressSpace
    cpumask: set[int]


class VmaLike(Protocol):
    """What the arch layer needs of a ``struct vm_area_struct``."""

    vm_mm: Any
    vm_start: int
    vm_end: int
    vm_flags: int


class GatherLike(Protocol):
    """What the arch's ``tlb_flush`` needs of a ``struct mmu_gather``."""

    mm: Any
    start: int
    end: int
    fullmm: bool
    need_flush_all: bool
    freed_tables: bool
    cleared_ptes: bool
    cleared_pmds: bool


class Pgtable:
    """A pgtable backend: PTE format, private primitives, public API, TLB flush.

    Subclasses set the geometry (``page_shift``), implement the format and
    the primitives, and override the public functions their kernel
    overrides.
    """

    name = "abstract"
    #: Options this backend understands (Machine passes only these).
    OPTIONS: dict[str, Any] = {}

    def __init__(self, hw: Any, page_shift: int = 12, **options: Any) -> None:
        unknown = set(options) - set(self.OPTIONS)
        if unknown:
            raise ModelUsageError(f"arch {self.name}: unknown option(s) {', '.join(sorted(unknown))}")
        self.options = {**self.OPTIONS, **options}
        self.hw = hw
        self.counters = hw.counters
        self.page_shift = page_shift
        self.PAGE_SHIFT = page_shift
        self.PAGE_SIZE = 1 << page_shift
        self.PTRS_PER_PTE = 1 << (page_shift - 3)
        self.PMD_SHIFT = page_shift + (page_shift - 3)
        self.PMD_SIZE = 1 << self.PMD_SHIFT
        self.HPAGE_PMD_ORDER = self.PMD_SHIFT - page_shift
        self.HPAGE_PMD_NR = 1 << self.HPAGE_PMD_ORDER
        #: Entries in a contiguous block (1 where the arch has none).
        self.CONT_PTES = 1
        #: Model hook the Machine installs: pfn -> (first pfn, nr pages) of
        #: the folio holding it (the kernel's ``page_folio(pfn_to_page())``).
        #: An arch that must check folio coverage (arm64 fold) asks it via
        #: ``folio_range_of_pfn``; core-mm passes nothing new to set_ptes().
        self.folio_lookup: Callable[[int], tuple[int, int]] | None = None
        #: Bug catalog entries turned on (contpte.bugs; the Machine sets it).
        self.bugs: frozenset[str] = frozenset()

    def bug(self, name: str) -> bool:
        """Is bug-catalog entry ``name`` re-introduced on this machine (contpte.bugs)?"""
        return name in self.bugs

    def folio_range_of_pfn(self, pfn: int) -> tuple[int, int]:
        """``(first_pfn, nr_pages)`` of the folio containing ``pfn`` (via ``folio_lookup``)."""
        lookup = self.folio_lookup
        if lookup is None:
            raise ModelUsageError(
                f"arch {self.name}: folio_lookup hook not installed (the Machine installs it)"
            )
        return lookup(pfn)

    # ------------------------------------------------------------------
    # PTE format: bit helpers (scalar ints).  Subclasses implement.
    # ------------------------------------------------------------------
    PFN_PTE_SHIFT = 12

    def pte_none(self, pte: int) -> bool:
        return pte == 0

    def pte_present(self, pte: int) -> bool:
        raise NotImplementedError

    def pte_pfn(self, pte: int) -> int:
        raise NotImplementedError

    def pfn_pte(self, pfn: int, prot: int) -> int:
        raise NotImplementedError

    def pte_pgprot(self, pte: int) -> int:
        """Every bit except the output address."""
        raise NotImplementedError

    def pte_advance_pfn(self, pte: int, nr: int) -> int:
        return pte + (nr << self.PFN_PTE_SHIFT)

    def pte_next_pfn(self, pte: int) -> int:
        return self.pte_advance_pfn(pte, 1)

    def pte_write(self, pte: int) -> bool:
        raise NotImplementedError

    def pte_dirty(self, pte: int) -> bool:
        raise NotImplementedError

    def pte_young(self, pte: int) -> bool:
        raise NotImplementedError

    def pte_special(self, pte: int) -> bool:
        raise NotImplementedError

    def pte_mkspecial(self, pte: int) -> int:
        raise NotImplementedError

    def pte_mkwrite(self, pte: int) -> int:
        """``pte_mkwrite(pte, vma)``/``pte_mkwrite_novma``."""
        raise NotImplementedError

    def pte_wrprotect(self, pte: int) -> int:
        raise NotImplementedError

    def pte_mkclean(self, pte: int) -> int:
        raise NotImplementedError

    def pte_mkdirty(self, pte: int) -> int:
        raise NotImplementedError

    def pte_mkold(self, pte: int) -> int:
        raise NotImplementedError

    def pte_mkyoung(self, pte: int) -> int:
        raise NotImplementedError

    def pte_same(self, a: int, b: int) -> bool:
        return a == b

    def pte_modify(self, pte: int, newprot: int) -> int:
        """Change the permission bits of ``pte`` to ``newprot`` (keeps pfn, A/D)."""
        raise NotImplementedError

    def pte_protnone(self, pte: int) -> bool:
        return False

    def pte_uffd_wp(self, pte: int) -> bool:
        return False

    def pte_mkuffd_wp(self, pte: int) -> int:
        return pte

    def pte_clear_uffd_wp(self, pte: int) -> int:
        return pte

    def pte_soft_dirty(self, pte: int) -> bool:
        return False

    def pte_mksoft_dirty(self, pte: int) -> int:
        return pte

    def pte_clear_soft_dirty(self, pte: int) -> int:
        return pte

    def pte_cont(self, pte: int) -> bool:
        """Model-only: does the raw descriptor carry a contiguous hint (pagemap)."""
        return False

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

    def vm_get_page_prot(self, vm_flags: int) -> int:
        """The ``pgprot_t`` for a VMA's flags (protection_map)."""
        raise NotImplementedError

    # PMD (level-2 block) values share the PTE's attribute bits.
    def pte_pmd(self, pte: int) -> int:
        """A huge (block) PMD value with the attributes of ``pte``."""
        raise NotImplementedError

    def pmd_pte(self, pmd: int) -> int:
        """The PTE-format view of a block PMD (for the pte_* helpers)."""
        raise NotImplementedError

    def pmd_mkinvalid(self, pmd: int) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------------
    # Private primitives (kernel: __ptep_get, __set_pte, ...).
    # ------------------------------------------------------------------
    def _ptep_get(self, ptep: PtePtr) -> int:
        """Models: ``__ptep_get()``: one raw load."""
        return ptep.table.load(ptep.idx)

    def _set_pte(self, ptep: PtePtr, pte: int) -> None:
        """Models: ``__set_pte()``: one raw store."""
        ptep.table.store(ptep.idx, pte)

    def _set_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, pte: int, nr: int) -> None:
        """Models: ``__set_ptes()``: ``nr`` raw stores of consecutive pfns.

        Vectorised: one array store, counted as ``nr`` writes.
        """
        if nr == 1:
            self._set_pte(ptep, pte)
            return
        step = np.uint64(1 << self.PFN_PTE_SHIFT)
        vals = np.uint64(pte) + np.arange(nr, dtype=np.uint64) * step
        ptep.table.store_many(ptep.idx, vals)

    def _ptep_get_and_clear(self, mm: MmLike, addr: int, ptep: PtePtr) -> int:
        """Models: ``__ptep_get_and_clear()``: atomic xchg with 0."""
        return ptep.table.xchg(ptep.idx, 0)

    def _ptep_set_wrprotect(self, mm: MmLike, addr: int, ptep: PtePtr) -> None:
        """Models: ``__ptep_set_wrprotect()``: atomic read-modify-write."""
        old = ptep.table.entries[ptep.idx]
        new = self.pte_wrprotect(int(old))
        ptep.table.cmpxchg(ptep.idx, int(old), new)

    def _ptep_test_and_clear_young(self, vma: VmaLike, addr: int, ptep: PtePtr) -> bool:
        old = int(ptep.table.entries[ptep.idx])
        if not self.pte_young(old):
            self.counters.add("pte.read")
            return False
        ptep.table.cmpxchg(ptep.idx, old, self.pte_mkold(old))
        return True

    def _ptep_set_access_flags(self, vma: VmaLike, addr: int, ptep: PtePtr, entry: int, dirty: bool) -> bool:
        """Models: mm/pgtable-generic.c ``ptep_set_access_flags()``."""
        old = self._ptep_get(ptep)
        changed = not self.pte_same(old, entry)
        if changed:
            self._set_pte(ptep, entry)
            self.flush_tlb_fix_spurious_fault(vma, addr, ptep)
        return changed

    # ------------------------------------------------------------------
    # Public API (include/linux/pgtable.h generic fallbacks).
    # ------------------------------------------------------------------
    def ptep_get(self, ptep: PtePtr) -> int:
        """Models: ``ptep_get()``."""
        return self._ptep_get(ptep)

    def ptep_get_lockless(self, ptep: PtePtr) -> int:
        """Models: ``ptep_get_lockless()``."""
        return self.ptep_get(ptep)

    def set_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, pte: int, nr: int) -> None:
        """Map ``nr`` consecutive pages of one folio.

        Models: include/linux/pgtable.h ``set_ptes()``.

        Context: PTL held; all ``nr`` entries none before; one folio; one PMD.
        """
        self._set_ptes(mm, addr, ptep, pte, nr)

    def set_pte_at(self, mm: MmLike, addr: int, ptep: PtePtr, pte: int) -> None:
        """Models: ``set_pte_at()`` = ``set_ptes(nr=1)``."""
        self.set_ptes(mm, addr, ptep, pte, 1)

    def pte_clear(self, mm: MmLike, addr: int, ptep: PtePtr) -> None:
        self.ptep_get_and_clear(mm, addr, ptep)

    def ptep_get_and_clear(self, mm: MmLike, addr: int, ptep: PtePtr) -> int:
        """Models: ``ptep_get_and_clear()``."""
        return self._ptep_get_and_clear(mm, addr, ptep)

    def ptep_get_and_clear_full(self, mm: MmLike, addr: int, ptep: PtePtr, full: bool) -> int:
        return self.ptep_get_and_clear(mm, addr, ptep)

    def get_and_clear_full_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, nr: int, full: bool) -> int:
        """Clear ``nr`` PTEs; return the first with dirty/young ORed over all.

        Models: include/linux/pgtable.h ``get_and_clear_full_ptes()``.
        """
        pte = self.ptep_get_and_clear_full(mm, addr, ptep, full)
        for i in range(1, nr):
            t = self.ptep_get_and_clear_full(mm, addr + i * self.PAGE_SIZE, ptep + i, full)
            if self.pte_dirty(t):
                pte = self.pte_mkdirty(pte)
            if self.pte_young(t):
                pte = self.pte_mkyoung(pte)
        return pte

    def clear_full_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, nr: int, full: bool) -> None:
        """Models: include/linux/pgtable.h ``clear_full_ptes()``."""
        for i in range(nr):
            self.ptep_get_and_clear_full(mm, addr + i * self.PAGE_SIZE, ptep + i, full)

    def ptep_set_wrprotect(self, mm: MmLike, addr: int, ptep: PtePtr) -> None:
        self._ptep_set_wrprotect(mm, addr, ptep)

    def wrprotect_ptes(self, mm: MmLike, addr: int, ptep: PtePtr, nr: int) -> None:
        """Write-protect ``nr`` PTEs of one folio.

        Models: include/linux/pgtable.h ``wrprotect_ptes()``.
        """
        for i in range(nr):
            self.ptep_set_wrprotect(mm, addr + i * self.PAGE_SIZE, ptep + i)

    def ptep_test_and_clear_young(self, vma: VmaLike, addr: int, ptep: PtePtr) -> bool:
        return self._ptep_test_and_clear_young(vma, addr, ptep)

    def ptep_clear_flush_young(self, vma: VmaLike, addr: int, ptep: PtePtr) -> bool:
        """Models: mm/pgtable-generic.c ``ptep_clear_flush_young()``."""
        young = self.ptep_test_and_clear_young(vma, addr, ptep)
        if young:
            self.flush_tlb_page(vma, addr)
        return young

    def ptep_set_access_flags(self, vma: VmaLike, addr: int, ptep: PtePtr, entry: int, dirty: bool) -> bool:
        """Make a PTE more permissive (fault fix-up); True if it changed."""
        return self._ptep_set_access_flags(vma, addr, ptep, entry, dirty)

    def ptep_clear_flush(self, vma: VmaLike, addr: int, ptep: PtePtr) -> int:
        """Models: mm/pgtable-generic.c ``ptep_clear_flush()``."""
        pte = self.ptep_get_and_clear(vma.vm_mm, addr, ptep)
        if self.pte_present(pte):
            self.flush_tlb_page(vma, addr)
        return pte

    def clear_young_dirty_ptes(self, vma: VmaLike, addr: int, ptep: PtePtr, nr: int, flags: int) -> None:
        """Models: include/linux/pgtable.h ``clear_young_dirty_ptes()``."""
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

    def pte_batch_hint(self, ptep: PtePtr, pte: int) -> int:
        """Models: ``pte_batch_hint()``: 1 (no contiguous hint)."""
        return 1

    def ptep_modify_prot_start(self, vma: VmaLike, addr: int, ptep: PtePtr) -> int:
        """Models: ``ptep_modify_prot_start()`` (mprotect, per PTE in v6.12)."""
        return self.ptep_get_and_clear(vma.vm_mm, addr, ptep)

    def ptep_modify_prot_commit(self, vma: VmaLike, addr: int, ptep: PtePtr, old_pte: int, pte: int) -> None:
        """Models: ``ptep_modify_prot_commit()`` = ``set_pte_at``."""
        self.set_pte_at(vma.vm_mm, addr, ptep, pte)

    # -- PMD-level ---------------------------------------------------------
    def pmdp_get(self, mm: MmLike, pmd_index: int) -> int:
        return mm.space.pmd_load(pmd_index)

    def set_pmd_at(self, mm: MmLike, addr: int, pmd_index: int, pmd: int) -> None:
        mm.space.pmd_store(pmd_index, pmd)

    def pmdp_huge_get_and_clear(self, mm: MmLike, addr: int, pmd_index: int) -> int:
        old = mm.space.pmd_load(pmd_index)
        mm.space.pmd_store(pmd_index, 0)
        return old

    def pmdp_set_wrprotect(self, mm: MmLike, addr: int, pmd_index: int) -> None:
        old = mm.space.pmd_load(pmd_index)
        mm.space.pmd_store(pmd_index, self.pte_pmd(self.pte_wrprotect(self.pmd_pte(old))))

    def pmdp_invalidate(self, vma: VmaLike, addr: int, pmd_index: int) -> int:
        """Models: ``pmdp_invalidate()``: make the block invalid, flush it."""
        mm = vma.vm_mm
        old = mm.space.pmd_load(pmd_index)
        mm.space.pmd_store(pmd_index, self.pmd_mkinvalid(old))
        start = pmd_index << self.PMD_SHIFT
        self.flush_pmd_tlb_range(vma, start, start + self.PMD_SIZE)
        return int(old)

    def pmdp_set_access_flags(self, vma: VmaLike, addr: int, pmd_index: int, entry: int, dirty: bool) -> bool:
        mm = vma.vm_mm
        old = mm.space.pmd_load(pmd_index)
        if old == entry:
            return False
        mm.space.pmd_store(pmd_index, entry)
        start = pmd_index << self.PMD_SHIFT
        self.flush_pmd_tlb_range(vma, start, start + self.PMD_SIZE)
        return True

    # ------------------------------------------------------------------
    # TLB maintenance (arch-specific).
    # ------------------------------------------------------------------
    def flush_tlb_mm(self, mm: MmLike) -> None:
        raise NotImplementedError

    def flush_tlb_range(self, vma: VmaLike, start: int, end: int) -> None:
        raise NotImplementedError

    def flush_tlb_page(self, vma: VmaLike, addr: int) -> None:
        self.flush_tlb_range(vma, addr, addr + self.PAGE_SIZE)

    def flush_pmd_tlb_range(self, vma: VmaLike, start: int, end: int) -> None:
        self.flush_tlb_range(vma, start, end)

    def flush_tlb_fix_spurious_fault(self, vma: VmaLike, addr: int, ptep: PtePtr | None) -> None:
        self.flush_tlb_page(vma, addr)

    def tlb_flush(self, tlb: GatherLike) -> None:
        """Models: asm-generic/tlb.h ``tlb_flush()`` (the mmu_gather flush)."""
        if tlb.fullmm or tlb.need_flush_all:
            self.flush_tlb_mm(tlb.mm)
        elif tlb.end > tlb.start:
            vma = _GatherVma(tlb.mm, tlb.start, tlb.end)
            self.flush_tlb_range(vma, tlb.start, tlb.end)

    def update_mmu_cache_range(self, vma: VmaLike, addr: int, ptep: PtePtr, nr: int) -> None:
        """Models: ``update_mmu_cache_range()``: nothing to do on these arches."""

    # ------------------------------------------------------------------
    # Bulk forms (model-only): what core-mm's vectorised fast paths call.
    #
    # Each stands for a sequence of calls of the public function it names,
    # one per batch, and must leave exactly the state and count exactly the
    # counters (``pte.*``, ``call.*``) those calls would.  Entries come as a
    # flat array of whole level-3 tables stacked in order (entry ``i`` is
    # index ``i % PTRS_PER_PTE`` of its table); a batch is ``(start, nr)``
    # in that array and never crosses a table.  Where one of the calls would
    # do more than the bulk form represents (an unfold, a fold), the bulk
    # form returns None and changes nothing: the caller takes the
    # kernel-shaped path.  ``BULK`` says whether a backend has them.
    # ------------------------------------------------------------------
    BULK = False

    def pte_pfn_v(self, vals: np.ndarray) -> np.ndarray:
        """Vector ``pte_pfn()`` (int64)."""
        raise NotImplementedError

    def pte_write_v(self, vals: np.ndarray) -> np.ndarray:
        """Vector ``pte_write()``."""
        raise NotImplementedError

    def pte_uffd_wp_v(self, vals: np.ndarray) -> np.ndarray:
        """Vector ``pte_uffd_wp()``."""
        raise NotImplementedError

    def pte_wrprotect_v(self, vals: np.ndarray) -> np.ndarray:
        """Vector ``pte_wrprotect()``."""
        raise NotImplementedError

    def pte_mkwrite_v(self, vals: np.ndarray) -> np.ndarray:
        """Vector ``pte_mkwrite()``."""
        raise NotImplementedError

    def pte_mkold_v(self, vals: np.ndarray) -> np.ndarray:
        """Vector ``pte_mkold()``."""
        raise NotImplementedError

    def pte_clear_soft_dirty_v(self, vals: np.ndarray) -> np.ndarray:
        """Vector ``pte_clear_soft_dirty()``."""
        return vals

    def pte_mkclean_v(self, vals: np.ndarray) -> np.ndarray:
        """Vector ``pte_mkclean()``."""
        raise NotImplementedError

    def bulk_ptep_get(self, raw: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``ptep_get()`` of the entries at ``pos``: (values, loads each call costs, which gather).

        The third array marks the calls that enter the arch's block getter
        (arm64 ``contpte_ptep_get``).  Counts nothing: the caller counts the
        calls it stands for with ``bulk_count_ptep_get``.
        """
        n = len(pos)
        return raw[pos], np.ones(n, dtype=np.int64), np.zeros(n, dtype=bool)

    def bulk_batch_visited(self, raw: np.ndarray, inr: np.ndarray) -> np.ndarray | None:
        """The entries of ``inr`` the ``pte_batch_hint()`` chain lands on.

        A batch walk (``folio_pte_batch``) from the start of each range
        reads an entry, then jumps ``pte_batch_hint()`` entries; the
        entries it jumps over are never read.  None: it lands on every one.
        """
        return None

    def bulk_uniform_reads(self, raw: np.ndarray) -> tuple[int, int, int] | None:
        """How a batch walk reads ``raw`` when every entry is plain and read alike.

        ``(s, loads, gathers)``: from an ``s``-aligned entry the
        ``pte_batch_hint()`` chain lands on every ``s``-th entry (what
        ``bulk_batch_visited`` gives), and ``ptep_get()`` of each costs
        ``loads`` loads and ``gathers`` block-getter calls (what
        ``bulk_ptep_get`` gives).  None when an entry is not plain
        (``bulk_plain_v``) or they are not all read alike.
        """
        return (1, 1, 0) if bool(self.bulk_plain_v(raw).all()) else None

    def bulk_count_ptep_get(self, reads: int, gathers: int) -> None:
        """Count ``ptep_get()`` calls: ``reads`` loads, ``gathers`` block getter entries."""
        self.counters.add("pte.read", reads)

    def bulk_plain_v(self, raw: np.ndarray) -> np.ndarray:
        """Entries a bulk path may take: valid (not PROT_NONE), not special, not uffd-wp."""
        raise NotImplementedError

    def bulk_wrprotect_ptes(
        self, vals: np.ndarray, b: PteBatches
    ) -> tuple[np.ndarray, dict[str, int]] | None:
        """``wrprotect_ptes(mm, addr, ptep, nr)`` of each batch: (new entries, counters)."""
        return None

    def bulk_set_ptes(
        self, b: PteBatches, ptes: np.ndarray, folio_first: np.ndarray, folio_nr: np.ndarray
    ) -> tuple[np.ndarray, dict[str, int]] | None:
        """``set_ptes(mm, addr, ptep, pte, nr)`` of each batch into none entries.

        ``ptes``: each batch's first PTE; ``folio_first``/``folio_nr``: the
        folio of each batch (for arm64's fold attempt).  Returns the new
        entries (zero outside the batches) and the counters.
        """
        return None

    def bulk_clear_full_ptes(self, vals: np.ndarray, b: PteBatches, full: bool) -> dict[str, int] | None:
        """``clear_full_ptes(mm, addr, ptep, nr, full)`` of each batch: the counters.

        The entries of the batches end up zero (the caller stores them).
        """
        return None

    def ptl_release(self, mm: MmLike, table: PteTable | None) -> None:
        """Model hook: core-mm is about to drop the PTL of ``table``.

        The hardware may now observe the table freely, so the rule checker
        verifies that every contiguous set in it is consistent.
        """
        checker = getattr(self.hw, "checker", None)
        if checker is not None and table is not None:
            checker.ptl_release(table)

    def ptl_release_many(self, tables: list[PteTable]) -> None:
        """``ptl_release`` of each of ``tables`` in order (a bulk path's PTL drops)."""
        checker = getattr(self.hw, "checker", None)
        if checker is not None:
            checker.ptl_release_many(tables)

    # -- helpers for subclasses ------------------------------------------
    def VM_WARN_ON(
        self, cond: bool, what: str, addr: int | None = None, ptes: list[int] | None = None
    ) -> None:
        """A kernel ``VM_WARN_ON``: raise the model's invariant error."""
        if cond:
            raise KernelBug("VM_WARN_ON", what, addr, ptes)


class _GatherVma:
    """A minimal vma stand-in for the mmu_gather flush (``struct vm_area_struct`` fake)."""

    __slots__ = ("vm_mm", "vm_start", "vm_end", "vm_flags")

    def __init__(self, mm: Any, start: int, end: int) -> None:
        self.vm_mm = mm
        self.vm_start = start
        self.vm_end = end
        self.vm_flags = 0
