"""copy_pte_range: progress accounting and lock-break points (mm/memory.c, v6.12).

The loop adds 1 per none PTE and 8 per copied PTE; at the top of an
iteration with progress >= 32 it may drop both PTLs.  A batch of nr PTEs
adds 8*nr at once, so a large folio gives one break point per batch.
"""

from __future__ import annotations

from typing import Any

import pytest

import contpte

PAGE = 4096
BASE = 0x10000000


def _fork_breaks(written: list[int], npages: int = 64, **kw: Any) -> tuple[list[int], contpte.Machine]:
    m = contpte.Machine(arch=kw.pop("arch", "generic"), memory="64M", check=False, **kw)
    p = m.spawn()
    p.mmap(npages * PAGE, flags="private|anonymous|fixed", addr=BASE)
    for i in written:
        p.write(BASE + i * PAGE, PAGE, i + 1)
    seen: list[int] = []
    m.kernel.on_lock_break = lambda mm, addr: seen.append((addr - BASE) // PAGE)
    c = p.fork()
    assert m.stats().get("fork.lock_break_point", 0) == len(seen)
    for i in written:
        assert c.read(BASE + i * PAGE, PAGE)[0] == i + 1
    return seen, m


@pytest.mark.parametrize("arch", ["generic", "arm64"])
def test_none_ptes_count_one_each(arch: str) -> None:
    # idx 0 present (8), 24 none reach 32 -> break at 25; idx 40 present: 15 + 8 = 23,
    # then 9 none reach 32 -> break at 50; the 14 left stay below 32.
    seen, _ = _fork_breaks([0, 40], arch=arch)
    assert seen == [25, 50]


def test_present_ptes_count_eight_each() -> None:
    seen, m = _fork_breaks(list(range(64)))
    assert seen == list(range(4, 64, 4))
    assert m.stats()["fork.ptes"] == 64
    assert m.stats()["fork.batch"] == 0


@pytest.mark.parametrize("arch", ["generic", "arm64"])
def test_a_batch_adds_eight_per_pte_at_once(arch: str) -> None:
    seen, m = _fork_breaks(list(range(64)), arch=arch, mthp={"64K": "always"})
    assert seen == [16, 32, 48]
    assert m.stats()["fork.batch"] == 4
    assert m.stats()["fork.ptes"] == 64


def test_per_pte_variant_breaks_every_four() -> None:
    seen, m = _fork_breaks(list(range(64)), mthp={"64K": "always"}, batch_fork=False)
    assert seen == list(range(4, 64, 4))
    assert m.stats()["fork.batch"] == 0


def test_break_inside_a_table_does_not_lose_ptes() -> None:
    """Copying resumes correctly after a break in the middle of a run of none PTEs."""
    written = [0, 1, 2, 3, 33, 34, 63]
    seen, m = _fork_breaks(written)
    assert seen  # at least one break happened inside the range
    assert m.stats()["fork.ptes"] == len(written)
