"""Translation tables: the descriptor memory walked by the MMU.

One ``AddressSpace`` per stage-1 regime (a process: a root table and an
ASID).  Only the last two levels are materialised: level-2 entries
(``pmds``: block descriptors, or absent) and level-3 tables (``tables``: one
``numpy.uint64`` array of ``ptrs_per_pte`` descriptors per table), both
sparse dicts keyed by the level-2 index ``va >> pmd_shift``.  Nothing is
allocated for unmapped VA.

Every software access to a descriptor goes through a ``PteTable`` method so
that it is counted (``pte.read``/``pte.write``/``pte.atomic``) and, when the
rule checker is on, observed with its old and new value.  ``entries`` is a
read-only view: every write goes through a ``PteTable`` method (the walker's
A/D updates through ``hw_store``, a test's write behind the model's back
through ``poke``), so that the store log below sees it.

Store log (``AddressSpace.log``, set by the validators): while it is a
list, the first write of an epoch to a table appends the table to it and
keeps the table's descriptors from before that write in ``PteTable.old``
(copy on first write; None for a table allocated in the epoch, all zero
before).  ``AddressSpace.new_epoch`` forgets those copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

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
    as ``pte.write``); ``on_store_many(stores, news)`` for
    ``PteTable.store_bulk_tables`` and ``on_pmd_store_many(groups)`` for
    ``AddressSpace.pmd_store_lockstep``.
    """

    def on_store(self, table: "PteTable", idx: int, old: np.ndarray, new: np.ndarray) -> None:
        """``nr`` descriptors at ``idx`` changed from ``old`` to ``new`` (arrays)."""


_SCRATCH: list[np.ndarray] = [np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64)]


def _scratch(k: int, size: int) -> np.ndarray:
    """Kept scratch array ``k`` of ``size`` descriptors (a fresh array of
    megabytes costs a page fault per page on every bulk store)."""
    b = _SCRATCH[k]
    if len(b) < size:
        b = np.empty(max(size, 2 * len(b)), dtype=np.uint64)
        _SCRATCH[k] = b
    return b[:size]


class PteTable:
    """One level-3 translation table (``ptrs_per_pte`` descriptors)."""

    __slots__ = ("entries", "_e", "space", "pmd_index", "chk", "seen", "old")

    def __init__(self, space: "AddressSpace", pmd_index: int) -> None:
        #: the descriptors (writable alias: ``_e``, written only by the methods below)
        self._e = np.zeros(space.ptrs_per_pte, dtype=np.uint64)
        self.entries = self._e.view()
        self.entries.flags.writeable = False
        self.space = space
        self.pmd_index = pmd_index
        #: The rule checker's record of this table (its own business; None
        #: or stale until the checker sets it).
        self.chk: Any = None
        #: the store log this table is in (``space.log`` at its first write
        #: of the epoch) and its descriptors from before that write (None:
        #: all zero, or not logged)
        self.seen: list["PteTable"] | None = None
        self.old: np.ndarray | None = None
        log = space.log
        if log is not None:
            self.seen = log
            log.append(self)

    def _log(self) -> None:
        """Before a write: copy the descriptors if this is the table's first of the epoch."""
        log = self.space.log
        if log is not None and self.seen is not log:
            self.seen = log
            self.old = self._e.copy()
            log.append(self)

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
        if self.space.log is not None:
            self._log()
        if obs:
            old = self._e[idx : idx + 1].copy()
            self._e[idx] = np.uint64(value)
            new = self._e[idx : idx + 1].copy()
            for o in obs:
                o.on_store(self, idx, old, new)
        else:
            self._e[idx] = np.uint64(value)

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
        if self.space.log is not None:
            self._log()
        if obs:
            old = self._e[idx : idx + nr].copy()
            self._e[idx : idx + nr] = values
            for o in obs:
                o.on_store(self, idx, old, values.astype(np.uint64, copy=True))
        else:
            self._e[idx : idx + nr] = values

    def hw_store(self, idx: int, values: Any) -> None:
        """The walker's Access flag / dirty update of the descriptors from
        ``idx`` (one value or an array): not counted, not observed (the
        caller tells the observers ``on_hw_update``), logged."""
        if self.space.log is not None:
            self._log()
        if isinstance(values, np.ndarray):
            self._e[idx : idx + len(values)] = values
        else:
            self._e[idx] = np.uint64(values)

    def poke(self, idx: int, value: Any) -> None:
        """Tests: write a descriptor (or an array of them from ``idx``) behind
        the model's back: not counted, not told to the observers; logged,
        as memory written by anyone."""
        if self.space.log is not None:
            self._log()
        if isinstance(value, np.ndarray):
            self._e[idx : idx + len(value)] = value
        else:
            self._e[idx] = np.uint64(value)

    @staticmethod
    def store_bulk_tables(stores: list[tuple["PteTable", int, np.ndarray]]) -> None:
        """``store_bulk(idx, values)`` of each ``(table, idx, values)`` (distinct
        tables of address spaces with the same observers), the observers told of all at once.

        An observer with ``on_store_many(stores, news)`` hears them before
        the stores land (it reads the old values from the tables itself;
        the stores land even if it raises); the others hear ``on_store``
        each, after.  ``news`` is the new values concatenated, in a kept
        scratch array (valid during the call, read-only), or in the array
        a lone observer with ``news_buffer(size)`` lends (which it may keep).
        """
        if not stores:
            return
        obs = stores[0][0].space.observers
        tabs = [st[0] for st in stores]
        vals = [st[2] for st in stores]
        n = tabs[0].space.ptrs_per_pte
        total = sum(map(len, vals))
        whole = total == n * len(stores) and [st[1] for st in stores].count(0) == len(stores)
        news = olds = None
        if obs:
            lend = getattr(obs[0], "news_buffer", None) if len(obs) == 1 else None
            news = np.concatenate(
                vals, out=lend(total) if lend is not None else _scratch(1, total), casting="unsafe"
            )
            if any(getattr(o, "on_store_many", None) is None for o in obs):
                olds = np.concatenate(
                    [t.entries[i : i + len(v)] for t, i, v in stores], out=_scratch(0, total)
                )
        try:
            for o in obs:
                many = getattr(o, "on_store_many", None)
                if many is not None:
                    many(stores, news)
        finally:
            if tabs[0].space.log is not None or any(t.space.log is not None for t in tabs):
                for t in tabs:
                    t._log()
            if whole:
                for t, v in zip(tabs, vals, strict=True):
                    t._e[:] = v
            else:
                for t, idx, v in stores:
                    t._e[idx : idx + len(v)] = v
        for o in obs:
            if getattr(o, "on_store_many", None) is None:
                assert olds is not None and news is not None
                off = 0
                for t, idx, values in stores:
                    nr = len(values)
                    o.on_store(t, idx, olds[off : off + nr].copy(), news[off : off + nr].copy())
                    off += nr

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
        "log",
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
        #: The store log of this epoch (module docstring), or None.
        self.log: list[PteTable] | None = None

    def new_epoch(self) -> None:
        """Start a store log (or a new epoch of it): forget the old copies."""
        log = self.log
        if log:
            for t in log:
                t.old = None
                t.seen = None
        self.log = []

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
            if self.log is not None:
                t._log()  # its descriptors when it was unhooked
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

    def pmd_store_many(self, idxs: list[int], values: list[int]) -> None:
        """``pmd_store(i, v)`` of each ``i, v`` in order (see ``pmd_store_lockstep``)."""
        AddressSpace.pmd_store_lockstep([(self, idxs, values)])

    @staticmethod
    def pmd_store_lockstep(groups: list[tuple["AddressSpace", list[int], list[int]]]) -> None:
        """``space.pmd_store(idxs[k], values[k])`` for k = 0, 1, ..., of each group in turn.

        The same ``pmd.write`` counts and level-2 descriptors as that loop.
        With one observer that has ``on_pmd_store_many(groups)`` (groups
        as (space, idxs, olds, news)) and distinct (space, index) pairs,
        it hears all stores at once, before any is made; when it declines
        (returns False, nothing changed) or anything else, the loop runs.
        """
        groups = [g for g in groups if len(g[1])]
        if not groups:
            return
        m = len(groups[0][1])
        obs = groups[0][0].observers
        bulk = (
            len(obs) <= 1
            and all(len(i) == m and len(v) == m and s.observers == obs for s, i, v in groups)
            and len({id(s) for s, _, _ in groups}) == len(groups)
            and all(len(set(i)) == m for _, i, _ in groups)
        )
        many = getattr(obs[0], "on_pmd_store_many", None) if bulk and obs else None
        if bulk and (not obs or many is not None):
            full = [
                (s, list(i), [s.pmds.get(x, 0) for x in i], [int(v) for v in vals]) for s, i, vals in groups
            ]
            if many is None or many(full):
                # distinct (space, index) pairs: the order of the stores is the observer's business
                for s, i, _olds, vals in full:
                    s.counters.add("pmd.write", m)
                    pmds = s.pmds
                    for x, v in zip(i, vals, strict=True):
                        if v:
                            pmds[x] = v
                        else:
                            pmds.pop(x, None)
                return
        for k in range(max(len(g[1]) for g in groups)):
            for s, i, vals in groups:
                if k < len(i):
                    s.pmd_store(i[k], vals[k])
