"""Calibration: the simplex, ranges, residual semantics, exclusions; the fit set against docs/numbers.md."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from contpte.cost import calibrate as cal
from contpte.cost.calibrate import (
    FigureResult,
    _Range,
    calibrate,
    machine_of,
    nelder_mead,
    simulations,
)
from contpte.cost.fitset import (
    EXCLUDED,
    EXPERIMENTS,
    FIT_SET,
    MACHINES,
    Published,
    figures_for,
    load_scenario,
)
from contpte.cost.pricing import Measured
from contpte.cost.profile import load_profile
from contpte.errors import ModelUsageError

DOCS = Path(__file__).resolve().parents[3] / "docs/numbers.md"


def test_nelder_mead_finds_a_quadratic_minimum() -> None:
    x, fx, _ = nelder_mead(lambda v: (v[0] - 3) ** 2 + 2 * (v[1] + 1) ** 2, [0.0, 0.0])
    assert x == pytest.approx([3, -1], abs=1e-4) and fx < 1e-8


@pytest.mark.parametrize(("lo", "hi"), [(20.0, 2000.0), (0.0, 60.0)])
def test_ranges_map_the_real_line_into_the_range(lo: float, hi: float) -> None:
    r = _Range(lo, hi)
    for v in (lo * 1.01 + 0.01, (lo + hi) / 2, hi * 0.99):
        assert r.to_value(r.to_coord(v)) == pytest.approx(v, rel=1e-6)
    assert lo <= r.to_value(-50) <= r.to_value(50) <= hi


def _pub(value: float, measure: str = "time", variant: str = "v", baseline: str | None = "b") -> Published:
    return Published("f", "altra", "sc", variant, baseline, measure, value)


@pytest.mark.parametrize(
    ("published", "ratio", "model", "residual", "met"),
    [
        (_pub(3654.4), 31.0, 3000.0, -654.4, True),  # a large slowdown, within a factor 1.25
        (_pub(3654.4), 25.0, 2400.0, -1254.4, False),
        (_pub(-6.7), 0.9, -10.0, -3.3, False),
        (_pub(-10.4, "throughput"), 1.1, -100 / 11, 1.309, True),
        (_pub(0.014, "seconds", baseline=None), 0.0142, 0.0142, 1.4286, True),
    ],
)
def test_figure_residuals(
    published: Published, ratio: float, model: float, residual: float, met: bool
) -> None:
    r = FigureResult(published, ratio)
    assert r.model == pytest.approx(model, rel=1e-6)
    assert r.residual == pytest.approx(residual, rel=1e-3)
    assert r.met is met


def test_fit_set_is_docs_numbers_md() -> None:
    """Every fit-set figure is in docs/numbers.md, and the counts match its tables."""
    text = DOCS.read_text()
    for f in FIT_SET:
        if f.measure == "seconds":
            assert f"{f.value:.6f}" in text, f.key
        else:
            assert re.search(rf"[-+]?{abs(f.value):.1f}%".replace(".0%", r"(\.0)?%"), text), f.key
    assert (
        len(figures_for("altra")) == 10 and len(figures_for("m2-vm")) == 6 and len(figures_for("x86")) == 27
    )
    assert set(EXCLUDED) <= {f.key for f in FIT_SET}


def test_every_figure_has_its_scenario_and_variants() -> None:
    for f in FIT_SET:
        assert f.variant in EXPERIMENTS[f.scenario], f.key
        assert f.baseline is None or f.baseline in EXPERIMENTS[f.scenario], f.key
    for name in EXPERIMENTS:
        sc = load_scenario(name)
        assert [s.args["edge"] for s in sc.steps if s.op == "measure"] == ["begin", "end"], name


def test_machine_of() -> None:
    assert [machine_of(load_profile(n)) for n in MACHINES] == list(MACHINES)


def test_machine_of_an_extending_profile(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[profile]\nname = "mine"\nextends = "m2-vm"\n')
    assert machine_of(load_profile(str(path))) == "m2-vm"
    path.write_text('[profile]\nname = "alone"\nextends = "m2-vm"\n')
    other = load_profile(str(path))
    assert machine_of(other) == "m2-vm"


def _fake_sims(truth: dict[str, float]) -> dict[tuple[str, str], Measured]:
    """Two kernels whose time ratio depends on tlbi_va_bcast and dvm_sync."""
    del truth
    return {
        ("sc", "b"): Measured({"pte.write": 100000}, {}),
        ("sc", "v1"): Measured({"pte.write": 100000, "tlbi.VALE1IS": 1600, "dvm.sync": 100}, {}),
        ("sc", "v2"): Measured({"pte.write": 100000, "tlbi.VALE1IS": 100, "dvm.sync": 100}, {}),
        ("sc", "v3"): Measured({"pte.write": 100000, "tlbi.VALE1IS": 100, "dvm.sync": 10}, {}),
    }


def test_fit_recovers_known_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    profile = load_profile("altra")
    truth = {"tlbi_va_bcast": 250.0, "dvm_sync": 2000.0}
    sims = _fake_sims(truth)
    monkeypatch.setattr(cal, "_simulate_all", lambda figs, p, progress: sims)
    true_profile = profile.with_values(truth)
    pricer = cal._Pricer(sims)
    figs = []
    for v in ("v1", "v2", "v3"):
        f = Published(f"fig {v}", "altra", "sc", v, "b", "time", 0.0)
        ratio = pricer.ratio(f, true_profile)
        figs.append(Published(f"fig {v}", "altra", "sc", v, "b", "time", 100 * (ratio - 1)))
    start = profile.with_set({n: profile[n] for n in profile.free_parameters if n not in truth})
    c = calibrate(start, figures=figs)
    got = {p.name: p.value for p in c.params}
    assert got["tlbi_va_bcast"] == pytest.approx(250, rel=1e-3)
    assert got["dvm_sync"] == pytest.approx(2000, rel=1e-3)
    assert all(r.met for r in c.results) and c.failures == []


def test_a_fit_wanting_out_of_its_range_ends_at_the_edge_and_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    profile = load_profile("altra")
    sims = _fake_sims({})
    monkeypatch.setattr(cal, "_simulate_all", lambda figs, p, progress: sims)
    # a slowdown only a DVM sync of ~50 us could explain: beyond the 5 us edge
    figs = [Published(f"f{v}", "altra", "sc", v, "b", "time", 5000.0) for v in ("v1", "v2", "v3")]
    start = profile.with_set({n: profile[n] for n in profile.free_parameters if n != "dvm_sync"})
    c = calibrate(start, figures=figs)
    (p,) = c.params
    assert p.name == "dvm_sync" and p.at_edge and p.value == pytest.approx(5000, rel=1e-3)
    assert any("edge" in f for f in c.failures)


def test_fit_refuses_too_many_parameters_and_none() -> None:
    profile = load_profile("altra")
    with pytest.raises(ModelUsageError, match="need more than"):
        calibrate(profile, figures=[_pub(1.0)])
    with pytest.raises(ModelUsageError, match="no free parameters"):
        calibrate(profile.with_set({n: profile[n] for n in profile.free_parameters}), figures=[_pub(1.0)])


def test_shipped_profiles_reproduce_their_fit_set_residuals(synthetic: None) -> None:
    """The reporting path end to end, on made-up counters (the real run is `contpte calibrate`)."""
    c = calibrate(load_profile("altra"), fit=False)
    keys = [r.published.key for r in c.results]
    assert keys == [f.key for f in figures_for("altra")]
    assert {r.published.key for r in c.results if r.excluded} == set(EXCLUDED)
    assert not c.params and not c.fitted
    d = c.as_dict()
    assert d["machine"] == "altra" and len(d["figures"]) == 10
    assert all(math.isfinite(f["model"]) for f in d["figures"])
    assert simulations(figures_for("x86"))[0] == ("x86-fork", "old-4K")
