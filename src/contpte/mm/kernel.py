"""Global core-mm state: mem_map, the buddy allocator, THP settings, files.

The kernel keeps these in globals (``mem_map``, zones, ``huge_zero_folio``,
``transparent_hugepage_flags``, the per-size ``huge_anon_orders_*``
bitmaps).  The model keeps them in one ``Kernel`` object per Machine, and
every ``mm_struct`` points to it (``mm.kernel``) so the modelled functions
keep the kernel's signatures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..counters import Counters, counter, mthp_size_name
from ..errors import ModelUsageError
from .memmap import Folio, MemMap, PG_anon, PG_reserved
from .page_alloc import BuddyAllocator

if TYPE_CHECKING:
    from ..arch.pgtable import Pgtable
    from .mm_types import MmStruct
    from .shmem import File

__all__ = ["Kernel", "THP_SETTINGS", "MM_OPTIONS", "size_name"]

THP_SETTINGS = ("always", "madvise", "inherit", "never")
"""The sysfs vocabulary of hugepages-<size>kB/enabled (the top level has no "inherit")."""

MM_OPTIONS: dict[str, Any] = {
    "batch_fork": True,
    "batch_zap": True,
    "batch_rmap": True,
    "batch_extent": "folio",
    "cow_reuse_large": False,
    "huge_zero_wp_thp": False,
}
"""Core-mm variants: options on one code path (see docs/DESIGN.md).

``batch_fork``: copy_present_ptes() copies a large folio's PTEs in batches
(mm/memory.c, commit f8d937761d65 "mm/memory: optimize fork() with
PTE-mapped THP", David Hildenbrand, v6.9); False copies one PTE per
iteration, with one refcount and one rmap update per page (v6.8).

``batch_zap``: zap_present_ptes() clears a large folio's PTEs in batches
(commit 10ebac4f95e7 "mm/memory: optimize unmap/zap with PTE-mapped THP",
David Hildenbrand, v6.9); False clears one PTE per iteration with
``ptep_get_and_clear_full()`` semantics (on arm64 each cleared entry of a
folded block unfolds it first) and one rmap update per page (v6.8).

``batch_rmap``: a batch updates the rmap with one call for all its pages
(``folio_try_dup_anon_rmap_ptes()``, ``folio_remove_rmap_ptes()``, as the
two v6.9 commits above do), and a zap queues the batch's page references for
the mmu_gather as one (``__tlb_remove_folio_pages()``).  False: one call per
page inside the batch, as the batching of the contpte series' v4 posting did
("mm: Batch-copy PTE ranges during fork()", "mm: Batch-clear PTE ranges
during zap_pte_range()", Ryan Roberts, LKML 2023-12-18, patches 2 and 3 of
16: ``page_try_dup_anon_rmap()``/``page_remove_rmap()`` and
``__tlb_remove_page()`` per page, so each reference is dropped on its own).

``batch_extent``: how far a batch reaches.  ``"folio"``: ``folio_pte_batch()``
over every PTE that maps the next page of the same folio (v6.9+).
``"arch"``: only as far as the architecture's hint (``pte_batch_hint()``:
the rest of a folded contiguous block on arm64, 1 elsewhere), the extent of
the v4 posting's ``pte_batch_remaining()`` (patch 15 of 16), so on a
backend without the hint nothing is batched.

``cow_reuse_large``: a write fault on a write-protected PTE of an
exclusively mapped large anon folio reuses the page (mm/memory.c
``__wp_can_reuse_large_anon_folio()``, commit 1da190f4d0a6 "mm:
Copy-on-Write (COW) reuse support for PTE-mapped THP", David Hildenbrand,
v6.15, CONFIG_MM_ID).  False: v6.12, which never reuses a page of a large
folio and copies it.

``huge_zero_wp_thp``: a write fault on the huge zero PMD allocates a PMD
THP in its place (mm/huge_memory.c ``do_huge_zero_wp_pmd()``, commit
1ced09e0331f "mm: allocate THP on hugezeropage wp-fault", Dev Jain, v6.13),
splitting as before only when the allocation fails.  False: v6.12, which
splits the PMD and faults in one order-0 page.
"""

PGFAULT = counter("pgfault")
THP_FAULT_ALLOC = counter("thp_fault_alloc")
THP_FAULT_FALLBACK = counter("thp_fault_fallback")
THP_SPLIT_PMD = counter("thp_split_pmd")
THP_DEFERRED_SPLIT_PAGE = counter("thp_deferred_split_page")
THP_SPLIT_PAGE = counter("thp_split_page")
FOLIO_ALLOC = counter("folio.alloc")
FOLIO_ALLOC_PAGES = counter("folio.alloc_pages")
FOLIO_FREE = counter("folio.free")
PAGE_ZERO = counter("page.zero")
PAGE_COPY = counter("page.copy")
REF_OPS = counter("ref.op")
FOLIO_FREE_PAGES = counter("folio.free_pages")


def size_name(page_size: int, order: int) -> str:
    """The sysfs name of a folio size: ``64kB`` for order 4 with 4K pages."""
    return mthp_size_name(page_size, order)


class Kernel:
    """The core-mm globals of one Machine."""

    TASK_MMAP_BASE = 0x7F00_0000_0000

    def __init__(
        self,
        hw: Any,
        arch: "Pgtable",
        counters: Counters,
        thp: str = "madvise",
        mthp: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        unknown = set(options) - set(MM_OPTIONS)
        if unknown:
            raise ModelUsageError(f"unknown core-mm option(s): {', '.join(sorted(unknown))}")
        self.options = {**MM_OPTIONS, **options}
        self.batch_fork: bool = bool(self.options["batch_fork"])
        self.batch_zap: bool = bool(self.options["batch_zap"])
        self.batch_rmap: bool = bool(self.options["batch_rmap"])
        if self.options["batch_extent"] not in ("folio", "arch"):
            raise ModelUsageError(
                f"batch_extent={self.options['batch_extent']!r}: expected 'folio' or 'arch'"
            )
        self.batch_extent: str = str(self.options["batch_extent"])
        self.cow_reuse_large: bool = bool(self.options["cow_reuse_large"])
        self.huge_zero_wp_thp: bool = bool(self.options["huge_zero_wp_thp"])
        #: Bug catalog entries turned on (contpte.bugs; set by Machine).
        self.bugs: frozenset[str] = frozenset()
        #: Called after every rmap change of a folio (validators check refcount >= mapcount there).
        self.on_rmap_change: Callable[[Folio], None] | None = None
        #: The same for many folios at once (heads: distinct, ascending, after a
        #: bulk rmap update);
        #: when unset, bulk paths call ``on_rmap_change`` per folio.
        self.on_rmap_change_many: Callable[[Any], None] | None = None
        #: Take the vectorised fast paths (mm/memory_bulk.py) where they
        #: apply; a model-internal switch the differential tests turn off.
        self.fast_paths = True
        self.hw = hw
        self.arch = arch
        self.counters = counters
        self.page_shift = arch.page_shift
        self.PAGE_SIZE = arch.PAGE_SIZE
        self.PMD_ORDER = arch.HPAGE_PMD_ORDER
        nr = hw.memory.nr_frames
        self.memmap = MemMap(nr, owner=self)
        self.buddy = BuddyAllocator(nr, max(self.PMD_ORDER, 10), counters)
        # The zero page: reserved, never freed, never counted in mapcounts.
        zp = self.buddy.alloc_pages(0)
        assert zp is not None
        self.zero_pfn = zp
        self.memmap.prep(zp, 0)
        self.memmap.flags[zp] |= PG_reserved
        hw.memory.fill(zp, 1, 0)
        self.huge_zero_pfn: int | None = None
        self.use_zero_page = True
        self.mms: list[MmStruct] = []
        self.files: dict[int, File] = {}
        self.deferred_split: set[int] = set()
        self._anon_vma_ids = 0
        #: mm/memory.c fault_around_bytes (debugfs; default 64K).
        self.fault_around_bytes = 64 << 10
        #: Called at each lock-break point (tests inject concurrent work here).
        self.on_lock_break: Callable[[Any, int], None] | None = None
        # THP settings (sysfs).
        if thp not in ("always", "madvise", "never"):
            raise ModelUsageError(f"thp={thp!r}: expected always, madvise or never")
        self.thp = thp
        self.mthp: dict[int, str] = {}
        for order in range(2, self.PMD_ORDER + 1):
            self.mthp[order] = "inherit" if order == self.PMD_ORDER else "never"
        for size, setting in (mthp or {}).items():
            order = self.parse_size(size)
            if setting not in THP_SETTINGS:
                raise ModelUsageError(
                    f"mthp[{size!r}]={setting!r}: expected one of {', '.join(THP_SETTINGS)}"
                )
            self.mthp[order] = setting
        arch.folio_lookup = self.folio_range_of_pfn  # hook for contpte_try_fold

    def bug(self, name: str) -> bool:
        """Is bug-catalog entry ``name`` re-introduced on this machine (contpte.bugs)?"""
        return name in self.bugs

    # -- settings ---------------------------------------------------------
    def parse_size(self, size: str) -> int:
        """Order of an mTHP size given as ``"64K"``, ``"64kB"``, ``"2M"``."""
        s = size.strip().upper().removesuffix("B")
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        try:
            nbytes = int(s[:-1]) * mult[s[-1]] if s[-1] in mult else int(s)
        except (ValueError, KeyError, IndexError):
            raise ModelUsageError(f"mthp size {size!r}: expected e.g. '64K' or '2M'") from None
        pages, rem = divmod(nbytes, self.PAGE_SIZE)
        if rem or pages & (pages - 1) or pages < 4 or pages > (1 << self.PMD_ORDER):
            raise ModelUsageError(
                f"mthp size {size!r}: must be a power of two from {4 * self.PAGE_SIZE >> 10}K to "
                f"{(self.PAGE_SIZE << self.PMD_ORDER) >> 10}K"
            )
        return pages.bit_length() - 1

    def mthp_stat(self, order: int, stat: str, n: int = 1) -> None:
        """``count_mthp_stat()``: per-size stats for orders 2..PMD_ORDER.

        The kernel also counts order 1, which no ``hugepages-<size>kB``
        directory shows; no anon or page-cache folio of the model has it.
        """
        if 1 < order <= self.PMD_ORDER:
            self.counters.add(f"mthp.{size_name(self.PAGE_SIZE, order)}.{stat}", n)

    def mm_thp_disabled(self, mm: "MmStruct") -> bool:
        """``MMF_DISABLE_THP`` (prctl PR_SET_THP_DISABLE): not modelled, never set."""
        return False

    def new_anon_vma(self) -> int:
        self._anon_vma_ids += 1
        return self._anon_vma_ids

    # -- folios -----------------------------------------------------------
    def folio(self, pfn: int) -> Folio:
        return self.memmap.folio(pfn)

    def folio_range_of_pfn(self, pfn: int) -> tuple[int, int]:
        """(first pfn, nr pages) of the folio holding ``pfn`` (``page_folio``)."""
        head = int(self.memmap.head[pfn])
        return head, 1 << int(self.memmap.order[head])

    def folio_alloc(self, order: int, zero: bool) -> Folio | None:
        """Allocate a folio of ``order`` (``folio_alloc``); None if none is free."""
        pfn = self.buddy.alloc_pages(order)
        if pfn is None:
            return None
        folio = self.memmap.prep(pfn, order)
        self.counters.add(FOLIO_ALLOC)
        self.counters.add(FOLIO_ALLOC_PAGES, 1 << order)
        if zero:
            self.hw.memory.fill(pfn, 1 << order, 0)
            self.counters.add(PAGE_ZERO, 1 << order)
        return folio

    def folio_put(self, folio: Folio, nr: int = 1) -> None:
        """Drop ``nr`` references (``folio_put_refs``); free the folio at zero."""
        mm = self.memmap
        self.counters.add(REF_OPS)
        mm.refcount[folio.pfn] -= nr
        ref = int(mm.refcount[folio.pfn])
        if ref > 0 or folio.test_reserved():
            return
        if ref < 0:
            from ..errors import KernelBug

            raise KernelBug("folio-refcount", f"refcount of {folio} dropped below zero", None)
        order = folio.order
        if folio.test_anon() and order > 0:
            self.mthp_stat(order, "nr_anon", -1)
        self.deferred_split.discard(folio.pfn)
        if int(mm.mapping[folio.pfn]) >= 0 and not folio.test_anon():
            f = self.files.get(int(mm.mapping[folio.pfn]))
            if f is not None:
                f.forget_folio(folio)
        mm.clear(folio.pfn, order)
        self.counters.add(FOLIO_FREE)
        self.counters.add(FOLIO_FREE_PAGES, 1 << order)
        self.buddy.free_pages(folio.pfn, order)
        if folio.pfn == self.huge_zero_pfn:
            self.huge_zero_pfn = None

    def folio_put_many(self, heads: Any, nrs: Any) -> None:
        """``folio_put(folio(h), n)`` of each pair, in order (a fast path's gather).

        Vectorised when every folio is distinct and every freed one is an
        anon folio (the same state and counters); else one by one.
        """
        import numpy as np

        from ..arch.pgtable import batch_positions

        mm = self.memmap
        n = len(heads)
        if n == 0:
            return
        heads = np.asarray(heads, dtype=np.int64)
        nrs = np.asarray(nrs, dtype=np.int64)
        after = mm.refcount[heads].astype(np.int64) - nrs
        fh = heads[(after == 0) & ((mm.flags[heads] & PG_reserved) == 0)]
        # distinct folios (ascending heads need no sort)
        distinct = n == 1 or bool((heads[1:] > heads[:-1]).all())
        if not distinct:
            sh = np.sort(heads)
            distinct = not bool((sh[1:] == sh[:-1]).any())
        if (
            (after < 0).any()
            or not distinct
            or ((mm.flags[fh] & PG_anon) == 0).any()
            or (self.huge_zero_pfn is not None and (fh == self.huge_zero_pfn).any())
        ):
            for h, nr in zip(heads.tolist(), nrs.tolist(), strict=True):
                self.folio_put(Folio(mm, h), nr)
            return
        self.counters.add(REF_OPS, n)
        mm.refcount[heads] = after
        orders = mm.order[fh].astype(np.int64)
        big = orders[orders > 0]
        if len(big):
            for o, c in zip(*np.unique(big, return_counts=True), strict=True):
                self.mthp_stat(int(o), "nr_anon", -int(c))
        if self.deferred_split:
            self.deferred_split.difference_update(fh.tolist())
        if len(fh):
            pos = batch_positions(fh, np.left_shift(1, orders))
            mm.head[pos] = -1
            mm.flags[pos] = 0
            mm.mapcount[pos] = 0
            mm.refcount[fh] = 0
            self.counters.add(FOLIO_FREE, len(fh))
            self.counters.add(FOLIO_FREE_PAGES, int(np.left_shift(1, orders).sum()))
            self.buddy.free_pages_many(fh, orders)

    def mark_anon(self, folio: Folio) -> None:
        self.memmap.flags[folio.pfn] |= PG_anon
        if folio.order > 0:
            self.mthp_stat(folio.order, "nr_anon", 1)
