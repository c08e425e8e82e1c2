"""wrprotect_refold: the contpte v4 posting's ptep_set_wrprotect() folds the block again."""

from __future__ import annotations

from typing import Any

import contpte

MiB = 1 << 20


def _fork_delta(**opts: Any) -> tuple[dict[str, int], Any, Any, int]:
    m = contpte.Machine(arch="arm64", memory="64M", cpus=2, mthp={"64K": "always"}, **opts)
    p = m.spawn()
    a = p.mmap(MiB, prot="rw", flags="private|anonymous")
    p.write(a, MiB, value=3)
    before = m.stats()
    p.fork()
    after = m.stats()
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}, m, p, a


def test_per_pte_fork_unfolds_then_refolds_every_parent_block() -> None:
    d, m, p, a = _fork_delta(batch_fork=False, wrprotect_refold=True)
    assert d["contpte.unfold.wrprotect_ptes"] == 16
    # parent refold at each block's last entry + the child's fold on its last set_ptes
    assert d["contpte.fold"] == 32
    assert d["contpte.convert"] == 48
    assert p.pagemap(a, MiB)["cont"].all()
    assert not p.pagemap(a, MiB)["writable"].any()
    m.check()


def test_mainline_leaves_the_parent_unfolded() -> None:
    d, _m, p, a = _fork_delta(batch_fork=False)
    assert d["contpte.unfold.wrprotect_ptes"] == 16
    assert d["contpte.fold"] == 16  # the child's only
    assert not p.pagemap(a, MiB)["cont"].any()


def test_per_pte_variant_without_wrprotect_opt_refolds_too() -> None:
    d, m, p, a = _fork_delta(wrprotect_ptes_opt=False, wrprotect_refold=True)
    assert d["contpte.unfold.wrprotect_ptes"] == 16
    assert d["contpte.fold"] == 16  # the parent's; the child gets set_ptes(nr) blocks
    assert p.pagemap(a, MiB)["cont"].all()
    m.check()
