"""The per-CPU TLB: LRU capacity, adversarial never-evict, invalidation, conflicts.

``RefTlb`` is the plain form of the same TLB (an ordered dict of entries by
tag, address and size, as the model kept it before it was compiled): random
operation sequences must give the same lookups, contents, LRU order and fill
stamps.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from contpte.hw.tlb import Tlb

Key = tuple[int, int, int]


def fill(t: Tlb, vpn: int, n: int = 1, asid: int = 1, level: int = 3, flag: bool = False) -> int:
    return t.insert(asid, vpn, n, 100 + vpn, 0x3, vpn, level, flag)


def test_lru_evicts_least_recently_used() -> None:
    t = Tlb(3, False, 16, 512)
    for v in range(3):
        fill(t, v)
    assert t.lookup(1, 0) >= 0  # 0 becomes most recent
    fill(t, 3)
    assert len(t) == 3
    assert t.lookup(1, 1) == -1  # 1 was least recently used
    assert [e.vbase for e in t] == [2, 0, 3]


def test_adversarial_never_evicts() -> None:
    t = Tlb(3, True, 16, 512)
    for v in range(100):
        fill(t, v)
    assert len(t) == 100


def test_block_entry_reach_and_asid_tag() -> None:
    t = Tlb(8, False, 16, 512)
    fill(t, 32, 16)
    assert all(t.lookup(1, v) >= 0 for v in range(32, 48))
    assert t.lookup(1, 48) == -1
    assert t.lookup(2, 32) == -1


def test_invalidate_range_asid_all_and_level() -> None:
    t = Tlb(64, False, 16, 512)
    fill(t, 16, 16)
    fill(t, 100)
    fill(t, 100, asid=2)
    fill(t, 1024, 512, level=2)
    assert t.invalidate_range(1, 20, 1, 0) == 1  # inside the block: whole entry goes
    assert t.invalidate_range(1, 1030, 1, 3) == 0  # TTL says level 3: the level-2 block stays
    assert t.invalidate_range(1, 1030, 1, 2) == 1
    assert t.invalidate_range(-1, 100, 1, 0) == 2  # any ASID
    fill(t, 5)
    fill(t, 6, asid=3)
    assert t.invalidate_asid(1) == 1
    assert t.invalidate_all() == 1
    assert len(t) == 0


def test_overlapping_other_sizes() -> None:
    t = Tlb(64, False, 16, 512)
    fill(t, 17)
    assert t.overlaps(1, 16, 16) == 1 and t.entry(t.last_overlap).vbase == 17
    assert t.overlaps(1, 17, 1) == 0  # same size is a replacement, not a conflict
    fill(t, 16, 16, flag=True)
    assert t.overlaps(1, 18, 1) == 1 and t.entry(t.last_overlap).npages == 16
    assert len(t.matches(1, 17)) == 2
    assert t.entry(t.lookup(1, 17)).npages == 16  # most recent fill wins
    assert t.n_flagged == 2
    t.invalidate_range(1, 17, 1, 0)  # both go (the block contains page 17)
    assert t.n_flagged == 0 and len(t) == 0


class RefTlb:
    """The TLB as a plain ordered dict (the model's form before compilation)."""

    def __init__(self, capacity: int, adversarial: bool, cont: int, region: int) -> None:
        self.capacity = capacity
        self.adversarial = adversarial
        self.sizes = sorted({1, cont, region})
        self.entries: OrderedDict[Key, list[int]] = OrderedDict()
        self.stamp = 0

    def lookup(self, asid: int, vpn: int) -> Key | None:
        best = None
        for size in self.sizes:
            k = (asid, vpn & ~(size - 1), size)
            e = self.entries.get(k)
            if e is not None and (best is None or e[-1] > self.entries[best][-1]):
                best = k
        if best is not None:
            self.entries.move_to_end(best)
        return best

    def overlaps(self, asid: int, vbase: int, npages: int) -> int:
        n = 0
        for a, v, s in self.entries:
            if a == asid and s != npages and v < vbase + npages and v + s > vbase:
                n += 1
        return n

    def insert(self, asid: int, vbase: int, npages: int, pfn: int, level: int) -> None:
        self.stamp += 1
        k = (asid, vbase, npages)
        self.entries.pop(k, None)
        self.entries[k] = [pfn, level, self.stamp]
        if not self.adversarial and len(self.entries) > self.capacity:
            self.entries.popitem(last=False)

    def invalidate(self, asid: int, vpn: int, npages: int, level: int) -> int:
        doomed = [
            k
            for k, e in self.entries.items()
            if (asid < 0 or k[0] == asid)
            and k[1] < vpn + npages
            and k[1] + k[2] > vpn
            and (level == 0 or e[1] == level)
        ]
        for k in doomed:
            del self.entries[k]
        return len(doomed)

    def invalidate_asid(self, asid: int) -> int:
        doomed = [k for k in self.entries if k[0] == asid]
        for k in doomed:
            del self.entries[k]
        return len(doomed)

    def snapshot(self) -> list[tuple[int, ...]]:
        return [(k[0], k[1], k[2], e[0], e[2]) for k, e in self.entries.items()]


def snap(t: Tlb) -> list[tuple[int, ...]]:
    return [(e.asid, e.vbase, e.npages, e.pfn_base, e.stamp) for e in t]


@settings(max_examples=120, deadline=None)
@given(
    st.integers(0, 2**32),
    st.sampled_from([1, 4, 16, 64, 5000]),
    st.booleans(),
    st.sampled_from([1, 16]),
)
def test_random_operations_equal_the_reference(
    seed: int, capacity: int, adversarial: bool, cont: int
) -> None:
    rng = np.random.default_rng(seed)
    t = Tlb(capacity, adversarial, cont, 512)
    r = RefTlb(capacity, adversarial, cont, 512)
    sizes = sorted({1, cont, 512})
    for _ in range(300):
        op = rng.integers(0, 10)
        asid = int(rng.integers(1, 3)) if rng.random() < 0.7 else 1
        vpn = int(rng.integers(0, 2048))
        if op < 4:
            size = sizes[int(rng.integers(0, len(sizes)))]
            vbase = vpn & ~(size - 1)
            level = 2 if size == 512 else 3
            n = t.overlaps(asid, vbase, size)
            assert n == r.overlaps(asid, vbase, size)
            t.insert(asid, vbase, size, vbase + 7, 3, vbase, level, n > 0)
            r.insert(asid, vbase, size, vbase + 7, level)
        elif op < 8:
            k = t.lookup(asid, vpn)
            rk = r.lookup(asid, vpn)
            assert (None if k < 0 else (asid, t.entry(k).vbase, t.entry(k).npages)) == rk
        elif op == 8:
            npages = int(rng.choice([1, 3, 16, 700, 3000]))
            level = int(rng.choice([0, 0, 2, 3]))
            a = asid if rng.random() < 0.8 else -1
            assert t.invalidate_range(a, vpn, npages, level) == r.invalidate(a, vpn, npages, level)
        elif rng.random() < 0.9:
            assert t.invalidate_asid(asid) == r.invalidate_asid(asid)
        else:
            assert t.invalidate_all() == r.invalidate(-1, 0, 1 << 37, 0)
        assert len(t) == len(r.entries)
    assert snap(t) == r.snapshot()
