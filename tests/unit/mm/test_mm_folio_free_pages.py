"""folio.free_pages: the pages of the folios freed."""

from __future__ import annotations

import pytest

import contpte


@pytest.mark.parametrize("mthp", [{}, {"64K": "always"}])
def test_munmap_counts_every_page_of_every_freed_folio(mthp: dict[str, str]) -> None:
    m = contpte.Machine(arch="arm64", memory="64M", cpus=1, mthp=mthp, check=False)
    p = m.spawn()
    a = p.mmap(1 << 20, prot="rw", flags="private|anonymous")
    p.write(a, 1 << 20, value=3)
    before = m.stats()
    p.munmap(a, 1 << 20)
    after = m.stats()
    freed_pages = after["folio.free_pages"] - before.get("folio.free_pages", 0)
    freed = after["folio.free"] - before.get("folio.free", 0)
    assert freed_pages == 256
    assert freed == (16 if mthp else 256)
