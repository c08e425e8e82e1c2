"""Kernel versions: one axis that selects every modelled behaviour that changed.

``Machine(kernel="6.12")`` (the default, ``KERNEL_VERSION``) up to
``kernel="7.2"``.  Each entry of ``CHANGES`` is one kernel change that this
project models: the Machine option that carries it, the mainline release it
first appeared in, the kernel function and the commit.  A version turns on
every change up to it; a Machine option given explicitly still overrides
its one behaviour (``Machine(kernel="7.2", cow_reuse_large=False)``).

The releases are mainline's; a stable or distribution kernel that
backported a change behaves as the later version for that one behaviour
(say so with the option).  docs/versions.md lists the changes with what
each does to the counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ModelUsageError

__all__ = [
    "KERNEL_VERSION",
    "KERNEL_VERSIONS",
    "CHANGES",
    "Change",
    "check_kernel",
    "kernel_options",
    "version_key",
    "nearest_kernel",
    "MTHP_STAT_FILES",
    "mthp_stat_files",
]

KERNEL_VERSION = "6.12"
"""The default kernel version (mainline Linux release) the model follows."""

KERNEL_VERSIONS = ("6.12", "6.13", "6.14", "6.15", "6.16", "6.17", "6.18", "6.19", "7.0", "7.1", "7.2")
"""Every version ``Machine(kernel=...)`` accepts, oldest first."""


@dataclass(frozen=True)
class Change:
    """One modelled kernel change and the mainline release that has it."""

    option: str
    """The Machine option that carries the behaviour (``MM_OPTIONS`` or arm64's ``ARCH_OPTIONS``)."""
    since: str
    """The first mainline release with the change."""
    where: str
    """The kernel function(s) it changed."""
    commit: str
    """Commit id and subject (and author) in mainline."""
    before: Any = False
    """The option's value in the versions before ``since``."""
    after: Any = True
    """The option's value from ``since`` on."""
    arch: str | None = None
    """``"arm64"`` for a change of the arm64 backend (ignored by the other backends)."""


CHANGES: tuple[Change, ...] = (
    Change(
        "huge_zero_wp_thp",
        "6.13",
        "mm/huge_memory.c do_huge_zero_wp_pmd()",
        "1ced09e0331f 'mm: allocate THP on hugezeropage wp-fault' (Dev Jain)",
    ),
    Change(
        "maybe_mapped_shared",
        "6.15",
        "include/linux/mm.h folio_maybe_mapped_shared() in mm/madvise.c and mm/mprotect.c",
        "'mm: MM owner tracking for large folios (!hugetlb) + CONFIG_NO_PAGE_MAPCOUNT' series (David Hildenbrand)",
    ),
    Change(
        "cow_reuse_large",
        "6.15",
        "mm/memory.c __wp_can_reuse_large_anon_folio()",
        "1da190f4d0a6 'mm: Copy-on-Write (COW) reuse support for PTE-mapped THP' (David Hildenbrand)",
    ),
    Change(
        "lazyfree_unmap_batch",
        "6.15",
        "mm/rmap.c try_to_unmap_one(), folio_unmap_pte_batch()",
        "'mm: support batched unmap for lazyfree large folios during reclamation' (Barry Song); "
        "commit id not checked: absent in 6.12.8, present in 6.17.8",
    ),
    Change(
        "fpb_cap_at_folio_end",
        "6.15",
        "mm/internal.h folio_pte_batch()",
        "7b08b74f3d99 'mm: fix folio_pte_batch() on XEN PV' (Petr Vaněk, David Hildenbrand; 6.12.y: 6.12.29)",
    ),
    Change(
        "fault_map_dirty",
        "6.16",
        "mm/memory.c set_pte_range()",
        "commit not identified: absent in 6.12.8, present in 6.17.8 and in Debian's 6.16.12 (the arm64 "
        "oracle sees it); the version is an upper bound",
    ),
    Change(
        "prot_numa_batch_skip",
        "6.17",
        "mm/mprotect.c change_pte_range() (MM_CP_PROT_NUMA)",
        "'mm: optimize mprotect() for MM_CP_PROT_NUMA by batch-skipping PTEs' (Dev Jain)",
    ),
    Change(
        "mprotect_batch",
        "6.17",
        "mm/mprotect.c change_pte_range(), change_present_ptes(), commit_anon_folio_batch()",
        "cac1db8c3aad 'mm: optimize mprotect() by PTE batching' (Dev Jain)",
    ),
    Change(
        "modify_prot_ptes_opt",
        "6.17",
        "arch/arm64/mm/mmu.c modify_prot_start_ptes(), modify_prot_commit_ptes()",
        "7efa1cd5f89b 'arm64: add batched versions of ptep_modify_prot_start/commit' (Dev Jain)",
        arch="arm64",
    ),
    Change(
        "mremap_pte_batch",
        "6.17",
        "mm/mremap.c move_ptes(), mremap_folio_pte_batch()",
        "'mm: Optimize mremap() by PTE batching' (Dev Jain; commit id not verified here)",
    ),
    Change(
        "bbml2_noabort",
        "6.17",
        "arch/arm64/mm/contpte.c contpte_convert(); arch/arm64/kernel/cpufeature.c has_bbml2_noabort()",
        "83bbd6be7d17 'arm64/mm: Elide tlbi in contpte_convert() under BBML2' (Mikolaj Lenczewski), "
        "with 'arm64: Add BBM Level 2 cpu feature'",
        before=False,
        after="cpu",
        arch="arm64",
    ),
    Change(
        "ptep_get_early_exit",
        "6.17",
        "arch/arm64/mm/contpte.c contpte_ptep_get(), contpte_ptep_get_lockless()",
        "'arm64/mm: Optimize loop to reduce redundant operations of contpte_ptep_get' (Xavier Xia; id not checked)",
        arch="arm64",
    ),
    Change(
        "khugepaged_batch_copy",
        "6.17",
        "mm/khugepaged.c __collapse_huge_page_copy_succeeded()",
        "'khugepaged: optimize __collapse_huge_page_copy_succeeded() by PTE batching' (Dev Jain); "
        "commit id not identified: absent in 6.12.8, present in 6.17.8 (6.13-6.16 not checked)",
    ),
    Change(
        "finish_fault_whole_folio",
        "6.18",
        "mm/memory.c finish_fault()",
        "commit not identified: a disk file's large folio is mapped whole in 6.18.15, not in 6.17.8 "
        "(where only shmem/tmpfs folios are)",
    ),
    Change(
        "khugepaged_ro_collapse",
        "6.18",
        "mm/khugepaged.c hpage_collapse_scan_pmd(), __collapse_huge_page_isolate()",
        "SCAN_PAGE_RO removed; commit id not identified: present in 6.17.8, absent in 6.18.15",
    ),
    Change(
        "tlbi_nobroadcast",
        "6.19",
        "arch/arm64/include/asm/pgtable.h flush_tlb_fix_spurious_fault[_pmd](), arch/arm64/mm/fault.c "
        "__ptep_set_access_flags(), arch/arm64/mm/contpte.c contpte_ptep_set_access_flags(), "
        "asm/tlbflush.h local_flush_tlb_page[_nonotify](), local_flush_tlb_contpte()",
        "'arm64, tlbflush: don't TLBI broadcast if page reused in write fault' (Huang Ying; commit id "
        "not identified): absent in 6.18.15, present in 6.19.11 (7.2: __flush_tlb_range(..., TLBF_NOBROADCAST))",
        arch="arm64",
    ),
    Change(
        "spurious_fault_pmd",
        "6.19",
        "mm/memory.c fix_spurious_fault(), __handle_mm_fault(); mm/huge_memory.c huge_pmd_set_accessed()",
        "'mm: add spurious fault fixing support for huge pmd' (Huang Ying; commit id not identified): "
        "absent in 6.18.15, present in 6.19.11",
    ),
    Change(
        "pte_flags_need_flush",
        "6.19",
        "arch/arm64/include/asm/tlbflush.h pte_needs_flush(), huge_pmd_needs_flush() in mm/mprotect.c "
        "prot_commit_flush_ptes() and mm/huge_memory.c change_huge_pmd()",
        "commit not identified: absent in 6.18.15, present in 6.19.11",
        arch="arm64",
    ),
    Change(
        "lazyfree_batch_respect_write",
        "6.19",
        "mm/rmap.c folio_unmap_pte_batch()",
        "'mm/rmap: fix incorrect pte restoration for lazyfree folios' (Dev Jain, LKML 2026-02, fixing "
        "354dffd29575); commit id not checked: absent in 6.18.15, present in 6.19.11, 7.1.13 and 7.2.6",
    ),
    Change(
        "access_flags_subptes",
        "7.0",
        "arch/arm64/mm/contpte.c contpte_ptep_set_access_flags()",
        "97c5550b7631 'arm64: contpte: fix set_access_flags() no-op check for SMMU/ATS faults' "
        "(2026-03-05, in the 7.0 rc cycle: 6.19.6 lacks it, 7.1.3 has it; 7.0 not checked)",
        arch="arm64",
    ),
    Change(
        "young_ptes_batch",
        "7.0",
        "mm/rmap.c folio_referenced_one(); include/linux/pgtable.h clear_flush_young_ptes(); "
        "arch/arm64/mm/contpte.c contpte_clear_flush_young_ptes(), contpte_test_and_clear_young_ptes()",
        "commit id not identified: absent in 6.19.11, present in 7.1.13 (7.0 not checked)",
    ),
    Change(
        "khugepaged_lazyfree_skip",
        "7.1",
        "mm/khugepaged.c hpage_collapse_scan_pmd(), __collapse_huge_page_isolate()",
        "SCAN_PAGE_LAZYFREE added; commit id not identified: absent in 6.19.11, present in 7.1.13 "
        "(7.0 not checked)",
    ),
    Change(
        "swapin_via_swapcache",
        "7.1",
        "mm/memory.c do_swap_page(), should_try_to_free_swap(); mm/swap_state.c swapin_folio()",
        "'mm, swap' swap-table series (Kairui Song); commit not identified: absent in 6.19.11, present in 7.1.13",
    ),
    Change(
        "khugepaged_mthp",
        "7.2",
        "mm/khugepaged.c collapse_scan_pmd(), mthp_collapse(), collapse_huge_page(), collapse_max_ptes_*()",
        "Nico Pache's series 'khugepaged: mTHP support'; commit ids not identified: absent in 7.1.13, "
        "present in 7.2.6",
    ),
)
"""The modelled changes after v6.12, oldest first."""


def version_key(version: str) -> tuple[int, int]:
    """``"6.18"`` or ``"6.18.0-1-amd64"`` -> ``(6, 18)``; ValueError if it has no major.minor."""
    head = version.split("-", 1)[0].split(".")
    if len(head) < 2 or not head[0].isdigit() or not head[1].isdigit():
        raise ValueError(f"not a kernel version: {version!r}")
    return int(head[0]), int(head[1])


def check_kernel(kernel: Any) -> str:
    """``kernel`` if it is a known version; else ModelUsageError listing the known ones."""
    if isinstance(kernel, str) and kernel in KERNEL_VERSIONS:
        return kernel
    raise ModelUsageError(
        f"kernel={kernel!r}: unknown kernel version; expected one of {', '.join(KERNEL_VERSIONS)}"
    )


def nearest_kernel(release: str) -> str | None:
    """The newest modelled version not newer than ``release`` (``uname -r``), None if older or unparsable."""
    try:
        key = version_key(release)
    except ValueError:
        return None
    fit = [v for v in KERNEL_VERSIONS if version_key(v) <= key]
    return fit[-1] if fit else None


def kernel_options(kernel: str, arch: str) -> dict[str, Any]:
    """The Machine options that make the model behave as ``kernel`` on ``arch``."""
    key = version_key(check_kernel(kernel))
    return {
        c.option: c.after if key >= version_key(c.since) else c.before
        for c in CHANGES
        if c.arch is None or c.arch == arch
    }


MTHP_STAT_FILES: tuple[tuple[str, str], ...] = (
    ("anon_fault_alloc", "6.12"),
    ("anon_fault_fallback", "6.12"),
    ("anon_fault_fallback_charge", "6.12"),
    ("swpout", "6.12"),
    ("swpout_fallback", "6.12"),
    ("shmem_alloc", "6.12"),
    ("shmem_fallback", "6.12"),
    ("shmem_fallback_charge", "6.12"),
    ("split", "6.12"),
    ("split_failed", "6.12"),
    ("split_deferred", "6.12"),
    ("nr_anon", "6.12"),
    ("nr_anon_partially_mapped", "6.12"),
    ("zswpout", "6.13"),
    ("swpin", "6.13"),
    ("swpin_fallback", "6.13"),
    ("swpin_fallback_charge", "6.13"),
    ("collapse_alloc", "7.2"),
    ("collapse_alloc_failed", "7.2"),
    ("collapse_exceed_swap_pte", "7.2"),
    ("collapse_exceed_none_pte", "7.2"),
    ("collapse_exceed_shared_pte", "7.2"),
)
"""The files of ``/sys/kernel/mm/transparent_hugepage/hugepages-<size>kB/stats/`` and the version that has each.

Read from ``mm/huge_memory.c`` (``DEFINE_MTHP_STAT_ATTR``) of Debian's
6.12.8, 6.17.8, 6.18.15, 6.19.11, 7.1.13 and 7.2.6 sources: the 6.12 set is
in all; ``zswpout``, ``swpin``, ``swpin_fallback`` and
``swpin_fallback_charge`` are absent from 6.12 and present from 6.17 on,
and dated 6.13 from the kernel's history (not checked against 6.13-6.16
sources); the ``collapse_*`` files are absent from 7.1.13 and present in
7.2.6.
"""


def mthp_stat_files(kernel: str) -> tuple[str, ...]:
    """The per-size stat files ``kernel`` has, in ``MTHP_STAT_FILES`` order."""
    key = version_key(check_kernel(kernel))
    return tuple(name for name, since in MTHP_STAT_FILES if key >= version_key(since))
