"""The human output of ``contpte run``, ``fuzz`` and ``check``."""

from __future__ import annotations

import pytest

from contpte import cli
from contpte.workloads.catalog import check_bug


def _norm(text: str) -> str:
    return " ".join(text.split())


def test_check_bugs_wraps_long_messages_instead_of_cutting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    bug = "fork_no_parent_tlb_flush"
    full = check_bug(bug).message
    assert full is not None and len(full) > 200 and "ptes=[" in full
    assert cli.main(["check", "--bugs", "--only", bug]) == 0
    out = capsys.readouterr().out
    assert _norm(full) in _norm(out)  # every PTE value, whole
    assert all(len(line) <= 80 for line in out.splitlines()), out
    ptes = full[full.index("ptes=[") + 6 : -1].split()
    assert len(ptes) == 2 and all(pte in out for pte in ptes)  # no PTE cut in the middle


SCN = """\
machine arch=arm64 memory=64M mthp.64K=always
p = spawn
buf = p mmap 128K rw private|anonymous
p write buf 128K 1
c = p fork
c write buf+4K 4K 2
p read buf 8K
"""


def _run(capsys: pytest.CaptureFixture[str], tmp_path: object, *extra: str) -> tuple[int, str]:
    from pathlib import Path

    path = Path(str(tmp_path)) / "t.scn"
    path.write_text(SCN)
    rc = cli.main(["run", str(path), *extra])
    return rc, capsys.readouterr().out


def test_run_shows_each_steps_counters(
    capsys: pytest.CaptureFixture[str], tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    rc, out = _run(capsys, tmp_path)
    assert rc == 0
    cow = _norm(out).split("c write buf+4K 4K 2", 1)[1].split(" ok ", 1)[0]
    assert "page.copy=1" in cow and "contpte.unfold=1" in cow and "tlbi.total=" in cow
    rc, out = _run(capsys, tmp_path, "--counters")
    assert "rmap.pages=32" in out and "mthp.64kB.anon_fault_alloc=2" in out


def test_run_state_pictures_the_ptes_in_human_output(
    capsys: pytest.CaptureFixture[str], tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    rc, out = _run(capsys, tmp_path, "--state")
    assert rc == 0
    assert "W/R the same with the Contiguous bit" in _norm(out)
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("0x7e")]
    # after the fault-in: two folded 64K blocks; after the child's CoW its block is unfolded
    assert rows[1][1:] == ["W" * 16, "W" * 16]
    assert rows[2][1:] == ["rwrrrrrrrrrrrrrr"]
    assert rows[3][1:] == ["RRRRRRRRRRRRRRRR"]  # the parent's block: write-protected, still folded
    assert "c (pid 2): 1 page(s) at" in out and "in whole blocks" in out


def test_run_json_state_fields_are_labelled(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    import json

    rc, out = _run(capsys, tmp_path, "--state", "--json")
    assert rc == 0
    write = json.loads(out)["outcomes"][2]
    page = write["state"]["p"]["pages"][0]
    assert set(page) == {"addr", "value", "order", "exclusive", "share_class"}
    assert page["value"] == 1 and page["order"] == 4 and page["exclusive"] is True
    assert set(write["state"]["p"]["maps"][0]) == {"start", "end", "perms"}
    ptes = write["ptes"]
    assert ptes["process"] == "p" and ptes["pages"] == 32 and len(ptes["rows"]) == 32
    row = ptes["rows"][0]
    assert set(row) == {"addr", "present", "pfn", "order", "writable", "dirty", "young", "cont", "exclusive"}
    assert row["cont"] is True and row["writable"] is True


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        (["--memory", "1Q"], "contpte: error: --memory '1Q'"),
        (["--bug", "nope"], "contpte: error: --bug: unknown"),
    ],
)
def test_fuzz_option_errors_name_the_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], start: str
) -> None:
    assert cli.main(["fuzz", "--steps", "10", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(start) and err.count("\n") == 1
