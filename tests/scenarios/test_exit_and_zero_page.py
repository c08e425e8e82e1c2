"""Exit gives exclusivity back; the shared zero page before the first write."""

from __future__ import annotations

import numpy as np
from scenario_util import PAGE, Setup, assert_checked, delta, row


def test_exit_returns_exclusivity(setup: Setup) -> None:
    m, p, a = setup.populated(value=1)
    c = p.fork()
    c.exit()
    r = row(p, a)
    assert not r["writable"]  # still write-protected from the fork
    assert r["exclusive"]  # mapped once again
    s = m.stats()
    p.write(a, PAGE, 2)
    after = row(p, a)
    assert after["writable"] and after["exclusive"]
    if setup.pmd:
        # do_huge_pmd_wp_page: refcount 1 again, so the whole PMD is reused.
        assert after["pfn"] == r["pfn"] and after["order"] == setup.order
        assert delta(m, s, "thp_split_pmd") == 0
        assert delta(m, s, "page.copy") == 0
        assert p.pagemap(a, setup.folio_bytes)["writable"].all()
    elif setup.large:
        # v6.12 wp_can_reuse_anon_folio never reuses a page of a PTE-mapped large folio.
        assert after["pfn"] != r["pfn"] and after["order"] == 0
        assert delta(m, s, "fault.wp_copy") == 1 and delta(m, s, "page.copy") == 1
    else:
        # An order-0 page with refcount 1 is reused in place: no copy.
        assert after["pfn"] == r["pfn"]
        assert delta(m, s, "fault.wp_reuse") == 1 and delta(m, s, "page.copy") == 0
    assert p.read(a, 2 * PAGE).tolist() == [2, 1]
    assert_checked(m)


def test_exit_frees_every_page(setup: Setup) -> None:
    m, p, a = setup.populated(value=1)
    free = m.kernel.buddy.nr_free
    c = p.fork()
    c.write(a, setup.length, 2)  # the child copies what it writes
    c.exit()
    p.exit()
    assert m.kernel.buddy.nr_free == free + setup.length // PAGE
    assert m.kernel.mms == []
    assert_checked(m)


def test_zero_page_until_first_write(setup: Setup) -> None:
    m = setup.machine()
    p, q = m.spawn(), m.spawn()
    a, b = p.mmap(setup.length), q.mmap(setup.length)
    n = 4
    assert (p.read(a, n * PAGE) == 0).all() and (q.read(b, n * PAGE) == 0).all()
    pm, qm = p.pagemap(a, n * PAGE), q.pagemap(b, n * PAGE)
    assert pm["present"].all() and qm["present"].all()
    assert np.array_equal(pm["pfn"], qm["pfn"])  # one zero page (or huge zero page) for everyone
    if setup.pmd:
        assert (np.diff(pm["pfn"]) == 1).all()  # the huge zero page, mapped by a PMD
    else:
        assert (pm["pfn"] == pm["pfn"][0]).all()
    assert not pm["exclusive"].any() and not pm["writable"].any()
    assert p.rss()["anon"] == 0 and q.rss()["anon"] == 0
    s = m.stats()
    p.write(a + PAGE, PAGE, 5)
    r = row(p, a + PAGE)
    # The zero page is replaced by a fresh order-0 page (zeroed, not copied).
    assert r["order"] == 0 and r["writable"] and r["exclusive"] and r["pfn"] != pm["pfn"][1]
    assert delta(m, s, "page.copy") == 0
    assert p.rss()["anon"] == 1
    assert p.read(a, n * PAGE).tolist() == [0, 5, 0, 0]
    assert row(q, b + PAGE)["pfn"] == qm["pfn"][1]
    assert q.read(b + PAGE, PAGE)[0] == 0
    if setup.pmd:
        assert delta(m, s, "thp_split_pmd") == 1
    # Fork copies the zero-page mappings only once the VMA has anon pages.
    c = p.fork()
    assert c.read(a, n * PAGE).tolist() == [0, 5, 0, 0]
    assert_checked(m)
