"""Helpers for the arm64 backend tests: the backend on a real Hardware, with one user mm.

``Env`` builds what the arch layer runs on (docs/core.md), without core-mm: a
``Hardware`` (its descriptor pool, TLBs and counters), an ``Arm64Pgtable``,
an address space (ASID 7) with one level-3 table, the ``MmLike``/``VmaLike``
the arch layer reads, and a toy mem_map for the fold's folio check
(``arch.folio_head``/``folio_order``).  A PTE pointer is an int:
``env.ptep(i)`` is entry ``i`` of the table.

The arch layer issues its TLBIs and DSBs straight into the compiled
hardware, so there is no instruction log to read back.  Tests observe:

- the counters (``tlbi.<op>``, ``dsb.<domain>``, ``pte.*``, ``call.*``,
  ``contpte.*``);
- ``env.trace()``: every software descriptor store in order, with the
  TLBIs and DSBs counted between two stores (``Recorder``, a store
  observer on the pool);
- TLB probes: translations planted in every CPU's TLB before an operation
  (``plant``); which of them it invalidated (``cached``) shows the ASID,
  the addresses and the level hint of its TLBIs;
- the Arm ARM rule checker (``checker=True``): a descriptor made valid
  again after a break (``break_pages`` then ``make_pages``) raises unless
  a TLBI covering it was issued after the break and completed by a DSB.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from contpte.arch.arm64.pgtable import Arm64Pgtable
from contpte.arch.arm64.pgtable_prot import PAGE_SHARED
from contpte.arch.pgtable import GatherLike, MmLike, VmaLike
from contpte.counters import Counters
from contpte.hw.features import CpuFeatures
from contpte.hw.hardware import Hardware
from contpte.hw.tables import AddressSpace, StoreObserver

#: The ASID of the Env's mm; probes of another ASID must survive its flushes.
ASID = 7
OTHER_ASID = 8
#: Frames of the Env's machine (every pfn the tests map is below).
FRAMES = 1 << 14


def cpu_features(**kw: Any) -> CpuFeatures:
    """A CPU with the given features (default: no FEAT_TLBIRANGE, no KPTI, BBM level 0, HAFDBS 2)."""
    return CpuFeatures(name="test", **kw)


def make_hw(page_shift: int = 12, features: CpuFeatures | str | None = None, **kw: Any) -> Hardware:
    """A small 2-CPU arm64 machine without the rule checker."""
    return Hardware(
        FRAMES,
        page_shift=page_shift,
        ncpus=kw.pop("ncpus", 2),
        features=features if features is not None else cpu_features(),
        fmt="vmsa",
        counters=Counters(),
        checker=kw.pop("checker", False),
        **kw,
    )


def gather(mm: MmLike, start: int, end: int, fullmm: bool = False, **flags: bool) -> GatherLike:
    """A ``struct mmu_gather`` as ``tlb_flush()`` reads it (``cleared_ptes=True``, ...)."""
    g = GatherLike(mm, fullmm)
    g.start = start
    g.end = end
    for name, value in flags.items():
        setattr(g, name, value)
    return g


class Folios:
    """A toy mem_map for the arch's folio lookup: every frame its own order-0 folio until ``add``."""

    def __init__(self, arch: Arm64Pgtable, nr_frames: int) -> None:
        self.head = np.arange(nr_frames, dtype=np.int64)
        self.order = np.zeros(nr_frames, dtype=np.int8)
        arch.folio_head = self.head
        arch.folio_order = self.order

    def add(self, first_pfn: int, nr: int) -> None:
        """Frames ``[first_pfn, first_pfn + nr)`` become folios: the fewest naturally aligned
        power-of-two ones (a folio is one), so every aligned contiguous block inside
        the range lies in a single folio, as if one folio spanned it all."""
        pfn, end = first_pfn, first_pfn + nr
        while pfn < end:
            order = 0
            while pfn % (2 << order) == 0 and pfn + (2 << order) <= end:
                order += 1
            self.head[pfn : pfn + (1 << order)] = pfn
            self.order[pfn] = order
            pfn += 1 << order


class Recorder(StoreObserver):
    """The pool's store observer: software stores in order, forwarded to ``inner`` (the rule checker)."""

    def __init__(self, env: Env, inner: StoreObserver | None) -> None:
        self.env = env
        self.inner = inner
        self.events: list[tuple[Any, ...]] = []
        self.seen: dict[str, int] = {}

    def instructions(self) -> None:
        """Log the TLBIs and DSBs issued since the last event (their order among themselves is not known)."""
        now = {k: v for k, v in self.env.c.snapshot().items() if k.startswith(("tlbi.", "dsb."))}
        delta = {k: v - self.seen.get(k, 0) for k, v in now.items() if v != self.seen.get(k, 0)}
        if delta:
            self.events.append(("instrs", delta))
        self.seen = now

    def on_store(self, ptep: int, old: int, new: int) -> None:
        self.instructions()
        self.events.append(("store", ptep - self.env.ptep0, int(new)))
        if self.inner is not None:
            self.inner.on_store(ptep, old, new)

    def on_hw_update(self, ptep: int, old: int, new: int) -> None:
        if self.inner is not None:
            self.inner.on_hw_update(ptep, old, new)

    def on_pmd_store(self, space: AddressSpace, pmd_index: int, old: int, new: int) -> None:
        if self.inner is not None:
            self.inner.on_pmd_store(space, pmd_index, old, new)

    def on_pmd_hw_update(self, space: AddressSpace, pmd_index: int, old: int, new: int) -> None:
        if self.inner is not None:
            self.inner.on_pmd_hw_update(space, pmd_index, old, new)

    def on_table_alloc(self, space: AddressSpace, pmd_index: int, slot: int) -> None:
        if self.inner is not None:
            self.inner.on_table_alloc(space, pmd_index, slot)

    def on_table_free(self, space: AddressSpace, pmd_index: int, slot: int) -> None:
        if self.inner is not None:
            self.inner.on_table_free(space, pmd_index, slot)


class Env:
    """An arm64 backend on a real 2-CPU Hardware with one user mm (ASID 7, CPU 0)."""

    def __init__(
        self,
        page_shift: int = 12,
        features: CpuFeatures | str | None = None,
        checker: bool = False,
        record: bool = True,
        asid: int = ASID,
        **options: Any,
    ) -> None:
        self.hw = make_hw(page_shift, features, checker=checker)
        self.arch = Arm64Pgtable(self.hw, page_shift=page_shift, **options)
        self.folios = Folios(self.arch, FRAMES)
        self.space = self.hw.new_space(asid)
        self.mm = MmLike(self.space)
        self.mm.cpumask = {0}
        self.vma = VmaLike(self.mm, 0, 1 << 40, 0)
        self.pool = self.hw.pool
        #: Entry 0 of the mm's level-3 table at level-2 index 1.
        self.ptep0 = self.space.alloc_pte_table(1) << self.pool.shift
        self.base = self.pool.va(self.ptep0)
        self.recorder: Recorder | None = None
        if record:
            self.recorder = Recorder(self, self.pool.observer)
            self.pool.observer = self.recorder

    @property
    def c(self) -> Counters:
        return self.hw.counters

    def ptep(self, idx: int) -> int:
        return self.ptep0 + idx

    def addr(self, idx: int) -> int:
        return self.base + idx * self.arch.PAGE_SIZE

    def raw(self, idx: int, nr: int = 1) -> list[int]:
        return [int(self.pool.peek(self.ptep0 + i)) for i in range(idx, idx + nr)]

    def poke(self, idx: int, set_bits: int = 0, clear_bits: int = 0) -> None:
        """Change a descriptor behind software's back (a hardware A/D update, a bug)."""
        self.pool.poke(self.ptep(idx), (self.raw(idx)[0] | set_bits) & ~clear_bits)

    def prot(self, write: bool = True, dirty: bool = False, young: bool = True) -> int:
        from contpte.arch.arm64.pgtable_prot import VM_READ, VM_SHARED, VM_WRITE

        a = self.arch
        p = a.vm_get_page_prot(VM_READ | VM_WRITE | VM_SHARED) if write else a.vm_get_page_prot(VM_READ)
        assert not write or p == PAGE_SHARED
        if dirty:
            p = a.pte_mkdirty(p)
        if not young:
            p = a.pte_mkold(p)
        return p

    def map(self, idx: int, pfn: int, nr: int, folio: tuple[int, int] | None = None, **kw: Any) -> None:
        """set_ptes() ``nr`` pages; registers the folio (default: exactly these pages)."""
        first, n = folio if folio is not None else (pfn, nr)
        self.folios.add(first, n)
        self.arch.set_ptes(
            self.mm, self.addr(idx), self.ptep(idx), self.arch.pfn_pte(pfn, self.prot(**kw)), nr
        )

    def clear_log(self) -> None:
        """Forget the counters and the store trace so far."""
        self.hw.counters.reset()
        if self.recorder is not None:
            self.recorder.events.clear()
            self.recorder.seen = {}

    # -- observing ------------------------------------------------------------
    def trace(self) -> list[tuple[Any, ...]]:
        """Since ``clear_log``: ``("store", idx, new)`` per software store, in order, and
        ``("instrs", {counter: n})`` for the TLBIs and DSBs issued between two stores."""
        assert self.recorder is not None
        self.recorder.instructions()
        return list(self.recorder.events)

    def instructions(self) -> dict[str, int]:
        """The TLBIs and DSBs counted since ``clear_log`` (``{"tlbi.VALE1IS": 3, "dsb.ish": 1}``)."""
        return {k: v for k, v in self.c.snapshot().items() if k.startswith(("tlbi.", "dsb."))}

    def plant(self, va: int, level: int = 3, asid: int = ASID) -> None:
        """Cache a translation of ``va`` in every CPU's TLB: a page (level 3) or the level-2 block around it."""
        vpn = va >> self.arch.PAGE_SHIFT
        npages = 1 if level == 3 else self.arch.PTRS_PER_PTE
        for t in self.hw.tlbs:
            t.insert(asid, vpn & ~(npages - 1), npages, 0, 0, -1, level, False)

    def cached(self, va: int, level: int = 3, asid: int = ASID) -> bool:
        """Is the translation ``plant`` cached still in the TLBs (every CPU agrees: TLBIs broadcast)?"""
        vpn = va >> self.arch.PAGE_SHIFT
        npages = 1 if level == 3 else self.arch.PTRS_PER_PTE
        held = {t.find(asid, vpn & ~(npages - 1), npages) >= 0 for t in self.hw.tlbs}
        assert len(held) == 1, f"CPUs disagree about {va:#x} level {level} ASID {asid}"
        return held.pop()

    def plant_pages(self, va: int, nr: int, level: int = 3, asid: int = ASID) -> None:
        for i in range(nr):
            self.plant(va + i * self.arch.PAGE_SIZE, level, asid)

    def flushed_pages(self, va: int, nr: int, level: int = 3, asid: int = ASID) -> list[int]:
        """The pages of ``[va, va + nr pages)`` whose planted translation is gone."""
        step = self.arch.PAGE_SIZE
        return [va + i * step for i in range(nr) if not self.cached(va + i * step, level, asid)]

    def break_pages(self, va: int, nr: int) -> None:
        """Map ``nr`` writable pages at ``va`` then break them (store 0), as a kernel about to
        flush would: with the rule checker on, ``make_pages`` then wants them flushed."""
        ptep = self._ptep_of(va)
        a = self.arch
        for i in range(nr):
            self.pool.store(ptep + i, a.pfn_pte(1000 + i, PAGE_SHARED))
        for i in range(nr):
            self.pool.xchg(ptep + i, 0)

    def make_pages(self, va: int, nr: int) -> None:
        """Map the broken pages to other frames: the rule checker raises unless a TLBI covering
        each was issued after its break and completed by a DSB."""
        ptep = self._ptep_of(va)
        a = self.arch
        for i in range(nr):
            self.pool.store(ptep + i, a.pfn_pte(2000 + i, PAGE_SHARED))

    def _ptep_of(self, va: int) -> int:
        slot = self.space.alloc_pte_table(va >> self.arch.PMD_SHIFT)
        return (slot << self.pool.shift) | ((va >> self.arch.PAGE_SHIFT) & (self.arch.PTRS_PER_PTE - 1))
