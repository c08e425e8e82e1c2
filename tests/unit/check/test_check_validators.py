"""The validators pass on a correct model and catch each broken invariant.

Each test breaks one thing behind the model's back and expects the
validator that owns that rule to name it.
"""

from __future__ import annotations

import numpy as np
import pytest

import contpte
from contpte.mm.memmap import PG_anon_exclusive

PAGE = 4096


@pytest.fixture(params=["generic", "arm64"])
def world(request: pytest.FixtureRequest) -> tuple[contpte.Machine, contpte.Process, contpte.Process, int]:
    m = contpte.Machine(arch=request.param, memory="64M", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(2 << 20)
    p.write(a, 2 << 20, 1)
    c = p.fork()
    p.write(a, PAGE, 2)  # one exclusive order-0 page in p; the rest shared
    return m, p, c, a


def _rule(m: contpte.Machine) -> str:
    with pytest.raises(contpte.InvariantViolation) as ei:
        m.check()
    return ei.value.rule


def _pfn(p: contpte.Process, addr: int) -> int:
    return int(p.pagemap(addr, PAGE)["pfn"][0])


def test_clean_model_passes_and_runs_count(
    world: tuple[contpte.Machine, contpte.Process, contpte.Process, int],
) -> None:
    m, p, _c, a = world
    runs = m.stats()["check.runs"]
    m.check()
    assert m.stats()["check.runs"] == runs + 1
    p.read(a, PAGE)
    assert m.stats()["check.runs"] == runs + 2  # after every syscall and access


def test_mapcount(world: tuple[contpte.Machine, contpte.Process, contpte.Process, int]) -> None:
    m, _p, c, a = world
    m.kernel.memmap.mapcount[_pfn(c, a + PAGE)] += 1
    assert _rule(m) == "mapcount"


def test_refcount_below_mappings(
    world: tuple[contpte.Machine, contpte.Process, contpte.Process, int],
) -> None:
    m, _p, c, a = world
    head = int(m.kernel.memmap.head[_pfn(c, a + PAGE)])
    m.kernel.memmap.refcount[head] = 1
    assert _rule(m) == "refcount>=mapcount"


def test_rss(world: tuple[contpte.Machine, contpte.Process, contpte.Process, int]) -> None:
    m, _p, c, _a = world
    c.mm.rss[1] -= 1
    assert _rule(m) == "rss"


def test_writable_pte_of_non_exclusive_page(
    world: tuple[contpte.Machine, contpte.Process, contpte.Process, int],
) -> None:
    m, p, _c, a = world
    pfn = _pfn(p, a)
    m.kernel.memmap.flags[pfn] &= np.uint32(~PG_anon_exclusive & 0xFFFFFFFF)
    assert _rule(m) == "writable-anon-exclusive"


def test_writable_page_mapped_twice(
    world: tuple[contpte.Machine, contpte.Process, contpte.Process, int],
) -> None:
    m, p, c, a = world
    arch = m.arch
    addr = a + 20 * PAGE
    pfn = _pfn(p, addr)
    assert _pfn(c, addr) == pfn
    m.kernel.memmap.flags[pfn] |= np.uint32(PG_anon_exclusive)  # pretend exclusive
    space = p.mm.space
    ptep = space.pte_ptr(addr)
    space.pool.poke(ptep, arch.pte_mkwrite(space.pool.peek(ptep)))
    assert _rule(m) == "writable-shared"


def test_isolation_catches_a_wrong_value(
    world: tuple[contpte.Machine, contpte.Process, contpte.Process, int],
) -> None:
    m, _p, c, a = world
    m.check()
    m.hw.memory.data[_pfn(c, a + 3 * PAGE)] = np.uint64(99)  # corrupt a page behind the kernel's back
    with pytest.raises(contpte.InvariantViolation) as ei:
        c.read(a, 8 * PAGE)
    assert ei.value.rule == "isolation" and ei.value.addr == a + 3 * PAGE


def test_isolation_knows_who_wrote_what(
    world: tuple[contpte.Machine, contpte.Process, contpte.Process, int],
) -> None:
    m, p, c, a = world
    # The child must read what it inherited, not what the parent wrote after fork.
    assert c.read(a, PAGE)[0] == 1 and p.read(a, PAGE)[0] == 2
    m.hw.memory.data[_pfn(c, a)] = np.uint64(2)
    with pytest.raises(contpte.InvariantViolation, match="isolation"):
        c.read(a, PAGE)


def test_a_syscall_reports_what_it_touched(
    world: tuple[contpte.Machine, contpte.Process, contpte.Process, int],
) -> None:
    """mem_map broken behind the kernel's back: the next syscall touching that
    folio reports it, one that does not touch it does not; ``m.check()`` always."""
    m, p, c, a = world
    pfn = _pfn(c, a + PAGE)
    m.kernel.memmap.mapcount[pfn] += 1
    p.read(a + (1 << 20), PAGE)  # another folio
    with pytest.raises(contpte.InvariantViolation, match="mapcount"):
        c.madvise(a + PAGE, PAGE, "dontneed")


def test_check_false_runs_nothing() -> None:
    m = contpte.Machine(arch="generic", memory="64M", check=False)
    p = m.spawn()
    a = p.mmap(16 * PAGE)
    p.write(a, 16 * PAGE, 1)
    assert m.stats()["check.runs"] == 0
    m.check()  # still available on demand
    assert m.stats()["check.runs"] == 1


def test_shmem_class_after_a_shared_anonymous_object_is_dropped() -> None:
    """A shared anonymous mapping replaced by another (MAP_FIXED) in one syscall:
    its shmem file is dropped, the new one has a new id and there are as many
    files as before; the new object's pages still count as shmem."""
    m = contpte.Machine(arch="arm64", memory="64M", check=True)
    p = m.spawn()
    s = p.mmap(64 << 10, flags="shared|anonymous")
    p.write(s, PAGE, 1)
    p.mmap(64 << 10, flags="shared|anonymous|fixed", addr=s)
    p.write(s, PAGE, 2)  # raised "rss" (file vs shmem) when the validators missed the new file
    assert p.rss()["shmem"] == 1
    m.check()
