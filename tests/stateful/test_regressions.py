"""Minimal reproductions of bugs the state machines found (each failed before its fix)."""

from __future__ import annotations

import errno

import pytest

import contpte

A = 0x10_0000_0000
PS = 4096


@pytest.fixture(params=["generic", "arm64"])
def proc(request: pytest.FixtureRequest) -> contpte.Process:
    m = contpte.Machine(arch=request.param, memory="64M", cpus=2, mthp={"64K": "always"}, check=True)
    return m.spawn()


def test_mprotect_changes_the_vmas_before_a_hole(proc: contpte.Process) -> None:
    """mm/mprotect.c: the loop changes each VMA in turn and fails at the first hole."""
    proc.mmap(PS, prot="rw", flags="private|anonymous|fixed", addr=A)
    with pytest.raises(OSError) as e:
        proc.mprotect(A, 2 * PS, "r")
    assert e.value.errno == errno.ENOMEM
    assert proc.maps() == [(A, A + PS, "r--p", "")]
    with pytest.raises(contpte.SegmentationFault):
        proc.write(A, PS, 1)


def test_mprotect_with_unmapped_start_changes_nothing(proc: contpte.Process) -> None:
    proc.mmap(PS, prot="rw", flags="private|anonymous|fixed", addr=A + PS)
    with pytest.raises(OSError) as e:
        proc.mprotect(A, 2 * PS, "r")
    assert e.value.errno == errno.ENOMEM
    assert proc.maps() == [(A + PS, A + 2 * PS, "rw-p", "")]


def test_failed_unpin_keeps_every_pin(proc: contpte.Process) -> None:
    """An unpin that fails (EINVAL) must not drop the pins it checked before failing."""
    proc.mmap(2 * PS, prot="rw", flags="private|anonymous|fixed", addr=A)
    proc.write(A, 2 * PS, 5)
    proc.pin(A, PS)
    with pytest.raises(OSError) as e:
        proc.unpin(A, 2 * PS)
    assert e.value.errno == errno.EINVAL
    proc.unpin(A, PS)  # still pinned
    m = proc.machine
    pfn = int(proc.pagemap(A, PS)["pfn"][0])
    head = int(m.kernel.memmap.head[pfn])
    assert int(m.kernel.memmap.refcount[head]) == int(m.kernel.memmap.mapcount[pfn])


def test_read_pin_of_prot_none_is_efault() -> None:
    """mm/gup.c check_vma_flags(): a read pin needs VM_READ, also where a PMD (huge zero page) could map it."""
    m = contpte.Machine(arch="arm64", memory="64M", cpus=2, mthp={"2M": "always"}, thp="always", check=True)
    p = m.spawn()
    p.mmap(512 * PS, prot="none", flags="private|anonymous|fixed", addr=A)
    with pytest.raises(OSError) as e:
        p.pin(A, PS, write=False)
    assert e.value.errno == errno.EFAULT
