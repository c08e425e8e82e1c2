"""The workload library: every workload runs with every validator on, and counts what its kernel path says.

Small parameters keep each run short; the expected counts follow from the
kernel code each workload exercises (comments), not from a previous run.
"""

from __future__ import annotations

import json

import pytest

from contpte import cli
from contpte.cost.pricing import simulate
from contpte.errors import ModelUsageError
from contpte.workloads.library import WORKLOADS, workload_params, workload_scenario, workload_text
from contpte.workloads.scenario import format_scenario, parse, run

SMALL: dict[str, dict[str, object]] = {
    "zygote-fork": {"heap": "2M", "children": 3},
    "allocator-holes": {"arena": "1M", "rounds": 2},
    "page-fault3": {"size": "1M", "tasks": 2},
    "redis-bgsave": {"heap": "4M", "chunks": 2},
    "kernel-build": {"jobs": 3, "make_heap": "1M"},
}


def test_the_library_has_the_five_workloads_of_issue_16() -> None:
    assert set(WORKLOADS) == set(SMALL)
    for w in WORKLOADS.values():
        assert w.source and w.title and w.params


@pytest.mark.parametrize("name", list(SMALL))
def test_workload_runs_with_every_validator(name: str) -> None:
    sc = workload_scenario(name, SMALL[name])
    outs = run(sc, check=True)
    assert len(outs) == len(sc.steps)
    assert [o.failed for o in outs if o.failed] == []
    # The text is a scenario file: it reads back to the same steps.
    again = parse(format_scenario(sc)).steps
    assert [(s.proc, s.op, s.args, s.bind) for s in again] == [
        (s.proc, s.op, s.args, s.bind) for s in sc.steps
    ]


def _measured(name: str, **overrides: object) -> dict[str, int]:
    m = simulate(workload_scenario(name, SMALL[name]), overrides)
    return m.counters | {f"steps.{k}": v for k, v in m.steps.items()}


def test_zygote_children_copy_only_the_pages_they_write() -> None:
    got = _measured("zygote-fork")
    # 3 apps x 16K written: wp_page_copy() copies one 4K page per write fault,
    # even inside a 64K folio shared with the zygote.
    assert got["steps.fork"] == 3
    assert got["page.copy"] == 3 * 4 and got["pgfault"] == 3 * 4


def test_allocator_holes_unfold_each_block_once() -> None:
    on = _measured("allocator-holes")
    off = _measured("allocator-holes", contpte=False)
    folios = (1 << 20) // (64 << 10)
    # Round 1: the 4K MADV_DONTNEED in each folded 64K block unfolds it (contpte_try_unfold()).
    # Round 2 finds every block unfolded: the refilled hole is an order-0 folio, so
    # contpte_try_fold() cannot fold the block again.
    assert on["call.__contpte_try_unfold"] == folios
    assert "call.__contpte_try_unfold" not in off
    # Each refill faults one page: the 64K range is not empty, so alloc_anon_folio() falls back to order 0.
    assert on["pgfault"] == off["pgfault"] == 2 * folios
    assert on["folio.alloc"] == 2 * folios


def test_page_fault3_write_faults_map_a_page_then_a_whole_folio_from_6_18() -> None:
    # The measured pass writes 2 tasks x 1M of page-cache folios through MAP_SHARED.
    old = _measured("page-fault3", kernel="6.17")
    new = _measured("page-fault3", kernel="6.18")
    assert old["pgfault"] == 2 * (1 << 20) // 4096  # finish_fault(): one PTE per fault
    assert new["pgfault"] == 2 * (1 << 20) // (64 << 10)  # the whole 64K folio per fault
    assert old["steps.mmap"] == old["steps.munmap"] == 2


def test_redis_bgsave_copies_one_page_per_parent_write() -> None:
    got = _measured("redis-bgsave")
    writes = (4 << 20) // (64 << 10)
    assert got["page.copy"] == writes and got["pgfault"] == writes
    assert (got["steps.fork"], got["steps.exit"], got["steps.read"]) == (1, 1, 2)


def test_kernel_build_runs_a_fork_and_a_compiler_per_job() -> None:
    got = _measured("kernel-build")
    assert (got["steps.fork"], got["steps.spawn"], got["steps.exit"]) == (3, 3, 6)


@pytest.mark.parametrize(
    ("name", "given", "message"),
    [
        ("zygote", {}, "unknown workload 'zygote'"),
        ("redis-bgsave", {"hep": 1}, "unknown parameter 'hep'"),
        ("redis-bgsave", {"heap": "100K", "chunks": 1}, "multiple of 64K"),
        ("redis-bgsave", {"chunks": "two"}, "expected an integer"),
        ("zygote-fork", {"children": 0}, "at least 1"),
    ],
)
def test_bad_parameters_name_the_workload_and_the_key(
    name: str, given: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelUsageError, match=message):
        workload_params(name, given)


def test_cli_lists_prints_and_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["workload"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in WORKLOADS)
    assert cli.main(["workload", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [w["name"] for w in listed] == list(WORKLOADS)
    assert cli.main(["workload", "redis-bgsave", "-p", "heap=4M", "-p", "chunks=2", "--scenario"]) == 0
    assert capsys.readouterr().out == workload_text("redis-bgsave", SMALL["redis-bgsave"])
    assert cli.main(["workload", "redis-bgsave", "-p", "heap=4M", "-p", "chunks=2", "--json"]) == 0
    ran = json.loads(capsys.readouterr().out)
    assert ran["passed"] and ran["counters"]["page.copy"] == 64


def test_cli_bad_workload_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["workload", "redis"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown workload 'redis'" in err
    assert cli.main(["workload", "redis-bgsave", "-p", "heap"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_docs_give_every_workload_its_source() -> None:
    from pathlib import Path

    doc = " ".join((Path(__file__).parents[3] / "docs/WORKLOADS.md").read_text().split())
    for w in WORKLOADS.values():
        assert f"## `{w.name}`: {w.title}" in doc
        assert " ".join(w.source.split()) in doc, w.name
        for key, p in w.params.items():
            assert f"| `{key}` |" in doc and p.help in doc
