"""mm/mmap.c + mm/vma.c: placement, merge, split, munmap and exit, on the compiled core."""

from __future__ import annotations

import errno

import pytest
from mmkit import PAGE, fault, make_kernel, new_mm, pte_of

from contpte.mm import mmap
from contpte.mm.kernel import Kernel
from contpte.mm.mm_types import VM_READ, VM_SHARED, VM_WRITE, MmStruct
from contpte.mm.shmem import File

RW = VM_READ | VM_WRITE

#: Every test runs on both backends.
pytestmark = pytest.mark.parametrize("arch", ["arm64", "generic"])
PMD = 2 << 20


def _spans(mm: MmStruct) -> list[tuple[int, int]]:
    return [(v.vm_start, v.vm_end) for v in mm.vmas]


def test_get_unmapped_area_top_down_and_thp_aligned(arch: str) -> None:
    k = make_kernel(arch)
    mm = new_mm(k)
    top = Kernel.TASK_MMAP_BASE
    a = mmap.do_mmap(mm, None, 0, 3 * PAGE, RW, 0, False)
    assert a == top - 3 * PAGE
    b = mmap.do_mmap(mm, None, 0, PMD, RW, 0, False)
    assert b % PMD == 0 and b + PMD <= a  # a PMD-multiple anon length is PMD-aligned
    # A free hint is taken (rounded up to a page); a taken one is not.
    h = mmap.get_unmapped_area(mm, 0x10000001, PAGE, True, False)
    assert h == 0x10001000
    assert mmap.get_unmapped_area(mm, a, PAGE, True, False) != a
    assert mmap.get_unmapped_area(mm, a, PAGE, True, True) == a  # MAP_FIXED
    assert mmap.do_mmap(mm, None, 0, 0, RW, 0, False) == -errno.EINVAL
    assert mmap.do_mmap(mm, None, 0x1001, PAGE, RW, 0, True) == -errno.EINVAL
    assert mmap.do_mmap(mm, None, mmap.TASK_SIZE - PAGE, 2 * PAGE, RW, 0, True) == -errno.ENOMEM


def test_adjacent_anonymous_mappings_merge(arch: str) -> None:
    k = make_kernel(arch)
    mm = new_mm(k)
    a = mmap.do_mmap(mm, None, 0, 4 * PAGE, RW, 0, False)
    b = mmap.do_mmap(mm, None, 0, 4 * PAGE, RW, 0, False)
    assert b == a - 4 * PAGE
    assert _spans(mm) == [(b, a + 4 * PAGE)]  # one VMA, pgoff contiguous
    c = mmap.do_mmap(mm, None, 0, 4 * PAGE, VM_READ, 0, False)  # other flags: no merge
    assert _spans(mm) == [(c, b), (b, a + 4 * PAGE)]


def test_munmap_splits_and_frees_page_tables(arch: str) -> None:
    k = make_kernel(arch, mthp={"64K": "always"})
    free0 = k.buddy.nr_free
    mm = new_mm(k)
    a = mmap.do_mmap(mm, None, 0, 2 * PMD, RW, 0, False)
    fault(mm, a, 1024)
    assert len(mm.space.tables) == 2
    assert mmap.do_munmap(mm, a + 20 * PAGE, 4 * PAGE) == 0  # cuts a 64K folio
    assert _spans(mm) == [(a, a + 20 * PAGE), (a + 24 * PAGE, a + 2 * PMD)]
    assert mm.get_mm_counter(1) == 1024 - 4
    assert pte_of(mm, a + 21 * PAGE) == 0 and pte_of(mm, a + 19 * PAGE) != 0
    folio = int(k.memmap.head[k.arch.pte_pfn(pte_of(mm, a + 16 * PAGE))])
    assert folio in k.deferred_split  # partially mapped anon folio
    # Unmapping the second PMD's whole range frees its table.
    assert mmap.do_munmap(mm, a + PMD, PMD) == 0
    assert len(mm.space.tables) == 1
    assert mmap.do_munmap(mm, a + 1, PAGE) == -errno.EINVAL
    assert mmap.do_munmap(mm, a + 3 * PMD, PAGE) == 0  # nothing mapped there: fine
    mmap.exit_mmap(mm)
    assert not mm.vmas and not mm.space.tables
    assert mm.get_mm_counter(1) == 0 and k.buddy.nr_free == free0


def test_split_vma_keeps_file_offsets(arch: str) -> None:
    k = make_kernel(arch)
    mm = new_mm(k)
    f = File(k, 1, "f", 64 * PAGE, 0, False)
    k.files[1] = f
    a = mmap.do_mmap(mm, f, 0, 32 * PAGE, VM_READ, 16, False)
    upper = mmap.split_vma(mm, mm.vmas[0], a + 8 * PAGE)
    assert _spans(mm) == [(a, a + 8 * PAGE), (a + 8 * PAGE, a + 32 * PAGE)]
    assert (mm.vmas[0].vm_pgoff, upper.vm_pgoff) == (16, 24)
    assert mmap.vma_merge_around(mm, upper) is mm.vmas[0]  # and back together
    assert _spans(mm) == [(a, a + 32 * PAGE)]


def test_shared_anonymous_memory_released_with_its_last_mapping(arch: str) -> None:
    k = make_kernel(arch)
    mm = new_mm(k)
    free0 = k.buddy.nr_free
    f = File(k, 5, "shm", 16 * PAGE, 0, True)
    f.anon_shmem = True
    k.files[5] = f
    a = mmap.do_mmap(mm, f, 0, 16 * PAGE, RW | VM_SHARED, 0, False)
    fault(mm, a, 16)
    assert len(f.cache) == 16 and mm.get_mm_counter(3) == 16  # MM_SHMEMPAGES
    assert mmap.do_munmap(mm, a, 8 * PAGE) == 0
    assert len(f.cache) == 16  # still mapped
    assert mmap.do_munmap(mm, a + 8 * PAGE, 8 * PAGE) == 0
    assert not f.cache and 5 not in k.files and k.buddy.nr_free == free0


def test_mmap_fixed_replaces(arch: str) -> None:
    k = make_kernel(arch)
    mm = new_mm(k)
    a = mmap.do_mmap(mm, None, 0, 8 * PAGE, RW, 0, False)
    fault(mm, a, 8)
    assert mmap.do_mmap(mm, None, a + 2 * PAGE, 2 * PAGE, VM_READ, 0, True) == a + 2 * PAGE
    assert _spans(mm) == [(a, a + 2 * PAGE), (a + 2 * PAGE, a + 4 * PAGE), (a + 4 * PAGE, a + 8 * PAGE)]
    assert pte_of(mm, a + 2 * PAGE) == 0 and mm.get_mm_counter(1) == 6
