"""A check at every syscall's return: no TLB entry outlives its translation.

Rule ``stale-tlb-at-return``; the scenario runner (``contpte run``, the
fuzzer, ``contpte check --bugs``) calls ``stale_tlb_at_return`` after every
step of a checked machine.  It visits every TLB entry of every CPU (a cost
that grows with the TLBs, not with what the step touched), so it is
compiled and reads the TLB's entry arrays in place (docs/INTERNALS.md).

Compiled (docs/core.md).
"""

from __future__ import annotations

from typing import Any

import cython

from ..errors import InvariantViolation

if not cython.compiled:
    from ..cdefs import i64, u64
    from ..hw.checker import RuleChecker
    from ..hw.format import DescriptorFormat
    from ..hw.hardware import Hardware
    from ..hw.tables import AddressSpace
    from ..hw.tlb import Tlb

__all__ = ["stale_tlb_at_return"]

_L2_BLOCK = cython.declare(i64, 1)


@cython.cfunc
@cython.exceptval(0, check=True)
def _memory_desc(hw: Hardware, space: AddressSpace, vpn: i64) -> u64:
    """The leaf descriptor memory holds for page ``vpn`` of ``space`` (0: none)."""
    shift: i64 = hw.pool.shift
    pmd_index: i64 = vpn >> shift
    v = space.pmds.get(pmd_index) if space.pmds else None
    if v is not None and hw.fmt.l2_kind(v) == _L2_BLOCK:
        return cython.cast(u64, v)
    s: i64 = space.pte_table(pmd_index)
    if s < 0:
        return 0
    d: u64 = hw.pool.e[(s << shift) | (vpn & ((cython.cast(i64, 1) << shift) - 1))]
    return d


@cython.ccall
def stale_tlb_at_return(m: Any) -> InvariantViolation | None:
    """A TLB entry that memory no longer grants, left when a syscall returns (``None``: none).

    Run after every step of a checked machine (``run_step``): rule
    ``stale-tlb-at-return``; returns the ``InvariantViolation``.

    The hardware checker's ``stale-tlb`` rule sees a stale entry only when
    a user access happens to use it, on the CPU that holds it, before
    something evicts it; a missing or short invalidation whose entry is
    never used passes.  Linux completes the invalidation of every
    translation it removed or downgraded before the syscall that did so
    returns (``tlb_finish_mmu``, ``flush_tlb_range``, ``flush_tlb_mm`` after
    fork, ``try_to_unmap_flush`` in reclaim); only upgrades (spurious
    faults) and the Access flag may stay stale.  So at every return, every
    entry of a live ASID must still be granted by memory: the same frames,
    valid, and, for an entry that lets the CPU write without a walk
    (writable-dirty), writable with some covered descriptor dirty (a
    contiguous block gathers its dirty state; writable-clean under FEAT_HAFDBS
    re-walks, so a writable-dirty entry over clean memory would lose the
    dirty state MADV_FREE and reclaim rely on).

    The same promise, independent of what the TLBs happen to hold (rule
    ``unflushed-at-return``, kept by the hardware checker): a CPU may cache
    any valid translation at any time, so every translation that a store
    removed or reduced during the step must have been reached by a TLBI
    before it returns, also where no access ever used it.
    """
    hw: Hardware = m.hw
    chk: RuleChecker | None = hw.checker
    if chk is None:
        return None
    owed = chk.take_unflushed()
    stale = _stale_entry(hw, chk)
    if stale is not None or owed is None:
        return stale
    va, old, level, owner = owed
    space = hw.spaces.get(owner)
    name = space.name if space is not None else f"asid {owner}"
    what = "level-3 translation" if level == 3 else "level-2 entry"
    return InvariantViolation(
        "unflushed-at-return",
        f"{name}: the {what} at {va:#x} (was {old:#018x}) was removed or reduced during the syscall and no "
        f"TLBI reached it before the syscall returned: any CPU that ran the ASID may still hold it",
        va,
        [
            int(old),
            int(_memory_desc(hw, space, va >> hw.page_shift)) if space is not None and level == 3 else 0,
        ],
    )


@cython.cfunc
def _stale_entry(hw: Hardware, chk: RuleChecker) -> InvariantViolation | None:
    """The first TLB entry of a live ASID that memory no longer grants (``stale-tlb-at-return``)."""
    fmt: DescriptorFormat = hw.fmt
    spaces: dict[int, Any] = hw.spaces
    space: AddressSpace | None
    t: Tlb
    cpu: i64
    k: i64
    n: i64
    ok: i64
    i: i64
    vbase: i64
    asid: i64
    last_asid: i64
    desc: u64
    dmask: u64 = fmt.dirty_mask
    dval: u64 = fmt.dirty_val
    found: cython.bint
    for cpu in range(hw.ncpus):
        t = hw.tlbs[cpu]
        if t.n == 0:
            continue
        last_asid = -1
        space = None
        k = t.lru_head
        while k >= 0:
            asid = t.e_asid[k]
            if asid != last_asid:
                last_asid = asid
                space = spaces.get(asid)
            if space is None:
                k = t.e_next[k]
                continue
            n = t.e_npages[k]
            vbase = t.e_vbase[k]
            desc = t.e_desc[k]
            ok = chk.tlb_use_ok(space, vbase, n, t.e_ptep[k], t.e_pfn[k], False)
            why = "memory no longer maps it"
            if ok == n and desc & fmt.user_bit and (desc & dmask) == dval:
                ok = chk.tlb_use_ok(space, vbase, n, t.e_ptep[k], t.e_pfn[k], True)
                why = "memory no longer grants write"
                if ok == n:
                    found = False
                    for i in range(n):
                        if (_memory_desc(hw, space, vbase + i) & dmask) == dval:
                            found = True
                            break
                    if not found:
                        ok = 0
                        why = "the entry is writable-dirty, memory is clean (a write would not mark it dirty)"
            if ok != n:
                va: i64 = (vbase + ok) << hw.page_shift
                d: u64 = _memory_desc(hw, space, vbase + ok)
                return InvariantViolation(
                    "stale-tlb-at-return",
                    f"{space.name}: CPU {cpu} still holds {t.entry(k)!r} at the syscall's return; at {va:#x} "
                    f"{why} (descriptor {d:#018x}): an invalidation was missing or short",
                    va,
                    [int(desc), int(d)],
                )
            k = t.e_next[k]
    return None
