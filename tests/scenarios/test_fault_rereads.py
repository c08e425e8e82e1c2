"""What a fault reads on arm64: the entries the kernel's fault path reads again.

mm/memory.c (v6.12) reads a faulting entry without the PTL
(``ptep_get_lockless`` in ``handle_pte_fault``), then again under it before
acting on it (``pte_same(ptep_get(vmf->pte), entry)``); ``do_wp_page`` reads
it a third time for its uffd-wp test (``userfaultfd_pte_wp(vma,
ptep_get(vmf->pte))``, evaluated whether or not the VMA has uffd-wp) and
``wp_page_copy`` a fourth time before replacing it.  On a folded block each
locked read is a ``contpte_ptep_get`` (16 entries gathered) and the lockless
one a ``contpte_ptep_get_lockless``: the arm64 oracle counts the same on
Debian's 6.12 kernel (``oracle/arm64/scenarios/fault-cow-folded-block.scn``).
"""

from __future__ import annotations

from scenario_util import PAGE, assert_checked, delta

import contpte

BLOCK = 64 << 10


def _folded(**kw: object) -> tuple[contpte.Machine, contpte.Process, int]:
    m = contpte.Machine(arch="arm64", memory="64M", mthp={"64K": "always"}, check=True, **kw)  # type: ignore[arg-type]
    p = m.spawn()
    a = p.mmap(2 * BLOCK)
    p.write(a, 2 * BLOCK, 1)
    assert p.pagemap(a, 2 * BLOCK)["cont"].all()
    return m, p, a


def test_cow_fault_on_folded_block_reads_it_three_times_under_the_lock() -> None:
    m, p, a = _folded()
    c = p.fork()
    assert c.pagemap(a, BLOCK)["cont"].all()
    s = m.stats()
    c.write(a + PAGE, PAGE, 2)
    assert delta(m, s, "fault.wp_copy") == 1
    assert delta(m, s, "call.contpte_ptep_get_lockless") == 1
    # handle_pte_fault's re-check, do_wp_page's uffd-wp test, wp_page_copy's pte_same.
    assert delta(m, s, "call.contpte_ptep_get") == 3
    assert c.read(a, 2 * BLOCK).tolist() == [1] + [2] + [1] * 30
    assert p.read(a, 2 * BLOCK).tolist() == [1] * 32
    assert_checked(m)
