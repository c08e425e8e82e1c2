"""A /proc/pid/pagemap-like view of an address space.

Models: fs/proc/task_mmu.c ``pagemap_pte_range()`` (present, PFN,
PM_MMAP_EXCLUSIVE) extended with the model's own columns: folio order,
writable, dirty and young (as ``ptep_get`` reports them: gathered over a
contiguous block) and the raw Contiguous bit.  Reading it changes no
counter (descriptors are read with ``peek``).

Compiled (docs/core.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cython
import numpy as np

if TYPE_CHECKING:
    PfnList = list[int]

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import I8View, I64View, U8View, U64View, i64, u64
    from ..hw.tables import AddressSpace, PtePool
    from ..mm.memmap import MemMap
    from ..mm.mm_types import MmStruct

__all__ = ["pagemap_rows", "page_pfn", "page_pfns", "PAGEMAP_DTYPE"]

PAGEMAP_DTYPE = np.dtype(
    [
        ("present", np.bool_),
        ("pfn", np.int64),
        ("order", np.int8),
        ("writable", np.bool_),
        ("dirty", np.bool_),
        ("young", np.bool_),
        ("cont", np.bool_),
        ("exclusive", np.bool_),
        ("swap", np.bool_),
        ("swap_offset", np.int64),
    ]
)
"""One row per page of ``Process.pagemap``.

``swap`` is PM_SWAP: the PTE holds a swap entry (the page is swapped out,
``present`` is False); ``swap_offset`` its slot on the swap device (the
offset of pagemap's swap-entry bits), -1 for any other row.
"""

_PRESENT = cython.declare(i64, 1)
_WRITE = cython.declare(i64, 2)
_DIRTY = cython.declare(i64, 4)
_YOUNG = cython.declare(i64, 8)
_CONT = cython.declare(i64, 16)
_SPECIAL = cython.declare(i64, 32)


@cython.cfunc
@cython.exceptval(-1, check=True)
def _bits(a: Pgtable, v: u64) -> i64:
    """The ``_*`` bits of a raw PTE (0 unless ``pte_present``)."""
    if v == 0 or not a.pte_present(v):
        return 0
    b: i64 = _PRESENT
    if a.pte_write(v):
        b |= _WRITE
    if a.pte_dirty(v):
        b |= _DIRTY
    if a.pte_young(v):
        b |= _YOUNG
    if a.pte_cont(v):
        b |= _CONT
    if a.pte_special(v):
        b |= _SPECIAL
    return b


def pagemap_rows(mm: MmStruct, addr: int, npages: int) -> np.ndarray:
    """``PAGEMAP_DTYPE`` rows of pages ``[addr, addr + npages * PAGE_SIZE)`` of ``mm``.

    ``present`` is ``pte_present()`` (PROT_NONE and NUMA-hinting entries
    are present, as in Linux); ``exclusive`` is PM_MMAP_EXCLUSIVE (the page
    is mapped exactly once: its mapcount plus its folio's entire mapcount).
    """
    n = int(npages)
    flags = np.zeros(n, dtype=np.uint8)
    pfns = np.zeros(n, dtype=np.int64)
    order = np.zeros(n, dtype=np.int8)
    excl = np.zeros(n, dtype=np.uint8)
    swp = np.full(n, -1, dtype=np.int64)
    _fill(mm, addr, n, flags, pfns, order, excl, swp)
    out = np.zeros(n, dtype=PAGEMAP_DTYPE)
    out["present"] = (flags & _PRESENT) != 0
    out["pfn"] = pfns
    out["order"] = order
    out["writable"] = (flags & _WRITE) != 0
    out["dirty"] = (flags & _DIRTY) != 0
    out["young"] = (flags & _YOUNG) != 0
    out["cont"] = (flags & _CONT) != 0
    out["exclusive"] = excl != 0
    out["swap"] = swp >= 0
    out["swap_offset"] = swp
    return out


@cython.cfunc
def _meta(mem: MemMap, pfn: i64, order: I8View, excl: U8View, j: i64, special: cython.bint) -> None:
    """The folio order and PM_MMAP_EXCLUSIVE of row ``j`` (mapping ``pfn``)."""
    if pfn < 0 or pfn >= mem.nr_frames:
        return
    h: i64 = mem.head[pfn]
    if h < 0:
        h = 0
    order[j] = mem.order[h]
    if not special and mem.mapcount[pfn] + mem.entire_mapcount[h] == 1:
        excl[j] = 1


@cython.cfunc
def _fill(
    mm: MmStruct, addr: i64, n: i64, flags: U8View, pfns: I64View, order: I8View, excl: U8View, swp: I64View
) -> None:
    a: Pgtable = mm.kernel.arch
    mem: MemMap = mm.kernel.memmap
    space: AddressSpace = mm.space
    pool: PtePool = space.pool
    e: U64View = pool.e
    per: i64 = space.ptrs_per_pte
    cp: i64 = a.CONT_PTES
    vpn0: i64 = addr >> space.page_shift
    i: i64 = 0
    j: i64
    k: i64
    b: i64
    g: i64
    c: i64
    off: i64
    idx: i64
    slot: i64
    base: i64
    pf: i64
    while i < n:
        idx = (vpn0 + i) // per
        off = (vpn0 + i) % per
        c = min(per - off, n - i)
        blk = space.pmds.get(idx)
        if blk is not None:
            b = _bits(a, a.pmd_pte(blk))
            if b & _PRESENT:
                pf = a.pte_pfn(a.pmd_pte(blk))
                for j in range(i, i + c):
                    flags[j] = b & (_PRESENT | _WRITE | _DIRTY | _YOUNG)
                    pfns[j] = pf + off + (j - i)
                    _meta(mem, pfns[j], order, excl, j, False)
        else:
            slot = space.pte_table(idx)
            if slot >= 0:
                base = slot * per
                for j in range(c):
                    k = off + j
                    b = _bits(a, e[base + k])
                    if not b & _PRESENT:
                        if e[base + k] != 0:
                            swp[i + j] = a.swp_offset(e[base + k])  # PM_SWAP
                        continue
                    if cp > 1 and b & _CONT:
                        # ptep_get() gathers access/dirty over the block
                        for g in range(base + k - k % cp, base + k - k % cp + cp):
                            b |= _bits(a, e[g]) & (_DIRTY | _YOUNG)
                    pf = a.pte_pfn(e[base + k])
                    flags[i + j] = b & (_PRESENT | _WRITE | _DIRTY | _YOUNG | _CONT)
                    pfns[i + j] = pf
                    _meta(mem, pf, order, excl, i + j, (b & _SPECIAL) != 0)
        i += c


@cython.ccall
@cython.exceptval(-1, check=True)
def page_pfn(mm: MmStruct, addr: i64) -> i64:
    """The pfn ``addr`` maps (``pte_present``, or a PMD block), -1 if none."""
    a: Pgtable = mm.kernel.arch
    space: AddressSpace = mm.space
    idx: i64 = addr >> space.pmd_shift
    blk = space.pmds.get(idx)
    v: u64
    if blk is not None:
        v = a.pmd_pte(blk)
        if v == 0 or not a.pte_present(v):
            return -1
        return a.pte_pfn(v) + ((addr >> space.page_shift) & (space.ptrs_per_pte - 1))
    ptep: i64 = space.pte_ptr(addr)
    if ptep < 0:
        return -1
    v = space.pool.peek(ptep)
    if v == 0 or not a.pte_present(v):
        return -1
    return a.pte_pfn(v)


@cython.ccall
def page_pfns(mm: MmStruct, addr: i64, npages: i64) -> PfnList:
    """The pfns of the present pages of ``[addr, addr + npages * PAGE_SIZE)``, in order."""
    out: list[int] = []
    ps: i64 = mm.space.page_shift
    j: i64
    pf: i64
    for j in range(npages):
        pf = page_pfn(mm, addr + (j << ps))
        if pf >= 0:
            out.append(pf)
    return out
