"""mremap (mm/mremap.c): values, VMAs and errnos, and what a move costs on arm64.

The counts are derived from the kernel code:

- v6.12 ``move_ptes()`` moves one PTE at a time: ``ptep_get()`` (on a
  contiguous entry arm64's ``contpte_ptep_get()`` reads the 16 entries of
  its block to gather access/dirty), ``ptep_get_and_clear()`` (the first of
  a folded block unfolds it: ``contpte_convert()`` clears the 16 entries,
  invalidates them and writes them back without PTE_CONT) and
  ``set_pte_at()`` = ``set_ptes(nr=1)``, whose ``contpte_try_fold()`` folds
  the destination block when its last entry is written (``contpte_convert()``
  again: 16 clears, 16 TLBIs, 16 writes with PTE_CONT).
- v6.17 (``mremap_pte_batch``) moves a folio batch: ``get_and_clear_ptes()``
  of a whole folded block does not unfold it and ``set_ptes(nr=16)`` writes
  an aligned block contiguous at once (``contpte_set_ptes()``): no
  conversion on either side.
- a move of a whole PMD whose source and destination are PMD-aligned moves
  the PTE table itself (``move_normal_pmd()``): no PTE is read or written.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest

import contpte
from contpte.version import kernel_options

K64 = 64 << 10
PAGE = 4096
PMD = 2 << 20


def _machine(kernel: str = "6.12", arch: str = "arm64", **kw: object) -> contpte.Machine:
    return contpte.Machine(arch=arch, memory="64M", mthp={"64K": "always"}, kernel=kernel, check=True, **kw)


def _folded_block(m: contpte.Machine) -> tuple[contpte.Process, int, int]:
    """A process with one written 64K folio (folded on arm64) and a 64K-aligned free target."""
    p = m.spawn()
    src = p.mmap(4 * K64)
    p.write(src, K64, np.arange(16, dtype=np.uint64) + 100)
    dst = p.mmap(4 * K64)
    p.munmap(dst, 4 * K64)
    return p, src, dst + K64


def _counts(d: dict[str, int], *names: str) -> dict[str, int]:
    return {n: d.get(n, 0) for n in names}


@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
def test_move_folded_block_to_aligned_address(kernel: str) -> None:
    m = _machine(kernel)
    p, src, dst = _folded_block(m)
    assert p.pagemap(src, K64)["cont"].all()
    with m.measure() as d:
        got = p.mremap(src, K64, K64, "maymove|fixed", dst)
    assert got == dst
    assert p.read(dst, K64).tolist() == list(range(100, 116))
    rows = p.pagemap(dst, K64)
    assert rows["cont"].all() and (rows["order"] == 4).all()
    c = _counts(
        d,
        "contpte.unfold.ptep_get_and_clear",
        "contpte.fold",
        "contpte.convert",
        "pte.write",
        "pte.atomic",
    )
    if kernel == "6.12":
        # One unfold at the source (the first clear), one fold at the
        # destination (the 16th set_pte_at).  Atomic clears: 16 per
        # conversion and the 16 of the move; plain stores: 16 per conversion
        # and the 16 at the new address (pte.write counts both kinds).
        assert c == {
            "contpte.unfold.ptep_get_and_clear": 1,
            "contpte.fold": 1,
            "contpte.convert": 2,
            "pte.write": (16 + 16 + 16) + (16 + 16 + 16),
            "pte.atomic": 16 + 16 + 16,
        }
    else:
        # One batch of 16: cleared without unfolding (16 atomic clears),
        # written contiguous at once (16 stores).
        assert c == {
            "contpte.unfold.ptep_get_and_clear": 0,
            "contpte.fold": 0,
            "contpte.convert": 0,
            "pte.write": 16 + 16,
            "pte.atomic": 16,
        }
    m.check()


@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
def test_move_folded_block_to_unaligned_address(kernel: str) -> None:
    """An unaligned destination cannot be contiguous: no fold in either version."""
    m = _machine(kernel)
    p, src, dst = _folded_block(m)
    with m.measure() as d:
        p.mremap(src, K64, K64, "maymove|fixed", dst + PAGE)
    assert p.read(dst + PAGE, K64).tolist() == list(range(100, 116))
    assert not p.pagemap(dst + PAGE, K64)["cont"].any()
    assert d.get("contpte.fold", 0) == 0
    assert d.get("contpte.unfold.ptep_get_and_clear", 0) == (1 if kernel == "6.12" else 0)
    m.check()


def test_version_selects_the_batch() -> None:
    assert kernel_options("6.16", "arm64")["mremap_pte_batch"] is False
    assert kernel_options("6.17", "arm64")["mremap_pte_batch"] is True
    assert _machine("7.2").kernel.mremap_pte_batch
    assert not _machine("7.2", mremap_pte_batch=False).kernel.mremap_pte_batch


@pytest.mark.parametrize("arch", ["arm64", "generic"])
@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
def test_pmd_aligned_move_touches_no_pte(arch: str, kernel: str) -> None:
    m = _machine(kernel, arch)
    p = m.spawn()
    a = p.mmap(PMD)  # a PMD multiple: placed PMD-aligned (no THP: thp=madvise)
    assert a % PMD == 0
    p.write(a, PMD, 7)
    hole = p.mmap(2 * PMD)
    p.munmap(hole, 2 * PMD)
    with m.measure() as d:
        got = p.mremap(a, PMD, PMD, "maymove|fixed", hole)
    assert got == hole
    assert d.get("pte.read", 0) == 0 and d.get("pte.write", 0) == 0 and d.get("pte.atomic", 0) == 0
    assert d.get("contpte.convert", 0) == 0
    assert d.get("tlbi.total", 0) >= 1  # flush_tlb_range() of the old PMD
    assert (p.read(hole, PMD) == 7).all()
    if arch == "arm64":
        assert p.pagemap(hole, PMD)["cont"].all()
    with pytest.raises(contpte.SegmentationFault):
        p.read(a, PAGE)
    m.check()


def test_pmd_thp_moves_whole() -> None:
    m = contpte.Machine(arch="arm64", memory="64M", thp="always", check=True)
    p = m.spawn()
    a = p.mmap(PMD)
    p.write(a, PMD, 3)
    assert p.pagemap(a, PAGE)["order"][0] == 9
    hole = p.mmap(2 * PMD)
    p.munmap(hole, 2 * PMD)
    with m.measure() as d:
        p.mremap(a, PMD, PMD, "maymove|fixed", hole)
    assert d.get("thp_split_pmd", 0) == 0 and d.get("pte.write", 0) == 0
    r = p.pagemap(hole, PAGE)[0]
    assert r["order"] == 9 and r["exclusive"]
    assert (p.read(hole, PMD) == 3).all()
    m.check()


@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_grow_in_place_then_move(arch: str) -> None:
    m = _machine(arch=arch)
    p = m.spawn()
    region = p.mmap(16 * K64)
    p.munmap(region + 4 * K64, 12 * K64)
    p.write(region, 4 * K64, 1)
    assert p.mremap(region, 4 * K64, 8 * K64) == region  # in place
    assert [(s, e) for s, e, _, _ in p.maps()] == [(region, region + 8 * K64)]
    blocker = p.mmap(K64, addr=region + 8 * K64)
    assert blocker == region + 8 * K64
    with pytest.raises(OSError) as e:
        p.mremap(region, 8 * K64, 16 * K64)
    assert e.value.errno == errno.ENOMEM
    moved = p.mremap(region, 8 * K64, 16 * K64, "maymove")
    assert moved != region
    assert (p.read(moved, 4 * K64) == 1).all() and (p.read(moved + 4 * K64, 12 * K64) == 0).all()
    with pytest.raises(contpte.SegmentationFault):
        p.read(region, PAGE)
    m.check()


def test_shrink_leaves_a_partial_folio() -> None:
    m = _machine()
    p = m.spawn()
    a = p.mmap(4 * K64)
    p.write(a, 4 * K64, 5)
    assert p.mremap(a, 4 * K64, K64 + 5 * PAGE) == a
    assert [(s, e) for s, e, _, _ in p.maps()] == [(a, a + K64 + 5 * PAGE)]
    assert p.rss()["anon"] == 16 + 5
    assert (p.read(a, K64 + 5 * PAGE) == 5).all()
    m.check()


def test_dontunmap_keeps_the_old_vma_empty() -> None:
    m = _machine()
    p = m.spawn()
    a = p.mmap(2 * K64)
    p.write(a, 2 * K64, 9)
    b = p.mremap(a, 2 * K64, 2 * K64, "maymove|dontunmap")
    assert b != a
    assert sorted((s, e) for s, e, _, _ in p.maps()) == sorted([(a, a + 2 * K64), (b, b + 2 * K64)])
    assert (p.read(b, 2 * K64) == 9).all()
    assert (p.read(a, 2 * K64) == 0).all()  # unfaulted again
    assert p.rss()["anon"] == 32
    # The whole VMA moved: it lost its anon_vma (unlink_anon_vmas()).
    assert p.mm.vma_lookup(a).anon_vma is None
    m.check()


@pytest.mark.parametrize(
    ("args", "err"),
    [
        ((PAGE, K64, K64, 8), errno.EINVAL),  # unknown flag
        ((PAGE, K64, K64, "fixed"), errno.EINVAL),  # FIXED without MAYMOVE
        ((PAGE, K64, 2 * K64, "maymove|dontunmap"), errno.EINVAL),  # DONTUNMAP resizing
        ((PAGE, K64, K64, "dontunmap"), errno.EINVAL),  # DONTUNMAP without MAYMOVE
        ((1, K64, K64, 0), errno.EINVAL),  # unaligned
        ((0, K64, 0, 0), errno.EINVAL),  # zero new length
        ((-K64, K64, K64, 0), errno.EFAULT),  # nothing mapped there
        ((0, 5 * K64, 6 * K64, "maymove"), errno.EFAULT),  # past the VMA's end
        ((0, 0, K64, "maymove"), errno.EINVAL),  # duplicating a private mapping
        ((0, K64, K64, "maymove|fixed", K64 // 2), errno.EINVAL),  # overlap
        ((0, K64, K64, "maymove|fixed", 1), errno.EINVAL),  # unaligned target
    ],
)
def test_errno(args: tuple, err: int) -> None:
    m = _machine()
    p = m.spawn()
    a = p.mmap(4 * K64)
    p.write(a, 4 * K64, 1)
    addr, old, new, flags, *rest = args
    target = a + rest[0] if rest else None
    with pytest.raises(OSError) as e:
        p.mremap(a + addr if addr >= 0 else a - 2 * PMD, old, new, flags, target)
    assert e.value.errno == err
    assert (p.read(a, 4 * K64) == 1).all()
    m.check()


def test_fixed_target_is_unmapped_before_a_late_error() -> None:
    """v6.12 unmaps the MREMAP_FIXED target before vma_to_resize() fails (EFAULT)."""
    m = _machine()
    p = m.spawn()
    a = p.mmap(2 * K64)
    t = p.mmap(4 * K64)
    p.write(t, 4 * K64, 4)
    with pytest.raises(OSError) as e:
        p.mremap(a + K64, 2 * K64, 2 * K64, "maymove|fixed", t)
    assert e.value.errno == errno.EFAULT
    assert not p.mm.vmas_in(t, t + 2 * K64)
    assert (p.read(t + 2 * K64, 2 * K64) == 4).all()
    m.check()


def test_shared_anon_moves_and_the_child_still_sees_it() -> None:
    """The shmem object behind MAP_SHARED|MAP_ANONYMOUS keeps its size: growing
    the mapping gives pages past its end, which raise SIGBUS (as on Linux)."""
    m = _machine()
    p = m.spawn()
    a = p.mmap(2 * K64, flags="shared|anonymous")
    p.write(a, 2 * K64, 11)
    c = p.fork()
    b = p.mremap(a, 2 * K64, 4 * K64, "maymove")
    p.write(b, PAGE, 12)
    assert c.read(a, PAGE)[0] == 12
    assert (p.read(b, 2 * K64)[1:] == 11).all()
    with pytest.raises(contpte.BusError):
        p.read(b + 2 * K64, PAGE)
    m.check()


def test_uffd_registration_is_dropped_at_the_new_address() -> None:
    """Without UFFD_FEATURE_EVENT_REMAP the moved range is no longer write-protected."""
    m = _machine(arch="generic")
    p = m.spawn()
    a = p.mmap(2 * K64)
    p.write(a, 2 * K64, 1)
    p.uffd_wp(a, 2 * K64)
    with pytest.raises(contpte.UserfaultWP):
        p.write(a, PAGE, 2)
    b = p.mremap(a, 2 * K64, 2 * K64, "maymove|fixed", a + 8 * K64)
    p.write(b, 2 * K64, 3)
    assert (p.read(b, 2 * K64) == 3).all()
    m.check()
