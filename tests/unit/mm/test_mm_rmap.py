"""rmap helpers and folio refcounting (mm/rmap.c, include/linux/rmap.h, v6.12)."""

from __future__ import annotations

import numpy as np
import pytest

import contpte
from contpte.errors import KernelBug
from contpte.mm import rmap
from contpte.mm.memmap import GUP_PIN_COUNTING_BIAS, PG_anon_exclusive
from contpte.mm.mm_types import VM_MAYREAD, VM_MAYWRITE, VM_READ, VM_WRITE, Vma

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
    return (m.kernel.memmap.flags[pfn : pfn + n] & PG_anon_exclusive) != 0


def test_new_anon_rmap_maps_every_page_once_exclusively(env: tuple[contpte.Machine, Vma]) -> None:
    m, vma = env
    mem = m.kernel.memmap
    folio = m.kernel.folio_alloc(4, zero=True)
    assert folio is not None and folio.refcount == 1
    rmap.folio_add_new_anon_rmap(folio, vma, BASE, rmap.RMAP_EXCLUSIVE)
    assert folio.test_anon()
    assert (mem.mapcount[folio.pfn : folio.pfn + 16] == 1).all()
    assert folio.mapcount_total() == 16
    assert _excl(m, folio.pfn, 16).all()
    assert m.stats()["mthp.64kB.nr_anon"] == 1
    assert not folio.likely_mapped_shared()


def test_dup_clears_exclusive_and_counts_mappings(env: tuple[contpte.Machine, Vma]) -> None:
    m, vma = env
    mem = m.kernel.memmap
    folio = m.kernel.folio_alloc(4, zero=True)
    assert folio is not None
    rmap.folio_add_new_anon_rmap(folio, vma, BASE, rmap.RMAP_EXCLUSIVE)
    assert rmap.folio_try_dup_anon_rmap_ptes(folio, folio.pfn + 2, 4, vma) == 0
    assert mem.mapcount[folio.pfn + 2 : folio.pfn + 6].tolist() == [2] * 4
    assert mem.mapcount[folio.pfn] == 1
    assert folio.mapcount_total() == 20
    assert _excl(m, folio.pfn, 16).tolist() == [True] * 2 + [False] * 4 + [True] * 10
    # v6.12 judges "likely shared" by the first page only.
    assert not folio.likely_mapped_shared()
    rmap.folio_try_dup_anon_rmap_ptes(folio, folio.pfn, 1, vma)
    assert folio.likely_mapped_shared()


def test_dup_of_maybe_pinned_exclusive_folio_fails_without_change(env: tuple[contpte.Machine, Vma]) -> None:
    m, vma = env
    mem = m.kernel.memmap
    large = m.kernel.folio_alloc(4, zero=True)
    small = m.kernel.folio_alloc(0, zero=True)
    assert large is not None and small is not None
    for f in (large, small):
        rmap.folio_add_new_anon_rmap(f, vma, BASE, rmap.RMAP_EXCLUSIVE)
    mem.pincount[large.pfn] = 1
    large.ref_add(1)
    small.ref_add(GUP_PIN_COUNTING_BIAS)
    assert large.maybe_dma_pinned() and small.maybe_dma_pinned()
    # Without MMF_HAS_PINNED the mm never pinned: no copy needed.
    vma.vm_mm.has_pinned = True
    before = mem.mapcount.copy()
    assert rmap.folio_try_dup_anon_rmap_ptes(large, large.pfn, 16, vma) == -16
    assert rmap.folio_try_dup_anon_rmap_ptes(small, small.pfn, 1, vma) == -16
    assert np.array_equal(mem.mapcount, before)
    assert _excl(m, large.pfn, 16).all() and _excl(m, small.pfn, 1).all()
    # A non-exclusive page of a pinned folio can be shared: only exclusivity forces a copy.
    large.clear_anon_exclusive(large.pfn + 3)
    assert rmap.folio_try_dup_anon_rmap_ptes(large, large.pfn + 3, 1, vma) == 0


def test_partial_unmap_queues_deferred_split_once(env: tuple[contpte.Machine, Vma]) -> None:
    m, vma = env
    k = m.kernel
    folio = k.folio_alloc(4, zero=True)
    thp = k.folio_alloc(9, zero=True)
    assert folio is not None and thp is not None
    rmap.folio_add_new_anon_rmap(folio, vma, BASE, rmap.RMAP_EXCLUSIVE)
    rmap.folio_add_new_anon_rmap(thp, vma, BASE + (2 << 20), rmap.RMAP_EXCLUSIVE)
    rmap.folio_remove_rmap_ptes(folio, folio.pfn + 3, 1, vma)
    rmap.folio_remove_rmap_ptes(folio, folio.pfn + 5, 2, vma)
    assert folio.pfn in k.deferred_split
    s = m.stats()
    assert s["mthp.64kB.split_deferred"] == 1
    assert s["thp_deferred_split_page"] == 0  # only PMD-mappable folios count there
    rmap.folio_remove_rmap_ptes(thp, thp.pfn, 1, vma)
    s = m.stats()
    assert s["mthp.2048kB.split_deferred"] == 1 and s["thp_deferred_split_page"] == 1
    # Fully unmapping is not a partial mapping: no queueing.
    other = k.folio_alloc(4, zero=True)
    assert other is not None
    rmap.folio_add_new_anon_rmap(other, vma, BASE, rmap.RMAP_EXCLUSIVE)
    rmap.folio_remove_rmap_ptes(other, other.pfn, 16, vma)
    assert other.pfn not in k.deferred_split and not other.mapped()


def test_mapcount_underflow_is_a_kernel_bug(env: tuple[contpte.Machine, Vma]) -> None:
    m, vma = env
    folio = m.kernel.folio_alloc(0, zero=True)
    assert folio is not None
    rmap.folio_add_new_anon_rmap(folio, vma, BASE, rmap.RMAP_EXCLUSIVE)
    rmap.folio_remove_rmap_ptes(folio, folio.pfn, 1, vma)
    with pytest.raises(KernelBug):
        rmap.folio_remove_rmap_ptes(folio, folio.pfn, 1, vma)


def test_folio_put_frees_at_zero_and_refuses_below(env: tuple[contpte.Machine, Vma]) -> None:
    m, _vma = env
    k = m.kernel
    free = k.buddy.nr_free
    folio = k.folio_alloc(4, zero=True)
    assert folio is not None
    folio.ref_add(15)
    k.folio_put(folio, 15)
    assert k.buddy.nr_free == free - 16
    k.folio_put(folio)
    assert k.buddy.nr_free == free
    assert k.memmap.head[folio.pfn] == -1
    f2 = k.folio_alloc(0, zero=True)
    assert f2 is not None
    with pytest.raises(KernelBug):
        k.folio_put(f2, 2)


def test_fork_raises_refcount_with_mapcount() -> None:
    """Through the public API: refcount >= mapcount at every step, both go back at exit."""
    m = contpte.Machine(arch="generic", memory="64M", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(16 * PAGE, flags="private|anonymous|fixed", addr=BASE)
    p.write(a, 16 * PAGE, 1)
    folio = m.kernel.folio(int(p.pagemap(a, PAGE)["pfn"][0]))
    assert folio.refcount == 16 and folio.mapcount_total() == 16
    c = p.fork()
    assert folio.refcount == 32 and folio.mapcount_total() == 32
    assert not _excl(m, folio.pfn, 16).any()
    c.write(a, PAGE, 2)  # copies one page out of the folio
    assert folio.refcount == 31 and folio.mapcount_total() == 31
    c.exit()
    assert folio.refcount == 16 and folio.mapcount_total() == 16
