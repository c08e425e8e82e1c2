"""The per-CPU TLB: LRU capacity, adversarial never-evict, invalidation."""

from __future__ import annotations

from contpte.hw.tlb import Tlb, TlbEntry


def entry(vpn: int, n: int = 1, asid: int = 1, level: int = 3) -> TlbEntry:
    return TlbEntry(asid, vpn, n, 100 + vpn, 0x3, vpn >> 9, vpn & 511, level)


def test_lru_evicts_least_recently_used() -> None:
    t = Tlb(3, False, (1, 16, 512), 512)
    for v in range(3):
        t.insert(entry(v))
    assert t.lookup(1, 0) is not None  # 0 becomes most recent
    t.insert(entry(3))
    assert len(t) == 3
    assert t.lookup(1, 1) is None  # 1 was least recently used
    assert {e.vbase for e in t} == {0, 2, 3}


def test_adversarial_never_evicts() -> None:
    t = Tlb(3, True, (1, 16, 512), 512)
    for v in range(100):
        t.insert(entry(v))
    assert len(t) == 100


def test_insert_sweep_matches_insert_one_by_one() -> None:
    for cap in (1, 5, 40, 1000):
        a = Tlb(cap, False, (1, 16, 512), 512)
        b = Tlb(cap, False, (1, 16, 512), 512)
        for v in range(1000, 1020):
            a.insert(entry(v))
            b.insert(entry(v))
        new = [entry(v) for v in range(30)]
        for e in new:
            a.insert(entry(e.vbase))
        b.insert_sweep(new)
        assert a.snapshot() == b.snapshot()
        assert [e.stamp for e in a] == [e.stamp for e in b]


def test_block_entry_reach_and_asid_tag() -> None:
    t = Tlb(8, False, (1, 16, 512), 512)
    t.insert(entry(32, 16))
    assert all(t.lookup(1, v) is not None for v in range(32, 48))
    assert t.lookup(1, 48) is None
    assert t.lookup(2, 32) is None


def test_invalidate_range_asid_all_and_level() -> None:
    t = Tlb(64, False, (1, 16, 512), 512)
    t.insert(entry(16, 16))
    t.insert(entry(100))
    t.insert(entry(100, asid=2))
    t.insert(entry(1024, 512, level=2))
    assert t.invalidate_range(1, 20, 1, None) == 1  # inside the block: whole entry goes
    assert t.invalidate_range(1, 1030, 1, 3) == 0  # TTL says level 3: the level-2 block stays
    assert t.invalidate_range(1, 1030, 1, 2) == 1
    assert t.invalidate_range(None, 100, 1, None) == 2  # any ASID
    t.insert(entry(5))
    t.insert(entry(6, asid=3))
    assert t.invalidate_asid(1) == 1
    assert t.invalidate_all() == 1
    assert len(t) == 0


def test_overlapping_other_sizes() -> None:
    t = Tlb(64, False, (1, 16, 512), 512)
    t.insert(entry(17))
    assert [e.vbase for e in t.overlapping(1, 16, 16)] == [17]
    assert t.overlapping(1, 17, 1) == []  # same size is a replacement, not a conflict
    t.insert(entry(16, 16))
    assert [e.npages for e in t.overlapping(1, 18, 1)] == [16]
    assert len(t.matches(1, 17)) == 2
    assert t.lookup(1, 17) is not None and t.lookup(1, 17).npages == 16  # most recent fill wins
