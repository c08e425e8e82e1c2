"""CONFIG_MM_ID (v6.15): which mms map a large folio, and what reads it.

The rmap functions keep each large folio's two mm slots and its "maybe
mapped shared" bit in every version (include/linux/rmap.h
``folio_add_return_large_mapcount`` / ``folio_sub_return_large_mapcount``);
from ``kernel="6.15"`` CoW reuse and ``folio_maybe_mapped_shared()`` (madvise,
mprotect) read them.  Expected values follow those functions line by line.
"""

from __future__ import annotations

import contpte
from contpte.mm.memmap import folio_maybe_mapped_shared

K64 = 64 << 10
PAGE = 4096


def _setup(kernel: str) -> tuple[contpte.Machine, contpte.Process, int]:
    m = contpte.Machine(memory="64M", mthp={"64K": "always"}, kernel=kernel)
    p = m.spawn()
    a = p.mmap(K64, prot="rw", flags="private|anonymous")
    p.write(a, K64, 1)
    return m, p, a


def _slots(m: contpte.Machine, p: contpte.Process, a: int) -> tuple[int, int, int, int, int]:
    folio = int(p.pagemap(a, PAGE)["pfn"][0])
    mem = m.kernel.memmap
    return (
        int(mem.mm_id0[folio]),
        int(mem.mm_id_mapcount0[folio]),
        int(mem.mm_id1[folio]),
        int(mem.mm_id_mapcount1[folio]),
        int(mem.mm_ids_shared[folio]),
    )


def test_slots_follow_fork_and_exit() -> None:
    m, p, a = _setup("6.15")
    assert _slots(m, p, a) == (p.pid, 16, 0, 0, 0)
    c1 = p.fork()
    assert _slots(m, p, a) == (p.pid, 16, c1.pid, 16, 1)
    c2 = p.fork()  # both slots taken: c2 is not tracked
    assert _slots(m, p, a) == (p.pid, 16, c1.pid, 16, 1)
    c1.exit()  # slot 1 freed; slot 0 holds 16 of 32 mappings: still shared
    assert _slots(m, p, a) == (p.pid, 16, 0, 0, 1)
    c2.exit()  # c2 had no slot; slot 0 now holds every mapping
    assert _slots(m, p, a) == (p.pid, 16, 0, 0, 0)
    m.check()


def test_cow_reuse_reads_the_bit() -> None:
    """The parent reuses after its children exit; a child that never got a slot copies."""
    copies = {}
    for order in ("children exit", "parent and first child exit"):
        m, p, a = _setup("6.15")
        c1 = p.fork()
        c2 = p.fork()
        if order == "children exit":
            c2.exit()
            c1.exit()
            writer = p
        else:
            p.exit()
            c1.exit()
            writer = c2
        s = m.stats()
        writer.write(a, PAGE, 2)
        d = m.stats_delta(s)
        copies[order] = (d["page.copy"], d["fault.wp_reuse"])
        assert writer.read(a, PAGE)[0] == 2 and writer.read(a + PAGE, PAGE)[0] == 1
        m.check()
    # c2's mappings never got a slot: the bit stays set although c2 alone maps the folio.
    assert copies == {"children exit": (0, 1), "parent and first child exit": (1, 0)}


def test_madvise_free_asks_maybe_mapped_shared_from_6_15() -> None:
    """Both processes unmap the folio's first half; MADV_FREE of one page of the rest.

    6.12's folio_likely_mapped_shared() looks at the first page (mapped by
    no one) and the total (16 mappings, not more than the pages): not
    shared, so the folio is split.  From 6.15 the mm-slot bit says shared:
    the folio is left alone.
    """
    got = {}
    for kernel in ("6.12", "6.15"):
        m, p, a = _setup(kernel)
        c = p.fork()
        p.munmap(a, 8 * PAGE)
        c.munmap(a, 8 * PAGE)
        folio = int(p.pagemap(a + 8 * PAGE, PAGE)["pfn"][0]) - 8
        assert folio_maybe_mapped_shared(m.kernel.memmap, folio)
        s = m.stats()
        p.madvise(a + 9 * PAGE, PAGE, "free")
        got[kernel] = m.stats_delta(s)["mthp.64kB.split"]
        assert c.read(a + 9 * PAGE, PAGE)[0] == 1
        m.check()
    assert got == {"6.12": 1, "6.15": 0}
