"""Scenario files: the parser (examples, errors, a hypothesis fuzz), the writer, the runner."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contpte.errors import ScenarioError
from contpte.workloads.scenario import AddrRef, format_scenario, format_step, parse, run

GOOD = """\
# CoW after fork
machine arch=arm64 memory=64M cpus=2 page_size=4K thp=madvise mthp.64K=always mthp.2M=inherit check=true
title CoW after fork of 64K folios, parent's writes
expect-mismatch oracle-x86 "x86 has no contiguous bit"
p = spawn
f = file data 1M folio=64K
buf = p mmap 1M rw private|anonymous
fm = p mmap 256K r private file=f offset=64K
p write buf 1M 7
c1 = p fork
p write buf+64K 4K 0x8          # CoW in the parent
c1 read buf+64K 4K expect=7
p read buf+64K 4K expect=8
p write buf+2M 4K 1   !SIGSEGV
p mprotect buf+1 4K r !EINVAL
p madvise buf 64K dontneed
p pin buf 8K write=false
p unpin buf 8K
p numa buf+128K 64K
p uffd-wp buf+256K 64K on
p write buf+256K 4K 1  !UFFD_WP
c1 exit
reclaim
check
"""


def test_parse_good() -> None:
    sc = parse(GOOD, "good.scn")
    assert sc.machine == {
        "arch": "arm64",
        "memory": "64M",
        "cpus": 2,
        "page_size": "4K",
        "thp": "madvise",
        "mthp": {"64K": "always", "2M": "inherit"},
        "check": True,
    }
    assert sc.title == "CoW after fork of 64K folios, parent's writes"
    assert sc.expect_mismatch == {"oracle-x86": "x86 has no contiguous bit"}
    ops = [s.op for s in sc.steps]
    assert ops[:4] == ["spawn", "file", "mmap", "mmap"]
    w = sc.steps[6]
    assert (w.line, w.proc, w.op, w.args) == (
        11,
        "p",
        "write",
        {"addr": AddrRef("buf", 64 << 10), "length": 4096, "value": 8},
    )
    assert sc.steps[2].args["length"] == 1 << 20 and sc.steps[3].args["offset"] == 64 << 10
    assert sc.steps[9].expect == "SIGSEGV" and sc.steps[10].expect == "EINVAL"
    assert sc.steps[12].args == {"addr": AddrRef("buf", 0), "length": 8192, "write": False}


def test_run_good() -> None:
    outs = run(parse(GOOD, "good.scn"))
    assert [o.failed for o in outs] == [None] * len(outs)
    by_line = {o.line: o for o in outs}
    assert by_line[13].values == [8]
    assert by_line[14].error == "SIGSEGV:MAPERR"
    assert by_line[21].error == "UFFD_WP"
    assert by_line[9].counters["pgfault"] >= 1


def test_format_roundtrip() -> None:
    sc = parse(GOOD, "good.scn")
    again = parse(format_scenario(sc), "again.scn")
    assert again.machine == sc.machine and again.title == sc.title
    assert [(s.proc, s.op, s.args, s.bind, s.expect) for s in again.steps] == [
        (s.proc, s.op, s.args, s.bind, s.expect) for s in sc.steps
    ]


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("p = spawn\n", 1, "header 'machine"),
        ("machine arch=arm64\nmachine arch=generic\n", 2, "one 'machine' header"),
        ("machine frobnicate=1\n", 1, "unknown key 'frobnicate'"),
        ("machine cpus=two\n", 1, "expected an integer"),
        ("machine mthp.64K=sometimes\n", 1, "always, madvise, inherit or never"),
        ("machine bugs=no_such_bug\n", 1, "unknown bug"),
        ("machine\n\n# c\np = spawn\nq write buf 4K 1\n", 5, "unknown 'q'"),
        ("machine\np = spawn\np write buf 4K 1\n", 3, "unknown 'buf'"),
        ("machine\np = spawn\nb = p mmap 4K rw private|anonymous\np write b 4K\n", 4, "write ADDR LEN VALUE"),
        ("machine\np = spawn\nb = p mmap 4Q rw private|anonymous\n", 3, "expected a size"),
        ("machine\np = spawn\nb = p mmap 4K rwz private|anonymous\n", 3, "PROT: expected one of"),
        ("machine\np = spawn\nb = p mmap 4K rw private\n", 3, "file=F exactly"),
        ("machine\np = spawn\np fork\n", 3, "binds a name"),
        ("machine\np = spawn\nb = p munmap 0x1000 4K\n", 3, "binds no name"),
        ("machine\np = spawn\np madvise 0x1000 4K sideways\n", 3, "ADVICE: expected one of"),
        ("machine\np = spawn\np write 0x1000 4K 1 !WHATEVER\n", 3, "expected an outcome"),
        ("machine\np = spawn\np write 0x1000 4K -1\n", 3, "write VALUE"),
        ("machine\np = spawn\np frob 0x1000\n", 3, "expected a step"),
        ("machine\np = spawn\ntitle late\n", 3, "before the first step"),
        ('machine\np = spawn\np read 0x1000 4K expect="x\n', 3, "balanced quotes"),
        ("machine\np = spawn\nb = p mmap 4K rw private|anonymous\nb = spawn\n", 4, "already bound to a addr"),
    ],
)
def test_parse_errors(text: str, line: int, expected: str) -> None:
    with pytest.raises(ScenarioError) as ei:
        parse(text, "bad.scn")
    assert ei.value.path == "bad.scn" and ei.value.line == line, str(ei.value)
    assert expected in str(ei.value)
    assert str(ei.value).startswith(f"bad.scn:{line}: ")


def test_run_reports_unmet_expectations() -> None:
    sc = parse(
        "machine memory=16M\np = spawn\nb = p mmap 64K rw private|anonymous\np write b 4K 5\n"
        "p read b 4K expect=6\np read b+128K 4K\np write b 4K 1 !SIGSEGV\n",
        "x.scn",
    )
    failed = [o.failed for o in run(sc)]
    assert failed[0] is None and failed[1] is None and failed[2] is None
    assert failed[3] is not None and "expected 0x6" in failed[3]
    assert failed[4] == "expected success, got SIGSEGV:MAPERR"
    assert failed[5] == "expected !SIGSEGV, got success"


_WORDS = st.sampled_from(
    [
        "machine",
        "arch=arm64",
        "mthp.64K=always",
        "cpus=2",
        "p",
        "c",
        "buf",
        "=",
        "spawn",
        "fork",
        "exit",
        "mmap",
        "write",
        "read",
        "mprotect",
        "madvise",
        "munmap",
        "pin",
        "unpin",
        "numa",
        "uffd-wp",
        "check",
        "reclaim",
        "file",
        "f",
        "4K",
        "64K",
        "0x1000",
        "1M",
        "rw",
        "r",
        "none",
        "private|anonymous",
        "shared",
        "private",
        "file=f",
        "buf+4K",
        "buf-4K",
        "expect=7",
        "write=false",
        "dontneed",
        "free",
        "on",
        "off",
        "!SIGSEGV",
        "!EINVAL",
        "!EBOGUS!",
        "#",
        '"',
        "'",
        "title",
        "expect-mismatch",
        "7",
        "-1",
        "0x",
        "bugs=x",
    ]
)
_LINE = st.lists(_WORDS, max_size=8).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINE, max_size=10))
def test_parser_fuzz(lines: list[str]) -> None:
    """Any text either parses or raises ScenarioError (with a line in range): never anything else."""
    text = "\n".join(lines)
    try:
        sc = parse(text, "fuzz.scn")
    except ScenarioError as e:
        assert 0 <= e.line <= max(1, len(lines))
        assert e.detail
        return
    assert parse(format_scenario(sc), "again.scn").machine == sc.machine


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parser_fuzz_arbitrary_text(text: str) -> None:
    with contextlib.suppress(ScenarioError):
        parse(text, "any.scn")


def test_sigbus_outcome_is_expected_and_reported() -> None:
    text = (
        "machine arch=generic memory=64M\n"
        "f = file data 8K folio=4K\n"
        "p = spawn\n"
        "a = p mmap 16K r private file=f\n"
        "p read a 8K\n"
        "p read a+8K 4K !SIGBUS\n"
        "p read a+12K 4K !SIGBUS:ADRERR\n"
        "p read a+12K 4K\n"
    )
    outs = run(parse(text, "t.scn"))
    assert [o.error for o in outs[-3:]] == ["SIGBUS:ADRERR"] * 3
    assert [o.failed for o in outs[:-1]] == [None] * (len(outs) - 1)
    assert outs[-1].failed == "expected success, got SIGBUS:ADRERR"


MEASURED = """\
machine arch=arm64 memory=64M mthp.64K=always check=false
p = spawn
buf = p mmap 1M rw private|anonymous
p write buf 1M 1
measure begin
repeat 4 stride=64K
  p madvise buf 4K dontneed
  p write buf+8K 4K 2
end
measure end
repeat 2
  check
end
"""


def test_measure_and_repeat() -> None:
    sc = parse(MEASURED, "m.scn")
    ops = [s.op for s in sc.steps]
    assert ops == ["spawn", "mmap", "write", "measure"] + ["madvise", "write"] * 4 + [
        "measure",
        "check",
        "check",
    ]
    dontneeds = [s.args["addr"] for s in sc.steps if s.op == "madvise"]
    assert dontneeds == [AddrRef("buf", i << 16) for i in range(4)]
    writes = [s.args["addr"].offset for s in sc.steps if s.op == "write"][1:]
    assert writes == [8192 + (i << 16) for i in range(4)]
    assert [s.args["edge"] for s in sc.steps if s.op == "measure"] == ["begin", "end"]
    again = parse(format_scenario(sc), "again.scn")  # the writer expands the repeat
    assert [(s.op, s.args) for s in again.steps] == [(s.op, s.args) for s in sc.steps]
    outs = run(sc)
    assert all(o.ok for o in outs)
    assert outs[3].counters == {}  # a marker: no kernel work


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("machine\nmeasure\n", 2, "measure begin|end"),
        ("machine\nmeasure start\n", 2, "'measure begin' or 'measure end'"),
        ("machine\nmeasure end\n", 2, "without a 'measure begin'"),
        ("machine\nmeasure begin\nmeasure begin\n", 3, "already open since line 2"),
        ("machine\np = spawn\nmeasure begin\n", 3, "never closed"),
        ("machine\nrepeat 2\np = spawn\nend\n", 3, "inside a repeat"),
        ("machine\nrepeat 0\ncheck\nend\n", 2, "positive integer"),
        ("machine\nrepeat 2 step=4K\ncheck\nend\n", 2, "[stride=...]"),
        ("machine\nrepeat 2\ncheck\n", 2, "'end' line closing it"),
        ("machine\nrepeat 2\nrepeat 3\n", 3, "no nesting"),
        ("machine\nend\n", 2, "without a 'repeat'"),
        ("machine\nrepeat 2\nend\n", 3, "has no steps"),
        ("machine\nrepeat 2\nmeasure begin\nend\n", 3, "no 'measure' inside a repeat"),
    ],
)
def test_measure_and_repeat_errors(text: str, line: int, expected: str) -> None:
    with pytest.raises(ScenarioError) as ei:
        parse(text, "bad.scn")
    assert ei.value.line == line, str(ei.value)
    assert expected in str(ei.value)


def test_mremap_step_round_trips_and_binds_the_new_address() -> None:
    text = (
        "machine arch=arm64 memory=32M mthp.64K=always\n"
        "p = spawn\n"
        "a = p mmap 256K rw private|anonymous\n"
        "t = p mmap 256K rw private|anonymous\n"
        "p write a 64K 3\n"
        "b = p mremap a 64K 64K flags=fixed|maymove new=t+64K\n"
        "p mremap b 64K 32K\n"
        "p mremap a+64K 0 64K flags=maymove  !EINVAL\n"
        "p read b 32K expect=3\n"
    )
    sc = parse(text, "t.scn")
    st = sc.steps[4]
    assert st.op == "mremap" and st.bind == "b"
    assert st.args["flags"] == "maymove|fixed" and st.args["length"] == st.args["new_length"] == 64 << 10
    assert format_step(st) == "b = p mremap a 64K 64K flags=maymove|fixed new=t+64K"
    assert format_step(sc.steps[5]) == "p mremap b 64K 32K"
    for s in sc.steps[1:]:
        again = parse(
            "machine arch=arm64\np = spawn\na = p mmap 4K rw private|anonymous\n"
            "t = p mmap 4K rw private|anonymous\nb = p mmap 4K rw private|anonymous\n"
            + format_step(s)
            + "\n",
            "r.scn",
        ).steps[-1]
        assert format_step(again) == format_step(s)
    outs = run(sc)
    assert [o.failed for o in outs] == [None] * len(outs)


def test_mremap_step_rejects_unknown_flags() -> None:
    with pytest.raises(ScenarioError, match="mremap flags="):
        parse(
            "machine arch=arm64\np = spawn\na = p mmap 4K rw private|anonymous\np mremap a 4K 4K flags=move\n",
            "x",
        )
