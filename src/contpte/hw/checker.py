"""Arm ARM rule checker: contiguous sets, break-before-make, TLB conflicts, stale TLB use.

Like the kernel's page_table_check, the checker keeps its own shadow of
every descriptor (fed by the store observers of ``hw.tables`` and by the
walker's hardware updates) and its own record of which TLBIs were issued and
completed; it never trusts the tables it checks.  Rules (stable names, used
in ``InvariantViolation.rule``):

- ``contig-consistency`` (Arm ARM D8.7.1, RQTRPM/RJQQTC): in an aligned
  contiguous set, no valid Contiguous entry beside a valid non-Contiguous
  one; the output addresses of the valid Contiguous entries are consecutive
  and the block is aligned; their attributes and permissions are identical,
  ignoring AF and AP[2] where DBM=1 (D8.5.5 RLCGVS).  Checked at every TLB
  fill from a Contiguous descriptor and when the kernel drops a PTL.
- ``bbm`` (D8.17.1 RWHZWS/RDDMVT): a valid->valid change that needs
  break-before-make (memory type, output address of a writable mapping or of
  different contents, Contiguous bit or block size unless FEAT_BBML1/2) was
  made directly, or the new value was written before a broadcast TLBI
  covering the old translation, issued after the break, was completed by a
  DSB.
- ``tlbi-coverage``: the TLBIs after the break reached only part of the
  contiguous block (D8.7.1: maintenance must cover the whole block) or were
  local where a broadcast one was needed.
- ``tlb-conflict`` (D8.17.3, DFSC 0b110000): a TLB fill overlaps an entry of
  another size for the same ASID on the same CPU, unless the CPU promises
  BBML2 without conflict aborts.
- ``stale-tlb``: a user access used a TLB entry that memory no longer
  grants: a write through a writable entry whose descriptor is now
  read-only, invalid or maps another frame; a read through one whose
  descriptor is invalid or maps another frame.  The message names the
  address space that used it and every other one that maps the frame.
- ``unobserved-store``: a descriptor changed behind the observers' back (a
  model bug: every store must go through ``PteTable``/``AddressSpace``).
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..errors import InvariantViolation
from .format import L2_BLOCK, WS_CLEAN, WS_DIRTY, WS_NONE
from .tables import AddressSpace, PteTable
from .tlb import TlbEntry

if TYPE_CHECKING:
    from .hardware import Hardware

__all__ = ["RuleChecker", "RULES"]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
BoolArr = npt.NDArray[np.bool_]

RULES = ("contig-consistency", "bbm", "tlbi-coverage", "tlb-conflict", "stale-tlb", "unobserved-store")

_NEVER = -1
#: A block of at most this many bytes is not worth compacting.
_SMALL_BLOCK = 64 << 10
#: Entries a vectorised pass takes at a time (its scratch stays in the cache).
_CHUNK = 1 << 15


class _Region:
    """Shadow state of one level-2 region (one level-3 table's VA) of one ASID.

    Only ``vals`` is set per instance at creation; every other field reads
    its class default until it is first assigned (a fork creates hundreds of
    regions at once).  ``vals`` of a region without a level-3 table may be
    the checker's shared read-only zeros; a region with a table always has
    its own array: a copy, or after a bulk store of the whole table a row of
    the store's new values (a block of the checker's, see ``news_buffer``).
    The table's ``chk`` points back to its region.
    """

    table: PteTable | None = None
    # old valid value of an entry made invalid and not yet made again (0:
    # none), and the sequence number of its break: None until the first
    # break (all 0 / _NEVER), to keep the shadow small
    broken_old: U64 | None = None
    break_seq: I64 | None = None
    # issue sequence number of the latest TLBI reaching each page's level-3
    # entries: completed broadcast / issued broadcast / completed local;
    # an int while every page of the region has the same one
    cover: I64 | int = _NEVER
    issued: I64 | int = _NEVER
    local: I64 | int = _NEVER
    # the same for a level-2 block entry of the region
    cover2 = _NEVER
    issued2 = _NEVER
    local2 = _NEVER
    pmd_val = 0
    pmd_broken_old = 0
    pmd_break_seq = _NEVER
    #: Every contiguous set of ``vals`` is known to be consistent (checked
    #: since ``vals`` last changed); False whenever unsure.
    clean = False
    #: ``vals`` is row ``bi`` of ``blk`` (the new values of a bulk store
    #: of whole tables), or ``blk`` is None
    blk: U64 | None = None
    bi = 0

    def __init__(self, vals: U64, table: PteTable | None = None) -> None:
        self.vals = vals
        if table is not None:
            self.table = table

    def breaks(self) -> tuple[U64, I64]:
        """``broken_old`` and ``break_seq``, allocated."""
        if self.broken_old is None:
            n = len(self.vals)
            self.broken_old = np.zeros(n, dtype=np.uint64)
            self.break_seq = np.full(n, _NEVER, dtype=np.int64)
        assert self.break_seq is not None
        return self.broken_old, self.break_seq

    def seqs(self, field: str, sel: slice | np.ndarray) -> I64:
        """The ``field`` (cover/issued/local) sequence numbers of pages ``sel``."""
        v = getattr(self, field)
        if isinstance(v, int):
            return np.full(len(np.arange(len(self.vals))[sel]), v, dtype=np.int64)
        out: I64 = v[sel]
        return out

    def set_seqs(self, field: str, lo: int, hi: int, seq: int) -> None:
        n = len(self.vals)
        if lo <= 0 and hi >= n:
            setattr(self, field, seq)
            return
        v = getattr(self, field)
        if isinstance(v, int):
            v = np.full(n, v, dtype=np.int64)
            setattr(self, field, v)
        v[lo:hi] = seq


class _Tlbi:
    """A TLBI as the checker records it until a DSB completes it."""

    __slots__ = ("seq", "broadcast", "scope", "asid", "vpn", "npages", "level")

    def __init__(
        self,
        seq: int,
        broadcast: bool,
        scope: str,
        asid: int | None,
        vpn: int,
        npages: int,
        level: int | None,
    ) -> None:
        self.seq = seq
        self.broadcast = broadcast
        self.scope = scope
        self.asid = asid
        self.vpn = vpn
        self.npages = npages
        self.level = level


def _set_all(regs: Iterable[_Region], f3: str | None, f2: str | None, seq: int) -> None:
    """``setattr(r, f3, seq)`` and ``setattr(r, f2, seq)`` (None: not that one) for each region."""
    if f3 == "cover" and f2 == "cover2":
        for r in regs:
            r.cover = r.cover2 = seq
    elif f3 == "issued" and f2 == "issued2":
        for r in regs:
            r.issued = r.issued2 = seq
    else:
        for r in regs:
            if f3 is not None:
                setattr(r, f3, seq)
            if f2 is not None:
                setattr(r, f2, seq)


def _rows(idx: list[int]) -> slice | list[int]:
    """``idx`` (increasing row numbers) as a slice when evenly spaced."""
    if len(idx) > 1:
        step = idx[1] - idx[0]
        if step > 0 and idx == list(range(idx[0], idx[-1] + 1, step)):
            return slice(idx[0], idx[-1] + 1, step)
    return idx


class RuleChecker:
    """Check the Arm ARM rules on every descriptor store, TLB fill, TLB use, TLBI and DSB."""

    def __init__(self, hw: Hardware) -> None:
        self.hw = hw
        self.fmt = hw.fmt
        self.feat = hw.features
        self.n = hw.ptrs_per_pte
        self.cont_n = hw.fmt.cont_ptes
        self.arm = hw.fmt.has_contiguous  # BBM/contiguous/conflict rules: VMSA only
        self.seq = 0
        self.spaces: dict[int, AddressSpace] = {}
        self.regions: dict[int, dict[int, _Region]] = {}
        self.pending: list[list[_Tlbi]] = [[] for _ in range(hw.ncpus)]
        self.violations = 0
        #: Set by the vectorised sweep for a fill whose set it has checked.
        self.skip_set_check = False
        # the shadow of a region without a level-3 table (never written)
        self._zeros: U64 = np.zeros(self.n, dtype=np.uint64)
        self._zeros.flags.writeable = False
        fmt = hw.fmt
        # a change of none of these bits (validity, output address, memory
        # type, Contiguous) is no break, no make and never needs BBM
        self._u_rel = fmt.valid_bits_u | fmt.bbm_bits_u
        self._u_cont = fmt.cont_bit_u
        self._u_cv = fmt.cont_bit_u | fmt.valid_bits_u
        cn = self.cont_n
        ps = np.uint64(hw.page_shift)
        self._u_lowoa = np.uint64(cn - 1) << ps
        # a set's first entry: valid and Contiguous, the low bits of its
        # output address clear
        self._u_cv_lowoa = self._u_cv | self._u_lowoa
        # every bit but the output address; whether prot_key_v ignores the
        # output address (then entries that agree on every other bit have
        # one key), probed with every other bit clear and set
        oa = fmt.oa_mask_u
        self._u_not_oa = ~oa
        probe = np.array([oa, ~np.uint64(0)], dtype=np.uint64)
        self._same_ok = not (fmt.prot_key_v(probe, self.feat.hd) & oa).any()
        # entry i of each set: i in the low bits of the output address
        self._offs: U64 = np.arange(cn, dtype=np.uint64) << ps
        self._tiled: U64 = self._offs.copy()
        # the block last lent to PteTable.store_bulk_tables for the new
        # values (news_buffer), which the shadows of the tables stored
        # whole then keep as views (rows); a block lives as long as one of
        # its rows is a shadow, and is compacted once half of them are gone
        self._lent: U64 | None = None
        # the blocks of the regions detached since the last _compact
        self._detached: list[weakref.ref[U64]] = []

    # ------------------------------------------------------------------
    # bookkeeping
    # ------------------------------------------------------------------
    def add_space(self, space: AddressSpace) -> None:
        self.spaces[space.asid] = space
        self.regions.setdefault(space.asid, {})

    def retire_space(self, space: AddressSpace) -> None:
        self.spaces.pop(space.asid, None)
        regs = self.regions.pop(space.asid, None)
        blocks: dict[int, U64] = {}
        if regs:
            for r in regs.values():
                t = r.table
                if t is not None and t.chk is r:
                    t.chk = None
                if r.blk is not None:
                    blocks[id(r.blk)] = r.blk
            del r, regs
        if blocks or self._detached:
            self._compact(blocks.values())

    def _space_regions(self, space: AddressSpace) -> dict[int, _Region]:
        regs = self.regions.get(space.asid)
        if regs is None:
            self.add_space(space)
            regs = self.regions[space.asid]
        return regs

    def _lookup(self, table: PteTable) -> _Region | None:
        """The region of ``table``'s address (None: never seen)."""
        r: _Region | None = table.chk
        if r is not None and r.table is table:
            return r
        rg = self.regions.get(table.space.asid)
        return rg.get(table.pmd_index) if rg is not None else None

    # -- scratch and shadow storage --------------------------------------------
    @staticmethod
    def _empty(shape: tuple[int, ...], dtype: type = np.uint64) -> np.ndarray:
        """A scratch array of ``shape`` (contents undefined), freed with its last use.

        Nothing is kept between calls: the allocator recycles the memory of
        the previous call's arrays (no page fault per page once warm).
        """
        return np.empty(shape, dtype=dtype)

    def _take(self, a: np.ndarray, rows: list[int]) -> np.ndarray:
        """Rows ``rows`` of ``a``: a view when evenly spaced (increasing), else a copy."""
        sel = _rows(rows)
        if isinstance(sel, slice):
            return a[sel]
        out = self._empty((len(rows), *a.shape[1:]), a.dtype.type)
        np.take(a, sel, axis=0, out=out)
        return out

    def news_buffer(self, size: int) -> U64:
        """A new array for ``PteTable.store_bulk_tables`` to put a bulk store's new values in.

        The shadows of the tables stored whole keep rows of it (views): it
        is freed once none does (``_compact`` copies the last rows out once
        half of them are gone), never lent again.
        """
        if self._detached:
            self._compact(())
        b: U64 = np.empty(size, dtype=np.uint64)
        self._lent = b
        return b

    def _compact(self, blocks: Iterable[U64]) -> None:
        """Copy the live rows of each block of ``blocks`` (the ``blk`` of
        regions that let a row go) out of it once half of its rows or more
        are no shadow's any more, so that the block is freed.

        A block's rows are referenced by its ``n2`` (one reference to the
        underlying array) and by the shadows that use them: counted from
        the underlying array's reference count.  Blocks of the regions
        detached since the last call (``_detached``) are looked at too.
        """
        todo: dict[int, U64] = {}
        cand = list(blocks)
        if self._detached:
            cand += [n2 for n2 in (ref() for ref in self._detached) if n2 is not None]
            self._detached = []
        for n2 in cand:
            base = n2.base
            if base is None or base.nbytes <= _SMALL_BLOCK:
                continue
            # references: n2.base, ``base`` here, getrefcount's argument,
            # and one per live row
            if 2 * (sys.getrefcount(base) - 3) <= len(n2):
                todo[id(n2)] = n2
        del cand
        if not todo:
            return
        moved: dict[int, list[_Region]] = {}
        for rg in self.regions.values():
            for r in rg.values():
                b = r.blk
                if b is not None and id(b) in todo:
                    moved.setdefault(id(b), []).append(r)
        for key, regs in moved.items():
            n2 = todo[key]
            nb: U64 = np.empty(len(regs) * n2.shape[1], dtype=np.uint64).reshape(len(regs), -1)
            np.take(n2, [r.bi for r in regs], axis=0, out=nb)
            for k, (r, v) in enumerate(zip(regs, list(nb), strict=True)):
                r.vals = v
                r.blk = nb
                r.bi = k

    def _region(
        self, space: AddressSpace, pmd_index: int, idx: int = 0, old: np.ndarray | None = None
    ) -> _Region:
        regs = self.regions.get(space.asid)
        if regs is None:
            regs = self._space_regions(space)
        r = regs.get(pmd_index)
        if r is None:
            # first sight of this region: take memory as it was before the
            # store being reported (``old`` at ``idx``)
            t = space.tables.get(pmd_index)
            if t is not None:
                vals = t.entries.copy()
                if old is not None:
                    vals[idx : idx + len(old)] = old
                r = _Region(vals, t)
                t.chk = r
            else:
                r = _Region(self._zeros)
            pmd = space.pmds.get(pmd_index, 0)
            if pmd:
                r.pmd_val = pmd
            regs[pmd_index] = r
        return r

    def _table_region(self, table: PteTable, idx: int = 0, old: np.ndarray | None = None) -> _Region:
        c: _Region | None = table.chk
        if c is not None and c.table is table:
            return c
        r = self._region(table.space, table.pmd_index, idx, old)
        if r.table is not table:
            if r.table is not None:
                # a new table object replaced the old one without the old
                # one being freed through AddressSpace.free_pte_table
                self._detach(r)
            r.table = table
            if r.vals is self._zeros:
                r.vals = np.zeros(self.n, dtype=np.uint64)
                r.blk = None
        table.chk = r
        return r

    def _detach(self, r: _Region) -> None:
        """The level-3 table of ``r`` is gone: its valid entries are broken now."""
        self.seq += 1
        valid = self.fmt.page_valid_v(r.vals) if r.vals.any() else None
        if valid is not None and valid.any():
            bo, bs = r.breaks()
            bo[valid] = r.vals[valid]
            bs[valid] = self.seq
        r.vals = self._zeros
        if r.blk is not None:
            # (compacted at the next bulk store or retire_space: a table
            # freed is often one of many)
            self._detached.append(weakref.ref(r.blk))
            r.blk = None
        t = r.table
        if t is not None and t.chk is r:
            t.chk = None
        r.table = None
        r.clean = False

    def _raise(self, rule: str, message: str, addr: int | None, ptes: list[int] | None = None) -> None:
        self.violations += 1
        raise InvariantViolation(rule, message, addr, ptes)

    def _va(self, pmd_index: int, idx: int) -> int:
        return (pmd_index << self.hw.pmd_shift) | (idx << self.hw.page_shift)

    # ------------------------------------------------------------------
    # BBM predicate (Arm ARM D8.17.1 RWHZWS), vectorised
    # ------------------------------------------------------------------
    def _writable_v(self, d: U64) -> BoolArr:
        ws = self.fmt.write_state_v(d)
        w: BoolArr = ws == WS_DIRTY
        if self.feat.hd:
            w = w | (ws == WS_CLEAN)
        return w

    def _needs_bbm_v(self, old: U64, new: U64, size_change: BoolArr | None = None) -> BoolArr:
        """Which old->new valid->valid changes need break-before-make."""
        fmt = self.fmt
        data = self.hw.memory.data
        nf = len(data)
        po = fmt.pfn_v(old)
        pn = fmt.pfn_v(new)
        oa_diff = po != pn
        in_range = (po < nf) & (pn < nf)
        differs = np.ones(old.shape, dtype=np.bool_)
        if in_range.any():
            differs[in_range] = data[po[in_range]] != data[pn[in_range]]
        writable = self._writable_v(old) | self._writable_v(new)
        memtype = fmt.memtype_v(old) != fmt.memtype_v(new)
        needs: BoolArr = np.asarray((oa_diff & (writable | differs)) | memtype, dtype=np.bool_)
        cont_change = fmt.cont_v(old) != fmt.cont_v(new)
        if size_change is not None:
            cont_change = cont_change | size_change
        if self.feat.bbm_level == 0:
            needs = needs | cont_change
        return needs

    # ------------------------------------------------------------------
    # descriptor stores (StoreObserver)
    # ------------------------------------------------------------------
    def on_store(self, table: PteTable, idx: int, old: np.ndarray, new: np.ndarray) -> None:
        """Software stored ``new`` over ``old`` at ``table[idx:]``: check BBM, update the shadow."""
        old = old.astype(np.uint64, copy=False)
        r = self._table_region(table, idx, old)
        nr = len(new)
        new = new.astype(np.uint64, copy=False)
        shadow = r.vals[idx : idx + nr]
        if not np.array_equal(shadow, old):
            k = int(np.flatnonzero(shadow != old)[0])
            self._raise(
                "unobserved-store",
                f"descriptor changed without a store the checker saw: shadow {int(shadow[k]):#x}, "
                f"memory {int(old[k]):#x}",
                table.va(idx + k),
            )
        self.seq += 1
        r.clean = False
        if self.arm:
            self._check_level3_changes(r, table, idx, old, new)
        r.vals[idx : idx + nr] = new

    def _olds(self, stores: list[tuple[PteTable, int, np.ndarray]]) -> U64:
        """The stored entries' values in memory, concatenated (kept scratch)."""
        total = sum(len(st[2]) for st in stores)
        out = self._empty((total,))
        np.concatenate([t.entries[i : i + len(v)] for t, i, v in stores], out=out)
        return out

    def _on_store_each(self, stores: list[tuple[PteTable, int, np.ndarray]], olds: U64, news: U64) -> None:
        off = 0
        for table, idx, values in stores:
            nr = len(values)
            self.on_store(table, idx, olds[off : off + nr], news[off : off + nr])
            off += nr

    def on_store_many(self, stores: list[tuple[PteTable, int, np.ndarray]], news: U64) -> None:
        """``on_store(table, idx, old, new)`` of each ``(table, idx, values)`` in order, checked at once.

        Called before the stores land: ``old`` is in the tables; ``news``:
        the stores' new values concatenated (``len(values)`` each).

        Same verdicts, messages and shadow state as the per-table calls (the
        same sequence number per store): when any store would raise, or
        anything but the common case is involved (a table twice, a replaced
        table object, a make over a pending break), the stores go through
        ``on_store`` one by one.  Stores whose changes touch no bit that
        makes a break, a make or a BBM case (validity, output address,
        memory type, Contiguous: a write-protect, an AF clear) are only
        compared and recorded; a store over all-zero old values (a new
        table being filled) can only make, and a region seen for the first
        time has no pending break.  The contiguous sets of the stored
        values are checked here, without raising, so that the PTL release
        that follows need not look at them again (``_Region.clean``).
        """
        nst = len(stores)
        if not nst:
            return
        n = self.n
        cn = self.cont_n
        lent, self._lent = self._lent, None
        regs: list[_Region | None] = [st[0].chk for st in stores]
        nnew = 0
        plain = True
        last: AddressSpace | None = None
        rg: dict[int, _Region] | None = None
        for k in [k for k, (st, r) in enumerate(zip(stores, regs)) if r is None or r.table is not st[0]]:
            t = stores[k][0]
            if t.space is not last:
                last = t.space
                rg = self.regions.get(last.asid)
            r = rg.get(t.pmd_index) if rg is not None else None
            regs[k] = r
            if r is None:
                nnew += 1
                if last.tables.get(t.pmd_index) is not t:
                    plain = False
            elif r.table is not t:
                plain = False
        if plain and len({st[0] for st in stores}) != nst:
            plain = False
        if not plain:
            self._on_store_each(stores, self._olds(stores), news)
            return
        lens = [len(st[2]) for st in stores]
        if lens.count(n) == nst and [st[1] for st in stores].count(0) == nst:
            mine = lent is not None and (news is lent or news.base is lent)
            del lent
            dropped = self._store_whole(stores, regs, nnew, news, mine)
            if dropped:
                self._compact(dropped)
        else:
            aligned = all(st[1] % cn == 0 and nr % cn == 0 for st, nr in zip(stores, lens, strict=True))
            self._store_pieces(stores, regs, self._olds(stores), news, aligned)

    def _store_whole(
        self,
        stores: list[tuple[PteTable, int, np.ndarray]],
        regs: list[_Region | None],
        nnew: int,
        news: U64,
        mine: bool,
    ) -> list[U64]:
        """``on_store_many`` of whole tables.

        ``mine``: ``news`` is a block of the checker's (``news_buffer``),
        which the shadows then keep as views; else they copy it.  The old
        values are read from the tables: those of the regions seen before
        (compared with their shadows), and, for the level-3 rules, those of
        the others (without them, a new region's old values are nobody's
        business), a chunk of tables at a time.  A clean region stored
        without a relevant change (fork's write-protect of the parent) stays
        clean without its sets being looked at when its new entries agree
        on every bit but the output address.  Returns the blocks whose rows
        shadows let go of.
        """
        nst = len(stores)
        n = self.n
        n2 = news.reshape(nst, n)
        orr = np.bitwise_or.reduce
        arm = self.arm
        full: list[U64] = []

        def olds() -> U64:
            """The old values of every store (one row each), read from the tables."""
            if not full:
                f = self._empty((nst, n))
                np.concatenate([st[0].entries for st in stores], out=f.reshape(-1))
                full.append(f)
            return full[0]

        # One pass over the stores, a chunk of rows at a time (the chunk's
        # scratch stays in the cache): the shadow of every region seen
        # before must be the old memory; each store's OR of its old values
        # (``ro``) and of its changes (``rx``: old ^ new, the new values over
        # all-zero old ones); for the regions known clean, the OR and AND of
        # their new values (``same`` below).
        kr = [r for r in regs if r is not None]
        b0 = kr[0].blk if kr else None
        if b0 is not None and len({id(r.blk) for r in kr}) != 1:
            b0 = None  # (else the shadows are rows of one earlier bulk store's values)
        ro = np.empty(nst, dtype=np.uint64)
        rx = np.empty(nst, dtype=np.uint64)
        cl = [r is not None and r.clean for r in regs] if arm and self._same_ok else None
        orn = andn = None
        if cl is not None and any(cl):
            orn = np.zeros(nst, dtype=np.uint64)
            andn = np.ones(nst, dtype=np.uint64)
        step = max(1, _CHUNK // n)
        cnz = np.count_nonzero
        for s in range(0, nst, step):
            e = min(nst, s + step)
            ks = [k for k in range(s, e) if regs[k] is not None]
            if ks:
                o = self._empty((len(ks), n))
                np.concatenate([stores[k][0].entries for k in ks], out=o.reshape(-1))
                if b0 is not None:
                    sh = self._take(b0, [regs[k].bi for k in ks])  # type: ignore[union-attr]
                else:
                    sh = self._empty(o.shape)
                    np.concatenate([regs[k].vals for k in ks], out=sh.reshape(-1))  # type: ignore[union-attr]
                if not np.array_equal(sh, o):
                    self._on_store_each(stores, olds().reshape(-1), news)
                    return []
                del sh
                if arm:
                    sel = _rows(ks)
                    nw = n2[sel] if isinstance(sel, slice) else self._take(n2, ks)
                    roc = orr(o, axis=1)
                    ro[sel] = roc
                    if roc.any():
                        np.bitwise_xor(o, nw, out=o)
                        rx[sel] = orr(o, axis=1)
                    else:  # (all-zero old values: the changes are the new values)
                        rx[sel] = orr(nw, axis=1)
                    if orn is not None and andn is not None and any(cl[s:e]):  # type: ignore[index]
                        orn[sel] = orr(nw, axis=1)
                        andn[sel] = np.bitwise_and.reduce(nw, axis=1)
            if arm and len(ks) < e - s:
                # the regions seen for the first time: their tables' old
                # values, read only where they are not all zero (a new
                # table's are)
                ns = [k for k in range(s, e) if regs[k] is None]
                sel = _rows(ns)
                ro[sel] = 0
                rx[sel] = orr(n2[sel] if isinstance(sel, slice) else self._take(n2, ns), axis=1)
                nz = [k for k in ns if cnz(stores[k][0].entries)]
                if nz:
                    a = np.array([stores[k][0].entries for k in nz])
                    ro[nz] = orr(a, axis=1)
                    rx[nz] = orr(a ^ n2[nz], axis=1)
        # -- level-3 changes: breaks, makes, direct changes --
        brk_items: list[tuple[int, U64, BoolArr]] = []
        row_c: BoolArr | None = None  # which stores' new values have a Contiguous bit
        keep: BoolArr | None = None  # which stores keep their region clean unchecked
        if arm:
            zero_old = ro == 0
            rel = (rx & self._u_rel) != 0
            # a store with no relevant change keeps every Contiguous bit
            rn = np.where(rel | zero_old, rx, ro)
            if rel.any():
                if not self._makes_ok(stores, regs, np.flatnonzero(rel & zero_old).tolist(), news, None):
                    self._on_store_each(stores, olds().reshape(-1), news)
                    return []
                gen = np.flatnonzero(rel & ~zero_old).tolist()
                if gen:
                    res = self._general_rows(stores, regs, gen, olds().reshape(-1), news, None, [n] * nst)
                    if res is None:
                        self._on_store_each(stores, olds().reshape(-1), news)
                        return []
                    brk_items, rn_gen = res
                    rn[gen] = rn_gen
            row_c = (rn & self._u_cont) != 0
            if orn is not None and andn is not None:
                # A clean region whose store changes no validity, output
                # address, memory type or Contiguous bit keeps each entry's
                # validity, Contiguous bit and output address, so its sets
                # keep their layout; if its new entries also agree on every
                # bit but the output address, they have one key
                # (``prot_key_v`` ignores the output address): still clean.
                same = ((orn ^ andn) & self._u_not_oa) == 0
                keep = np.array(cl, dtype=np.bool_) & ~rel & (same | (rx == 0))
        # -- contiguous sets of the stored values (for the PTL release) --
        if row_c is not None:
            ok = np.ones(nst, dtype=np.bool_)
            check = np.flatnonzero(row_c if keep is None else row_c & ~keep).tolist()
            if check:
                v = self._take(n2, check)
                ok[check] = self._sets_ok(v).reshape(len(check), n // self.cont_n).all(axis=1)
            clean = ok.tolist()
        else:
            clean = [False] * nst
        # -- commit --
        seq0 = self.seq
        if not mine:
            blk = self.news_buffer(len(news))
            self._lent = None
            blk[:] = news
            n2 = blk.reshape(nst, n)
        rows = list(n2)
        dropped = {id(r.blk): r.blk for r in regs if r is not None and r.blk is not None}
        if nnew:
            newk = [k for k, r in enumerate(regs) if r is None]
            objs = [_Region(rows[k], stores[k][0]) for k in newk]
            spaces = {id(stores[k][0].space): stores[k][0].space for k in newk}
            if len(spaces) == 1:
                sp = next(iter(spaces.values()))
                self._space_regions(sp).update(zip([stores[k][0].pmd_index for k in newk], objs))
                if sp.pmds:
                    for r in objs:
                        assert r.table is not None
                        pmd = sp.pmds.get(r.table.pmd_index, 0)
                        if pmd:
                            r.pmd_val = pmd
            else:
                for r in objs:
                    t = r.table
                    assert t is not None
                    self._space_regions(t.space)[t.pmd_index] = r
                    pmd = t.space.pmds.get(t.pmd_index, 0)
                    if pmd:
                        r.pmd_val = pmd
            for k, r in zip(newk, objs, strict=True):
                regs[k] = r
                stores[k][0].chk = r
        if self.arm:
            for k, (rk, v, c) in enumerate(zip(regs, rows, clean, strict=True)):
                assert rk is not None
                rk.vals = v
                rk.clean = c
                rk.blk = n2
                rk.bi = k
        else:
            for k, (rk, v) in enumerate(zip(regs, rows, strict=True)):
                assert rk is not None
                rk.vals = v
                rk.blk = n2
                rk.bi = k
        for i, o, bmask in brk_items:
            rb = regs[i]
            assert rb is not None
            pos = np.flatnonzero(bmask)
            bo, bs = rb.breaks()
            bo[pos] = o[bmask]
            bs[pos] = seq0 + i + 1
        self.seq = seq0 + nst
        return list(dropped.values())

    def _makes_ok(
        self,
        stores: list[tuple[PteTable, int, np.ndarray]],
        regs: list[_Region | None],
        rows: list[int],
        news: U64,
        starts: I64 | None,
    ) -> bool:
        """Stores ``rows`` over all-zero old values: no make over a pending break?"""
        n = self.n
        for i in rows:
            r = regs[i]
            if r is None:
                continue  # a new region: no pending break
            if r.pmd_broken_old:
                return False
            if r.broken_old is not None:
                idx = stores[i][1]
                nr = len(stores[i][2])
                b = i * n if starts is None else int(starts[i])
                nv = self.fmt.page_valid_v(news[b : b + nr])
                if r.broken_old[idx : idx + nr][nv].any():
                    return False
        return True

    def _store_pieces(
        self,
        stores: list[tuple[PteTable, int, np.ndarray]],
        regs: list[_Region | None],
        olds: U64,
        news: U64,
        aligned: bool,
    ) -> None:
        """``on_store_many`` with some store not of a whole table."""
        nst = len(stores)
        n = self.n
        lens = [len(v) for _, _, v in stores]
        lens_a = np.array(lens, dtype=np.int64)
        starts = np.zeros(nst, dtype=np.int64)
        np.cumsum(lens_a[:-1], out=starts[1:])
        ne = lens_a > 0

        def rowor(a: U64) -> U64:
            """Bitwise OR of each store's values (0 for an empty store)."""
            out = np.zeros(nst, dtype=np.uint64)
            if ne.any():
                out[ne] = np.bitwise_or.reduceat(a, starts[ne])
            return out

        # -- the shadow of every region seen before must be the old memory --
        kr = [(i, r) for i, r in enumerate(regs) if r is not None]
        if kr:
            sh = np.concatenate([r.vals[stores[i][1] : stores[i][1] + lens[i]] for i, r in kr])
            ol = np.concatenate([olds[int(starts[i]) : int(starts[i]) + lens[i]] for i, _ in kr])
            if not np.array_equal(sh, ol):
                self._on_store_each(stores, olds, news)
                return
        brk_items: list[tuple[int, U64, BoolArr]] = []
        row_c: BoolArr | None = None
        if self.arm:
            ro = rowor(olds)
            rx = rowor(olds ^ news)
            rel = (rx & self._u_rel) != 0
            zero_old = ro == 0
            rn = np.where(rel | zero_old, rx, ro)
            if rel.any():
                if not self._makes_ok(stores, regs, np.flatnonzero(rel & zero_old).tolist(), news, starts):
                    self._on_store_each(stores, olds, news)
                    return
                gen = np.flatnonzero(rel & ~zero_old).tolist()
                if gen:
                    res = self._general_rows(stores, regs, gen, olds, news, starts, lens)
                    if res is None:
                        self._on_store_each(stores, olds, news)
                        return
                    brk_items, rn_gen = res
                    rn[gen] = rn_gen
            row_c = (rn & self._u_cont) != 0
        # -- commit --
        seq0 = self.seq
        done: list[_Region] = []
        for i, (t, idx, _v) in enumerate(stores):
            r = regs[i]
            if r is None:
                # first sight: the shadow is memory before the store
                r = self._table_region(t)
            b = int(starts[i])
            r.vals[idx : idx + lens[i]] = news[b : b + lens[i]]
            done.append(r)
        for i, o, bmask in brk_items:
            r = done[i]
            pos = stores[i][1] + np.flatnonzero(bmask)
            bo, bs = r.breaks()
            bo[pos] = o[bmask]
            bs[pos] = seq0 + i + 1
        self.seq = seq0 + nst
        # -- contiguous sets of the stored values (for the PTL release) --
        if row_c is None:
            return
        if not aligned:
            for r in done:
                r.clean = False
            return
        cn = self.cont_n
        ok = np.ones(nst, dtype=np.bool_)
        check = np.flatnonzero(row_c).tolist()
        if check:
            v = np.concatenate([news[int(starts[i]) : int(starts[i]) + lens[i]] for i in check])
            sets_ok = self._sets_ok(v.reshape(1, -1))
            per = np.array([lens[i] for i in check], dtype=np.int64) // cn
            sb = np.zeros(len(per), dtype=np.int64)
            np.cumsum(per[:-1], out=sb[1:])
            pne = per > 0
            if pne.any():
                ok[np.array(check)[pne]] = np.logical_and.reduceat(sets_ok, sb[pne])
        for i, (r, c) in enumerate(zip(done, ok.tolist(), strict=True)):
            # a piece keeps the region clean if the rest was
            r.clean = bool(c and (lens[i] == n or r.clean)) if regs[i] is not None else False

    def _general_rows(
        self,
        stores: list[tuple[PteTable, int, np.ndarray]],
        regs: list[_Region | None],
        gen: list[int],
        olds: U64,
        news: U64,
        starts: I64 | None,
        lens: list[int],
    ) -> tuple[list[tuple[int, U64, BoolArr]], U64] | None:
        """The level-3 changes of stores ``gen`` (old and new entries valid).

        None when one of them would raise or needs the per-store path;
        else each break's (store, old values, break mask) and each store's
        OR of its new values.
        """
        n = self.n
        fmt = self.fmt
        b0 = [i * n if starts is None else int(starts[i]) for i in gen]
        gl = [lens[i] for i in gen]
        if len(gen) == len(stores):
            og, ng = olds, news
        else:
            og = np.concatenate([olds[b : b + nr] for b, nr in zip(b0, gl, strict=True)])
            ng = np.concatenate([news[b : b + nr] for b, nr in zip(b0, gl, strict=True)])
        glens = np.array(gl, dtype=np.int64)
        bounds = np.zeros(len(gen) + 1, dtype=np.int64)
        np.cumsum(glens, out=bounds[1:])
        ov = fmt.page_valid_v(og)
        nv = fmt.page_valid_v(ng)
        # a change of neither output address, memory type nor Contiguous
        # bit never needs break-before-make (see _needs_bbm_v)
        direct = ov & nv & (((og ^ ng) & fmt.bbm_bits_u) != 0)
        if direct.any():
            pos = np.flatnonzero(direct)
            if self._needs_bbm_v(og[pos], ng[pos]).any():
                return None
        ne = glens > 0
        rn = np.zeros(len(gen), dtype=np.uint64)
        if ne.any():
            rn[ne] = np.bitwise_or.reduceat(ng, bounds[:-1][ne])

        def items_with(mask: BoolArr) -> list[int]:
            hit = np.zeros(len(gen), dtype=np.bool_)
            if ne.any():
                hit[ne] = np.logical_or.reduceat(mask, bounds[:-1][ne])
            return np.flatnonzero(hit).tolist()

        brk = ov & ~nv
        make = ~ov & nv
        items: list[tuple[int, U64, BoolArr]] = []
        if brk.any():
            for k in items_with(brk):
                lo, hi = int(bounds[k]), int(bounds[k + 1])
                items.append((gen[k], og[lo:hi], brk[lo:hi]))
        if make.any():
            for k in items_with(make):
                r = regs[gen[k]]
                if r is None:
                    continue
                if r.pmd_broken_old:
                    return None
                if r.broken_old is not None:
                    idx = stores[gen[k]][1]
                    m = make[int(bounds[k]) : int(bounds[k + 1])]
                    if r.broken_old[idx : idx + len(m)][m].any():
                        return None
        return items, rn

    def _check_level3_changes(self, r: _Region, table: PteTable, idx: int, old: U64, new: U64) -> None:
        fmt = self.fmt
        ov = fmt.page_valid_v(old)
        nv = fmt.page_valid_v(new)
        # direct valid -> valid changes
        direct = ov & nv & (old != new)
        if direct.any():
            pos = np.flatnonzero(direct)
            needs = self._needs_bbm_v(old[pos], new[pos])
            if needs.any():
                k = int(pos[np.flatnonzero(needs)[0]])
                self._raise(
                    "bbm",
                    f"valid descriptor {int(old[k]):#x} replaced by {int(new[k]):#x} without "
                    "break-before-make (D8.17.1 RWHZWS)",
                    table.va(idx + k),
                    [int(old[k]), int(new[k])],
                )
        # breaks
        brk = ov & ~nv
        if brk.any():
            pos = idx + np.flatnonzero(brk)
            bo, bs = r.breaks()
            bo[pos] = old[brk]
            bs[pos] = self.seq
        # makes
        make = ~ov & nv
        if make.any():
            if r.pmd_broken_old:
                self._check_pmd_break_covered(r, table.pmd_index, "level-3 descriptors written")
            if r.broken_old is None:
                return
            pos_rel = np.flatnonzero(make)
            pos = idx + pos_rel
            pend = r.broken_old[pos] != 0
            if pend.any():
                ppos = pos[pend]
                needs = self._needs_bbm_v(r.broken_old[ppos], new[pos_rel[pend]])
                for p, nval in zip(ppos[needs], new[pos_rel[pend]][needs], strict=True):
                    self._check_break_covered(r, table, int(p), int(nval))
            r.broken_old[pos] = 0

    def _check_break_covered(self, r: _Region, table: PteTable, p: int, new: int) -> None:
        """Entry ``p`` is made valid again: was its old translation flushed (RDDMVT)?"""
        fmt = self.fmt
        bo, bs = r.breaks()
        old = int(bo[p])
        seq = int(bs[p])
        # Only an old *contiguous* translation may be cached for the whole
        # block; a new contiguous entry replacing a lone page needs just that
        # page flushed (munmap of a 4K page, then a 64K folio mapped there).
        if fmt.cont(old):
            lo = p & ~(self.cont_n - 1)
            hi = lo + self.cont_n
            what = f"the whole {self.cont_n}-entry contiguous block"
        else:
            lo, hi = p, p + 1
            what = "the page"
        done = r.seqs("cover", slice(lo, hi)) > seq
        if done.all():
            return
        va = table.va(p)
        ptes = [old, new]
        issued = r.seqs("issued", slice(lo, hi)) > seq
        local = r.seqs("local", slice(lo, hi)) > seq
        if done.any():
            self._raise(
                "tlbi-coverage",
                f"the TLBIs after the break covered {int(done.sum())} of {hi - lo} pages; they must cover "
                f"{what} (D8.7.1)",
                va,
                ptes,
            )
        if (issued | done).all():
            self._raise(
                "bbm",
                "new descriptor written before the TLBI after the break was completed by a DSB ISH "
                "(D8.17.1 RDDMVT step 4)",
                va,
                ptes,
            )
        if (local | done).all():
            self._raise(
                "tlbi-coverage",
                "the TLBI after the break was local (no IS); other CPUs may still hold the old translation",
                va,
                ptes,
            )
        if (issued | local | done).any():
            self._raise(
                "tlbi-coverage",
                f"the TLBIs after the break did not cover {what} (D8.7.1)",
                va,
                ptes,
            )
        self._raise(
            "bbm",
            "descriptor invalidated and rewritten with no TLBI in between (D8.17.1 RDDMVT step 3)",
            va,
            ptes,
        )

    def _check_pmd_break_covered(self, r: _Region, pmd_index: int, what: str) -> None:
        seq = r.pmd_break_seq
        if r.cover2 > seq:
            r.pmd_broken_old = 0
            return
        va = pmd_index << self.hw.pmd_shift
        if r.issued2 > seq:
            msg = "the TLBI after the level-2 break was not completed by a DSB ISH"
            rule = "bbm"
        elif r.local2 > seq:
            msg = "the TLBI after the level-2 break was local (no IS)"
            rule = "tlbi-coverage"
        else:
            msg = "no TLBI after the level-2 block was invalidated"
            rule = "bbm"
        self._raise(rule, f"{what}: {msg} (D8.17.1 RDDMVT)", va, [r.pmd_broken_old])

    def on_table_free(self, space: AddressSpace, pmd_index: int, table: PteTable) -> None:
        """A level-3 table was unhooked: its valid entries count as broken now."""
        r = self._region(space, pmd_index)
        if r.table is table:
            self._detach(r)

    def on_pmd_store(self, space: AddressSpace, pmd_index: int, old: int, new: int) -> None:
        """Software stored level-2 descriptor ``new`` over ``old``."""
        r = self._region(space, pmd_index)
        if r.pmd_val != old:
            self._raise(
                "unobserved-store",
                f"level-2 descriptor changed without a store the checker saw: shadow {r.pmd_val:#x}, "
                f"memory {old:#x}",
                pmd_index << self.hw.pmd_shift,
            )
        self.seq += 1
        r.pmd_val = new
        if not self.arm:
            return
        fmt = self.fmt
        ob = bool(old) and fmt.l2_kind(old) == L2_BLOCK
        nb = bool(new) and fmt.l2_kind(new) == L2_BLOCK
        va = pmd_index << self.hw.pmd_shift
        if ob and nb and old != new:
            needs = self._needs_bbm_v(np.array([old], dtype=np.uint64), np.array([new], dtype=np.uint64))
            if needs[0]:
                self._raise(
                    "bbm", "valid level-2 block replaced without break-before-make (D8.17.1)", va, [old, new]
                )
        elif ob and not nb:
            r.pmd_broken_old = old
            r.pmd_break_seq = self.seq
        elif nb and not ob:
            if r.pmd_broken_old:
                needs = self._needs_bbm_v(
                    np.array([r.pmd_broken_old], dtype=np.uint64), np.array([new], dtype=np.uint64)
                )
                if needs[0]:
                    self._check_pmd_break_covered(r, pmd_index, "level-2 block written")
                r.pmd_broken_old = 0
            # replacing level-3 translations by a block is a size change
            if r.broken_old is None:
                return
            pend = np.flatnonzero(r.broken_old != 0)
            if len(pend) and self.feat.bbm_level == 0:
                assert r.break_seq is not None
                seqs = r.break_seq[pend]
                ok = r.seqs("cover", pend) > seqs
                if not ok.all():
                    k = int(pend[np.flatnonzero(~ok)[0]])
                    self._raise(
                        "bbm",
                        "level-2 block written over level-3 translations that were never flushed "
                        "(size change, D8.17.1)",
                        self._va(pmd_index, k),
                        [int(r.broken_old[k]), new],
                    )
            r.broken_old[pend] = 0

    def on_pmd_store_many(self, groups: list[tuple[AddressSpace, list[int], list[int], list[int]]]) -> bool:
        """``on_pmd_store`` of every store of ``groups`` in lockstep order, checked at once.

        ``groups``: (space, level-2 indices, old values, new values), the
        k-th store of each group in turn (distinct (space, index) pairs).
        Only the plain case (no store would raise; a block made where no
        level-2 or level-3 break is pending): True, the same shadow state
        and sequence numbers as the per-store calls.  Anything else: False,
        nothing changed (the caller stores one by one).
        """
        if not groups:
            return True
        ng = len(groups)
        m = len(groups[0][1])
        regl: list[list[_Region | None]] = []
        for space, idxs, olds, _news in groups:
            rg = self.regions.get(space.asid)
            rl: list[_Region | None] = [rg.get(i) for i in idxs] if rg is not None else [None] * m
            for r, ov in zip(rl, olds, strict=True):
                if r is not None and r.pmd_val != ov:
                    return False
            regl.append(rl)
        brks: list[tuple[int, BoolArr]] = []
        if self.arm:
            fmt = self.fmt
            for g, (_space, _idxs, olds, news) in enumerate(groups):
                o = np.array(olds, dtype=np.uint64)
                nw = np.array(news, dtype=np.uint64)
                ob = fmt.l2_block_v(o)
                nb = fmt.l2_block_v(nw)
                both = ob & nb & (o != nw)
                if both.any():
                    pos = np.flatnonzero(both)
                    if self._needs_bbm_v(o[pos], nw[pos]).any():
                        return False
                make = nb & ~ob
                if make.any():
                    rl = regl[g]
                    for k in np.flatnonzero(make).tolist():
                        r = rl[k]
                        if r is None:
                            continue
                        if r.pmd_broken_old:
                            return False
                        if r.broken_old is not None and r.broken_old.any():
                            return False
                brk = ob & ~nb
                if brk.any():
                    brks.append((g, brk))
        # -- commit --
        seq0 = self.seq
        for g, (space, idxs, _olds, news) in enumerate(groups):
            rl = regl[g]
            if None in rl:
                rg = self._space_regions(space)
                tables = space.tables
                for k, r in enumerate(rl):
                    if r is None:
                        # first sight: memory (the old value) before the store
                        pi = idxs[k]
                        t = tables.get(pi)
                        if t is None:
                            r = _Region(self._zeros)
                            rg[pi] = r
                        else:
                            r = self._region(space, pi)
                        rl[k] = r
            for r, v in zip(rl, news, strict=True):
                assert r is not None
                r.pmd_val = v
        for g, brk in brks:
            rl = regl[g]
            olds = groups[g][2]
            for k in np.flatnonzero(brk).tolist():
                r = rl[k]
                assert r is not None
                r.pmd_broken_old = olds[k]
                r.pmd_break_seq = seq0 + k * ng + g + 1
        self.seq = seq0 + ng * m
        return True

    # ------------------------------------------------------------------
    # hardware updates (walker)
    # ------------------------------------------------------------------
    def on_hw_update(self, table: PteTable, idx: int, old: np.ndarray, new: np.ndarray) -> None:
        """The walker atomically updated AF/AP[2] of ``table[idx:]`` (not a software store)."""
        r = self._table_region(table, idx, old)
        nr = len(new)
        shadow = r.vals[idx : idx + nr]
        if not np.array_equal(shadow, old):
            k = int(np.flatnonzero(shadow != old)[0])
            self._raise(
                "unobserved-store",
                f"descriptor changed without a store the checker saw: shadow {int(shadow[k]):#x}, "
                f"memory {int(old[k]):#x}",
                table.va(idx + k),
            )
        r.clean = False
        r.vals[idx : idx + nr] = new

    def on_pmd_hw_update(self, space: AddressSpace, pmd_index: int, old: int, new: int) -> None:
        r = self._region(space, pmd_index)
        r.pmd_val = new

    # ------------------------------------------------------------------
    # contiguous-set consistency (D8.7.1)
    # ------------------------------------------------------------------
    def set_faults(self, r: _Region, lo: int, hi: int) -> tuple[BoolArr, BoolArr, BoolArr]:
        """Per aligned set in entries ``[lo, hi)``: (misprogrammed, bad OA, bad attributes)."""
        return self._set_faults_v(r.vals[lo:hi].reshape(-1, self.cont_n))

    def _set_faults_v(self, vals: U64) -> tuple[BoolArr, BoolArr, BoolArr]:
        """``set_faults`` of the sets ``vals`` (one row per set)."""
        fmt = self.fmt
        n = self.cont_n
        valid = fmt.page_valid_v(vals)
        cont = fmt.cont_v(vals) & valid
        has_c = cont.any(axis=1)
        if not has_c.any():
            z = np.zeros(len(vals), dtype=np.bool_)
            return z, z, z
        mis = np.asarray(has_c & (valid & ~cont).any(axis=1), dtype=np.bool_)
        # compare every Contiguous entry of a set with its first one: the
        # bases (pfn - offset) all equal and aligned, the keys all equal
        j = np.argmax(cont, axis=1)
        rows = np.arange(len(vals))
        off = np.arange(n, dtype=np.int64)
        base = fmt.pfn_v(vals).view(np.int64) - off
        b0 = base[rows, j]
        oa_bad = np.asarray(
            has_c & ((cont & (base != b0[:, None])).any(axis=1) | (b0 % n != 0)), dtype=np.bool_
        )
        key = fmt.prot_key_v(vals, self.feat.hd)
        attr_bad = np.asarray(has_c & (cont & (key != key[rows, j][:, None])).any(axis=1), dtype=np.bool_)
        return mis, oa_bad, attr_bad

    def _sets_ok(self, v2: U64) -> BoolArr:
        """Per aligned set of ``v2`` (rows of whole sets), in order: no fault ``set_faults`` would report.

        ``_sets_ok_chunk`` of a chunk of ``v2`` at a time (rows, or sets of
        a long row), so that the scratch stays in the cache.
        """
        rows, m = v2.shape
        if rows * m <= _CHUNK:
            return self._sets_ok_chunk(v2)
        cn = self.cont_n
        per = m // cn
        out = np.empty(rows * per, dtype=np.bool_)
        if m >= _CHUNK:
            cs = max(cn, _CHUNK - _CHUNK % cn)
            o2 = out.reshape(rows, per)
            for r in range(rows):
                for a in range(0, m, cs):
                    o2[r, a // cn : (a + cs) // cn] = self._sets_ok_chunk(v2[r : r + 1, a : a + cs])
        else:
            step = _CHUNK // m
            for s in range(0, rows, step):
                out[s * per : (s + step) * per] = self._sets_ok_chunk(v2[s : s + step])
        return out

    def _sets_ok_chunk(self, v2: U64) -> BoolArr:
        """``_sets_ok`` of ``v2`` at once.

        A set whose entries are all the same descriptor but for the output
        address, which runs from an aligned base (every bit of the set's
        first entry but the output address's low bits, and those equal to
        the entry's offset), with a valid Contiguous first entry, has no
        fault; every other set goes through ``_set_faults_v``.
        """
        cn = self.cont_n
        rows, m = v2.shape
        size = rows * m
        if not size:
            return np.ones(0, dtype=np.bool_)
        if len(self._tiled) < m:
            self._tiled = np.tile(self._offs, m // cn)
        w = self._empty((rows, m))
        np.bitwise_xor(v2, self._tiled[:m], out=w)
        wf = w.reshape(-1)
        d = self._empty((size - 1,), np.bool_)
        np.not_equal(wf[1:], wf[:-1], out=d)
        d[cn - 1 :: cn] = False
        f = v2[:, ::cn].reshape(-1)
        ok: BoolArr = (f & self._u_cv_lowoa) == self._u_cv
        if d.any():
            ok[np.flatnonzero(d) // cn] = False
        rest = np.flatnonzero(~ok)
        if len(rest):
            per = m // cn
            sub = v2.reshape(rows, per, cn)[rest // per, rest % per]
            mis, oa_bad, attr_bad = self._set_faults_v(sub)
            ok[rest] = ~(mis | oa_bad | attr_bad)
        return ok

    def _tables_ok(self, v2: U64) -> BoolArr:
        """Per table of ``v2`` (one whole table per row): every contiguous set consistent."""
        n = self.n
        ok: BoolArr = np.asarray((np.bitwise_or.reduce(v2, axis=1) & self._u_cont) == 0, dtype=np.bool_)
        check = np.flatnonzero(~ok).tolist()
        if check:
            sub = self._take(v2, check)
            ok[check] = self._sets_ok(sub).reshape(len(check), n // self.cont_n).all(axis=1)
        return ok

    def _check_sets(self, r: _Region, pmd_index: int, lo: int, hi: int, when: str) -> None:
        """Check every aligned contiguous set in entries ``[lo, hi)`` of ``r`` (D8.7.1)."""
        mis, oa_bad, attr_bad = self.set_faults(r, lo, hi)
        bad = mis | oa_bad | attr_bad
        if not bad.any():
            return
        g = int(np.flatnonzero(bad)[0])
        if mis[g]:
            why = "valid Contiguous and valid non-Contiguous entries in one set (misprogrammed, RQTRPM)"
        elif oa_bad[g]:
            why = "output addresses not consecutive or block not aligned"
        else:
            why = "attributes or permissions differ (ignoring AF and AP[2] with DBM, RJQQTC)"
        start = lo + g * self.cont_n
        self._raise(
            "contig-consistency",
            f"{why}, at {when}",
            self._va(pmd_index, start),
            [int(x) for x in r.vals[start : start + self.cont_n]],
        )

    def ptl_release(self, table: PteTable) -> None:
        """The kernel drops the PTL of ``table``: every contiguous set must be consistent."""
        if not self.arm:
            return
        r = self._table_region(table)
        if r.clean:
            return
        if not self._tables_ok(r.vals.reshape(1, -1))[0]:
            self._check_sets(r, table.pmd_index, 0, self.n, "PTL release")
        else:
            r.clean = True

    def ptl_release_many(self, tables: list[PteTable]) -> None:
        """``ptl_release`` of each table in order, the sets of all checked at once.

        Raises what the first failing ``ptl_release`` would raise.  A table
        whose sets were found consistent since its shadow last changed
        (``_Region.clean``: by a bulk store or an earlier release) is not
        looked at again.
        """
        if not self.arm or not tables:
            return
        chk: list[_Region | None] = [t.chk for t in tables]
        maybe = [
            k for k, (t, r) in enumerate(zip(tables, chk)) if r is None or r.table is not t or not r.clean
        ]
        if not maybe:
            return
        todo: list[int] = []
        regs: list[_Region] = []
        for k in maybe:
            t = tables[k]
            r = chk[k]
            if r is None or r.table is not t:
                r = self._table_region(t)
            if not r.clean:
                todo.append(k)
                regs.append(r)
        if not todo:
            return
        vals = self._empty((len(regs), self.n))
        np.concatenate([r.vals for r in regs], out=vals.reshape(-1))
        ok = self._tables_ok(vals)
        for r, c in zip(regs, ok.tolist(), strict=True):
            if c:
                r.clean = True
        if not ok.all():
            j = int(np.flatnonzero(~ok)[0])
            self._check_sets(regs[j], tables[todo[j]].pmd_index, 0, self.n, "PTL release")

    # ------------------------------------------------------------------
    # TLB fill and use
    # ------------------------------------------------------------------
    def on_fill(self, cpu: int, space: AddressSpace, entry: TlbEntry, overlaps: list[TlbEntry]) -> None:
        """A walk on ``cpu`` fills ``entry``; ``overlaps``: entries of another size it overlaps."""
        if not self.arm:
            return
        if self.skip_set_check:
            # the vectorised sweep already checked this set (same verdict)
            self.skip_set_check = False
        elif entry.level == 3 and self.fmt.cont(entry.desc):
            r = self._region(space, entry.pmd_index)
            lo = entry.idx & ~(self.cont_n - 1)
            self._check_sets(r, entry.pmd_index, lo, lo + self.cont_n, f"TLB fill on CPU {cpu}")
        if overlaps and not self.feat.bbml2_noabort:
            o = overlaps[0]
            self._raise(
                "tlb-conflict",
                f"TLB conflict abort (DFSC 0b110000) on CPU {cpu}: fill of a {entry.npages}-page entry "
                f"overlaps a {o.npages}-page entry for ASID {entry.asid} (D8.17.3)",
                entry.vbase << self.hw.page_shift,
                [entry.desc, o.desc],
            )

    def _memory_translation(self, space: AddressSpace, vpn: int) -> tuple[int, int | None]:
        """What the checker's shadow says ``vpn`` maps to: (descriptor, pfn or None)."""
        pmd_index = vpn >> (self.hw.page_shift - 3)
        r = self._region(space, pmd_index)
        fmt = self.fmt
        if r.pmd_val and fmt.l2_kind(r.pmd_val) == L2_BLOCK:
            d = r.pmd_val
            return d, (fmt.pfn(d) & ~(self.n - 1)) + (vpn & (self.n - 1))
        d = int(r.vals[vpn & (self.n - 1)])
        if not fmt.page_valid(d):
            return d, None
        return d, fmt.pfn(d)

    def on_tlb_use(self, cpu: int, space: AddressSpace, vpn: int, entry: TlbEntry, write: bool) -> None:
        """A user access on ``cpu`` is served by ``entry``: is it still what memory says?"""
        fmt = self.fmt
        d, pfn = self._memory_translation(space, vpn)
        used = entry.pfn_of(vpn)
        why = ""
        if pfn is None:
            why = "the descriptor is now invalid"
        elif pfn != used:
            why = f"the descriptor now maps pfn {pfn:#x}"
        elif write:
            ws = fmt.write_state(d)
            if ws == WS_NONE or (ws == WS_CLEAN and not self.feat.hd) or not fmt.user(d):
                why = "the descriptor is now read-only"
        if not why:
            return
        others = self._mappers(used, exclude=space)
        va = vpn << self.hw.page_shift
        kind = "wrote" if write else "read"
        also = ", ".join(others) if others else "no other address space"
        self._raise(
            "stale-tlb",
            f"isolation breach: {space.name} {kind} pfn {used:#x} through a stale TLB entry on CPU {cpu} "
            f"({why}); the frame is also mapped by: {also}",
            va,
            [entry.desc, d],
        )

    def stale_mask(
        self, space: AddressSpace, pmd_index: int, i0: int, pfns: npt.NDArray[np.int64], write: bool
    ) -> BoolArr:
        """Vectorised ``on_tlb_use``: which of pages ``i0..`` served at ``pfns`` would be stale."""
        fmt = self.fmt
        r = self._region(space, pmd_index)
        u = len(pfns)
        if r.pmd_val and fmt.l2_kind(r.pmd_val) == L2_BLOCK:
            base = (fmt.pfn(r.pmd_val) & ~(self.n - 1)) + i0
            d = np.full(u, r.pmd_val, dtype=np.uint64)
            stale = (base + np.arange(u, dtype=np.int64)) != pfns
        else:
            d = r.vals[i0 : i0 + u]
            stale = ~fmt.page_valid_v(d) | (fmt.pfn_v(d).astype(np.int64) != pfns)
        if write:
            ws = fmt.write_state_v(d)
            ro = (ws == WS_NONE) | ~fmt.user_v(d)
            if not self.feat.hd:
                ro |= ws == WS_CLEAN
            stale |= ro
        return np.asarray(stale, dtype=np.bool_)

    def _mappers(self, pfn: int, exclude: AddressSpace) -> list[str]:
        """Names of the other address spaces whose descriptors map frame ``pfn`` (slow scan)."""
        fmt = self.fmt
        out = []
        for asid, regs in self.regions.items():
            space = self.spaces.get(asid)
            if space is None or space is exclude:
                continue
            hit = False
            for r in regs.values():
                if r.pmd_val and fmt.l2_kind(r.pmd_val) == L2_BLOCK:
                    b = fmt.pfn(r.pmd_val) & ~(self.n - 1)
                    if b <= pfn < b + self.n:
                        hit = True
                        break
                v = r.vals
                if (fmt.page_valid_v(v) & (fmt.pfn_v(v) == np.uint64(pfn))).any():
                    hit = True
                    break
            if hit:
                out.append(space.name)
        return out

    # ------------------------------------------------------------------
    # TLB maintenance
    # ------------------------------------------------------------------
    def on_tlbi(
        self,
        cpu: int,
        broadcast: bool,
        scope: str,
        asid: int | None,
        vpn: int,
        npages: int,
        level: int | None,
        last_level: bool,
        complete: bool = False,
    ) -> None:
        """Record a TLBI issued by ``cpu``; ``complete``: no DSB needed (x86 INVLPG)."""
        self.seq += 1
        t = _Tlbi(self.seq, broadcast, scope, asid, vpn, npages, level)
        if broadcast:
            self._apply(t, "issued")
        if complete:
            self._apply(t, "cover" if broadcast else "local")
        else:
            self.pending[cpu].append(t)

    def on_dsb(self, cpu: int, domain: str) -> None:
        """A DSB on ``cpu`` completes the TLBIs it covers (D8.17.8)."""
        if domain.endswith("st"):
            return
        keep = []
        for t in self.pending[cpu]:
            if t.broadcast and domain == "nsh":
                keep.append(t)
                continue
            self._apply(t, "cover" if t.broadcast else "local")
        self.pending[cpu] = keep

    def _apply(self, t: _Tlbi, field: str) -> None:
        """Mark the pages ``t`` reaches in every region it touches (field: cover/issued/local)."""
        if t.asid is not None:
            targets = [self.regions.get(t.asid, {})]
        else:
            targets = list(self.regions.values())
        l3 = t.level is None or t.level == 3
        l2 = t.level is None or t.level == 2
        f2 = field + "2"
        seq = t.seq
        shift = self.hw.page_shift - 3
        for regs in targets:
            if not regs:
                continue
            if t.scope != "va":
                # the whole of every region: one int per field
                _set_all(regs.values(), field if l3 else None, f2 if l2 else None, seq)
                continue
            first, last = t.vpn >> shift, (t.vpn + t.npages - 1) >> shift
            if last - first + 1 <= len(regs):
                items = [(i, regs[i]) for i in range(first, last + 1) if i in regs]
            else:
                items = [(i, r) for i, r in regs.items() if first <= i <= last]
            for i, r in items:
                lo = max(t.vpn, i << shift) - (i << shift)
                hi = min(t.vpn + t.npages, (i + 1) << shift) - (i << shift)
                if l3:
                    r.set_seqs(field, lo, hi, seq)
                if l2:
                    setattr(r, f2, seq)
