"""Global core-mm state: mem_map, the buddy allocator, THP settings, files.

The kernel keeps these in globals (``mem_map``, zones, ``huge_zero_folio``,
``transparent_hugepage_flags``, the per-size ``huge_anon_orders_*``
bitmaps).  The model keeps them in one ``Kernel`` object per Machine, and
every ``mm_struct`` points to it (``mm.kernel``) so the modelled functions
keep the kernel's signatures.

Compiled (docs/core.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cython

from ..counters import MTHP_STATS, counter, mthp_size_name
from ..errors import KernelBug, ModelUsageError
from .chp_pool import CHP_OPTIONS, free_cont_pte_hugepages, hpage_cont_pte_order, huge_page_pool_init

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64
    from ..counters import Counters, count
    from .memmap import MemMap, PG_anon, PG_reserved, folio_test_anon
    from .page_alloc import BuddyAllocator

__all__ = ["Kernel", "RmapObserver", "THP_SETTINGS", "MM_OPTIONS", "MTHP_STATS", "size_name"]

THP_SETTINGS = ("always", "madvise", "inherit", "never")
"""The sysfs vocabulary of hugepages-<size>kB/enabled (the top level has no "inherit")."""

MM_OPTIONS: dict[str, Any] = {
    "batch_fork": True,
    "batch_zap": True,
    "batch_rmap": True,
    "batch_extent": "folio",
    "cow_reuse_large": False,
    "maybe_mapped_shared": False,
    "huge_zero_wp_thp": False,
    "fpb_cap_at_folio_end": False,
    "prot_numa_batch_skip": False,
    "mprotect_batch": False,
    "mremap_pte_batch": False,
    "fault_map_dirty": False,
    "finish_fault_whole_folio": False,
    "khugepaged_batch_copy": False,
    "khugepaged_ro_collapse": False,
    "khugepaged_lazyfree_skip": False,
    "khugepaged_mthp": False,
    "spurious_fault_pmd": False,
    "young_ptes_batch": False,
    "swapin_via_swapcache": False,
    "lazyfree_unmap_batch": False,
    "lazyfree_batch_respect_write": False,
    "max_gather_batch_count": -1,
    **CHP_OPTIONS,
    "policy": "mainline",
    "cont_pte_hugepage_on_qemu": False,
    "accounting": None,
    "lock_break": "progress",
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

``cow_reuse_large`` (from ``kernel="6.15"``, docs/versions.md): a write fault on a write-protected PTE of an
exclusively mapped large anon folio reuses the page (mm/memory.c
``__wp_can_reuse_large_anon_folio()``, commit 1da190f4d0a6 "mm:
Copy-on-Write (COW) reuse support for PTE-mapped THP", David Hildenbrand,
v6.15, CONFIG_MM_ID).  False: v6.12, which never reuses a page of a large
folio and copies it.

``maybe_mapped_shared`` (from ``kernel="6.15"``): madvise (MADV_FREE,
MADV_COLD/PAGEOUT) and mprotect's NUMA-hinting skip ask
``folio_maybe_mapped_shared()`` whether a large folio is shared: the
"maybe mapped shared" bit of the folio's two mm slots (CONFIG_MM_ID, which
the rmap functions keep in every version; commit series "mm: MM owner
tracking for large folios (!hugetlb) + CONFIG_NO_PAGE_MAPCOUNT", David
Hildenbrand, v6.15).  False: v6.12's ``folio_likely_mapped_shared()``,
which asks only whether the folio's first page is mapped more than once.

``huge_zero_wp_thp`` (from ``kernel="6.13"``): a write fault on the huge zero PMD allocates a PMD
THP in its place (mm/huge_memory.c ``do_huge_zero_wp_pmd()``, commit
1ced09e0331f "mm: allocate THP on hugezeropage wp-fault", Dev Jain, v6.13),
splitting as before only when the allocation fails.  False: v6.12, which
splits the PMD and faults in one order-0 page.

``fpb_cap_at_folio_end`` (from ``kernel="6.15"``): ``folio_pte_batch_flags()``
caps ``max_nr`` to the pages left in the folio before it scans (mm/internal.h,
commit 7b08b74f3d99 "mm: fix folio_pte_batch() on XEN PV", Petr Vaněk and
David Hildenbrand, v6.15; in 6.12.y from 6.12.29), so a batch that reaches
the folio's end never reads the next PTE.  False: v6.12, which reads it (on
arm64 through ``ptep_get()``, a whole block's worth when it is folded) and
stops on its pfn.  Same batches, fewer reads: fork, zap and MADV_FREE.

``prot_numa_batch_skip`` (from ``kernel="6.17"``): NUMA hinting
(``change_pte_range(MM_CP_PROT_NUMA)``) skips a folio it may not touch
(``folio_can_map_prot_numa()`` false: zero page, shared CoW, dirty file)
one ``folio_pte_batch()`` at a time (commit "mm: optimize mprotect() for
MM_CP_PROT_NUMA by batch-skipping PTEs", Dev Jain, v6.17).  False: v6.12,
one PTE per iteration, each looked at again.

``mprotect_batch`` (from ``kernel="6.17"``): ``change_pte_range()`` changes
the PTEs of a large folio in batches (``folio_pte_batch_flags()`` with
``FPB_RESPECT_SOFT_DIRTY | FPB_RESPECT_WRITE``), one
``modify_prot_start_ptes()`` / ``modify_prot_commit_ptes()`` per batch, the
write upgrade decided per run of equally ``PageAnonExclusive`` pages
(``commit_anon_folio_batch()``) (commit cac1db8c3aad "mm: optimize
mprotect() by PTE batching", Dev Jain, v6.17).  False: v6.12, one
``ptep_modify_prot_start()``/``commit()`` per PTE.  What a batch costs is the
arch's: the generic functions loop per PTE; arm64's keep whole contiguous
blocks folded (its option ``modify_prot_ptes_opt``).

``fault_map_dirty`` (from ``kernel="6.16"``): ``set_pte_range()`` maps a
writable PTE of a dirty folio dirty on a read fault (fault-around
included), so a shared tmpfs mapping whose page another process dirtied is
mapped dirty and its zap marks the folio dirty and delays the rmap removal
(``tlb_delay_rmap``).  The mainline commit was not identified: absent in
6.12.8, present in 6.17.8 and in the Debian 6.16.12 kernel the arm64
oracle boots (its ``tlb_flush_rmaps`` count at a child's exit).  False:
v6.12, clean.

``finish_fault_whole_folio`` (from ``kernel="6.18"``): ``finish_fault()``
maps the whole large page-cache folio of a read or shared fault with one
``set_ptes()`` (on arm64 a whole aligned block is written folded), not
only for anonymous shmem as v6.12 does: any shmem/tmpfs file (from 6.14
or so: present in 6.17.8) and, from 6.18, any file whose folio ends within
i_size (absent in 6.17.8, present in 6.18.15; commit not identified).  The
model's ``open_file`` files are disk files, so the option is dated 6.18.

``spurious_fault_pmd`` (from ``kernel="6.19"``): a write fault on a huge
PMD that ``huge_pmd_set_accessed()`` finds already young/dirty (another
CPU fixed it) runs ``fix_spurious_fault(vmf, PGTABLE_LEVEL_PMD)``, i.e.
``flush_tlb_fix_spurious_fault_pmd()`` (mm/memory.c; Huang Ying, "mm: add
spurious fault fixing support for huge pmd"): a nop but on arm64 with
``tlbi_nobroadcast``, a local flush of the stale entry.  The PTE-level fix
skips a retried fault (``FAULT_FLAG_TRIED``) in both versions.  False: v6.12,
no fix at PMD level.

``mremap_pte_batch`` (from ``kernel="6.17"``): mremap's ``move_ptes()``
(mm/mremap.c) moves a run of present PTEs that map consecutive pages of one
large folio at once: ``mremap_folio_pte_batch()`` (only where
``pte_batch_hint()`` says more than 1, i.e. from a folded contiguous block
on arm64), ``get_and_clear_ptes()`` and ``set_ptes()`` over the batch (Dev
Jain, "mm: Optimize mremap() by PTE batching", v6.17).  On arm64 a folded
block moved whole is neither unfolded at the source nor folded again at
the destination (``contpte_set_ptes()`` writes it contiguous).  False:
v6.12, one ``ptep_get_and_clear()`` + ``set_pte_at()`` per PTE (the first
clear of a folded block unfolds it; the last set of an aligned destination
block may fold it again).

``khugepaged_batch_copy`` (from ``kernel="6.17"``): khugepaged's
``__collapse_huge_page_copy_succeeded()`` clears the old PTEs of a large
folio in batches (``folio_pte_batch()``, ``clear_ptes()``,
``folio_remove_rmap_ptes()``, ``folio_put_refs()``), so a large source
folio is never seen partially mapped; False: v6.12, one PTE, one rmap
removal and one reference at a time (``ptep_clear()``,
``folio_remove_rmap_pte()``, ``free_page_and_swap_cache()``).

``khugepaged_ro_collapse`` (from ``kernel="6.18"``): khugepaged collapses
ranges whose PTEs are all read-only; False: v6.12, which refuses them
(``SCAN_PAGE_RO``: no writable PTE in ``hpage_collapse_scan_pmd()`` or
``__collapse_huge_page_isolate()``).

``khugepaged_lazyfree_skip`` (from ``kernel="7.1"``): khugepaged leaves a
range alone when it maps a clean page of a lazyfree (MADV_FREE) folio
(``SCAN_PAGE_LAZYFREE``), so reclaim can still discard it; False: v6.12,
which collapses it into a swap-backed THP.

``khugepaged_mthp`` (from ``kernel="7.2"``): khugepaged collapses anonymous
memory into every enabled mTHP order, not only the PMD order
(``mthp_collapse()`` over a bitmap of the occupied PTEs,
``collapse_max_ptes_none()`` scaled per order, the per-size
``collapse_*`` stats); False: v6.12, PMD order only.

``young_ptes_batch`` (from ``kernel="7.0"``): reclaim's
``folio_referenced_one()`` makes a large folio's PTEs old one
``folio_pte_batch()`` at a time (``clear_flush_young_ptes()``: on arm64 one
``contpte_clear_flush_young_ptes()`` and at most one flush per batch) and
stops once it has seen all the folio's pages; False: v6.12, one
``ptep_clear_flush_young()`` per PTE (on arm64 a whole-block clear and a
block flush for each PTE of a folded block that is still young).

``lazyfree_unmap_batch`` (from ``kernel="6.15"``): reclaim's
``try_to_unmap_one()`` unmaps a lazyfree (MADV_FREE) large folio one
``folio_pte_batch()`` at a time (``folio_unmap_pte_batch()``,
``get_and_clear_ptes()``, ``flush_tlb_range()``, ``folio_remove_rmap_ptes()``):
on arm64 a folded block is discarded without an unfold (Barry Song,
"mm: support batched unmap for lazyfree large folios during reclamation";
absent in 6.12.8, present in 6.17.8; 6.15 from the kernel's history, the
commit id not checked).  Swap-backed anon folios are never batched (up to
7.2).  False: v6.12, one ``ptep_clear_flush()`` per PTE.

``lazyfree_batch_respect_write`` (from ``kernel="6.19"``): that batch
respects the write and soft-dirty bits (``folio_unmap_pte_batch()`` calls
``folio_pte_batch_flags(..., FPB_RESPECT_WRITE | FPB_RESPECT_SOFT_DIRTY)``),
so restoring a redirtied folio's batch (``set_ptes(pteval, nr)``) never
makes a read-only PTE writable ("mm/rmap: fix incorrect pte restoration for
lazyfree folios", Dev Jain, 2026-02).  Before it, a batch could mix a
writable first PTE with read-only ones, and the restore gave all of them
the first one's write bit: a writable PTE of a page that is not
PageAnonExclusive (the model's ``writable-anon-exclusive`` rule; found by
``contpte fuzz --kernel-version 7.1`` before the fix was modelled).

``swapin_via_swapcache`` (from ``kernel="7.1"``): ``do_swap_page()`` on a
``SWP_SYNCHRONOUS_IO`` device always allocates with ``alloc_swap_folio()``
and reads through the swap cache (``swapin_folio()``), whatever the swap
count: a range shared after fork comes back as one large folio (mapped
read-only, left in the swap cache while the other process's swap PTEs
refer to it; the other process finds it there); the swap counts are
dropped after the PTEs are set (``folio_put_swap()``) and the swap cache
is always let go of for such a device (``should_try_to_free_swap()``).
From the swap-table rework (Kairui Song); absent in 6.19.11, present in
7.1.13 (no 7.0 source was at hand: it may be 7.0).  False: v6.12, which
bypasses the swap cache only for a swap count of 1 and reads a shared
entry one page at a time (``swapin_readahead()``).

``policy``: which design manages 64K contiguous blocks of anonymous memory
(not a kernel version: docs/oneplus.md).  ``"mainline"``: core-mm maps
large folios with per-page mapcounts and never sees the Contiguous bit; the
arm64 backend folds and unfolds blocks transparently (contpte).
``"oneplus"``: the out-of-tree "dynamic hugepage" design shipped on OnePlus
phones from 5.15 (mm/cont_pte_hugepage.c and its hooks in mm/memory.c of
OnePlusOSS/android_kernel_oneplus_sm8550): in a VMA named by prctl
(``prctl_set_vma_name``: "libc_malloc" or "dalvik-main space (region
space)", 2 MB or more) an anonymous write fault allocates a whole 64K block
from the cont-pte hugepage pool (``mm/chp_pool.py``) and core-mm writes its
16 PTEs with the Contiguous bit itself, break-before-make
(``cont_pte_set_huge_pte_at()``); the block is accounted with one entire
mapcount and one reference per mapping (``accounting="entire"``, like a PMD
THP), copied whole at fork (``copy_present_cont_pte()``: one reference and
one entire-mapcount dup per block; fork's lock break can only fall between
blocks), CoW-copied whole (``thp_cow``, else 16 base pages:
``thp_cow_fallback``) and zapped whole; anything that touches part of a
block first splits it into 16 PTE mappings with per-page mapcounts
(``__split_huge_cont_pte_locked()``).  arm64 only; the backend's transparent
fold/unfold is off (``contpte=False``).  Counters ``chp.*``.

``accounting``: how a large folio's mappings are counted.  ``"per-page"``:
mainline's per-page mapcounts (with the folio's large mapcount);
``"entire"``: one entire mapcount per whole-mapped 64K block, which exists
only in the OnePlus design, so ``accounting="entire"`` selects
``policy="oneplus"`` (and contradicts an explicit ``policy="mainline"``).
None (the default): the policy's.  Read back as ``Kernel.accounting``.

``lock_break``: where fork's ``copy_pte_range()`` may drop its page-table
locks once its progress reaches 32.  ``"progress"`` (mainline, and the
OnePlus design for base pages): at any entry; with ``batch_fork`` a folio's
batch is one step, so the break falls between batches, and without it
inside a block (pages 4, 8, 12).  ``"aligned"``: only at an address aligned
to the arm64 contiguous block of the page size (64K with 4K pages; 16
pages on a backend without one: ``hpage_cont_pte_order()``), the
rule the OnePlus design gets for its blocks by copying each one whole; the
break is put off until the loop reaches such an address.  Not a mainline
kernel version: an alternative rule to price and check
(``fork.lock_break_point`` counts the breaks taken).

``cont_pte_hugepage_on_qemu`` (with ``policy="oneplus"``): the design's
CONFIG_CONT_PTE_HUGEPAGE_ON_QEMU, under which every private anonymous VMA
is eligible for blocks, named or not (``transhuge_cont_pte_vma_suitable()``
skips ``vma_is_chp_anonymous()``); the fuzzer's ``arm64-oneplus`` variant
uses it.

``max_gather_batch_count``: how many batch pages an mmu_gather may chain
(include/asm-generic/tlb.h ``MAX_GATHER_BATCH_COUNT``); -1: the kernel's
(10000 / ``MAX_GATHER_BATCH``: 19 with 4K pages).  0 is the kernel's
behaviour when it cannot allocate a batch page (``GFP_NOWAIT``): only the
on-stack bundle of 8 slots, so a zap forces a TLB flush every few folios
(the fuzzer uses it to make gathers fill in the middle of a VMA).

``chp_cma``, ``chp_pool_high``, ``chp_min_buddy``, ``chp_max_buddy``,
``chp_stable_max_buddy`` (bytes; ``Machine`` takes size strings) and
``chp_direct_reclaim``: the OnePlus hugepage pool (``mm/chp_pool.py``,
docs/oneplus-pool.md), not a mainline behaviour.  A machine has the pool
when ``chp_cma`` is given or the policy is ``"oneplus"``; None for a size
is the design's ratio to the machine's memory (``chp_defaults``).
``chp_direct_reclaim`` is the design's ``CONFIG_POOL_DIRECT_RECLAIM`` (0 in
the OnePlus build: False).
"""

# The per-size stats of hugepages-<size>kB/stats/ the model counts are
# ``counters.MTHP_STATS``; ``MTHP_<NAME>`` below is the index of each.
MTHP_ANON_FAULT_ALLOC = cython.declare(i64, 0)
MTHP_ANON_FAULT_FALLBACK = cython.declare(i64, 1)
MTHP_SPLIT = cython.declare(i64, 2)
MTHP_SPLIT_DEFERRED = cython.declare(i64, 3)
MTHP_NR_ANON = cython.declare(i64, 4)
MTHP_SPLIT_FAILED = cython.declare(i64, 5)
MTHP_NR_ANON_PARTIALLY_MAPPED = cython.declare(i64, 6)
MTHP_COLLAPSE_ALLOC = cython.declare(i64, 7)
MTHP_COLLAPSE_ALLOC_FAILED = cython.declare(i64, 8)
MTHP_COLLAPSE_EXCEED_SWAP = cython.declare(i64, 9)
MTHP_COLLAPSE_EXCEED_NONE = cython.declare(i64, 10)
MTHP_COLLAPSE_EXCEED_SHARED = cython.declare(i64, 11)
MTHP_SWPOUT = cython.declare(i64, 12)
MTHP_SWPOUT_FALLBACK = cython.declare(i64, 13)
MTHP_SWPIN = cython.declare(i64, 14)
MTHP_SWPIN_FALLBACK = cython.declare(i64, 15)
_NR_MTHP_STATS = cython.declare(i64, 16)
#: The largest PMD order of any granule (64K pages: 13); per-size stats exist below it.
_MAX_ORDER_STATS = cython.declare(i64, 14)

PGFAULT = cython.declare(i64, counter("pgfault"))
THP_FAULT_ALLOC = cython.declare(i64, counter("thp_fault_alloc"))
THP_FAULT_FALLBACK = cython.declare(i64, counter("thp_fault_fallback"))
THP_SPLIT_PMD = cython.declare(i64, counter("thp_split_pmd"))
THP_DEFERRED_SPLIT_PAGE = cython.declare(
    i64,
    counter("thp_deferred_split_page"),
)
THP_SPLIT_PAGE = cython.declare(i64, counter("thp_split_page"))
THP_SPLIT_PAGE_FAILED = cython.declare(i64, counter("thp_split_page_failed"))
MTHP = "mthp"
FOLIO_ALLOC = cython.declare(i64, counter("folio.alloc"))
FOLIO_ALLOC_PAGES = cython.declare(i64, counter("folio.alloc_pages"))
FOLIO_FREE = cython.declare(i64, counter("folio.free"))
FOLIO_FREE_PAGES = cython.declare(i64, counter("folio.free_pages"))
PAGE_ZERO = cython.declare(i64, counter("page.zero"))
PAGE_COPY = cython.declare(i64, counter("page.copy"))
REF_OPS = cython.declare(i64, counter("ref.op"))
"""``folio_put()``: a drop that tests the result (arm64 LSE: LDADDAL, waited for)."""
REF_GETS = cython.declare(i64, counter("ref.get"))
"""``folio_get()``/``folio_ref_add()``/``folio_ref_sub()``: no result (arm64 LSE: STADD, posted)."""


def size_name(page_size: int, order: int) -> str:
    """The sysfs name of a folio size: ``64kB`` for order 4 with 4K pages."""
    return mthp_size_name(page_size, order)


@cython.cclass
class RmapObserver:
    """Something told of every rmap increase (the validators' refcount >= mapcount check).

    Like the kernel's page_table_check hooks: called by the rmap functions
    right after a folio's mapcounts grew, when another CPU (GUP-fast, a
    speculative ``folio_try_get``) could already look at the folio.
    """

    @cython.ccall
    def on_rmap_change(self, folio: i64) -> None:
        """``folio``'s mapcounts just grew."""


@cython.final
@cython.cclass
class Kernel:
    """The core-mm globals of one Machine."""

    TASK_MMAP_BASE = 0x7F00_0000_0000

    def __init__(
        self,
        hw: Any,
        arch: Pgtable,
        counters: Counters,
        thp: str = "madvise",
        mthp: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        unknown = set(options) - set(MM_OPTIONS)
        if unknown:
            raise ModelUsageError(f"unknown core-mm option(s): {', '.join(sorted(unknown))}")
        self.options = {**MM_OPTIONS, **options}
        self.batch_fork = bool(self.options["batch_fork"])
        self.batch_zap = bool(self.options["batch_zap"])
        self.batch_rmap = bool(self.options["batch_rmap"])
        if self.options["batch_extent"] not in ("folio", "arch"):
            raise ModelUsageError(
                f"batch_extent={self.options['batch_extent']!r}: expected 'folio' or 'arch'"
            )
        self.batch_extent = str(self.options["batch_extent"])
        self.batch_extent_arch = self.batch_extent == "arch"
        self.cow_reuse_large = bool(self.options["cow_reuse_large"])
        self.huge_zero_wp_thp = bool(self.options["huge_zero_wp_thp"])
        self.maybe_mapped_shared = bool(self.options["maybe_mapped_shared"])
        self.fpb_cap_at_folio_end = bool(self.options["fpb_cap_at_folio_end"])
        self.prot_numa_batch_skip = bool(self.options["prot_numa_batch_skip"])
        self.mprotect_batch = bool(self.options["mprotect_batch"])
        self.mremap_pte_batch = bool(self.options["mremap_pte_batch"])
        self.fault_map_dirty = bool(self.options["fault_map_dirty"])
        self.finish_fault_whole_folio = bool(self.options["finish_fault_whole_folio"])
        self.spurious_fault_pmd = bool(self.options["spurious_fault_pmd"])
        self.khugepaged_batch_copy = bool(self.options["khugepaged_batch_copy"])
        self.khugepaged_ro_collapse = bool(self.options["khugepaged_ro_collapse"])
        self.khugepaged_lazyfree_skip = bool(self.options["khugepaged_lazyfree_skip"])
        self.khugepaged_mthp = bool(self.options["khugepaged_mthp"])
        self.young_ptes_batch = bool(self.options["young_ptes_batch"])
        self.swapin_via_swapcache = bool(self.options["swapin_via_swapcache"])
        self.lazyfree_unmap_batch = bool(self.options["lazyfree_unmap_batch"])
        self.lazyfree_batch_respect_write = bool(self.options["lazyfree_batch_respect_write"])
        self.max_gather_batch_count = int(self.options["max_gather_batch_count"])
        if self.options["policy"] not in ("mainline", "oneplus"):
            raise ModelUsageError(f"policy={self.options['policy']!r}: expected 'mainline' or 'oneplus'")
        self.policy = str(self.options["policy"])
        #: The OnePlus dynamic-hugepage design (mm/cont_pte_hugepage.py).
        self.oneplus = self.policy == "oneplus"
        accounting = self.options["accounting"]
        if accounting not in (None, "per-page", "entire"):
            raise ModelUsageError(f"accounting={accounting!r}: expected 'per-page' or 'entire'")
        if accounting is not None and (accounting == "entire") != self.oneplus:
            raise ModelUsageError(
                f"accounting={accounting!r} does not combine with policy={self.policy!r}: whole-block "
                "(entire) accounting exists only in the OnePlus design (policy='oneplus')"
            )
        #: "entire" (one mapcount per whole-mapped block: OnePlus) or "per-page" (mainline).
        self.accounting = "entire" if self.oneplus else "per-page"
        if self.options["lock_break"] not in ("progress", "aligned"):
            raise ModelUsageError(
                f"lock_break={self.options['lock_break']!r}: expected 'progress' or 'aligned'"
            )
        self.lock_break = str(self.options["lock_break"])
        if self.options["cont_pte_hugepage_on_qemu"] and not self.oneplus:
            raise ModelUsageError("cont_pte_hugepage_on_qemu=True needs policy='oneplus'")
        if self.max_gather_batch_count < -1:
            raise ModelUsageError(
                f"max_gather_batch_count={self.max_gather_batch_count}: expected -1 (the kernel's) or >= 0"
            )
        #: The OnePlus hugepage pool (``mm/chp_pool.py`` ``HugePagePool``), or None; made last.
        self.chp_pool: Any = None
        #: The swap device (``mm/swapfile.py`` ``SwapInfo``), None without swap (set by Machine).
        self.swap: Any = None
        #: Bug catalog entries turned on (contpte.bugs; set by Machine).
        self.bugs: frozenset[str] = frozenset()
        #: Told of every rmap increase (the validators), or None.
        self.rmap_observer: RmapObserver | None = None
        self.hw = hw
        self.arch: Pgtable = arch
        self.counters: Counters = counters
        self.page_shift = arch.page_shift
        self.PAGE_SIZE = arch.PAGE_SIZE
        #: lock_break="aligned": the block size a fork lock break must be aligned to
        #: (HPAGE_CONT_PTE_SIZE: the arm64 contiguous block, 64K with 4K pages), else 0.
        self.lock_break_align = (
            (1 << hpage_cont_pte_order(self)) << self.page_shift if self.lock_break == "aligned" else 0
        )
        self.PMD_ORDER = arch.HPAGE_PMD_ORDER
        nr = hw.memory.nr_frames
        self.memmap: MemMap = MemMap(nr, self)
        self.buddy: BuddyAllocator = BuddyAllocator(nr, max(self.PMD_ORDER, 10), counters)
        # The zero page: reserved, never freed, never counted in mapcounts.
        zp = self.buddy.alloc_pages(0)
        if zp < 0:
            raise ModelUsageError("memory too small for the zero page")
        self.zero_pfn = zp
        self.memmap.prep(zp, 0)
        self.memmap.flags[zp] |= PG_reserved
        arch.clear_highpage(zp)
        #: The huge zero folio's head, -1 until first used.
        self.huge_zero_pfn = -1
        self.use_zero_page = True
        self.mms: list[Any] = []
        self.files: dict[int, Any] = {}
        self.deferred_split: set[int] = set()
        self._anon_vma_ids = 0
        #: mm/memory.c fault_around_bytes (debugfs; default 64K).
        self.fault_around_bytes = 64 << 10
        #: Called at each lock-break point (tests inject concurrent work here).
        self.on_lock_break: Callable[[Any, int], None] | None = None
        #: ``yield_hook(point, mm, addr) -> ran``: a preemption point of
        #: core-mm other than fork's lock break (a scheduler, system/sched.py:
        #: ``do_anonymous_page``, ``wp_page_copy``, ``zap_pte_range``, ...).
        self.yield_hook: Callable[[str, Any, int], bool] | None = None
        #: ``on_mmap_read_lock(mm)``: GUP's slow path takes the mmap_lock for
        #: read (a scheduler raises when an interrupted step holds it for write).
        self.on_mmap_read_lock: Callable[[Any], None] | None = None
        #: ``on_pin_page(mm, addr, pfn)``: GUP pinned the page ``pfn`` for
        #: ``addr`` (the validators check it is the page mapped there now).
        self.on_pin_page: Callable[[Any, int, int], None] | None = None
        # THP settings (sysfs).
        if thp not in ("always", "madvise", "never"):
            raise ModelUsageError(f"thp={thp!r}: expected always, madvise or never")
        self.thp = thp
        self.mthp = {}
        for order in range(2, self.PMD_ORDER + 1):
            self.mthp[order] = "inherit" if order == self.PMD_ORDER else "never"
        for size, setting in (mthp or {}).items():
            order = self.parse_size(size)
            if setting not in THP_SETTINGS:
                raise ModelUsageError(
                    f"mthp[{size!r}]={setting!r}: expected one of {', '.join(THP_SETTINGS)}"
                )
            self.mthp[order] = setting
        self.thp_settings_changed()
        # The per-size stat counters, by (order, stat).
        import numpy as np

        self.mthp_ids = np.full(_MAX_ORDER_STATS * _NR_MTHP_STATS, -1, dtype=np.int64)
        for order in range(2, self.PMD_ORDER + 1):
            for i, stat in enumerate(MTHP_STATS):
                self.mthp_ids[order * _NR_MTHP_STATS + i] = counter(
                    f"mthp.{size_name(self.PAGE_SIZE, order)}.{stat}"
                )
        # khugepaged (mm/khugepaged.c): the sysfs tunables of
        # /sys/kernel/mm/transparent_hugepage/khugepaged/ at their defaults
        # (khugepaged_init()), its statistics and its scan cursor.
        #: max_ptes_none: KHUGEPAGED_MAX_PTES_LIMIT = HPAGE_PMD_NR - 1.
        self.khugepaged_max_ptes_none = arch.PTRS_PER_PTE - 1
        #: max_ptes_swap: HPAGE_PMD_NR / 8 (no swap in the model: never reached).
        self.khugepaged_max_ptes_swap = arch.PTRS_PER_PTE // 8
        #: max_ptes_shared: HPAGE_PMD_NR / 2.
        self.khugepaged_max_ptes_shared = arch.PTRS_PER_PTE // 2
        #: pages_to_scan: HPAGE_PMD_NR * 8.
        self.khugepaged_pages_to_scan = arch.PTRS_PER_PTE * 8
        self.khugepaged_pages_collapsed = 0
        self.khugepaged_full_scans = 0
        #: khugepaged_scan.mm_slot (the mm being scanned, None at the list head) and .address.
        self.khugepaged_scan_mm: Any = None
        self.khugepaged_scan_address = 0
        # contpte_try_fold's folio lookup (page_folio, folio_nr_pages).
        arch.folio_head = self.memmap.head
        arch.folio_order = self.memmap.order
        # The OnePlus hugepage pool reserves its CMA area at boot (mm/chp_pool.py).
        if self.options["chp_cma"] is not None or self.options.get("policy") == "oneplus":
            huge_page_pool_init(self, self.options)

    def thp_settings_changed(self) -> None:
        """Recompute the ``huge_anon_orders_*`` bitmaps from ``thp``/``mthp``.

        Models: mm/huge_memory.c ``huge_anon_orders_always``/``_madvise``/
        ``_inherit`` (set by the sysfs store functions).
        """
        self.anon_orders_always = 0
        self.anon_orders_madvise = 0
        self.anon_orders_inherit = 0
        for order, setting in self.mthp.items():
            if setting == "always":
                self.anon_orders_always |= 1 << order
            elif setting == "madvise":
                self.anon_orders_madvise |= 1 << order
            elif setting == "inherit":
                self.anon_orders_inherit |= 1 << order

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def bug(self, name: str) -> cython.bint:
        """Is bug-catalog entry ``name`` re-introduced on this machine (contpte.bugs)?"""
        return bool(self.bugs) and name in self.bugs

    # -- settings ---------------------------------------------------------
    def parse_size(self, size: str) -> int:
        """Order of an mTHP size given as ``"64K"``, ``"64kB"``, ``"2M"``."""
        s = size.strip().upper().removesuffix("B")
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        # No negative indices: compiled, wrap-around is off (docs/core.md).
        last = len(s) - 1
        try:
            nbytes = int(s[:last]) * mult[s[last]] if s[last] in mult else int(s)
        except (ValueError, KeyError, IndexError):
            raise ModelUsageError(f"mthp size {size!r}: expected e.g. '64K' or '2M'") from None
        pages, rem = divmod(nbytes, self.PAGE_SIZE)
        if rem or pages & (pages - 1) or pages < 4 or pages > (1 << self.PMD_ORDER):
            raise ModelUsageError(
                f"mthp size {size!r}: must be a power of two from {4 * self.PAGE_SIZE >> 10}K to "
                f"{(self.PAGE_SIZE << self.PMD_ORDER) >> 10}K"
            )
        return pages.bit_length() - 1

    @cython.ccall
    def count_mthp_stat(self, order: i64, stat: i64, n: i64) -> None:
        """``count_mthp_stat()``: per-size stat ``stat`` (an ``MTHP_*`` index), orders 2..PMD_ORDER.

        The kernel also counts order 1, which no ``hugepages-<size>kB``
        directory shows; no anon or page-cache folio of the model has it.
        """
        if 1 < order <= self.PMD_ORDER:
            count(self.counters, cython.cast(i64, self.mthp_ids[order * _NR_MTHP_STATS + stat]), n)

    @cython.ccall
    def folio_undo_large_rmappable(self, folio: i64) -> None:
        """Take ``folio`` off the deferred split queue, if it is queued.

        Models: mm/huge_memory.c ``__folio_undo_large_rmappable()`` (v6.12;
        ``folio_unqueue_deferred_split()`` later), called when a large folio
        is freed, and the same unqueueing in
        ``split_huge_page_to_list_to_order()``: a partially mapped folio
        leaves ``nr_anon_partially_mapped``.  The model queues only
        partially mapped folios (``deferred_split_folio(folio, true)``).
        """
        if folio in self.deferred_split:
            self.deferred_split.discard(folio)
            self.count_mthp_stat(
                cython.cast(i64, self.memmap.order[folio]), MTHP_NR_ANON_PARTIALLY_MAPPED, -1
            )

    def mthp_stat(self, order: int, stat: str, n: int = 1) -> None:
        """``count_mthp_stat()`` by stat name (``MTHP_STATS``)."""
        self.count_mthp_stat(order, MTHP_STATS.index(stat), n)

    def mm_thp_disabled(self, mm: Any) -> bool:
        """``MMF_DISABLE_THP`` (prctl PR_SET_THP_DISABLE): not modelled, never set."""
        return False

    def new_anon_vma(self) -> int:
        self._anon_vma_ids += 1
        return self._anon_vma_ids

    # -- folios -----------------------------------------------------------
    def folio_range_of_pfn(self, pfn: int) -> tuple[int, int]:
        """(first pfn, nr pages) of the folio holding ``pfn`` (``page_folio``)."""
        head = cython.cast(i64, self.memmap.head[pfn])
        return head, 1 << cython.cast(i64, self.memmap.order[head])

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def folio_alloc(self, order: i64, zero: cython.bint) -> i64:
        """Allocate a folio of ``order`` (``folio_alloc``); its head pfn, or -1 if none is free."""
        pfn: i64 = self.buddy.alloc_pages(order)
        if pfn < 0:
            return -1
        self.memmap.prep(pfn, order)
        count(self.counters, FOLIO_ALLOC, 1)
        count(self.counters, FOLIO_ALLOC_PAGES, cython.cast(i64, 1) << order)
        i: i64
        if zero:
            # __GFP_ZERO: post_alloc_hook() -> kernel_init_pages() clears each page.
            for i in range(pfn, pfn + (cython.cast(i64, 1) << order)):
                self.arch.clear_highpage(i)
            count(self.counters, PAGE_ZERO, cython.cast(i64, 1) << order)
        return pfn

    @cython.ccall
    def folio_put(self, folio: i64, nr: i64 = 1) -> None:
        """Drop ``nr`` references (``folio_put_refs``); free the folio at zero."""
        mem: MemMap = self.memmap
        count(self.counters, REF_OPS, 1)
        mem.refcount[folio] -= nr
        ref: i64 = cython.cast(i64, mem.refcount[folio])
        if ref > 0 or cython.cast(i64, mem.flags[folio]) & PG_reserved:
            return
        if ref < 0:
            raise KernelBug("folio-refcount", f"refcount of {mem.describe(folio)} dropped below zero", None)
        order: i64 = cython.cast(i64, mem.order[folio])
        if folio_test_anon(mem, folio) and order > 0:
            self.count_mthp_stat(order, MTHP_NR_ANON, -1)
        if self.deferred_split:
            self.folio_undo_large_rmappable(folio)
        mapping: i64 = cython.cast(i64, mem.mapping[folio])
        if mapping >= 0 and not folio_test_anon(mem, folio):
            f = self.files.get(mapping)
            if f is not None:
                f.forget_folio(folio)
        mem.clear(folio, order)
        count(self.counters, FOLIO_FREE, 1)
        count(self.counters, FOLIO_FREE_PAGES, cython.cast(i64, 1) << order)
        self.arch.arch_free_page(folio, order)  # free_pages_prepare()
        if self.chp_pool is not None and folio in self.chp_pool.in_use:
            # A block of the OnePlus hugepage pool: __free_cont_pte_hugepages().
            free_cont_pte_hugepages(self, folio)
        else:
            self.buddy.free_pages(folio, order)
        if folio == self.huge_zero_pfn:
            self.huge_zero_pfn = -1

    @cython.ccall
    def mark_anon(self, folio: i64) -> None:
        """``__folio_set_anon()``: PG_anon, and the per-size ``nr_anon`` stat."""
        mem: MemMap = self.memmap
        mem.flags[folio] |= PG_anon
        if cython.cast(i64, mem.order[folio]) > 0:
            self.count_mthp_stat(cython.cast(i64, mem.order[folio]), MTHP_NR_ANON, 1)


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        MTHP_ANON_FAULT_ALLOC=MTHP_ANON_FAULT_ALLOC,
        MTHP_ANON_FAULT_FALLBACK=MTHP_ANON_FAULT_FALLBACK,
        MTHP_SPLIT=MTHP_SPLIT,
        MTHP_SPLIT_DEFERRED=MTHP_SPLIT_DEFERRED,
        MTHP_NR_ANON=MTHP_NR_ANON,
        MTHP_SPLIT_FAILED=MTHP_SPLIT_FAILED,
        MTHP_NR_ANON_PARTIALLY_MAPPED=MTHP_NR_ANON_PARTIALLY_MAPPED,
        MTHP_COLLAPSE_ALLOC=MTHP_COLLAPSE_ALLOC,
        MTHP_COLLAPSE_ALLOC_FAILED=MTHP_COLLAPSE_ALLOC_FAILED,
        MTHP_COLLAPSE_EXCEED_SWAP=MTHP_COLLAPSE_EXCEED_SWAP,
        MTHP_COLLAPSE_EXCEED_NONE=MTHP_COLLAPSE_EXCEED_NONE,
        MTHP_COLLAPSE_EXCEED_SHARED=MTHP_COLLAPSE_EXCEED_SHARED,
        MTHP_SWPOUT=MTHP_SWPOUT,
        MTHP_SWPOUT_FALLBACK=MTHP_SWPOUT_FALLBACK,
        MTHP_SWPIN=MTHP_SWPIN,
        MTHP_SWPIN_FALLBACK=MTHP_SWPIN_FALLBACK,
        PGFAULT=PGFAULT,
        THP_FAULT_ALLOC=THP_FAULT_ALLOC,
        THP_FAULT_FALLBACK=THP_FAULT_FALLBACK,
        THP_SPLIT_PMD=THP_SPLIT_PMD,
        THP_DEFERRED_SPLIT_PAGE=THP_DEFERRED_SPLIT_PAGE,
        THP_SPLIT_PAGE=THP_SPLIT_PAGE,
        THP_SPLIT_PAGE_FAILED=THP_SPLIT_PAGE_FAILED,
        FOLIO_ALLOC=FOLIO_ALLOC,
        FOLIO_ALLOC_PAGES=FOLIO_ALLOC_PAGES,
        FOLIO_FREE=FOLIO_FREE,
        FOLIO_FREE_PAGES=FOLIO_FREE_PAGES,
        PAGE_ZERO=PAGE_ZERO,
        PAGE_COPY=PAGE_COPY,
        REF_OPS=REF_OPS,
        REF_GETS=REF_GETS,
    )
