"""Reclaim of a lazyfree large folio: one PTE at a time (v6.12) or batched (v6.15).

mm/rmap.c ``try_to_unmap_one()``: v6.12 clears each PTE with
``ptep_clear_flush()`` (on arm64 the first one of a folded block unfolds
it); from v6.15 a lazyfree large folio is one ``folio_unmap_pte_batch()``
(``get_and_clear_ptes()`` of the 16 PTEs: the folded block is cleared as a
whole, no unfold) and one ``flush_tlb_range()``.  The same pages are freed.
"""

from __future__ import annotations

import pytest

import contpte

K = 1024


@pytest.mark.parametrize("arch", ["arm64", "generic"])
@pytest.mark.parametrize(("kernel", "unfolds"), [("6.12", 1), ("6.15", 0), ("7.2", 0)])
def test_lazyfree_64k_discard(arch: str, kernel: str, unfolds: int) -> None:
    m = contpte.Machine(arch=arch, kernel=kernel, memory="64M", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(64 * K)
    p.write(a, 64 * K, 7)
    p.madvise(a, 64 * K, "free")
    with m.measure() as d:
        assert m.reclaim() == 16
    assert d["pglazyfreed"] == 16 and d["pglazyfree_fail"] == 0
    assert d["contpte.unfold"] == (unfolds if arch == "arm64" else 0)
    assert p.read(a, 64 * K).tolist() == [0] * 16
    m.check()


@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_lazyfree_written_again_is_restored_whole(arch: str) -> None:
    m = contpte.Machine(arch=arch, kernel="7.2", memory="64M", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(64 * K)
    p.write(a, 64 * K, 7)
    p.madvise(a, 64 * K, "free")
    p.write(a + 8 * K, 4 * K, 9)
    assert m.reclaim() == 0 and m.reclaim() == 0
    assert m.stats()["pglazyfree_fail"] == 1
    assert p.pagemap(a, 64 * K)["present"].all()
    assert p.read(a, 64 * K).tolist() == [7, 7, 9] + [7] * 13
    m.check()
