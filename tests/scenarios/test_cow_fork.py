"""Copy-on-write after fork, in both directions, and mprotect around it."""

from __future__ import annotations

import numpy as np
import pytest
from scenario_util import PAGE, Setup, assert_checked, delta, row


@pytest.mark.parametrize("writer", ["parent", "child"])
def test_cow_after_fork(setup: Setup, writer: str) -> None:
    m, p, a = setup.populated(value=1)
    c = p.fork()
    before_p, before_c = p.pagemap(a, setup.length), c.pagemap(a, setup.length)
    # Before any write both map the same pages, read-only.
    assert np.array_equal(before_p["pfn"], before_c["pfn"])
    assert not before_p["writable"].any() and not before_c["writable"].any()
    assert not before_p["exclusive"].any() and not before_c["exclusive"].any()

    w, other = (p, c) if writer == "parent" else (c, p)
    page = a + PAGE  # inside the first folio (4K: its own folio)
    s = m.stats()
    w.write(page, PAGE, 2)
    assert delta(m, s, "fault.wp_copy") == 1
    assert delta(m, s, "page.copy") == 1
    assert w.read(page, PAGE)[0] == 2
    assert other.read(page, PAGE)[0] == 1
    # Only that page moved: the writer has a new exclusive, writable order-0 page.
    wr, ot = row(w, page), row(other, page)
    assert wr["pfn"] != before_p["pfn"][1]
    assert ot["pfn"] == before_p["pfn"][1]
    assert wr["writable"] and wr["exclusive"] and wr["order"] == 0
    assert not ot["writable"]
    rest = w.pagemap(a + 2 * PAGE, setup.length - 2 * PAGE)
    assert np.array_equal(rest["pfn"], before_p["pfn"][2:])
    # Both still read their whole region as expected.
    exp = np.ones(setup.length // PAGE, dtype=np.uint64)
    exp[1] = 2
    assert np.array_equal(w.read(a, setup.length), exp)
    exp[1] = 1
    assert np.array_equal(other.read(a, setup.length), exp)
    # The RSS is each process's own view: every page is mapped in both.
    n = setup.length // PAGE
    assert p.rss()["anon"] == n and c.rss()["anon"] == n
    assert_checked(m)


def test_cow_both_write_same_page(setup: Setup) -> None:
    m, p, a = setup.populated(value=5)
    c = p.fork()
    p.write(a, PAGE, 6)
    c.write(a, PAGE, 7)
    assert p.read(a, PAGE)[0] == 6 and c.read(a, PAGE)[0] == 7
    assert row(p, a)["pfn"] != row(c, a)["pfn"]
    assert row(p, a)["exclusive"] and row(c, a)["exclusive"]
    assert_checked(m)


def test_mprotect_rw_after_fork_still_cows(setup: Setup) -> None:
    """mprotect(r) ... fork ... mprotect(rw) must not make a shared page writable."""
    m, p, a = setup.populated(value=1)
    p.mprotect(a, setup.length, "r")
    c = p.fork()
    p.mprotect(a, setup.length, "rw")
    pm = p.pagemap(a, setup.length)
    assert pm["present"].all()
    assert not pm["writable"].any()
    s = m.stats()
    p.write(a, PAGE, 2)
    assert delta(m, s, "fault.wp_copy") == 1
    assert c.read(a, PAGE)[0] == 1 and p.read(a, PAGE)[0] == 2
    assert_checked(m)


def test_mprotect_rw_on_exclusive_page_needs_no_fault(setup: Setup) -> None:
    """can_change_pte_writable: an exclusive anon page becomes writable at mprotect time."""
    m, p, a = setup.populated(value=1)
    cont_before = p.pagemap(a, setup.length)["cont"].copy()
    p.mprotect(a, setup.length, "r")
    pm = p.pagemap(a, setup.length)
    assert pm["present"].all() and not pm["writable"].any()
    with pytest.raises(contpte_segv()) as ei:
        p.write(a, PAGE, 9)
    assert ei.value.code == "ACCERR" and ei.value.addr == a
    p.mprotect(a, setup.length, "rw")
    pm = p.pagemap(a, setup.length)
    assert pm["writable"].all()
    s = m.stats()
    p.write(a, setup.length, 3)
    assert delta(m, s, "pgfault") == 0
    assert (p.read(a, setup.length) == 3).all()
    # The contiguous blocks folded at fault time are folded again.
    assert np.array_equal(p.pagemap(a, setup.length)["cont"], cont_before)
    assert_checked(m)


def contpte_segv() -> type[Exception]:
    import contpte

    return contpte.SegmentationFault
