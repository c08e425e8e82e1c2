"""The return check reports a removed translation no TLBI reached, even with empty TLBs."""

from __future__ import annotations

from contpte import Machine
from contpte.check.stale_tlb import stale_tlb_at_return


def test_a_cleared_pte_with_no_tlb_entry_is_still_reported() -> None:
    m = Machine(arch="arm64", memory="16M", check=True, mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(64 << 10, prot="rw", flags="private|anonymous")
    p.write(a, 64 << 10, 5)
    assert stale_tlb_at_return(m) is None
    m.hw.tlbi("VMALLE1IS")  # no TLB of any CPU holds the pages now
    m.hw.dsb("ish")
    ptep = p.mm.space.pte_ptr(a + 0x3000)
    old = int(m.hw.pool.peek(ptep))
    m.hw.pool.xchg(ptep, 0)  # a "kernel" that forgets the flush
    v = stale_tlb_at_return(m)
    assert v is not None and v.rule == "unflushed-at-return"
    assert v.addr == a + 0x3000 and v.ptes[0] == old
    assert stale_tlb_at_return(m) is None  # reported once


def test_a_flushed_change_is_not_reported() -> None:
    m = Machine(arch="arm64", memory="16M", check=True, mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(64 << 10, prot="rw", flags="private|anonymous")
    p.write(a, 64 << 10, 5)
    p.mprotect(a, 64 << 10, "r")  # the kernel's write-protect and its flush
    p.munmap(a, 32 << 10)
    assert stale_tlb_at_return(m) is None
