"""Long-term pins (FOLL_PIN|FOLL_LONGTERM) and fork."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from scenario_util import PAGE, Setup, assert_checked, delta, row

import contpte
from contpte.mm.memmap import folio_ref_count


def test_pinned_page_is_copied_at_fork(setup: Setup) -> None:
    m, p, a = setup.populated(value=1)
    page = a + PAGE
    p.pin(page, PAGE)
    pinned_pfn = row(p, page)["pfn"]
    s = m.stats()
    c = p.fork()
    # The parent keeps its pinned page writable and exclusive (the pin stays coherent).
    pr, cr = row(p, page), row(c, page)
    assert pr["pfn"] == pinned_pfn and pr["writable"] and pr["exclusive"]
    assert cr["pfn"] != pinned_pfn and cr["present"] and cr["exclusive"]
    # folio_maybe_dma_pinned is per folio: every page of a pinned large folio is copied.
    assert delta(m, s, "fork.copy_page") == setup.folio_pages
    fa = page - (page - a) % setup.folio_bytes  # the pinned folio
    folio = c.pagemap(fa, setup.folio_bytes)
    parent_folio = p.pagemap(fa, setup.folio_bytes)
    assert not np.intersect1d(folio["pfn"], parent_folio["pfn"]).size
    assert parent_folio["writable"].all()
    # Pages of other folios are shared as usual.
    nxt = fa + setup.folio_bytes
    assert row(c, nxt)["pfn"] == row(p, nxt)["pfn"]
    # Writes stay private in both directions, without faults on the parent's side.
    s = m.stats()
    p.write(page, PAGE, 2)
    assert delta(m, s, "pgfault") == 0
    assert c.read(page, PAGE)[0] == 1
    c.write(page, PAGE, 3)
    assert p.read(page, PAGE)[0] == 2
    p.unpin(page, PAGE)
    assert_checked(m)


def test_read_pin_of_shared_page_unshares_first(setup: Setup) -> None:
    m, p, a = setup.populated(value=1)
    c = p.fork()
    shared_pfn = row(p, a)["pfn"]
    assert row(c, a)["pfn"] == shared_pfn
    s = m.stats()
    p.pin(a, PAGE, write=False)
    pr = row(p, a)
    # gup_must_unshare: the parent got its own copy, exclusive but still read-only.
    assert pr["pfn"] != shared_pfn and pr["exclusive"] and not pr["writable"]
    assert pr["order"] == 0
    assert delta(m, s, "fault.wp_copy") == 1
    assert row(c, a)["pfn"] == shared_pfn
    # The child's later write cannot leak into what the parent pinned.
    c.write(a, PAGE, 5)
    assert p.read(a, PAGE)[0] == 1 and c.read(a, PAGE)[0] == 5
    assert row(p, a)["pfn"] == pr["pfn"]
    p.unpin(a, PAGE)
    assert_checked(m)


def test_write_pin_of_shared_page_breaks_cow(setup: Setup) -> None:
    m, p, a = setup.populated(value=1)
    c = p.fork()
    shared_pfn = row(p, a)["pfn"]
    p.pin(a, PAGE, write=True)
    pr = row(p, a)
    assert pr["pfn"] != shared_pfn and pr["writable"] and pr["exclusive"]
    assert c.read(a, PAGE)[0] == 1
    p.unpin(a, PAGE)
    assert_checked(m)


def test_unpin_restores_refcount_and_exit_frees_everything(setup: Setup) -> None:
    m, p, a = setup.populated(value=1)
    head = int(m.kernel.memmap.head[row(p, a)["pfn"]])
    ref = folio_ref_count(m.kernel.memmap, head)
    p.pin(a, 2 * PAGE)
    assert folio_ref_count(m.kernel.memmap, head) > ref
    p.unpin(a, 2 * PAGE)
    assert folio_ref_count(m.kernel.memmap, head) == ref
    p.pin(a, PAGE)  # still pinned at exit: exit drops it
    free = m.kernel.buddy.nr_free
    p.exit()
    assert m.kernel.buddy.nr_free == free + setup.length // PAGE
    assert_checked(m)


def test_failed_write_pin_keeps_the_cow_copies_it_made(setup: Setup) -> None:
    """A write pin of a private file mapping that fails part-way (the range
    runs past the VMA: EFAULT) pins nothing, but the CoW faults it took stay
    (Linux does not undo faults): those pages keep the file's old content
    after a later write to the file through a shared mapping.  Found by a
    1M-step fuzz run (the isolation validator expected the new content)."""
    m = contpte.Machine(arch=setup.arch, memory="32M", mthp={"64K": "always"}, check=True)
    p = m.spawn()
    f = m.open_file("f", "1M", folio_size="64K")
    priv = p.mmap("64K", prot="rw", flags="private", file=f, offset=PAGE)
    shared = p.mmap("144K", prot="rw", flags="shared", file=f)
    with pytest.raises(OSError) as e:
        p.pin(priv + 14 * PAGE, 3 * PAGE)  # pages 14, 15 of the VMA, then past its end
    assert e.value.errno == errno.EFAULT
    assert p.mm.pinned == []
    # The two pages reached were copied (anon, the file's content of then).
    before = p.read(priv + 14 * PAGE, 2 * PAGE).copy()
    assert row(p, priv + 15 * PAGE)["present"]
    c = p.fork()
    c.write(shared + 16 * PAGE, PAGE, 0x3756)  # file page 16 = priv's page 15
    assert p.read(shared + 16 * PAGE, PAGE)[0] == 0x3756
    assert (c.read(priv + 14 * PAGE, 2 * PAGE) == before).all()
    assert (p.read(priv + 14 * PAGE, 2 * PAGE) == before).all()
    # An untouched page of the private mapping still shows the file.
    assert p.read(priv + 13 * PAGE, PAGE)[0] == p.read(shared + 14 * PAGE, PAGE)[0]
    assert_checked(m)
