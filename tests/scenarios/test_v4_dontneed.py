"""The v4 posting's MADV_DONTNEED microbenchmark, one 4K page at a time.

The kernels are the fit set's (``cost/fitset.py``): the base the posting was
measured against, patches 1-15 and patches 1-16 (docs/cost-model.md).  Read
from the posting's code: patch 3's generic ``clear_ptes()`` clears one PTE
with ``ptep_get_and_clear_full()``, which on arm64 (patch 14) unfolds a
folded block first; patch 16's arm64 ``clear_ptes()`` takes the same path
when ``nr == 1`` (only ``nr > 1`` goes to ``contpte_clear_ptes()``), and a
one-page madvise always has ``nr == 1`` (``pte_batch_remaining()`` is
bounded by the end of the range).  So "before" and "after" patch 16 do the
same work per page: the first call into each folded block unfolds it (one
conversion: one range TLBI or 16 TLBIs by VA, and a sync), every call
flushes its own page.  The contiguous bit saves nothing on this path.
"""

from __future__ import annotations

from typing import Any

import pytest
from scenario_util import PAGE

import contpte
from contpte.cost.fitset import V4_15, V4_16, V4_BASE

BLOCK = 16 * PAGE
BLOCKS = 4
ARENA = 0x7F00_0000_0000


def _dontneed_page_by_page(opts: dict[str, Any], cpu: str) -> dict[str, int]:
    m = contpte.Machine(arch="arm64", memory="64M", cpu=cpu, mthp={"64K": "always"}, **opts)
    p = m.spawn()
    a = p.mmap(BLOCKS * BLOCK, flags="private|anonymous|fixed", addr=ARENA)
    p.write(a, BLOCKS * BLOCK, 1)
    s = m.stats()
    for i in range(BLOCKS * 16):
        p.madvise(a + i * PAGE, PAGE, "dontneed")
    d = m.stats_delta(s)
    assert p.pagemap(a, BLOCKS * BLOCK)["present"].sum() == 0
    return d


@pytest.mark.parametrize(("cpu", "flush"), [("apple-m2", "tlbi.RVALE1IS"), ("neoverse-n1", "tlbi.VALE1IS")])
def test_v4_dontneed_is_the_same_before_and_after_patch_16(cpu: str, flush: str) -> None:
    before = _dontneed_page_by_page(V4_15, cpu)
    after = _dontneed_page_by_page(V4_16, cpu)
    base = _dontneed_page_by_page(V4_BASE, cpu)
    assert before == after
    pages = BLOCKS * 16
    # One conversion per block, on its first page; one flush per call.
    assert before.get("contpte.convert", 0) == BLOCKS
    assert before.get("contpte.unfold.clear_full_ptes", 0) == BLOCKS
    assert before.get("zap.calls", 0) == base.get("zap.calls", 0) == pages
    assert base.get("contpte.convert", 0) == 0
    assert before.get("dvm.sync", 0) == base.get("dvm.sync", 0) + BLOCKS
    if cpu == "apple-m2":
        # FEAT_TLBIRANGE: a block's flush is one range TLBI.
        assert before.get(flush, 0) == BLOCKS and before.get("tlbi.VALE1IS", 0) == pages
    else:
        # Neoverse-N1 has no range TLBI: 16 by VA per block, one per call.
        assert before.get(flush, 0) == pages + 16 * BLOCKS
    assert base.get("tlbi.VALE1IS", 0) == pages
