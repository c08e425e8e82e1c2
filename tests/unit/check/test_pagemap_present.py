"""pagemap's PM_PRESENT is pte_present(): PROT_NONE entries are present.

Found by the live-kernel oracle (scenario mprotect-none-64K): Linux reports a
page made PROT_NONE as present in /proc/pid/pagemap (fs/proc/task_mmu.c
``pte_to_pagemap_entry`` tests ``pte_present``, true for PROT_NONE entries),
the model reported it absent.
"""

from __future__ import annotations

import pytest

import contpte


@pytest.mark.parametrize("arch", ["generic", "arm64"])
def test_prot_none_pages_stay_present_with_their_frame(arch: str) -> None:
    m = contpte.Machine(arch=arch, memory="64M", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(128 << 10)
    p.write(a, 128 << 10, 5)
    before = p.pagemap(a, 128 << 10)
    p.mprotect(a + 8192, 8192, "none")
    after = p.pagemap(a, 128 << 10)
    assert after["present"].all()
    assert (after["pfn"] == before["pfn"]).all()
    assert (after["order"] == 4).all()
    with pytest.raises(contpte.SegmentationFault):
        p.read(a + 8192, 4096)
