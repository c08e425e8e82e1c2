"""``RuleChecker.on_store_many`` (``PteTable.store_bulk_tables``) against ``on_store`` per table.

Random descriptor stores over several tables, after random earlier stores,
breaks and TLBIs: the bulk entry raises the same violation (rule, message,
address, descriptors) and leaves the same shadow state and sequence number
as the per-table calls in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from contpte.errors import InvariantViolation
from contpte.hw import Hardware, PteTable
from contpte.hw.format import WS_CLEAN, WS_DIRTY, WS_NONE

MakeHw = Callable[..., Hardware]
NT = 4  # tables


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
        out[i] = hw.fmt.mk_page(pfn0 + i, cont=bool(kind == 2 and r > 0.2), write=write, af=bool(r < 0.9))
    return out


def _state(hw: Hardware) -> Any:
    c = hw.checker
    assert c is not None
    regs = {}
    for asid, rr in c.regions.items():
        for pi, r in rr.items():
            n = len(r.vals)
            bo, bs = (r.broken_old, r.break_seq) if r.broken_old is not None else (np.zeros(n), np.full(n, -1))
            seqs = [r.seqs(f, slice(0, n)).tolist() for f in ("cover", "issued", "local")]
            regs[(asid, pi)] = (
                r.vals.tolist(), np.asarray(bo).tolist(), np.asarray(bs).tolist(), seqs,
                r.cover2, r.issued2, r.local2, r.pmd_val, r.pmd_broken_old, r.pmd_break_seq,
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
            t.entries[lo] ^= np.uint64(1 << 12)  # not observed
    stores = []
    for k in rng.permutation(NT)[: int(rng.integers(1, NT + 1))].tolist():
        t = tables[k]
        lo = int(rng.integers(0, n))
        hi = int(rng.integers(lo + 1, n + 1))
        r = rng.random()
        old = t.entries[lo:hi].copy()
        if r < 0.3:  # write-protect / mkold, as fork does
            new = np.array([hw.fmt.mk_page(hw.fmt.pfn(int(v)), cont=hw.fmt.cont(int(v)), write=WS_NONE,
                                           af=False) if hw.fmt.page_valid(int(v)) else 0 for v in old],
                           dtype=np.uint64)
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
        t.entries[:] = vals
        r = c._table_region(t)
        r.vals[:] = vals
        got = c.set_faults(r, 0, hw.ptrs_per_pte)
        want = _set_faults_reference(c, vals)
        for g, w in zip(got, want, strict=True):
            assert g.tolist() == w.tolist()
