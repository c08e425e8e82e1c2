"""``RuleChecker.on_store_many`` (``PteTable.store_bulk_tables``) against ``on_store`` per table.

Random descriptor stores over several tables, after random earlier stores,
breaks and TLBIs: the bulk entry raises the same violation (rule, message,
address, descriptors) and leaves the same shadow state and sequence number
as the per-table calls in order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from contpte.errors import InvariantViolation
from contpte.hw import Hardware, PteTable
from contpte.hw.format import WS_CLEAN, WS_DIRTY, WS_NONE

MakeHw = Callable[..., Hardware]
NT = 4  # tables


def _store_and_release(c: Any, stores: list[Any], bulk: bool) -> None:
    """The stores, then each table's PTL release: all at once (bulk) or one by one."""
    released = [st[0] for st in stores]
    if bulk:
        PteTable.store_bulk_tables(stores)
        c.ptl_release_many(released)
    else:
        for t, lo, new in stores:
            t.store_bulk(lo, new)
        for t in released:
            c.ptl_release(t)


def _values(hw: Hardware, rng: np.random.Generator, n: int, base: int) -> np.ndarray:
    kind = rng.integers(0, 4)
    out = np.zeros(n, dtype=np.uint64)
    cont_n = hw.fmt.cont_ptes
    pfn0 = base + int(rng.integers(0, 4)) * cont_n
    write = (WS_DIRTY, WS_CLEAN, WS_NONE)[int(rng.integers(0, 3))]
    for i in range(n):
        r = rng.random()
        if kind == 0 or r < 0.15:
            continue  # none
        cont = bool(kind == 2 and r > 0.2 and hw.fmt.has_contiguous)
        out[i] = hw.fmt.mk_page(pfn0 + i, cont=cont, write=write, af=bool(r < 0.9))
    return out


def _state(hw: Hardware) -> Any:
    c = hw.checker
    assert c is not None
    regs = {}
    for asid, rr in c.regions.items():
        for pi, r in rr.items():
            n = len(r.vals)
            bo, bs = (
                (r.broken_old, r.break_seq) if r.broken_old is not None else (np.zeros(n), np.full(n, -1))
            )
            seqs = [r.seqs(f, slice(0, n)).tolist() for f in ("cover", "issued", "local")]
            regs[(asid, pi)] = (
                r.vals.tolist(),
                np.asarray(bo).tolist(),
                np.asarray(bs).tolist(),
                seqs,
                r.cover2,
                r.issued2,
                r.local2,
                r.pmd_val,
                r.pmd_broken_old,
                r.pmd_break_seq,
                r.table.pmd_index if r.table is not None else None,
            )
    return c.seq, c.violations, regs


def _run(hw: Hardware, seed: int, bulk: bool) -> Any:
    rng = np.random.default_rng(seed)
    n = hw.ptrs_per_pte
    spaces = [hw.new_space(1, "a"), hw.new_space(2, "b")]
    tables = []
    for k in range(NT):
        s = spaces[k % 2]
        t = s.alloc_pte_table(k)
        tables.append(t)
        if rng.random() < 0.8:
            t.store_many(0, _values(hw, rng, n, 64 * k))
    # earlier history: breaks, TLBIs, behind-the-back changes, new table objects
    for _ in range(int(rng.integers(0, 4))):
        t = tables[int(rng.integers(0, NT))]
        op = rng.integers(0, 5)
        lo = int(rng.integers(0, n))
        hi = int(rng.integers(lo, n + 1))
        if op == 0 and hi > lo:
            t.store_many(lo, np.zeros(hi - lo, dtype=np.uint64))
        elif op == 1:
            va = t.va(lo)
            hw.tlbi("VALE1IS", asid=t.space.asid, va=va, ttl=3)
            if rng.random() < 0.7:
                hw.dsb("ish")
        elif op == 2:
            hw.tlbi("ASIDE1IS", asid=t.space.asid)
            hw.dsb("ish" if rng.random() < 0.8 else "ishst")
        elif op == 3 and rng.random() < 0.3:
            t.poke(lo, int(t.entries[lo]) ^ (1 << 12))  # not observed
    stores = []
    for k in rng.permutation(NT)[: int(rng.integers(1, NT + 1))].tolist():
        t = tables[k]
        lo = int(rng.integers(0, n))
        hi = int(rng.integers(lo + 1, n + 1))
        r = rng.random()
        old = t.entries[lo:hi].copy()
        if r < 0.3:  # write-protect / mkold, as fork does
            new = np.array(
                [
                    hw.fmt.mk_page(hw.fmt.pfn(int(v)), cont=hw.fmt.cont(int(v)), write=WS_NONE, af=False)
                    if hw.fmt.page_valid(int(v))
                    else 0
                    for v in old
                ],
                dtype=np.uint64,
            )
        elif r < 0.45:
            new = np.zeros(hi - lo, dtype=np.uint64)
        else:
            new = _values(hw, rng, hi - lo, 64 * k + int(rng.integers(0, 2)) * 16)
        stores.append((t, lo, new))
    try:
        if bulk:
            PteTable.store_bulk_tables(stores)
        else:
            for t, lo, new in stores:
                t.store_bulk(lo, new)
        err = None
    except InvariantViolation as e:
        err = (e.rule, str(e), e.addr, e.ptes)
    return err, _state(hw)


@pytest.mark.parametrize("preset", ["neoverse-n1", "neoverse-v2"])
def test_on_store_many_equals_on_store(make_hw: MakeHw, preset: str) -> None:
    from contpte.hw import PRESETS

    raised = 0
    for seed in range(300):
        a = _run(make_hw(features=PRESETS[preset], nr_frames=1024), seed, True)
        b = _run(make_hw(features=PRESETS[preset], nr_frames=1024), seed, False)
        assert a == b, seed
        raised += a[0] is not None
    assert 0 < raised < 300  # both verdicts exercised


def _set_faults_reference(c: Any, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The min/max form of ``RuleChecker.set_faults`` (what it computed before)."""
    fmt, n = c.fmt, c.cont_n
    vals = vals.reshape(-1, n)
    valid = fmt.page_valid_v(vals)
    cont = fmt.cont_v(vals) & valid
    has_c = cont.any(axis=1)
    mis = has_c & (valid & ~cont).any(axis=1)
    base = fmt.pfn_v(vals).astype(np.int64) - np.arange(n, dtype=np.int64)
    big = np.iinfo(np.int64).max
    bmin = np.where(cont, base, big).min(axis=1)
    bmax = np.where(cont, base, -big).max(axis=1)
    oa_bad = has_c & ((bmin != bmax) | (bmin % n != 0))
    key = fmt.prot_key_v(vals, c.feat.hd)
    kmin = np.where(cont, key, np.uint64(np.iinfo(np.uint64).max)).min(axis=1)
    kmx = np.where(cont, key, np.uint64(0)).max(axis=1)
    return mis, oa_bad, has_c & (kmin != kmx)


@pytest.mark.parametrize("preset", ["neoverse-n1", "neoverse-v2"])
def test_set_faults_equals_min_max_form(make_hw: MakeHw, preset: str) -> None:
    from contpte.hw import PRESETS

    hw = make_hw(features=PRESETS[preset], nr_frames=1024)
    c = hw.checker
    assert c is not None
    s = hw.new_space(1, "a")
    t = s.alloc_pte_table(0)
    rng = np.random.default_rng(7)
    for _ in range(200):
        vals = _values(hw, rng, hw.ptrs_per_pte, int(rng.integers(0, 64)))
        flip = rng.random(len(vals)) < 0.02
        vals[flip] ^= np.uint64(1) << rng.integers(0, 60, size=int(flip.sum())).astype(np.uint64)
        t.poke(0, vals)
        r = c._table_region(t)
        r.vals[:] = vals
        got = c.set_faults(r, 0, hw.ptrs_per_pte)
        want = _set_faults_reference(c, vals)
        for g, w in zip(got, want, strict=True):
            assert g.tolist() == w.tolist()


# ---------------------------------------------------------------------------
# whole tables (the fork / exit shape): first-seen and known regions, the
# shadows kept as views of the store's values, the PTL releases after
# ---------------------------------------------------------------------------
CASES = [("neoverse-n1", "vmsa"), ("neoverse-v2", "vmsa"), ("apple-m2", "vmsa"), ("x86", "flat")]


def _blocks(hw: Hardware, rng: np.random.Generator, n: int, base: int, defects: bool = True) -> np.ndarray:
    """A table of whole contiguous blocks (consistent unless a defect is seeded), lone pages or none."""
    fmt = hw.fmt
    cn = fmt.cont_ptes
    out = np.zeros(n, dtype=np.uint64)
    for b in range(0, n, cn):
        kind = rng.integers(0, 5 if defects else 4)
        if kind == 0:
            continue
        write = (WS_DIRTY, WS_CLEAN, WS_NONE)[int(rng.integers(0, 3))]
        pfn0 = base + b
        cont = bool(kind >= 2 and fmt.has_contiguous)
        for i in range(cn):
            w = write
            if write != WS_NONE and hw.features.hd and rng.random() < 0.3:
                w = WS_CLEAN if write == WS_DIRTY else WS_DIRTY  # legal divergence under DBM
            out[b + i] = fmt.mk_page(pfn0 + i, cont=cont, write=w, af=bool(rng.random() < 0.8))
        if kind == 4 and cn > 1:
            i, j = (int(x) for x in rng.choice(cn, 2, replace=False))
            d = int(rng.integers(0, 4))
            if d == 0:
                out[b + i], out[b + j] = out[b + j], out[b + i]  # output addresses permuted
            elif d == 1:
                out[b + i] = fmt.mk_page(pfn0 + i, write=write)  # not Contiguous
            elif d == 2:
                out[b + i] ^= np.uint64(fmt.mk_page(0, user=False) ^ fmt.mk_page(0))  # attributes differ
            else:
                out[b : b + cn] = out[b : b + cn] + np.uint64(1 << hw.page_shift)  # not aligned
    return out


def _table_values(hw: Hardware, rng: np.random.Generator, cur: np.ndarray, base: int) -> np.ndarray:
    n = len(cur)
    fmt = hw.fmt
    r = rng.random()
    if r < 0.35:  # write-protect (and mkold), as fork does to the parent and child
        mkold = bool(rng.random() < 0.5)
        return np.array(
            [
                fmt.mk_page(
                    fmt.pfn(int(v)), cont=fmt.cont(int(v)), write=WS_NONE, af=fmt.af(int(v)) and not mkold
                )
                if fmt.page_valid(int(v))
                else int(v)
                for v in cur
            ],
            dtype=np.uint64,
        )
    if r < 0.45:
        return np.zeros(n, dtype=np.uint64)
    if r < 0.5:
        return cur.copy()
    if r < 0.6:
        out = cur.copy()
        k = rng.integers(0, n, size=3)
        out[k] = _values(hw, rng, 3, base + 7)
        return out
    if r < 0.7:
        return _values(hw, rng, n, base)
    return _blocks(hw, rng, n, base)


class _Recorder:
    """A second store observer (without ``on_store_many``)."""

    def __init__(self) -> None:
        self.log: list[Any] = []

    def on_store(self, table: PteTable, idx: int, old: np.ndarray, new: np.ndarray) -> None:
        self.log.append((table.space.asid, table.pmd_index, idx, old.tolist(), new.tolist()))


def _legal_values(hw: Hardware, rng: np.random.Generator, cur: np.ndarray, base: int) -> np.ndarray:
    """What a correct kernel stores over a table that was flushed since its last break."""
    fmt = hw.fmt
    if not fmt.page_valid_v(cur).any():
        return _blocks(hw, rng, len(cur), base, defects=False)
    r = rng.random()
    if r < 0.6:
        mkold = bool(rng.random() < 0.5)
        return np.array(
            [
                fmt.mk_page(
                    fmt.pfn(int(v)), cont=fmt.cont(int(v)), write=WS_NONE, af=fmt.af(int(v)) and not mkold
                )
                if fmt.page_valid(int(v))
                else 0
                for v in cur
            ],
            dtype=np.uint64,
        )
    if r < 0.8:
        return np.zeros(len(cur), dtype=np.uint64)
    return cur.copy()


def _run_whole(hw: Hardware, seed: int, bulk: bool, recorder: bool = False) -> Any:
    rng = np.random.default_rng(seed)
    legal = seed % 2 == 0  # every transition correct: the stores must pass
    n = hw.ptrs_per_pte
    c = hw.checker
    assert c is not None
    spaces = [hw.new_space(1, "a"), hw.new_space(2, "b")]
    rec = _Recorder()
    if recorder:
        for s in spaces:
            s.observers.append(rec)
    nt = 6
    tables = []
    for k in range(nt):
        s = spaces[k % 2]
        t = s.alloc_pte_table(k)
        tables.append(t)
        if rng.random() < 0.5:  # a known region; else first seen by the bulk store
            values = (_legal_values if legal else _table_values)(hw, rng, t.entries, 64 * k)
            t.store_many(0, values)
        elif rng.random() < 0.2:
            s.pmds[k] = hw.fmt.mk_block(4096)  # a level-2 value the region takes at first sight
    stale: dict[int, PteTable] = {}
    err = None
    try:
        for _round in range(3):
            # history: breaks, TLBIs, level-2 breaks, behind-the-back changes, new table objects
            if legal:
                for s in spaces:
                    hw.dsb("ishst")
                    hw.tlbi("ASIDE1IS", asid=s.asid)
                    hw.dsb("ish")
            for _ in range(int(rng.integers(0, 3))):
                k = int(rng.integers(0, nt))
                t = tables[k]
                s = t.space
                op = int(rng.choice([1, 2, 7])) if legal else rng.integers(0, 9)
                lo = int(rng.integers(0, n))
                if op == 0:
                    t.store_many(lo, np.zeros(n - lo, dtype=np.uint64))
                elif op == 1:
                    hw.tlbi("VALE1IS", asid=s.asid, va=t.va(lo), ttl=3)
                    if rng.random() < 0.7:
                        hw.dsb("ish")
                elif op == 2:
                    hw.tlbi("ASIDE1IS", asid=s.asid)
                    hw.dsb("ish" if rng.random() < 0.8 else "ishst")
                elif op == 3:
                    t.poke(lo, int(t.entries[lo]) ^ (1 << 12))  # not observed
                elif op == 4 and rng.random() < 0.3:
                    s.pmd_store(t.pmd_index, hw.fmt.mk_block(4096))
                    s.pmd_store(t.pmd_index, 0)
                elif op == 5 and rng.random() < 0.3:
                    nt_ = PteTable(s, t.pmd_index)  # replaced without being freed
                    s.tables[t.pmd_index] = nt_
                    tables[k] = nt_
                elif op == 6 and rng.random() < 0.3:
                    s.free_pte_table(t.pmd_index)
                    tables[k] = s.alloc_pte_table(t.pmd_index)
                elif op == 7:
                    # the legal sequence: break, flush, then the stores below make
                    t.store_many(0, np.zeros(n, dtype=np.uint64))
                    if rng.random() < 0.5:
                        s.pmd_store(t.pmd_index, hw.fmt.mk_block(4096))
                        s.pmd_store(t.pmd_index, 0)
                    hw.dsb("ishst")
                    hw.tlbi("ASIDE1IS", asid=s.asid)
                    hw.dsb("ish")
                elif op == 8 and rng.random() < 0.3:
                    stale[k] = t  # stored to after a new table object replaces it
                    nt_ = PteTable(s, t.pmd_index)
                    s.tables[t.pmd_index] = nt_
                    tables[k] = nt_
            stores = []
            for k in rng.permutation(nt)[: int(rng.integers(1, nt + 1))].tolist():
                t = stale.pop(k, tables[k])
                if legal:
                    new = _legal_values(hw, rng, t.entries, 64 * k)
                else:
                    new = _table_values(hw, rng, t.entries, 64 * k + int(rng.integers(0, 2)) * 16)
                if rng.random() < 0.15 and not legal:  # a piece of a table
                    cn = hw.fmt.cont_ptes
                    lo = int(rng.integers(0, n // cn)) * cn if rng.random() < 0.7 else int(rng.integers(0, n))
                    hi = int(rng.integers(lo + 1, n + 1))
                    stores.append((t, lo, new[lo:hi]))
                else:
                    stores.append((t, 0, new))
            _store_and_release(c, stores, bulk)
    except InvariantViolation as e:
        err = (e.rule, str(e), e.addr, e.ptes)
    # (after a violation the other observer has heard the stores up to it
    # one by one, none in bulk: the checker is told first)
    return err, _state(hw), rec.log if err is None else None


@pytest.mark.parametrize(("preset", "fmt"), CASES)
@pytest.mark.parametrize(("compact", "chunk"), [(False, False), (True, False), (False, True)])
def test_whole_table_bulk_stores_equal_one_by_one(
    make_hw: MakeHw, preset: str, fmt: str, compact: bool, chunk: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bulk stores of whole tables and the bulk PTL release: the per-table verdicts, messages and state.

    ``compact``: every block is worth compacting (the blocks of these small
    tables are not, else), so the shadows move to new blocks as rows die.
    ``chunk``: the passes over the stores take a table at a time (a
    mismatch, a break, a bad set in any chunk).
    """
    from contpte.hw import PRESETS
    from contpte.hw import checker as checker_mod

    if compact:
        monkeypatch.setattr(checker_mod, "_SMALL_BLOCK", 0)
    if chunk:
        monkeypatch.setattr(checker_mod, "_CHUNK", 1)
    rules = set()
    clean = 0
    for seed in range(250):
        recorder = seed % 5 == 4  # another observer: the checker copies the new values
        a = _run_whole(make_hw(features=PRESETS[preset], fmt=fmt, nr_frames=1024), seed, True, recorder)
        b = _run_whole(make_hw(features=PRESETS[preset], fmt=fmt, nr_frames=1024), seed, False, recorder)
        assert a == b, seed
        if a[0] is not None:
            rules.add(a[0][0])
        else:
            clean += 1
    assert clean > 50  # the legal sequences pass through the bulk paths too
    # violations still raised through the bulk paths
    assert "unobserved-store" in rules
    if fmt == "vmsa":
        assert {"contig-consistency", "bbm"} <= rules


def _pmd_state(hw: Hardware, spaces: list[Any]) -> Any:
    return _state(hw), [dict(s.pmds) for s in spaces], hw.counters.get("pmd.write")


def _run_pmd(hw: Hardware, seed: int, bulk: bool) -> Any:
    from contpte.hw import AddressSpace

    rng = np.random.default_rng(seed)
    fmt = hw.fmt
    c = hw.checker
    assert c is not None
    spaces = [hw.new_space(1 + k, f"s{k}") for k in range(3)]
    npmd = 10
    base = hw.ptrs_per_pte

    def block(i: int, write: int = WS_DIRTY, af: bool = True) -> int:
        return fmt.mk_block(base * (1 + i % 6), write=write, af=af)

    for s in spaces:
        for i in range(npmd):
            r = rng.random()
            if r < 0.5:
                s.pmd_store(i, block(i + int(rng.integers(0, 2))))
            elif r < 0.6:
                # a level-3 table broken into (pending level-3 breaks, then a block)
                t = s.alloc_pte_table(i)
                t.store_many(0, _values(hw, rng, hw.ptrs_per_pte, 64))
                t.store_many(0, np.zeros(hw.ptrs_per_pte, dtype=np.uint64))
                s.free_pte_table(i)
            elif r < 0.65:
                s.alloc_pte_table(i)  # a table the checker has not seen yet
    err = None
    try:
        for _ in range(int(rng.integers(0, 4))):
            s = spaces[int(rng.integers(0, 3))]
            i = int(rng.integers(0, npmd))
            op = rng.integers(0, 5)
            if op == 0 and s.pmds.get(i):
                s.pmd_store(i, 0)  # a level-2 break
            elif op == 1:
                hw.tlbi("VAE1IS", asid=s.asid, va=i << hw.pmd_shift, ttl=2)
                if rng.random() < 0.7:
                    hw.dsb("ish")
            elif op == 2:
                hw.tlbi("ASIDE1IS" if rng.random() < 0.7 else "ASIDE1", asid=s.asid)
                hw.dsb("ish")
            elif op == 3 and rng.random() < 0.3:
                s.pmds[i] = block(i + 3)  # not observed
        m = int(rng.integers(1, npmd + 1))
        groups = []
        for s in spaces[: int(rng.integers(1, 4))]:
            idxs = rng.permutation(npmd)[:m].tolist()
            vals = []
            for i in idxs:
                old = s.pmds.get(i, 0)
                r = rng.random()
                if old and r < 0.5:  # write-protect (and mkold), as fork does
                    vals.append(fmt.mk_block(fmt.pfn(old), write=WS_NONE, af=bool(rng.random() < 0.5)))
                elif r < 0.6:
                    vals.append(0)
                elif r < 0.9:
                    vals.append(block(i + int(rng.integers(0, 3))))
                else:
                    vals.append(block(i, write=WS_CLEAN))
            groups.append((s, idxs, vals))
        if bulk:
            AddressSpace.pmd_store_lockstep(groups)
        else:
            for k in range(m):
                for s, idxs, vals in groups:
                    s.pmd_store(idxs[k], vals[k])
    except InvariantViolation as e:
        err = (e.rule, str(e), e.addr, e.ptes)
    return err, _pmd_state(hw, spaces)


@pytest.mark.parametrize(("preset", "fmt"), CASES)
def test_pmd_store_lockstep_equals_the_loop(make_hw: MakeHw, preset: str, fmt: str) -> None:
    """``AddressSpace.pmd_store_lockstep`` (fork's PMD copies): the loop's verdicts, state and counts."""
    from contpte.hw import PRESETS

    rules = set()
    for seed in range(300):
        a = _run_pmd(make_hw(features=PRESETS[preset], fmt=fmt, nr_frames=8192), seed, True)
        b = _run_pmd(make_hw(features=PRESETS[preset], fmt=fmt, nr_frames=8192), seed, False)
        assert a == b, seed
        if a[0] is not None:
            rules.add(a[0][0])
    assert "unobserved-store" in rules
    if fmt == "vmsa":
        assert "bbm" in rules


@pytest.mark.parametrize("preset", ["neoverse-n1", "apple-m2"])
@pytest.mark.parametrize("chunk", [None, 3, 40])
def test_sets_ok_equals_set_faults(
    make_hw: MakeHw, preset: str, chunk: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vectorised whole-set check (bulk stores, PTL release) is ``set_faults``, set by set.

    ``chunk``: the sets per chunk of the pass (None: the default), so that
    several rows, and parts of one row, go in turn.
    """
    from contpte.hw import PRESETS
    from contpte.hw import checker as checker_mod

    hw = make_hw(features=PRESETS[preset], nr_frames=1024)
    c = hw.checker
    assert c is not None
    n, cn = hw.ptrs_per_pte, hw.fmt.cont_ptes
    if chunk is not None:
        monkeypatch.setattr(checker_mod, "_CHUNK", chunk * cn)
    rng = np.random.default_rng(3)
    for _ in range(200):
        rows = int(rng.integers(1, 7))
        v = np.concatenate([_blocks(hw, rng, n, int(rng.integers(0, 8)) * cn) for _ in range(rows)])
        flip = rng.random(len(v)) < 0.01
        v[flip] ^= np.uint64(1) << rng.integers(0, 60, size=int(flip.sum())).astype(np.uint64)
        mis, oa_bad, attr_bad = c._set_faults_v(v.reshape(-1, cn))
        want = ~(mis | oa_bad | attr_bad)
        assert c._sets_ok(v.reshape(rows, n)).tolist() == want.tolist()
        assert c._sets_ok(v.reshape(1, -1)).tolist() == want.tolist()  # one long row (pieces)
        assert (
            c._sets_ok(v.reshape(rows, n)[::-1]).tolist() == want.reshape(rows, -1)[::-1].reshape(-1).tolist()
        )
        assert c._tables_ok(v.reshape(rows, n)).tolist() == want.reshape(rows, -1).all(axis=1).tolist()


@pytest.mark.parametrize("small", [64 << 10, 0])
def test_bulk_shadows_are_never_lent_again(
    make_hw: MakeHw, small: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blocks behind the shadows of whole-table stores are never lent again, and are
    freed once no shadow uses them; a block half of whose rows are gone is compacted
    (``small``: the size below which a block is not worth it)."""
    import gc
    import weakref

    from contpte.hw import checker as checker_mod

    monkeypatch.setattr(checker_mod, "_SMALL_BLOCK", small)
    hw = make_hw(nr_frames=1024)
    c = hw.checker
    assert c is not None
    n = hw.ptrs_per_pte
    rng = np.random.default_rng(5)
    lent_refs: list[Any] = []
    lend = c.news_buffer

    def news_buffer(size: int) -> np.ndarray:
        b = lend(size)
        lent_refs.append(weakref.ref(b))
        return b

    monkeypatch.setattr(c, "news_buffer", news_buffer)

    def shadow_blocks() -> tuple[dict[int, int], int]:
        """The arrays behind the shadows (id: bytes) and the bytes of the shadows in them."""
        used: dict[int, int] = {}
        rows = 0
        for regs in c.regions.values():
            for r in regs.values():
                if r.blk is not None:
                    base = r.vals.base
                    assert base is r.blk.base and np.shares_memory(r.vals, r.blk[r.bi])
                    used[id(base)] = base.nbytes
                    rows += r.vals.nbytes
        return used, rows

    parent = hw.new_space(1, "parent")
    pts = [parent.alloc_pte_table(k) for k in range(4)]
    PteTable.store_bulk_tables(
        [(t, 0, _blocks(hw, rng, n, 64 * k, defects=False)) for k, t in enumerate(pts)]
    )
    for gen in range(6):
        child = hw.new_space(10 + gen, "child")
        cts = [child.alloc_pte_table(k) for k in range(4)]
        stores = []
        for p, ch in zip(pts, cts, strict=True):
            fmt = hw.fmt
            wp = np.array(
                [
                    fmt.mk_page(fmt.pfn(int(v)), cont=fmt.cont(int(v)), write=WS_NONE)
                    if fmt.page_valid(int(v))
                    else 0
                    for v in p.entries
                ],
                dtype=np.uint64,
            )
            stores += [(p, 0, wp), (ch, 0, wp)]
        PteTable.store_bulk_tables(stores)
        c.ptl_release_many([t for t, _, _ in stores])
        lent = c.news_buffer(8 * n)
        assert not any(np.shares_memory(lent, r.vals) for rg in c.regions.values() for r in rg.values())
        c._lent = None
        del lent
        hw.retire_space(child)
        gc.collect()
        used, rows = shadow_blocks()
        # every lent block still alive is a shadow's: the others are freed
        alive = {id(b) for b in (ref() for ref in lent_refs) if b is not None}
        assert alive <= set(used)
        if not small:
            # compacted: here (the parent's rows, half of the fork's block)
            # exactly the bytes of the shadows
            assert sum(used.values()) == rows
        else:
            assert len(used) <= 2
    # tables freed (munmap): their rows go at once, their blocks are
    # compacted at the next bulk store
    for t in pts[2:]:
        parent.free_pte_table(t.pmd_index)
    other = hw.new_space(99, "other")
    PteTable.store_bulk_tables([(other.alloc_pte_table(0), 0, np.zeros(n, dtype=np.uint64))])
    gc.collect()
    used, rows = shadow_blocks()
    assert {id(b) for b in (ref() for ref in lent_refs) if b is not None} <= set(used)
    if not small:
        assert sum(used.values()) == rows
    # the shadows still catch a change behind the checker's back
    pts[1].poke(3, int(pts[1].entries[3]) ^ (1 << 12))
    with pytest.raises(InvariantViolation) as ei:
        PteTable.store_bulk_tables([(t, 0, t.entries.copy()) for t in pts[:2]])
    assert ei.value.rule == "unobserved-store" and ei.value.addr == pts[1].va(3)


def test_pmd_store_lockstep_without_observers(make_hw: MakeHw) -> None:
    """No observer: the loop's level-2 descriptors and counts, duplicates included."""
    from contpte.hw import AddressSpace

    for seed in range(50):
        out = []
        for bulk in (True, False):
            rng = np.random.default_rng(seed)
            hw = make_hw(checker=False)
            spaces = [hw.new_space(1 + k, f"s{k}") for k in range(2)]
            groups = []
            for s in spaces:
                idxs = rng.integers(0, 6, size=4).tolist()  # repeats: the last store wins
                vals = [hw.fmt.mk_block(512 * int(x)) if x else 0 for x in rng.integers(0, 3, size=4)]
                groups.append((s, idxs, vals))
            if bulk:
                AddressSpace.pmd_store_lockstep(groups)
            else:
                for k in range(4):
                    for s, idxs, vals in groups:
                        s.pmd_store(idxs[k], vals[k])
            out.append(([dict(s.pmds) for s in spaces], hw.counters.get("pmd.write")))
        assert out[0] == out[1], seed


# ---------------------------------------------------------------------------
# whole-table stores of clean regions changing no validity, output address,
# memory type or Contiguous bit (fork's write-protect of the parent): the
# region kept clean unchecked only when every new entry agrees on every bit
# but the output address
# ---------------------------------------------------------------------------
def _clean_flags(hw: Hardware) -> Any:
    c = hw.checker
    assert c is not None
    return {(asid, pi): r.clean for asid, rr in c.regions.items() for pi, r in rr.items()}


def _run_nonrel(hw: Hardware, seed: int, bulk: bool) -> Any:
    rng = np.random.default_rng(seed)
    fmt = hw.fmt
    n = hw.ptrs_per_pte
    cn = fmt.cont_ptes
    c = hw.checker
    assert c is not None
    rel = int(fmt.valid_bits_u | fmt.bbm_bits_u)
    free = [b for b in range(64) if not (rel >> b) & 1]
    spaces = [hw.new_space(1, "a"), hw.new_space(2, "b")]
    nt = int(rng.integers(1, 9))
    tables = []
    for k in range(nt):
        s = spaces[k % 2]
        t = s.alloc_pte_table(k)
        tables.append(t)
        kind = rng.random()
        if kind < 0.5:  # every entry the same descriptor but the output address
            v = fmt.mk_page(
                64 * k, cont=fmt.has_contiguous and rng.random() < 0.8, af=bool(rng.random() < 0.5)
            )
            vals = np.uint64(v) + (np.arange(n, dtype=np.uint64) << np.uint64(hw.page_shift))
        else:
            vals = _blocks(hw, rng, n, 64 * k, defects=kind < 0.6)
        t.store_many(0, vals)
        if rng.random() < 0.8:
            with contextlib.suppress(InvariantViolation):
                c.ptl_release(t)  # clean, or not (a seeded defect)
    err = None
    try:
        for _round in range(2):
            stores = []
            for k in rng.permutation(nt)[: int(rng.integers(1, nt + 1))].tolist():
                t = tables[k]
                cur = t.entries.copy()
                x = np.uint64(0)
                for b in rng.choice(free, int(rng.integers(0, 3)), replace=False).tolist():
                    x |= np.uint64(1 << b)
                how = rng.random()
                if how < 0.4:  # every entry
                    new = cur ^ x
                elif how < 0.6:  # every valid entry
                    new = np.where(fmt.page_valid_v(cur), cur ^ x, cur)
                elif how < 0.75:  # one set, or part of one
                    new = cur.copy()
                    lo = int(rng.integers(0, n // cn)) * cn
                    hi = lo + (cn if rng.random() < 0.5 else int(rng.integers(1, cn + 1)))
                    new[lo:hi] ^= x
                elif how < 0.85:  # a few entries
                    new = cur.copy()
                    new[rng.integers(0, n, size=2)] ^= x
                elif how < 0.95:  # each set its own change
                    xs = rng.choice(np.array([0, 1 << free[0], 1 << free[-1]], dtype=np.uint64), n // cn)
                    new = cur ^ np.repeat(xs, cn)
                else:
                    new = cur.copy()
                if rng.random() < 0.05:
                    t.poke(int(rng.integers(0, n)), int(cur[0]) ^ (1 << free[0]))  # not observed
                stores.append((t, 0, new))
            _store_and_release(c, stores, bulk)
    except InvariantViolation as e:
        err = (e.rule, str(e), e.addr, e.ptes)
    return err, _state(hw), _clean_flags(hw) if err is None else None


@pytest.mark.parametrize(("preset", "fmt"), CASES)
@pytest.mark.parametrize("chunk", [False, True])
def test_nonrel_whole_table_stores_equal_one_by_one(
    make_hw: MakeHw, preset: str, fmt: str, chunk: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Write-protect-like whole-table stores over clean regions: the per-table verdicts and state,
    and the regions left clean exactly when the per-table calls and releases leave them clean."""
    from contpte.hw import PRESETS
    from contpte.hw import checker as checker_mod

    if chunk:
        monkeypatch.setattr(checker_mod, "_CHUNK", 1)
    rules: set[str] = set()
    kept = 0
    for seed in range(200):
        a = _run_nonrel(make_hw(features=PRESETS[preset], fmt=fmt, nr_frames=1024), seed, True)
        b = _run_nonrel(make_hw(features=PRESETS[preset], fmt=fmt, nr_frames=1024), seed, False)
        assert a == b, seed
        if a[0] is not None:
            rules.add(a[0][0])
        else:
            kept += 1
    assert kept > 50
    assert "unobserved-store" in rules
    if fmt == "vmsa":
        assert "contig-consistency" in rules  # a change to part of a set caught at the release


@pytest.mark.parametrize("mixed", [False, True])
def test_write_protect_of_a_clean_table(
    make_hw: MakeHw, mixed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clean table's entries all changed alike in bits that keep the sets' layout: kept clean
    without looking at its sets when the new entries agree on every bit but the output address;
    else checked (clearing DBM makes AP[2] count: sets of clean and dirty entries become inconsistent)."""
    from contpte.hw import PRESETS
    from contpte.hw import checker as checker_mod

    rows: list[int] = []
    orig = checker_mod.RuleChecker._sets_ok

    def spy(self: Any, v2: np.ndarray) -> np.ndarray:
        rows.append(len(v2))
        return orig(self, v2)

    monkeypatch.setattr(checker_mod.RuleChecker, "_sets_ok", spy)
    out = []
    for bulk in (True, False):
        hw = make_hw(features=PRESETS["neoverse-n1"], nr_frames=1024)
        c = hw.checker
        assert c is not None
        fmt = hw.fmt
        n = hw.ptrs_per_pte
        t = hw.new_space(1, "a").alloc_pte_table(0)
        vals = np.array(
            [fmt.mk_page(i, cont=True, write=WS_CLEAN if mixed and i % 2 else WS_DIRTY) for i in range(n)],
            dtype=np.uint64,
        )
        t.store_many(0, vals)
        c.ptl_release(t)
        assert t.chk.clean
        new = vals ^ np.uint64(fmt.DBM)  # pte_wrprotect's PTE_WRITE (DBM) clear, alike everywhere
        rows.clear()
        try:
            if bulk:
                PteTable.store_bulk_tables([(t, 0, new)])
                assert t.chk.clean == (not mixed)
                assert bool(rows) == mixed  # looked at only when it must be
                c.ptl_release_many([t])
            else:
                t.store_bulk(0, new)
                c.ptl_release(t)
            err = None
        except InvariantViolation as e:
            err = (e.rule, str(e), e.addr, e.ptes)
        out.append((err, _state(hw)))
    assert out[0] == out[1]
    assert (out[0][0] is not None and out[0][0][0] == "contig-consistency") == mixed
