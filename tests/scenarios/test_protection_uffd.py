"""change_protection() users (mprotect, uffd-wp, NUMA hinting) and userfaultfd with large folios.

Each test checks a v6.12 behaviour the model once lacked (issue 19, items 4
and 5): the per-VMA flush of ``change_protection_range()``, huge PMDs going
to ``change_huge_pmd()`` for uffd-wp and NUMA hinting, the
``folio_is_file_lru()`` test of NUMA hinting, order-0 faults in a
uffd-armed VMA (``alloc_anon_folio()``) and the uffd-wp bit on the child's
copy of a pinned page (``copy_present_page()``).
"""

from __future__ import annotations

import pytest
from scenario_util import ARCHES, PAGE, PMD_SIZE, assert_checked, delta

import contpte
from contpte import UserfaultWP

MB = 1 << 20


@pytest.mark.parametrize("cpu", ["neoverse-n1", "neoverse-v2"])
def test_mprotect_over_two_vmas_flushes_each_vma(cpu: str) -> None:
    # Two neighbouring VMAs that cannot merge (different protections), 1M
    # each.  arm64 does not select MMU_GATHER_MERGE_VMAS: tlb_end_vma()
    # flushes each VMA's own range, never the whole ASID; one gather over
    # both would span 512 pages, which on a CPU without FEAT_TLBIRANGE is
    # MAX_DVM_OPS and becomes flush_tlb_mm().
    m = contpte.Machine(arch="arm64", cpu=cpu, memory="64M", check=True)
    p = m.spawn()
    a = p.mmap(2 * MB, "rw")
    p.write(a, 2 * MB, 1)
    p.mprotect(a + MB, MB, "rwx")
    assert len([v for v in p.maps() if v[0] >= a and v[1] <= a + 2 * MB]) == 2
    s = m.stats()
    p.mprotect(a, 2 * MB, "r")
    assert delta(m, s, "mmu_gather.flush") == 2
    assert delta(m, s, "tlbi.ASIDE1IS") == 0
    with pytest.raises(contpte.SegmentationFault):
        p.write(a + MB, PAGE, 2)
    assert_checked(m)


@pytest.mark.parametrize("arch", ARCHES)
def test_uffd_wp_of_a_pmd_thp_keeps_the_pmd_and_traps_writes(arch: str) -> None:
    m = contpte.Machine(arch=arch, memory="64M", thp="always", check=True)
    p = m.spawn()
    a = p.mmap(2 * PMD_SIZE)
    p.write(a, PMD_SIZE, 1)
    assert (p.pagemap(a, PMD_SIZE)["order"] == 9).all()
    s = m.stats()
    p.uffd_wp(a, PMD_SIZE, True)
    # An anon huge PMD is write-protected whole (change_huge_pmd), not split.
    assert delta(m, s, "thp_split_pmd") == 0
    pm = p.pagemap(a, PMD_SIZE)
    assert (pm["order"] == 9).all() and not pm["writable"].any()
    with pytest.raises(UserfaultWP):
        p.write(a + 5 * PAGE, PAGE, 2)
    assert int(p.read(a + 5 * PAGE, PAGE)[0]) == 1
    p.uffd_wp(a, PMD_SIZE, False)
    # Resolving leaves the write bit to the fault: an exclusive PMD is reused in place.
    p.write(a + 5 * PAGE, PAGE, 2)
    assert delta(m, s, "thp_split_pmd") == 0
    assert (p.pagemap(a, PMD_SIZE)["order"] == 9).all()
    assert int(p.read(a + 5 * PAGE, PAGE)[0]) == 2
    assert_checked(m)


@pytest.mark.parametrize("arch", ARCHES)
def test_numa_hinting_of_a_pmd_thp(arch: str) -> None:
    m = contpte.Machine(arch=arch, memory="64M", thp="always", check=True)
    p = m.spawn()
    a = p.mmap(2 * PMD_SIZE)
    p.write(a, PMD_SIZE, 3)
    s = m.stats()
    p.numa_hint(a, PMD_SIZE)
    assert delta(m, s, "numa_huge_pte_updates") == 1
    assert delta(m, s, "numa_pte_updates") == PMD_SIZE // PAGE
    assert delta(m, s, "thp_split_pmd") == 0
    p.write(a + PAGE, PAGE, 4)  # one hinting fault restores the whole PMD
    assert delta(m, s, "numa_hint_faults") == 1
    pm = p.pagemap(a, PMD_SIZE)
    assert (pm["order"] == 9).all() and pm["writable"].all()
    assert [int(v) for v in p.read(a, 2 * PAGE)] == [3, 4]
    assert_checked(m)


@pytest.mark.parametrize("arch", ARCHES)
def test_numa_hinting_skips_dirty_file_lru_folios_only(arch: str) -> None:
    # folio_is_file_lru(): shmem is swap-backed, so its dirty pages are
    # hinted; a regular file's dirty page-cache folios are skipped.
    m = contpte.Machine(arch=arch, memory="64M", check=True)
    p = m.spawn()
    sh = p.mmap(16 * PAGE, "rw", "shared|anonymous")
    p.write(sh, 16 * PAGE, 1)
    f = m.open_file("f", 16 * PAGE)
    fm = p.mmap(16 * PAGE, "rw", "shared", file=f)
    p.write(fm, 16 * PAGE, 2)
    s = m.stats()
    p.numa_hint(fm, 16 * PAGE)
    assert delta(m, s, "numa_pte_updates") == 0
    p.numa_hint(sh, 16 * PAGE)
    assert delta(m, s, "numa_pte_updates") == 16
    assert int(p.read(sh, PAGE)[0]) == 1
    assert delta(m, s, "numa_hint_faults") == 1
    assert_checked(m)


@pytest.mark.parametrize("arch", ARCHES)
def test_uffd_armed_vma_faults_order_0(arch: str) -> None:
    m = contpte.Machine(arch=arch, memory="64M", mthp={"64K": "always"}, check=True)
    p = m.spawn()
    a = p.mmap(256 * 1024)
    p.uffd_wp(a, 128 * 1024, True)  # registers the first half (nothing to protect yet)
    s = m.stats()
    p.write(a, 256 * 1024, 1)
    pm = p.pagemap(a, 256 * 1024)
    half = 128 * 1024 // PAGE
    # alloc_anon_folio(): userfaultfd_armed() wants per-page fault fidelity.
    assert (pm["order"][:half] == 0).all() and not pm["cont"][:half].any()
    assert (pm["order"][half:] == 4).all()
    assert delta(m, s, "mthp.64kB.anon_fault_alloc") == 2
    assert_checked(m)


@pytest.mark.parametrize("arch", ARCHES)
def test_fork_copy_of_pinned_page_keeps_uffd_wp(arch: str) -> None:
    m = contpte.Machine(arch=arch, memory="64M", check=True)
    p = m.spawn()
    a = p.mmap(16 * PAGE)
    p.write(a, 16 * PAGE, 1)
    p.pin(a, PAGE)
    p.uffd_wp(a, 16 * PAGE, True)
    s = m.stats()
    c = p.fork()
    assert delta(m, s, "fork.copy_page") == 1
    # The child's own copy of the pinned page is write-protected for the
    # monitor like every other page it inherited.
    with pytest.raises(UserfaultWP):
        c.write(a, PAGE, 2)
    with pytest.raises(UserfaultWP):
        c.write(a + PAGE, PAGE, 2)
    assert int(c.read(a, PAGE)[0]) == 1
    p.unpin(a, PAGE)
    assert_checked(m)
