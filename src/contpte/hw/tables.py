"""Translation tables: the descriptor memory walked by the MMU.

One ``AddressSpace`` per stage-1 regime (a process: a root table and an
ASID).  Only the last two levels are materialised: level-2 entries
(``pmds``: block descriptors, or absent) and level-3 tables (``tables``: one
``numpy.uint64`` array of ``ptrs_per_pte`` descriptors per table), both
sparse dicts keyed by the level-2 index ``va >> pmd_shift``.  Nothing is
allocated for unmapped VA.

Every software access to a descriptor goes through a ``PteTable`` method so
that it is counted (``pte.read``/``pte.write``/``pte.atomic``) and, when the
rule checker is on, observed with its old and new value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from ..counters import Counters

__all__ = ["StoreObserver", "PteTable", "AddressSpace"]


class StoreObserver(Protocol):
    """Something that watches descriptor stores (the rule checker, TLB model).

    Optional hooks, called when the observer has them (``getattr``):
    ``on_pmd_store(space, pmd_index, old, new)`` for level-2 stores,
    ``on_table_free(space, pmd_index, table)`` when a level-3 table is
    unhooked, ``on_hw_update(table, idx, old, new)`` and
    ``on_pmd_hw_update(space, pmd_index, old, new)`` for the walker's
    hardware Access flag / dirty updates (not software stores, not counted
    as ``pte.write``).
    """

    def on_store(self, table: "PteTable", idx: int, old: np.ndarray, new: np.ndarray) -> None:
        """``nr`` descriptors at ``idx`` changed from ``old`` to ``new`` (arrays)."""


class PteTable:
    """One level-3 translation table (``ptrs_per_pte`` descriptors)."""

    __slots__ = ("entries", "space", "pmd_index")

    def __init__(self, space: "AddressSpace", pmd_index: int) -> None:
        self.entries = np.zeros(space.ptrs_per_pte, dtype=np.uint64)
        self.space = space
        self.pmd_index = pmd_index

    # -- address helpers -------------------------------------------------
    def va(self, idx: int) -> int:
        """Virtual address mapped by entry ``idx``."""
        return (self.pmd_index << self.space.pmd_shift) | (idx << self.space.page_shift)

    # -- software accesses (counted, observed) ----------------------------
    def load(self, idx: int) -> int:
        self.space.counters.add("pte.read")
        return int(self.entries[idx])

    def load_many(self, idx: int, nr: int) -> np.ndarray:
        """A copy of ``nr`` descriptors from ``idx``."""
        self.space.counters.add("pte.read", nr)
        return self.entries[idx : idx + nr].copy()

    def store(self, idx: int, value: int) -> None:
        self.space.counters.add("pte.write")
        obs = self.space.observers
        if obs:
            old = self.entries[idx : idx + 1].copy()
            self.entries[idx] = np.uint64(value)
            new = self.entries[idx : idx + 1].copy()
            for o in obs:
                o.on_store(self, idx, old, new)
        else:
            self.entries[idx] = np.uint64(value)

    def store_many(self, idx: int, values: np.ndarray) -> None:
        """Store ``values`` from ``idx``: ``len(values)`` counted, observed stores."""
        self.space.counters.add("pte.write", len(values))
        self.store_bulk(idx, values)

    def store_bulk(self, idx: int, values: np.ndarray) -> None:
        """Store ``values`` from ``idx`` for a bulk path that stands for several
        software stores and counts their ``pte.write``/``pte.atomic`` itself.

        Observed like ``store_many`` (unchanged entries are no change to an
        observer).
        """
        nr = len(values)
        obs = self.space.observers
        if obs:
            old = self.entries[idx : idx + nr].copy()
            self.entries[idx : idx + nr] = values
            for o in obs:
                o.on_store(self, idx, old, values.astype(np.uint64, copy=True))
        else:
            self.entries[idx : idx + nr] = values

    @staticmethod
    def store_bulk_tables(stores: list[tuple["PteTable", int, np.ndarray]]) -> None:
        """``store_bulk(idx, values)`` of each ``(table, idx, values)`` (distinct
        tables of address spaces with the same observers), the observers told of all at once
        (``on_store_many`` where an observer has it, else ``on_store`` each).
        """
        if not stores:
            return
        obs = stores[0][0].space.observers
        if not obs:
            for t, idx, values in stores:
                t.entries[idx : idx + len(values)] = values
            return
        olds = np.concatenate([t.entries[idx : idx + len(values)] for t, idx, values in stores])
        news = np.concatenate([values for _, _, values in stores]).astype(np.uint64, copy=False)
        seen: list[tuple["PteTable", int, np.ndarray, np.ndarray]] = []
        off = 0
        for t, idx, values in stores:
            nr = len(values)
            t.entries[idx : idx + nr] = values
            seen.append((t, idx, olds[off : off + nr], news[off : off + nr]))
            off += nr
        for o in obs:
            many = getattr(o, "on_store_many", None)
            if many is not None:
                many(seen, olds, news)
            else:
                for t, idx, old, new in seen:
                    o.on_store(t, idx, old.copy(), new.copy())

    def xchg(self, idx: int, value: int) -> int:
        """Atomically swap in ``value``; return the old descriptor."""
        self.space.counters.add("pte.atomic")
        old = int(self.entries[idx])
        self.store(idx, value)
        return old

    def cmpxchg(self, idx: int, expected: int, value: int) -> bool:
        """Atomic compare-and-swap (the model is sequential: it succeeds iff equal)."""
        self.space.counters.add("pte.atomic")
        if int(self.entries[idx]) != expected:
            self.space.counters.add("pte.read")
            return False
        self.store(idx, value)
        return True

    def none_count(self, idx: int, nr: int) -> int:
        """How many of ``nr`` entries from ``idx`` are zero (counts the reads)."""
        self.space.counters.add("pte.read", nr)
        return int(np.count_nonzero(self.entries[idx : idx + nr] == 0))


class AddressSpace:
    """A stage-1 translation regime: sparse level-2/level-3 tables and an ASID."""

    __slots__ = (
        "asid",
        "name",
        "page_shift",
        "ptrs_per_pte",
        "pmd_shift",
        "tables",
        "pmds",
        "counters",
        "observers",
    )

    def __init__(
        self,
        asid: int,
        page_shift: int,
        counters: "Counters",
        observers: list[StoreObserver] | None = None,
        name: str = "",
    ) -> None:
        self.asid = asid
        self.name = name or f"asid {asid}"
        self.page_shift = page_shift
        self.ptrs_per_pte = 1 << (page_shift - 3)
        self.pmd_shift = page_shift + (page_shift - 3)
        self.tables: dict[int, PteTable] = {}
        self.pmds: dict[int, int] = {}
        self.counters = counters
        self.observers: list[StoreObserver] = observers if observers is not None else []

    def pte_table(self, pmd_index: int) -> PteTable | None:
        return self.tables.get(pmd_index)

    def alloc_pte_table(self, pmd_index: int) -> PteTable:
        """Return the level-3 table for ``pmd_index``, allocating it if needed."""
        t = self.tables.get(pmd_index)
        if t is None:
            t = PteTable(self, pmd_index)
            self.tables[pmd_index] = t
        return t

    def free_pte_table(self, pmd_index: int) -> None:
        """Unhook the level-3 table of ``pmd_index`` (observers hear ``on_table_free``)."""
        t = self.tables.pop(pmd_index, None)
        if t is not None:
            for o in self.observers:
                hook = getattr(o, "on_table_free", None)
                if hook is not None:
                    hook(self, pmd_index, t)

    def pmd_load(self, pmd_index: int) -> int:
        """The level-2 block descriptor at ``pmd_index`` (0 if none)."""
        self.counters.add("pte.read")
        return self.pmds.get(pmd_index, 0)

    def pmd_store(self, pmd_index: int, value: int) -> None:
        """Store a level-2 descriptor (observers hear ``on_pmd_store``)."""
        self.counters.add("pmd.write")
        old = self.pmds.get(pmd_index, 0)
        for o in self.observers:
            hook = getattr(o, "on_pmd_store", None)
            if hook is not None:
                hook(self, pmd_index, old, value)
        if value:
            self.pmds[pmd_index] = value
        else:
            self.pmds.pop(pmd_index, None)
