"""Historical batching variants of fork and zap: batch_zap, batch_rmap, batch_extent.

Each is an option on the one kernel-shaped code path; every variant must
leave the same observable state as mainline (only the work differs).
"""

from __future__ import annotations

from typing import Any

import pytest

import contpte
from contpte.workloads.scenario import observe, parse, run

MiB = 1 << 20


def _touched(mthp: dict[str, str] | None = None, size: int = MiB, **opts: Any) -> tuple[Any, Any, int]:
    m = contpte.Machine(arch=opts.pop("arch", "arm64"), memory="64M", cpus=2, mthp=mthp or {}, **opts)
    p = m.spawn()
    a = p.mmap(size, prot="rw", flags="private|anonymous")
    p.write(a, size, value=5)
    return m, p, a


def _delta(m: Any, fn: Any) -> dict[str, int]:
    before = m.stats()
    fn()
    after = m.stats()
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def test_batch_zap_false_clears_one_pte_at_a_time_and_unfolds_every_block() -> None:
    m, p, a = _touched({"64K": "always"}, batch_zap=False)
    d = _delta(m, lambda: p.munmap(a, MiB))
    assert "zap.batch" not in d
    assert d["zap.ptes"] == 256
    assert d["rmap.op"] == 256  # one rmap update per page
    assert d["contpte.unfold.clear_full_ptes"] == 16  # the first cleared entry of each block
    m2, p2, a2 = _touched({"64K": "always"})
    d2 = _delta(m2, lambda: p2.munmap(a2, MiB))
    assert d2["zap.batch"] == 16 and d2["rmap.op"] == 16 and "contpte.unfold" not in d2
    assert d["zap.calls"] == 256 and d2["zap.calls"] == 16  # one zap_present_ptes() per PTE or batch


def test_batch_zap_false_at_exit_unfolds_the_child_blocks() -> None:
    m, p, a = _touched({"64K": "always"}, batch_zap=False, batch_fork=False)
    c = p.fork()
    d = _delta(m, c.exit)
    assert d["contpte.unfold.clear_full_ptes"] == 16
    assert p.read(a, MiB).tolist() == [5] * 256


def test_batch_rmap_false_zaps_batches_but_drops_references_page_by_page() -> None:
    m, p, a = _touched({"64K": "always"}, batch_rmap=False)
    d = _delta(m, lambda: p.munmap(a, MiB))
    assert d["zap.batch"] == 16
    assert d["rmap.op"] == d["rmap.remove"] == 256
    assert d["ref.op"] == 256  # one folio_put per page, as __tlb_remove_page() did
    assert d["folio.free"] == 16


def test_batch_rmap_false_updates_the_rmap_once_per_page_inside_batches() -> None:
    m, p, _a = _touched({"64K": "always"}, batch_rmap=False)
    d = _delta(m, p.fork)
    assert d["fork.batch"] == 16
    assert d["rmap.op"] == 256 and d["rmap.pages"] == 256
    # the refcount is still raised once per batch (folio_ref_add: an add without a result)
    assert d["ref.get"] == 16 and "ref.op" not in d
    m2, p2, _ = _touched({"64K": "always"})
    d2 = _delta(m2, p2.fork)
    assert d2["rmap.op"] == 16 and d2["ref.get"] == 16
    assert d["fork.calls"] == d2["fork.calls"] == 16  # one copy_present_ptes() per batch
    m3, p3, _ = _touched({"64K": "always"}, batch_fork=False)
    assert _delta(m3, p3.fork)["fork.calls"] == 256


@pytest.mark.parametrize("batch_rmap", [True, False])
def test_a_pinned_folio_is_copied_page_by_page(batch_rmap: bool) -> None:
    # folio_maybe_dma_pinned() is per folio: every exclusive page of the
    # pinned folio is copied, whichever way the rmap is updated.
    m, p, a = _touched({"64K": "always"}, batch_rmap=batch_rmap)
    p.pin(a + 5 * 4096, 4096)
    c = p.fork()
    assert m.stats()["fork.copy_page"] == 16
    assert c.read(a, MiB).tolist() == [5] * 256
    m.check()


def test_batch_extent_arch_batches_only_folded_blocks() -> None:
    # 2M folios mapped by PTEs: the PMD split maps whole folded blocks.
    m, p, a = _touched({"2M": "inherit"}, size=2 * MiB, batch_extent="arch", thp="always")
    p.mprotect(a + 2 * MiB - 4096, 4096, "r")  # split the PMD; the last block unfolds
    p.mprotect(a + 2 * MiB - 4096, 4096, "rw")  # and folds again on its last entry
    assert int(p.pagemap(a, 2 * MiB)["order"][0]) == 9 and p.pagemap(a, 2 * MiB)["cont"].all()
    d = _delta(m, p.fork)
    assert d["fork.batch"] == 32  # one per 64K block, not one per folio
    m2, p2, _ = _touched({"64K": "always"}, arch="generic", batch_extent="arch")
    d2 = _delta(m2, p2.fork)
    assert "fork.batch" not in d2  # no hint, no batch
    assert d2["fork.ptes"] == 256


def test_unknown_batch_extent_is_refused() -> None:
    with pytest.raises(contpte.ContpteError, match="batch_extent"):
        contpte.Machine(memory="64M", batch_extent="pmd")


SCENARIO = """
machine arch=arm64 memory=64M cpus=2 mthp.64K=always mthp.16K=always check=true
p = spawn
buf = p mmap 1M rw private|anonymous
p write buf 1M 7
c = p fork
c write buf+64K 4K 8
p madvise buf+4K 4K dontneed
p munmap buf+128K 96K
d = c fork
c exit
d write buf 8K 9
p mprotect buf+256K 64K r
p exit
d munmap buf 1M
"""

VARIANTS: list[dict[str, Any]] = [
    {"batch_zap": False},
    {"batch_fork": False, "batch_zap": False},
    {"batch_rmap": False},
    {"batch_extent": "arch"},
    {"batch_extent": "arch", "batch_rmap": False, "arch": "generic"},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()))
def test_variants_observe_what_mainline_observes(variant: dict[str, Any]) -> None:
    sc = parse(SCENARIO)
    arch = variant.get("arch", "arm64")
    base = run(sc, observe_state=True, arch=arch)
    var = run(sc, observe_state=True, **variant)
    assert [o.error for o in var] == [None] * len(sc.steps)
    assert [o.state for o in var] == [o.state for o in base]
    assert observe is not None
