"""Syscall misuse returns Linux's errno; bad accesses raise SIGSEGV with the address."""

from __future__ import annotations

import errno

import pytest
from scenario_util import PAGE, Setup, assert_checked

import contpte


@pytest.fixture
def proc(arch: str) -> tuple[contpte.Machine, contpte.Process, int]:
    m = contpte.Machine(arch=arch, memory="64M")
    p = m.spawn()
    a = p.mmap(16 * PAGE)
    p.write(a, 16 * PAGE, 1)
    return m, p, a


def _errno(fn, *args, **kw) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as ei:
        fn(*args, **kw)
    assert not isinstance(ei.value, contpte.ContpteError)
    return int(ei.value.errno)


UNMAPPED = 0x10000000


def test_einval(proc: tuple[contpte.Machine, contpte.Process, int]) -> None:
    m, p, a = proc
    assert _errno(p.mprotect, a + 1, PAGE, "r") == errno.EINVAL
    assert _errno(p.madvise, a + 1, PAGE, "dontneed") == errno.EINVAL
    assert _errno(p.madvise, a, PAGE, "bogus") == errno.EINVAL
    assert _errno(p.munmap, a + 1, PAGE) == errno.EINVAL
    assert _errno(p.munmap, a, 0) == errno.EINVAL
    assert _errno(p.mmap, 0) == errno.EINVAL
    assert _errno(p.mmap, PAGE, "rw", "private|shared|anonymous") == errno.EINVAL
    assert _errno(p.mmap, PAGE, "rw", "anonymous") == errno.EINVAL
    assert _errno(p.mmap, PAGE, "rw", "private|anonymous|fixed", None, 0, a + 1) == errno.EINVAL
    f = m.open_file("f", 16 * PAGE)
    assert _errno(p.mmap, PAGE, "rw", "private", f, 1) == errno.EINVAL
    # MADV_FREE is for private anonymous memory only.
    b = p.mmap(16 * PAGE, "r", "private", f)
    assert _errno(p.madvise, b, PAGE, "free") == errno.EINVAL
    s = p.mmap(16 * PAGE, "rw", "shared|anonymous")
    assert _errno(p.madvise, s, PAGE, "free") == errno.EINVAL
    # Nothing changed on the way.
    assert (p.read(a, 16 * PAGE) == 1).all()
    assert_checked(m)


def test_zero_length_is_a_no_op_for_mprotect_and_madvise(
    proc: tuple[contpte.Machine, contpte.Process, int],
) -> None:
    _m, p, a = proc
    p.mprotect(a, 0, "r")
    p.madvise(a, 0, "dontneed")
    assert p.pagemap(a, 16 * PAGE)["writable"].all()
    assert (p.read(a, 16 * PAGE) == 1).all()


def test_enomem_unmapped_ranges(proc: tuple[contpte.Machine, contpte.Process, int]) -> None:
    m, p, a = proc
    assert _errno(p.mprotect, UNMAPPED, PAGE, "r") == errno.ENOMEM
    # A range that starts before the mapping: ENOMEM and nothing changes.
    assert _errno(p.mprotect, a - PAGE, 2 * PAGE, "r") == errno.ENOMEM
    assert p.pagemap(a, PAGE)["writable"][0]
    assert p.maps()[0][2] == "rw-p"
    assert _errno(p.madvise, UNMAPPED, PAGE, "dontneed") == errno.ENOMEM
    # madvise advises the mapped part of a partly unmapped range, then says ENOMEM.
    assert _errno(p.madvise, a - PAGE, 2 * PAGE, "dontneed") == errno.ENOMEM
    assert not p.pagemap(a, PAGE)["present"][0]
    assert p.pagemap(a + PAGE, PAGE)["present"][0]
    # A range with a hole in the middle.
    b = p.mmap(16 * PAGE)
    p.munmap(b + 4 * PAGE, PAGE)
    p.write(b, 4 * PAGE, 2)
    assert _errno(p.mprotect, b, 16 * PAGE, "r") == errno.ENOMEM
    # As the kernel's loop: the VMA before the hole was changed, the one after was not.
    assert not p.pagemap(b, 4 * PAGE)["writable"].any()
    perms = {s: perm for s, _, perm, _ in p.maps()}
    assert perms[b] == "r--p" and perms[b + 5 * PAGE] == "rw-p"
    # munmap of nothing is fine.
    p.munmap(UNMAPPED, PAGE)
    assert_checked(m)


def test_eacces_beyond_vm_may_flags(proc: tuple[contpte.Machine, contpte.Process, int]) -> None:
    """mprotect asking for what VM_MAY* forbids (a read-only shared file) fails with EACCES."""
    from contpte.mm.mm_types import VM_MAYWRITE

    m, p, _a = proc
    f = m.open_file("ro", 16 * PAGE)
    b = p.mmap(16 * PAGE, "r", "shared", f)
    vma = p.mm.vma_lookup(b)
    assert vma is not None
    vma.vm_flags &= ~VM_MAYWRITE  # as for a file opened O_RDONLY
    assert _errno(p.mprotect, b, PAGE, "rw") == errno.EACCES
    assert p.maps()[0][2] == "r--s"
    p.mprotect(b, PAGE, "r")


def test_ebadf_efault(proc: tuple[contpte.Machine, contpte.Process, int]) -> None:
    m, p, a = proc
    assert _errno(p.mmap, PAGE, "rw", "private") == errno.EBADF
    assert _errno(p.pin, UNMAPPED, PAGE) == errno.EFAULT
    r = p.mmap(PAGE, "r")
    assert _errno(p.pin, r, PAGE, write=True) == errno.EFAULT
    assert _errno(p.unpin, a, PAGE) == errno.EINVAL
    assert m.stats().get("gup.pin", 0) == 0


def test_segv_maperr_accerr(setup: Setup) -> None:
    m = setup.machine()
    p = m.spawn()
    a = p.mmap(setup.length)
    with pytest.raises(contpte.SegmentationFault) as ei:
        p.read(UNMAPPED + 3 * PAGE, PAGE)
    assert (ei.value.code, ei.value.addr, ei.value.write) == ("MAPERR", UNMAPPED + 3 * PAGE, False)
    r = p.mmap(4 * PAGE, "r")
    with pytest.raises(contpte.SegmentationFault) as ei:
        p.write(r + PAGE, PAGE, 1)
    assert (ei.value.code, ei.value.addr, ei.value.write) == ("ACCERR", r + PAGE, True)
    n = p.mmap(4 * PAGE, "none")
    with pytest.raises(contpte.SegmentationFault) as ei:
        p.read(n + 2 * PAGE, PAGE)
    assert (ei.value.code, ei.value.addr) == ("ACCERR", n + 2 * PAGE)
    # A populated range made PROT_NONE faults, and keeps its data for later.
    p.write(a, setup.length, 4)
    p.mprotect(a, setup.length, "none")
    with pytest.raises(contpte.SegmentationFault) as ei:
        p.read(a + setup.folio_bytes, PAGE)
    assert (ei.value.code, ei.value.addr) == ("ACCERR", a + setup.folio_bytes)
    p.mprotect(a, setup.length, "rw")
    assert (p.read(a, setup.length) == 4).all()
    # An access running off the end stops at the first bad page; the pages before it are written.
    end = a + setup.length
    with pytest.raises(contpte.SegmentationFault) as ei:
        p.write(end - PAGE, 2 * PAGE, 9)
    assert (ei.value.code, ei.value.addr) == ("MAPERR", end)
    assert p.read(end - PAGE, PAGE)[0] == 9
    assert_checked(m)
