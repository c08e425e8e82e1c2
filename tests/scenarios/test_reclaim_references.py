"""Reclaim checks references first (mm/vmscan.c ``folio_check_references()``).

A lazyfree (MADV_FREE) folio read again before reclaim has a young PTE:
``folio_referenced()`` makes it old and the folio is kept (PG_referenced);
one not used since MADV_FREE (which made its PTEs old) is discarded.  The
same at v6.12 and v7.2.  What differs is how the young bits are cleared
(``young_ptes_batch``, v7.0): v6.12 to v6.19 call ``ptep_clear_flush_young()``
per PTE, which on arm64 clears the whole folded block for each of its 16
PTEs; v7.0 batches the folio (``folio_pte_batch()``) into one
``clear_flush_young_ptes()`` -> ``contpte_clear_flush_young_ptes()``.
"""

from __future__ import annotations

import pytest

import contpte

K = 1024
YOUNG = ("call.contpte_clear_flush_young_ptes", "call.contpte_test_and_clear_young_ptes")


def _freed_64k(arch: str, kernel: str, read_again: bool, **kw: object) -> tuple[contpte.Machine, object, int]:
    m = contpte.Machine(arch=arch, kernel=kernel, memory="64M", mthp={"64K": "always"}, check=True, **kw)
    p = m.spawn()
    a = p.mmap(64 * K)
    p.write(a, 64 * K, 7)
    p.madvise(a, 64 * K, "free")
    if read_again:
        assert p.read(a + 8 * K, 4 * K).tolist() == [7]
    return m, p, a


@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_lazyfree_read_again_is_kept(arch: str, kernel: str) -> None:
    m, p, a = _freed_64k(arch, kernel, True)
    assert m.reclaim() == 0
    st = m.stats()
    assert st["pglazyfreed"] == 0 and st["pglazyfree_fail"] == 0 and st["pgsteal"] == 0
    assert p.pagemap(a, 64 * K)["present"].all()
    assert p.read(a, 64 * K).tolist() == [7] * 16  # the values are still there
    m.check()


@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_lazyfree_not_used_again_is_discarded(arch: str, kernel: str) -> None:
    m, p, a = _freed_64k(arch, kernel, False)
    assert m.reclaim() == 16
    assert m.stats()["pglazyfreed"] == 16
    assert not p.pagemap(a, 64 * K)["present"].any()
    assert p.read(a, 64 * K).tolist() == [0] * 16
    m.check()


@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
def test_kept_once_then_discarded(kernel: str) -> None:
    # The first pass made the PTEs old and set PG_referenced; not used
    # again, the second pass finds no young PTE and PG_referenced on a
    # folio of the file LRU (lazyfree): FOLIOREF_RECLAIM_CLEAN, discarded.
    m, p, a = _freed_64k("arm64", kernel, True)
    assert m.reclaim() == 0
    assert m.reclaim() == 16
    assert p.read(a, 64 * K).tolist() == [0] * 16


@pytest.mark.parametrize("kernel", ["6.19", "7.0"])
def test_young_clearing_of_a_folded_64k_folio(kernel: str) -> None:
    # One PTE of the folded block was read (AF set on that entry only).
    m, p, a = _freed_64k("arm64", kernel, True)
    assert p.pagemap(a, 64 * K)["cont"].all()
    s = m.stats()
    assert m.reclaim() == 0
    d = {n: m.stats()[n] - s[n] for n in (*YOUNG, "pte.atomic", "tlbi.total", "tlbi.VALE1IS")}
    if kernel == "6.19":
        # 16 ptep_clear_flush_young() -> contpte_clear_flush_young_ptes(nr=1),
        # each clearing AF on all 16 entries; only the first finds one young
        # and flushes the block (16 VALE1IS: no FEAT_TLBIRANGE).
        assert d == {YOUNG[0]: 16, YOUNG[1]: 16, "pte.atomic": 256, "tlbi.total": 16, "tlbi.VALE1IS": 16}
    else:
        # folio_pte_batch() = 16: one clear_flush_young_ptes(nr=16), one flush.
        assert d == {YOUNG[0]: 1, YOUNG[1]: 1, "pte.atomic": 16, "tlbi.total": 16, "tlbi.VALE1IS": 16}


@pytest.mark.parametrize("kernel", ["6.19", "7.0"])
def test_young_clearing_of_a_128k_folio_with_range_tlbi(kernel: str) -> None:
    # Two folded blocks, one page read in each; a CPU with FEAT_TLBIRANGE.
    m = contpte.Machine(
        arch="arm64", kernel=kernel, cpu="neoverse-v2", memory="64M", mthp={"128K": "always"}, check=True
    )
    p = m.spawn()
    a = p.mmap(128 * K)
    p.write(a, 128 * K, 3)
    p.madvise(a, 128 * K, "free")
    p.read(a, 4 * K)
    p.read(a + 64 * K, 4 * K)
    s = m.stats()
    assert m.reclaim() == 0
    d = {n: m.stats()[n] - s[n] for n in (*YOUNG, "pte.atomic", "tlbi.total")}
    if kernel == "6.19":
        # 32 per-PTE calls; the first of each block finds it young: two block flushes.
        assert d == {YOUNG[0]: 32, YOUNG[1]: 32, "pte.atomic": 512, "tlbi.total": 2}
    else:
        # One batch of 32: one test-and-clear over both blocks, one range flush.
        assert d == {YOUNG[0]: 1, YOUNG[1]: 1, "pte.atomic": 32, "tlbi.total": 1}
    assert p.read(a, 128 * K).tolist() == [3] * 32
