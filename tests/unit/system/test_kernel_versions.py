"""Kernel versions are one axis: ``Machine(kernel=...)``, scenario headers, ``--kernel-version``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import contpte
from contpte.cli import main
from contpte.version import CHANGES, KERNEL_VERSION, KERNEL_VERSIONS, kernel_options, version_key
from contpte.workloads.scenario import make_machine, parse


def test_the_default_is_6_12_and_has_no_later_change() -> None:
    m = contpte.Machine(memory="64M", check=False)
    assert m.kernel_version == KERNEL_VERSION == "6.12"
    for c in CHANGES:
        assert m.options[c.option] == c.before, c.option


@pytest.mark.parametrize("kernel", KERNEL_VERSIONS)
def test_a_version_turns_on_exactly_the_changes_up_to_it(kernel: str) -> None:
    m = contpte.Machine(memory="64M", check=False, kernel=kernel)
    assert m.kernel_version == kernel
    for c in CHANGES:
        if c.arch not in (None, "arm64"):
            continue
        landed = version_key(kernel) >= version_key(c.since)
        assert m.options[c.option] == (c.after if landed else c.before), (kernel, c.option)


def test_changes_are_ordered_and_at_known_versions() -> None:
    assert [version_key(v) for v in KERNEL_VERSIONS] == sorted(version_key(v) for v in KERNEL_VERSIONS)
    assert all(c.since in KERNEL_VERSIONS and c.since != KERNEL_VERSION for c in CHANGES)
    assert [version_key(c.since) for c in CHANGES] == sorted(version_key(c.since) for c in CHANGES)
    assert len({c.option for c in CHANGES}) == len(CHANGES)


def test_an_option_overrides_its_one_behaviour() -> None:
    m = contpte.Machine(memory="64M", check=False, kernel="7.2", cow_reuse_large=False)
    assert m.options["cow_reuse_large"] is False
    assert m.options["huge_zero_wp_thp"] is True
    assert m.kernel.cow_reuse_large is False and m.kernel.huge_zero_wp_thp is True


def test_the_behaviour_follows_the_version() -> None:
    """A write after the child exited reuses a page of a 64K folio from v6.15 on, copies before."""
    copies = {}
    for kernel in ("6.14", "6.15"):
        m = contpte.Machine(memory="64M", mthp={"64K": "always"}, kernel=kernel)
        p = m.spawn()
        a = p.mmap(64 << 10, prot="rw", flags="private|anonymous")
        p.write(a, 64 << 10, 1)
        p.fork().exit()
        s = m.stats()
        p.write(a, 4096, 2)
        copies[kernel] = m.stats()["page.copy"] - s["page.copy"]
        m.check()
    assert copies == {"6.14": 1, "6.15": 0}


@pytest.mark.parametrize("bad", ["6.11", "7.3", "6.12.1", 6.12, None, ""])
def test_an_unknown_version_is_an_error_listing_the_known_ones(bad: object) -> None:
    with pytest.raises(contpte.ModelUsageError) as e:
        contpte.Machine(memory="64M", kernel=bad)  # type: ignore[arg-type]
    msg = str(e.value)
    assert "kernel=" in msg and "6.12" in msg and "7.2" in msg and repr(bad) in msg


def test_kernel_options_of_the_generic_backend_skip_arm64_changes() -> None:
    arm = {c.option for c in CHANGES if c.arch == "arm64"}
    assert not arm & set(kernel_options("7.2", "generic"))


def test_a_scenario_header_selects_the_version() -> None:
    sc = parse("machine kernel=6.15 mthp.64K=always memory=64M\np = spawn\n", "v.scn")
    assert sc.machine["kernel"] == "6.15"
    assert make_machine(sc).kernel_version == "6.15"
    with pytest.raises(contpte.ScenarioError) as e:
        parse("# a comment\nmachine kernel=6.1\np = spawn\n", "bad.scn")
    assert "bad.scn:2" in str(e.value) and "7.2" in str(e.value)


SCENARIO = """\
machine arch=arm64 memory=64M mthp.64K=always
p = spawn
a = p mmap 64K rw private|anonymous
p write a 64K 1
c = p fork
c exit
p write a 4K 2
"""


def test_run_takes_kernel_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "cow.scn"
    f.write_text(SCENARIO)
    copies = {}
    for kernel in ("6.12", "7.2"):
        assert main(["run", str(f), "--kernel-version", kernel, "--json", "--counters"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["machine"]["kernel"] == kernel
        copies[kernel] = out["outcomes"][-1]["counters"].get("page.copy", 0)
    assert copies == {"6.12": 1, "7.2": 0}


def test_cli_rejects_an_unknown_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "cow.scn"
    f.write_text(SCENARIO)
    assert main(["run", str(f), "--kernel-version", "6.1"]) == 2
    err = capsys.readouterr().err
    assert "--kernel-version" in err and "'6.1'" in err and "7.2" in err
