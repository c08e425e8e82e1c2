"""folio_pte_batch (mm/internal.h, v6.12): where a batch stops and what it ignores."""

from __future__ import annotations

from typing import Any

import pytest

import contpte
from contpte.mm.internal import FPB_IGNORE_DIRTY, FPB_IGNORE_SOFT_DIRTY, BoolPtr, folio_pte_batch
from contpte.mm.memmap import folio_nr_pages, page_folio

PAGE = 4096
BASE = 0x10000000
PRIVATE = FPB_IGNORE_SOFT_DIRTY  # copy_present_ptes' flags for a private mapping


class Env:
    """Two 64K anon folios mapped at BASE; raw access to their PTEs."""

    def __init__(self, arch: str, options: dict[str, Any]) -> None:
        self.m = contpte.Machine(arch=arch, memory="64M", mthp={"64K": "always"}, check=False, **options)
        self.a = self.m.arch
        p = self.m.spawn()
        p.mmap(32 * PAGE, flags="private|anonymous|fixed", addr=BASE)
        p.write(BASE, 32 * PAGE, 1)
        # ptep of BASE in the machine's descriptor pool: ptep + i is the PTE of BASE + i pages.
        self.ptep0 = p.mm.space.pte_ptr(BASE)
        assert self.ptep0 >= 0
        self.pool = p.mm.space.pool
        self.folio = page_folio(self.m.kernel.memmap, self.a.pte_pfn(self.get(0)))
        assert folio_nr_pages(self.m.kernel.memmap, self.folio) == 16

    def get(self, i: int) -> int:
        return int(self.pool.peek(self.ptep0 + i))

    def set(self, i: int, pte: int) -> None:
        self.pool.poke(self.ptep0 + i, pte)

    def batch(self, start: int = 0, max_nr: int = 32, flags: int = PRIVATE) -> tuple[int, bool]:
        anyw = BoolPtr(False)
        ptep = self.ptep0 + start
        nr = folio_pte_batch(
            self.m.kernel, self.folio, BASE + start * PAGE, ptep, self.get(start), max_nr, flags, anyw
        )
        return nr, anyw.value


@pytest.fixture(params=[("generic", {}), ("arm64", {"contpte": False})], ids=["generic", "arm64-nocont"])
def env(request: pytest.FixtureRequest) -> Env:
    return Env(*request.param)


def test_whole_folio_and_stop_at_the_next_folio(env: Env) -> None:
    # The two folios are physically consecutive, so only the folio-end check stops the batch.
    assert env.a.pte_pfn(env.get(16)) == env.a.pte_pfn(env.get(15)) + 1
    assert env.batch() == (16, True)
    assert env.batch(start=4, max_nr=28) == (12, True)


def test_max_nr_caps(env: Env) -> None:
    assert env.batch(max_nr=5)[0] == 5
    assert env.batch(max_nr=1)[0] == 1


def test_stops_at_pte_none(env: Env) -> None:
    env.set(5, 0)
    assert env.batch()[0] == 5


def test_stops_at_a_page_of_another_folio(env: Env) -> None:
    env.set(8, env.get(20))  # right prot, wrong pfn
    assert env.batch()[0] == 8


def test_dirty_must_match_in_a_private_mapping(env: Env) -> None:
    env.set(7, env.a.pte_mkclean(env.get(7)))
    assert env.batch(flags=PRIVATE)[0] == 7
    assert env.batch(flags=PRIVATE | FPB_IGNORE_DIRTY)[0] == 16


def test_young_is_ignored(env: Env) -> None:
    env.set(3, env.a.pte_mkold(env.get(3)))
    assert env.batch()[0] == 16


def test_write_is_ignored_and_merged_into_any_writable(env: Env) -> None:
    a = env.a
    for i in range(16):
        env.set(i, a.pte_wrprotect(env.get(i)))
    assert env.batch() == (16, False)
    env.set(9, a.pte_mkwrite(env.get(9)))
    assert env.batch() == (16, True)
    # any_writable excludes the first PTE: the caller already knows it.
    env.set(9, a.pte_wrprotect(env.get(9)))
    env.set(0, a.pte_mkwrite(env.get(0)))
    assert env.batch() == (16, False)


def test_stops_at_protnone(env: Env) -> None:
    a = env.a
    none = a.pte_modify(env.get(4), a.vm_get_page_prot(0))
    assert a.pte_present(none) and a.pte_protnone(none)
    env.set(4, none)
    assert env.batch()[0] == 4


def test_stops_at_uffd_wp(env: Env) -> None:
    a = env.a
    marked = a.pte_mkuffd_wp(env.get(6))
    assert a.pte_uffd_wp(marked)
    env.set(6, marked)
    assert env.batch()[0] == 6


def test_soft_dirty_respected_unless_ignored(env: Env) -> None:
    a = env.a
    clean = a.pte_clear_soft_dirty(env.get(3))
    if a.pte_mksoft_dirty(clean) == clean:
        # arm64 has no soft-dirty bit in v6.12 (no ARCH_HAS_SOFT_DIRTY).
        pytest.skip(f"{type(a).__name__} has no soft-dirty bit")
    # x86-style pte_mkdirty() also sets soft-dirty: start from all clear.
    for i in range(16):
        env.set(i, a.pte_clear_soft_dirty(env.get(i)))
    env.set(3, a.pte_mksoft_dirty(env.get(3)))
    assert env.batch(flags=0)[0] == 3
    assert env.batch(flags=FPB_IGNORE_SOFT_DIRTY)[0] == 16
