"""Pricing a scenario: variants, measured steps, extras, the simulation cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from contpte.cost import pricing
from contpte.cost.pricing import Variant, machine_options, parse_variant, price_scenario, simulate
from contpte.cost.profile import load_profile
from contpte.errors import ModelUsageError, ScenarioError
from contpte.workloads.scenario import parse

ALTRA = load_profile("altra")

FORK = """\
machine arch=arm64 memory=64M cpus=2 mthp.64K=always
title fork of 1 MiB of 64K folios
p = spawn
buf = p mmap 1M rw private|anonymous
p write buf 1M 1
measure begin
c = p fork
measure end
c exit
"""


def test_parse_variant() -> None:
    v = parse_variant("before:batch_fork=false,batch_zap=false,mthp.16K=always")
    assert v == Variant("before", {"batch_fork": False, "batch_zap": False, "mthp": {"16K": "always"}})
    assert parse_variant("base:") == Variant("base", {})
    assert parse_variant("b:bugs=fork_no_parent_tlb_flush").overrides["bugs"] == ("fork_no_parent_tlb_flush",)
    assert parse_variant(v.spec) == v


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("before", "NAME:key=value"),
        (":contpte=false", "NAME:key=value"),
        ("x:frobnicate=1", "unknown key 'frobnicate'"),
        ("x:batch_fork=maybe", "true or false"),
        ("x:check=true", "not a kernel variant"),
    ],
)
def test_bad_variants(text: str, needle: str) -> None:
    with pytest.raises(ModelUsageError, match=needle):
        parse_variant(text)


def test_machine_options_merge_mthp_and_take_the_profiles_cpu() -> None:
    sc = parse(FORK)
    kw = machine_options(sc, {"mthp": {"16K": "always"}, "contpte": False}, ALTRA)
    assert kw["mthp"] == {"64K": "always", "16K": "always"} and kw["contpte"] is False
    assert kw["check"] is False and kw["cpu"] == "neoverse-n1"
    assert "cpu" not in machine_options(sc, {}, load_profile("x86"))  # another backend: the header decides
    assert (
        machine_options(parse(FORK.replace("cpus=2", "cpus=2 cpu=apple-m2")), {}, ALTRA)["cpu"] == "apple-m2"
    )


def test_measured_steps_only() -> None:
    m = simulate(parse(FORK), {}, ALTRA)
    assert m.steps == {"fork": 1}
    assert m.counters["fork.batch"] == 16 and m.counters["fork.ptes"] == 256
    assert "zap.ptes" not in m.counters  # the exit after 'measure end' is not measured
    assert m.extra == {"task_fork": 1.0}


def test_without_markers_every_step_is_measured() -> None:
    m = simulate(parse(FORK.replace("measure begin\n", "").replace("measure end\n", "")), {}, ALTRA)
    assert m.steps == {"spawn": 1, "mmap": 1, "write": 1, "fork": 1, "exit": 1}
    assert m.counters["pgfault"] == 16 and m.counters["zap.ptes"] == 256


def test_price_scenario_json_shape_and_change() -> None:
    sc = parse(FORK)
    res = price_scenario(
        sc,
        ALTRA,
        [Variant("after"), parse_variant("before:batch_fork=false"), Variant("off", {"contpte": False})],
    )
    d = res.as_dict()
    assert set(d) == {"profile", "cpus", "variants"} and d["profile"] == "altra" and d["cpus"] == 1
    assert [set(v) for v in d["variants"]] == [{"name", "time_ns", "change_pct", "breakdown", "counters"}] * 3
    after, before, _off = d["variants"]
    assert after["change_pct"] == 0
    # one PTE at a time: the parent's write-protect unfolds each block, the child's copy folds it
    assert before["change_pct"] > 100
    assert before["counters"]["contpte.convert"] == 32 and "contpte.convert" not in after["counters"]
    assert sum(before["breakdown"].values()) == pytest.approx(before["time_ns"])
    assert before["change_pct"] == pytest.approx(100 * (before["time_ns"] / after["time_ns"] - 1))


def test_cpus_contend_only_where_broadcasts_are() -> None:
    sc = parse(FORK)
    one = price_scenario(sc, ALTRA, [Variant("b", {"batch_fork": False})], cpus=1).variants[0]
    many = price_scenario(sc, ALTRA, [Variant("b", {"batch_fork": False})], cpus=16).variants[0]
    assert many.time_ns > one.time_ns and many.breakdown.stretch > 1


def test_no_variant_prices_the_header_as_is() -> None:
    res = price_scenario(parse(FORK, "/x/fork.scn"), ALTRA)
    assert [v.variant.name for v in res.variants] == ["fork"]


def test_pricing_errors() -> None:
    sc = parse(FORK)
    with pytest.raises(ModelUsageError, match="given twice"):
        price_scenario(sc, ALTRA, [Variant("a"), Variant("a")])
    with pytest.raises(ModelUsageError, match="--cpus"):
        price_scenario(sc, ALTRA, cpus=0)
    bad = parse(FORK.replace("c = p fork", "p mprotect buf+2M 4K r").replace("c exit\n", ""))
    with pytest.raises(ScenarioError, match="cannot be priced"):
        price_scenario(bad, ALTRA)
    ok = parse(FORK.replace("c = p fork", "p mprotect buf+2M 4K r  !any").replace("c exit\n", ""))
    assert price_scenario(ok, ALTRA).variants[0].measured.steps == {"mprotect": 1}


def test_the_disk_cache_is_keyed_by_scenario_options_and_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTPTE_SIM_CACHE", str(tmp_path))
    calls: list[dict[str, object]] = []
    real = pricing._run

    def counting(sc: object, kw: dict[str, object]) -> pricing.Measured:
        calls.append(kw)
        return real(sc, kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pricing, "_run", counting)
    sc = parse(FORK)
    first = simulate(sc, {}, ALTRA)
    pricing.clear_cache()
    again = simulate(sc, {}, ALTRA)
    assert again == first and len(calls) == 1 and len(list(tmp_path.glob("*.json"))) == 1
    simulate(sc, {"contpte": False}, ALTRA)
    simulate(parse(FORK.replace("1M", "512K")), {}, ALTRA)
    assert len(calls) == 3
    monkeypatch.setattr(pricing, "_model_digest", lambda: "another model")
    pricing.clear_cache()
    simulate(sc, {}, ALTRA)
    assert len(calls) == 4
    monkeypatch.setenv("CONTPTE_SIM_CACHE", "off")
    pricing.clear_cache()
    simulate(sc, {}, ALTRA)
    assert len(calls) == 5
