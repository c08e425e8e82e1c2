"""The cont-pte hugepage pool's interface, on the buddy allocator alone.

A placeholder: the pool branch (``chpool``) replaces this file with the pool
itself (CMA area, refill thread, watermarks).  This one is only the design's
last tier, ``alloc_chp_from_buddy()``: one order-4 block (16 naturally
aligned frames of 4K) from the buddy allocator, no reclaim.

Models: mm/cont_pte_hugepage.c of OnePlusOSS/android_kernel_oneplus_sm8550
(``alloc_cont_pte_hugepage()``, ``alloc_chp_from_buddy()``,
``__free_cont_pte_hugepages()``).  Not compiled.
"""

from __future__ import annotations

from typing import Any

__all__ = ["alloc_cont_pte_hugepage", "free_cont_pte_hugepages", "HPAGE_CONT_PTE_ORDER"]

#: HPAGE_CONT_PTE_ORDER with 4K pages: 16 PTEs, 64K.
HPAGE_CONT_PTE_ORDER = 4


def alloc_cont_pte_hugepage(k: Any, gfp: int) -> int:
    """Allocate one 64K block; its first pfn, or -1.

    Models: ``alloc_cont_pte_hugepage()`` reduced to ``alloc_chp_from_buddy()``
    (``alloc_pages(HIGH_ORDER_GFP, HPAGE_CONT_PTE_ORDER)``: no reclaim).
    ``k``: the mm ``Kernel``; ``gfp``: the pool's flags (unused here).
    The frames are not prepared as a folio: the caller does that.
    """
    return int(k.buddy.alloc_pages(HPAGE_CONT_PTE_ORDER))


def free_cont_pte_hugepages(k: Any, pfn: int) -> None:
    """Give a block back (``__free_cont_pte_hugepages()``: a buddy block goes to the buddy)."""
    k.buddy.free_pages(pfn, HPAGE_CONT_PTE_ORDER)
