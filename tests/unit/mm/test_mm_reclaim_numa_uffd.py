"""Model features added for verification at scale: reclaim, NUMA hinting, uffd-wp; and two fixes.

Each test runs on both backends with every validator on.
"""

from __future__ import annotations

import errno

import pytest

from contpte import Machine, UserfaultWP

ARCHES = ["arm64", "generic"]
K = 1024


def machine(arch: str) -> Machine:
    return Machine(arch=arch, memory="32M", cpus=2, mthp={"64K": "always"})


@pytest.mark.parametrize("arch", ARCHES)
def test_reclaim_discards_clean_lazyfree(arch: str) -> None:
    m = machine(arch)
    p = m.spawn()
    a = p.mmap(64 * K)
    p.write(a, 64 * K, 1)
    p.madvise(a, 64 * K, "free")
    assert m.reclaim() == 16
    assert p.rss()["anon"] == 0
    assert list(p.read(a, 64 * K)) == [0] * 16
    assert m.stats()["pglazyfreed"] == 16


@pytest.mark.parametrize("arch", ARCHES)
def test_reclaim_keeps_lazyfree_written_again(arch: str) -> None:
    m = machine(arch)
    p = m.spawn()
    a = p.mmap(64 * K)
    p.write(a, 64 * K, 1)
    p.madvise(a, 64 * K, "free")
    p.write(a + 20 * K, 4 * K, 2)
    m.reclaim()
    got = [int(v) for v in p.read(a, 64 * K)]
    assert got[5] == 2  # the write after MADV_FREE is never lost
    assert all(v in (0, 1) for i, v in enumerate(got) if i != 5)
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_reclaim_writes_back_dirty_file_pages(arch: str) -> None:
    m = machine(arch)
    f = m.open_file("data", 256 * K)
    p = m.spawn()
    a = p.mmap(256 * K, "rw", "shared", file=f)
    p.write(a + 8 * K, 4 * K, 0xABC)
    p.read(a + 128 * K, 4 * K)
    assert m.reclaim() == 0  # mapped young: kept once (folio_check_references)
    assert m.reclaim() > 0
    assert p.rss()["file"] == 0
    assert int(p.read(a + 8 * K, 4 * K)[0]) == 0xABC  # read back from the backing store
    assert m.stats()["pgpgout"] >= 1


@pytest.mark.parametrize("arch", ARCHES)
def test_numa_hinting_fault_restores(arch: str) -> None:
    m = machine(arch)
    p = m.spawn()
    a = p.mmap(64 * K)
    p.write(a, 64 * K, 3)
    p.numa_hint(a, 64 * K)
    rows = p.pagemap(a, 64 * K)
    assert rows["present"].all() and not rows["writable"].any()
    p.write(a + 4 * K, 4 * K, 4)
    assert m.stats()["numa_hint_faults"] == 1
    rows = p.pagemap(a, 64 * K)
    assert rows["writable"].all()  # the whole folio rebuilt, exclusive: writable again
    assert [int(v) for v in p.read(a, 8 * K)] == [3, 4]


@pytest.mark.parametrize("arch", ARCHES)
def test_uffd_wp(arch: str) -> None:
    m = machine(arch)
    p = m.spawn()
    a = p.mmap(64 * K)
    p.write(a, 64 * K, 1)
    p.uffd_wp(a, 64 * K, True)
    with pytest.raises(UserfaultWP):
        p.write(a + 4 * K, 4 * K, 2)
    c = p.fork()  # UFFD_FEATURE_EVENT_FORK: the child keeps the protection
    with pytest.raises(UserfaultWP):
        c.write(a, 4 * K, 2)
    p.uffd_wp(a, 64 * K, False)
    p.write(a + 4 * K, 4 * K, 2)
    assert int(c.read(a + 4 * K, 4 * K)[0]) == 1
    f = m.open_file("f", 64 * K)
    b = p.mmap(64 * K, "r", "private", file=f)
    with pytest.raises(OSError) as ei:
        p.uffd_wp(b, 64 * K, True)
    assert ei.value.errno == errno.EINVAL


@pytest.mark.parametrize("arch", ARCHES)
def test_fork_of_numa_hinted_block_regression(arch: str) -> None:
    """Found by `contpte fuzz`: v6.12's pte_mkcont() set PTE_TYPE_PAGE, making the child's
    batch-copied PROT_NONE (NUMA hinting) PTEs valid, so the child's next access faulted forever."""
    from contpte.workloads.scenario import parse, run  # the workloads layer (above mm)

    sc = parse(
        f"""machine arch={arch} memory=32M mthp.64K=always check=true
p = spawn
buf = p mmap 64K rw private|anonymous
p write buf 64K 7
p numa buf 64K
c = p fork
c read buf 4K expect=7
p read buf 4K expect=7
c = p fork
p mprotect buf 64K none
c2 = p fork
p mprotect buf 64K rw
c2 read buf 4K  !SIGSEGV
""",
        "regression.scn",
    )
    assert [o.failed for o in run(sc)] == [None] * len(sc.steps)


@pytest.mark.parametrize("arch", ARCHES)
def test_split_huge_pmd_maps_page_descriptors_regression(arch: str) -> None:
    """Found by `contpte fuzz` after the pte_mkcont() fix: the PMD split built its PTEs from
    the invalidated block descriptor instead of the VMA's protection (__split_huge_pmd_locked)."""
    from contpte.workloads.scenario import parse, run  # the workloads layer (above mm)

    sc = parse(
        f"""machine arch={arch} memory=32M thp=always mthp.2M=always check=true
p = spawn
m = p mmap 2M rw private|anonymous
p write m+576K 4K 5
p madvise m+680K 4K hugepage
p read m+76K 4K expect=0
p read m+576K 4K expect=5
""",
        "split.scn",
    )
    outs = run(sc)
    assert [o.failed for o in outs] == [None] * len(sc.steps)
    assert outs[2].counters.get("thp_fault_alloc") == 1 and outs[3].counters.get("thp_split_pmd") == 1
