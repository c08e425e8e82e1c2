"""rmap helpers and folio refcounting (mm/rmap.c, include/linux/rmap.h, v6.12)."""

from __future__ import annotations

import numpy as np
import pytest

import contpte
from contpte.errors import KernelBug
from contpte.mm import rmap
from contpte.mm.memmap import (
    GUP_PIN_COUNTING_BIAS,
    ClearPageAnonExclusive,
    PG_anon_exclusive,
    folio_likely_mapped_shared,
    folio_mapcount,
    folio_mapped,
    folio_maybe_dma_pinned,
    folio_ref_add,
    folio_ref_count,
    folio_test_anon,
    page_folio,
)
from contpte.mm.mm_types import VM_MAYREAD, VM_MAYWRITE, VM_READ, VM_WRITE, Vma, vma_mm

PAGE = 4096
BASE = 0x10000000


@pytest.fixture
def env() -> tuple[contpte.Machine, Vma]:
    m = contpte.Machine(arch="generic", memory="64M", check=False)
    p = m.spawn()
    vma = Vma(
        p.mm,
        BASE,
        BASE + 2048 * PAGE,
        VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE,
        0,
        BASE >> 12,
        None,
        anon_vma=m.kernel.new_anon_vma(),
    )
    return m, vma


def _excl(m: contpte.Machine, pfn: int, n: int) -> np.ndarray:
    excl: np.ndarray = (np.asarray(m.kernel.memmap.flags)[pfn : pfn + n] & PG_anon_exclusive) != 0
    return excl


def _mapcount(m: contpte.Machine) -> np.ndarray:
    """The per-page mapcounts (a typed memoryview on the compiled core)."""
    return np.asarray(m.kernel.memmap.mapcount)


def test_new_anon_rmap_maps_every_page_once_exclusively(env: tuple[contpte.Machine, Vma]) -> None:
    m, vma = env
    mem = m.kernel.memmap
    folio = m.kernel.folio_alloc(4, zero=True)
    assert folio != -1 and folio_ref_count(mem, folio) == 1
    rmap.folio_add_new_anon_rmap(folio, vma, BASE, rmap.RMAP_EXCLUSIVE)
    assert folio_test_anon(mem, folio)
    assert (_mapcount(m)[folio : folio + 16] == 1).all()
    assert folio_mapcount(mem, folio) == 16
    assert _excl(m, folio, 16).all()
    assert m.stats()["mthp.64kB.nr_anon"] == 1
    assert not folio_likely_mapped_shared(mem, folio)


def test_dup_clears_exclusive_and_counts_mappings(env: tuple[contpte.Machine, Vma]) -> None:
    m, vma = env
    mem = m.kernel.memmap
    folio = m.kernel.folio_alloc(4, zero=True)
    assert folio != -1
    rmap.folio_add_new_anon_rmap(folio, vma, BASE, rmap.RMAP_EXCLUSIVE)
    assert rmap.folio_try_dup_anon_rmap_ptes(folio, folio + 2, 4, vma, vma) == 0
    assert _mapcount(m)[folio + 2 : folio + 6].tolist() == [2] * 4
    assert mem.mapcount[folio] == 1
    assert folio_mapcount(mem, folio) == 20
    assert _excl(m, folio, 16).tolist() == [True] * 2 + [False] * 4 + [True] * 10
    # v6.12 (include/linux/mm.h): more mappings than pages is "likely shared",
    # though the first page is mapped once.
    assert folio_likely_mapped_shared(mem, folio)


def test_likely_mapped_shared_guesses_by_the_first_page(env: tuple[contpte.Machine, Vma]) -> None:
    m, vma = env
    mem = m.kernel.memmap
    folio = m.kernel.folio_alloc(4, zero=True)
    assert folio != -1
    rmap.folio_add_new_anon_rmap(folio, vma, BASE, rmap.RMAP_EXCLUSIVE)
    rmap.folio_remove_rmap_ptes(folio, folio, 8, vma)  # pages 8..15 are mapped now
    assert rmap.folio_try_dup_anon_rmap_ptes(folio, folio + 8, 4, vma, vma) == 0
    assert folio_mapcount(mem, folio) == 12
    # No more mappings than pages, no PMD mapping: the first page decides.
    assert not folio_likely_mapped_shared(mem, folio)


def test_dup_of_maybe_pinned_exclusive_folio_fails_without_change(env: tuple[contpte.Machine, Vma]) -> None:
    m, vma = env
    mem = m.kernel.memmap
    large = m.kernel.folio_alloc(4, zero=True)
    small = m.kernel.folio_alloc(0, zero=True)
    assert large != -1 and small != -1
    for f in (large, small):
        rmap.folio_add_new_anon_rmap(f, vma, BASE, rmap.RMAP_EXCLUSIVE)
    mem.pincount[large] = 1
    folio_ref_add(mem, large, 1)
    folio_ref_add(mem, small, GUP_PIN_COUNTING_BIAS)
    assert folio_maybe_dma_pinned(mem, large) and folio_maybe_dma_pinned(mem, small)
    # Without MMF_HAS_PINNED the mm never pinned: no copy needed.
    vma_mm(vma).has_pinned = True
    before = _mapcount(m).copy()
    assert rmap.folio_try_dup_anon_rmap_ptes(large, large, 16, vma, vma) == -16
    assert rmap.folio_try_dup_anon_rmap_ptes(small, small, 1, vma, vma) == -16
    assert np.array_equal(_mapcount(m), before)
    assert _excl(m, large, 16).all() and _excl(m, small, 1).all()
    # A non-exclusive page of a pinned folio can be shared: only exclusivity forces a copy.
    ClearPageAnonExclusive(mem, large + 3)
    assert rmap.folio_try_dup_anon_rmap_ptes(large, large + 3, 1, vma, vma) == 0


def test_partial_unmap_queues_deferred_split_once(env: tuple[contpte.Machine, Vma]) -> None:
    m, vma = env
    k = m.kernel
    folio = k.folio_alloc(4, zero=True)
    thp = k.folio_alloc(9, zero=True)
    assert folio != -1 and thp != -1
    rmap.folio_add_new_anon_rmap(folio, vma, BASE, rmap.RMAP_EXCLUSIVE)
    rmap.folio_add_new_anon_rmap(thp, vma, BASE + (2 << 20), rmap.RMAP_EXCLUSIVE)
    rmap.folio_remove_rmap_ptes(folio, folio + 3, 1, vma)
    rmap.folio_remove_rmap_ptes(folio, folio + 5, 2, vma)
    assert folio in k.deferred_split
    s = m.stats()
    assert s["mthp.64kB.split_deferred"] == 1
    assert s["thp_deferred_split_page"] == 0  # only PMD-mappable folios count there
    rmap.folio_remove_rmap_ptes(thp, thp, 1, vma)
    s = m.stats()
    assert s["mthp.2048kB.split_deferred"] == 1 and s["thp_deferred_split_page"] == 1
    # Fully unmapping is not a partial mapping: no queueing.
    other = k.folio_alloc(4, zero=True)
    assert other != -1
    rmap.folio_add_new_anon_rmap(other, vma, BASE, rmap.RMAP_EXCLUSIVE)
    rmap.folio_remove_rmap_ptes(other, other, 16, vma)
    assert other not in k.deferred_split and not folio_mapped(k.memmap, other)


def test_mapcount_underflow_is_a_kernel_bug(env: tuple[contpte.Machine, Vma]) -> None:
    m, vma = env
    folio = m.kernel.folio_alloc(0, zero=True)
    assert folio != -1
    rmap.folio_add_new_anon_rmap(folio, vma, BASE, rmap.RMAP_EXCLUSIVE)
    rmap.folio_remove_rmap_ptes(folio, folio, 1, vma)
    with pytest.raises(KernelBug):
        rmap.folio_remove_rmap_ptes(folio, folio, 1, vma)


def test_folio_put_frees_at_zero_and_refuses_below(env: tuple[contpte.Machine, Vma]) -> None:
    m, _vma = env
    k = m.kernel
    free = k.buddy.nr_free
    folio = k.folio_alloc(4, zero=True)
    assert folio != -1
    folio_ref_add(k.memmap, folio, 15)
    k.folio_put(folio, 15)
    assert k.buddy.nr_free == free - 16
    k.folio_put(folio)
    assert k.buddy.nr_free == free
    assert k.memmap.head[folio] == -1
    f2 = k.folio_alloc(0, zero=True)
    assert f2 != -1
    with pytest.raises(KernelBug):
        k.folio_put(f2, 2)


def test_fork_raises_refcount_with_mapcount() -> None:
    """Through the public API: refcount >= mapcount at every step, both go back at exit."""
    m = contpte.Machine(arch="generic", memory="64M", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(16 * PAGE, flags="private|anonymous|fixed", addr=BASE)
    p.write(a, 16 * PAGE, 1)
    mem = m.kernel.memmap
    folio = page_folio(mem, int(p.pagemap(a, PAGE)["pfn"][0]))
    assert folio_ref_count(mem, folio) == 16 and folio_mapcount(mem, folio) == 16
    c = p.fork()
    assert folio_ref_count(mem, folio) == 32 and folio_mapcount(mem, folio) == 32
    assert not _excl(m, folio, 16).any()
    c.write(a, PAGE, 2)  # copies one page out of the folio
    assert folio_ref_count(mem, folio) == 31 and folio_mapcount(mem, folio) == 31
    c.exit()
    assert folio_ref_count(mem, folio) == 16 and folio_mapcount(mem, folio) == 16
