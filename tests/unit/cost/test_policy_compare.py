"""``contpte compare-policy``: mainline vs the OnePlus design on the workload library.

Small configurations; the expected counts follow from the code of both
designs (comments), not from a previous run.  No timed asserts: priced times
are model values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contpte import cli
from contpte.cost.policy_compare import POOL_KEYS, compare_policies, compare_workload
from contpte.cost.profile import load_profile
from contpte.workloads.library import WORKLOADS, workload_scenario, workload_text
from contpte.workloads.scenario import Env, make_machine, run_step

ZYGOTE = {"heap": "2M", "children": 3}
SMALL: dict[str, dict[str, object]] = {
    "zygote-fork": ZYGOTE,
    "allocator-holes": {"arena": "2M", "rounds": 1},
    "page-fault3": {"size": "1M", "tasks": 1},
    "redis-bgsave": {"heap": "4M", "chunks": 2},
    "kernel-build": {"jobs": 2, "make_heap": "1M"},
}


@pytest.fixture(scope="module")
def zygote() -> object:
    return compare_workload("zygote-fork", load_profile("altra"), ZYGOTE)


def test_oneplus_scenarios_name_the_regions_the_phone_would_name() -> None:
    # Mainline: the text is unchanged (no policy, no name).
    assert "policy" not in workload_text("zygote-fork", ZYGOTE)
    text = workload_text("zygote-fork", ZYGOTE, "oneplus")
    assert "policy=oneplus" in text and "mthp.64K=never" in text
    assert "zygote vma-name heap 2M dalvik" in text.splitlines()
    assert "p vma-name arena 2M libc_malloc" in workload_text(
        "allocator-holes", SMALL["allocator-holes"], "oneplus"
    )
    assert "vma-name" not in workload_text("page-fault3", SMALL["page-fault3"], "oneplus")
    kb = workload_text("kernel-build", SMALL["kernel-build"], "oneplus")
    assert "cont_pte_hugepage_on_qemu=true" in kb and "vma-name" not in kb
    assert {w.chp.mode for w in WORKLOADS.values()} == {"named", "none", "every-anon"}


def test_zygote_fork_copies_blocks_where_mainline_dups_16_pages(zygote: object) -> None:
    from contpte.cost.policy_compare import WorkloadComparison

    assert isinstance(zygote, WorkloadComparison)
    ml = zygote.runs["mainline"].phases["fork"]
    op = zygote.runs["oneplus"].phases["fork"]
    # 2M heap = 8 fragments of 256K = 4 blocks each: block 0 has a 4K hole (split
    # by MADV_DONTNEED), block 1 is read-only (mprotect splits it), blocks 2 and
    # 3 stay whole: 16 whole blocks, copied at each of the 3 forks.
    assert op["chp.copy_block"] == 3 * 16
    # Mainline dups the mapcount of every present page (8 x 63 per fork); the
    # design does one entire-mapcount dup per whole block, per page elsewhere.
    assert ml["rmap.pages"] == 3 * 8 * 63
    assert op["rmap.pages"] == 3 * 8 * 31
    assert ml["rmap.pages"] - op["rmap.pages"] == 16 * op["chp.copy_block"]
    # Only the first fork finds the parent's whole blocks writable.
    assert op["chp_fork_wrprotect"] == 16
    # Each block write (the child's, the parent's write-protect) clears and flushes
    # 16 pages: flush_tlb_range() of 64K is 16 TLBI VAE1IS; mainline's fork
    # write-protects folded blocks without unfolding them (no per-block TLBI).
    assert op["tlbi.VAE1IS"] == 16 * (op["chp.copy_block"] + op["chp_fork_wrprotect"])
    assert "tlbi.VAE1IS" not in ml and "contpte.convert" not in ml
    m = zygote.runs["oneplus"].metrics
    assert m["bbm_blocks"] == 16 + m["chp.thp_cow"]  # fork write-protects + CoW block copies
    assert m["fresh_blocks"] == 48  # no block fault is measured, only fork's child blocks
    # Each app writes 16K inside one whole block: one block CoW (16 pages copied)
    # where mainline copies the 4 pages written.
    assert m["chp.thp_cow"] == 3 and m["page.copy"] == 3 * 16
    assert zygote.runs["mainline"].metrics["page.copy"] == 3 * 4


def test_phases_add_up_to_the_total(zygote: object) -> None:
    from contpte.cost.policy_compare import WorkloadComparison

    assert isinstance(zygote, WorkloadComparison)
    for r in zygote.runs.values():
        assert set(r.phase_ns) == {"fork", "faults"}
        assert r.total_ns == pytest.approx(sum(r.phase_ns.values()))
        assert r.counters == {
            k: sum(p.get(k, 0) for p in r.phases.values()) for k in {k for p in r.phases.values() for k in p}
        }


def test_pool_reported_is_chp_pool_stats_when_the_measured_steps_end(zygote: object) -> None:
    from contpte.cost.policy_compare import WorkloadComparison

    assert isinstance(zygote, WorkloadComparison)
    sc = workload_scenario("zygote-fork", ZYGOTE, "oneplus")
    m = make_machine(sc, check=False)
    env = Env()
    for step in sc.steps:
        if step.op == "measure" and step.args["edge"] == "end":
            break
        run_step(m, env, sc, step, counters=False)
    stats = m.chp_pool_stats()
    run = zygote.runs["oneplus"]
    assert run.pool == stats
    assert run.as_dict()["pool"] == {k: stats[k] for k in POOL_KEYS} | {
        "cont_pte_cma_size": stats["cont_pte_cma_size"]
    }
    # pool_pages is what the two lists hold; usage counts the blocks handed out.
    assert stats["pool_pages"] == stats["pool_cma_count"] + stats["pool_buddy_count"]
    assert zygote.runs["mainline"].pool == {} and zygote.runs["mainline"].as_dict()["pool"] == {}


def test_every_workload_runs_under_both_policies_with_every_validator() -> None:
    from contpte.workloads.scenario import run

    for name, params in SMALL.items():
        outs = run(workload_scenario(name, params, "oneplus"), check=True)
        assert [o.failed for o in outs if o.failed] == [], name


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = cli.main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_json_schema(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plot = tmp_path / "cmp.png"
    argv = ["compare-policy", "zygote-fork", "page-fault3", "--json", "--plot", str(plot)]
    for name in ("zygote-fork", "page-fault3"):
        argv += [f"--param={name}:{k}={v}" for k, v in SMALL[name].items()]
    rc, out, _err = _main(argv, capsys)
    assert rc == 0 and plot.stat().st_size > 0
    data = json.loads(out)
    assert set(data) == {"profile", "kernel", "cpus", "policies", "workloads", "unmapped", "plot"}
    assert data["profile"] == "altra" and data["policies"] == ["mainline", "oneplus"]
    assert [w["name"] for w in data["workloads"]] == ["zygote-fork", "page-fault3"]
    for w in data["workloads"]:
        assert set(w) == {"name", "params", "eligibility", "policies", "change"}
        assert set(w["policies"]) == {"mainline", "oneplus"}
        for pol, r in w["policies"].items():
            assert set(r) == {"policy", "machine", "time_ns", "steps", "metrics", "pool", "counters"}
            assert set(r["time_ns"]) == {"total", "phases", "dvm"}
            assert {"rmap.op", "rmap.pages", "tlbi.total", "bbm_blocks", "pgfault"} <= set(r["metrics"])
            assert r["machine"]["policy" if pol == "oneplus" else "mthp"] is not None
            assert (r["pool"] != {}) == (pol == "oneplus")
        ch = w["change"]
        a, b = w["policies"]["mainline"], w["policies"]["oneplus"]
        assert ch["time_ns"] == pytest.approx(b["time_ns"]["total"] - a["time_ns"]["total"])
        assert ch["metrics"]["rmap.pages"] == b["metrics"]["rmap.pages"] - a["metrics"]["rmap.pages"]
    pf3 = data["workloads"][1]
    assert pf3["eligibility"]["mode"] == "none"
    # Nothing eligible: the design maps no block, and without contpte nothing folds.
    ops = pf3["policies"]["oneplus"]["metrics"]
    assert ops["bbm_blocks"] == 0 and ops["fresh_blocks"] == 0
    # 1 task x 1M = 16 page-cache folios of 64K: mainline folds each once, its 16th
    # PTE mapped by a write fault (finish_fault maps one PTE up to 6.17).
    assert pf3["policies"]["mainline"]["metrics"]["contpte.fold"] == 16


def test_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compare-policy", "zygote-fork"] + [f"--param=zygote-fork:{k}={v}" for k, v in ZYGOTE.items()]
    rc, out, _err = _main(argv, capsys)
    assert rc == 0
    assert "zygote-fork (heap=2M" in out and "time: fork" in out and "pool: pool_pages" in out


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["compare-policy", "no-such-load"], "no-such-load"),
        (["compare-policy", "zygote-fork", "--profile", "no-such-profile"], "no-such-profile"),
        (["compare-policy", "zygote-fork", "--kernel-version", "9.99"], "9.99"),
        (["compare-policy", "zygote-fork", "--plot", "/no/such/dir/x.png"], "/no/such/dir/x.png"),
        (["compare-policy", "zygote-fork", "--plot", "x.gif"], "x.gif"),
        (["compare-policy", "zygote-fork", "--param", "heap=2M"], "heap=2M"),
        (["compare-policy", "zygote-fork", "--param", "zygote-fork:bogus=1"], "bogus"),
        (["compare-policy", "zygote-fork", "--param", "redis-bgsave:heap=4M"], "redis-bgsave"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str], names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _main(argv, capsys)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and names in err


def test_library_function_checks_names_before_running() -> None:
    from contpte.errors import ModelUsageError

    with pytest.raises(ModelUsageError, match="'nope'"):
        compare_policies(["zygote-fork", "nope"], load_profile("altra"))
