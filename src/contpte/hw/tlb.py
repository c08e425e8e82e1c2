"""Per-CPU TLB: cached translations tagged by ASID.

An entry covers ``npages`` pages from ``vbase`` (both in pages): 1 for a
page, the contiguous-set size for a Contiguous block when the CPU caches it
as one entry (Arm ARM D8.7.1 permits either), or a whole level-2 block.
Each entry records which descriptor produced it (level-2 index and level-3
table index), because a hardware Access flag or dirty update lands on that
descriptor, which may be another page of the block (Arm ARM D8.5.5 IQDCMP).

Replacement is LRU with the CPU's capacity, or ``adversarial``: never evict,
so every missing invalidation stays visible.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator

__all__ = ["TlbEntry", "Tlb", "TlbKey"]

TlbKey = tuple[int, int, int]  # (asid, vbase, npages)


class TlbEntry:
    """One cached translation.

    ``asid``: ASID tag.  ``vbase``/``npages``: covered VA range in pages.
    ``pfn_base``: output address of ``vbase``, in pages.  ``desc``: the
    descriptor value as cached (after any hardware A/D update).
    ``pmd_index``/``idx``: the producing descriptor (``idx`` is -1 for a
    level-2 block).  ``level``: lookup level of the leaf (2 or 3).
    ``stamp``: fill order, to choose among overlapping entries.
    """

    __slots__ = ("asid", "vbase", "npages", "pfn_base", "desc", "pmd_index", "idx", "level", "stamp")

    def __init__(
        self,
        asid: int,
        vbase: int,
        npages: int,
        pfn_base: int,
        desc: int,
        pmd_index: int,
        idx: int,
        level: int,
        stamp: int = 0,
    ) -> None:
        self.asid = asid
        self.vbase = vbase
        self.npages = npages
        self.pfn_base = pfn_base
        self.desc = desc
        self.pmd_index = pmd_index
        self.idx = idx
        self.level = level
        self.stamp = stamp

    @property
    def key(self) -> TlbKey:
        return (self.asid, self.vbase, self.npages)

    def pfn_of(self, vpn: int) -> int:
        """Output page of ``vpn`` (which the entry must cover)."""
        return self.pfn_base + (vpn - self.vbase)

    def as_tuple(self) -> tuple[int, ...]:
        """Every field but the stamp (for comparisons in tests)."""
        return (
            self.asid,
            self.vbase,
            self.npages,
            self.pfn_base,
            self.desc,
            self.pmd_index,
            self.idx,
            self.level,
        )

    def __repr__(self) -> str:
        return (
            f"TlbEntry(asid={self.asid}, va={self.vbase:#x}p, n={self.npages}, pfn={self.pfn_base:#x}, "
            f"desc={self.desc:#018x}, from=({self.pmd_index:#x},{self.idx}), L{self.level})"
        )


class Tlb:
    """The unified TLB of one CPU.

    ``sizes``: the entry sizes (pages) that may exist, smallest first.
    ``region_pages``: pages per level-2 region; no entry spans two regions.
    """

    def __init__(self, capacity: int, adversarial: bool, sizes: tuple[int, ...], region_pages: int) -> None:
        self.capacity = capacity
        self.adversarial = adversarial
        self.sizes = sizes
        self.region_pages = region_pages
        self._region_shift = region_pages.bit_length() - 1
        self.entries: OrderedDict[TlbKey, TlbEntry] = OrderedDict()
        # (asid, region) -> keys of the entries in that region; asid -> its regions
        self._regions: dict[tuple[int, int], dict[TlbKey, None]] = {}
        self._asid_regions: dict[int, set[int]] = {}
        self.stamp = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[TlbEntry]:
        return iter(self.entries.values())

    # -- bookkeeping -----------------------------------------------------
    def _index_add(self, key: TlbKey) -> None:
        asid, vbase, _ = key
        region = vbase >> self._region_shift
        rk = (asid, region)
        keys = self._regions.get(rk)
        if keys is None:
            keys = {}
            self._regions[rk] = keys
            self._asid_regions.setdefault(asid, set()).add(region)
        keys[key] = None

    def _index_remove(self, key: TlbKey) -> None:
        asid, vbase, _ = key
        region = vbase >> self._region_shift
        rk = (asid, region)
        keys = self._regions[rk]
        del keys[key]
        if not keys:
            del self._regions[rk]
            regions = self._asid_regions[asid]
            regions.discard(region)
            if not regions:
                del self._asid_regions[asid]

    def region_busy(self, asid: int, region: int) -> bool:
        """Does any entry of ``asid`` lie in level-2 region ``region``?"""
        return (asid, region) in self._regions

    # -- lookup ------------------------------------------------------------
    def matches(self, asid: int, vpn: int) -> list[TlbEntry]:
        """Every entry of ``asid`` covering ``vpn`` (no LRU update)."""
        out = []
        ents = self.entries
        for size in self.sizes:
            e = ents.get((asid, vpn & ~(size - 1), size))
            if e is not None:
                out.append(e)
        return out

    def lookup(self, asid: int, vpn: int) -> TlbEntry | None:
        """The entry used for ``vpn``, made most recently used.

        With several matches (a TLB conflict) the most recently filled one
        is used: one CONSTRAINED UNPREDICTABLE choice among the programmed
        translations (Arm ARM D8.7.1.2 RNGLXZ (a)).
        """
        ents = self.entries
        best: TlbEntry | None = None
        for size in self.sizes:
            e = ents.get((asid, vpn & ~(size - 1), size))
            if e is not None and (best is None or e.stamp > best.stamp):
                best = e
        if best is not None:
            ents.move_to_end(best.key)
        return best

    def overlapping(self, asid: int, vbase: int, npages: int) -> list[TlbEntry]:
        """Entries of ``asid`` of another size that overlap ``[vbase, vbase+npages)``."""
        out = []
        ents = self.entries
        for size in self.sizes:
            if size == npages:
                continue
            if size > npages:
                e = ents.get((asid, vbase & ~(size - 1), size))
                if e is not None:
                    out.append(e)
            else:
                region = vbase >> self._region_shift
                keys = self._regions.get((asid, region))
                if not keys:
                    continue
                if npages // size > len(keys):
                    for k in keys:
                        if k[2] == size and vbase <= k[1] < vbase + npages:
                            out.append(ents[k])
                else:
                    for b in range(vbase, vbase + npages, size):
                        e = ents.get((asid, b, size))
                        if e is not None:
                            out.append(e)
        return out

    # -- fill and evict ----------------------------------------------------
    def insert(self, entry: TlbEntry) -> None:
        """Fill ``entry`` (replacing one with the same key); evict LRU when full."""
        self.stamp += 1
        entry.stamp = self.stamp
        key = entry.key
        ents = self.entries
        if key in ents:
            del ents[key]
        else:
            self._index_add(key)
        ents[key] = entry
        if not self.adversarial and len(ents) > self.capacity:
            self._evict(len(ents) - self.capacity)

    def insert_sweep(self, new: list[TlbEntry], skipped: int = 0) -> None:
        """Fill ``skipped`` entries then ``new`` in order, none touched again.

        The end state of ``insert`` on each.  Preconditions: the keys are
        distinct, none is present, and all lie in one level-2 region.  With
        LRU only the last ``capacity`` fills can survive: the caller may pass
        just those and count the earlier ones in ``skipped``.
        """
        if not new:
            self.stamp += skipped
            return
        if not self.adversarial and len(new) > self.capacity:
            skipped += len(new) - self.capacity
            new = new[len(new) - self.capacity :]
        base = self.stamp + skipped
        self.stamp = base + len(new)
        ents = self.entries
        e0 = new[0]
        rk = (e0.asid, e0.vbase >> self._region_shift)
        keys = self._regions.get(rk)
        if keys is None:
            keys = {}
            self._regions[rk] = keys
            self._asid_regions.setdefault(rk[0], set()).add(rk[1])
        for n, e in enumerate(new, base + 1):
            e.stamp = n
            key = (e.asid, e.vbase, e.npages)
            ents[key] = e
            keys[key] = None
        if not self.adversarial and len(ents) > self.capacity:
            self._evict(len(ents) - self.capacity)

    def _evict(self, count: int) -> None:
        """Evict the ``count`` least recently used entries."""
        ents = self.entries
        regions = self._regions
        shift = self._region_shift
        for _ in range(count):
            key, _e = ents.popitem(last=False)
            rk = (key[0], key[1] >> shift)
            keys = regions[rk]
            del keys[key]
            if not keys:
                del regions[rk]
                rs = self._asid_regions[rk[0]]
                rs.discard(rk[1])
                if not rs:
                    del self._asid_regions[rk[0]]

    def remove(self, entry: TlbEntry) -> None:
        """Drop ``entry`` if present."""
        key = entry.key
        if self.entries.pop(key, None) is not None:
            self._index_remove(key)

    # -- invalidation (TLBI) -----------------------------------------------
    def _drop_keys(self, keys: list[TlbKey]) -> int:
        for k in keys:
            del self.entries[k]
            self._index_remove(k)
        return len(keys)

    def invalidate_range(self, asid: int | None, vpn: int, npages: int, level: int | None) -> int:
        """Drop entries overlapping ``[vpn, vpn+npages)``; ``asid=None``: any ASID.

        ``level``: only entries of that lookup level (TTL hint), None: any.
        Returns the number dropped.
        """
        end = vpn + npages
        rs = self._region_shift
        first, last = vpn >> rs, (end - 1) >> rs
        asids = [asid] if asid is not None else list(self._asid_regions)
        doomed: list[TlbKey] = []
        for a in asids:
            regions = self._asid_regions.get(a)
            if not regions:
                continue
            if last - first + 1 <= len(regions):
                cands: Iterable[int] = range(first, last + 1)
            else:
                cands = [r for r in regions if first <= r <= last]
            for r in cands:
                keys = self._regions.get((a, r))
                if not keys:
                    continue
                for k in keys:
                    if k[1] < end and k[1] + k[2] > vpn and (level is None or self.entries[k].level == level):
                        doomed.append(k)
        return self._drop_keys(doomed)

    def invalidate_asid(self, asid: int) -> int:
        """Drop every entry tagged ``asid`` (TLBI ASIDE1)."""
        regions = self._asid_regions.get(asid)
        if not regions:
            return 0
        doomed = [k for r in list(regions) for k in self._regions[(asid, r)]]
        return self._drop_keys(doomed)

    def invalidate_all(self) -> int:
        """Drop every entry (TLBI VMALLE1)."""
        n = len(self.entries)
        self.entries.clear()
        self._regions.clear()
        self._asid_regions.clear()
        return n

    def snapshot(self) -> list[tuple[int, ...]]:
        """Entries in LRU order, as tuples (tests compare these)."""
        return [e.as_tuple() for e in self.entries.values()]
