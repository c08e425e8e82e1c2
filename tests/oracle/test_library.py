"""The oracle's scenario library against this machine's kernel.

Every scenario, run on the generic and on the arm64 model, must agree with
the live kernel (the arm64 model's architecture differences aside:
``ARCH_DIFFERENCES``), or differ exactly where its
``expect-mismatch oracle-x86`` line says (a known model limit, with the
reason); a declared mismatch that no longer happens fails too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contpte.oracle import MODEL_ARCHS, library, run_oracle
from contpte.workloads.scenario import parse_file

pytestmark = pytest.mark.live

SCENARIOS = library()


def _table(res: object) -> str:
    from io import StringIO

    from rich.console import Console

    from contpte.oracle.commands import render_result

    buf = StringIO()
    render_result(Console(file=buf, width=200), res)  # type: ignore[arg-type]
    return buf.getvalue()


def test_library_is_large_enough() -> None:
    assert len(SCENARIOS) >= 30


@pytest.mark.parametrize("model_arch", MODEL_ARCHS)
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_matches_live_kernel(path: Path, model_arch: str, live_kernel: None) -> None:
    sc = parse_file(str(path))
    res = run_oracle(sc, model_arch=model_arch)
    assert res.model_arch == model_arch
    if res.status == "skipped":
        pytest.skip(f"{path.name}: {res.reason}")
    assert res.ok, f"{path.name}: {res.status}\n{_table(res)}"
    if res.status == "expected-mismatch":
        # Convention of the library: the known difference shows only at the
        # last step, so every step before it is still checked for agreement.
        first = res.first_difference
        assert first is not None and first.line == sc.steps[-1].line, (
            f"{path.name}: the declared mismatch must be the last step, the first difference is at "
            f"line {first.line if first else '?'}\n{_table(res)}"
        )


def test_expected_mismatches_name_a_reason() -> None:
    for path in SCENARIOS:
        sc = parse_file(str(path))
        for oracle, reason in sc.expect_mismatch.items():
            assert oracle == "oracle-x86" or oracle.startswith("oracle-"), path
            assert len(reason) > 20, f"{path.name}: give the reason of the known model limit"
