"""``pagemap_rows`` (Process.pagemap) on hand-built tables."""

from __future__ import annotations

import pytest
from world import PAGE, World

from contpte.check.pagemap import PAGEMAP_DTYPE, page_pfn, page_pfns, pagemap_rows

BASE = 0x4000_0000


@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_rows(arch: str) -> None:
    w = World(arch)
    p = w.spawn()
    w.mmap(p, BASE, 4 << 20)
    f = w.fault_anon(p, BASE, 4, value=1)
    w.syscall(p)
    c = w.fork(p)
    a = w.arch
    # one page PROT_NONE (present, not valid), one dirty-clean
    ptep = p.mm.space.pte_ptr(BASE + 2 * PAGE)
    w.pool.store(ptep, a.pte_modify(w.pool.peek(ptep), a.vm_get_page_prot(0)))
    rows = pagemap_rows(p.mm, BASE, 20)
    assert rows.dtype == PAGEMAP_DTYPE
    assert rows["present"].tolist() == [True] * 16 + [False] * 4
    assert rows["pfn"][:16].tolist() == list(range(f, f + 16)) and not rows["pfn"][16:].any()
    assert (rows["order"][:16] == 4).all()
    assert not rows["writable"].any()  # write-protected by fork
    assert not rows["exclusive"][:16].any()  # shared with the child
    assert rows["dirty"][:16].all()
    w.cow(c, BASE, 5)
    assert pagemap_rows(c.mm, BASE, 1)["exclusive"][0] and pagemap_rows(c.mm, BASE, 1)["writable"][0]
    assert page_pfn(p.mm, BASE + 2 * PAGE) == f + 2 and page_pfn(p.mm, BASE + 16 * PAGE) == -1
    assert page_pfns(p.mm, BASE + 14 * PAGE, 4) == [f + 14, f + 15]


def test_pmd_rows() -> None:
    w = World("arm64")
    p = w.spawn()
    w.mmap(p, BASE, 4 << 20)
    f = w.map_pmd(p, BASE)
    rows = pagemap_rows(p.mm, BASE + 510 * PAGE, 4)
    assert rows["present"].tolist() == [True, True, False, False]
    assert rows["pfn"][:2].tolist() == [f + 510, f + 511]
    assert (rows["order"][:2] == 9).all() and rows["writable"][:2].all() and not rows["cont"].any()
    assert page_pfn(p.mm, BASE + 7 * PAGE) == f + 7
