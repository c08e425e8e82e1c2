"""Transparent contiguous PTEs: fold, unfold and the block-wide helpers.

Models: arch/arm64/mm/contpte.c (Linux v6.12).

Each function takes the backend (``arch``: the ``Pgtable`` of an arch with
contiguous blocks -- the model's ``Arm64Pgtable`` -- which holds the
geometry, the PTE format and the private ``__x`` helpers) first,
then the kernel's arguments in the kernel's order.  The loops over a block
are the C loops: they count the same descriptor loads, stores and atomics
(``pte.read``/``pte.write``/``pte.atomic``).

``contpte_convert()`` is the only function that repaints a block: every
fold and unfold goes through it.  Unfold counters are named after the
public function core-mm called (``contpte.unfold.set_ptes``,
``contpte.unfold.wrprotect_ptes``, ...), passed down as ``caller``.
``call.<symbol>`` counts each entry into a contpte.c function the way
ftrace would see it on a real kernel.

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

from ...counters import UNFOLD_CALLERS, counter
from ...errors import InvariantViolation, ModelUsageError

if not cython.compiled:
    from ...cdefs import i64, u64
    from ...counters import PTE_ATOMIC, PTE_READ, count
    from ...hw.tables import PtePool
    from ..pgtable import MmLike, Pgtable, VmaLike
    from . import tlbflush
    from .pgtable_prot import PTE_AF, PTE_CONT, PTE_DIRTY, PTE_RDONLY, PTE_VALID, PTE_WRITE, U64_MAX

__all__ = [
    "mm_is_user",
    "contpte_align_down",
    "contpte_try_fold",
    "contpte_try_unfold",
    "contpte_try_unfold_partial",
    "contpte_convert",
    "_contpte_try_fold",
    "_contpte_try_unfold",
    "contpte_ptep_get",
    "contpte_ptep_get_lockless",
    "contpte_set_ptes",
    "contpte_clear_full_ptes",
    "contpte_get_and_clear_full_ptes",
    "contpte_align_addr_ptep",
    "contpte_test_and_clear_young_ptes",
    "contpte_clear_flush_young_ptes",
    "contpte_wrprotect_ptes",
    "contpte_clear_young_dirty_ptes",
    "contpte_ptep_set_access_flags",
    "UNFOLD_CALLERS",
]


FOLD = cython.declare(i64, counter("contpte.fold"))
#: The unfold counter of each public function that can unfold a block
#: (``contpte.unfold.<caller>``; the callers are declared with the counters).
_UNFOLD_IDS: dict[str, int] = {c: counter(f"contpte.unfold.{c}") for c in UNFOLD_CALLERS}
CONVERT = cython.declare(i64, counter("contpte.convert"))
LOCKLESS_RETRY = cython.declare(i64, counter("contpte.lockless_retry"))


def _call(symbol: str) -> int:
    return counter(f"call.{symbol}")


CALL_CONVERT = cython.declare(i64, _call("contpte_convert"))
CALL_TRY_FOLD = cython.declare(i64, _call("__contpte_try_fold"))
CALL_TRY_UNFOLD = cython.declare(i64, _call("__contpte_try_unfold"))
CALL_UNFOLD_PARTIAL = cython.declare(i64, _call("contpte_try_unfold_partial"))
CALL_SET_PTES = cython.declare(i64, _call("contpte_set_ptes"))
CALL_CLEAR_FULL = cython.declare(i64, _call("contpte_clear_full_ptes"))
CALL_GET_AND_CLEAR_FULL = cython.declare(i64, _call("contpte_get_and_clear_full_ptes"))
CALL_WRPROTECT = cython.declare(i64, _call("contpte_wrprotect_ptes"))
CALL_PTEP_GET = cython.declare(i64, _call("contpte_ptep_get"))
CALL_PTEP_GET_LOCKLESS = cython.declare(i64, _call("contpte_ptep_get_lockless"))
CALL_TEST_AND_CLEAR_YOUNG = cython.declare(i64, _call("contpte_test_and_clear_young_ptes"))
CALL_CLEAR_FLUSH_YOUNG = cython.declare(i64, _call("contpte_clear_flush_young_ptes"))
CALL_CLEAR_YOUNG_DIRTY = cython.declare(i64, _call("contpte_clear_young_dirty_ptes"))
CALL_SET_ACCESS_FLAGS = cython.declare(i64, _call("contpte_ptep_set_access_flags"))

_NOT_CONT = cython.declare(u64, U64_MAX & ~PTE_CONT)
_NOT_AF = cython.declare(u64, U64_MAX & ~PTE_AF)
_NOT_AF_DIRTY = cython.declare(u64, U64_MAX & ~(PTE_AF | PTE_DIRTY))
_NOT_RDONLY = cython.declare(u64, U64_MAX & ~PTE_RDONLY)
#: The bits ``__ptep_set_access_flags()`` consumes from its entry.
_ACCESS_CMP = cython.declare(u64, PTE_RDONLY | PTE_AF | PTE_WRITE | PTE_DIRTY)


@cython.ccall
@cython.exceptval(-1, check=True)
def mm_is_user(mm: MmLike) -> cython.bint:
    """False for init_mm and the EFI mm (the model marks them ``is_kernel_mm``).

    Kernel mappings never get PTE_CONT dynamically: the BBM window of a
    conversion would fault, which user space tolerates (serialised on the
    PTL) but the kernel cannot.
    """
    return not mm.is_kernel_mm


@cython.ccall
@cython.exceptval(-1, check=True)
def contpte_align_down(arch: Pgtable, ptep: i64) -> i64:
    """The first entry of ``ptep``'s block."""
    return ptep & ~(arch.CONT_PTES - 1)


# ----------------------------------------------------------------------
# The repaint.
# ----------------------------------------------------------------------
@cython.ccall
def contpte_convert(arch: Pgtable, mm: MmLike, addr: i64, ptep: i64, pte: u64) -> None:
    """Repaint ``ptep``'s whole block from ``pte`` (PTE_CONT set: fold; clear: unfold).

    Models: arch/arm64/mm/contpte.c ``contpte_convert()``.

    Break-before-make: each entry is atomically swapped to 0 (so a
    hardware access/dirty update cannot be lost) and its access/dirty
    state ORed into the new PTE; the block is invalidated from every TLB
    (``__flush_tlb_range``, leaf only, level 3); then all entries are
    written with consecutive pfns.  Every member ends with the block's
    ORed access/dirty state.  With ``bbml2_noabort`` (v6.17+) the
    intermediate TLBI is skipped: BBML2 hardware returns one of the cached
    translations, never an amalgam, and the caller's later TLBI of the
    changed page cleans up.

    Context: PTL held; user mm.
    """
    count(arch.counters, CALL_CONVERT, 1)
    count(arch.counters, CONVERT, 1)
    pool: PtePool = arch.pool
    cp: i64 = arch.CONT_PTES
    start_ptep: i64 = contpte_align_down(arch, ptep)
    start_addr: i64 = addr & ~(arch.CONT_PTE_SIZE - 1)
    pfn: i64 = arch.pte_pfn(pte) & ~(cp - 1)
    pte = arch.pfn_pte(pfn, arch.pte_pgprot(pte))

    # Break: cp x __ptep_get_and_clear() (xchg), gathering A/D as we go.
    pte = arch._gather_young_dirty(pte, start_ptep, cp)
    if arch.bug("contpte_fold_without_bbm"):
        # Bug catalog: repaint in place, no break and no TLBI.
        arch._set_ptes(mm, start_addr, start_ptep, pte, cp)
        return
    i: i64
    for i in range(start_ptep, start_ptep + cp):
        pool.xchg(i, 0)

    if not arch.bbml2_noabort:
        vma: VmaLike = tlbflush.TLB_FLUSH_VMA(mm, 0)
        tlbflush._flush_tlb_range(
            arch, vma, start_addr, start_addr + arch.CONT_PTE_SIZE, arch.PAGE_SIZE, True, 3
        )

    # Make.
    arch._set_ptes(mm, start_addr, start_ptep, pte, cp)


# ----------------------------------------------------------------------
# Fold.
# ----------------------------------------------------------------------
@cython.ccall
def contpte_try_fold(arch: Pgtable, mm: MmLike, addr: i64, ptep: i64, pte: u64) -> None:
    """Fold ``ptep``'s block if ``pte`` was just written as its last entry.

    Models: arm64 pgtable.h ``contpte_try_fold()`` (always inline).  Core-mm
    mostly writes low to high, so the last entry (VA and PA both at index
    CONT_PTES-1) is the moment to check.  Special mappings have no folio
    and never fold.

    Context: PTL held.
    """
    contmask: i64 = arch.CONT_PTES - 1
    if (addr >> arch.PAGE_SHIFT) & contmask != contmask:
        return
    if arch.pte_pfn(pte) & contmask == contmask and arch.pte_valid(pte) and not arch.pte_cont(pte):
        if not arch.pte_special(pte):
            _contpte_try_fold(arch, mm, addr, ptep, pte)


@cython.ccall
def _contpte_try_fold(arch: Pgtable, mm: MmLike, addr: i64, ptep: i64, pte: u64) -> None:
    """Fold the block if one folio covers it and all entries are foldable.

    Models: arch/arm64/mm/contpte.c ``__contpte_try_fold()``.  The folio
    comes from the pfn (``arch.folio_first_pfn``), assuming it is mapped
    linearly around ``addr``; the pfn-contiguity check then rejects any
    other layout.  Every entry must equal ``pfn_pte(base + i, prot)``
    after mkold/mkclean (``pte_same``, so RDONLY is ignored): valid,
    consecutive pfns from an aligned base, identical permissions, none
    CONT already.  Access/dirty may differ; the fold ORs them.

    Context: PTL held.
    """
    count(arch.counters, CALL_TRY_FOLD, 1)
    if not mm_is_user(mm):
        return
    pfn: i64 = arch.pte_pfn(pte)
    first_pfn: i64 = arch.folio_first_pfn(pfn)
    nr_pages: i64 = arch.folio_nr_pages_of(first_pfn)
    folio_start: i64 = addr - (pfn - first_pfn) * arch.PAGE_SIZE
    folio_end: i64 = folio_start + nr_pages * arch.PAGE_SIZE
    cont_start: i64 = addr & ~(arch.CONT_PTE_SIZE - 1)
    cont_end: i64 = cont_start + arch.CONT_PTE_SIZE
    if folio_start > cont_start or folio_end < cont_end:
        return

    pool: PtePool = arch.pool
    cp: i64 = arch.CONT_PTES
    base: i64 = pfn & ~(cp - 1)
    prot: u64 = arch.pte_pgprot(arch.pte_mkold(arch.pte_mkclean(pte)))
    expected: u64 = arch.pfn_pte(base, prot)
    step: u64 = cython.cast(u64, 1) << arch.PAGE_SHIFT
    start: i64 = contpte_align_down(arch, ptep)
    i: i64
    sub: u64
    for i in range(start, start + cp):
        # pte_same(pte_mkold(pte_mkclean(__ptep_get(ptep))), expected): RDONLY
        # ignored on present PTEs; ``expected`` is valid, so a non-present
        # entry differs in bit 0 whatever RDONLY says.
        sub = (pool.load(i) & _NOT_AF_DIRTY) | PTE_RDONLY
        if (sub & _NOT_RDONLY) != (expected & _NOT_RDONLY):
            return  # the C loop stops at the first mismatch
        expected += step
    count(arch.counters, FOLD, 1)
    contpte_convert(arch, mm, addr, ptep, arch.pte_mkcont(pte))


# ----------------------------------------------------------------------
# Unfold.
# ----------------------------------------------------------------------
@cython.ccall
def contpte_try_unfold(
    arch: Pgtable,
    mm: MmLike,
    addr: i64,
    ptep: i64,
    pte: u64,
    caller: str,
    traced: cython.bint = True,
) -> None:
    """Unfold ``ptep``'s block if ``pte`` (its raw value) is valid and CONT.

    Models: arm64 pgtable.h ``contpte_try_unfold()`` (always inline).
    ``caller`` (model only) is the public function core-mm called;
    ``traced`` as for ``_contpte_try_unfold()``.

    Context: PTL held.
    """
    if (pte & (PTE_VALID | PTE_CONT)) == (PTE_VALID | PTE_CONT):
        _contpte_try_unfold(arch, mm, addr, ptep, pte, caller, traced)


@cython.ccall
def _contpte_try_unfold(
    arch: Pgtable,
    mm: MmLike,
    addr: i64,
    ptep: i64,
    pte: u64,
    caller: str,
    traced: cython.bint = True,
) -> None:
    """Repaint a folded block without PTE_CONT (one block TLBI).

    Models: arch/arm64/mm/contpte.c ``__contpte_try_unfold()``.

    ``traced`` False: the call comes from inside contpte.c
    (``contpte_try_unfold_partial()``, ``contpte_ptep_set_access_flags()``),
    where GCC inlines this small function (Debian's 6.12 arm64 build calls
    ``contpte_convert`` straight from both), so ftrace sees no entry and
    ``call.__contpte_try_unfold`` is not counted.  The unfold itself is.

    Context: PTL held; ``pte`` is valid and CONT.
    """
    if traced:
        count(arch.counters, CALL_TRY_UNFOLD, 1)
    if not mm_is_user(mm):
        return
    cid: i64 = _UNFOLD_IDS.get(caller, -1)
    if cid < 0:
        raise ModelUsageError(f"contpte unfold by {caller!r}: not one of UNFOLD_CALLERS")
    count(arch.counters, cid, 1)
    contpte_convert(arch, mm, addr, ptep, pte & _NOT_CONT)


@cython.ccall
def contpte_try_unfold_partial(arch: Pgtable, mm: MmLike, addr: i64, ptep: i64, nr: i64, caller: str) -> None:
    """Unfold the blocks that ``[ptep, ptep + nr)`` covers only partly (head and tail).

    Models: arch/arm64/mm/contpte.c ``contpte_try_unfold_partial()``.
    Fully covered blocks stay folded.

    Context: PTL held.
    """
    count(arch.counters, CALL_UNFOLD_PARTIAL, 1)
    cp: i64 = arch.CONT_PTES
    if ptep & (cp - 1) or nr < cp:
        contpte_try_unfold(arch, mm, addr, ptep, arch._ptep_get(ptep), caller, False)
    last_addr: i64
    last_ptep: i64
    if (ptep + nr) & (cp - 1):
        last_addr = addr + arch.PAGE_SIZE * (nr - 1)
        last_ptep = ptep + (nr - 1)
        contpte_try_unfold(arch, mm, last_addr, last_ptep, arch._ptep_get(last_ptep), caller, False)


# ----------------------------------------------------------------------
# Getters.
# ----------------------------------------------------------------------
@cython.ccall
@cython.exceptval(-1, check=True)
def contpte_ptep_get(arch: Pgtable, ptep: i64, orig_pte: u64) -> u64:
    """``orig_pte`` with the access/dirty state of its whole block ORed in.

    Models: arch/arm64/mm/contpte.c ``contpte_ptep_get()``.  Hardware may
    have set AF or dirty on any member, so the block's state is the OR.
    v6.12 reads all CONT_PTES entries; with ``ptep_get_early_exit`` (v6.17)
    the loop stops as soon as it has seen both a dirty and a young entry:
    at the first dirty entry it looks (from that same entry, read again)
    only for a young one, at the first young one (from the next) only for
    a dirty one.  The loads counted (``pte.read``) are the C loop's.

    Context: PTL held, so the block cannot change under us.
    """
    count(arch.counters, CALL_PTEP_GET, 1)
    if arch.bug("ptep_get_no_gather"):
        return orig_pte  # bug catalog: only the addressed entry's A/D
    cp: i64 = arch.CONT_PTES
    start: i64 = contpte_align_down(arch, ptep)
    if not arch.ptep_get_early_exit:
        count(arch.counters, PTE_READ, cp)
        return arch._gather_young_dirty(orig_pte, start, cp)
    pool: PtePool = arch.pool
    i: i64 = 0
    pte: u64
    while i < cp:
        pte = pool.load(start + i)
        if arch.pte_dirty(pte):
            orig_pte = arch.pte_mkdirty(orig_pte)
            while i < cp:
                if pool.load(start + i) & PTE_AF:
                    orig_pte |= PTE_AF
                    break
                i += 1
            break
        if pte & PTE_AF:
            orig_pte |= PTE_AF
            i += 1
            while i < cp:
                if arch.pte_dirty(pool.load(start + i)):
                    orig_pte = arch.pte_mkdirty(orig_pte)
                    break
                i += 1
            break
        i += 1
    return orig_pte


@cython.cfunc
@cython.exceptval(-1, check=True)
def _contpte_consistent(arch: Pgtable, pte: u64, pfn: i64, orig_prot: u64) -> cython.bint:
    """Models: ``contpte_is_consistent()``: valid+CONT, the expected pfn, the block's prot."""
    return (
        (pte & (PTE_VALID | PTE_CONT)) == (PTE_VALID | PTE_CONT)
        and arch.pte_pfn(pte) == pfn
        and arch.pte_pgprot((pte & _NOT_AF_DIRTY) | PTE_RDONLY) == orig_prot
    )


@cython.cfunc
def _lockless_retry(arch: Pgtable, start: i64) -> None:
    pool: PtePool = arch.pool
    raise InvariantViolation(
        "contig-consistency",
        "contpte_ptep_get_lockless: inconsistent contiguous block (would retry forever)",
        pool.va(start),
        [pool.peek(j) for j in range(start, start + arch.CONT_PTES)],
    )


@cython.ccall
@cython.exceptval(-1, check=True)
def contpte_ptep_get_lockless(arch: Pgtable, orig_ptep: i64) -> u64:
    """Like ``contpte_ptep_get()`` but for readers without the PTL.

    Models: arch/arm64/mm/contpte.c ``contpte_ptep_get_lockless()``.  The
    kernel restarts while any member it reads is not valid+CONT, has the
    wrong pfn or a different prot (ignoring A/D): a fold or unfold is in
    flight.  Between its read of ``*orig_ptep`` and its reads of the block
    another CPU may run (``hw.yield_hook``, a scheduler: another thread's
    fault or MADV_DONTNEED unfolding the block); a block found inconsistent
    after that is re-read (``goto retry``, counted in
    ``contpte.lockless_retry``).  Found inconsistent with nobody having run
    in between, it is a persistent misprogramming on which the kernel would
    spin forever: raise instead.  ``ptep_get_early_exit`` (v6.17) stops
    reading as ``contpte_ptep_get()`` does (members after that are not
    checked).

    Context: no PTL.
    """
    count(arch.counters, CALL_PTEP_GET_LOCKLESS, 1)
    orig_pte: u64
    orig_prot: u64
    start: i64
    pfn0: i64
    got: u64
    preempted: cython.bint
    while True:  # retry:
        orig_pte = arch._ptep_get(orig_ptep)
        if (orig_pte & (PTE_VALID | PTE_CONT)) != (PTE_VALID | PTE_CONT):
            return orig_pte
        orig_prot = arch.pte_pgprot(arch.pte_mkold(arch.pte_mkclean(orig_pte)))
        start = contpte_align_down(arch, orig_ptep)
        pfn0 = arch.pte_pfn(orig_pte) - (orig_ptep - start)
        preempted = False
        if arch.hw.yield_hook is not None:
            preempted = bool(arch.hw.yield_hook("contpte_ptep_get_lockless", arch.pool.va(orig_ptep)))
        got = _lockless_gather(arch, orig_pte, start, pfn0, orig_prot)
        if got != 0:
            return got
        if not preempted:
            _lockless_retry(arch, start)
        count(arch.counters, LOCKLESS_RETRY, 1)


@cython.cfunc
@cython.exceptval(-1, check=True)
def _lockless_gather(arch: Pgtable, orig_pte: u64, start: i64, pfn0: i64, orig_prot: u64) -> u64:
    """The block reads of ``contpte_ptep_get_lockless()``: the gathered entry, or 0 (inconsistent: retry)."""
    pool: PtePool = arch.pool
    cp: i64 = arch.CONT_PTES
    i: i64
    v: u64
    if not arch.ptep_get_early_exit:
        count(arch.counters, PTE_READ, cp)
        for i in range(cp):
            if not _contpte_consistent(arch, pool.peek(start + i), pfn0 + i, orig_prot):
                return 0
        return arch._gather_young_dirty(orig_pte, start, cp)
    i = 0
    while i < cp:
        v = pool.load(start + i)
        if not _contpte_consistent(arch, v, pfn0 + i, orig_prot):
            return 0
        if arch.pte_dirty(v):
            orig_pte = arch.pte_mkdirty(orig_pte)
            while i < cp:
                v = pool.load(start + i)
                if not _contpte_consistent(arch, v, pfn0 + i, orig_prot):
                    return 0
                if v & PTE_AF:
                    orig_pte |= PTE_AF
                    break
                i += 1
            break
        if v & PTE_AF:
            orig_pte |= PTE_AF
            i += 1
            while i < cp:
                v = pool.load(start + i)
                if not _contpte_consistent(arch, v, pfn0 + i, orig_prot):
                    return 0
                if arch.pte_dirty(v):
                    orig_pte = arch.pte_mkdirty(orig_pte)
                    break
                i += 1
            break
        i += 1
    return orig_pte


# ----------------------------------------------------------------------
# Batch setters.
# ----------------------------------------------------------------------
@cython.ccall
def contpte_set_ptes(arch: Pgtable, mm: MmLike, addr: i64, ptep: i64, pte: u64, nr: i64) -> None:
    """Map ``nr`` pages, setting PTE_CONT on every whole, VA- and PA-aligned block.

    Models: arch/arm64/mm/contpte.c ``contpte_set_ptes()``.  The set_ptes()
    contract says all ``nr`` entries are none before, so nothing needs
    unfolding or invalidating: no TLBI.

    Context: PTL held; nr > 1; one folio; one PMD.
    """
    count(arch.counters, CALL_SET_PTES, 1)
    if nr == 1:
        arch.VM_WARN_ON(True, "contpte_set_ptes with nr == 1", addr, [pte])
    if not mm_is_user(mm):
        arch._set_ptes(mm, addr, ptep, pte, nr)
        return
    end: i64 = addr + (nr << arch.PAGE_SHIFT)
    pfn: i64 = arch.pte_pfn(pte)
    prot: u64 = arch.pte_pgprot(pte)
    size: i64 = arch.CONT_PTE_SIZE
    boundary: i64
    nxt: i64
    n: i64
    p: u64
    while True:
        boundary = (addr + size) & ~(size - 1)
        nxt = boundary if boundary - 1 < end - 1 else end
        n = (nxt - addr) >> arch.PAGE_SHIFT
        p = arch.pfn_pte(pfn, prot)
        if ((addr | nxt | (pfn << arch.PAGE_SHIFT)) & (size - 1)) == 0:
            p = arch.pte_mkcont(p)
        else:
            p &= _NOT_CONT
        arch._set_ptes(mm, addr, ptep, p, n)
        addr = nxt
        ptep += n
        pfn += n
        if addr == end:
            break


@cython.ccall
def contpte_clear_full_ptes(
    arch: Pgtable, mm: MmLike, addr: i64, ptep: i64, nr: i64, full: cython.bint
) -> None:
    """Clear ``nr`` PTEs, unfolding only partly covered blocks; no TLBI.

    Models: arch/arm64/mm/contpte.c ``contpte_clear_full_ptes()``.

    Context: PTL held; one folio; one PMD.
    """
    count(arch.counters, CALL_CLEAR_FULL, 1)
    contpte_try_unfold_partial(arch, mm, addr, ptep, nr, "clear_full_ptes")
    arch._clear_full_ptes(mm, addr, ptep, nr, full)


@cython.ccall
@cython.exceptval(-1, check=True)
def contpte_get_and_clear_full_ptes(
    arch: Pgtable,
    mm: MmLike,
    addr: i64,
    ptep: i64,
    nr: i64,
    full: cython.bint,
    caller: str = "get_and_clear_full_ptes",
) -> u64:
    """Like ``contpte_clear_full_ptes()``, returning the first PTE with all A/D ORed.

    Models: arch/arm64/mm/contpte.c ``contpte_get_and_clear_full_ptes()``.
    ``caller`` (model only) names the unfold counter: v6.17's
    ``modify_prot_start_ptes()`` comes here too.

    Context: PTL held; one folio; one PMD.
    """
    count(arch.counters, CALL_GET_AND_CLEAR_FULL, 1)
    contpte_try_unfold_partial(arch, mm, addr, ptep, nr, caller)
    return arch._get_and_clear_full_ptes(mm, addr, ptep, nr, full)


# ----------------------------------------------------------------------
# Access/dirty and write-protect: in place, no unfold.
# ----------------------------------------------------------------------
@cython.ccall
def contpte_align_addr_ptep(arch: Pgtable, start: i64, end: i64, ptep: i64, nr: i64) -> tuple[i64, i64, i64]:
    """Widen ``[start, end)`` of ``nr`` PTEs to whole blocks at a folded end.

    Models: arch/arm64/mm/contpte.c ``contpte_align_addr_ptep()`` (v7.0+;
    the same widening ``contpte_clear_young_dirty_ptes()`` does in place):
    the end is rounded up if the last PTE is folded, the start (and
    ``ptep``) down if the first is.  Returns ``(start, end, ptep)``.

    Context: the ``nr`` PTEs map consecutive pages of one large folio in
    one VMA and one page table.
    """
    mask: i64 = arch.CONT_PTE_SIZE - 1
    if arch._ptep_get(ptep + (nr - 1)) & PTE_CONT:
        end = (end + mask) & ~mask
    if arch._ptep_get(ptep) & PTE_CONT:
        start &= ~mask
        ptep = contpte_align_down(arch, ptep)
    return (start, end, ptep)


@cython.ccall
@cython.exceptval(-1, check=True)
def contpte_test_and_clear_young_ptes(
    arch: Pgtable, vma: VmaLike, addr: i64, ptep: i64, nr: i64
) -> cython.bint:
    """Clear AF on ``nr`` PTEs widened to whole blocks; True if any was young.

    Models: arch/arm64/mm/contpte.c ``contpte_test_and_clear_young_ptes()``
    (v7.0+), v6.12's ``contpte_ptep_test_and_clear_young()`` being the
    ``nr == 1`` case (one PTE of a folded block: the whole block).  Core-mm
    tracks access per folio and a block lies in one folio, so clearing the
    whole block is allowed and avoids an unfold.  ``nr`` > 1 only from
    ``clear_flush_young_ptes()`` (``young_ptes_batch``, v7.0).

    Context: PTL held; the ``nr`` PTEs map consecutive pages of one large
    folio in one VMA and one page table.
    """
    count(arch.counters, CALL_TEST_AND_CLEAR_YOUNG, 1)
    pool: PtePool = arch.pool
    start: i64
    end: i64
    first: i64
    start, end, first = contpte_align_addr_ptep(arch, addr, addr + nr * arch.PAGE_SIZE, ptep, nr)
    young: cython.bint = False
    i: i64
    old: u64
    for i in range(first, first + (end - start) // arch.PAGE_SIZE):
        old = pool.load(i)
        young = young or (old & PTE_AF) != 0
        count(arch.counters, PTE_ATOMIC, 1)
        pool.store(i, old & _NOT_AF)
    return young


@cython.ccall
@cython.exceptval(-1, check=True)
def contpte_clear_flush_young_ptes(arch: Pgtable, vma: VmaLike, addr: i64, ptep: i64, nr: i64) -> cython.bint:
    """Clear AF on ``nr`` PTEs (whole blocks) and, if any was young, one nosync flush of them.

    Models: arch/arm64/mm/contpte.c ``contpte_clear_flush_young_ptes()``
    (v7.0+), v6.12's ``contpte_ptep_clear_flush_young()`` being the
    ``nr == 1`` case (a flush of the block).  No DSB for the same reason as
    ``__ptep_clear_flush_young()``: at worst a hot page gets aged, until the
    next context switch's DSB.

    Context: PTL held; as ``contpte_test_and_clear_young_ptes()``.
    """
    count(arch.counters, CALL_CLEAR_FLUSH_YOUNG, 1)
    young: cython.bint = contpte_test_and_clear_young_ptes(arch, vma, addr, ptep, nr)
    start: i64
    end: i64
    if young:
        start, end, _ = contpte_align_addr_ptep(arch, addr, addr + nr * arch.PAGE_SIZE, ptep, nr)
        tlbflush._flush_tlb_range_nosync(arch, vma, start, end, arch.PAGE_SIZE, True, 3)
    return young


@cython.ccall
def contpte_wrprotect_ptes(arch: Pgtable, mm: MmLike, addr: i64, ptep: i64, nr: i64) -> None:
    """Write-protect ``nr`` PTEs, unfolding only partly covered blocks.

    Models: arch/arm64/mm/contpte.c ``contpte_wrprotect_ptes()``.  Whole
    blocks are write-protected in place with no TLBI: until the later
    mmu_gather/fork flush the page may or may not act read-only, and after
    it, it is (Arm ARM "Misprogramming the Contiguous bit", tightened for
    Linux).  A block write-protected on only a subset would stay
    unpredictable after the flush, so partial blocks unfold.

    Context: PTL held; one folio; one PMD.
    """
    count(arch.counters, CALL_WRPROTECT, 1)
    if not arch.bug("wrprotect_partial_block_no_unfold"):
        contpte_try_unfold_partial(arch, mm, addr, ptep, nr, "wrprotect_ptes")
    arch._wrprotect_ptes(mm, addr, ptep, nr)


@cython.ccall
def contpte_clear_young_dirty_ptes(
    arch: Pgtable, vma: VmaLike, addr: i64, ptep: i64, nr: i64, flags: i64
) -> None:
    """Clear access and/or dirty on ``nr`` PTEs, widened to whole blocks at the ends.

    Models: arch/arm64/mm/contpte.c ``contpte_clear_young_dirty_ptes()``
    (MADV_FREE).  Clearing A/D with PTE_CONT set is architecturally safe,
    and core-mm tracks A/D per folio, so no unfold.

    Context: PTL held; one folio; one PMD.
    """
    count(arch.counters, CALL_CLEAR_YOUNG_DIRTY, 1)
    start: i64 = addr
    end: i64 = start + nr * arch.PAGE_SIZE
    mask: i64 = arch.CONT_PTE_SIZE - 1
    if arch._ptep_get(ptep + (nr - 1)) & PTE_CONT:
        end = (end + mask) & ~mask
    if arch._ptep_get(ptep) & PTE_CONT:
        start &= ~mask
        ptep = contpte_align_down(arch, ptep)
    arch._clear_young_dirty_ptes(vma, start, ptep, (end - start) // arch.PAGE_SIZE, flags)


@cython.cfunc
@cython.exceptval(-1, check=True)
def _contpte_all_subptes_match_access_flags(arch: Pgtable, ptep: i64, entry: u64) -> cython.bint:
    """Does every member already have ``entry``'s RDONLY/AF/WRITE/DIRTY bits?

    Models: arch/arm64/mm/contpte.c ``contpte_all_subptes_match_access_flags()``
    (v7.0): raw loads, up to the first mismatch.
    """
    pool: PtePool = arch.pool
    start: i64 = contpte_align_down(arch, ptep)
    want: u64 = entry & _ACCESS_CMP
    i: i64 = start
    while i < start + arch.CONT_PTES:
        if (pool.load(i) & _ACCESS_CMP) != want:
            return False
        i += 1
    return True


@cython.ccall
@cython.exceptval(-1, check=True)
def contpte_ptep_set_access_flags(
    arch: Pgtable, vma: VmaLike, addr: i64, ptep: i64, entry: u64, dirty: cython.bint
) -> cython.bint:
    """Fault fix-up on a folded block; True if anything changed.

    Models: arch/arm64/mm/contpte.c ``contpte_ptep_set_access_flags()``.
    v6.12: the no-op test compares ``entry`` with the *gathered* block PTE
    (``ptep_get()``), so an access/dirty bit that the hardware set on a
    sibling makes the fault look already fixed; a walker that evaluates
    each descriptor on its own (a CPU without hardware dirty management,
    an SMMU without HTTU) then faults on the unchanged member forever.
    With ``access_flags_subptes`` (v7.0, commit 97c5550b7631) it is a
    no-op only if every member already has ``entry``'s RDONLY/AF/WRITE/
    DIRTY bits, and the write-bit test uses the raw target PTE.  Otherwise,
    if the write bit is unchanged, the access flags are set on every member
    (software A/D management would otherwise fault on each sibling) and,
    if ``dirty``, the block is flushed once (``tlbi_nobroadcast``, v6.19:
    ``local_flush_tlb_contpte()``, this CPU only).  If the write bit changes
    (e.g. reuse after CoW), the block unfolds first.  Nothing refolds here.

    Context: PTL held; ``entry`` has no PTE_CONT.
    """
    count(arch.counters, CALL_SET_ACCESS_FLAGS, 1)
    orig_pte: u64
    if arch.access_flags_subptes:
        if _contpte_all_subptes_match_access_flags(arch, ptep, entry):
            return False
        orig_pte = arch._ptep_get(ptep) & _NOT_CONT
    else:
        orig_pte = arch.ptep_get(ptep) & _NOT_CONT
        if orig_pte == entry:
            return False
    start_ptep: i64
    start_addr: i64
    if arch.pte_write(orig_pte) == arch.pte_write(entry):
        start_ptep = contpte_align_down(arch, ptep)
        start_addr = addr & ~(arch.CONT_PTE_SIZE - 1)
        # ``entry`` is not advanced per member: only its access bits are used.
        arch._ptep_set_access_flags_block(vma, start_ptep, arch.CONT_PTES, entry)
        if dirty:
            if arch.tlbi_nobroadcast:
                tlbflush.local_flush_tlb_contpte(arch, vma, start_addr)
            else:
                tlbflush._flush_tlb_range(
                    arch, vma, start_addr, start_addr + arch.CONT_PTE_SIZE, arch.PAGE_SIZE, True, 3
                )
    else:
        _contpte_try_unfold(arch, vma.vm_mm, addr, ptep, orig_pte, "ptep_set_access_flags", False)
        arch._ptep_set_access_flags(vma, addr, ptep, entry, dirty)
    return True


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        FOLD=FOLD,
        CONVERT=CONVERT,
        CALL_CONVERT=CALL_CONVERT,
        CALL_TRY_FOLD=CALL_TRY_FOLD,
        CALL_TRY_UNFOLD=CALL_TRY_UNFOLD,
        CALL_UNFOLD_PARTIAL=CALL_UNFOLD_PARTIAL,
        CALL_SET_PTES=CALL_SET_PTES,
        CALL_CLEAR_FULL=CALL_CLEAR_FULL,
        CALL_GET_AND_CLEAR_FULL=CALL_GET_AND_CLEAR_FULL,
        CALL_WRPROTECT=CALL_WRPROTECT,
        CALL_PTEP_GET=CALL_PTEP_GET,
        CALL_PTEP_GET_LOCKLESS=CALL_PTEP_GET_LOCKLESS,
        CALL_TEST_AND_CLEAR_YOUNG=CALL_TEST_AND_CLEAR_YOUNG,
        CALL_CLEAR_FLUSH_YOUNG=CALL_CLEAR_FLUSH_YOUNG,
        CALL_CLEAR_YOUNG_DIRTY=CALL_CLEAR_YOUNG_DIRTY,
        CALL_SET_ACCESS_FLAGS=CALL_SET_ACCESS_FLAGS,
    )
