"""The first fork of a written (writable) parent takes the incremental proof.

Fork write-protects the PTEs of a CoW mapping in both processes: the child's
tables are then ``cow_copy`` of the parent's snapshot (write-protected, old)
rather than the snapshot itself, and the parent's changed in place.
``Incremental.fork_copy_ok`` and ``Incremental._wrprotected`` prove those
clean without the dense checks; here bugs are planted in the child (or the
parent) right after the copy, before the checks run, and the verdict must
be the dense one (``Validators.INCREMENTAL`` off) and not clean.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import numpy as np
import pytest

import contpte
from contpte.check.incremental import Incremental, cow_copy, young_mask
from contpte.check.validators import Validators
from contpte.errors import OutOfMemory, SegmentationFault

PAGE = 4096
MB = 1 << 20


def _outcome(f: Callable[[], object]) -> tuple[str, str, str | None] | None:
    try:
        f()
    except Exception as e:  # the exact outcome is compared
        return (type(e).__name__, str(e), getattr(e, "rule", None))
    return None


def _machine(arch: str, size: str) -> contpte.Machine:
    return contpte.Machine(
        arch=arch, memory="64M", mthp={"64K": "always"} if size == "64K" else {}, thp="never", check=True
    )


def _entry(mm: Any, va: int) -> tuple[Any, int]:
    """The PTE table of ``mm`` holding ``va`` and the index in it."""
    space = mm.space
    t = space.tables[va >> space.pmd_shift]
    return t, (va >> space.page_shift) & (len(t.entries) - 1)


def _states_exact(m: contpte.Machine) -> None:
    """Every kept per-mm state is what a fresh decode of its tables gives."""
    inc = m.validators._inc
    nr = m.kernel.memmap.nr_frames
    shm = inc._shm()

    def norm(a: np.ndarray | None) -> np.ndarray:
        return np.zeros(nr, dtype=np.int64) if a is None else a.astype(np.int64)

    for mm in m.kernel.mms:
        got = inc.states.get(id(mm))
        assert got is not None and got[0] is mm
        st = got[1]
        fresh = inc._compute(mm, inc._vsig(mm), shm, None)
        assert st.suspect == fresh.suspect
        assert list(st.rss) == list(fresh.rss)
        for name in ("maps", "fmaps", "wmaps"):
            assert np.array_equal(norm(getattr(st, name)), norm(getattr(fresh, name))), name


# -- the probe ------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_cow_copy_keeps_what_fork_copy_reads(arch: str) -> None:
    m = contpte.Machine(arch=arch, memory="16M")
    a = m.arch
    f = cow_copy(a)
    assert f is not None
    rng = np.random.default_rng(3)
    v = rng.integers(0, 2**63, 4096, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, 4096, dtype=np.uint64
    )
    prot = a.vm_get_page_prot(0x3)
    own = np.array(
        [a.pte_mkdirty(a.pte_mkwrite(a.pfn_pte(p, prot))) for p in range(64)]
        + [a.pte_mkwrite(a.pfn_pte(p, prot)) for p in range(64)],
        dtype=np.uint64,
    )
    for vals in (v, own):
        w = f(vals)
        dv, dw = a.ptes_decode(vals), a.ptes_decode(w)
        for k in ("valid", "present", "pfn", "dirty", "cont", "special"):
            assert np.array_equal(dv[k], dw[k]), k
        assert not dw["write"].any()
        assert np.array_equal(a.pte_uffd_wp_v(vals), a.pte_uffd_wp_v(w))
    # what fork makes of a written PTE: the scalar helpers agree
    for x in own.tolist():
        assert int(f(np.array([x], dtype=np.uint64))[0]) == a.pte_mkold(a.pte_wrprotect(x))


@pytest.mark.parametrize("broken", ["loses_dirty", "keeps_write", "moves_pfn"])
def test_cow_copy_refuses_a_transform_that_loses_a_field(
    broken: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = contpte.Machine(arch="arm64", memory="16M")
    a = m.arch
    real = type(a).pte_wrprotect_v

    def wp(self: Any, vals: np.ndarray) -> np.ndarray:
        out = real(self, vals)
        if broken == "loses_dirty":
            return np.asarray(self.pte_mkclean_v(out))
        if broken == "keeps_write":
            return np.asarray(self.pte_mkwrite_v(out))
        return np.asarray(out + np.uint64(1 << self.PAGE_SHIFT))

    monkeypatch.setattr(type(a), "pte_wrprotect_v", wp)
    assert cow_copy(a) is None
    assert young_mask(a)  # unrelated


# -- clean forks: the proof, exact states --------------------------------------------------
@pytest.mark.parametrize("arch", ["arm64", "generic"])
@pytest.mark.parametrize("size", ["4K", "64K"])
@pytest.mark.parametrize("written", [4 * MB, MB // 2])
def test_first_fork_of_a_writable_parent_is_proved(
    arch: str, size: str, written: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No dense check, no per-table fork-copy check, no recompute of either
    state; the states are exact (the writable PTEs the copies lost gone)."""
    m = _machine(arch, size)
    dense: list[str] = []
    real_dense = Validators._run_all_dense
    real_sus = Validators._fork_copy_suspects
    real_compute = Incremental._compute
    monkeypatch.setattr(
        Validators, "_run_all_dense", lambda self: (dense.append("run_all"), real_dense(self))[1]
    )
    monkeypatch.setattr(
        Validators, "_fork_copy_suspects", lambda self, *a: (dense.append("fork-copy"), real_sus(self, *a))[1]
    )
    p = m.spawn()
    a = p.mmap(8 * MB)
    a = (a + 2 * MB - 1) & ~(2 * MB - 1)
    p.write(a, written, 1)
    p.mprotect(a + written, 64 << 10, "r")
    p.mprotect(a + 3 * MB, 64 << 10, "r")
    computed: list[int] = []
    monkeypatch.setattr(
        Incremental, "_compute", lambda self, mm, *r: (computed.append(id(mm)), real_compute(self, mm, *r))[1]
    )
    c = p.fork()
    assert not dense and not computed
    inc = m.validators._inc
    assert inc.states[id(c.mm)][1].wmaps is None and inc.states[id(p.mm)][1].wmaps is None
    _states_exact(m)
    c2 = p.fork()
    p.write(a + 5 * PAGE, PAGE, 2)
    c.write(a + 70 * PAGE, 3 * PAGE, 3)
    assert not dense
    _states_exact(m)
    c2.exit()
    assert _outcome(m.validators._run_all_dense) is None


@pytest.mark.parametrize("seed", range(24))
def test_forks_keep_exact_states(seed: int) -> None:
    """Random worlds (pins, shared and read-only ranges, partial writes): after
    each fork the kept states equal a fresh decode, and the checker passes."""
    rng = random.Random(seed)
    m = _machine(rng.choice(["arm64", "generic"]), rng.choice(["4K", "64K"]))
    p = m.spawn()
    procs = [p]
    a = p.mmap(8 * MB)
    a = (a + 2 * MB - 1) & ~(2 * MB - 1)
    if rng.random() < 0.5:
        s = p.mmap(MB, flags="shared|anonymous")
        p.write(s, 64 << 10, 3)
    p.write(a, rng.choice([4 * MB, MB, 64 << 10, 3 * PAGE]), 1)
    for _ in range(rng.randint(2, 7)):
        q = rng.choice(procs)
        off = rng.randrange(0, MB // PAGE) * PAGE
        n = rng.choice([1, 16, 64, 600]) * PAGE
        what = rng.choice(["fork", "fork", "write", "pin", "mprotect", "dontneed", "exit"])
        try:
            if what == "fork":
                procs.append(q.fork())
            elif what == "write":
                q.write(a + off, n, rng.randrange(1, 1 << 20))
            elif what == "pin":
                q.pin(a + off, n)
            elif what == "mprotect":
                q.mprotect(a + off, n, rng.choice(["r", "rw"]))
            elif what == "dontneed":
                q.madvise(a + off, n, "dontneed")
            elif what == "exit" and q is not p:
                q.exit()
                procs.remove(q)
        except (OSError, contpte.ModelUsageError, SegmentationFault, OutOfMemory):
            continue  # no run after a failed syscall: the states may lag
        _states_exact(m)
    assert _outcome(m.validators._run_all_dense) is None


# -- bugs planted after the first fork ----------------------------------------------------
PLANTS = [
    "pfn",
    "missing",
    "clean",
    "protnone",
    "soft_dirty",
    "uffd_set",
    "uffd_lost",
    "writable_child",
    "writable_child_second_fork",
    "writable_parent",
    "child_left_writable",
]


def _scenario(arch: str, size: str, what: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writable parent's first fork (its second for ``*_second_fork``) with
    ``what`` planted right after the tables were copied."""
    m = _machine(arch, size)
    k = m.kernel
    ar = k.arch
    p = m.spawn()
    a = p.mmap(4 * MB)
    a = (a + 2 * MB - 1) & ~(2 * MB - 1)
    p.write(a, 2 * MB, 1)
    if what == "uffd_lost":
        p.uffd_wp(a + 64 * PAGE, 32 * PAGE, True)
    if what == "writable_child_second_fork":
        p.fork()
    va = a + (64 + 3) * PAGE
    from contpte.mm import fork as fork_mod

    real = fork_mod.dup_mmap

    def broken(mm: Any, oldmm: Any) -> int:
        pt, pi = _entry(oldmm, va)
        before = int(pt.entries[pi])
        ret = real(mm, oldmm)
        t, i = _entry(mm, va)
        e = int(t.entries[i])
        if what == "pfn":
            e2 = ar.pfn_pte(ar.pte_pfn(e) + 1, 0) | (e & ~ar.pfn_pte(ar.pte_pfn(e), 0))
            t.poke(i, e2 & ((1 << 64) - 1))
        elif what == "missing":
            t.poke(i, 0)
        elif what == "clean":
            for j in range(len(t.entries)):  # the whole block, or gathered dirty hides it
                if t.entries[j]:
                    t.poke(j, ar.pte_mkclean(int(t.entries[j])))
        elif what == "protnone":
            t.poke(i, ar.pte_modify(e, ar.vm_get_page_prot(0)))
        elif what == "soft_dirty":
            t.poke(i, ar.pte_clear_soft_dirty(e) if ar.pte_soft_dirty(e) else ar.pte_mksoft_dirty(e))
        elif what == "uffd_set":
            t.poke(i, ar.pte_mkuffd_wp(e))
        elif what == "uffd_lost":
            assert ar.pte_uffd_wp(e)
            t.poke(i, ar.pte_clear_uffd_wp(e))
        elif what in ("writable_child", "writable_child_second_fork"):
            t.poke(i, ar.pte_mkdirty(ar.pte_mkwrite(e)))
        elif what == "child_left_writable":
            # the parent's PTE as it was (but old): passes fork-copy as a
            # plain copy; the child's state must count it writable
            assert ar.pte_write(before)
            t.poke(i, ar.pte_mkold(before))
        elif what == "writable_parent":
            assert ar.pte_write(before)
            pt.poke(pi, before)
        return ret

    monkeypatch.setattr("contpte.system.process.dup_mmap", broken)
    p.fork()


@pytest.mark.parametrize("arch", ["arm64", "generic"])
@pytest.mark.parametrize("size", ["4K", "64K"])
@pytest.mark.parametrize("what", PLANTS)
def test_a_bug_planted_after_the_first_fork_gets_the_dense_verdict(
    arch: str, size: str, what: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if what == "soft_dirty" and not contpte.Machine(arch=arch, memory="16M").arch.pte_soft_dirty(
        contpte.Machine(arch=arch, memory="16M").arch.pte_mksoft_dirty(0)
    ):
        pytest.skip("no soft-dirty bit on this arch")
    assert Validators.INCREMENTAL
    with monkeypatch.context() as mp:
        got = _outcome(lambda: _scenario(arch, size, what, mp))
    with monkeypatch.context() as mp:
        mp.setattr(Validators, "INCREMENTAL", False)
        dense = _outcome(lambda: _scenario(arch, size, what, mp))
    assert dense is not None, what
    assert got == dense
    if what in ("writable_child", "writable_child_second_fork", "writable_parent", "child_left_writable"):
        assert dense[2] in ("writable-shared", "writable-anon-exclusive", "mapcount")
    else:
        assert dense[2] == "fork-copy"
