"""The fuzzer finds every bug of the catalog on its own (issue: the fuzzer was weak).

Each catalogued bug is re-introduced with ``Machine(bugs=...)`` and the
fuzzer, with no hint but the bug option, must reach a violation of a
general validator within a bounded number of steps from seed 1.  Several
bugs need a large folio whose PTEs differ (uffd-wp on some pages, dirty
again after MADV_FREE, a VMA split inside a block and merged again) and
then a fork: the generator's mixed-state moves (``_Gen.maybe_mix``) build
them.  The budgets are the steps seed 1 needed when the moves joined, with
some room; a change of the generator that loses a bug fails here.
"""

from __future__ import annotations

import pytest

from contpte.bugs import BUGS
from contpte.workloads.fuzz import FuzzConfig, fuzz

#: steps seed 1 may take per bug (all found on arm64; measured 150 to 35,100
#: once swap episodes joined the generator)
BUDGET = {
    "fork_batch_drops_any_dirty": 40_000,
    "fork_batch_mixes_protnone": 15_000,
    "pte_mkcont_sets_type_page": 12_000,
    # a thread's write at one of fork's lock breaks (the fuzzer's 'at' steps)
    # that faults on the VMA fork is copying, then a read of that page in the
    # child: found at 5,700 steps once swap episodes joined
    "fork_no_vma_write_lock": 35_000,
    # a thread's fault at do_anonymous_page / wp_page_copy of a write's
    # fault on the same page (found at 13,650 steps)
    "fault_no_pte_recheck": 20_000,
    # a thread's GUP-fast write pin at copy_present_ptes of a fork, on a
    # page of a batch not write-protected yet (found at 55,500 steps)
    "gup_fast_no_write_protect_seq": 60_000,
    # found at 3,900 steps once PMD-mapped THPs swap out (pageout and
    # reclaim of THPs change what the episodes hold afterwards)
    "wrprotect_partial_block_no_unfold": 6_000,
    # reclaim at one of fork's lock breaks in a swap episode, on a range
    # fork has still to copy (found at 4,650 steps)
    "fork_stale_pte_after_lock_break": 8_000,
    # policy oneplus: a block fork copied whole, split in one mm (mprotect),
    # then reclaim twice (found at 9,000 steps)
    "chp_reclaim_double_map_whole": 15_000,
}


#: the variant a bug lives in (default arm64)
VARIANT = {
    "chp_fault_no_cont_pte_none_recheck": "arm64-oneplus",
    "chp_reclaim_double_map_whole": "arm64-oneplus",
}


@pytest.mark.parametrize("name", list(BUGS))
def test_fuzz_finds_catalogued_bug(name: str) -> None:
    steps = BUDGET.get(name, 3_000)
    variant = VARIANT.get(name, "arm64")
    r = fuzz(FuzzConfig(variants=[variant], steps=steps, seed=1, bugs=(name,), shrink=False))
    assert r.finding is not None, f"{name}: not found in {r.steps} steps"
    assert r.finding.kind.startswith("violation:"), r.finding.message
