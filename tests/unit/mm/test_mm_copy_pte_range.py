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


@pytest.mark.parametrize("arch", ["generic", "arm64"])
def test_aligned_lock_break_waits_for_a_block_boundary(arch: str) -> None:
    """lock_break="aligned": progress still reaches 32 every 4 pages without
    batching, but the break is put off to the next 64K-aligned address
    (pages 16, 32, 48), where "progress" breaks inside every block."""
    seen, m = _fork_breaks(list(range(64)), arch=arch, mthp={"64K": "always"}, batch_fork=False)
    assert seen == list(range(4, 64, 4))
    seen, m = _fork_breaks(
        list(range(64)), arch=arch, mthp={"64K": "always"}, batch_fork=False, lock_break="aligned"
    )
    assert seen == [16, 32, 48]
    assert m.kernel.lock_break == "aligned" and m.kernel.lock_break_align == 16 * PAGE
    # None PTEs: progress 32 at page 25 (see above); aligned waits to 32, then
    # from 40 (8 + 9 none...) the next 32 is reached after 48: break at 64 = end.
    seen, _ = _fork_breaks([0, 40], arch=arch, lock_break="aligned")
    assert seen == [32]
    # With batching a folio is one step, so the breaks already fall between blocks.
    seen, _ = _fork_breaks(list(range(64)), arch=arch, mthp={"64K": "always"}, lock_break="aligned")
    assert seen == [16, 32, 48]


def test_lock_break_and_accounting_options_are_checked() -> None:
    with pytest.raises(contpte.ContpteError, match="lock_break='sometimes'"):
        contpte.Machine(lock_break="sometimes")
    with pytest.raises(contpte.ContpteError, match="accounting='weird'"):
        contpte.Machine(accounting="weird")
    with pytest.raises(contpte.ContpteError, match="only in the OnePlus design"):
        contpte.Machine(accounting="entire", policy="mainline")
    with pytest.raises(contpte.ContpteError, match="only in the OnePlus design"):
        contpte.Machine(accounting="per-page", policy="oneplus")
    assert contpte.Machine().kernel.accounting == "per-page"
    assert contpte.Machine(accounting="per-page").kernel.policy == "mainline"
    m = contpte.Machine(accounting="entire")
    assert m.kernel.policy == "oneplus" and m.kernel.accounting == "entire"
