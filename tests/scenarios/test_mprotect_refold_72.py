"""A finding of the model at 7.2: batched mprotect folds an unfolded block without break-before-make.

v6.17's arm64 ``modify_prot_start_ptes()`` is ``get_and_clear_ptes()`` and
``modify_prot_commit_ptes()`` is ``set_ptes()`` (arch/arm64/mm/mmu.c, 7.2.6);
``contpte_set_ptes()`` writes a whole aligned block of one folio with
PTE_CONT, trusting the ``set_ptes()`` rule that the entries are not present
(arch/arm64/mm/contpte.c).  A block that was left unfolded with uniform
entries (an mprotect of half of it and back: two batches of 8, which
``contpte_set_ptes`` writes without PTE_CONT) and whose translations are in
the TLB is then cleared and rewritten contiguous with no TLBI between: the
Contiguous bit changes under cached entries, which the Arm ARM allows only
with break-before-make or BBM level 2 (the rule checker's ``bbm``).  On a
CPU with BBM level 2 (Neoverse-V3) the sequence is allowed.  Not confirmed
on hardware (qemu does not model TLB conflicts); docs/versions.md.
"""

from __future__ import annotations

import pytest

import contpte

K64 = 64 << 10


def _sequence(kernel: str, cpu: str) -> None:
    m = contpte.Machine(memory="64M", mthp={"64K": "always"}, kernel=kernel, cpu=cpu)
    p = m.spawn()
    a = p.mmap(K64, prot="rw", flags="private|anonymous")
    p.write(a, K64, 1)
    p.mprotect(a, K64 // 2, "r")
    p.mprotect(a, K64 // 2, "rw")
    p.write(a, K64, 2)  # the TLB caches the unfolded entries
    assert not p.pagemap(a, K64)["cont"].any()
    p.mprotect(a, K64, "r")
    assert p.read(a, K64).tolist() == [2] * 16
    m.check()


@pytest.mark.parametrize("kernel", ["6.12", "6.16"])
def test_per_pte_mprotect_keeps_break_before_make(kernel: str) -> None:
    _sequence(kernel, "neoverse-n1")


@pytest.mark.parametrize("kernel", ["6.17", "7.1", "7.2"])
def test_batched_mprotect_refolds_without_break_before_make(kernel: str) -> None:
    # From 6.17 (mprotect_batch, modify_prot_ptes_opt) on every version modelled.
    with pytest.raises(contpte.InvariantViolation) as e:
        _sequence(kernel, "neoverse-n1")
    assert e.value.rule == "bbm"


def test_bbm_level_2_allows_it() -> None:
    _sequence("7.2", "neoverse-v3")
