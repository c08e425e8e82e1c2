"""``m.mthp_stats()``: hugepages-<size>kB/stats/ under the sysfs names, with the files of the version."""

from __future__ import annotations

import pytest

import contpte
from contpte.version import KERNEL_VERSIONS, MTHP_STAT_FILES

K64 = 64 << 10
SIX_TWELVE = [
    "anon_fault_alloc",
    "anon_fault_fallback",
    "anon_fault_fallback_charge",
    "swpout",
    "swpout_fallback",
    "shmem_alloc",
    "shmem_fallback",
    "shmem_fallback_charge",
    "split",
    "split_failed",
    "split_deferred",
    "nr_anon",
    "nr_anon_partially_mapped",
]


def test_the_files_follow_the_version() -> None:
    files = {
        k: list(contpte.Machine(memory="64M", check=False, kernel=k).mthp_stats()["64kB"])
        for k in KERNEL_VERSIONS
    }
    # mm/huge_memory.c DEFINE_MTHP_STAT_ATTR of 6.12: 13 files.
    assert files["6.12"] == SIX_TWELVE
    assert files["6.13"] == [*SIX_TWELVE, "zswpout", "swpin", "swpin_fallback", "swpin_fallback_charge"]
    assert files["7.1"] == files["6.13"]
    assert files["7.2"] == files["7.1"] + [
        "collapse_alloc",
        "collapse_alloc_failed",
        "collapse_exceed_swap_pte",
        "collapse_exceed_none_pte",
        "collapse_exceed_shared_pte",
    ]
    assert len(MTHP_STAT_FILES) == 22


@pytest.mark.parametrize(
    ("page_size", "sizes"),
    [("4K", ["16kB", "32kB", "64kB", "128kB", "256kB", "512kB", "1024kB", "2048kB"]), ("16K", None)],
)
def test_one_entry_per_anon_size(page_size: str, sizes: list[str] | None) -> None:
    m = contpte.Machine(memory="256M", check=False, page_size=page_size)
    got = list(m.mthp_stats())
    if sizes is not None:
        assert got == sizes
    else:
        # 16K pages: orders 2..11 (PTRS_PER_PTE 2048), 64kB .. 32768kB.
        assert got[0] == "64kB" and got[-1] == "32768kB" and len(got) == 10


def test_the_counted_stats_follow_the_kernel() -> None:
    m = contpte.Machine(memory="64M", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(4 * K64, prot="rw", flags="private|anonymous")
    p.write(a, 4 * K64, 1)
    s = m.mthp_stats()["64kB"]
    assert (s["anon_fault_alloc"], s["nr_anon"], s["split_deferred"], s["nr_anon_partially_mapped"]) == (
        4,
        4,
        0,
        0,
    )
    # A 4K hole in the first folio: deferred_split_folio(folio, partially_mapped=true).
    p.munmap(a + 4096, 4096)
    s = m.mthp_stats()["64kB"]
    assert (s["split_deferred"], s["nr_anon_partially_mapped"], s["split"]) == (1, 1, 0)
    # MADV_FREE of part of a pinned folio: split_folio() is refused (can_split_folio), counted as split_failed.
    b = a + K64
    p.pin(b, 4096)
    p.madvise(b + 8192, 4096, "free")
    s = m.mthp_stats()["64kB"]
    assert (s["split_failed"], s["split"], s["nr_anon"]) == (1, 0, 4)
    p.unpin(b, 4096)
    # MADV_FREE of part of an unpinned folio splits it.
    c = a + 2 * K64
    p.madvise(c + 8192, 4096, "free")
    s = m.mthp_stats()["64kB"]
    assert (s["split"], s["split_failed"], s["nr_anon"]) == (1, 1, 3)
    # Exit frees every folio: the partially mapped one leaves the deferred queue.
    p.exit()
    s = m.mthp_stats()["64kB"]
    assert (s["nr_anon"], s["nr_anon_partially_mapped"]) == (0, 0)
    assert all(
        v == 0 for k, v in s.items() if k.startswith(("swp", "zswp", "shmem", "collapse")) or "charge" in k
    )
    m.check()


def test_mthp_stats_agree_with_stats() -> None:
    m = contpte.Machine(memory="64M", mthp={"64K": "always", "32K": "always"})
    p = m.spawn()
    a = p.mmap(4 * K64, prot="rw", flags="private|anonymous")
    p.write(a, 4 * K64, 1)
    stats = m.stats()
    for size, files in m.mthp_stats().items():
        for name, value in files.items():
            key = f"mthp.{size}.{name}"
            if key in stats:
                assert stats[key] == value, key
