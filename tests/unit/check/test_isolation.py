"""The isolation shadow: what each process should read, compact and shared after fork."""

from __future__ import annotations

import random

import numpy as np
import pytest
from world import PAGE, World, outcome

from contpte.check.isolation import ValueShadow

BASE = 0x4000_0000


def test_uniform_and_affine_tables_keep_no_array() -> None:
    sh = ValueShadow(8)
    sh.set(8, 16, 7)  # two whole tables, one value
    sh.set(24, 8, np.arange(100, 108, dtype=np.uint64))  # consecutive values
    assert all(t.vals is None and t.own is None for t in sh.tabs.values())
    vals, own = sh.get(8, 24)
    assert vals.tolist() == [7] * 16 + list(range(100, 108)) and own.all()
    sh.set(26, 1, 102)  # the same affine value: still no array
    assert sh.tabs[3].vals is None
    sh.set(26, 1, 5)  # breaks the form: an array
    assert sh.tabs[3].vals is not None
    sh.set(24, 8, 9)  # the whole table rewritten: back to one value
    assert sh.tabs[3].vals is None and sh.get(24, 8)[0].tolist() == [9] * 8


def test_partial_tables_and_forget() -> None:
    sh = ValueShadow(8)
    sh.set(3, 2, 4)
    vals, own = sh.get(0, 8)
    assert own.tolist() == [False] * 3 + [True] * 2 + [False] * 3 and vals[3] == 4
    sh.set(6, 1, 4)  # fits the uniform form of the owned pages
    assert sh.tabs[0].vals is None
    sh.forget(3, 1)
    assert sh.get(0, 8)[1].tolist() == [False] * 4 + [True, False, True, False]
    sh.forget(0, 8)
    assert not sh.tabs


def test_lazy_pages() -> None:
    sh = ValueShadow(8)
    sh.set(0, 8, 1)
    sh.mark_lazy(2, 3, True)
    assert sh.get_lazy(0, 8).tolist() == [False, False, True, True, True, False, False, False]
    sh.set(3, 1, 2)  # written again: no longer lazy
    assert sh.get_lazy(0, 8).tolist() == [False, False, True, False, True, False, False, False]
    assert sh.state(2) == 3 and sh.last == 1


def test_copy_shares_tables_until_a_change() -> None:
    sh = ValueShadow(8)
    sh.set(8, 16, 7)
    sh.set(8, 8, 5)
    sh.mark_lazy(9, 2, True)
    child = sh.copy()
    assert all(child.tabs[t] is sh.tabs[t] for t in sh.tabs)
    child.set(17, 2, np.array([1, 2], dtype=np.uint64))
    assert child.tabs[2] is not sh.tabs[2] and child.tabs[1] is sh.tabs[1]
    sh.forget(20, 1)
    vals, own = sh.get(8, 16)
    assert (
        vals.tolist() == [5] * 8 + [7] * 4 + [0] + [7] * 3
        and own.tolist() == [True] * 12 + [False] + [True] * 3
    )
    vals, own = child.get(8, 16)
    assert vals.tolist() == [5] * 8 + [7, 1, 2] + [7] * 5 and own.all()
    assert child.get_lazy(8, 8).tolist() == [False, True, True] + [False] * 5
    child.release()
    assert all(t.refs == 1 for t in sh.tabs.values())


def test_random_against_a_dict() -> None:
    rng = random.Random(5)
    sh = ValueShadow(64)
    ref: dict[int, int] = {}
    kids = []
    for _ in range(2000):
        vpn = rng.randrange(512)
        n = rng.choice([1, 3, 64, 100])
        op = rng.random()
        if op < 0.5:
            if rng.random() < 0.5:
                v = rng.randrange(4)
                sh.set(vpn, n, v)
                ref.update({vpn + j: v for j in range(n)})
            else:
                arr = np.array([rng.randrange(4) for _ in range(n)], dtype=np.uint64)
                sh.set(vpn, n, arr)
                ref.update({vpn + j: int(arr[j]) for j in range(n)})
        elif op < 0.7:
            sh.forget(vpn, n)
            for j in range(n):
                ref.pop(vpn + j, None)
        elif op < 0.75:
            kids.append(sh.copy())
    vals, own = sh.get(0, 700)
    assert {i: int(vals[i]) for i in np.flatnonzero(own)} == ref
    for k in kids:
        k.release()


# -- the checks on reads ---------------------------------------------------------------
def test_a_wrong_value_is_caught_and_who_wrote_it_named() -> None:
    w = World("arm64")
    p = w.spawn()
    w.mmap(p, BASE, 1 << 20)
    w.fault_anon(p, BASE, 4, value=1)
    w.syscall(p)
    c = w.fork(p)
    w.cow(p, BASE, 2)
    w.syscall(p)
    assert w.read(c, BASE)[0] == 1 and w.read(p, BASE)[0] == 2
    w.memory.data[w.arch.pte_pfn(w.pte(c, BASE + 3 * PAGE))] = 2  # corrupted behind the kernel's back
    got = outcome(lambda: w.read(c, BASE, 8))
    assert got == (
        "InvariantViolation",
        f"[isolation] pid {c.pid} read 0x2 at {BASE + 3 * PAGE:#x}, expected 0x1 (the value pid(s) {p.pid} wrote); "
        f"1 page(s) wrong in this access (addr {BASE + 3 * PAGE:#x})",
        "isolation",
    )


def test_madv_free_pages_may_read_zero_once() -> None:
    w = World("arm64")
    p = w.spawn()
    w.mmap(p, BASE, 1 << 20)
    w.fault_anon(p, BASE, 2, value=9)
    w.syscall(p)
    w.v.on_madvise_free(p, BASE, 4 * PAGE)
    pfn = w.arch.pte_pfn(w.pte(p, BASE + PAGE))
    w.memory.data[pfn] = 0  # reclaim discarded it (and a refault reads zero)
    assert w.read(p, BASE, 4).tolist() == [9, 0, 9, 9]
    w.memory.data[pfn] = 9  # zero from now on: the old value back is wrong
    with pytest.raises(Exception, match="isolation"):
        w.read(p, BASE + PAGE)


def test_access_outside_any_vma() -> None:
    w = World("arm64")
    p = w.spawn()
    got = outcome(lambda: w.v.on_read(p, BASE, np.zeros(1, dtype=np.uint64)))
    assert got is not None and got[2] == "isolation" and "outside any VMA" in got[1]
