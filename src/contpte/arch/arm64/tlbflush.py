"""arm64 TLB maintenance: broadcast TLBI by VA, range and ASID; the mmu_gather flush.

Models: arch/arm64/include/asm/tlbflush.h and the ``tlb_flush()`` of
arch/arm64/include/asm/tlb.h (Linux v6.12).  This is where the kernel's
vocabulary meets the hardware's: each ``__tlbi()`` becomes ``hw.tlbi_op()``
(``hw.tlbi_range_op()`` for the FEAT_TLBIRANGE ``r`` forms, with the op codes of
``contpte.hw.tlbi``) and each
``dsb()`` becomes ``hw.dsb_op()``.

v6.19 adds local (non-broadcast) forms for a change that only relaxed
permissions or set the Access flag: DSB NSHST, VALE1 (no ``IS``: this CPU
only), DSB NSH.  Other CPUs keep their stale, less permissive entries and
fix them on their own spurious fault.

Template (as in the kernel): DSB ISHST so the walkers see the page-table
stores, the TLBIs (inner-shareable: broadcast to every CPU), then DSB ISH to
wait for their completion everywhere.  The ``_nosync`` forms leave the DSB
ISH to a later barrier.

KPTI: with the kernel unmapped at EL0 every user TLBI is issued twice, for
the kernel ASID and for the user ASID (``__tlbi_user``).  The model gives an
mm one ASID standing for that pair, so both operations name it.

Not modelled: LPA2 (range base must then be 64K-aligned), the TLBI-repeat
errata, ``mmu_notifier_arch_invalidate_secondary_tlbs`` (no SMMU/KVM).

Functions take the backend (``arch``) first, then the kernel's arguments.

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

if not cython.compiled:
    from ...cdefs import i64
    from ...hw.hardware import Hardware
    from ...hw.tlbi import (
        DSB_ISH,
        DSB_ISHST,
        DSB_NSH,
        DSB_NSHST,
        TLBI_ASIDE1IS,
        TLBI_RVAE1IS,
        TLBI_RVALE1,
        TLBI_RVALE1IS,
        TLBI_VAE1IS,
        TLBI_VALE1,
        TLBI_VALE1IS,
    )
    from ..pgtable import GatherLike, MmLike, Pgtable, VmaLike

__all__ = [
    "TLBI_TTL_UNKNOWN",
    "MAX_TLBI_RANGE_PAGES",
    "TLB_FLUSH_VMA",
    "TLBI_RANGE_PAGES",
    "TLBI_RANGE_NUM",
    "flush_tlb_mm",
    "flush_tlb_page_nosync",
    "flush_tlb_page",
    "local_flush_tlb_page_nonotify",
    "local_flush_tlb_page",
    "local_flush_tlb_contpte",
    "_flush_tlb_range_op",
    "_flush_tlb_range_nosync",
    "_flush_tlb_range",
    "flush_tlb_range",
    "flush_pmd_tlb_range",
    "tlb_get_level",
    "tlb_get_unmap_size",
    "tlb_flush",
]

#: ``INT_MAX``: no level hint (the TTL field is then 0).
TLBI_TTL_UNKNOWN = cython.declare(i64, (1 << 31) - 1)


@cython.ccall
@cython.exceptval(-1, check=True)
def TLBI_RANGE_PAGES(num: i64, scale: i64) -> i64:
    """Pages one range TLBI covers.  Models: ``__TLBI_RANGE_PAGES()``."""
    return (num + 1) << (5 * scale + 1)


#: 2**21 pages: the most one range operation can cover.
MAX_TLBI_RANGE_PAGES = cython.declare(i64, (31 + 1) << (5 * 3 + 1))


@cython.ccall
@cython.exceptval(-1, check=True)
def TLBI_RANGE_NUM(pages: i64, scale: i64) -> i64:
    """The NUM field for ``pages`` at ``scale``; -1 if ``scale`` is too coarse.

    Models: ``__TLBI_RANGE_NUM()`` (v6.9+ form: clamp to what one op at this
    scale can cover, so SCALE 3 can take all of MAX_TLBI_RANGE_PAGES).
    """
    return (min(pages, TLBI_RANGE_PAGES(31, scale)) >> (5 * scale + 1)) - 1


@cython.ccall
def TLB_FLUSH_VMA(mm: MmLike, flags: i64) -> VmaLike:
    """Models: include/asm-generic/tlb.h ``TLB_FLUSH_VMA()``: a fake vma for flushes."""
    # fields set in place: VmaLike(mm, 0, 0, flags) is a Python call with
    # argument parsing, and contpte_convert makes one per unfold and fold
    vma: VmaLike = VmaLike.__new__(VmaLike)
    vma.vm_mm = mm
    vma.vm_start = 0
    vma.vm_end = 0
    vma.vm_flags = flags
    return vma


@cython.cfunc
@cython.exceptval(-1, check=True)
def _ttl(level: i64) -> i64:
    # Only levels 1-3 are hints; 0 and TLBI_TTL_UNKNOWN encode "no hint".
    return level if 1 <= level <= 3 else 0


@cython.cfunc
def _tlbi(arch: Pgtable, op: i64, asid: i64, va: i64, ttl: i64) -> None:
    """``__tlbi(op)`` then ``__tlbi_user(op)`` (KPTI's second ASID).  ``op``: a ``hw.tlbi`` code."""
    hw: Hardware = arch.hw
    hw.tlbi_op(op, asid, va, ttl)
    if arch.kpti:
        hw.tlbi_op(op, asid, va, ttl)


@cython.cfunc
def _tlbi_range(arch: Pgtable, op: i64, asid: i64, va: i64, scale: i64, num: i64, ttl: i64) -> None:
    hw: Hardware = arch.hw
    hw.tlbi_range_op(op, asid, va, scale, num, ttl)
    if arch.kpti:
        hw.tlbi_range_op(op, asid, va, scale, num, ttl)


@cython.cfunc
def _tlbi_nouser(arch: Pgtable, op: i64, asid: i64, va: i64, ttl: i64) -> None:
    arch.hw.tlbi_op(op, asid, va, ttl)


@cython.cfunc
def _tlbi_range_nouser(arch: Pgtable, op: i64, asid: i64, va: i64, scale: i64, num: i64, ttl: i64) -> None:
    arch.hw.tlbi_range_op(op, asid, va, scale, num, ttl)


@cython.ccall
def flush_tlb_mm(arch: Pgtable, mm: MmLike) -> None:
    """Invalidate every TLB entry of ``mm`` on every CPU: one ASIDE1IS.

    Models: arm64 ``flush_tlb_mm()``.
    """
    hw: Hardware = arch.hw
    hw.dsb_op(DSB_ISHST)
    _tlbi(arch, TLBI_ASIDE1IS, mm.space.asid, -1, 0)
    hw.dsb_op(DSB_ISH)


@cython.ccall
def flush_tlb_page_nosync(arch: Pgtable, vma: VmaLike, uaddr: i64) -> None:
    """One leaf invalidation (VALE1IS), completion left to a later DSB.

    Models: arm64 ``flush_tlb_page_nosync()`` / ``__flush_tlb_page_nosync()``.
    """
    arch.hw.dsb_op(DSB_ISHST)
    _tlbi(arch, TLBI_VALE1IS, vma.vm_mm.space.asid, uaddr & ~(arch.PAGE_SIZE - 1), 0)


@cython.ccall
def flush_tlb_page(arch: Pgtable, vma: VmaLike, uaddr: i64) -> None:
    """Models: arm64 ``flush_tlb_page()``: ``flush_tlb_page_nosync()`` + DSB ISH."""
    flush_tlb_page_nosync(arch, vma, uaddr)
    arch.hw.dsb_op(DSB_ISH)


@cython.cfunc
def _local_flush_tlb_page_nonotify_nosync(arch: Pgtable, mm: MmLike, uaddr: i64) -> None:
    """Models: arm64 ``__local_flush_tlb_page_nonotify_nosync()`` (v6.19): DSB NSHST + VALE1."""
    arch.hw.dsb_op(DSB_NSHST)
    _tlbi(arch, TLBI_VALE1, mm.space.asid, uaddr & ~(arch.PAGE_SIZE - 1), 0)


@cython.ccall
def local_flush_tlb_page_nonotify(arch: Pgtable, vma: VmaLike, uaddr: i64) -> None:
    """Invalidate one page of ``vma``'s mm in this CPU's TLB only: VALE1 + DSB NSH.

    Models: arm64 ``local_flush_tlb_page_nonotify()`` (v6.19).  Stale
    entries may remain on other CPUs.
    """
    _local_flush_tlb_page_nonotify_nosync(arch, vma.vm_mm, uaddr)
    arch.hw.dsb_op(DSB_NSH)


@cython.ccall
def local_flush_tlb_page(arch: Pgtable, vma: VmaLike, uaddr: i64) -> None:
    """Models: arm64 ``local_flush_tlb_page()`` (v6.19): the nonotify form (no MMU notifiers here)."""
    _local_flush_tlb_page_nonotify_nosync(arch, vma.vm_mm, uaddr)
    arch.hw.dsb_op(DSB_NSH)


@cython.ccall
def local_flush_tlb_contpte(arch: Pgtable, vma: VmaLike, addr: i64) -> None:
    """Invalidate the contiguous block holding ``addr`` in this CPU's TLB only.

    Models: arm64 ``local_flush_tlb_contpte()`` (v6.19; v7.2 spells it
    ``__flush_tlb_range(..., TLBF_NOWALKCACHE | TLBF_NOBROADCAST)``): DSB
    NSHST, ``__flush_tlb_range_op(vale1, ...)`` over CONT_PTES pages (one
    RVALE1 with FEAT_TLBIRANGE, else a VALE1 per page), DSB NSH.
    """
    addr = addr & ~(arch.CONT_PTE_SIZE - 1)
    arch.hw.dsb_op(DSB_NSHST)
    _flush_tlb_range_op(arch, TLBI_VALE1, addr, arch.CONT_PTES, arch.PAGE_SIZE, vma.vm_mm.space.asid, 3, True)
    arch.hw.dsb_op(DSB_NSH)


@cython.ccall
def _flush_tlb_range_op(
    arch: Pgtable,
    op: i64,
    start: i64,
    pages: i64,
    stride: i64,
    asid: i64,
    tlb_level: i64,
    tlbi_user: cython.bint,
) -> None:
    """Issue the TLBIs for ``pages`` pages from ``start``.

    Models: arm64 ``__flush_tlb_range_op()`` (v6.9+).  Without
    FEAT_TLBIRANGE: one op per ``stride``.  With it: a lone page gets a
    single op; otherwise one range op per SCALE from 3 down to 0, each
    covering as much as that scale can (at most 4 range ops + 1 single).
    ``op``: ``TLBI_VALE1IS``, ``TLBI_VAE1IS`` or the local ``TLBI_VALE1``
    (the range forms follow).
    """
    rop: i64 = TLBI_RVALE1IS if op == TLBI_VALE1IS else (TLBI_RVALE1 if op == TLBI_VALE1 else TLBI_RVAE1IS)
    page_shift: i64 = arch.PAGE_SHIFT
    ttl: i64 = _ttl(tlb_level)
    scale: i64 = 3
    num: i64
    covered: i64
    while pages > 0:
        if not arch.tlbirange or pages == 1:
            if tlbi_user:
                _tlbi(arch, op, asid, start, ttl)
            else:
                _tlbi_nouser(arch, op, asid, start, ttl)
            start += stride
            pages -= stride >> page_shift
            continue
        num = TLBI_RANGE_NUM(pages, scale)
        if num >= 0:
            if tlbi_user:
                _tlbi_range(arch, rop, asid, start, scale, num, ttl)
            else:
                _tlbi_range_nouser(arch, rop, asid, start, scale, num, ttl)
            covered = TLBI_RANGE_PAGES(num, scale)
            start += covered << page_shift
            pages -= covered
        scale -= 1


@cython.ccall
def _flush_tlb_range_nosync(
    arch: Pgtable, vma: VmaLike, start: i64, end: i64, stride: i64, last_level: cython.bint, tlb_level: i64
) -> None:
    """``__flush_tlb_range()`` without the trailing DSB ISH.

    Models: arm64 ``__flush_tlb_range_nosync()`` (v6.12).  Above
    MAX_DVM_OPS (= PTRS_PER_PTE) strides without FEAT_TLBIRANGE, or above
    MAX_TLBI_RANGE_PAGES with it, one ``flush_tlb_mm()`` is issued instead:
    not because it is faster but to bound the DVM traffic and the time
    spent (soft lockups).  ``last_level``: leaf-only VALE1IS (walk caches
    kept) instead of VAE1IS.
    """
    start = start // stride * stride
    end = -(-end // stride) * stride
    pages: i64 = (end - start) >> arch.PAGE_SHIFT
    max_dvm_ops: i64 = arch.PTRS_PER_PTE
    if (not arch.tlbirange and end - start >= max_dvm_ops * stride) or pages > MAX_TLBI_RANGE_PAGES:
        flush_tlb_mm(arch, vma.vm_mm)
        return
    arch.hw.dsb_op(DSB_ISHST)
    op: i64 = TLBI_VALE1IS if last_level else TLBI_VAE1IS
    _flush_tlb_range_op(arch, op, start, pages, stride, vma.vm_mm.space.asid, tlb_level, True)


@cython.ccall
def _flush_tlb_range(
    arch: Pgtable, vma: VmaLike, start: i64, end: i64, stride: i64, last_level: cython.bint, tlb_level: i64
) -> None:
    """Invalidate ``[start, end)`` of ``vma``'s mm on every CPU and wait for it.

    Models: arm64 ``__flush_tlb_range()``: ``__flush_tlb_range_nosync()`` +
    DSB ISH (also after the ``flush_tlb_mm()`` fallback, which has its own).

    Parameters: ``stride`` (unsigned long) the size of the leaf entries,
    ``last_level`` (bool) only leaf entries changed, ``tlb_level`` (int)
    the level of those leaves, TTL hint (3 = PTE, 2 = PMD block).
    """
    _flush_tlb_range_nosync(arch, vma, start, end, stride, last_level, tlb_level)
    arch.hw.dsb_op(DSB_ISH)


@cython.ccall
def flush_tlb_range(arch: Pgtable, vma: VmaLike, start: i64, end: i64) -> None:
    """Models: arm64 ``flush_tlb_range()``.

    Not leaf-only and no level hint: callers may be moving or collapsing
    page tables, so walk caches go too.
    """
    _flush_tlb_range(arch, vma, start, end, arch.PAGE_SIZE, False, TLBI_TTL_UNKNOWN)


@cython.ccall
def flush_pmd_tlb_range(arch: Pgtable, vma: VmaLike, start: i64, end: i64) -> None:
    """Models: arm64 ``flush_pmd_tlb_range()``: PMD stride, level 2."""
    _flush_tlb_range(arch, vma, start, end, arch.PMD_SIZE, False, 2)


@cython.ccall
@cython.exceptval(-1, check=True)
def tlb_get_level(tlb: GatherLike) -> i64:
    """The TTL level hint of a gather.  Models: arch/arm64/include/asm/tlb.h ``tlb_get_level()``."""
    if tlb.freed_tables:
        return 0  # TTL only describes leaf entries
    if tlb.cleared_ptes and not (tlb.cleared_pmds or tlb.cleared_puds):
        return 3
    if tlb.cleared_pmds and not (tlb.cleared_ptes or tlb.cleared_puds):
        return 2
    if tlb.cleared_puds and not (tlb.cleared_ptes or tlb.cleared_pmds):
        return 1
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def tlb_get_unmap_size(arch: Pgtable, tlb: GatherLike) -> i64:
    """The stride of a gather's flush.  Models: asm-generic/tlb.h ``tlb_get_unmap_size()``."""
    if tlb.cleared_ptes:
        return arch.PAGE_SIZE
    if tlb.cleared_pmds:
        return arch.PMD_SIZE
    if tlb.cleared_puds:
        return arch.PMD_SIZE << (arch.PAGE_SHIFT - 3)
    return arch.PAGE_SIZE


@cython.ccall
def tlb_flush(arch: Pgtable, tlb: GatherLike) -> None:
    """Flush what an mmu_gather collected.

    Models: arch/arm64/include/asm/tlb.h ``tlb_flush()``.  Tearing down a
    whole mm (``fullmm``) needs no range TLBI at all, because the ASID is
    never reused without invalidating it entirely; only freed page tables
    (walk caches) need ``flush_tlb_mm``.  Otherwise one
    ``__flush_tlb_range`` with the stride and level of what was cleared,
    leaf-only unless tables were freed.
    """
    last_level: cython.bint = not tlb.freed_tables
    if tlb.fullmm:
        if not last_level:
            flush_tlb_mm(arch, tlb.mm)
        return
    stride: i64 = tlb_get_unmap_size(arch, tlb)
    tlb_level: i64 = tlb_get_level(tlb)
    vma: VmaLike = TLB_FLUSH_VMA(tlb.mm, 0)
    _flush_tlb_range(arch, vma, tlb.start, tlb.end, stride, last_level, tlb_level)


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(TLBI_TTL_UNKNOWN=TLBI_TTL_UNKNOWN, MAX_TLBI_RANGE_PAGES=MAX_TLBI_RANGE_PAGES)
