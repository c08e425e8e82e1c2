"""Vectorised user access: one level-3 table (up to PTRS_PER_PTE pages) at a time.

``access_sweep`` produces exactly the end state (memory, descriptors, TLB
contents and LRU order, RNG position) and counters of the page-by-page
reference ``Hardware._access_ref``; ``tests/unit/hw/test_sweep.py`` proves it
on random states.  It handles in bulk the cases whose outcome is easy to
compute for a whole run, and hands every other page to the reference:

- a table whose region holds no entry of this ASID in this CPU's TLB: runs of
  non-Contiguous pages are decoded at once (walk, AF/dirty update, one TLB
  entry each, filled in order); each fully valid Contiguous set is filled by
  one reference walk of its first page and its other pages are hits;
- a level-2 block: one reference walk, then hits;
- a table whose pages are all covered by existing entries: hits, with the
  stale-entry check done as one comparison against the checker's shadow.

A sweep touches each page once, in order, so the LRU end state of a run of
fills is simply "the new entries, in order, after the old ones".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..errors import InvariantViolation
from .format import L2_BLOCK, L2_TABLE, WS_CLEAN, WS_DIRTY
from .tlb import Tlb, TlbEntry

if TYPE_CHECKING:
    from .hardware import Hardware, HwFault
    from .tables import AddressSpace, PteTable

__all__ = ["access_sweep"]

U64 = npt.NDArray[np.uint64]
BoolArr = npt.NDArray[np.bool_]

#: Below this many pages a chunk goes to the reference path directly.
_SMALL = 4


def access_sweep(
    hw: Hardware,
    cpu: int,
    space: AddressSpace,
    va: int,
    npages: int,
    write: bool,
    value: int | U64 | None,
    out: U64 | None,
) -> tuple[int, HwFault | None]:
    """Same result, state and counters as ``Hardware._access_ref``, a table at a time."""
    n = hw.ptrs_per_pte
    shift = hw.page_shift - 3
    vpn0 = va >> hw.page_shift
    done = 0
    while done < npages:
        vpn = vpn0 + done
        i0 = vpn & (n - 1)
        cnt = min(n - i0, npages - done)
        val = value[done:] if isinstance(value, np.ndarray) else value
        o = out[done:] if out is not None else None
        if cnt < _SMALL:
            k, fault = 0, None
        else:
            k, fault = _chunk(hw, cpu, space, vpn >> shift, i0, cnt, write, val, o)
        if fault is not None:
            return done + k, fault
        if k < cnt:
            sub_val = val[k:] if isinstance(val, np.ndarray) else val
            sub_out = o[k:] if o is not None else None
            r, fault = hw._access_ref(
                cpu, space, (vpn + k) << hw.page_shift, cnt - k, write, sub_val, sub_out
            )
            if fault is not None:
                return done + k + r, fault
        done += cnt
    return npages, None


def _move(
    hw: Hardware, pfns: npt.NDArray[np.int64], write: bool, value: int | U64 | None, out: U64 | None, at: int
) -> None:
    """Load or store pages ``at..at+len(pfns)`` of the access (frames already range-checked)."""
    data = hw.memory.data
    m = len(pfns)
    if write:
        assert value is not None
        if isinstance(value, np.ndarray):
            data[pfns] = value[at : at + m]
        else:
            data[pfns] = np.uint64(value)
    elif out is not None:
        out[at : at + m] = data[pfns]


def _chunk(
    hw: Hardware,
    cpu: int,
    space: AddressSpace,
    pmd_index: int,
    i0: int,
    cnt: int,
    write: bool,
    value: int | U64 | None,
    out: U64 | None,
) -> tuple[int, HwFault | None]:
    """Do pages ``[0, k)`` of one table's chunk in bulk; return (k, fault).

    ``k < cnt`` with no fault: the caller continues with the reference path.
    """
    tlb = hw.tlbs[cpu]
    asid = space.asid
    pmd = space.pmds.get(pmd_index, 0)
    if pmd:
        kind = hw.fmt.l2_kind(pmd)
        if kind == L2_BLOCK:
            return _block_chunk(hw, cpu, space, pmd_index, i0, cnt, write, value, out)
        if kind != L2_TABLE:
            return 0, None
    table = space.tables.get(pmd_index)
    if table is None:
        return 0, None
    if tlb.region_busy(asid, pmd_index):
        vpn = (pmd_index << (hw.page_shift - 3)) + i0
        if _covered(tlb, asid, vpn):
            return _hit_chunk(hw, cpu, space, pmd_index, i0, cnt, write, value, out)
        return _gap_chunk(hw, cpu, space, table, i0, cnt, write, value, out)
    return _fill_chunk(hw, cpu, space, table, i0, cnt, write, value, out)


def _covered(tlb: Tlb, asid: int, vpn: int) -> bool:
    """Does any entry of ``asid`` cover ``vpn`` (no LRU update)?"""
    ents = tlb.entries
    return any((asid, vpn & ~(size - 1), size) in ents for size in tlb.sizes)


def _gap_chunk(
    hw: Hardware,
    cpu: int,
    space: AddressSpace,
    table: PteTable,
    i0: int,
    cnt: int,
    write: bool,
    value: int | U64 | None,
    out: U64 | None,
) -> tuple[int, HwFault | None]:
    """The region has entries but not for the first page: fill the uncovered prefix.

    Only pages outside Contiguous groups, none covered by a TLB entry, up to
    and including the first that faults (found from the descriptors, so the
    per-page coverage test stays short: a fault-in restarting after each
    fault costs O(1), not O(region)).  Such fills overlap nothing, so they
    are exactly ``_fill_run``'s case.
    """
    d = table.entries[i0 : i0 + cnt].copy()
    valid, in_cont, _ = _group_kinds(hw, d, i0, cnt)
    stop = np.flatnonzero(~valid | in_cont)
    lim = int(stop[0]) + 1 if len(stop) else cnt
    if len(stop) and in_cont[lim - 1]:
        lim -= 1
    tlb = hw.tlbs[cpu]
    asid = space.asid
    vpn0 = (table.pmd_index << (hw.page_shift - 3)) + i0
    m = 0
    while m < lim and not _covered(tlb, asid, vpn0 + m):
        m += 1
    if m == 0:
        return 0, None
    return _fill_run(hw, cpu, space, table, i0, 0, m, d, valid, write, value, out)


def _block_chunk(
    hw: Hardware,
    cpu: int,
    space: AddressSpace,
    pmd_index: int,
    i0: int,
    cnt: int,
    write: bool,
    value: int | U64 | None,
    out: U64 | None,
) -> tuple[int, HwFault | None]:
    """A level-2 block: the first page by the reference path, then hits on its entry."""
    tlb = hw.tlbs[cpu]
    if tlb.region_busy(space.asid, pmd_index):
        return _hit_chunk(hw, cpu, space, pmd_index, i0, cnt, write, value, out)
    vpn = (pmd_index << (hw.page_shift - 3)) + i0
    k, fault = hw._access_ref(cpu, space, vpn << hw.page_shift, 1, write, value, out)
    if fault is not None or cnt == 1:
        return k, fault
    e = tlb.entries.get((space.asid, pmd_index << (hw.page_shift - 3), hw.ptrs_per_pte))
    if e is None:  # pragma: no cover - the walk just filled it
        return 1, None
    pfns = e.pfn_base + i0 + np.arange(1, cnt, dtype=np.int64)
    if int(pfns[-1]) >= hw.memory.nr_frames:
        return 1, None
    hw.counters.add("tlb.hit", cnt - 1)
    _move(hw, pfns, write, value, out, 1)
    return cnt, None


def _group_kinds(hw: Hardware, d: U64, i0: int, cnt: int) -> tuple[BoolArr, BoolArr, BoolArr]:
    """Per page of the chunk: valid, in a Contiguous group, in a fully valid Contiguous group."""
    fmt = hw.fmt
    valid = fmt.page_valid_v(d)
    nc = hw.cont_entry_pages
    if nc == 1:
        z = np.zeros(cnt, dtype=np.bool_)
        return valid, z, z
    cont = fmt.cont_v(d) & valid
    if not cont.any():
        z = np.zeros(cnt, dtype=np.bool_)
        return valid, z, z
    g = (i0 + np.arange(cnt)) // nc
    g -= g[0]
    ng = int(g[-1]) + 1
    has_c = np.bincount(g, weights=cont, minlength=ng) > 0
    size = np.bincount(g, minlength=ng)
    all_c = np.bincount(g, weights=cont, minlength=ng) == size
    return valid, np.asarray(has_c[g], dtype=np.bool_), np.asarray(all_c[g], dtype=np.bool_)


def _fill_chunk(
    hw: Hardware,
    cpu: int,
    space: AddressSpace,
    table: PteTable,
    i0: int,
    cnt: int,
    write: bool,
    value: int | U64 | None,
    out: U64 | None,
) -> tuple[int, HwFault | None]:
    """No entry of this ASID in the region: runs of fills and Contiguous sets."""
    d = table.entries[i0 : i0 + cnt].copy()
    valid, in_cont, cont_ok = _group_kinds(hw, d, i0, cnt)
    nc = hw.cont_entry_pages
    checker = hw.checker
    set_ok: BoolArr | None = None
    if checker is not None and checker.arm and in_cont.any():
        # one vectorised consistency check of every set of the chunk; a set
        # that fails is walked by the reference path, which reports it
        lo = (i0 // nc) * nc
        hi = -(-(i0 + cnt) // nc) * nc
        mis, oa_bad, attr_bad = checker.set_faults(checker._table_region(table), lo, hi)
        set_ok = ~(mis | oa_bad | attr_bad)
    pos = 0
    while pos < cnt:
        if not in_cont[pos]:
            # a run of pages outside Contiguous groups
            end = pos + 1
            rest = np.flatnonzero(in_cont[pos:])
            end = pos + int(rest[0]) if len(rest) else cnt
            k, fault = _fill_run(hw, cpu, space, table, i0, pos, end, d, valid, write, value, out)
            if fault is not None or k < end:
                return k, fault
            pos = end
            continue
        gend = min(cnt, ((i0 + pos) // nc + 1) * nc - i0)
        if not cont_ok[pos]:
            return pos, None
        # one walk of the set's first page (RNG, HW update, checks) ...
        vpn = table.va(i0 + pos) >> hw.page_shift
        if checker is not None and set_ok is not None and set_ok[(i0 + pos) // nc - i0 // nc]:
            checker.skip_set_check = True
        try:
            k, fault = hw._access_ref(
                cpu,
                space,
                vpn << hw.page_shift,
                1,
                write,
                value[pos:] if isinstance(value, np.ndarray) else value,
                out[pos:] if out is not None else None,
            )
        finally:
            if checker is not None:
                checker.skip_set_check = False
        if fault is not None:
            return pos, fault
        # ... then hits on the one entry it filled
        m = gend - pos - 1
        if m:
            e = hw.tlbs[cpu].entries.get((space.asid, vpn & ~(nc - 1), nc))
            if e is None:  # pragma: no cover - the walk just filled it
                return pos + 1, None
            pfns = e.pfn_base + (vpn + 1 - e.vbase) + np.arange(m, dtype=np.int64)
            if int(pfns[-1]) >= hw.memory.nr_frames:
                return pos + 1, None
            hw.counters.add("tlb.hit", m)
            _move(hw, pfns, write, value, out, pos + 1)
        pos = gend
    return cnt, None


def _fill_run(
    hw: Hardware,
    cpu: int,
    space: AddressSpace,
    table: PteTable,
    i0: int,
    a: int,
    b: int,
    d: U64,
    valid: BoolArr,
    write: bool,
    value: int | U64 | None,
    out: U64 | None,
) -> tuple[int, HwFault | None]:
    """Pages ``[a, b)``, none in a Contiguous group, none in the TLB: walk and fill each."""
    fmt = hw.fmt
    feat = hw.features
    dd = d[a:b]
    v = valid[a:b]
    af = fmt.af_v(dd)
    user = fmt.user_v(dd)
    ws = fmt.write_state_v(dd)
    ok = v & user
    if not feat.ha:
        ok &= af
    if write:
        wok = ws == WS_DIRTY
        if feat.hd:
            wok |= ws == WS_CLEAN
        ok &= wok
    bad = np.flatnonzero(~ok)
    f = int(bad[0]) if len(bad) else b - a
    pfns = fmt.pfn_v(dd[:f]).astype(np.int64)
    if f and int(pfns.max()) >= hw.memory.nr_frames:
        return a, None  # the reference path reports it
    if f:
        c = hw.counters
        old = dd[:f]
        new = old.copy()
        upd_af = ~af[:f]
        n_af = int(upd_af.sum())
        if n_af:
            new[upd_af] = fmt.set_af_v(new[upd_af])
            c.add("hw.af_update", n_af)
        if write:
            upd_d = ws[:f] == WS_CLEAN
            n_d = int(upd_d.sum())
            if n_d:
                new[upd_d] = fmt.set_dirty_v(new[upd_d])
                c.add("hw.dirty_update", n_d)
        if n_af or (write and n_d):
            table.hw_store(i0 + a, new)
            for o in space.observers:
                hook = getattr(o, "on_hw_update", None)
                if hook is not None:
                    hook(table, i0 + a, old, new)
        c.add("tlb.miss", f)
        c.add("tlb.walk", f)
        checker = hw.checker
        if checker is not None and checker.arm:
            contpos = np.flatnonzero(fmt.cont_v(new))
            if len(contpos):
                # cached per page (no contig_tlb): each such fill checks its set
                ncp = fmt.cont_ptes
                r = checker._table_region(table)
                for g in sorted({(i0 + a + int(p)) // ncp for p in contpos}):
                    checker._check_sets(r, table.pmd_index, g * ncp, (g + 1) * ncp, f"TLB fill on CPU {cpu}")
        asid = space.asid
        pmd_index = table.pmd_index
        vbase = (pmd_index << (hw.page_shift - 3)) + i0 + a
        tlb = hw.tlbs[cpu]
        first = 0 if tlb.adversarial else max(0, f - tlb.capacity)
        tlist = new[first:].tolist()
        plist = pfns[first:].tolist()
        entries = [
            TlbEntry(asid, vbase + k, 1, p, t, pmd_index, i0 + a + k, 3)
            for k, p, t in zip(range(first, f), plist, tlist, strict=True)
        ]
        tlb.insert_sweep(entries, first)
        _move(hw, pfns, write, value, out, a)
    if a + f < b:
        # the faulting page: the reference path counts it and builds the fault
        vpn = table.va(i0 + a + f) >> hw.page_shift
        r2 = hw._translate_vpn(cpu, space, vpn, write)
        if isinstance(r2, int):  # pragma: no cover - the vector decode said it faults
            raise InvariantViolation("model", f"sweep and reference disagree at vpn {vpn:#x}")
        return a + f, r2
    return b, None


def _hit_chunk(
    hw: Hardware,
    cpu: int,
    space: AddressSpace,
    pmd_index: int,
    i0: int,
    cnt: int,
    write: bool,
    value: int | U64 | None,
    out: U64 | None,
) -> tuple[int, HwFault | None]:
    """The region has entries: serve the prefix of pages that hit plainly."""
    tlb = hw.tlbs[cpu]
    fmt = hw.fmt
    asid = space.asid
    n = hw.ptrs_per_pte
    region_base = pmd_index << (hw.page_shift - 3)
    keys = tlb._regions.get((asid, pmd_index), {})
    owner = np.full(n, -1, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    ents: list[TlbEntry] = []
    for key in keys:
        e = tlb.entries[key]
        lo = e.vbase - region_base
        owner[lo : lo + e.npages] = len(ents)
        count[lo : lo + e.npages] += 1
        ents.append(e)
    own = owner[i0 : i0 + cnt]
    cntv = count[i0 : i0 + cnt]
    # stop at a miss or at a page with overlapping entries (conflict choice)
    stop_at = np.flatnonzero(cntv != 1)
    u = int(stop_at[0]) if len(stop_at) else cnt
    if u == 0:
        return 0, None
    own = own[:u]
    descs = np.array([e.desc for e in ents], dtype=np.uint64)[own]
    pbase = np.array([e.pfn_base for e in ents], dtype=np.int64)[own]
    vb = np.array([e.vbase for e in ents], dtype=np.int64)[own]
    vpns = region_base + i0 + np.arange(u, dtype=np.int64)
    pfns = pbase + (vpns - vb)
    ok = fmt.user_v(descs)
    if write:
        ok &= fmt.write_state_v(descs) == WS_DIRTY
    if hw.checker is not None:
        ok &= ~hw.checker.stale_mask(space, pmd_index, i0, pfns, write)
    ok &= pfns < hw.memory.nr_frames
    bad = np.flatnonzero(~ok)
    u = int(bad[0]) if len(bad) else u
    if u == 0:
        return 0, None
    own = own[:u]
    # LRU: each entry ends where its last page was touched
    last: dict[int, int] = {}
    for k, ei in enumerate(own.tolist()):
        last[ei] = k
    for ei in sorted(last, key=last.__getitem__):
        tlb.entries.move_to_end(ents[ei].key)
    hw.counters.add("tlb.hit", u)
    _move(hw, pfns[:u], write, value, out, 0)
    return u, None
