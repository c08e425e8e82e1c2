"""A check at every syscall's return: no TLB entry outlives its translation.

Rule ``stale-tlb-at-return``; the scenario runner (``contpte run``, the
fuzzer, ``contpte check --bugs``) calls ``stale_tlb_at_return`` after every
step of a checked machine.  Not compiled: it walks every TLB entry (a cost
that grows with the TLBs, not with what the step touched; see docs/INTERNALS.md).
"""

from __future__ import annotations

from typing import Any

from ..errors import InvariantViolation

__all__ = ["stale_tlb_at_return"]


def _memory_desc(hw: Any, space: Any, vpn: int) -> int:
    """The leaf descriptor memory holds for page ``vpn`` of ``space`` (0: none)."""
    fmt = hw.fmt
    chk = hw.checker
    pmd_index = vpn >> chk.shift
    v = space.pmds.get(pmd_index) if space.pmds else None
    if v is not None and fmt.l2_kind(v) == 1:  # L2_BLOCK
        return int(v)
    s = space.pte_table(pmd_index)
    if s < 0:
        return 0
    return int(hw.pool.e[(s << chk.shift) | (vpn & (chk.ptrs - 1))])


def stale_tlb_at_return(m: Any) -> InvariantViolation | None:
    """A TLB entry that memory no longer grants, left when a syscall returns (``None``: none).

    Run after every step of a checked machine (``run_step``): rule
    ``stale-tlb-at-return``.

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
    """
    hw = m.hw
    chk = hw.checker
    if chk is None:
        return None
    fmt = hw.fmt
    for cpu, t in enumerate(hw.tlbs):
        if not len(t):
            continue
        for e in t:
            space = hw.spaces.get(e.asid)
            if space is None:
                continue
            n = e.npages
            ok = chk.tlb_use_ok(space, e.vbase, n, e.ptep, e.pfn_base, False)
            why = "memory no longer maps it"
            if ok == n and e.desc & fmt.user_bit and (e.desc & fmt.dirty_mask) == fmt.dirty_val:
                ok = chk.tlb_use_ok(space, e.vbase, n, e.ptep, e.pfn_base, True)
                why = "memory no longer grants write"
                if ok == n:
                    mask, val = fmt.dirty_mask, fmt.dirty_val
                    if not any((_memory_desc(hw, space, e.vbase + i) & mask) == val for i in range(n)):
                        ok = 0
                        why = "the entry is writable-dirty, memory is clean (a write would not mark it dirty)"
            if ok != n:
                va = (e.vbase + ok) << hw.page_shift
                d = _memory_desc(hw, space, e.vbase + ok)
                return InvariantViolation(
                    "stale-tlb-at-return",
                    f"{space.name}: CPU {cpu} still holds {e!r} at the syscall's return; at {va:#x} "
                    f"{why} (descriptor {d:#018x}): an invalidation was missing or short",
                    va,
                    [e.desc, d],
                )
    return None
