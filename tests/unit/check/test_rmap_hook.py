"""refcount >= mapcount right after every rmap increase (``RmapHook``)."""

from __future__ import annotations

import pytest
from world import World

from contpte.errors import InvariantViolation
from contpte.mm.rmap import RMAP_EXCLUSIVE, anon_vma_prepare, folio_add_new_anon_rmap


def test_mapcount_raised_before_refcount_is_caught_at_once() -> None:
    w = World("arm64")
    p = w.spawn()
    vma = w.mmap(p, 0x4000_0000, 1 << 20)
    anon_vma_prepare(vma)
    folio = w.k.folio_alloc(4, True)
    # 16 mappings, one reference: the refcount is raised after the rmap (the bug)
    with pytest.raises(InvariantViolation) as ei:
        folio_add_new_anon_rmap(folio, vma, 0x4000_0000, RMAP_EXCLUSIVE)
    assert ei.value.rule == "refcount>=mapcount"
    assert str(ei.value) == (
        f"[refcount>=mapcount] folio {folio:#x}: refcount 1 < 16 mappings right after an rmap update"
    )


def test_the_folio_is_queued_for_the_next_check() -> None:
    w = World("arm64")
    p = w.spawn()
    w.mmap(p, 0x4000_0000, 1 << 20)
    w.v.shadow.sync()
    f = w.fault_anon(p, 0x4000_0000, 4)
    assert w.v.shadow.nqueue == 1 and int(w.v.shadow.queue[0]) == f
    w.syscall(p)


def test_no_hook_without_checks() -> None:
    w = World("arm64", check=False)
    assert w.k.rmap_observer is None and w.pool.epoch < 0
