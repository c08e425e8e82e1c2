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

It recounts from the tables (numpy over each table) after every syscall
on a oneplus machine, and in ``m.check()``.  Not compiled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvariantViolation
from ..mm.memmap import PG_cont, PG_double_map

__all__ = ["ContPteCheck"]

#: HPAGE_CONT_PTE_NR with 4K pages.
NR = 16


class ContPteCheck:
    """The block validator of one Machine with ``policy="oneplus"``."""

    def __init__(self, machine: Any) -> None:
        self.m = machine
        self.k = machine.kernel

    def after_syscall(self) -> None:
        """Check every block (raises the first violation)."""
        got = self.check()
        if got is not None:
            raise got

    def count_blocks(self) -> dict[int, int]:
        """Whole-block mappings per folio head, from every table; raises ``cont-pte-corrupt``."""
        k = self.k
        a = k.arch
        mem = k.memmap
        entries = np.asarray(a.pool.e)
        per = a.PTRS_PER_PTE
        blocks: dict[int, int] = {}
        for mm in k.mms:
            for idx, slot in mm.space.tables.items():
                tab = entries[slot * per : (slot + 1) * per]
                d = a.ptes_decode(tab, ("pfn", "cont"))
                cont = d["cont"].reshape(-1, NR)
                n = cont.sum(axis=1)
                bad = np.flatnonzero((n > 0) & (n < NR))
                if len(bad):
                    g = int(bad[0])
                    raise InvariantViolation(
                        "cont-pte-corrupt",
                        f"pid {mm.owner}: {int(n[g])} of the 16 entries of a block are Contiguous",
                        (idx << a.PMD_SHIFT) | ((g * NR) << a.PAGE_SHIFT),
                        [int(x) for x in tab[g * NR : (g + 1) * NR]],
                    )
                pfn = d["pfn"].reshape(-1, NR)
                for gg in np.flatnonzero(n == NR):
                    g = int(gg)
                    p0 = int(pfn[g, 0])
                    va = (idx << a.PMD_SHIFT) | ((g * NR) << a.PAGE_SHIFT)
                    ok = p0 % NR == 0 and bool(np.all(pfn[g] == np.arange(p0, p0 + NR)))
                    ok = ok and 0 <= p0 < len(mem.head) and int(mem.head[p0]) == p0
                    ok = ok and int(mem.order[p0]) == 4 and bool(int(mem.flags[p0]) & PG_cont)
                    if not ok:
                        raise InvariantViolation(
                            "cont-pte-corrupt",
                            f"pid {mm.owner}: a Contiguous block does not map one 64K block folio in order",
                            va,
                            [int(x) for x in tab[g * NR : (g + 1) * NR]],
                        )
                    blocks[p0] = blocks.get(p0, 0) + 1
        return blocks

    def check(self) -> InvariantViolation | None:
        """Every rule from scratch; the first violation, or None."""
        k = self.k
        mem = k.memmap
        try:
            blocks = self.count_blocks()
        except InvariantViolation as e:
            return e
        ent = np.asarray(mem.entire_mapcount)
        flags = np.asarray(mem.flags)
        order = np.asarray(mem.order)
        head = np.asarray(mem.head)
        nr = len(head)
        heads = np.flatnonzero(
            (head == np.arange(nr)) & (order < k.PMD_ORDER) & ((ent != 0) | (flags & PG_cont != 0))
        )
        for h in [int(x) for x in heads] + [b for b in blocks if not (ent[b] or flags[b] & PG_cont)]:
            want = blocks.get(h, 0)
            if int(ent[h]) != want:
                return InvariantViolation(
                    "mapcount",
                    f"folio {h:#x}: entire mapcount {int(ent[h])} but {want} whole block(s) map it",
                )
            if int(flags[h]) & PG_double_map and want == 0:
                return InvariantViolation(
                    "double-map", f"folio {h:#x} is PageDoubleMap without a whole-block mapping"
                )
        return None
