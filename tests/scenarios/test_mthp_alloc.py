"""Anonymous mTHP allocation: order choice, fallbacks, fragmentation, OOM."""

from __future__ import annotations

import numpy as np
import pytest
from scenario_util import PAGE, Setup, assert_checked, delta

import contpte

BASE = 0x10000000  # 2M-aligned fixed address


def _machine(arch: str, **kw) -> contpte.Machine:  # type: ignore[no-untyped-def]
    kw.setdefault("memory", "64M")
    return contpte.Machine(arch=arch, **kw)


ALL_SMALL = {"16K": "always", "32K": "always", "64K": "always"}


def test_largest_enabled_order_that_fits_and_is_aligned(arch: str) -> None:
    m = _machine(arch, mthp=ALL_SMALL)
    p = m.spawn()
    # A 48K VMA at a 64K-aligned address: 32K then 16K.
    a = p.mmap(12 * PAGE, flags="private|anonymous|fixed", addr=BASE)
    p.write(a, 12 * PAGE, 1)
    assert p.pagemap(a, 12 * PAGE)["order"].tolist() == [3] * 8 + [2] * 4
    # A VMA starting 16K into a 64K block: 16K, then 32K, then 64K.
    b = p.mmap(44 * PAGE, flags="private|anonymous|fixed", addr=BASE + (1 << 20) + 4 * PAGE)
    p.write(b, 44 * PAGE, 1)
    assert p.pagemap(b, 44 * PAGE)["order"].tolist() == [2] * 4 + [3] * 8 + [4] * 16 + [4] * 16
    s = m.stats()
    assert s["mthp.64kB.anon_fault_alloc"] == 2
    assert s["mthp.32kB.anon_fault_alloc"] == 2
    assert s["mthp.16kB.anon_fault_alloc"] == 2
    assert s["mthp.64kB.anon_fault_fallback"] == 0
    assert_checked(m)


def test_vma_too_small_falls_back_to_order_0(arch: str) -> None:
    m = _machine(arch, mthp=ALL_SMALL)
    p = m.spawn()
    a = p.mmap(3 * PAGE, flags="private|anonymous|fixed", addr=BASE)
    p.write(a, 3 * PAGE, 1)
    assert (p.pagemap(a, 3 * PAGE)["order"] == 0).all()
    assert not any(v for k, v in m.stats().items() if k.endswith("anon_fault_alloc"))
    assert_checked(m)


def test_partially_populated_range_falls_back(arch: str) -> None:
    m = _machine(arch, mthp=ALL_SMALL)
    p = m.spawn()
    a = p.mmap(16 * PAGE, flags="private|anonymous|fixed", addr=BASE)
    p.read(a + 9 * PAGE, PAGE)  # a zero-page PTE in the second 32K half
    p.write(a, PAGE, 1)
    # The 64K range is not empty, its first 32K half is.
    assert p.pagemap(a, 8 * PAGE)["order"].tolist() == [3] * 8
    p.write(a + 12 * PAGE, PAGE, 2)  # 16K block 12..15 is empty
    assert p.pagemap(a + 12 * PAGE, 4 * PAGE)["order"].tolist() == [2] * 4
    p.write(a + 8 * PAGE, PAGE, 3)  # 16K block 8..11 holds the zero page
    assert p.pagemap(a + 8 * PAGE, PAGE)["order"][0] == 0
    assert p.read(a, 16 * PAGE).tolist() == [1] + [0] * 7 + [3] + [0] * 3 + [2] + [0] * 3
    assert_checked(m)


@pytest.mark.parametrize(
    ("thp", "mthp", "advise", "order"),
    [
        ("always", None, None, 9),
        ("madvise", None, "hugepage", 9),
        ("madvise", None, None, 0),
        ("always", None, "nohugepage", 0),
        ("never", None, "hugepage", 0),
        ("madvise", {"64K": "madvise"}, "hugepage", 9),
        ("madvise", {"2M": "never", "64K": "madvise"}, "hugepage", 4),
        ("madvise", {"2M": "never", "64K": "madvise"}, None, 0),
        ("always", {"2M": "never", "64K": "inherit"}, None, 4),
        ("never", {"64K": "inherit"}, "hugepage", 0),
    ],
)
def test_policy(arch: str, thp: str, mthp: dict[str, str] | None, advise: str | None, order: int) -> None:
    m = _machine(arch, thp=thp, mthp=mthp)
    p = m.spawn()
    a = p.mmap(2 << 20)
    assert a % (2 << 20) == 0  # PMD-multiple anonymous lengths are PMD-aligned
    if advise:
        p.madvise(a, 2 << 20, advise)
    p.write(a, PAGE, 1)
    pm = p.pagemap(a, 2 << 20)
    assert pm["order"][0] == order
    assert pm["present"].sum() == 1 << order
    assert (m.stats().get("thp_fault_alloc", 0) == 1) == (order == 9)


def _fill_and_fragment(m: contpte.Machine, p: contpte.Process) -> int:
    """Use every free page as order-0 folios, then free every other one."""
    free = m.kernel.buddy.nr_free
    a = p.mmap(free * PAGE)
    p.write(a, free * PAGE, 1)
    assert m.kernel.buddy.nr_free == 0
    for i in range(0, free, 2):
        p.munmap(a + i * PAGE, PAGE)
    return free


def test_fragmented_memory_counts_fallbacks(setup: Setup) -> None:
    if not setup.large:
        pytest.skip("order 0 has no fallback")
    m = setup.machine(
        memory="4M", mthp={setup.folio: "madvise"} if not setup.pmd else None, thp="madvise", check=False
    )
    p = m.spawn()
    free = _fill_and_fragment(m, p)
    assert m.kernel.buddy.nr_free == free - free // 2
    assert m.kernel.buddy.largest_free_order() == 0
    b = p.mmap(setup.length)
    p.madvise(b, setup.length, "hugepage")
    s = m.stats()
    p.write(b, 16 * PAGE, 2)
    size = f"{setup.folio_bytes // 1024}kB"
    assert delta(m, s, f"mthp.{size}.anon_fault_fallback") >= 1
    assert delta(m, s, f"mthp.{size}.anon_fault_alloc") == 0
    if setup.pmd:
        assert delta(m, s, "thp_fault_fallback") >= 1
    pm = p.pagemap(b, 16 * PAGE)
    assert (pm["order"] == 0).all() and pm["present"].all()
    assert (p.read(b, 16 * PAGE) == 2).all()
    m.check()


def test_out_of_memory(arch: str) -> None:
    m = _machine(arch, memory="8M", mthp={"64K": "always"})
    p = m.spawn()
    free = m.kernel.buddy.nr_free
    # More than RAM in one mmap is ENOMEM (overcommit heuristic): two mappings,
    # each below RAM, placed top-down next to each other (one VMA).
    half = (free + 64) // 2
    hi = p.mmap((free + 64 - half) * PAGE)
    a = p.mmap(half * PAGE)
    assert a + half * PAGE == hi and len(p.maps()) == 1
    with pytest.raises(contpte.OutOfMemory):
        p.write(a, (free + 64) * PAGE, 1)
    assert m.kernel.buddy.nr_free == 0
    # Everything written before the failure is there, and the kernel state is consistent.
    pm = p.pagemap(a, (free + 64) * PAGE)
    assert pm["present"].sum() == free
    assert (p.read(a, PAGE) == 1).all()
    m.check()
    # Freeing memory makes the next fault succeed.
    p.munmap(a, 64 << 10)
    p.write(a + (free + 63) * PAGE, PAGE, 3)
    assert p.read(a + (free + 63) * PAGE, PAGE)[0] == 3
    assert_checked(m)
    assert np.count_nonzero(p.pagemap(a, 64 << 10)["present"]) == 0
