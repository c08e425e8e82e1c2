"""The time model: formulas, monotonicity, and that every counter is priced."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import contpte
from contpte.cost.model import (
    KINDS,
    NONE,
    RULES,
    broadcast_cost,
    classify,
    time_breakdown,
    unmapped_counters,
)
from contpte.cost.profile import load_profile
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
    assert unmapped_counters(names) == [], "add a rule in cost/model.py RULES"
    # a family's members appear at run time; every family needs a rule
    # that covers them (tested on a representative member name)
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
        assert rule.kind == NONE or rule.kind in KINDS, rule
        assert rule.why
        if rule.priced_by is not None:
            assert rule.kind == NONE
            target = classify(rule.priced_by)
            assert target is not None and target.kind != NONE, rule


def test_formula_per_kind() -> None:
    counters = {"pte.read": 10, "pte.write": 4, "page.zero": 2, "rmap.pages": 3}
    b = time_breakdown(counters, ALTRA)
    expect = 10 * ALTRA["pte_read"] + 4 * ALTRA["pte_write"] + 2 * ALTRA["page_zero"] + 3 * ALTRA["rmap_page"]
    assert b.total_ns == pytest.approx(expect)
    assert b.by_counter["page.zero"] == pytest.approx(2 * ALTRA["page_zero"])
    assert b.unmapped == ()


def test_atomic_adds_only_its_extra_over_the_write() -> None:
    b = time_breakdown({"pte.write": 1, "pte.atomic": 1}, ALTRA)
    assert b.total_ns == pytest.approx(ALTRA["pte_atomic"])


def test_events_and_totals_cost_nothing_by_themselves() -> None:
    b = time_breakdown({"contpte.convert": 5, "contpte.unfold.wrprotect_ptes": 5, "tlbi.total": 99}, ALTRA)
    assert b.total_ns == 0.0 and b.unmapped == ()


def test_broadcast_flush_formula() -> None:
    # cost(n x TLBI_IS + DSB ISH) = a + n * cores * (b + bk * c)
    n, c = 16, 3.0
    b = time_breakdown({"tlbi.VALE1IS": n, "dsb.ish": 1}, ALTRA, concurrent_broadcasters=c)
    expect = ALTRA["dsb_ish"] + n * ALTRA.cores * (
        ALTRA["tlbi_bcast_per_core"] + ALTRA["tlbi_contention_per_core"] * c
    )
    assert b.total_ns == pytest.approx(expect)
    local = time_breakdown({"tlbi.VALE1": n}, ALTRA)
    assert local.total_ns == pytest.approx(n * ALTRA["tlbi_local"])


def test_unmapped_is_reported_never_silently_free() -> None:
    b = time_breakdown({"pte.read": 1, "warp.drive": 7}, ALTRA)
    assert b.unmapped == ("warp.drive",)
    with pytest.raises(ModelUsageError, match=r"warp\.drive"):
        time_breakdown({"warp.drive": 7}, ALTRA, strict=True)


def test_extra_kinds() -> None:
    b = time_breakdown({}, ALTRA, extra={"task_fork_exit": 2})
    assert b.total_ns == pytest.approx(2 * ALTRA["task_fork_exit"])
    with pytest.raises(ModelUsageError):
        time_breakdown({}, ALTRA, extra={"nonsense": 1})
    with pytest.raises(ModelUsageError):
        time_breakdown({}, ALTRA, ncpus=0)


@pytest.mark.parametrize("name", ["altra", "m2-vm", "x86"])
def test_broadcast_cost_grows_with_contention_and_cores(name: str) -> None:
    p = load_profile(name)
    costs = [broadcast_cost(p, c) for c in (0, 1, 4, 16, 31)]
    assert costs == sorted(costs) and costs[-1] > costs[0]
    bigger = p.with_values({"cores": 2 * p.cores})
    assert broadcast_cost(bigger, 4) > broadcast_cost(p, 4)


def test_time_grows_with_concurrent_copies() -> None:
    counters = {"tlbi.VALE1IS": 30000, "dsb.ish": 2000, "pte.write": 60000, "rmap.pages": 30000}
    times = [time_breakdown(counters, ALTRA, n).total_ns for n in (1, 2, 8, 16, 32, 64)]
    assert times == sorted(times) and times[-1] > times[0]
    # no broadcasts: nothing to contend on
    quiet = {"pte.write": 60000}
    assert time_breakdown(quiet, ALTRA, 32).total_ns == time_breakdown(quiet, ALTRA, 1).total_ns


def test_concurrency_fixed_point() -> None:
    counters = {"tlbi.VALE1IS": 30000, "dsb.ish": 2000, "pte.write": 60000}
    one = time_breakdown(counters, ALTRA, 1)
    assert one.concurrent_broadcasters == 0.0
    b = time_breakdown(counters, ALTRA, 32)
    assert 0 < b.concurrent_broadcasters < 31
    # c = (N - 1) * u, u = the broadcast share of the time
    share = b.by_kind["tlbi_bcast"] / b.total_ns
    assert b.concurrent_broadcasters == pytest.approx(31 * share, rel=1e-6)
