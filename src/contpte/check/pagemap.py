"""A /proc/pid/pagemap-like view of an address space.

Models: fs/proc/task_mmu.c ``pagemap_pte_range()`` (present, PFN,
PM_MMAP_EXCLUSIVE) extended with the model's own columns: folio order,
writable, dirty and young (as ``ptep_get`` reports them: gathered over a
contiguous block) and the raw Contiguous bit.  Reading it changes no
counter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["pagemap_rows", "decode_table", "PAGEMAP_DTYPE"]

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
    ]
)
"""One row per page of ``Process.pagemap``."""


def decode_table(arch: Any, entries: np.ndarray) -> dict[str, np.ndarray]:
    """Decode raw descriptors with the arch's vectorised helper."""
    return arch.ptes_decode(entries)  # type: ignore[no-any-return]


def pagemap_rows(mm: Any, addr: int, npages: int) -> np.ndarray:
    k = mm.kernel
    arch = k.arch
    mem = k.memmap
    ps_shift = k.page_shift
    out = np.zeros(npages, dtype=PAGEMAP_DTYPE)
    vpn0 = addr >> ps_shift
    per = arch.PTRS_PER_PTE
    i = 0
    while i < npages:
        vpn = vpn0 + i
        pmd_idx = vpn // per
        off = vpn % per
        n = min(per - off, npages - i)
        sl = slice(i, i + n)
        blk = mm.space.pmds.get(pmd_idx)
        if blk is not None:
            d = arch.ptes_decode(np.array([arch.pmd_pte(blk)], dtype=np.uint64))
            if d["present"][0]:
                base = int(d["pfn"][0])
                pfns = base + off + np.arange(n)
                out["present"][sl] = True
                out["pfn"][sl] = pfns
                out["writable"][sl] = d["write"][0]
                out["dirty"][sl] = d["dirty"][0]
                out["young"][sl] = d["young"][0]
                heads = mem.head[pfns]
                out["order"][sl] = mem.order[np.maximum(heads, 0)]
                out["exclusive"][sl] = (mem.mapcount[pfns] + mem.entire_mapcount[np.maximum(heads, 0)]) == 1
        else:
            t = mm.space.pte_table(pmd_idx)
            if t is not None:
                ents = t.entries
                d = arch.ptes_decode(ents)
                cont = d["cont"]
                dirty = d["dirty"].copy()
                young = d["young"].copy()
                cp = arch.CONT_PTES
                if cp > 1 and cont.any():
                    blocks = cont.reshape(-1, cp).any(axis=1)
                    dd = d["dirty"].reshape(-1, cp).any(axis=1) & blocks
                    yy = d["young"].reshape(-1, cp).any(axis=1) & blocks
                    dirty |= np.repeat(dd, cp) & cont
                    young |= np.repeat(yy, cp) & cont
                s = slice(off, off + n)
                # PM_PRESENT is pte_present(): PROT_NONE (and NUMA-hinting)
                # entries are present too, only not valid for the walker.
                present = d["present"][s]
                pfns = np.where(present, d["pfn"][s], 0)
                out["present"][sl] = present
                out["pfn"][sl] = np.where(present, pfns, 0)
                out["writable"][sl] = d["write"][s] & present
                out["dirty"][sl] = dirty[s] & present
                out["young"][sl] = young[s] & present
                out["cont"][sl] = cont[s] & present
                heads = np.where(present, mem.head[pfns], 0)
                heads = np.maximum(heads, 0)
                out["order"][sl] = np.where(present, mem.order[heads], 0)
                special = d["special"][s]
                excl = (mem.mapcount[pfns] + mem.entire_mapcount[heads]) == 1
                out["exclusive"][sl] = present & excl & ~special
        i += n
    return out
