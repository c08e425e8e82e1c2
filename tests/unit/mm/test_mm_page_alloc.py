"""The buddy allocator: split, merge, fragmentation (mm/page_alloc.c)."""

from __future__ import annotations

from contpte.counters import Counters
from contpte.mm.page_alloc import BuddyAllocator


def _lists(b: BuddyAllocator) -> list[list[int]]:
    # The free lists are min-heaps that may hold stale addresses: free_blocks() is each one's live blocks.
    return [b.free_blocks(order) for order in range(b.max_order + 1)]


def test_initial_blocks_are_maximal_and_aligned() -> None:
    b = BuddyAllocator(64, 4, Counters())
    assert _lists(b) == [[], [], [], [], [0, 16, 32, 48]]
    assert b.nr_free == 64
    odd = BuddyAllocator(50, 4, Counters())
    assert _lists(odd) == [[], [48], [], [], [0, 16, 32]]
    assert odd.nr_free == 50
    assert odd.free_order[48] == 1


def test_alloc_splits_lowest_block_and_free_merges_back() -> None:
    c = Counters()
    b = BuddyAllocator(64, 4, c)
    assert b.alloc_pages(0) == 0
    assert _lists(b) == [[1], [2], [4], [8], [16, 32, 48]]
    assert b.alloc_pages(2) == 4
    assert b.alloc_pages(0) == 1
    assert b.nr_free == 64 - 6
    b.free_pages(1, 0)
    b.free_pages(0, 0)
    b.free_pages(4, 2)
    assert _lists(b) == [[], [], [], [], [0, 16, 32, 48]]
    assert b.nr_free == 64
    assert c.get("buddy.alloc") == 3 and c.get("buddy.free") == 3


def test_fragmentation_fails_high_orders_with_memory_free() -> None:
    c = Counters()
    b = BuddyAllocator(32, 4, c)
    pfns = [b.alloc_pages(0) for _ in range(32)]
    assert pfns == list(range(32))
    assert b.alloc_pages(0) == -1
    for pfn in range(0, 32, 2):
        b.free_pages(pfn, 0)
    assert b.nr_free == 16
    assert b.largest_free_order() == 0
    assert b.alloc_pages(1) == -1
    assert c.get("buddy.alloc_fail") == 2
    b.free_pages(1, 0)  # 0 and 1 merge, then nothing else (2 is free, 3 is not)
    assert b.free_order[0] == 1
    assert b.alloc_pages(1) == 0


def test_first_pfn_is_never_handed_out() -> None:
    b = BuddyAllocator(16, 4, Counters(), first_pfn=1)
    got = {b.alloc_pages(0) for _ in range(15)}
    assert got == set(range(1, 16))
    assert b.alloc_pages(0) == -1
