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


class _Region:
    """Shadow state of one level-2 region (one level-3 table's VA) of one ASID."""

    __slots__ = (
        "table",
        "vals",
        "broken_old",
        "break_seq",
        "cover",
        "issued",
        "local",
        "cover2",
        "issued2",
        "local2",
        "pmd_val",
        "pmd_broken_old",
        "pmd_break_seq",
    )

    def __init__(self, n: int) -> None:
        self.table: PteTable | None = None
        self.vals: U64 = np.zeros(n, dtype=np.uint64)
        # old valid value of an entry made invalid and not yet made again (0:
        # none), and the sequence number of its break: None until the first
        # break (all 0 / _NEVER), to keep the shadow small
        self.broken_old: U64 | None = None
        self.break_seq: I64 | None = None
        # issue sequence number of the latest TLBI reaching each page's level-3
        # entries: completed broadcast / issued broadcast / completed local;
        # an int while every page of the region has the same one
        self.cover: I64 | int = _NEVER
        self.issued: I64 | int = _NEVER
        self.local: I64 | int = _NEVER
        # the same for a level-2 block entry of the region
        self.cover2 = _NEVER
        self.issued2 = _NEVER
        self.local2 = _NEVER
        self.pmd_val = 0
        self.pmd_broken_old = 0
        self.pmd_break_seq = _NEVER

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

    # ------------------------------------------------------------------
    # bookkeeping
    # ------------------------------------------------------------------
    def add_space(self, space: AddressSpace) -> None:
        self.spaces[space.asid] = space
        self.regions.setdefault(space.asid, {})

    def retire_space(self, space: AddressSpace) -> None:
        self.spaces.pop(space.asid, None)
        self.regions.pop(space.asid, None)

    def _region(
        self, space: AddressSpace, pmd_index: int, idx: int = 0, old: np.ndarray | None = None
    ) -> _Region:
        regs = self.regions.get(space.asid)
        if regs is None:
            self.add_space(space)
            regs = self.regions[space.asid]
        r = regs.get(pmd_index)
        if r is None:
            r = _Region(self.n)
            # first sight of this region: take memory as it was before the
            # store being reported (``old`` at ``idx``)
            t = space.tables.get(pmd_index)
            if t is not None:
                r.table = t
                r.vals[:] = t.entries
                if old is not None:
                    r.vals[idx : idx + len(old)] = old
            r.pmd_val = space.pmds.get(pmd_index, 0)
            regs[pmd_index] = r
        return r

    def _table_region(self, table: PteTable, idx: int = 0, old: np.ndarray | None = None) -> _Region:
        r = self._region(table.space, table.pmd_index, idx, old)
        if r.table is not table:
            if r.table is not None:
                # a new table object replaced the old one without the old
                # one being freed through AddressSpace.free_pte_table
                self._detach(r)
            r.table = table
        return r

    def _detach(self, r: _Region) -> None:
        """The level-3 table of ``r`` is gone: its valid entries are broken now."""
        self.seq += 1
        valid = self.fmt.page_valid_v(r.vals)
        if valid.any():
            bo, bs = r.breaks()
            bo[valid] = r.vals[valid]
            bs[valid] = self.seq
        r.vals[:] = 0
        r.table = None

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
        if self.arm:
            self._check_level3_changes(r, table, idx, old, new)
        r.vals[idx : idx + nr] = new

    def on_store_many(
        self,
        stores: list[tuple[PteTable, int, np.ndarray, np.ndarray]],
        olds: np.ndarray | None = None,
        news: np.ndarray | None = None,
    ) -> None:
        """``on_store`` of each ``(table, idx, old, new)`` in order, checked at once.

        ``olds``/``news``: the stores' old and new values concatenated, if
        the caller has them.

        Same verdicts, messages and shadow state as the per-table calls (the
        same sequence number per store): when any store would raise, or
        anything but the common case is involved (a table twice, a replaced
        table object, a make over a pending break), the stores go through
        ``on_store`` one by one.
        """
        if not stores:
            return
        regs: list[_Region | None] = []  # None: first sight, created at the commit
        seen: set[int] = set()
        for table, _idx, _old, _new in stores:
            if id(table) in seen:
                break
            seen.add(id(table))
            regs_a = self.regions.get(table.space.asid)
            r = regs_a.get(table.pmd_index) if regs_a is not None else None
            if r is None:
                if table.space.tables.get(table.pmd_index) is not table:
                    break
            elif r.table is not table:
                break
            regs.append(r)
        if len(regs) != len(stores):
            for table, idx, old, new in stores:
                self.on_store(table, idx, old, new)
            return
        if olds is None or news is None:
            olds = np.concatenate([o for _, _, o, _ in stores])
            news = np.concatenate([n for _, _, _, n in stores])
        olds = olds.astype(np.uint64, copy=False)
        news = news.astype(np.uint64, copy=False)
        # a region seen first takes ``old`` as its shadow of the stored
        # entries: compare the others only
        known = [(r, s) for r, s in zip(regs, stores, strict=True) if r is not None]
        if len(known) == len(stores):
            shadow = np.concatenate([r.vals[s[1] : s[1] + len(s[3])] for r, s in known])
            slow = not bool((shadow == olds).all())
        elif known:
            shadow = np.concatenate([r.vals[s[1] : s[1] + len(s[3])] for r, s in known])
            mine = np.concatenate([s[2] for _, s in known]).astype(np.uint64, copy=False)
            slow = not bool((shadow == mine).all())
        else:
            slow = False
        brk_items: list[int] = []
        if not slow and self.arm:
            fmt = self.fmt
            ov = fmt.page_valid_v(olds)
            nv = fmt.page_valid_v(news)
            # a change of neither output address, memory type nor Contiguous
            # bit never needs break-before-make (see _needs_bbm_v)
            x = olds ^ news
            direct = ov & nv & ((fmt.pfn_v(x) != 0) | (fmt.memtype_v(x) != 0) | fmt.cont_v(x))
            if direct.any():
                pos = np.flatnonzero(direct)
                slow = bool(self._needs_bbm_v(olds[pos], news[pos]).any())
            if not slow:
                lens = np.array([len(s[3]) for s in stores], dtype=np.int64)
                bounds = np.concatenate(([0], np.cumsum(lens)))
                brk = ov & ~nv
                make = ~ov & nv

                def items_with(mask: BoolArr) -> list[int]:
                    hit = np.logical_or.reduceat(mask, np.minimum(bounds[:-1], len(mask) - 1)) & (lens > 0)
                    return np.flatnonzero(hit).tolist()

                if brk.any():
                    brk_items = items_with(brk)
                if make.any():
                    for i in items_with(make):
                        r = regs[i]
                        if r is None:
                            continue
                        if r.pmd_broken_old:
                            slow = True
                            break
                        if r.broken_old is not None:
                            idx = stores[i][1]
                            m = make[bounds[i] : bounds[i + 1]]
                            if r.broken_old[idx : idx + len(m)][m].any():
                                slow = True
                                break
        if slow:
            for table, idx, old, new in stores:
                self.on_store(table, idx, old, new)
            return
        seq0 = self.seq
        done: list[_Region] = []
        for r, (table, idx, old, _new) in zip(regs, stores, strict=True):
            done.append(self._table_region(table, idx, old.astype(np.uint64, copy=False)) if r is None else r)
        for i in brk_items:
            r = done[i]
            _, idx, old, new = stores[i]
            o = olds[bounds[i] : bounds[i + 1]]
            b = brk[bounds[i] : bounds[i + 1]]
            pos = idx + np.flatnonzero(b)
            bo, bs = r.breaks()
            bo[pos] = o[b]
            bs[pos] = seq0 + i + 1
        off = 0
        for r, (_, idx, _, new) in zip(done, stores, strict=True):
            nr = len(new)
            r.vals[idx : idx + nr] = news[off : off + nr]
            off += nr
        self.seq = seq0 + len(stores)

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
        r.vals[idx : idx + nr] = new

    def on_pmd_hw_update(self, space: AddressSpace, pmd_index: int, old: int, new: int) -> None:
        r = self._region(space, pmd_index)
        r.pmd_val = new

    # ------------------------------------------------------------------
    # contiguous-set consistency (D8.7.1)
    # ------------------------------------------------------------------
    def set_faults(self, r: _Region, lo: int, hi: int) -> tuple[BoolArr, BoolArr, BoolArr]:
        """Per aligned set in entries ``[lo, hi)``: (misprogrammed, bad OA, bad attributes)."""
        fmt = self.fmt
        n = self.cont_n
        vals = r.vals[lo:hi].reshape(-1, n)
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
        oa_bad = np.asarray(has_c & ((cont & (base != b0[:, None])).any(axis=1) | (b0 % n != 0)), dtype=np.bool_)
        key = fmt.prot_key_v(vals, self.feat.hd)
        attr_bad = np.asarray(has_c & (cont & (key != key[rows, j][:, None])).any(axis=1), dtype=np.bool_)
        return mis, oa_bad, attr_bad

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
        self._check_sets(r, table.pmd_index, 0, self.n, "PTL release")

    def ptl_release_many(self, tables: list[PteTable]) -> None:
        """``ptl_release`` of each table in order, the sets of all checked at once.

        Raises what the first failing ``ptl_release`` would raise.
        """
        if not self.arm or not tables:
            return
        regs = [self._table_region(t) for t in tables]
        n = self.n
        vals = np.concatenate([r.vals for r in regs])
        stacked = _Region.__new__(_Region)
        stacked.vals = vals
        mis, oa_bad, attr_bad = self.set_faults(stacked, 0, len(vals))
        bad = mis | oa_bad | attr_bad
        if not bad.any():
            return
        t = int(np.flatnonzero(bad)[0]) * self.cont_n // n
        self._check_sets(regs[t], tables[t].pmd_index, 0, n, "PTL release")

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
            targets = [(t.asid, self.regions.get(t.asid, {}))]
        else:
            targets = list(self.regions.items())
        l3 = t.level is None or t.level == 3
        l2 = t.level is None or t.level == 2
        shift = self.hw.page_shift - 3
        for _, regs in targets:
            if not regs:
                continue
            if t.scope == "va":
                first, last = t.vpn >> shift, (t.vpn + t.npages - 1) >> shift
                if last - first + 1 <= len(regs):
                    items = [(i, regs[i]) for i in range(first, last + 1) if i in regs]
                else:
                    items = [(i, r) for i, r in regs.items() if first <= i <= last]
            else:
                items = list(regs.items())
            for i, r in items:
                if t.scope == "va":
                    lo = max(t.vpn, i << shift) - (i << shift)
                    hi = min(t.vpn + t.npages, (i + 1) << shift) - (i << shift)
                else:
                    lo, hi = 0, self.n
                if l3:
                    r.set_seqs(field, lo, hi, t.seq)
                if l2:
                    setattr(r, field + "2", t.seq)
