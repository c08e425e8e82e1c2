"""Scenario syntax for swap: the ``swap=`` header key, ``reclaim target=``, ``cold``/``pageout``."""

from __future__ import annotations

import pytest

from contpte.errors import ScenarioError
from contpte.workloads.scenario import format_scenario, parse, run

TEXT = """machine arch=arm64 memory=64M mthp.64K=always swap=16M
p = spawn
buf = p mmap 128K rw private|anonymous
p write buf 128K 7
p madvise buf 64K pageout
p madvise buf+64K 64K cold
reclaim target=64K
p read buf 128K expect=7
"""


def test_swap_scenario_parses_runs_and_round_trips() -> None:
    sc = parse(TEXT, "t.scn")
    assert sc.machine["swap"] == "16M"
    assert sc.steps[-2].op == "reclaim" and sc.steps[-2].args == {"target": 64 << 10}
    assert parse(format_scenario(sc), "t.scn").steps == sc.steps
    outs = run(sc)
    assert all(o.error is None and o.failed is None for o in outs)
    # pageout swapped out one 64K folio; reclaim took the cold one (target reached).
    assert outs[3].counters["mthp.64kB.swpout"] == 1
    assert outs[5].counters["mthp.64kB.swpout"] == 1
    assert outs[6].counters["pswpin"] == 32


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("reclaim target=0", "reclaim: target= expects a positive size"),
        ("reclaim pages=3", "reclaim"),
    ],
)
def test_reclaim_target_errors(text: str, msg: str) -> None:
    with pytest.raises(ScenarioError, match=msg):
        parse("machine arch=arm64 swap=16M\n" + text + "\n", "t.scn")
