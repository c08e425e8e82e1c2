"""Every catalogued kernel bug is caught by the general validators (``contpte check --bugs``)."""

from __future__ import annotations

import json

import pytest

from contpte import Machine, cli
from contpte.bugs import BUGS
from contpte.errors import ModelUsageError
from contpte.workloads.catalog import GENERAL_RULES, bug_scenario, check_bug


@pytest.mark.parametrize("name", list(BUGS))
def test_bug_is_caught(name: str) -> None:
    r = check_bug(name)
    assert r.clean_ok, f"{name}: the scenario fails on mainline: {r.clean_failure}"
    assert r.caught, f"{name}: not caught by a general validator (rule {r.rule}, {r.message})"
    assert r.rule in GENERAL_RULES


def test_catalog_is_complete() -> None:
    assert len(BUGS) >= 11
    for name, bug in BUGS.items():
        assert bug.name == name and bug.description and bug.where and bug.reference
        assert bug_scenario(name).steps


def test_bug_option_is_checked() -> None:
    with pytest.raises(ModelUsageError, match="unknown bug"):
        Machine(memory="16M", bugs=("no_such_bug",))
    assert Machine(memory="16M").bugs == frozenset()


def test_cli_check_bugs(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["check", "--bugs", "--only", "fork_shares_pinned_anon,contpte_fold_without_bbm", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["all_caught"]
    assert [b["rule"] for b in out["bugs"]] == ["pinned-anon-exclusive", "bbm"]
