"""Translation tables: the descriptor memory walked by the MMU.

One ``PtePool`` per machine holds every level-3 table of every address
space, as the kernel's page-table pages are frames of one physical memory:
table *slot* ``s`` is ``e[s << shift : (s + 1) << shift]`` (``shift`` =
log2 of the descriptors per table).  A descriptor's address is an int,
``ptep = (s << shift) | index`` -- the model's ``pte_t *``: ``ptep + 1`` is
the next entry, as in C.  Slots are reused when tables are freed; the pool
grows (by half) when it runs out, so a numpy view of ``e`` is valid only
until the next ``alloc_pte_table`` (the kernel allocates tables before it
takes the PTL; the model's code takes its views after).

One ``AddressSpace`` per stage-1 regime (a process: an ASID): its level-3
tables (``tables``: level-2 index -> slot) and level-2 block descriptors
(``pmds``: level-2 index -> value), both sparse.  Nothing is allocated for
unmapped VA.

Every software access to a descriptor goes through a ``PtePool`` method so
that it is counted (``pte.read``/``pte.write``/``pte.atomic``) and, when a
``StoreObserver`` is installed (the rule checker), observed with its old
and new value: ``load``, ``store``, ``xchg``, ``cmpxchg``.  ``peek`` reads
without counting (model-internal: the walker, validators); ``hw_store`` is
the walker's Access flag / dirty update (not counted, observed as such);
``poke`` writes behind everyone's back (tests).

Store log (for the validators): after ``new_epoch()``, the first write of
an epoch to a table (and every table allocated or freed in it) appends a
``LogEntry`` that keeps a copy of the table's descriptors from before the
write (in one arena, ``log_old``: row ``old_at`` of the epoch); every
level-2 store appends ``(space, pmd_index, old value)`` to ``pmd_log``;
``changes()`` gives each changed table's old and new descriptors.
``new_epoch()`` forgets them; ``stop_log()`` turns logging off.

Compiled (docs/core.md).  Models nothing of Linux; Arm ARM D8.2 (tables).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cython
import numpy as np

from ..errors import ModelUsageError

if not cython.compiled:
    from ..cdefs import U64View, i64, u64
    from ..counters import PMD_WRITE, PTE_ATOMIC, PTE_READ, PTE_WRITE, Counters, count

__all__ = ["StoreObserver", "PtePool", "AddressSpace", "LogEntry"]


@cython.cclass
class StoreObserver:
    """Something that watches descriptor memory (the rule checker).

    Subclasses override what they need; the base ignores everything.
    Stores are told after they landed, with the old and the new value.
    """

    @cython.ccall
    def on_store(self, ptep: i64, old: u64, new: u64) -> None:
        """Software store of descriptor ``ptep`` (counted as ``pte.write``)."""

    @cython.ccall
    def on_hw_update(self, ptep: i64, old: u64, new: u64) -> None:
        """The walker's hardware Access flag / dirty update of ``ptep``."""

    @cython.ccall
    def on_pmd_store(self, space: AddressSpace, pmd_index: i64, old: u64, new: u64) -> None:
        """Software store of the level-2 descriptor ``pmd_index`` of ``space``."""

    @cython.ccall
    def on_pmd_hw_update(self, space: AddressSpace, pmd_index: i64, old: u64, new: u64) -> None:
        """The walker's Access flag / dirty update of a level-2 block descriptor."""

    @cython.ccall
    def on_table_alloc(self, space: AddressSpace, pmd_index: i64, slot: i64) -> None:
        """A level-3 table was hooked in at ``pmd_index`` of ``space``: a new one (all zero), or
        one unhooked earlier that comes back with its entries (khugepaged's ``pmd_populate``)."""

    @cython.ccall
    def on_table_free(self, space: AddressSpace, pmd_index: i64, slot: i64) -> None:
        """The level-3 table at ``pmd_index`` is about to be unhooked (still readable; it may be
        freed, or written while out of the walker's reach and hooked in again)."""

    @cython.ccall
    def on_table_move(self, space: AddressSpace, old_index: i64, pmd_index: i64, slot: i64) -> None:
        """A populated level-3 table unhooked from ``old_index`` was hooked in at ``pmd_index``.

        Its descriptors are unchanged (mremap's ``move_normal_pmd()``); the
        unhook was told by ``on_table_free`` first.
        """


@cython.cclass
class LogEntry:
    """One table in the store log of an epoch.

    ``old_at``: the row of ``pool.log_old`` holding its descriptors before
    the epoch's first write (-1: all zero, the table was allocated in the
    epoch); ``old`` is that row as a read-only array (None for -1).
    ``alive``: the table is still hooked in (False: freed in the epoch; its
    descriptors are gone).
    """

    def __init__(self, pool: PtePool, slot: i64, asid: i64, pmd_index: i64, old_at: i64) -> None:
        self.pool = pool
        self.slot = slot
        self.asid = asid
        self.pmd_index = pmd_index
        self.old_at = old_at
        self.alive = True

    @property
    def old(self) -> np.ndarray | None:
        """The table's descriptors before the epoch's first write (None: all zero)."""
        if self.old_at < 0:
            return None
        p = self.pool.ptrs_per_pte
        v: np.ndarray = np.asarray(self.pool.log_old)[self.old_at * p : (self.old_at + 1) * p]
        v.flags.writeable = False
        return v

    def __repr__(self) -> str:
        return f"LogEntry(slot={self.slot}, asid={self.asid}, pmd={self.pmd_index:#x}, alive={self.alive})"


@cython.cfunc
def _log_entry(pool: PtePool, slot: i64, asid: i64, pmd_index: i64, old_at: i64) -> LogEntry:
    """``LogEntry(...)`` without the Python call."""
    ent: LogEntry = LogEntry.__new__(LogEntry)
    ent.pool = pool
    ent.slot = slot
    ent.asid = asid
    ent.pmd_index = pmd_index
    ent.old_at = old_at
    ent.alive = True
    return ent


@cython.final
@cython.cclass
class PtePool:
    """The descriptor memory of every level-3 table of one machine.

    ``page_shift``: the translation granule (12, 14, 16).  ``counters``:
    where software accesses are counted.
    """

    def __init__(self, page_shift: i64, counters: Counters, nslots: i64 = 64) -> None:
        self.page_shift: i64 = page_shift
        self.shift = page_shift - 3
        self.ptrs_per_pte = 1 << self.shift
        self.pmd_shift = page_shift + self.shift
        self.counters: Counters = counters
        self.nslots = 0
        self.e = np.zeros(0, dtype=np.uint64)
        self.slot_asid = np.zeros(0, dtype=np.int64)
        self.slot_pmd = np.zeros(0, dtype=np.int64)
        self.slot_epoch = np.zeros(0, dtype=np.int64)
        self.free_slots: list[int] = []
        self.observer: StoreObserver | None = None
        self.epoch = -1
        self.log: list[LogEntry] = []
        self.log_at: dict[int, int] = {}
        self.log_old = np.zeros(0, dtype=np.uint64)
        self.log_nold = 0
        #: (space, level-2 index, old value) of every level-2 store of the epoch
        self.pmd_log: list[tuple[AddressSpace, int, int]] = []
        self.nr_tables = 0
        self._grow(max(nslots, 1))

    # -- slots ------------------------------------------------------------
    def _grow(self, want: int) -> None:
        n = self.nslots
        new_n = max(want, n + (n >> 1), 16)
        p = self.ptrs_per_pte
        e = np.zeros(new_n * p, dtype=np.uint64)
        e[: n * p] = self.e
        self.e = e
        for name in ("slot_asid", "slot_pmd", "slot_epoch"):
            a = np.full(new_n, -1, dtype=np.int64)
            a[:n] = getattr(self, name)
            setattr(self, name, a)
        self.free_slots.extend(range(new_n - 1, n - 1, -1))
        self.nslots = new_n

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def slot_alloc(self, asid: i64, pmd_index: i64) -> i64:
        """A zeroed slot for the table at ``pmd_index`` of ASID ``asid``."""
        if not self.free_slots:
            self._grow(self.nslots + 1)
        s: i64 = self.free_slots.pop()
        self.slot_asid[s] = asid
        self.slot_pmd[s] = pmd_index
        self.nr_tables += 1
        if self.epoch >= 0:
            self.slot_epoch[s] = self.epoch
            self.log_at[s] = len(self.log)
            self.log.append(_log_entry(self, s, asid, pmd_index, -1))
        return s

    @cython.ccall
    def slot_free(self, s: i64) -> None:
        """Give slot ``s`` back (its descriptors become zero)."""
        if self.epoch >= 0:
            self._log_slot(s)
            ent: LogEntry = self.log[self.log_at.pop(s)]
            ent.alive = False
        p: i64 = self.ptrs_per_pte
        i: i64
        for i in range(s * p, (s + 1) * p):
            self.e[i] = 0
        self.slot_asid[s] = -1
        self.slot_pmd[s] = -1
        self.slot_epoch[s] = -1
        self.free_slots.append(s)
        self.nr_tables -= 1

    def entries(self, s: int) -> np.ndarray:
        """A read-only numpy view of slot ``s`` (valid until the pool grows)."""
        p = self.ptrs_per_pte
        v: np.ndarray = np.asarray(self.e)[s * p : (s + 1) * p]
        v.flags.writeable = False
        return v

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def va(self, ptep: i64) -> i64:
        """The virtual address descriptor ``ptep`` maps."""
        s: i64 = ptep >> self.shift
        pmd_index: i64 = cython.cast(i64, self.slot_pmd[s])
        return (pmd_index << self.pmd_shift) | ((ptep & (self.ptrs_per_pte - 1)) << self.page_shift)

    # -- the store log -------------------------------------------------------
    @cython.ccall
    def new_epoch(self) -> None:
        """Start a store log, or a new epoch of it (forgets the last one)."""
        self.epoch += 1 if self.epoch >= 0 else 1 - self.epoch
        if self.log:
            self.log = []
            self.log_at = {}
        if self.pmd_log:
            self.pmd_log = []
        # An epoch that copied many tables (a fork, an exit) leaves a big
        # arena: give it back once epochs are small again.
        p: i64 = self.ptrs_per_pte
        cap: i64 = self.log_old.shape[0] // p
        if cap > 64 and self.log_nold < cap >> 2:
            self.log_old = np.zeros(max(64, 2 * self.log_nold) * p, dtype=np.uint64)
        self.log_nold = 0

    def stop_log(self) -> None:
        self.epoch = -1
        self.log = []
        self.log_at = {}
        self.pmd_log = []
        self.log_old = np.zeros(0, dtype=np.uint64)
        self.log_nold = 0

    @cython.cfunc
    def _log_slot(self, s: i64) -> None:
        """Before the first write of the epoch to slot ``s``: keep its descriptors."""
        if self.slot_epoch[s] == self.epoch:
            return
        self.slot_epoch[s] = self.epoch
        p: i64 = self.ptrs_per_pte
        at: i64 = self.log_nold
        if (at + 1) * p > self.log_old.shape[0]:
            grown = np.zeros(max(16, 2 * (at + 1)) * p, dtype=np.uint64)
            grown[: at * p] = np.asarray(self.log_old)[: at * p]
            self.log_old = grown
        old: U64View = self.log_old
        e: U64View = self.e
        old[at * p : (at + 1) * p] = e[s * p : (s + 1) * p]
        self.log_nold = at + 1
        self.log_at[s] = len(self.log)
        self.log.append(_log_entry(self, s, self.slot_asid[s], self.slot_pmd[s], at))

    def changes(self) -> Iterator[tuple[LogEntry, np.ndarray, np.ndarray]]:
        """(entry, old descriptors, new descriptors) of each table in the log.

        The arrays are read-only; the new ones are views of the pool (valid
        until the pool grows).
        """
        p = self.ptrs_per_pte
        zeros = np.zeros(p, dtype=np.uint64)
        zeros.flags.writeable = False
        for ent in self.log:
            old = zeros if ent.old is None else ent.old
            new = self.entries(ent.slot) if ent.alive else zeros
            yield ent, old, new

    # -- software accesses: counted and observed -------------------------------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def load(self, ptep: i64) -> u64:
        """One software load (``pte.read``)."""
        count(self.counters, PTE_READ, 1)
        return cython.cast(u64, self.e[ptep])

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def peek(self, ptep: i64) -> u64:
        """Read a descriptor without counting (model-internal: hardware, validators)."""
        return cython.cast(u64, self.e[ptep])

    @cython.ccall
    def store(self, ptep: i64, value: u64) -> None:
        """One software store (``pte.write``), logged and observed."""
        count(self.counters, PTE_WRITE, 1)
        # the epoch test inline: a call per store costs more than the test
        if self.epoch >= 0 and self.slot_epoch[ptep >> self.shift] != self.epoch:
            self._log_slot(ptep >> self.shift)
        old: u64 = cython.cast(u64, self.e[ptep])
        self.e[ptep] = value
        if self.observer is not None:
            self.observer.on_store(ptep, old, value)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def xchg(self, ptep: i64, value: u64) -> u64:
        """Atomically swap in ``value`` (``pte.atomic`` + ``pte.write``); the old descriptor."""
        count(self.counters, PTE_ATOMIC, 1)
        old: u64 = cython.cast(u64, self.e[ptep])
        self.store(ptep, value)
        return old

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def cmpxchg(self, ptep: i64, expected: u64, value: u64) -> cython.bint:
        """Atomic compare-and-swap (sequential model: succeeds iff equal)."""
        count(self.counters, PTE_ATOMIC, 1)
        if self.e[ptep] != expected:
            count(self.counters, PTE_READ, 1)
            return False
        self.store(ptep, value)
        return True

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def none_count(self, ptep: i64, nr: i64) -> i64:
        """How many of ``nr`` descriptors from ``ptep`` are zero (``nr`` reads)."""
        count(self.counters, PTE_READ, nr)
        n: i64 = 0
        i: i64
        for i in range(ptep, ptep + nr):
            if self.e[i] == 0:
                n += 1
        return n

    @cython.ccall
    def hw_store(self, ptep: i64, value: u64) -> None:
        """The walker's Access flag / dirty update: not counted, logged, observed as such."""
        if self.epoch >= 0 and self.slot_epoch[ptep >> self.shift] != self.epoch:
            self._log_slot(ptep >> self.shift)
        old: u64 = cython.cast(u64, self.e[ptep])
        self.e[ptep] = value
        if self.observer is not None:
            self.observer.on_hw_update(ptep, old, value)

    def poke(self, ptep: int, value: Any) -> None:
        """Tests: write a descriptor (or an array of them from ``ptep``) behind
        the model's back: not counted, not observed; logged, as memory
        written by anyone."""
        if self.epoch >= 0:
            self._log_slot(ptep >> self.shift)
        if isinstance(value, np.ndarray):
            np.asarray(self.e)[ptep : ptep + len(value)] = value
        else:
            self.e[ptep] = int(value)


@cython.cclass
class AddressSpace:
    """A stage-1 translation regime: sparse level-2/level-3 tables and an ASID."""

    def __init__(self, asid: i64, pool: PtePool, name: str = "") -> None:
        self.asid = asid
        self.name = name or f"asid {asid}"
        self.pool: PtePool = pool
        self.page_shift = pool.page_shift
        self.ptrs_per_pte = pool.ptrs_per_pte
        self.pmd_shift = pool.pmd_shift
        self.counters: Counters = pool.counters
        self.tables: dict[int, int] = {}
        self.pmds: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"<AddressSpace {self.name}: {len(self.tables)} tables, {len(self.pmds)} blocks>"

    @cython.ccall
    @cython.exceptval(-2, check=True)
    def pte_table(self, pmd_index: i64) -> i64:
        """The slot of the level-3 table at ``pmd_index``, or -1."""
        s = self.tables.get(pmd_index)
        if s is None:
            return -1
        return cython.cast(i64, s)

    @cython.ccall
    @cython.exceptval(-2, check=True)
    def pte_ptr(self, va: i64) -> i64:
        """The descriptor address (``ptep``) for ``va``, or -1 if it has no level-3 table."""
        s: i64 = self.pte_table(va >> self.pmd_shift)
        if s < 0:
            return -1
        return (s << self.pool.shift) | ((va >> self.page_shift) & (self.ptrs_per_pte - 1))

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def alloc_pte_table(self, pmd_index: i64) -> i64:
        """The slot of the table for ``pmd_index``, allocating it (zeroed) if needed."""
        s: i64 = self.pte_table(pmd_index)
        if s >= 0:
            return s
        s = self.pool.slot_alloc(self.asid, pmd_index)
        self.hook_table(pmd_index, s)
        return s

    @cython.ccall
    def hook_table(self, pmd_index: i64, slot: i64) -> None:
        """Store a table descriptor: the level-3 table in ``slot`` now maps ``pmd_index``.

        A slot allocated for ``pmd_index`` is zeroed (``on_table_alloc``); a
        slot allocated for another index and unhooked from it keeps its
        descriptors and moves here (mremap's ``move_normal_pmd()``:
        ``on_table_move``; the store log's entry follows it).
        """
        if self.pte_table(pmd_index) >= 0:
            raise ModelUsageError(f"{self.name}: level-2 index {pmd_index:#x} already has a table")
        pool: PtePool = self.pool
        old_index: i64 = cython.cast(i64, pool.slot_pmd[slot])
        self.tables[pmd_index] = slot
        if old_index == pmd_index:
            if pool.observer is not None:
                pool.observer.on_table_alloc(self, pmd_index, slot)
            return
        pool.slot_pmd[slot] = pmd_index
        at = pool.log_at.get(slot)
        if at is not None:
            cython.cast(LogEntry, pool.log[at]).pmd_index = pmd_index
        if pool.observer is not None:
            pool.observer.on_table_move(self, old_index, pmd_index, slot)

    @cython.ccall
    def free_pte_table(self, pmd_index: i64) -> None:
        """Unhook and free the level-3 table of ``pmd_index`` (observers hear it first)."""
        s: i64 = self.unhook_table(pmd_index)
        if s >= 0:
            self.pool.slot_free(s)

    @cython.ccall
    @cython.exceptval(-2, check=True)
    def unhook_table(self, pmd_index: i64) -> i64:
        """Clear the table descriptor of ``pmd_index`` (observers hear it first); its slot, or -1.

        The slot stays allocated until ``pool.slot_free``.
        """
        s: i64 = self.pte_table(pmd_index)
        if s < 0:
            return -1
        if self.pool.observer is not None:
            self.pool.observer.on_table_free(self, pmd_index, s)
        del self.tables[pmd_index]
        return s

    def table_entries(self, pmd_index: int) -> np.ndarray | None:
        """A read-only numpy view of the level-3 table at ``pmd_index`` (None if absent)."""
        s = self.pte_table(pmd_index)
        return None if s < 0 else self.pool.entries(s)

    # -- level 2 ---------------------------------------------------------------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmd_load(self, pmd_index: i64) -> u64:
        """The level-2 block descriptor at ``pmd_index`` (0 if none); one ``pte.read``."""
        count(self.counters, PTE_READ, 1)
        v = self.pmds.get(pmd_index)
        return 0 if v is None else cython.cast(u64, v)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def pmd_peek(self, pmd_index: i64) -> u64:
        """Like ``pmd_load``, uncounted (model-internal)."""
        v = self.pmds.get(pmd_index)
        return 0 if v is None else cython.cast(u64, v)

    @cython.ccall
    def pmd_store(self, pmd_index: i64, value: u64) -> None:
        """Store a level-2 descriptor (``pmd.write``; the observer hears it)."""
        count(self.counters, PMD_WRITE, 1)
        old: u64 = self.pmd_peek(pmd_index)
        if self.pool.epoch >= 0:
            self.pool.pmd_log.append((self, pmd_index, old))
        if value:
            self.pmds[pmd_index] = value
        else:
            self.pmds.pop(pmd_index, None)
        if self.pool.observer is not None:
            self.pool.observer.on_pmd_store(self, pmd_index, old, value)

    @cython.ccall
    def pmd_hw_store(self, pmd_index: i64, value: u64) -> None:
        """The walker's Access flag / dirty update of a level-2 block descriptor."""
        old: u64 = self.pmd_peek(pmd_index)
        if self.pool.epoch >= 0:
            self.pool.pmd_log.append((self, pmd_index, old))
        self.pmds[pmd_index] = value
        if self.pool.observer is not None:
            self.pool.observer.on_pmd_hw_update(self, pmd_index, old, value)

    def check_index(self, pmd_index: int) -> None:
        if pmd_index < 0:
            raise ModelUsageError(f"negative level-2 index {pmd_index}")
