"""The fork table's loop on the kernels of the contpte series' v6 posting.

The fork table (docs/numbers.md) is the fork loop of will-it-scale: the
parent writes 128 MiB of 64K folios once, then forks; each child exits at
once.  Its columns are, read from the series' code (docs/cost-model.md, "The
fork table"), v6 patches 1-12 ("Wire up PTE_CONT for user mappings",
mainline 4602e5757bcc) and the series as merged in v6.9, both on v6.9's
core-mm, which batches fork and zap per folio (``folio_pte_batch()``).

Patch 12 folds a block only when one ``set_ptes()`` call writes it whole
(``set_ptes_fold`` is the later f0c2264958e1), write-protects and clears one
PTE at a time through ``ptep_set_wrprotect()`` and ``ptep_get_and_clear()``,
each of which unfolds a folded block first (``wrprotect_ptes_opt`` and
``teardown_opt`` are the later 311a6cf29690 and 6b1e4efb6f54), and has no
``pte_batch_hint()`` (``batch_hint``: c6ec76a2ebc5, fb5451e5f72b).  So:

- the first fork unfolds each of the parent's blocks (its per-PTE
  write-protect) and nothing folds them again: the parent is read-only and
  never written after, so no later fork write-protects anything;
- every fork writes the child's blocks folded with ``set_ptes(nr=16)``
  (``contpte_set_ptes()`` onto none entries: no conversion, no TLBI);
- every child's exit clears its blocks one PTE at a time: one unfold
  (16 TLBIs by VA and a sync on Neoverse-N1) per block.

One conversion per 64K block per iteration, all at the child's exit.  The
merged series converts nothing in the loop.
"""

from __future__ import annotations

from typing import Any

import pytest
from scenario_util import PAGE

import contpte
from contpte.cost.fitset import EXPERIMENTS, V6_12, load_scenario
from contpte.cost.pricing import simulate

BLOCK = 16 * PAGE
BLOCKS = 8
ARENA = 0x7F00_0000_0000


def _loop(opts: dict[str, Any]) -> tuple[dict[str, int], dict[str, int], Any, int]:
    """The first fork + exit, then one steady-state fork + exit: the counter deltas of each."""
    m = contpte.Machine(arch="arm64", memory="64M", cpu="neoverse-n1", mthp={"64K": "always"}, **opts)
    p = m.spawn()
    a = p.mmap(BLOCKS * BLOCK, flags="private|anonymous|fixed", addr=ARENA)
    p.write(a, BLOCKS * BLOCK, 1)
    s = m.stats()
    p.fork().exit()
    first = m.stats_delta(s)
    s = m.stats()
    p.fork().exit()
    steady = m.stats_delta(s)
    return first, steady, p, a


def test_patch_12_converts_each_block_once_per_iteration_at_the_childs_exit() -> None:
    first, steady, parent, a = _loop(V6_12)
    # The first fork unfolds the parent's blocks (per-PTE write-protect) ...
    assert first["contpte.unfold.wrprotect_ptes"] == BLOCKS
    # ... and the first child's exit unfolds the child's, written folded.
    assert first["contpte.unfold.clear_full_ptes"] == BLOCKS
    assert first["contpte.convert"] == 2 * BLOCKS
    # The steady state: no write-protect, no fold, one unfold per block at exit.
    assert steady.get("contpte.unfold.wrprotect_ptes", 0) == 0
    assert steady.get("contpte.fold", 0) == 0 and steady.get("call.__contpte_try_fold", 0) == 0
    assert steady["contpte.unfold.clear_full_ptes"] == BLOCKS
    assert steady["contpte.convert"] == BLOCKS
    assert steady["call.contpte_set_ptes"] == BLOCKS
    # Neoverse-N1: 16 TLBIs by VA and a sync per conversion; one ASID flush and sync per fork
    # and per exit.
    assert steady["tlbi.VALE1IS"] == 16 * BLOCKS
    assert steady["tlbi.ASIDE1IS"] == 2 and steady["dvm.sync"] == BLOCKS + 2
    # The parent stays unfolded and read-only: nothing in patch 12 folds it again.
    pm = parent.pagemap(a, BLOCKS * BLOCK)
    assert not pm["cont"].any() and not pm["writable"].any()


def test_the_merged_series_converts_nothing_in_the_loop() -> None:
    first, steady, _, _ = _loop({})
    assert first.get("contpte.convert", 0) == 0 and steady.get("contpte.convert", 0) == 0
    assert steady["tlbi.ASIDE1IS"] == 2 and steady["dvm.sync"] == 2
    assert steady.get("tlbi.VALE1IS", 0) == 0


@pytest.mark.parametrize(
    ("opt", "value"),
    [("set_ptes_fold", True), ("batch_hint", True), ("wrprotect_ptes_opt", True)],
)
def test_no_single_later_patch_removes_the_exit_conversions(opt: str, value: bool) -> None:
    """Only the batched clear (6b1e4efb6f54, ``teardown_opt``) takes the conversions out of the loop.

    The automatic fold never runs here (every set_ptes() of the loop has nr == 16), the hint
    only saves reads, and the batched write-protect (the patch the table is published with)
    acts at the first fork only: the parent is read-only from then on.
    """
    _, steady, _, _ = _loop({**V6_12, opt: value})
    assert steady["contpte.convert"] == BLOCKS and steady.get("contpte.fold", 0) == 0
    _, steady, _, _ = _loop({**V6_12, "teardown_opt": True})
    assert steady.get("contpte.convert", 0) == 0


def test_without_the_hint_the_exit_reads_every_entry_of_a_folded_block_through_the_gather() -> None:
    """Patch 12's folio_pte_batch() reads each entry with ptep_get(): a folded block 16 times."""
    _, steady, _, _ = _loop(V6_12)
    _, hinted, _, _ = _loop({**V6_12, "batch_hint": True})
    # zap: the batch's first entry, then 15 more through ptep_get(), each gathering its block.
    assert steady["call.contpte_ptep_get"] - hinted["call.contpte_ptep_get"] == 15 * BLOCKS


def test_set_ptes_fold_is_the_automatic_fold_of_a_block_written_one_pte_at_a_time() -> None:
    """set_ptes(nr == 1) on a block's last entry folds it from f0c2264958e1 on, not before."""
    for fold, expected in ((True, BLOCKS), (False, 0)):
        m = contpte.Machine(
            arch="arm64",
            memory="64M",
            cpu="neoverse-n1",
            mthp={"64K": "always"},
            batch_fork=False,
            set_ptes_fold=fold,
        )
        p = m.spawn()
        a = p.mmap(BLOCKS * BLOCK, flags="private|anonymous|fixed", addr=ARENA)
        p.write(a, BLOCKS * BLOCK, 1)
        s = m.stats()
        c = p.fork()  # one set_pte_at() per child PTE (batch_fork=False)
        d = m.stats_delta(s)
        assert d.get("contpte.fold", 0) == expected
        assert int(c.pagemap(a, BLOCKS * BLOCK)["cont"].sum()) == 16 * expected


def test_the_fit_set_runs_these_kernels() -> None:
    """The fork table's variants are patch 12 and the merged series, each against contpte off."""
    v = EXPERIMENTS["wis-fork"]
    assert v["before"] == V6_12 and v["before-base"] == {**V6_12, "contpte": False}
    assert v["after"] == {} and v["after-base"] == {"contpte": False}
    c = simulate(load_scenario("wis-fork"), v["before"]).counters
    # 128 MiB of 64K folios: 2048 blocks, each unfolded once at the child's exit.
    assert c["contpte.convert"] == c["contpte.unfold.clear_full_ptes"] == 2048
    assert "contpte.fold" not in c and c["tlbi.VALE1IS"] == 16 * 2048 and c["dvm.sync"] == 2048 + 2
