"""The descriptor pool's store log: what the validators read after each syscall.

Every table written, allocated or freed in an epoch is logged once, with a
copy of its descriptors from before the epoch's first write (one arena row);
every level-2 store is logged with the old value.
"""

from __future__ import annotations

import numpy as np

from contpte.counters import Counters
from contpte.hw.tables import AddressSpace, PtePool


def _pool() -> tuple[PtePool, AddressSpace]:
    pool = PtePool(12, Counters(), nslots=4)
    return pool, AddressSpace(1, pool)


def test_first_write_of_an_epoch_keeps_the_old_descriptors() -> None:
    pool, sp = _pool()
    s = sp.alloc_pte_table(3)
    base = s << pool.shift
    pool.store(base + 1, 11)
    pool.new_epoch()
    assert pool.log == [] and pool.pmd_log == []
    pool.store(base + 1, 12)
    pool.store(base + 2, 13)  # same table, same epoch: logged once
    pool.poke(base + 4, 14)
    (ent,) = pool.log
    assert (ent.slot, ent.asid, ent.pmd_index, ent.alive) == (s, 1, 3, True)
    assert ent.old is not None and ent.old[1] == 11 and not ent.old[2:].any()
    assert not ent.old.flags.writeable
    ((e2, old, new),) = list(pool.changes())
    assert e2 is ent and new[1] == 12 and new[2] == 13 and new[4] == 14 and old[1] == 11


def test_allocated_and_freed_tables() -> None:
    pool, sp = _pool()
    keep = sp.alloc_pte_table(0)
    pool.store(keep << pool.shift, 5)
    pool.new_epoch()
    s = sp.alloc_pte_table(7)  # allocated in the epoch: no old copy
    pool.store((s << pool.shift) + 9, 1)
    sp.free_pte_table(0)  # freed: its descriptors are logged, then gone
    by_pmd = {ent.pmd_index: (ent, old, new) for ent, old, new in pool.changes()}
    ent, old, new = by_pmd[7]
    assert ent.old is None and ent.old_at == -1 and not old.any() and new[9] == 1
    ent, old, new = by_pmd[0]
    assert not ent.alive and old[0] == 5 and not new.any()


def test_slot_reused_in_the_same_epoch_is_two_entries() -> None:
    pool, sp = _pool()
    s = sp.alloc_pte_table(1)
    pool.store(s << pool.shift, 3)
    pool.new_epoch()
    sp.free_pte_table(1)
    s2 = sp.alloc_pte_table(2)
    assert s2 == s
    pool.store(s2 << pool.shift, 4)
    got = [(e.pmd_index, e.alive, int(o[0]), int(n[0])) for e, o, n in pool.changes()]
    assert got == [(1, False, 3, 0), (2, True, 0, 4)]


def test_arena_grows_and_shrinks() -> None:
    pool, sp = _pool()
    slots = [sp.alloc_pte_table(i) for i in range(300)]  # the pool grows too
    for s in slots:
        pool.store(s << pool.shift, s + 1)
    pool.new_epoch()
    for s in slots:
        pool.store((s << pool.shift) + 1, 1)
    assert [int(e.old[0]) for e in pool.log] == [s + 1 for s in slots]  # type: ignore[index]
    big = pool.log_old.shape[0]
    assert big >= 300 * pool.ptrs_per_pte
    pool.new_epoch()
    pool.new_epoch()
    assert pool.log_old.shape[0] < big and pool.log_nold == 0


def test_pmd_stores_are_logged() -> None:
    pool, sp = _pool()
    sp.pmd_store(4, 0x1000)
    assert pool.pmd_log == []  # no log yet
    pool.new_epoch()
    sp.pmd_store(4, 0)
    sp.pmd_store(5, 0x2000)
    sp.pmd_hw_store(5, 0x2400)
    assert pool.pmd_log == [(sp, 4, 0x1000), (sp, 5, 0), (sp, 5, 0x2000)]
    pool.stop_log()
    sp.pmd_store(6, 1)
    assert pool.pmd_log == [] and np.asarray(pool.log_old).size == 0
