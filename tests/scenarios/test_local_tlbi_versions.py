"""arm64's local (non-broadcast) TLB invalidation of v6.19.

- ``tlbi_nobroadcast`` (arm64, "arm64, tlbflush: don't TLBI broadcast if page
  reused in write fault"): ``__ptep_set_access_flags()`` with ``dirty``
  flushes with ``local_flush_tlb_page()`` (DSB NSHST, TLBI VALE1, DSB NSH),
  ``contpte_ptep_set_access_flags()`` with ``local_flush_tlb_contpte()``, and
  ``flush_tlb_fix_spurious_fault()`` (a nop before) with
  ``local_flush_tlb_page_nonotify()``: another CPU's stale read-only entry
  makes its next write fault spuriously, and that fault flushes it there;
- ``spurious_fault_pmd`` (core mm, same series): the PMD form of that fix;
- ``pte_flags_need_flush`` (arm64): ``pte_needs_flush()`` is false for a
  change of software bits only, so mprotect queues no flush for it.

Expected counts are derived in the comments from the 6.18.15 and 6.19.11
sources.  The machine: 4K pages, 4 CPUs, the Neoverse N1 preset (no
FEAT_TLBIRANGE, no KPTI doubling, not on the BBML2_NOABORT allow-list, so
a fold or unfold flushes its block: 16 VALE1IS).  A process moved to
another CPU (``p.cpu``) stands for a second thread of the same mm.
"""

from __future__ import annotations

from typing import Any

import pytest

import contpte
from contpte.check.stale_tlb import stale_tlb_at_return

PAGE = 4096
BLOCK = 64 << 10
PMD = 2 << 20
ARENA = 0x10_0000_0000
NAMES = (
    "tlbi.VALE1IS",
    "tlbi.VALE1",
    "dsb.nshst",
    "dsb.nsh",
    "dvm.sync",
    "fault.spurious",
    "fault.permission",
)


def machine(kernel: str, **options: Any) -> contpte.Machine:
    return contpte.Machine(arch="arm64", memory="64M", cpus=4, check=True, seed=0, kernel=kernel, **options)


def counts(m: contpte.Machine, before: dict[str, int]) -> dict[str, int]:
    after = m.stats()
    m.check()
    return {n: after[n] - before[n] for n in NAMES}


def exclusive_readonly(m: contpte.Machine, size: int) -> tuple[contpte.Process, int]:
    """``size`` bytes written, then write-protected by a fork whose child exited (exclusive again)."""
    p = m.spawn()
    a = p.mmap(size, flags="private|anonymous|fixed", addr=ARENA)
    p.write(a, size, 1)
    p.fork().exit()
    return p, a


def test_cow_reuse_in_a_folded_block_flushes_locally_from_6_19() -> None:
    got = {}
    for kernel in ("6.18", "6.19"):
        m = machine(kernel, cpu="neoverse-n1", mthp={"64K": "always"})
        p, a = exclusive_readonly(m, BLOCK)
        s = m.stats()
        p.write(a, PAGE, 2)  # cow_reuse_large (6.15): reuse, the write bit changes: unfold first
        got[kernel] = counts(m, s)
    # Both: contpte_ptep_set_access_flags() unfolds the block (contpte_convert:
    # DSB ISHST, 16 x VALE1IS, DSB ISH), then __ptep_set_access_flags(dirty=1)
    # flushes the page: 6.18 flush_tlb_page() (DSB ISHST, VALE1IS, DSB ISH),
    # 6.19 local_flush_tlb_page() (DSB NSHST, VALE1, DSB NSH: no DVM sync).
    base = {"fault.spurious": 0, "fault.permission": 1}
    assert got["6.18"] == {
        **base,
        "tlbi.VALE1IS": 17,
        "tlbi.VALE1": 0,
        "dsb.nshst": 0,
        "dsb.nsh": 0,
        "dvm.sync": 2,
    }
    assert got["6.19"] == {
        **base,
        "tlbi.VALE1IS": 16,
        "tlbi.VALE1": 1,
        "dsb.nshst": 1,
        "dsb.nsh": 1,
        "dvm.sync": 1,
    }


@pytest.mark.parametrize("size", [PAGE, PMD], ids=["pte", "pmd"])
def test_other_cpu_fixes_its_stale_entry_on_a_spurious_fault(size: int) -> None:
    got = {}
    for kernel in ("6.18", "6.19"):
        m = machine(kernel, cpu="neoverse-n1", thp="always" if size == PMD else "never")
        p, a = exclusive_readonly(m, size)
        p.cpu = 1
        p.read(a, PAGE)  # CPU 1 caches the read-only translation
        p.cpu = 0
        s = m.stats()
        p.write(a, PAGE, 2)  # reuse on CPU 0: (pmdp|ptep)_set_access_flags(dirty=1)
        reuse = counts(m, s)
        # Whatever CPU 1 still holds grants less than memory: allowed at the
        # syscall's return ("only upgrades and the Access flag may stay stale"),
        # and a read through it sees the new data.
        assert stale_tlb_at_return(m) is None
        p.cpu = 1
        assert p.read(a, PAGE).tolist() == [2]
        s = m.stats()
        p.write(a, PAGE, 3)
        got[kernel] = (reuse, counts(m, s))
        assert p.read(a, PAGE).tolist() == [3]
    zero = dict.fromkeys(NAMES, 0)
    # 6.18: the reuse's broadcast VALE1IS removed CPU 1's entry too: its
    # write walks the new, writable descriptor without a fault.
    assert got["6.18"] == ({**zero, "fault.permission": 1, "tlbi.VALE1IS": 1, "dvm.sync": 1}, zero)
    # 6.19: the reuse flushes CPU 0 only; CPU 1 writes through its stale
    # read-only entry: a permission fault on a descriptor already writable
    # and dirty (the handler changes nothing) whose fix is a local flush
    # (flush_tlb_fix_spurious_fault(), or its PMD form from
    # fix_spurious_fault(vmf, PGTABLE_LEVEL_PMD)).  The model counts
    # fault.spurious on the PTE path only.
    local = {**zero, "fault.permission": 1, "tlbi.VALE1": 1, "dsb.nshst": 1, "dsb.nsh": 1}
    assert got["6.19"] == (local, {**local, "fault.spurious": 1 if size == PAGE else 0})


def test_spurious_fix_needs_the_arm64_local_flush() -> None:
    """6.19 with tlbi_nobroadcast=False: the reuse flushes everywhere, no stale entry, no fix."""
    m = machine("6.19", cpu="neoverse-n1", thp="always", tlbi_nobroadcast=False)
    p, a = exclusive_readonly(m, PMD)
    p.cpu = 1
    p.read(a, PAGE)
    p.cpu = 0
    p.write(a, PAGE, 2)
    p.cpu = 1
    s = m.stats()
    p.write(a, PAGE, 3)
    assert counts(m, s) == dict.fromkeys(NAMES, 0)


def test_dirtying_a_clean_folded_block_without_hardware_dbm_flushes_it_locally() -> None:
    """The write-bit-unchanged branch of contpte_ptep_set_access_flags(): local_flush_tlb_contpte()."""
    got = {}
    for kernel in ("6.18", "6.19"):
        # Linux leaves DBM off on the Cortex-A55 (erratum 1024718): software dirty.
        m = machine(kernel, cpu="cortex-a55", mthp={"64K": "always"})
        p = m.spawn()
        a = p.mmap(BLOCK, flags="private|anonymous|fixed", addr=ARENA)
        p.write(a, BLOCK, 1)
        p.madvise(a, BLOCK, "free")  # clean and old, still writable and folded
        s = m.stats()
        p.write(a, PAGE, 2)
        got[kernel] = counts(m, s)
    # The fault sets AF/dirty on all 16 members (no per-page flush) and
    # flushes the block once: 6.18 __flush_tlb_range() (DSB ISHST, 16 x
    # VALE1IS, DSB ISH); 6.19 local_flush_tlb_contpte() (DSB NSHST, 16 x VALE1
    # without FEAT_TLBIRANGE, DSB NSH).
    base = {"fault.spurious": 0, "fault.permission": 1}
    assert got["6.18"] == {
        **base,
        "tlbi.VALE1IS": 16,
        "tlbi.VALE1": 0,
        "dsb.nshst": 0,
        "dsb.nsh": 0,
        "dvm.sync": 1,
    }
    assert got["6.19"] == {
        **base,
        "tlbi.VALE1IS": 0,
        "tlbi.VALE1": 16,
        "dsb.nshst": 1,
        "dsb.nsh": 1,
        "dvm.sync": 0,
    }


def test_local_block_flush_is_one_range_tlbi_with_feat_tlbirange() -> None:
    """apple-m2: FEAT_TLBIRANGE and no hardware A/D management at all."""
    got = {}
    for kernel in ("6.18", "6.19"):
        m = machine(kernel, cpu="apple-m2", mthp={"64K": "always"})
        p = m.spawn()
        a = p.mmap(BLOCK, flags="private|anonymous|fixed", addr=ARENA)
        p.write(a, BLOCK, 1)
        p.madvise(a, BLOCK, "free")  # old: the write takes an Access flag fault
        with m.measure() as d:
            p.write(a, PAGE, 2)
        m.check()
        got[kernel] = {
            n: d[n] for n in ("fault.access_flag", "tlbi.RVALE1IS", "tlbi.RVALE1", "tlbi.total", "dvm.sync")
        }
    # __flush_tlb_range_op() over 16 pages with range ops: SCALE 3..1 cover
    # nothing (NUM would be -1), SCALE 0 takes NUM = 16/2 - 1 = 7: one range
    # op of 16 pages; 6.18 the broadcast RVALE1IS, 6.19 the local RVALE1.
    assert got["6.18"] == {
        "fault.access_flag": 1,
        "tlbi.RVALE1IS": 1,
        "tlbi.RVALE1": 0,
        "tlbi.total": 1,
        "dvm.sync": 1,
    }
    assert got["6.19"] == {
        "fault.access_flag": 1,
        "tlbi.RVALE1IS": 0,
        "tlbi.RVALE1": 1,
        "tlbi.total": 1,
        "dvm.sync": 0,
    }


@pytest.mark.parametrize("case", ["mprotect-same-pte", "uffd-wp-readonly", "mprotect-write-removed"])
def test_protection_changes_flush_only_hardware_bits_from_6_19(case: str) -> None:
    got = {}
    for kernel in ("6.18", "6.19"):
        m = machine(kernel, cpu="neoverse-n1", mthp={"64K": "always"})
        if case == "mprotect-write-removed":
            p = m.spawn()
            a = p.mmap(BLOCK, flags="private|anonymous|fixed", addr=ARENA)
            p.write(a, BLOCK, 1)
        else:
            p, a = exclusive_readonly(m, BLOCK)
        s = m.stats()
        if case == "uffd-wp-readonly":
            p.uffd_wp(a, BLOCK)
        else:
            p.mprotect(a, BLOCK, "r")
        got[kernel] = counts(m, s)
        assert p.read(a, PAGE).tolist() == [1]
    zero = dict.fromkeys(NAMES, 0)
    # Both (mprotect_batch, modify_prot_ptes_opt: 6.17): change_pte_range()
    # takes the block as one batch, cleared and set again folded; the
    # mmu_gather flushes what prot_commit_flush_ptes() queued at
    # tlb_end_vma: DSB ISHST, 16 x VALE1IS (one per page), DSB ISH.
    flushed = {**zero, "tlbi.VALE1IS": 16, "dvm.sync": 1}
    assert got["6.18"] == flushed  # generic pte_needs_flush(): always
    # 6.19, arm64 pte_needs_flush(): mprotect(PROT_READ) of a PTE the fork
    # already write-protected builds the same descriptor; uffd-wp of it
    # sets PTE_UFFD_WP (bit 58) only, a software bit: nothing queued.  A
    # writable PTE loses PTE_WRITE (DBM, bit 51) and gains PTE_RDONLY
    # (bit 7): hardware bits, flushed as before.
    assert got["6.19"] == (flushed if case == "mprotect-write-removed" else zero)
