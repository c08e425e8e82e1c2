"""Private and shared file mappings over a page cache of large folios."""

from __future__ import annotations

import numpy as np
import pytest
from scenario_util import PAGE, Setup, assert_checked, delta, row

from contpte.mm.memmap import folio_nr_pages, folio_test_dirty
from contpte.mm.shmem import file_initial_value


@pytest.fixture
def file_folio(setup: Setup) -> str:
    """The file's page-cache folio size follows the scenario's folio size."""
    return setup.folio


@pytest.fixture
def FILE_SIZE(setup: Setup) -> int:
    """Two folios at least (2M: 4M)."""
    return setup.length


def _initial(fid: int, first: int, n: int) -> np.ndarray:
    return np.array([file_initial_value(fid, i) for i in range(first, first + n)], dtype=np.uint64)


def test_private_write_cows_file_unchanged_for_others(setup: Setup, file_folio: str, FILE_SIZE: int) -> None:
    m = setup.machine()
    f = m.open_file("data", FILE_SIZE, folio_size=file_folio)
    p, q = m.spawn(), m.spawn()
    a = p.mmap(FILE_SIZE, flags="private", file=f)
    b = q.mmap(FILE_SIZE, prot="r", flags="shared", file=f)
    assert np.array_equal(p.read(a, FILE_SIZE), _initial(f.id, 0, FILE_SIZE // PAGE))
    cache_pfn = row(p, a + PAGE)["pfn"]
    assert not row(p, a + PAGE)["writable"]
    file_pages = p.rss()["file"]
    p.write(a + PAGE, PAGE, 77)
    r = row(p, a + PAGE)
    assert r["pfn"] != cache_pfn and r["order"] == 0 and r["writable"] and r["exclusive"]
    assert p.rss()["file"] == file_pages - 1 and p.rss()["anon"] == 1
    assert p.read(a + PAGE, PAGE)[0] == 77
    assert np.array_equal(q.read(b, 2 * PAGE), _initial(f.id, 0, 2))
    assert row(q, b + PAGE)["pfn"] == cache_pfn
    # A third, new private mapper sees the file, not p's private copy.
    r3 = m.spawn()
    c = r3.mmap(FILE_SIZE, flags="private", file=f)
    assert r3.read(c + PAGE, PAGE)[0] == file_initial_value(f.id, 1)
    assert_checked(m)


def test_shared_write_visible_and_dirties_page_cache(setup: Setup, file_folio: str, FILE_SIZE: int) -> None:
    m = setup.machine()
    f = m.open_file("data", FILE_SIZE, folio_size=file_folio)
    p, q, r = m.spawn(), m.spawn(), m.spawn()
    a = p.mmap(FILE_SIZE, flags="shared", file=f)
    b = q.mmap(FILE_SIZE, flags="shared", file=f)
    c = r.mmap(FILE_SIZE, flags="private", file=f)
    assert r.read(c + 2 * PAGE, PAGE)[0] == file_initial_value(f.id, 2)
    p.read(a, 4 * PAGE)
    # A read fault maps a file with writeback read-only (write-notify) ...
    assert not p.pagemap(a, 4 * PAGE)["writable"].any()
    mem = m.kernel.memmap
    folio = int(mem.head[row(p, a + 2 * PAGE)["pfn"]])
    assert not folio_test_dirty(mem, folio)
    s = m.stats()
    p.write(a + 2 * PAGE, PAGE, 88)
    # ... so the first write faults and dirties the page-cache folio at once.
    assert delta(m, s, "pgfault") == 1
    assert folio_test_dirty(mem, folio)
    pr = row(p, a + 2 * PAGE)
    assert pr["writable"] and pr["dirty"] and pr["pfn"] == folio + (2 % folio_nr_pages(mem, folio))
    # Every mapper sees it, shared and (not yet CoWed) private alike.
    assert q.read(b + 2 * PAGE, PAGE)[0] == 88
    assert r.read(c + 2 * PAGE, PAGE)[0] == 88
    q.write(b + 3 * PAGE, PAGE, 99)
    assert p.read(a + 3 * PAGE, PAGE)[0] == 99
    # Shared file pages are file RSS, never anon.
    assert p.rss()["anon"] == 0 and q.rss()["anon"] == 0
    # Unmapping keeps the data in the page cache for the next mapper.
    p.munmap(a, FILE_SIZE)
    q.munmap(b, FILE_SIZE)
    t = m.spawn()
    d = t.mmap(FILE_SIZE, prot="r", flags="shared", file=f)
    assert list(t.read(d + 2 * PAGE, 2 * PAGE)) == [88, 99]
    assert_checked(m)


def test_fault_around_maps_whole_folio_ranges(setup: Setup, file_folio: str, FILE_SIZE: int) -> None:
    m = setup.machine()
    f = m.open_file("data", FILE_SIZE, folio_size=file_folio)
    warm = m.spawn()
    w = warm.mmap(FILE_SIZE, prot="r", flags="shared", file=f)
    warm.read(w, FILE_SIZE)  # the whole file is now in the page cache
    p = m.spawn()
    a = p.mmap(FILE_SIZE, prot="r", flags="private", file=f)
    # a is PMD-aligned (the file mapping is placed below the first), so the
    # fault-around window (fault_around_bytes = 64K) is aligned too.
    assert a % (64 << 10) == 0
    s = m.stats()
    target = a + 5 * (64 << 10) + 7 * PAGE
    assert p.read(target, PAGE)[0] == file_initial_value(f.id, (target - a) // PAGE)
    assert delta(m, s, "pgfault") == 1
    win = p.pagemap(a + 5 * (64 << 10), 64 << 10)
    assert win["present"].all()
    assert p.pagemap(a, 5 * (64 << 10))["present"].sum() == 0
    assert p.rss()["file"] == 16
    assert delta(m, s, "fault.around_pages") == 16
    # Consecutive pfns, the file's folio order; on arm64 one contiguous block
    # when one folio covers the window (one set_ptes), none for smaller folios
    # (a set_ptes per folio, and contpte_try_fold needs one folio per block).
    assert (np.diff(win["pfn"]) == 1).all()
    assert (win["order"] == setup.order).all()
    folded = setup.arch == "arm64" and setup.folio_bytes >= 64 << 10
    assert (win["cont"] == folded).all()
    assert np.array_equal(p.read(a + 5 * (64 << 10), 64 << 10), _initial(f.id, 5 * 16, 16))
    assert_checked(m)


def test_mprotect_rw_of_shared_file_upgrades_only_dirty_ptes(
    setup: Setup, file_folio: str, FILE_SIZE: int
) -> None:
    """can_change_pte_writable on a write-notify mapping: dirty PTEs only."""
    m = setup.machine()
    f = m.open_file("data", FILE_SIZE, folio_size=file_folio)
    p = m.spawn()
    a = p.mmap(FILE_SIZE, flags="shared", file=f)
    p.read(a, 4 * PAGE)
    p.write(a + PAGE, PAGE, 5)
    p.mprotect(a, FILE_SIZE, "r")
    assert not p.pagemap(a, 4 * PAGE)["writable"].any()
    p.mprotect(a, FILE_SIZE, "rw")
    # On arm64 the mprotect(r) refolded the block (its last PTE was rewritten)
    # and unfolding it again smears the block's dirty bit over all 16 PTEs
    # (contpte_convert): the whole block counts as dirty, as on a real kernel.
    smeared = setup.arch == "arm64" and setup.folio_bytes >= 64 << 10
    exp = [True] * 4 if smeared else [False, True, False, False]
    assert p.pagemap(a, 4 * PAGE)["writable"].tolist() == exp
    s = m.stats()
    p.write(a + 2 * PAGE, PAGE, 6)  # clean: must fault so the folio gets dirtied
    assert delta(m, s, "pgfault") == (0 if smeared else 1)
    assert p.read(a, 4 * PAGE).tolist()[1:3] == [5, 6]
    assert_checked(m)
