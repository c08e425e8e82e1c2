"""mm/gup.c pins, mm/userfaultfd.c write-protection and the rmap walk, on the compiled core."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from mmkit import PAGE, fault, make_kernel, new_mm, pte_of

from contpte.mm import gup, userfaultfd
from contpte.mm.fork import dup_mmap
from contpte.mm.kernel import Kernel
from contpte.mm.memmap import GUP_PIN_COUNTING_BIAS
from contpte.mm.mm_types import VM_FAULT_UFFD_WP, VM_READ, VM_SHARED, VM_UFFD_WP, VM_WRITE
from contpte.mm.mmap import do_mmap
from contpte.mm.rmap import rmap_walk_ptes
from contpte.mm.shmem import File

RW = VM_READ | VM_WRITE

#: Every test runs on both backends.
pytestmark = pytest.mark.parametrize("arch", ["arm64", "generic"])


def test_pin_and_unpin(arch: str) -> None:
    k = make_kernel(arch, mthp={"64K": "always"})
    mm = new_mm(k)
    mem = k.memmap
    a = do_mmap(mm, None, 0, 32 * PAGE, RW, 0, False)
    b = do_mmap(mm, None, 0, 4 * PAGE, VM_READ, 0, False)
    assert gup.pin_user_pages(mm, a + 16 * PAGE, 2, True) == 0  # faults them in
    folio = int(mem.head[k.arch.pte_pfn(pte_of(mm, a + 16 * PAGE))])
    assert int(mem.pincount[folio]) == 2 and int(mem.refcount[folio]) == 16 + 2
    assert mm.has_pinned and len(mm.pinned) == 2
    assert gup.pin_user_pages(mm, b, 1, True) == -errno.EFAULT  # read-only VMA
    assert gup.pin_user_pages(mm, a - 64 * PAGE, 1, False) == -errno.EFAULT  # unmapped
    # A read pin of a page of the zero page's kind: order-0 folio, counted in its refcount.
    mm.vmas[-1].vm_flags |= VM_WRITE
    assert gup.pin_user_pages(mm, b, 1, False) == 0
    small = int(mem.head[k.arch.pte_pfn(pte_of(mm, b))])
    assert int(mem.refcount[small]) >= GUP_PIN_COUNTING_BIAS
    gup.unpin_user_pages(mm, list(mm.pinned))
    assert int(mem.pincount[folio]) == 0 and int(mem.refcount[folio]) == 16
    assert int(mem.refcount[small]) < GUP_PIN_COUNTING_BIAS
    assert k.counters.get("gup.pin") == 3 and k.counters.get("gup.unpin") == 3


def test_no_writable_longterm_pin_of_a_file_needing_writeback(arch: str) -> None:
    k = make_kernel(arch)
    mm = new_mm(k)
    f = File(k, 1, "f", 16 * PAGE, 0, False)
    k.files[1] = f
    a = do_mmap(mm, f, 0, 16 * PAGE, RW | VM_SHARED, 0, False)
    assert gup.pin_user_pages(mm, a, 1, True) == -errno.EFAULT
    assert gup.pin_user_pages(mm, a, 1, False) == 0


def test_uffd_wp_register_protect_resolve(arch: str) -> None:
    from contpte.mm.memory import handle_mm_fault

    k = make_kernel(arch, mthp={"64K": "always"})
    mm = new_mm(k)
    a = do_mmap(mm, None, 0, 32 * PAGE, RW, 0, False)
    fault(mm, a, 32)
    assert userfaultfd.mwriteprotect_range(mm, a, 16 * PAGE, True) == -errno.ENOENT  # not registered
    assert userfaultfd.userfaultfd_register_wp(mm, a, 16 * PAGE) == 0
    assert [bool(v.vm_flags & VM_UFFD_WP) for v in mm.vmas] == [True, False]
    assert userfaultfd.mwriteprotect_range(mm, a, 16 * PAGE, True) == 0
    ar = k.arch
    assert all(ar.pte_uffd_wp(pte_of(mm, a + i * PAGE)) for i in range(16))
    assert not any(ar.pte_write(pte_of(mm, a + i * PAGE)) for i in range(16))
    assert handle_mm_fault(mm.vmas[0], a + PAGE, 1) == VM_FAULT_UFFD_WP
    assert userfaultfd.mwriteprotect_range(mm, a, 16 * PAGE, False) == 0
    assert all(ar.pte_write(pte_of(mm, a + i * PAGE)) for i in range(16))  # exclusive: writable again
    f = File(k, 2, "f", 16 * PAGE, 0, False)
    k.files[2] = f
    b = do_mmap(mm, f, 0, 16 * PAGE, VM_READ, 0, False)
    assert userfaultfd.userfaultfd_register_wp(mm, b, 16 * PAGE) == -errno.EINVAL
    assert userfaultfd.userfaultfd_register_wp(mm, a, 3) == -errno.EINVAL


def _brute_force_walk(k: Kernel, lo: int, hi: int) -> set[tuple[int, int, int]]:
    """Every PTE of every table mapping a pfn in [lo, hi): (pid, level-2 index, entry)."""
    a = k.arch
    out = set()
    for mm in k.mms:
        for idx in list(mm.space.tables):
            d = a.ptes_decode(np.asarray(mm.space.table_entries(idx)))
            hit = d["present"] & ~d["special"] & (d["pfn"] >= lo) & (d["pfn"] < hi)
            out |= {(mm.owner, idx, int(p)) for p in hit.nonzero()[0]}
    return out


def test_rmap_walk_finds_every_mapping(arch: str) -> None:
    """The rmap walk (by page index, per VMA) finds what a scan of every table finds."""
    k = make_kernel(arch, mthp={"64K": "always"})
    mm = new_mm(k)
    a = do_mmap(mm, None, 0, 64 * PAGE, RW, 0, False)
    fault(mm, a, 64)
    f = File(k, 1, "f", 64 * PAGE, 4, False)
    k.files[1] = f
    # The same file mapped twice in one mm, at two offsets, and read.
    b = do_mmap(mm, f, 0, 32 * PAGE, VM_READ, 0, False)
    c = do_mmap(mm, f, 0, 32 * PAGE, VM_READ, 8, False)
    fault(mm, b, 32, write=False)
    fault(mm, c, 32, write=False)
    child = new_mm(k, 2)
    assert dup_mmap(child, mm) == 0
    fault(child, a + 3 * PAGE, 1)  # a CoW copy in the child
    fault(child, b, 4, write=False)
    mem = k.memmap
    heads = sorted({int(mem.head[p]) for p in range(mem.nr_frames) if int(mem.head[p]) == p})
    walked = 0
    for h in heads:
        if h == k.zero_pfn:
            continue
        n = 1 << int(mem.order[h])
        got = [(m.owner, idx, pos) for m, idx, pos in rmap_walk_ptes(k, h, h + n)]
        assert len(got) == len(set(got))
        assert set(got) == _brute_force_walk(k, h, h + n), hex(h)
        walked += len(got)
    assert walked > 64 + 64 + 64
