"""Newer-kernel core-mm behaviours, default off (v6.12), as options on one code path.

``cow_reuse_large`` (v6.15, ``__wp_can_reuse_large_anon_folio``): a write
fault on a write-protected page of an exclusively mapped large anon folio
reuses the page instead of copying it.  ``huge_zero_wp_thp`` (v6.13,
``do_huge_zero_wp_pmd``): a write fault on the huge zero PMD maps a new
PMD THP instead of splitting.
"""

from __future__ import annotations

import pytest
from scenario_util import PAGE, PMD_SIZE, Setup, assert_checked, delta, row

import contpte
from contpte.mm.memmap import PageAnonExclusive, folio_ref_add, folio_ref_sub


@pytest.mark.parametrize("reuse", [False, True], ids=["v6.12", "cow_reuse_large"])
def test_write_after_exit(setup: Setup, reuse: bool) -> None:
    m, p, a = setup.populated(value=1, cow_reuse_large=reuse)
    c = p.fork()
    c.exit()
    r = row(p, a)
    assert not r["writable"] and r["exclusive"]
    s = m.stats()
    p.write(a, PAGE, 2)
    after = row(p, a)
    assert after["writable"] and after["exclusive"]
    if setup.pmd or not setup.large or (reuse and setup.large):
        # PMD THP and order-0 pages are reused by both; with the option a
        # page of a PTE-mapped large folio is reused too.
        assert after["pfn"] == r["pfn"] and after["order"] == setup.order
        assert delta(m, s, "page.copy") == 0
    else:
        assert after["pfn"] != r["pfn"] and after["order"] == 0
        assert delta(m, s, "fault.wp_copy") == 1 and delta(m, s, "page.copy") == 1
    if setup.large and not setup.pmd and reuse:
        # Only the faulting PTE becomes writable (no fault-around); the
        # other pages stay write-protected and not PageAnonExclusive.
        pm = p.pagemap(a, setup.folio_bytes)
        assert pm["writable"].tolist() == [True] + [False] * (setup.folio_pages - 1)
        mem = m.kernel.memmap
        pae = [PageAnonExclusive(mem, int(r["pfn"]) + i) for i in range(setup.folio_pages)]
        assert pae == [True] + [False] * (setup.folio_pages - 1)
        assert delta(m, s, "fault.wp_reuse") == 1
        s = m.stats()
        p.write(a + PAGE, PAGE, 3)  # the next page is reused as well
        assert delta(m, s, "fault.wp_reuse") == 1 and delta(m, s, "page.copy") == 0
        assert row(p, a + PAGE)["pfn"] == r["pfn"] + 1
    assert p.read(a, 2 * PAGE).tolist()[0] == 2
    assert_checked(m)


def test_no_reuse_while_shared(setup: Setup) -> None:
    """A folio the child still maps is copied, with or without the option."""
    if not setup.large or setup.pmd:
        pytest.skip("PTE-mapped large folios only")
    m, p, a = setup.populated(value=1, cow_reuse_large=True)
    c = p.fork()
    r = row(p, a)
    s = m.stats()
    p.write(a, PAGE, 2)
    after = row(p, a)
    assert after["pfn"] != r["pfn"] and after["order"] == 0
    assert delta(m, s, "page.copy") == 1
    assert c.read(a, PAGE).tolist() == [1]
    # The child still maps the whole folio; the parent all but one page:
    # shared between two mms, so the child copies too.
    s = m.stats()
    c.write(a + PAGE, PAGE, 3)
    assert delta(m, s, "page.copy") == 1
    assert_checked(m)


def test_no_reuse_with_extra_reference(setup: Setup) -> None:
    """refcount != mapcount (here: a pin) keeps the v6.12 copy."""
    if not setup.large or setup.pmd:
        pytest.skip("PTE-mapped large folios only")
    m, p, a = setup.populated(value=1, cow_reuse_large=True)
    c = p.fork()
    c.exit()
    mem = m.kernel.memmap
    folio = int(mem.head[row(p, a)["pfn"]])
    folio_ref_add(mem, folio, 1)  # a speculative reference (e.g. a GUP-fast lookup in flight)
    s = m.stats()
    p.write(a, PAGE, 2)
    assert delta(m, s, "page.copy") == 1
    folio_ref_sub(mem, folio, 1)
    m.check()


@pytest.mark.parametrize("thp_on_wp", [False, True], ids=["v6.12", "huge_zero_wp_thp"])
def test_write_to_huge_zero_page(arch: str, thp_on_wp: bool) -> None:
    m = contpte.Machine(arch=arch, memory="64M", thp="always", check=True, huge_zero_wp_thp=thp_on_wp)
    p = m.spawn()
    a = p.mmap(2 * PMD_SIZE)
    assert p.read(a, PAGE).tolist() == [0]
    zero = p.pagemap(a, PMD_SIZE)
    assert zero["present"].all() and zero["order"][0] == 9
    s = m.stats()
    p.write(a + 2 * PAGE, PAGE, 1)
    pm = p.pagemap(a, PMD_SIZE)
    if thp_on_wp:
        assert delta(m, s, "thp_fault_alloc") == 1 and delta(m, s, "thp_split_pmd") == 0
        assert (pm["order"] == 9).all() and pm["writable"].all()
        assert PageAnonExclusive(m.kernel.memmap, int(pm["pfn"][0]))
        assert pm["pfn"][0] != zero["pfn"][0]
    else:
        assert delta(m, s, "thp_fault_alloc") == 0 and delta(m, s, "thp_split_pmd") == 1
        assert (pm["order"] == 0).all()
        assert pm["writable"].sum() == 1
    assert p.read(a, 4 * PAGE).tolist() == [0, 0, 1, 0]
    assert_checked(m)


def test_huge_zero_wp_thp_falls_back_to_split(arch: str) -> None:
    """No PMD-size block free: split the huge zero PMD as v6.12 does."""
    m = contpte.Machine(arch=arch, memory="8M", thp="madvise", check=False, huge_zero_wp_thp=True)
    p = m.spawn()
    a = p.mmap(2 * PMD_SIZE)
    p.madvise(a, 2 * PMD_SIZE, "hugepage")
    assert p.read(a, PAGE).tolist() == [0]
    free = m.kernel.buddy.nr_free
    b = p.mmap(free * PAGE)
    p.write(b, free * PAGE, 1)
    for i in range(0, free, 2):
        p.munmap(b + i * PAGE, PAGE)
    assert m.kernel.buddy.largest_free_order() == 0
    s = m.stats()
    p.write(a, PAGE, 1)
    assert delta(m, s, "thp_fault_fallback") == 1 and delta(m, s, "thp_split_pmd") == 1
    pm = p.pagemap(a, PMD_SIZE)
    assert (pm["order"] == 0).all() and pm["writable"].sum() == 1
    assert p.read(a, 2 * PAGE).tolist() == [1, 0]
    m.check()


def test_oracle_chooses_the_version_of_the_live_kernel() -> None:
    from contpte.oracle.run import live_kernel_options

    assert live_kernel_options("6.12.9") == {"kernel": "6.12"}
    assert live_kernel_options("6.13.0-rc1") == {"kernel": "6.13"}
    assert live_kernel_options("6.18.44-fc-v769") == {"kernel": "6.18"}
    # Newer than the newest modelled version: the newest; older or unparsable: the default.
    assert live_kernel_options("7.9.1") == {"kernel": "7.2"}
    assert live_kernel_options("5.15.0") == {}
    assert live_kernel_options("unknown") == {}


def test_read_fault_maps_a_dirty_shmem_folio_dirty_from_6_16() -> None:
    """set_pte_range(): a read fault of a dirty shmem page through a shared writable mapping.

    Shared anonymous memory is shmem: no write-notify, so the fault maps the
    page writable, and from 6.16 dirty too (``pte_write(entry) &&
    folio_test_dirty``).  The child's exit then zaps a dirty file PTE:
    ``tlb_delay_rmap`` forces the flush before the PTL is dropped and
    ``tlb_flush_rmaps`` runs once (the arm64 oracle's Debian 6.16 and 7.2
    kernels count it for a tmpfs file; 6.12 does not).
    """
    got = {}
    for kernel in ("6.15", "6.16"):
        m = contpte.Machine(arch="generic", memory="64M", kernel=kernel)
        p = m.spawn()
        b = p.mmap(64 << 10, prot="rw", flags="shared|anonymous")
        p.write(b, PAGE, 2)
        c = p.fork()
        assert c.read(b, PAGE)[0] == 2
        row_ = c.pagemap(b, PAGE)[0]
        s = m.stats()
        c.exit()
        got[kernel] = (bool(row_["writable"]), bool(row_["dirty"]), m.stats_delta(s)["call.tlb_flush_rmaps"])
        m.check()
    assert got == {"6.15": (True, False, 0), "6.16": (True, True, 1)}


@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_a_shared_write_fault_maps_the_whole_file_folio_from_6_18(arch: str) -> None:
    """finish_fault(): the first write to a shared mapping of a 64K page-cache folio.

    v6.17 maps the faulting page only (a disk file's folio; do_shared_fault
    has no fault-around); from v6.18 the whole folio with one set_ptes(),
    which on arm64 writes an aligned block folded.  When part of the folio
    is mapped already, both map the one page.
    """
    got = {}
    for kernel in ("6.17", "6.18"):
        m = contpte.Machine(arch=arch, memory="64M", kernel=kernel)
        f = m.open_file("data", "128K", folio_size="64K")
        p = m.spawn()
        b = p.mmap(128 << 10, prot="rw", flags="shared", file=f)
        p.write(b + 3 * PAGE, PAGE, 7)
        pm = p.pagemap(b, 64 << 10)
        p.write(b + (64 << 10) + 5 * PAGE, PAGE, 8)  # the second folio
        p.write(b + (64 << 10) + 6 * PAGE, PAGE, 9)  # ... whose range is partly mapped at 6.17
        got[kernel] = (
            int(pm["present"].sum()),
            int(pm["cont"].sum()),
            int(p.pagemap(b + (64 << 10), 64 << 10)["present"].sum()),
        )
        assert p.read(b + 3 * PAGE, PAGE)[0] == 7
        m.check()
    cont = 16 if arch == "arm64" else 0
    assert got == {"6.17": (1, 0, 2), "6.18": (16, cont, 16)}


def test_a_tmpfs_file_is_written_dirty_and_maps_writable() -> None:
    """``open_file(fs="tmpfs")``: what the oracles create (a tmpfs file written whole).

    Its page cache holds the initial values dirty, a shared writable mapping
    has no write-notify (a read fault maps the PTE writable), and from 6.16
    that PTE is dirty too; a disk file's shared PTE starts read-only and clean.
    """
    got = {}
    for fs in ("disk", "tmpfs"):
        for kernel in ("6.15", "6.16"):
            m = contpte.Machine(arch="generic", memory="64M", kernel=kernel)
            f = m.open_file("data", "64K", folio_size="4K", fs=fs)
            p = m.spawn()
            b = p.mmap(64 << 10, prot="rw", flags="shared", file=f)
            value = int(p.read(b, PAGE)[0])
            r = p.pagemap(b, PAGE)[0]
            got[fs, kernel] = (bool(r["writable"]), bool(r["dirty"]))
            m.check()
        assert value == int(contpte.mm.shmem.file_initial_value(f.id, 0))
    assert got == {
        ("disk", "6.15"): (False, False),
        ("disk", "6.16"): (False, False),
        ("tmpfs", "6.15"): (True, False),
        ("tmpfs", "6.16"): (True, True),
    }
    with pytest.raises(contpte.ModelUsageError):
        contpte.Machine(memory="64M").open_file("x", "64K", fs="ext4")
