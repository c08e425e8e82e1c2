"""folio_pte_batch_flags (mm/internal.h): where a batch stops, what it ignores, what it merges.

v6.12's ``folio_pte_batch(..., flags, &any_writable, ...)`` is the same
function with the flags inverted (``FPB_IGNORE_DIRTY`` = no
``FPB_RESPECT_DIRTY``) and the out-parameters as ``FPB_MERGE_*``; from v6.15
(``fpb_cap_at_folio_end``) it no longer reads the PTE after the folio.
"""

from __future__ import annotations

from typing import Any

import pytest

import contpte
from contpte.mm.internal import (
    FPB_MERGE_WRITE,
    FPB_MERGE_YOUNG_DIRTY,
    FPB_RESPECT_DIRTY,
    FPB_RESPECT_SOFT_DIRTY,
    FPB_RESPECT_WRITE,
    PtePtr,
    folio_pte_batch,
    folio_pte_batch_flags,
)
from contpte.mm.memmap import folio_nr_pages, page_folio

PAGE = 4096
BASE = 0x10000000
PRIVATE = FPB_MERGE_WRITE | FPB_RESPECT_DIRTY  # copy_present_ptes' flags for a private mapping


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
        """(nr, the first PTE made writable by FPB_MERGE_WRITE)."""
        first = self.get(start)
        ptent = PtePtr(first)
        nr = folio_pte_batch_flags(self.m.kernel, self.folio, None, self.ptep0 + start, ptent, max_nr, flags)
        return nr, bool(self.a.pte_write(ptent.value)) and not self.a.pte_write(first)

    def merged(self, start: int = 0, max_nr: int = 32, flags: int = FPB_MERGE_YOUNG_DIRTY) -> tuple[int, int]:
        """(nr, the first PTE after the merge)."""
        ptent = PtePtr(self.get(start))
        nr = folio_pte_batch_flags(self.m.kernel, self.folio, None, self.ptep0 + start, ptent, max_nr, flags)
        return nr, int(ptent.value)


@pytest.fixture(params=[("generic", {}), ("arm64", {"contpte": False})], ids=["generic", "arm64-nocont"])
def env(request: pytest.FixtureRequest) -> Env:
    return Env(*request.param)


def test_whole_folio_and_stop_at_the_next_folio(env: Env) -> None:
    # The two folios are physically consecutive, so only the folio-end check stops the batch.
    assert env.a.pte_pfn(env.get(16)) == env.a.pte_pfn(env.get(15)) + 1
    for i in range(16):
        env.set(i, env.a.pte_wrprotect(env.get(i)))
    env.set(9, env.a.pte_mkwrite(env.get(9)))
    assert env.batch() == (16, True)
    assert env.batch(start=4, max_nr=28) == (12, True)


@pytest.mark.parametrize("cap", [False, True], ids=["v6.12", "fpb_cap_at_folio_end"])
def test_the_entry_after_the_folio_is_read_only_before_v6_15(cap: bool) -> None:
    """v6.12 reads the next folio's first PTE and stops on its pfn; v6.15 caps max_nr first."""
    env = Env("generic", {"fpb_cap_at_folio_end": cap})
    s = env.m.stats()["pte.read"]
    assert folio_pte_batch(env.m.kernel, env.folio, env.ptep0, env.get(0), 32) == 16
    # 15 entries after the first, and without the cap the 17th.
    assert env.m.stats()["pte.read"] - s == (15 if cap else 16)
    s = env.m.stats()["pte.read"]
    assert folio_pte_batch(env.m.kernel, env.folio, env.ptep0 + 4, env.get(4), 8) == 8
    assert env.m.stats()["pte.read"] - s == 7  # max_nr inside the folio: the same either way


def test_folio_pte_batch_is_the_flagless_form(env: Env) -> None:
    a = env.a
    env.set(3, a.pte_mkclean(a.pte_wrprotect(env.get(3))))
    assert folio_pte_batch(env.m.kernel, env.folio, env.ptep0, env.get(0), 32) == 16
    assert env.batch(flags=FPB_RESPECT_WRITE)[0] == 3
    assert env.batch(flags=FPB_RESPECT_DIRTY)[0] == 3


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
    assert env.batch(flags=FPB_MERGE_WRITE)[0] == 16  # a shared mapping's flags


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
    assert env.batch(flags=FPB_RESPECT_SOFT_DIRTY)[0] == 3
    assert env.batch(flags=0)[0] == 16


def test_write_respected_for_mprotect(env: Env) -> None:
    a = env.a
    env.set(5, a.pte_wrprotect(env.get(5)))
    assert env.batch(flags=FPB_RESPECT_SOFT_DIRTY | FPB_RESPECT_WRITE)[0] == 5
    assert env.batch(flags=FPB_RESPECT_SOFT_DIRTY)[0] == 16


def test_merge_young_dirty_updates_the_copy(env: Env) -> None:
    a = env.a
    for i in range(16):
        env.set(i, a.pte_mkold(a.pte_mkclean(env.get(i))))
    nr, first = env.merged()
    assert nr == 16 and not a.pte_young(first) and not a.pte_dirty(first)
    env.set(11, a.pte_mkyoung(env.get(11)))
    env.set(12, a.pte_mkdirty(env.get(12)))
    nr, first = env.merged()
    assert nr == 16 and a.pte_young(first) and a.pte_dirty(first)
    nr, first = env.merged(max_nr=11)  # the young and dirty PTEs are outside the batch
    assert nr == 11 and not a.pte_young(first) and not a.pte_dirty(first)
    nr, first = env.merged(flags=0)
    assert nr == 16 and not a.pte_young(first) and not a.pte_dirty(first)
