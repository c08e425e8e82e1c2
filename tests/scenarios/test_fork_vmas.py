"""MADV_DONTFORK/DOFORK and shared anonymous memory across fork."""

from __future__ import annotations

import numpy as np
import pytest
from scenario_util import PAGE, Setup, assert_checked

import contpte


def test_dontfork_child_faults_dofork_child_sees_data(setup: Setup) -> None:
    m, p, a = setup.populated(value=1)
    b = p.mmap(setup.length)
    p.write(b, setup.length, 2)
    p.madvise(a, setup.length, "dontfork")
    c = p.fork()
    with pytest.raises(contpte.SegmentationFault) as ei:
        c.read(a + PAGE, PAGE)
    assert ei.value.code == "MAPERR" and ei.value.addr == a + PAGE and not ei.value.write
    with pytest.raises(contpte.SegmentationFault):
        c.write(a, PAGE, 3)
    assert c.rss()["anon"] == setup.length // PAGE  # only b
    assert (c.read(b, setup.length) == 2).all()
    # The parent's mapping is unaffected, and stays writable without faults.
    assert p.pagemap(a, setup.length)["writable"].all()
    p.madvise(a, setup.length, "dofork")
    c2 = p.fork()
    assert (c2.read(a, setup.length) == 1).all()
    c2.write(a, PAGE, 4)
    assert p.read(a, PAGE)[0] == 1
    assert_checked(m)


def test_dontfork_part_of_a_mapping(setup: Setup) -> None:
    m, p, a = setup.populated(value=1)
    half = setup.length // 2
    p.madvise(a + half, half, "dontfork")
    assert len(p.maps()) == 2
    c = p.fork()
    assert [(s, e) for s, e, _, _ in c.maps()] == [(a, a + half)]
    assert (c.read(a, half) == 1).all()
    with pytest.raises(contpte.SegmentationFault):
        c.read(a + half, PAGE)
    p.madvise(a + half, half, "dofork")
    assert len(p.maps()) == 1  # merged back
    assert_checked(m)


@pytest.mark.parametrize("first", ["parent", "child"])
def test_shared_anonymous_visible_both_ways(setup: Setup, first: str) -> None:
    m = setup.machine()
    p = m.spawn()
    n = 64
    a = p.mmap(n * PAGE, flags="shared|anonymous")
    if first == "parent":
        p.write(a, n * PAGE, 1)
    c = p.fork()
    if first == "child":
        c.write(a, n * PAGE, 1)
    assert (p.read(a, n * PAGE) == 1).all() and (c.read(a, n * PAGE) == 1).all()
    c.write(a, PAGE, 5)
    p.write(a + PAGE, PAGE, 6)
    exp = np.ones(n, dtype=np.uint64)
    exp[:2] = [5, 6]
    assert np.array_equal(p.read(a, n * PAGE), exp)
    assert np.array_equal(c.read(a, n * PAGE), exp)
    pp, cp = p.pagemap(a, n * PAGE), c.pagemap(a, n * PAGE)
    assert np.array_equal(pp["pfn"], cp["pfn"])
    assert pp["writable"].all() and cp["writable"].all()
    # Shared memory is shmem in the RSS, never anon.
    assert p.rss()["anon"] == 0 and p.rss()["shmem"] == n
    assert c.rss()["anon"] == 0 and c.rss()["shmem"] == n
    # It survives the writer's exit.
    c.exit()
    assert np.array_equal(p.read(a, n * PAGE), exp)
    assert_checked(m)
