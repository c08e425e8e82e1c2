"""mm/mprotect.c: change_protection and the mprotect syscall, on the compiled core."""

from __future__ import annotations

import errno

import pytest
from mmkit import PAGE, fault, make_kernel, new_mm, pte_of

from contpte.mm import mprotect
from contpte.mm.mm_types import VM_MAYWRITE, VM_READ, VM_WRITE, MmStruct
from contpte.mm.mmap import do_mmap
from contpte.mm.mmu_gather import MmuGather

RW = VM_READ | VM_WRITE

#: Every test runs on both backends.
pytestmark = pytest.mark.parametrize("arch", ["arm64", "generic"])


def _writable(mm: MmStruct, addr: int, n: int) -> list[bool]:
    a = mm.kernel.arch
    return [bool(a.pte_write(pte_of(mm, addr + i * PAGE))) for i in range(n)]


def test_mprotect_middle_splits_then_merges(arch: str) -> None:
    k = make_kernel(arch, mthp={"64K": "always"})
    mm = new_mm(k)
    a = do_mmap(mm, None, 0, 64 * PAGE, RW, 0, False)
    fault(mm, a, 64)
    assert mprotect.do_mprotect_pkey(mm, a + 5 * PAGE, 3 * PAGE, VM_READ) == 0
    assert [(v.vm_start - a, v.vm_end - a, v.vm_flags & RW) for v in mm.vmas] == [
        (0, 5 * PAGE, RW),
        (5 * PAGE, 8 * PAGE, VM_READ),
        (8 * PAGE, 64 * PAGE, RW),
    ]
    assert _writable(mm, a, 10) == [True] * 5 + [False] * 3 + [True] * 2
    # Back to rw: one VMA again, and the exclusive anon pages are writable at
    # once (can_change_pte_writable), no write fault needed.
    assert mprotect.do_mprotect_pkey(mm, a + 5 * PAGE, 3 * PAGE, RW) == 0
    assert len(mm.vmas) == 1 and all(_writable(mm, a, 64))


def test_mprotect_errors(arch: str) -> None:
    k = make_kernel(arch)
    mm = new_mm(k)
    a = do_mmap(mm, None, 0, 4 * PAGE, RW, 0, False)
    b = do_mmap(mm, None, a - 8 * PAGE, 4 * PAGE, RW, 0, True)  # a hole of 4 pages between
    assert mprotect.do_mprotect_pkey(mm, a + 1, PAGE, VM_READ) == -errno.EINVAL
    assert mprotect.do_mprotect_pkey(mm, a, PAGE, 0x100) == -errno.EINVAL
    assert mprotect.do_mprotect_pkey(mm, a, 0, VM_READ) == 0
    assert mprotect.do_mprotect_pkey(mm, b - PAGE, 2 * PAGE, VM_READ) == -errno.ENOMEM
    # The VMA before the hole is changed, then the call fails (as Linux).
    assert mprotect.do_mprotect_pkey(mm, b, 12 * PAGE, VM_READ) == -errno.ENOMEM
    assert mm.vmas[0].vm_flags & RW == VM_READ and mm.vmas[-1].vm_flags & RW == RW
    mm.vmas[-1].vm_flags &= ~VM_MAYWRITE
    assert mprotect.do_mprotect_pkey(mm, a, PAGE, RW) == -errno.EACCES


def test_change_pte_range_reads_every_entry(arch: str) -> None:
    """One ptep_get per PTE in the range, none PTEs included (the kernel's loop)."""
    k = make_kernel(arch)
    mm = new_mm(k)
    a = do_mmap(mm, None, 0, 64 * PAGE, RW, 0, False)
    fault(mm, a + 10 * PAGE, 4)  # order-0 folios: no contiguous blocks
    vma = mm.vmas[0]
    vma.vm_flags = (vma.vm_flags & ~VM_WRITE) | VM_READ
    before = k.counters.snapshot()
    tlb = MmuGather(mm, False)
    pages = mprotect.change_pte_range(
        tlb, vma, a >> 21, a, a + 64 * PAGE, k.arch.vm_get_page_prot(VM_READ), 0
    )
    after = k.counters.snapshot()
    assert pages == 4
    d = {n: after.get(n, 0) - before.get(n, 0) for n in ("pte.read", "pte.write", "pte.atomic")}
    # 64 ptep_get + per changed PTE: modify_prot_start (xchg: read+write) and commit (write).
    assert d["pte.atomic"] == 4 and d["pte.write"] == 8
    assert d["pte.read"] >= 64
    assert (tlb.start, tlb.end) == (a + 10 * PAGE, a + 14 * PAGE)
    tlb.tlb_finish_mmu()
    assert not any(_writable(mm, a + 10 * PAGE, 4))


def test_change_prot_numa_and_hinting_fault(arch: str) -> None:
    k = make_kernel(arch, mthp={"64K": "always"})
    mm = new_mm(k)
    a = do_mmap(mm, None, 0, 16 * PAGE, RW, 0, False)
    fault(mm, a, 16)
    assert mprotect.change_prot_numa(mm.vmas[0], a, a + 16 * PAGE) == 16
    assert k.counters.get("numa_pte_updates") == 16
    ar = k.arch
    assert all(ar.pte_protnone(pte_of(mm, a + i * PAGE)) for i in range(16))
    assert mprotect.change_prot_numa(mm.vmas[0], a, a + 16 * PAGE) == 0  # already protnone: skipped
    fault(mm, a + 4 * PAGE, 1)  # do_numa_page rebuilds the whole folio, writable again
    assert k.counters.get("numa_hint_faults") == 1
    assert all(_writable(mm, a, 16))
