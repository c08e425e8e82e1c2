"""Machine profiles: every figure present, with a unit and its provenance."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from contpte.cost.profile import REQUIRED_FIGURES, list_profiles, load_profile, parse_profile
from contpte.errors import ModelUsageError

MINIMAL = "\n".join(
    ["[profile]", 'name = "t"']
    + [f'[figures.{n}]\nvalue = 1\nunit = "{u}"\nsource = "test"' for n, u in REQUIRED_FIGURES.items()]
)


def test_shipped_profiles() -> None:
    assert set(list_profiles()) >= {"altra", "m2-vm", "x86"}


@pytest.mark.parametrize("name", ["altra", "m2-vm", "x86"])
def test_every_figure_has_provenance(name: str) -> None:
    p = load_profile(name)
    assert p.name == name
    assert set(REQUIRED_FIGURES) <= set(p.figures)
    for fig in p.figures.values():
        assert fig.source.strip(), fig.name
        assert fig.unit == REQUIRED_FIGURES.get(fig.name, fig.unit)
        assert fig.value >= 0
        if fig.fit:
            assert "fit" in fig.source.lower() or "calibrat" in fig.source.lower()


def test_only_altra_has_free_parameters() -> None:
    assert load_profile("altra").free_parameters == ["tlbi_bcast_per_core", "tlbi_contention_per_core"]
    assert load_profile("m2-vm").free_parameters == []
    assert load_profile("x86").free_parameters == []


def test_m2_broadcast_cheaper_than_altra() -> None:
    from contpte.cost.model import broadcast_cost

    altra, m2 = load_profile("altra"), load_profile("m2-vm")
    assert broadcast_cost(m2, 0) < broadcast_cost(altra, 0)


def test_parse_minimal_and_with_values() -> None:
    p = parse_profile(MINIMAL)
    assert p["pte_read"] == 1.0
    q = p.with_values({"pte_read": 2.5}, source="test fit")
    assert q["pte_read"] == 2.5 and q.figures["pte_read"].source == "test fit"
    assert p["pte_read"] == 1.0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('source = "test"', 'source = ""', 1), "empty source"),
        (lambda t: t.replace('source = "test"', "", 1), "lacks source"),
        (lambda t: t.replace("[figures.pte_read]", "[figures.unused]", 1), "missing figures pte_read"),
        (lambda t: t.replace('unit = "ns"', 'unit = "us"', 1), "expected 'ns'"),
        (lambda t: t.replace("value = 1", "value = -1", 1), "negative"),
        (lambda t: t + "\n[[[", "<string>"),
    ],
)
def test_malformed_profiles_are_refused(edit: Callable[[str], str], message: str) -> None:
    with pytest.raises(ModelUsageError, match=message):
        parse_profile(edit(MINIMAL))


def test_unknown_profile_names_the_choices() -> None:
    with pytest.raises(ModelUsageError, match="altra"):
        load_profile("no-such-machine")


def test_unknown_figure() -> None:
    with pytest.raises(ModelUsageError, match="no figure"):
        load_profile("altra")["warp_drive"]
