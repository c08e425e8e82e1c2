"""Machine and Process: argument checking, errno helpers, counters, observation."""

from __future__ import annotations

import errno

import numpy as np
import pytest

import contpte
from contpte.counters import Counters, declare, describe
from contpte.errors import ModelUsageError
from contpte.mm.mm_types import VM_EXEC, VM_READ, VM_WRITE
from contpte.system.machine import parse_bytes
from contpte.system.process import _oserror, parse_flags, parse_prot

PAGE = 4096


def test_parse_prot() -> None:
    assert parse_prot("rw") == VM_READ | VM_WRITE
    assert parse_prot("r-x") == VM_READ | VM_EXEC
    assert parse_prot("none") == 0 and parse_prot("") == 0
    assert parse_prot(VM_READ) == VM_READ
    with pytest.raises(ModelUsageError):
        parse_prot("rq")
    with pytest.raises(OSError) as ei:
        parse_prot(0x100)
    assert ei.value.errno == errno.EINVAL


def test_parse_flags() -> None:
    assert parse_flags("private|anonymous") == {"private", "anonymous"}
    assert parse_flags(" Shared , fixed ") == {"shared", "fixed"}
    with pytest.raises(ModelUsageError, match="unknown"):
        parse_flags("private|hugetlb")


def test_parse_bytes() -> None:
    assert parse_bytes("4G") == 4 << 30
    assert parse_bytes("64M") == 64 << 20
    assert parse_bytes("16KiB") == 16 << 10
    assert parse_bytes(4096) == 4096
    for bad in ("", "4X", "-1M", 0, "0K"):
        with pytest.raises(ModelUsageError):
            parse_bytes(bad)  # type: ignore[arg-type]


def test_oserror_carries_errno_and_message() -> None:
    e = _oserror(-errno.ENOMEM, "mprotect")
    assert isinstance(e, OSError) and not isinstance(e, contpte.ContpteError)
    assert e.errno == errno.ENOMEM and "mprotect" in str(e)


@pytest.mark.parametrize(
    "kw",
    [
        {"arch": "sparc"},
        {"page_size": "8K"},
        {"arch": "generic", "page_size": "16K"},
        {"cpus": 0},
        {"no_such_option": True},
        {"thp": "sometimes"},
        {"mthp": {"64K": "often"}},
        {"mthp": {"48K": "always"}},
        {"memory": "1M"},
        {"cpu": "no-such-cpu"},
    ],
)
def test_machine_rejects_bad_arguments(kw: dict[str, object]) -> None:
    kw = {"memory": "64M", **kw}
    with pytest.raises(ModelUsageError):
        contpte.Machine(**kw)  # type: ignore[arg-type]


def test_process_argument_checks_and_exit() -> None:
    m = contpte.Machine(arch="generic", memory="64M")
    p = m.spawn()
    a = p.mmap(4 * PAGE)
    with pytest.raises(ModelUsageError):
        p.write(a + 1, PAGE, 1)
    with pytest.raises(ModelUsageError):
        p.write(a, PAGE, -1)
    with pytest.raises(ModelUsageError):
        p.write(a, 2 * PAGE, np.array([1], dtype=np.uint64))
    with pytest.raises(ModelUsageError):
        p.read(a, 0)
    p.write(a, 4 * PAGE, np.array([1, 2, 3, 4], dtype=np.uint64))
    assert p.read(a, 4 * PAGE).tolist() == [1, 2, 3, 4]
    p.exit()
    assert not p.alive and p.pid not in m.processes
    with pytest.raises(ModelUsageError):
        p.read(a, PAGE)


def test_pagemap_changes_no_counter() -> None:
    m = contpte.Machine(arch="arm64", memory="64M", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(2 << 20)
    p.write(a, 2 << 20, 1)
    s = m.stats()
    pm = p.pagemap(a, 2 << 20)
    assert pm.dtype == contpte.PAGEMAP_DTYPE
    assert m.stats() == s


def test_undeclared_counter_raises() -> None:
    c = Counters()
    with pytest.raises(ModelUsageError, match="not declared"):
        c.add("no.such.counter")
    assert c.snapshot() == {}
    c.add("pte.write", 2)  # declared exactly
    c.add("tlbi.VALE1IS")  # a member of a declared family
    assert c.snapshot() == {"pte.write": 2, "tlbi.VALE1IS": 1}


def test_counter_declared_once_with_one_meaning() -> None:
    spec = describe("pte.write")
    assert declare("pte.write", spec.unit, spec.description) == "pte.write"  # same meaning: fine
    with pytest.raises(ModelUsageError, match="twice"):
        declare("pte.write", "bytes", "something else")


def test_every_counter_a_workload_produces_is_declared() -> None:
    for arch in ("generic", "arm64"):
        m = contpte.Machine(arch=arch, memory="64M", mthp={"64K": "always"}, thp="always")
        p = m.spawn()
        a = p.mmap(4 << 20)
        p.write(a, 4 << 20, 1)
        c = p.fork()
        c.write(a, PAGE, 2)
        p.madvise(a + PAGE, PAGE, "dontneed")
        p.mprotect(a, 64 << 10, "r")
        c.exit()
        stats = m.stats()
        assert len(stats) > 20
        for name in stats:
            unit, desc = m.describe_counter(name)
            assert unit and desc


def test_bbml2_noabort_picks_a_cpu_that_has_it() -> None:
    m = contpte.Machine(arch="arm64", memory="64M", mthp={"64K": "always"}, bbml2_noabort=True)
    assert m.hw.features.bbml2_noabort and m.hw.features.bbm_level == 2
    p = m.spawn()
    a = p.mmap(1 << 20)
    p.write(a, 1 << 20, 1)
    with m.measure() as d:
        p.mprotect(a, PAGE, "r")  # unfolds one block: no intermediate TLBI with BBML2
    assert d["contpte.unfold"] == 1
    base = contpte.Machine(arch="arm64", memory="64M", mthp={"64K": "always"})
    q = base.spawn()
    b = q.mmap(1 << 20)
    q.write(b, 1 << 20, 1)
    with base.measure() as d0:
        q.mprotect(b, PAGE, "r")
    assert d["tlbi.total"] < d0["tlbi.total"]
    m.check()


def test_bbml2_noabort_refuses_a_cpu_without_it() -> None:
    with pytest.raises(ModelUsageError, match=r"BBML2_NOABORT.*neoverse-v3"):
        contpte.Machine(arch="arm64", memory="64M", cpu="neoverse-n1", bbml2_noabort=True)
    contpte.Machine(arch="arm64", memory="64M", cpu="neoverse-v3", bbml2_noabort=True)
    # the option of another backend has no effect there
    contpte.Machine(arch="generic", memory="64M", bbml2_noabort=True)


def test_every_length_takes_size_strings() -> None:
    m = contpte.Machine(arch="arm64", memory="64M", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap("1M")
    p.write(a, "1M", 7)
    assert p.read(a, "64K").tolist() == [7] * 16
    assert len(p.pagemap(a, "128K")) == 32
    p.mprotect(a, "64K", "r")
    p.madvise(a, "4K", "dontneed")
    p.pin(a + (64 << 10), "64K")
    p.unpin(a + (64 << 10), "64K")
    p.numa_hint(a + (128 << 10), "64K")
    p.uffd_wp(a + (256 << 10), "16K")
    p.uffd_wp(a + (256 << 10), "16K", on=False)
    p.munmap(a, "1M")
    assert p.maps() == []
    f = m.open_file("data", "1M")
    b = p.mmap("256K", flags="private", file=f, offset="64K")
    assert int(p.read(b, "4K")[0]) == (f.id << 40) | 16
    m.check()


def test_bad_lengths_are_one_clear_error() -> None:
    m = contpte.Machine(arch="generic", memory="64M")
    p = m.spawn()
    a = p.mmap(PAGE)
    for bad in ("1Q", 1.5, None, True):
        with pytest.raises(ModelUsageError, match="mmap length"):
            p.mmap(bad)  # type: ignore[arg-type]
    with pytest.raises(ModelUsageError, match="write length '4 pages'"):
        p.write(a, "4 pages", 1)
    # integers still reach the syscall, which answers as Linux does
    with pytest.raises(OSError) as ei:
        p.munmap(a, 0)
    assert ei.value.errno == errno.EINVAL
    p.mprotect(a, 0, "r")  # a zero-length mprotect succeeds
    with pytest.raises(OSError) as ei:
        p.mmap("0")
    assert ei.value.errno == errno.EINVAL


def test_open_file_with_an_existing_name_is_eexist() -> None:
    m = contpte.Machine(arch="generic", memory="64M")
    f = m.open_file("data", "1M")
    with pytest.raises(FileExistsError) as ei:
        m.open_file("data", "2M")
    assert ei.value.errno == errno.EEXIST and ei.value.filename == "data"
    assert m.open_file("other", "1M") is not f
    with pytest.raises(ModelUsageError):
        m.open_file("", "1M")


@pytest.mark.parametrize(
    ("arch", "cpu"), [("arm64", "x86"), ("generic", "neoverse-n1"), ("generic", "apple-m2")]
)
def test_a_cpu_of_another_architecture_is_refused(arch: str, cpu: str) -> None:
    with pytest.raises(ModelUsageError, match=f"cpu='{cpu}' does not run arch='{arch}'"):
        contpte.Machine(arch=arch, cpu=cpu, memory="64M")


def test_every_preset_runs_its_own_architecture() -> None:
    from contpte.hw.features import PRESETS

    for name, feat in PRESETS.items():
        contpte.Machine(arch="arm64" if feat.fmt == "vmsa" else "generic", cpu=name, memory="64M")


@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_mmap_beyond_memory_plus_swap_is_enomem(arch: str) -> None:
    """OVERCOMMIT_GUESS (__vm_enough_memory): one request larger than RAM + swap is refused."""
    m = contpte.Machine(arch=arch, memory="64M")
    p = m.spawn()
    for flags in ("private|anonymous", "shared|anonymous"):
        with pytest.raises(OSError) as ei:
            p.mmap("65M", flags=flags)
        assert ei.value.errno == errno.ENOMEM
    f = m.open_file("data", "1M")
    with pytest.raises(OSError) as ei:
        p.mmap("65M", flags="private", file=f)  # private writable: charged
    assert ei.value.errno == errno.ENOMEM
    assert p.maps() == []
    # not charged: read-only private, shared file; and a request of exactly RAM passes
    p.mmap("65M", prot="r")
    p.mmap("65M", flags="shared", file=f)
    p.mmap("64M")
    # a refused MAP_FIXED leaves what it would have replaced
    a = p.mmap("1M")
    p.write(a, "1M", 5)
    with pytest.raises(OSError):
        p.mmap("65M", flags="private|anonymous|fixed", addr=a)
    assert p.read(a, "1M").tolist() == [5] * 256
    m.check()
