"""The bug catalog: historical (or plausible) kernel bugs the model can re-introduce.

Each entry names a bug that the review of the contpte / batched-fork series
(or later work on the same code) fixed or had to avoid.  ``Machine(bugs=
("name", ...))`` turns entries on (all are off by default; an unknown name is
an error); the mm and arch code consult ``bug(name)`` at the exact point where
the bug lived.  ``contpte check --bugs`` runs each entry's exposing scenario
(``contpte/workloads/bugs/<name>.scn``) and reports whether the *general*
validators caught it.

This module sits at the base layer (like errors and counters) so every layer
may consult it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ModelUsageError

__all__ = ["Bug", "BUGS", "check_bug_names"]


@dataclass(frozen=True)
class Bug:
    """One catalog entry."""

    name: str
    layer: str
    where: str
    description: str
    reference: str


BUGS: dict[str, Bug] = {
    b.name: b
    for b in (
        Bug(
            "fork_mapcount_before_refcount",
            "mm",
            "mm/memory.c: copy_present_ptes()",
            "the batch raises the mapcounts (folio_try_dup_anon_rmap_ptes) before the refcount "
            "(folio_ref_add): meanwhile the folio has more mappings than references, and a concurrent "
            "folio_try_get/put may free it under a mapping",
            "review of 'mm/memory: optimize fork() with PTE-mapped THP' (v6.9): refcount first, then mapcount",
        ),
        Bug(
            "fork_batch_across_pte_none",
            "mm",
            "mm/internal.h: folio_pte_batch()",
            "the batch does not stop at a pte_none hole (e.g. MADV_DONTNEED of one page of a large "
            "folio): the child maps the dropped page again, with its stale content",
            "folio_pte_batch(): stop at the first PTE that is not the expected one (none, swap, other pfn); "
            "Xen PV fix 'mm: fix folio_pte_batch() on XEN PV'",
        ),
        Bug(
            "fork_batch_ignores_write",
            "mm",
            "mm/memory.c: copy_present_ptes()",
            "a batch that ignores a write-permission change takes the first PTE's write bit: when the "
            "first PTE is read-only and a later one writable, the parent's writable PTE is not "
            "write-protected although the child now shares the page",
            "copy_present_ptes(): any_writable / FPB_MERGE_WRITE ('mm/memory: optimize fork() with "
            "PTE-mapped THP', v6.9)",
        ),
        Bug(
            "fork_batch_drops_any_dirty",
            "mm",
            "mm/memory.c: copy_present_ptes()",
            "a private batch ignores the dirty bit without gathering it (any_dirty dropped): the child's "
            "PTEs take the first PTE's clean state, and a write after MADV_FREE is lost when reclaim "
            "discards the 'clean' lazyfree folio",
            "folio_pte_batch() flags: FPB_IGNORE_DIRTY only for shared mappings (v6.9); "
            "FPB_RESPECT_DIRTY / FPB_MERGE_YOUNG_DIRTY (v6.17)",
        ),
        Bug(
            "fork_shares_pinned_anon",
            "mm",
            "mm/rmap.h: folio_try_dup_anon_rmap_ptes()",
            "a maybe-pinned anon-exclusive page is shared with the child instead of copied: the pin "
            "(DMA) and the parent's page diverge at the next CoW",
            "'mm: fix missing copy of pinned pages at fork' (Peter Xu, v5.11 / v5.13); "
            "folio_needs_cow_for_dma()",
        ),
        Bug(
            "fork_no_parent_tlb_flush",
            "mm",
            "kernel/fork.c: dup_mmap()",
            "the parent's TLB is not flushed after fork write-protected its PTEs: a stale writable TLB "
            "entry lets the parent write into a page the child shares",
            "dup_mmap(): flush_tlb_mm(oldmm), which wrprotect_ptes relies on to leave blocks folded",
        ),
        Bug(
            "fork_no_vma_write_lock",
            "mm",
            "kernel/fork.c: dup_mmap()",
            "dup_mmap() does not write-lock the VMAs it copies (vma_start_write): at a lock break of "
            "copy_pte_range another thread's page fault takes the per-VMA lock and maps the rest of a "
            "half-copied contiguous block (a 64K folio, folded) in between: the child gets the pages "
            "after the break and none before, a state the parent never had (it reads zeros where the "
            "parent's thread wrote before the fork returned)",
            "fb49c455323f 'fork: lock VMAs of the parent process when forking' (v6.5, 6.4.3; per-VMA "
            "locks came in v6.4 and were disabled in 6.4.y until it); v6.12 kernel/fork.c dup_mmap() "
            "vma_start_write(mpnt)",
        ),
        Bug(
            "contpte_fold_without_bbm",
            "arch",
            "arch/arm64/mm/contpte.c: contpte_convert()",
            "a fold (or unfold) rewrites the 16 entries in place without break-before-make "
            "(clear, TLBI, rewrite): the TLB may hold both sizes at once (TLB conflict)",
            "Arm ARM D8.7 (break-before-make); contpte_convert() in 'arm64/mm: wire up PTE_CONT for "
            "user mappings' (v6.9)",
        ),
        Bug(
            "wrprotect_partial_block_no_unfold",
            "arch",
            "arch/arm64/mm/contpte.c: contpte_wrprotect_ptes()",
            "wrprotect_ptes over part of a contiguous block write-protects those entries without "
            "unfolding first: the block's entries disagree on permissions while the Contiguous bit is set",
            "contpte_wrprotect_ptes(): contpte_try_unfold_partial() ('arm64/mm: implement new "
            "wrprotect_ptes() batch API', v6.9)",
        ),
        Bug(
            "pte_mkcont_sets_type_page",
            "arch",
            "arch/arm64/include/asm/pgtable.h: pte_mkcont()",
            "pte_mkcont() also sets PTE_TYPE_PAGE (0b11), so contpte_set_ptes() makes a whole block of "
            "present-invalid PROT_NONE / NUMA-hinting PTEs valid: fork's batch copy gives the child "
            "valid, non-user PTEs that pte_protnone() no longer recognises",
            "v6.12's pte_mkcont(); dropped by ced841702ee7 'arm64/mm: Drop setting PTE_TYPE_PAGE in "
            "pte_mkcont()' (A. Khandual, merged for v6.13; no Fixes: tag, not in 6.12.y up to 6.12.107)",
        ),
        Bug(
            "ptep_get_no_gather",
            "arch",
            "arch/arm64/mm/contpte.c: contpte_ptep_get()",
            "ptep_get returns only the addressed entry's access/dirty bits: the hardware may have set "
            "them on another entry of the block, so core-mm sees a dirty block as clean",
            "contpte_ptep_get(): gather AF/dirty over CONT_PTES ('arm64/mm: wire up PTE_CONT for user "
            "mappings', v6.9)",
        ),
        Bug(
            "fork_batch_ignores_uffd_wp",
            "mm",
            "mm/internal.h: folio_pte_batch()",
            "the batch ignores the per-PTE uffd-wp bit: the child's PTEs all take the first PTE's "
            "uffd-wp state, so write-protected pages become unprotected (or the reverse)",
            "folio_pte_batch(): uffd-wp is not ignored (stop at a change), v6.9",
        ),
        Bug(
            "fork_batch_mixes_protnone",
            "mm",
            "mm/internal.h: folio_pte_batch()",
            "the batch compares PTEs without their protection: a NUMA-hinting (PROT_NONE) PTE and "
            "accessible ones end up in one batch, and the child gets the first PTE's accessibility",
            "folio_pte_batch(): stop at pte_protnone changes (v6.9)",
        ),
        Bug(
            "zap_free_before_flush",
            "mm",
            "mm/memory.c: zap_pte_range()",
            "when the mmu_gather fills in the middle of a zap, the gathered pages are freed "
            "(tlb_flush_mmu_free) before the TLB flush of their range: until the flush, a CPU may "
            "still reach a freed (and reallocated) page through a TLB entry of the unmapped range",
            "zap_pte_range(): 'Do the actual TLB flush before dropping ptl' (tlb_flush_mmu_tlbonly), "
            "then tlb_flush_mmu(); the ordering include/asm-generic/tlb.h documents for mmu_gather",
        ),
        Bug(
            "madvise_free_no_tlb_entries",
            "mm",
            "mm/madvise.c: madvise_free_pte_range()",
            "MADV_FREE cleans the PTEs (clear_young_dirty_ptes) without queueing their range in the "
            "mmu_gather (tlb_remove_tlb_entries): no TLBI follows, a CPU keeps its writable-dirty "
            "entry, writes through it without marking the PTE dirty, and reclaim discards the "
            "'clean' lazyfree folio with the data",
            "madvise_free_pte_range(): tlb_remove_tlb_entries() after clear_young_dirty_ptes() "
            "('mm: madvise: use clear_young_dirty_ptes() batch helper', v6.10)",
        ),
        Bug(
            "khugepaged_collapse_no_flush",
            "arch",
            "mm/pgtable-generic.c: pmdp_collapse_flush()",
            "khugepaged takes the PTE table out of the PMD without flushing the PMD's range: a CPU "
            "keeps its TLB entries for the old pages, which the collapse copies and frees, and "
            "reads or writes them after the new THP has replaced them",
            "pmdp_collapse_flush(): flush_tlb_range() over the whole PMD after pmdp_huge_get_and_clear() "
            "('collapse entails shooting down ptes not pmd'); collapse_huge_page() calls it before "
            "isolating and copying the pages",
        ),
        Bug(
            "fault_no_pte_recheck",
            "mm",
            "mm/memory.c: do_anonymous_page(), wp_page_copy()",
            "after allocating with the PTL dropped the fault maps its folio without re-checking the "
            "PTE under the PTL (vmf_pte_changed / pte_range_none / pte_same): another thread's fault "
            "that mapped the page meanwhile is overwritten, its page left with a mapcount no PTE "
            "accounts for and its write lost",
            "do_anonymous_page(): 'if (nr_pages == 1 && vmf_pte_changed(vmf)) ... else if (nr_pages > 1 "
            "&& !pte_range_none(vmf->pte, nr_pages))' then update_mmu_tlb and release; wp_page_copy(): "
            "'if (likely(vmf->pte && pte_same(ptep_get(vmf->pte), vmf->orig_pte)))' (v6.12)",
        ),
        Bug(
            "fork_stale_pte_after_lock_break",
            "mm",
            "mm/memory.c: copy_pte_range()",
            "after a lock break the copy goes on with the source PTE it read before dropping the "
            "PTLs: reclaim running meanwhile (its rmap walk needs no mmap_lock) has swapped that "
            "page out and freed it, and the child maps the freed frame",
            "copy_pte_range(): the break leaves the loop, 'if (addr != end) goto again', which maps "
            "and locks the tables again and reads each PTE under the PTL (v6.12)",
        ),
        Bug(
            "gup_fast_no_pte_recheck",
            "mm",
            "mm/gup.c: gup_fast_pte_range()",
            "GUP-fast keeps the folio it grabbed without reading the PTE again: a page unmapped (and "
            "reallocated) between its lockless read and the grab stays pinned for an address that no "
            "longer maps it",
            "gup_fast_pte_range(): 'if (unlikely(pmd_val(pmd) != pmd_val(*pmdp)) || "
            "unlikely(pte_val(pte) != pte_val(ptep_get(ptep))))' -> gup_put_folio (v6.12)",
        ),
        Bug(
            "gup_fast_no_write_protect_seq",
            "mm",
            "mm/gup.c: gup_fast()",
            "GUP-fast ignores mm->write_protect_seq: between fork's pin check of a batch and its "
            "write-protect it pins a page still mapped writable, which fork then shares with the "
            "child: the pin and the parent's page part at the next CoW",
            "57efa1fe5957 'mm/gup: prevent gup_fast from racing with COW during fork' (v5.11); v6.12 "
            "gup_fast() raw_read_seqcount / read_seqcount_retry, copy_page_range() "
            "raw_write_seqcount_begin",
        ),
        Bug(
            "chp_fault_no_cont_pte_none_recheck",
            "mm",
            "mm/memory.c (OnePlus): __do_huge_cont_pte_anonymous_page()",
            "policy oneplus: the whole-block fault, having allocated its block without the PTL, checks "
            "only the faulting entry under the PTL, not all 16 (cont_pte_none): pages another thread "
            "mapped in the block's range meanwhile (here: a block of its own, split by MADV_DONTNEED, "
            "whose pages left it as base pages) are overwritten by the new block and stay counted as "
            "mapped with no PTE left to them; a fault into the hole MADV_DONTNEED left in a split "
            "block does the same without a second thread (the fuzzer's shortest find)",
            "the design's __do_huge_cont_pte_anonymous_page(): if (!cont_pte_none(vmf->pte)) fall back "
            "under the PTL (OnePlusOSS/android_kernel_oneplus_sm8550 mm/memory.c)",
        ),
        Bug(
            "chp_reclaim_double_map_whole",
            "mm",
            "mm/vmscan.c, mm/rmap.c (OnePlus): shrink_page_list(), try_to_unmap_one()",
            "policy oneplus: reclaim takes a double-mapped block (mapped whole in one mm, split in "
            "another) for a block mapped whole: no PageDoubleMap refusal, no split before the unmap; "
            "while the block has an entire mapping every mapping of it is unmapped as one block (16 "
            "swap entries, one entire mapping and one reference dropped), the split mm's included: its "
            "16 per-page mapcounts and 15 references stay with no PTE left to them (or the whole "
            "mapping's entire mapcount goes with the split one)",
            "the design's shrink_page_list(): 'Skip doublemap pages in memory reclamation' and 'don't "
            "struggle with doublemap cont_pte pages'; try_to_unmap_one() splits each block mapping "
            "(TTU_SPLIT_HUGE_PMD) before unmapping it entry by entry "
            "(OnePlusOSS/android_kernel_oneplus_sm8550 mm/vmscan.c, mm/rmap.c)",
        ),
    )
}
"""The catalog, by name."""


def check_bug_names(names: object) -> frozenset[str]:
    """Validate a ``bugs=`` option: a tuple/list of catalog names (or a comma-separated string)."""
    if names is None:
        return frozenset()
    if isinstance(names, str):
        items = [n.strip() for n in names.split(",") if n.strip()]
    elif isinstance(names, (tuple, list, set, frozenset)):
        items = [str(n) for n in names]
    else:
        raise ModelUsageError(f"bugs={names!r}: expected a tuple of bug catalog names")
    unknown = sorted(set(items) - set(BUGS))
    if unknown:
        raise ModelUsageError(f"unknown bug(s) {', '.join(unknown)}; the catalog has: {', '.join(BUGS)}")
    return frozenset(items)
