"""The fuzzer: bounded runs find nothing on mainline; a seeded bug is found, shrunk and replayable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contpte import cli
from contpte.workloads.fuzz import (
    VARIANTS,
    FuzzConfig,
    fuzz,
    generate_episode,
    reproducer_text,
    run_episode,
)
from contpte.workloads.scenario import parse, run


@pytest.mark.parametrize("variant", ["arm64", "generic"])
def test_fuzz_bounded_run_is_clean(variant: str) -> None:
    """CI's bounded fuzz: 300 steps per backend, every validator on."""
    r = fuzz(FuzzConfig(variants=[variant], steps=300, seed=7))
    assert r.finding is None, r.finding and reproducer_text(r.finding, 7)
    assert r.steps == 300 and r.steps_per_second > 0


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_documented_variant_runs(variant: str) -> None:
    """Each variant the README lists fuzzes clean (arm64-bbml2 used to raise bbm at once)."""
    r = fuzz(FuzzConfig(variants=[variant], steps=150, seed=1))
    assert r.finding is None, r.finding and reproducer_text(r.finding, 1)


def test_differential_agreement() -> None:
    """arm64 and generic, batch_fork on and off: same observable state after every step."""
    r = fuzz(
        FuzzConfig(
            variants=["arm64", "generic", "arm64-nobatch", "generic-nobatch"],
            steps=120,
            seed=11,
            differential=True,
        )
    )
    assert r.finding is None, r.finding and reproducer_text(r.finding, 11)


def test_generation_is_deterministic() -> None:
    h1, s1 = generate_episode(123, 50)
    h2, s2 = generate_episode(123, 50)
    assert h1 == h2 and [(s.op, s.args) for s in s1] == [(s.op, s.args) for s in s2]


def test_seeded_bug_is_found_shrunk_and_replayable(tmp_path: Path) -> None:
    r = fuzz(FuzzConfig(variants=["arm64"], steps=3000, seed=1, bugs=("fork_no_parent_tlb_flush",)))
    f = r.finding
    assert f is not None
    assert f.kind.startswith("violation:")
    assert len(f.scenario.steps) <= 8 < f.original_steps or len(f.scenario.steps) <= 8
    assert f.fixed_in is None  # an injected bug is in every version
    text = reproducer_text(f, 1)
    assert "not fixed in any modelled kernel version" in text
    sc = parse(text, "repro.scn")
    assert sc.machine["bugs"] == ("fork_no_parent_tlb_flush",)
    outs = run(sc)
    assert outs[-1].violation is not None and outs[-1].violation.rule == f.kind.split(":", 1)[1]
    assert all(o.failed is None for o in outs[:-1])
    p = tmp_path / "repro.scn"
    p.write_text(text)
    assert cli.main(["run", str(p)]) == 1


def test_differential_detects_disagreement() -> None:
    """A bug on one side only shows as a mismatch or a violation, never as agreement."""
    header, steps = generate_episode(5, 1)
    sc = parse(
        "machine memory=32M mthp.64K=always\np = spawn\nb = p mmap 64K rw private|anonymous\n"
        "p write b 64K 1\nc = p fork\np write b 4K 2\nc read b 4K\n",
        "d.scn",
    )
    _, got = run_episode(
        {"memory": "32M", "mthp": {"64K": "always"}, "check": True},
        sc.steps,
        ["arm64", "generic"],
        bugs=("fork_no_parent_tlb_flush",),
        differential=True,
    )
    assert got is not None
    del header, steps


def test_cli_fuzz_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["fuzz", "--steps", "60", "--seed", "3", "--variant", "arm64,generic", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["finding"] is None and out["steps"] == 60
    assert set(out["per_variant_steps"]) == {"arm64", "generic"} and out["steps_per_second"] > 0


def test_cli_fuzz_writes_reproducer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "r.scn"
    rc = cli.main(
        [
            "fuzz",
            "--steps",
            "3000",
            "--seed",
            "1",
            "--bug",
            "fork_no_parent_tlb_flush",
            "--out",
            str(out_file),
        ]
    )
    assert rc == 1 and out_file.exists()
    assert "contpte run" in capsys.readouterr().out
    assert cli.main(["run", str(out_file), "--json"]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["arm64", "generic"])
def test_fuzz_long(variant: str) -> None:
    r = fuzz(FuzzConfig(variants=[variant], steps=50_000, seed=99))
    assert r.finding is None, r.finding and reproducer_text(r.finding, 99)


@pytest.mark.slow
def test_differential_long() -> None:
    r = fuzz(
        FuzzConfig(
            variants=["arm64", "generic", "arm64-nobatch", "generic-nobatch"],
            steps=5_000,
            seed=42,
            differential=True,
        )
    )
    assert r.finding is None, r.finding and reproducer_text(r.finding, 42)


@pytest.mark.parametrize("bad", [{"steps": -5}, {"steps": 0}, {"episode_steps": 0}, {"variants": []}])
def test_fuzz_config_refuses_nonsense(bad: dict[str, object]) -> None:
    from contpte.errors import ModelUsageError

    with pytest.raises(ModelUsageError):
        FuzzConfig(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("argv", [["--steps", "-5"], ["--steps", "0"], ["--episode", "0"], ["--steps", "x"]])
def test_fuzz_cli_refuses_nonpositive_counts(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["fuzz", *argv]) == 2
    err = capsys.readouterr().err
    assert "expected a positive integer" in err or "invalid" in err


LAZYFREE_FORK_RECLAIM = (
    "machine memory=32M cpus=4 thp=never mthp.16K=always mthp.32K=always mthp.64K=always"
    " mthp.128K=madvise mthp.2M=never check=true seed=60570 max_gather_batch_count=0\n"
    """\
p1 = spawn
m2 = p1 mmap 256K rw private|anonymous
p1 mprotect m2+156K 4K r
p1 write m2+128K 4K 0xdfc
p1 madvise m2+108K 64K free
c9 = p1 fork
reclaim
c9 read m2+128K 16K
"""
)


def test_differential_leaves_lazyfree_reclaim_uncompared() -> None:
    """Reclaim after MADV_FREE may legitimately differ between variants.

    Found by `contpte fuzz --differential` (seed 0, episode 96): v6.12 arm64's
    batched fork gives the child dirty PTEs for the clean writable PTEs of a
    lazyfree 16K folio (copy_present_ptes: pte_mkwrite() of a batch with
    any_writable clears PTE_RDONLY, so pte_wrprotect() sets PTE_DIRTY), so
    reclaim keeps the folio for the child; x86 and a per-PTE copy keep the
    PTEs clean and reclaim discards it.  The variants really differ here, and
    the differential fuzzer stops comparing at such a reclaim (the validators
    still run on every variant).
    """
    sc = parse(LAZYFREE_FORK_RECLAIM, "lazy.scn")
    a = run(sc, arch="arm64")
    g = run(sc, arch="generic")
    assert all(o.failed is None for o in a + g)
    # The child's read after reclaim: kept (the value) on arm64, discarded (zero) on x86.
    assert a[-1].values[0] == 0xDFC and g[-1].values[0] == 0
    header = dict(sc.machine)
    header.pop("arch", None)
    n, got = run_episode(header, sc.steps, ["arm64", "generic", "arm64-nobatch"], differential=True)
    assert got is None and n == len(sc.steps)
    # Without the lazyfree folio the same reclaim is still compared (and agrees).
    plain = [s for s in sc.steps if s.op != "madvise"]
    n, got = run_episode(header, plain, ["arm64", "generic", "arm64-nobatch"], differential=True)
    assert got is None and n == len(plain)


def test_episodes_cover_no_hafdbs_large_mthp_and_unaligned_large_file_folios() -> None:
    from contpte.hw.features import PRESETS

    cpus, large_mthp, unaligned = set(), False, False
    for seed in range(40):
        header, steps = generate_episode(seed, 150)
        cpus.add(header.get("cpu"))
        large_mthp = large_mthp or "256K" in header["mthp"]
        folio = {s.bind: s.args["folio"] for s in steps if s.op == "file"}
        unaligned = unaligned or any(
            s.op == "mmap"
            and s.args["file"]
            and folio[s.args["file"]] >= 128 * 1024
            and s.args["offset"] % folio[s.args["file"]]
            for s in steps
        )
    assert any(c is not None and PRESETS[c].hafdbs == 0 for c in cpus)
    assert None in cpus and large_mthp and unaligned


def test_oneplus_variant_runs_hardware_af_cores() -> None:
    # The OnePlus design updates one entry of a block on an Access flag fault
    # (docs/oneplus.md): its variant swaps the no-HAFDBS core for one with
    # hardware AF and software dirty state; the other arm64 variants keep it.
    from contpte.hw.features import PRESETS
    from contpte.workloads.fuzz import _machine_header

    base = {"memory": "32M", "cpu": "apple-m2"}
    assert _machine_header(base, "arm64", ())["cpu"] == "apple-m2"
    cpu = _machine_header(base, "arm64-oneplus", ())["cpu"]
    assert PRESETS[cpu].hafdbs == 1
