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
    table = p.mm.space.pte_table(addr >> arch.PMD_SHIFT)
    i = (addr >> 12) & (arch.PTRS_PER_PTE - 1)
    table.poke(i, arch.pte_mkwrite(int(table.entries[i])))
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


def test_check_false_runs_nothing() -> None:
    m = contpte.Machine(arch="generic", memory="64M", check=False)
    p = m.spawn()
    a = p.mmap(16 * PAGE)
    p.write(a, 16 * PAGE, 1)
    assert m.stats()["check.runs"] == 0
    m.check()  # still available on demand
    assert m.stats()["check.runs"] == 1


def test_shadow_uniform_tables_are_copied_on_change() -> None:
    from contpte.check.validators import _Shadow

    sh = _Shadow(8)
    sh.set(8, 16, 7)  # two whole tables, one value: no arrays
    assert not sh.values[1].flags.writeable
    sh.mark_lazy(9, 2, True)
    sh.set(8, 8, 5)  # a whole-table write clears lazy
    assert not sh.get_lazy(8, 8).any()
    child = sh.copy()
    child.set(17, 2, np.array([1, 2], dtype=np.uint64))
    sh.forget(20, 1)
    vals, own = sh.get(8, 16)
    assert vals.tolist() == [5] * 8 + [7] * 8 and own.tolist() == [True] * 12 + [False] + [True] * 3
    vals, own = child.get(8, 16)
    assert vals.tolist() == [5] * 8 + [7, 1, 2] + [7] * 5 and own.all()
