"""The OnePlus block validator: whole blocks and entire mapcounts against the page tables.

Under ``Machine(policy="oneplus")`` core-mm maps 64K blocks whole, with the
Contiguous bit, and accounts each whole-block mapping once in the folio's
entire mapcount (``mm/cont_pte_hugepage.py``).  Like the other validators
this one derives what must hold from the page tables and never trusts the
structures it checks (mem_map's entire mapcounts and flags).  Rules
(``InvariantViolation.rule``):

- ``cont-pte-corrupt``: in every aligned group of 16 entries either none
  or all carry the Contiguous bit (the design's own ``cont_pte_trans_huge()``
  check, which it counts by call site); a whole block's entries are
  present and map the 16 pages of one 64K block folio in order;
- ``mapcount``: each block folio's entire mapcount equals the number of
  whole blocks that map it, in every process (with the per-page mapcounts
  checked by ``check/incremental.py``: entire + per-page = PTEs mapping
  each page, one reference per block mapping);
- ``double-map``: a folio flagged double-mapped (``PageDoubleMap``) still
  has a whole-block mapping.

It recounts from scratch after every syscall on a oneplus machine, and in
``m.check()``: every entry of every table of every process, then every
frame of mem_map (for the folios whose entire mapcount or ``PG_cont``
says they are blocks).  Compiled (docs/core.md), it reads the tables and
mem_map in place: a few microseconds for the fuzzer's machines, so no
incremental path is needed.  Within a table a group that is partly
Contiguous is reported before a whole block that maps the wrong frames.
"""

from __future__ import annotations

from typing import Any

import cython

from ..errors import InvariantViolation

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import I8View, I32View, I64View, U32View, U64View, i64, u64
    from ..hw.tables import AddressSpace
    from ..mm.kernel import Kernel
    from ..mm.memmap import MemMap, PG_cont, PG_double_map
    from ..mm.mm_types import MmStruct
    from .incremental import F_CONT, PteDecoder

__all__ = ["ContPteCheck"]

#: HPAGE_CONT_PTE_NR with 4K pages.
NR = cython.declare(i64, 16)


@cython.final
@cython.cclass
class ContPteCheck:
    """The block validator of one Machine with ``policy="oneplus"``."""

    def __init__(self, machine: Any) -> None:
        self.m = machine
        self.k = machine.kernel
        self.dec = PteDecoder(self.k.arch)

    @cython.ccall
    def after_syscall(self) -> None:
        """Check every block (raises the first violation)."""
        got = self.check()
        if got is not None:
            raise got

    @cython.ccall
    @cython.boundscheck(False)  # ranges checked once per table and per frame below
    def count_blocks(self) -> dict[Any, int]:
        """Whole-block mappings per folio head, from every table; raises ``cont-pte-corrupt``."""
        k: Kernel = self.k
        a: Pgtable = k.arch
        mem: MemMap = k.memmap
        dec: PteDecoder = self.dec
        e: U64View = a.pool.e
        head: I64View = mem.head
        order: I8View = mem.order
        flags: U32View = mem.flags
        per: i64 = a.PTRS_PER_PTE
        pmd_shift: i64 = a.PMD_SHIFT
        page_shift: i64 = a.PAGE_SHIFT
        nframes: i64 = head.shape[0]
        if order.shape[0] != nframes or flags.shape[0] != nframes:
            raise IndexError("mem_map arrays of different lengths")
        blocks: dict[Any, int] = {}
        mm: MmStruct
        space: AddressSpace
        base: i64
        g: i64
        g0: i64
        i: i64
        n: i64
        p0: i64
        bad: i64
        any_set: u64
        ok: cython.bint
        for x in k.mms:
            mm = x
            space = mm.space
            for idx, slot in space.tables.items():
                base = cython.cast(i64, slot) * per
                if base < 0 or base + per > e.shape[0]:
                    raise IndexError(f"pid {mm.owner}: table slot {slot} out of range")
                bad = -1  # the first whole block that does not map a block folio
                for g in range(per // NR):  # (a C loop: range() with a variable step is not)
                    g0 = g * NR
                    n = 0
                    # a group of zero entries (most of a table) costs one pass of ORs
                    any_set = 0
                    for i in range(base + g0, base + g0 + NR):
                        any_set |= e[i]
                    if any_set == 0:
                        continue
                    for i in range(base + g0, base + g0 + NR):
                        if dec.flags(e[i]) & F_CONT:
                            n += 1
                    if n == 0:
                        continue
                    if n < NR:
                        raise InvariantViolation(
                            "cont-pte-corrupt",
                            f"pid {mm.owner}: {n} of the 16 entries of a block are Contiguous",
                            (cython.cast(i64, idx) << pmd_shift) | (g0 << page_shift),
                            [int(e[i]) for i in range(base + g0, base + g0 + NR)],
                        )
                    if bad >= 0:
                        continue
                    p0 = dec.pfn(e[base + g0])
                    ok = p0 % NR == 0
                    for i in range(1, NR):
                        if not ok:
                            break
                        ok = dec.pfn(e[base + g0 + i]) == p0 + i
                    ok = ok and 0 <= p0 < nframes and head[p0] == p0
                    ok = ok and order[p0] == 4 and (flags[p0] & PG_cont) != 0
                    if not ok:
                        bad = g0
                        continue
                    blocks[p0] = blocks.get(p0, 0) + 1
                if bad >= 0:
                    raise InvariantViolation(
                        "cont-pte-corrupt",
                        f"pid {mm.owner}: a Contiguous block does not map one 64K block folio in order",
                        (cython.cast(i64, idx) << pmd_shift) | (bad << page_shift),
                        [int(e[i]) for i in range(base + bad, base + bad + NR)],
                    )
        return blocks

    @cython.ccall
    @cython.boundscheck(False)  # the lengths of mem_map's arrays are checked below
    def check(self) -> InvariantViolation | None:
        """Every rule from scratch; the first violation, or None."""
        k: Kernel = self.k
        mem: MemMap = k.memmap
        try:
            blocks = self.count_blocks()
        except InvariantViolation as e:
            return e
        ent: I32View = mem.entire_mapcount
        flags: U32View = mem.flags
        order: I8View = mem.order
        head: I64View = mem.head
        pmd_order: i64 = k.PMD_ORDER
        nframes: i64 = head.shape[0]
        h: i64
        got: InvariantViolation | None
        if ent.shape[0] != nframes or flags.shape[0] != nframes or order.shape[0] != nframes:
            raise IndexError("mem_map arrays of different lengths")
        for h in range(nframes):
            if ent[h] == 0 and (flags[h] & PG_cont) == 0:
                continue
            if head[h] == h and order[h] < pmd_order:
                got = self._folio(h, blocks)
                if got is not None:
                    return got
        for b in blocks:
            h = b
            if ent[h] == 0 and (flags[h] & PG_cont) == 0:
                got = self._folio(h, blocks)
                if got is not None:
                    return got
        return None

    @cython.cfunc
    def _folio(self, h: i64, blocks: dict[Any, int]) -> InvariantViolation | None:
        """Block folio ``h`` against the whole blocks that map it."""
        mem: MemMap = self.k.memmap
        want: i64 = blocks.get(h, 0)
        if mem.entire_mapcount[h] != want:
            return InvariantViolation(
                "mapcount",
                f"folio {h:#x}: entire mapcount {mem.entire_mapcount[h]} but {want} whole block(s) map it",
            )
        if mem.flags[h] & PG_double_map and want == 0:
            return InvariantViolation(
                "double-map", f"folio {h:#x} is PageDoubleMap without a whole-block mapping"
            )
        return None
