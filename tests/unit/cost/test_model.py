"""The time model: one rule per counter, the DVM formula, contention, extras."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import contpte
from contpte.cost.model import DVM_KINDS, KINDS, RULES, classify, kind_cost, time_breakdown, unmapped_counters
from contpte.cost.profile import FIGURES, load_profile
from contpte.counters import DECLARED, FAMILIES
from contpte.errors import ModelUsageError

ALTRA = load_profile("altra")


def _all_declared() -> tuple[set[str], set[str]]:
    """Import every module of contpte so every counter is declared."""
    for mod in pkgutil.walk_packages(contpte.__path__, "contpte."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)
    return set(DECLARED), set(FAMILIES)


def test_every_declared_counter_has_a_cost_rule() -> None:
    names, families = _all_declared()
    assert {"dvm.sync", "rmap.remove", "fork.calls", "zap.calls", "folio.free_pages"} <= names
    assert unmapped_counters(names) == [], "add a rule in cost/model.py RULES"
    sample = {
        "tlbi": "tlbi.VALE1IS",
        "dsb": "dsb.ish",
        "fault": "fault.translation",
        "mthp": "mthp.64kB.split",
    }
    for fam in families:
        name = sample.get(fam, fam + ".x")
        assert classify(name) is not None, f"family {fam!r}: no rule prices {name!r}"


def test_rules_are_consistent() -> None:
    for rule in RULES:
        assert rule.kind in KINDS or rule.kind == "none", rule
        assert rule.why.strip(), rule
        if rule.priced_by is not None:
            assert classify(rule.priced_by) is not None, rule
    for kind in KINDS:
        assert kind in FIGURES or kind == "pte_atomic_extra", kind


def test_each_kind_prices_at_its_figure() -> None:
    for kind in KINDS:
        assert kind_cost(ALTRA, kind) >= 0, kind
    assert kind_cost(ALTRA, "pte_atomic_extra") == ALTRA["pte_atomic"] - ALTRA["pte_write"]
    m2 = load_profile("m2-vm")
    assert kind_cost(m2, "tlb_walk") == m2["tlb_walk"] + m2["stage2_walk"]


def test_a_block_flush_costs_its_tlbis_and_one_sync() -> None:
    """dsb ishst + 16 x TLBI VALE1IS + dsb ish with the sync: nothing else broadcasting."""
    c = {"dsb.ishst": 1, "tlbi.VALE1IS": 16, "dsb.ish": 1, "dvm.sync": 1}
    bd = time_breakdown(c, ALTRA, 1)
    want = ALTRA["dsb_ishst"] + 16 * ALTRA["tlbi_va_bcast"] + ALTRA["dsb_ish"] + ALTRA["dvm_sync"]
    assert bd.total_ns == pytest.approx(want)
    assert bd.stretch == 1.0 and bd.dvm_ns == pytest.approx(16 * ALTRA["tlbi_va_bcast"] + ALTRA["dvm_sync"])


@pytest.mark.parametrize(
    ("counter", "kind"),
    [
        ("tlbi.RVALE1IS", "tlbi_range_bcast"),
        ("tlbi.ASIDE1IS", "tlbi_asid_bcast"),
        ("tlbi.VMALLE1IS", "tlbi_asid_bcast"),
        ("tlbi.VAE1IS", "tlbi_va_bcast"),
        ("tlbi.VALE1", "tlbi_local"),
        ("tlbi.INVLPG", "tlbi_local"),
        ("dsb.sy", "dsb_ish"),
        ("rmap.remove", "rmap_remove"),
        ("fork.calls", "pte_call"),
        ("zap.batch", "pte_batch"),
        ("call.contpte_convert", "contpte_call"),
        ("folio.free_pages", "folio_free_page"),
    ],
)
def test_classification(counter: str, kind: str) -> None:
    rule = classify(counter)
    assert rule is not None and rule.kind == kind


def test_contention_stretches_only_the_dvm_terms() -> None:
    c = {"tlbi.VALE1IS": 1000, "dvm.sync": 100, "pte.write": 100000}
    one = time_breakdown(c, ALTRA, 1)
    many = time_breakdown(c, ALTRA, 32)
    assert many.concurrent_broadcasters > 0 and many.stretch > 1
    assert many.by_kind["pte_write"] == one.by_kind["pte_write"]
    for k in DVM_KINDS:
        assert many.by_kind[k] == pytest.approx(one.by_kind[k] * many.stretch)
    # the fixed point: c = (ncpus - 1) * (DVM share of a copy's time)
    assert many.concurrent_broadcasters == pytest.approx(31 * many.dvm_ns / many.total_ns, rel=1e-6)


def test_no_broadcast_no_contention() -> None:
    bd = time_breakdown({"pte.write": 1000}, ALTRA, 64)
    assert bd.concurrent_broadcasters == 0 and bd.stretch == 1


def test_concurrency_can_be_given() -> None:
    bd = time_breakdown({"tlbi.VALE1IS": 1}, ALTRA, 4, concurrent_broadcasters=2)
    assert bd.stretch == pytest.approx(1 + 2 * ALTRA["dvm_contention"])


def test_extras_and_unmapped() -> None:
    bd = time_breakdown({"frobs.made": 3}, ALTRA, 1, extra={"syscall": 2, "task_fork": 1})
    assert bd.total_ns == pytest.approx(2 * ALTRA["syscall"] + ALTRA["task_fork"])
    assert bd.unmapped == ("frobs.made",)
    with pytest.raises(ModelUsageError, match="no cost rule"):
        time_breakdown({"frobs.made": 3}, ALTRA, 1, strict=True)
    with pytest.raises(ModelUsageError, match="unknown cost kind"):
        time_breakdown({}, ALTRA, 1, extra={"coffee": 1})
    with pytest.raises(ModelUsageError, match="ncpus"):
        time_breakdown({}, ALTRA, 0)


def test_totals_are_not_priced_twice() -> None:
    bd = time_breakdown({"tlbi.VALE1IS": 4, "tlbi.total": 4}, ALTRA, 1)
    assert bd.counts["tlbi_va_bcast"] == 4
