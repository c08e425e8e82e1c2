"""The mmu_gather: batch slots, forced flushes, table-free ranges, delayed rmaps (mm/mmu_gather.c)."""

from __future__ import annotations

import pytest

import contpte
from contpte.errors import InvariantViolation
from contpte.mm.mmu_gather import MMU_GATHER_BUNDLE, max_gather_batch, max_gather_batch_count

MiB = 1 << 20


def test_batch_geometry_follows_the_page_size() -> None:
    # include/asm-generic/tlb.h: (PAGE_SIZE - sizeof(struct mmu_gather_batch)) / sizeof(void *)
    assert MMU_GATHER_BUNDLE == 8
    assert max_gather_batch(4096) == 510 and max_gather_batch_count(4096) == 19
    assert max_gather_batch(65536) == 8190 and max_gather_batch_count(65536) == 1


def _munmap_delta(pages: int, **kw: object) -> dict[str, int]:
    m = contpte.Machine(memory="128M", cpus=2, **kw)  # type: ignore[arg-type]
    p = m.spawn()
    a = p.mmap(pages * 4096, "rw", "private|anonymous")
    p.write(a, pages * 4096, 1)
    with m.measure() as d:
        p.munmap(a, pages * 4096)
    return dict(d)


@pytest.mark.parametrize(("pages", "forced"), [(9677, 0), (9678, 1)])
def test_order0_pages_take_one_slot_each(pages: int, forced: int) -> None:
    # 7 slots on the stack, then 19 batch pages of 509: the 9678th page fills the gather.
    d = _munmap_delta(pages)
    assert d["mmu_gather.forced_flush"] == forced
    assert d["call.tlb_flush_rmaps"] == forced


def test_a_large_folio_takes_two_slots() -> None:
    # 48M of 16K folios = 3072 folios < 4 + 19 * 255 = 4849: no forced flush
    # (counting pages, 12288 > 10000 would force one).
    d = _munmap_delta(48 * MiB // 4096, mthp={"16K": "always"})
    assert d["zap.batch"] == 3072
    assert d["mmu_gather.forced_flush"] == 0


def test_without_batch_pages_the_bundle_fills_every_few_folios() -> None:
    # max_gather_batch_count=0: the kernel without a batch page (GFP_NOWAIT failed).
    d = _munmap_delta(16, max_gather_batch_count=0)
    assert d["mmu_gather.forced_flush"] == 2  # after 7 and 14 pages
    d = _munmap_delta(256, max_gather_batch_count=0, mthp={"64K": "always"})
    assert d["mmu_gather.forced_flush"] == 4  # 2 slots per folio: after each 4th folio
    assert d["folio.free"] == 16


def test_freeing_page_tables_flushes_their_range() -> None:
    # pte_free_tlb(): tlb_flush_pmd_range(address, PAGE_SIZE) + freed_tables.
    # After the VMA's own flush (one ASIDE1IS: 4096 pages is above
    # MAX_DVM_OPS), the final flush of tlb_finish_mmu covers the 8 freed
    # tables with the PMD stride and no leaf hint: 8 TLBI VAE1IS.
    m = contpte.Machine(memory="128M", cpus=2, cpu="neoverse-n1", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(18 * MiB, "none", "private|anonymous")
    a = (a + 2 * MiB - 1) & ~(2 * MiB - 1)
    b = p.mmap(16 * MiB, "rw", "private|anonymous|fixed", addr=a)
    p.write(b, 16 * MiB, 1)
    with m.measure() as d:
        p.munmap(b, 16 * MiB)
    assert d["tlbi.ASIDE1IS"] == 1
    assert d["tlbi.VAE1IS"] == 8 and d["tlbi.VALE1IS"] == 0
    assert d["mmu_gather.flush"] == 2


def test_dirty_file_folios_force_a_flush_per_table() -> None:
    # tlb_delay_rmap(): zap_pte_range flushes before dropping the PTL and then
    # removes the delayed rmaps (tlb_flush_rmaps), once per table.
    m = contpte.Machine(memory="64M", cpus=2)
    f = m.open_file("data", "6M", folio_size="4K")
    p = m.spawn()
    b = p.mmap(6 * MiB, "rw", "shared", file=f)
    p.write(b, 4096, 1)
    p.write(b + 2 * MiB, 4096, 2)
    with m.measure() as d:
        p.munmap(b, 4 * MiB)
    assert d["mmu_gather.forced_flush"] == 2 and d["call.tlb_flush_rmaps"] == 2
    m.check()
    p.write(b + 4 * MiB, 4096, 3)
    with m.measure() as d:
        p.exit()
    assert d["call.tlb_flush_rmaps"] == 1


def test_a_page_freed_before_its_tlb_flush_is_caught() -> None:
    m = contpte.Machine(memory="32M", cpus=2, max_gather_batch_count=0, bugs=("zap_free_before_flush",))
    p = m.spawn()
    a = p.mmap(64 << 10, "rw", "private|anonymous")
    p.write(a, 64 << 10, 1)
    with pytest.raises(InvariantViolation) as e:
        p.munmap(a, 64 << 10)
    assert e.value.rule == "freed-frame-in-tlb"
    assert "returned to the page allocator while a TLB still maps it" in str(e.value)


def test_exit_frees_pages_its_own_tlb_entries_map() -> None:
    # exit: fullmm, no TLBI before the frees; the ASID is no longer used.
    m = contpte.Machine(memory="32M", cpus=2, max_gather_batch_count=0)
    p = m.spawn()
    a = p.mmap(1 * MiB, "rw", "private|anonymous")
    p.write(a, 1 * MiB, 1)
    c = p.fork()
    c.read(a, 1 * MiB)
    c.exit()
    p.exit()
