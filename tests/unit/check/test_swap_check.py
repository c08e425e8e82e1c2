"""The swap validator (check/swap.py) finds each kind of broken swap bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

import contpte
from contpte.errors import InvariantViolation

K = 1024


def _swapped() -> tuple[contpte.Machine, object, int]:
    m = contpte.Machine(arch="arm64", memory="64M", mthp={"64K": "always"}, swap="16M")
    p = m.spawn()
    a = p.mmap(64 * K)
    p.write(a, 64 * K, 7)
    p.madvise(a, 64 * K, "pageout")
    m.check()
    return m, p, a


def test_a_count_without_its_swap_pte() -> None:
    m, p, a = _swapped()
    off = int(p.pagemap(a, 4 * K)["swap_offset"][0])
    np.asarray(m.swap.swap_map)[off] += 1
    with pytest.raises(InvariantViolation, match="swap-count"):
        m.check()


def test_mm_swapents_off_by_one() -> None:
    m, p, _a = _swapped()
    p.mm.add_mm_counter(2, 1)
    with pytest.raises(InvariantViolation, match="swap-rss"):
        m.check()


def test_a_leaked_slot() -> None:
    m, _p, _a = _swapped()
    m.swap.inuse_pages += 1
    with pytest.raises(InvariantViolation, match="swap-leak"):
        m.check()


def test_cache_flag_without_a_cached_page() -> None:
    m, p, a = _swapped()
    off = int(p.pagemap(a, 4 * K)["swap_offset"][0])
    np.asarray(m.swap.swap_map)[off] |= int(contpte.mm.swapfile.SWAP_HAS_CACHE)
    with pytest.raises(InvariantViolation, match="swap-cache"):
        m.check()


def test_values_come_back_through_the_isolation_check() -> None:
    # The device's copy of a page is the only one: a corrupted slot is read back wrong.
    m, p, a = _swapped()
    off = int(p.pagemap(a, 64 * K)["swap_offset"][3])
    np.asarray(m.swap.data)[off] = 99
    with pytest.raises(InvariantViolation, match="isolation"):
        p.read(a, 64 * K)
