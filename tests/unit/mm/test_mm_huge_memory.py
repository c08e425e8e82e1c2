"""mm/huge_memory.c: the mTHP order policy and PMD THP lifetime, on the compiled core."""

from __future__ import annotations

import pytest
from mmkit import PAGE, fault, make_kernel, new_mm, pte_of

from contpte.mm import huge_memory, madvise, mmap, mprotect
from contpte.mm.mm_types import VM_HUGEPAGE, VM_NOHUGEPAGE, VM_READ, VM_SHARED, VM_WRITE, Vma
from contpte.mm.shmem import File

RW = VM_READ | VM_WRITE

#: Every test runs on both backends.
pytestmark = pytest.mark.parametrize("arch", ["arm64", "generic"])
PMD = 2 << 20


def _orders(*orders: int) -> int:
    return sum(1 << o for o in orders)


ALL = (1 << 10) - 1  # every order up to PMD_ORDER (9) with 4K pages


@pytest.mark.parametrize(
    ("thp", "mthp", "vm_flags", "expected"),
    [
        ("madvise", {}, 0, _orders()),  # 2M inherits "madvise"
        ("madvise", {}, VM_HUGEPAGE, _orders(9)),
        ("always", {}, 0, _orders(9)),
        ("never", {"2M": "always"}, 0, _orders(9)),
        ("never", {}, VM_HUGEPAGE, _orders()),
        ("madvise", {"64K": "always", "16K": "madvise"}, 0, _orders(4)),
        ("madvise", {"64K": "always", "16K": "madvise"}, VM_HUGEPAGE, _orders(2, 4, 9)),
        ("always", {"64K": "inherit", "32K": "never"}, 0, _orders(4, 9)),
        ("always", {"64K": "always"}, VM_NOHUGEPAGE, _orders()),
        ("always", {"64K": "always"}, VM_SHARED, _orders()),
    ],
)
def test_thp_vma_allowable_orders(
    arch: str, thp: str, mthp: dict[str, str], vm_flags: int, expected: int
) -> None:
    k = make_kernel(arch, thp=thp, mthp=mthp)
    mm = new_mm(k)
    vma = Vma(mm, 0x40000000, 0x40000000 + 4 * PMD, RW | vm_flags, 0, 0x40000)
    assert huge_memory.thp_vma_allowable_orders(vma, ALL) == expected
    assert huge_memory.thp_vma_allowable_orders(vma, ALL & ~(1 << 9)) == expected & ~(1 << 9)
    assert huge_memory.thp_vma_allowable_order(vma, 9) == bool(expected >> 9 & 1)


def test_thp_vma_allowable_orders_file_vma(arch: str) -> None:
    k = make_kernel(arch, thp="always", mthp={"64K": "always"})
    mm = new_mm(k)
    f = File(k, 1, "f", 1 << 20, 4, False)
    vma = Vma(mm, 0x40000000, 0x40100000, RW, 0, 0, f)
    assert huge_memory.thp_vma_allowable_orders(vma, ALL) == 0  # anonymous memory only


def test_thp_vma_suitable_orders(arch: str) -> None:
    k = make_kernel(arch)
    mm = new_mm(k)
    start = 0x40000000 + 16 * PAGE  # 64K-aligned, not 2M-aligned
    vma = Vma(mm, start, start + 64 * PAGE, RW, 0, start >> 12)
    orders = _orders(2, 4, 9)
    assert huge_memory.thp_vma_suitable_orders(vma, start, orders) == _orders(2, 4)
    # The last 64K-aligned block ends at the VMA's end; the 16K block of a
    # fault on the VMA's last page is inside, the 64K one too.
    assert huge_memory.thp_vma_suitable_orders(vma, start + 63 * PAGE, orders) == _orders(2, 4)
    short = Vma(mm, start, start + 24 * PAGE, RW, 0, start >> 12)
    assert huge_memory.thp_vma_suitable_orders(short, start + 20 * PAGE, orders) == _orders(2)
    assert huge_memory.thp_vma_suitable_order(short, start, 4)
    assert not huge_memory.thp_vma_suitable_order(short, start + 16 * PAGE, 4)
    # A file VMA also needs its pgoff aligned like its address.
    f = File(k, 1, "f", 1 << 20, 4, False)
    fvma = Vma(mm, start, start + 64 * PAGE, RW, 0, 1, f)
    assert huge_memory.thp_vma_suitable_orders(fvma, start, _orders(2, 4)) == 0
    fvma.vm_pgoff = 16
    assert huge_memory.thp_vma_suitable_orders(fvma, start, _orders(2, 4)) == _orders(2, 4)


def test_pmd_thp_fault_copy_split_zap(arch: str) -> None:
    """A PMD THP: fault, fork (copy_huge_pmd), partial mprotect (split_huge_pmd), munmap (zap)."""
    from contpte.mm.fork import dup_mmap

    k = make_kernel(arch, thp="always")
    free0 = k.buddy.nr_free
    mm = new_mm(k)
    a = mmap.do_mmap(mm, None, 0, PMD, RW, 0, False)
    assert a % PMD == 0  # thp_get_unmapped_area
    fault(mm, a, 1)
    idx = a >> 21
    assert idx in mm.space.pmds and mm.space.pte_table(idx) < 0
    folio = int(k.memmap.head[k.arch.pte_pfn(k.arch.pmd_pte(mm.space.pmds[idx]))])
    assert int(k.memmap.order[folio]) == 9 and int(k.memmap.entire_mapcount[folio]) == 1
    assert k.counters.get("thp_fault_alloc") == 1 and mm.get_mm_counter(1) == 512
    assert k.counters.get("mthp.2048kB.anon_fault_alloc") == 1
    child = new_mm(k, 2)
    assert dup_mmap(child, mm) == 0
    assert int(k.memmap.entire_mapcount[folio]) == 2 and int(k.memmap.refcount[folio]) == 2
    assert not k.arch.pte_write(k.arch.pmd_pte(mm.space.pmds[idx]))
    # mprotect of one page splits the parent's PMD: 512 PTEs of the same folio.
    assert mprotect.do_mprotect_pkey(mm, a + PAGE, PAGE, VM_READ) == 0
    assert k.counters.get("thp_split_pmd") == 1
    assert idx not in mm.space.pmds
    pfns = [k.arch.pte_pfn(pte_of(mm, a + i * PAGE)) for i in range(512)]
    assert pfns == list(range(folio, folio + 512))
    assert int(k.memmap.entire_mapcount[folio]) == 1 and int(k.memmap.large_mapcount[folio]) == 513
    assert int(k.memmap.refcount[folio]) == 513
    # munmap of the child's whole PMD zaps it; exit of the parent frees all.
    assert mmap.do_munmap(child, a, PMD) == 0
    assert int(k.memmap.entire_mapcount[folio]) == 0
    mmap.exit_mmap(child)
    mmap.exit_mmap(mm)
    assert k.buddy.nr_free == free0
    assert not mm.space.tables and not mm.space.pmds


def test_huge_zero_page_read_then_write_splits(arch: str) -> None:
    k = make_kernel(arch, thp="always")
    mm = new_mm(k)
    a = mmap.do_mmap(mm, None, 0, PMD, RW, 0, False)
    fault(mm, a, 1, write=False)
    assert k.huge_zero_pfn >= 0 and (a >> 21) in mm.space.pmds
    fault(mm, a + 5 * PAGE, 1, write=True)  # v6.12: split, then an order-0 CoW page
    assert k.counters.get("thp_split_pmd") == 1
    assert k.arch.pte_pfn(pte_of(mm, a)) == k.zero_pfn
    assert k.arch.pte_pfn(pte_of(mm, a + 5 * PAGE)) not in (k.zero_pfn, k.huge_zero_pfn)


def test_split_folio(arch: str) -> None:
    """split_folio: refused while pinned or PMD-mapped; else every page its own folio."""
    from contpte.mm import gup

    k = make_kernel(arch, mthp={"64K": "always"})
    mm = new_mm(k)
    a = mmap.do_mmap(mm, None, 0, 16 * PAGE, RW, 0, False)
    fault(mm, a, 1)
    folio = int(k.memmap.head[k.arch.pte_pfn(pte_of(mm, a))])
    assert int(k.memmap.order[folio]) == 4
    mem = k.memmap
    mem.refcount[folio] += 1  # the caller's reference (folio_get)
    assert gup.pin_user_pages(mm, a + 3 * PAGE, 1, False) == 0
    assert huge_memory.split_folio(k, folio) == -11  # pinned: can_split_folio() fails
    gup.unpin_user_pages(mm, list(mm.pinned))
    mm.pinned.clear()
    assert madvise.do_madvise(mm, a + 8 * PAGE, 8 * PAGE, "dontneed") == 0
    assert huge_memory.split_folio(k, folio) == 0
    assert [int(mem.order[folio + i]) for i in range(16)] == [0] * 16
    assert [int(mem.head[folio + i]) for i in range(8)] == list(range(folio, folio + 8))
    assert [int(mem.head[folio + i]) for i in range(8, 16)] == [-1] * 8  # unmapped pages freed
    assert int(mem.refcount[folio]) == 2 and all(int(mem.refcount[folio + i]) == 1 for i in range(1, 8))
    assert [k.arch.pte_pfn(pte_of(mm, a + i * PAGE)) for i in range(8)] == list(range(folio, folio + 8))
    assert k.counters.get("mthp.64kB.split") == 1
    k.folio_put(folio, 1)


def test_first_kernel_counts_per_size_stats(arch: str) -> None:
    """The first Kernel of a process names its mthp.<size>.* ids after its Counters
    was made; they must still count (a fresh interpreter: ids are global)."""
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from mmkit import fault, make_kernel, new_mm
from contpte.mm import mmap
k = make_kernel({arch!r}, thp="always")
mm = new_mm(k)
a = mmap.do_mmap(mm, None, 0, 2 << 20, 3, 0, False)
fault(mm, a, 1)
print(k.counters.get("mthp.2048kB.anon_fault_alloc"), k.counters.get("mthp.2048kB.nr_anon"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"], out.stderr[-2000:]
