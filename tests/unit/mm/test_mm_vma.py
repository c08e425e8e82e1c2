"""VMA split and merge in mprotect, madvise and munmap (mm/vma.c, mm/mprotect.c, mm/madvise.c)."""

from __future__ import annotations

import numpy as np
import pytest

import contpte
from contpte.mm.mm_types import VM_DONTCOPY, VM_HUGEPAGE, VM_NOHUGEPAGE
from contpte.mm.shmem import file_initial_value

PAGE = 4096


@pytest.fixture(params=["generic", "arm64"])
def proc(request: pytest.FixtureRequest) -> tuple[contpte.Machine, contpte.Process, int]:
    m = contpte.Machine(arch=request.param, memory="64M", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(2 << 20)
    p.write(a, 2 << 20, 1)
    return m, p, a


def _spans(p: contpte.Process) -> list[tuple[int, int, str]]:
    return [(s, e, perm) for s, e, perm, _ in p.maps()]


def test_mprotect_middle_splits_then_merges(proc: tuple[contpte.Machine, contpte.Process, int]) -> None:
    _m, p, a = proc
    end = a + (2 << 20)
    p.mprotect(a + 5 * PAGE, 3 * PAGE, "r")
    assert _spans(p) == [
        (a, a + 5 * PAGE, "rw-p"),
        (a + 5 * PAGE, a + 8 * PAGE, "r--p"),
        (a + 8 * PAGE, end, "rw-p"),
    ]
    assert p.pagemap(a, 10 * PAGE)["writable"].tolist() == [True] * 5 + [False] * 3 + [True] * 2
    p.mprotect(a + 5 * PAGE, 3 * PAGE, "rw")
    assert _spans(p) == [(a, end, "rw-p")]
    assert p.pagemap(a, 2 << 20)["writable"].all()
    assert (p.read(a, 2 << 20) == 1).all()


def test_mprotect_across_vmas_merges_them(proc: tuple[contpte.Machine, contpte.Process, int]) -> None:
    _m, p, a = proc
    p.mprotect(a, 16 * PAGE, "r")
    p.mprotect(a + 32 * PAGE, 16 * PAGE, "r")
    assert len(p.maps()) == 4
    p.mprotect(a, 48 * PAGE, "r")
    assert _spans(p)[0] == (a, a + 48 * PAGE, "r--p")
    assert len(p.maps()) == 2


def test_madvise_flags_split_and_merge(proc: tuple[contpte.Machine, contpte.Process, int]) -> None:
    _m, p, a = proc
    p.madvise(a + 16 * PAGE, 16 * PAGE, "hugepage")
    vmas = p.mm.vmas
    assert len(vmas) == 3 and vmas[1].vm_flags & VM_HUGEPAGE and not vmas[0].vm_flags & VM_HUGEPAGE
    assert (vmas[1].vm_start, vmas[1].vm_end) == (a + 16 * PAGE, a + 32 * PAGE)
    p.madvise(a + 16 * PAGE, 16 * PAGE, "nohugepage")
    vmas = p.mm.vmas
    assert len(vmas) == 3 and vmas[1].vm_flags & VM_NOHUGEPAGE and not vmas[1].vm_flags & VM_HUGEPAGE
    p.madvise(a, 48 * PAGE, "dontfork")
    assert all(v.vm_flags & VM_DONTCOPY for v in p.mm.vmas[:2])
    p.madvise(a, 2 << 20, "dofork")
    assert not any(v.vm_flags & VM_DONTCOPY for v in p.mm.vmas)
    # Advice that changes nothing splits nothing.
    n = len(p.mm.vmas)
    p.madvise(a, 4 * PAGE, "dofork")
    assert len(p.mm.vmas) == n


def test_munmap_middle_leaves_two_vmas(proc: tuple[contpte.Machine, contpte.Process, int]) -> None:
    m, p, a = proc
    p.munmap(a + 20 * PAGE, 4 * PAGE)  # cuts a 64K folio
    assert _spans(p) == [(a, a + 20 * PAGE, "rw-p"), (a + 24 * PAGE, a + (2 << 20), "rw-p")]
    assert p.rss()["anon"] == 512 - 4
    assert (p.read(a, 20 * PAGE) == 1).all()
    with pytest.raises(contpte.SegmentationFault):
        p.read(a + 21 * PAGE, PAGE)
    m.check()


def test_mprotect_inside_a_pmd_thp_splits_the_pmd() -> None:
    m = contpte.Machine(arch="generic", memory="64M", thp="always")
    p = m.spawn()
    a = p.mmap(2 << 20)
    p.write(a, 2 << 20, 3)
    assert p.pagemap(a, PAGE)["order"][0] == 9
    p.mprotect(a + PAGE, PAGE, "r")
    assert m.stats()["thp_split_pmd"] == 1
    pm = p.pagemap(a, 2 << 20)
    assert pm["present"].all() and (pm["order"] == 9).all()
    assert pm["writable"].tolist()[:3] == [True, False, True]
    assert (p.read(a, 2 << 20) == 3).all()
    m.check()


def test_split_file_vma_keeps_offsets() -> None:
    m = contpte.Machine(arch="generic", memory="64M")
    f = m.open_file("f", 64 * PAGE)
    p = m.spawn()
    a = p.mmap(32 * PAGE, "r", "private", f, offset=16 * PAGE)
    p.mprotect(a + 8 * PAGE, 8 * PAGE, "rw")
    assert len(p.maps()) == 3
    exp = np.array([file_initial_value(f.id, 16 + i) for i in range(32)], dtype=np.uint64)
    assert np.array_equal(p.read(a, 32 * PAGE), exp)
    p.write(a + 9 * PAGE, PAGE, 5)
    assert p.read(a + 9 * PAGE, PAGE)[0] == 5
    m.check()
