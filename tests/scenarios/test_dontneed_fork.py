"""MADV_DONTNEED of one page inside a large folio, then fork."""

from __future__ import annotations

import numpy as np
from scenario_util import PAGE, Setup, assert_checked, delta


def test_dontneed_one_page_then_fork(setup: Setup) -> None:
    m, p, a = setup.populated(value=1)
    n = setup.length // PAGE
    hole = a + 3 * PAGE
    s = m.stats()
    p.madvise(hole, PAGE, "dontneed")
    pm = p.pagemap(a, setup.length)
    assert not pm["present"][3]
    assert pm["present"].sum() == n - 1
    # The folio keeps its structure: the other pages still map it, at its order.
    assert (pm["order"][np.arange(n) != 3] == setup.order).all()
    assert p.rss()["anon"] == n - 1
    size = f"{setup.folio_bytes // 1024}kB"
    if setup.large:
        # A partially mapped large folio is queued for deferred split, once.
        assert delta(m, s, f"mthp.{size}.split_deferred") == 1
        # /proc/vmstat's event is for PMD-mappable folios only (v6.12).
        assert delta(m, s, "thp_deferred_split_page") == (1 if setup.pmd else 0)
    else:
        assert delta(m, s, "thp_deferred_split_page") == 0
    if setup.pmd:
        assert delta(m, s, "thp_split_pmd") == 1

    s = m.stats()
    c = p.fork()
    # Every present PTE was copied, the hole was not: the batch stopped there.
    copied_ptes = n - 1 - (setup.folio_pages if setup.pmd else 0)  # the intact PMD is copied whole
    assert delta(m, s, "fork.ptes") == copied_ptes
    cm = c.pagemap(a, setup.length)
    assert not cm["present"][3]
    assert np.array_equal(cm["pfn"][cm["present"]], pm["pfn"][pm["present"]])
    # Queued once only, even though the child maps the folio too.
    assert delta(m, s, f"mthp.{size}.split_deferred") == 0
    # The child reads zero in the hole (a fresh zero-page mapping), the data elsewhere.
    got = c.read(a, setup.length)
    exp = np.ones(n, dtype=np.uint64)
    exp[3] = 0
    assert np.array_equal(got, exp)
    assert np.array_equal(p.read(a, setup.length), exp)
    # Writing the hole in the child does not touch the parent.
    c.write(hole, PAGE, 8)
    assert p.read(hole, PAGE)[0] == 0
    assert c.pagemap(hole, PAGE)["order"][0] == 0
    assert_checked(m)


def test_dontneed_whole_folio_frees_it(setup: Setup) -> None:
    m, p, a = setup.populated(value=1)
    free = m.kernel.buddy.nr_free
    s = m.stats()
    p.madvise(a, setup.folio_bytes, "dontneed")
    assert m.kernel.buddy.nr_free == free + setup.folio_pages
    assert not p.pagemap(a, setup.folio_bytes)["present"].any()
    assert delta(m, s, "thp_deferred_split_page") == 0
    assert p.rss()["anon"] == (setup.length - setup.folio_bytes) // PAGE
    assert (p.read(a, setup.folio_bytes) == 0).all()
    assert_checked(m)
