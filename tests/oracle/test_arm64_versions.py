"""The arm64 oracle per kernel version and page size: Debian's Linux 7.2 (4K and 16K pages).

The tests without qemu check how the Debian package is chosen, how the
guest kernel and the model's version are chosen, and the 16K arithmetic.
The boot tests (``report_72``, ``report_72_16k``) boot Debian's 7.2 arm64
kernels once each with the library of their page size; they skip, saying
why, where qemu, the cross compiler or the packages cannot be had
(``./run-tests`` fetches them).  At 7.2 the model does not yet have every
change of 6.13..7.2 (docs/versions.md), so only the scenarios listed in
``AGREE_72_4K`` / ``AGREE_72_16K`` must agree; every scenario must agree on
outcomes and values read, and the rest may differ only in call counts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contpte.cli import main
from contpte.oracle.arm64 import TRACED, library
from contpte.oracle.arm64 import env as arm64_env
from contpte.oracle.arm64.boot import count_calls, parse_untraced
from contpte.oracle.arm64.guest import generate_c
from contpte.oracle.arm64.run import (
    Arm64Report,
    choose_guest_kernel,
    prepare,
    run_arm64_oracle,
    scenario_unsupported_reason,
)
from contpte.oracle.live import MODEL_WINDOW_HI, MODEL_WINDOW_LO
from contpte.version import KERNEL_VERSIONS
from contpte.workloads.scenario import parse, parse_file

LIBRARY_16K = library("16K")

# What `apt-cache pkgnames linux-` lists for arm64 in trixie + trixie-backports (abridged).
NAMES = [
    "linux-image-6.12.117+deb13-arm64-unsigned",
    "linux-image-6.12.117+deb13-arm64-16k-unsigned",
    "linux-image-6.12.117+deb13-arm64",
    "linux-image-6.12.117+deb13-arm64-dbg",
    "linux-image-6.12.107+deb13-arm64-unsigned",
    "linux-image-6.12.117+deb13-cloud-arm64-unsigned",
    "linux-image-6.16.12+deb13-arm64",
    "linux-image-6.16.12+deb13-arm64-16k",
    "linux-image-6.19.14+deb13-arm64",  # a metapackage since the split
    "linux-binary-6.19.14+deb13-arm64",
    "linux-binary-7.2.12+deb13-arm64",
    "linux-binary-7.2.12+deb13-arm64-16k",
    "linux-binary-unsigned-7.2.12+deb13-arm64",
    "linux-binary-7.2.9+deb13-arm64",
    "linux-binary-7.2.12+deb13-rt-arm64",
    "linux-binary-7.3.4+deb13-arm64",
    "linux-headers-7.2.12+deb13-arm64",
]


# -- without qemu ------------------------------------------------------------------
def test_debian_kernels_reads_the_package_names() -> None:
    kernels = arm64_env.debian_kernels(NAMES)
    names = {k.package for k in kernels}
    assert "linux-image-6.19.14+deb13-arm64" not in names  # the metapackage
    assert (
        "linux-binary-7.2.12+deb13-rt-arm64" not in names and "linux-headers-7.2.12+deb13-arm64" not in names
    )
    assert not any(n.endswith("-dbg") or "cloud" in n for n in names)
    k16 = [k for k in kernels if k.package == "linux-binary-7.2.12+deb13-arm64-16k"]
    assert k16 and (k16[0].series, k16[0].point, k16[0].page_size, k16[0].kind) == (
        "7.2",
        12,
        "16K",
        "binary",
    )


def test_kernel_candidates_newest_point_release_first() -> None:
    kernels = arm64_env.debian_kernels(NAMES)
    got = [k.package for k in arm64_env.kernel_candidates(kernels, "7.2", "4K")]
    assert got == [
        "linux-binary-7.2.12+deb13-arm64",
        "linux-binary-unsigned-7.2.12+deb13-arm64",
        "linux-binary-7.2.9+deb13-arm64",
    ]
    got = [k.package for k in arm64_env.kernel_candidates(kernels, "6.12", "4K")]
    assert got[0] == "linux-image-6.12.117+deb13-arm64-unsigned" and got[-1].startswith(
        "linux-image-6.12.107"
    )
    assert [k.package for k in arm64_env.kernel_candidates(kernels, "6.12", "16K")] == [
        "linux-image-6.12.117+deb13-arm64-16k-unsigned"
    ]


def test_a_series_debian_lacks_names_what_exists() -> None:
    kernels = arm64_env.debian_kernels(NAMES)
    with pytest.raises(arm64_env.Arm64EnvError) as e:
        arm64_env.kernel_candidates(kernels, "6.13", "4K")
    msg = str(e.value)
    assert "no arm64 kernel of the 6.13 series with 4K pages" in msg
    assert "6.12 (6.12.117), 6.16 (6.16.12), 6.19 (6.19.14), 7.2 (7.2.12)" in msg
    assert "7.3" not in msg  # not a modelled version


def test_unknown_versions_and_page_sizes_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=r"'5\.10'.*6\.12"):
        arm64_env.check_guest_kernel("5.10", "4K")
    with pytest.raises(ValueError, match=r"64K.*4K or 16K"):
        arm64_env.check_guest_kernel("7.2", "64K")
    assert arm64_env.main(["7.2:64K"]) == 2
    assert "4K or 16K" in capsys.readouterr().err
    # --kernel-version and --page-size belong to --kernel arm64
    assert main(["oracle", "--kernel-version", "7.2", str(library()[0])]) == 2
    assert "--kernel arm64" in capsys.readouterr().err
    assert set(arm64_env.TEST_KERNELS) <= {(v, p) for v in KERNEL_VERSIONS for p in arm64_env.PAGE_SIZES}


def test_kernels_are_cached_per_version_and_page_size(tmp_path: Path) -> None:
    (tmp_path / "busybox").write_bytes(b"bb")
    for series, ps, pkg in (("6.12", "4K", "a"), ("7.2", "16K", "b")):
        d = tmp_path / "kernels" / f"{series}-{ps}"
        d.mkdir(parents=True)
        (d / "Image").write_bytes(b"img")
        (d / "kernel.json").write_text(f'{{"package": "{pkg}", "release": "r-{pkg}"}}')
    env = arm64_env.cached_guest_files(tmp_path, "7.2", "16K")
    assert env is not None and (env.kernel_package, env.series, env.page_size, env.release) == (
        "b",
        "7.2",
        "16K",
        "r-b",
    )
    assert env.image == tmp_path / "kernels" / "7.2-16K" / "Image" and env.busybox == tmp_path / "busybox"
    assert arm64_env.cached_guest_files(tmp_path, "7.2", "4K") is None
    assert arm64_env.ensure_guest_files(tmp_path, kernel="6.12").kernel_package == "a"  # no fetch


def test_the_guest_kernel_follows_the_options_then_the_headers() -> None:
    a = parse("machine arch=arm64 kernel=7.2\np = spawn\n")
    b = parse("machine arch=arm64 page_size=16K mthp.2M=always\np = spawn\n")
    c = parse("machine arch=arm64\np = spawn\n")
    assert choose_guest_kernel([c]) == ("6.12", "4K")
    assert choose_guest_kernel([a, c]) == ("7.2", "4K")
    assert choose_guest_kernel([b]) == ("6.12", "16K")
    assert choose_guest_kernel([a, c], "6.16", "16k") == ("6.16", "16K")
    assert choose_guest_kernel([a, parse("machine arch=arm64 kernel=6.18\np = spawn\n")]) == ("6.12", "4K")
    # The booted kernel decides; a header naming another one is skipped, not run at the wrong version.
    assert scenario_unsupported_reason(a, "7.2", "4K") is None
    assert "kernel=7.2 in the header" in str(scenario_unsupported_reason(a, "6.12", "4K"))
    assert "page_size=16K in the header" in str(scenario_unsupported_reason(b, "7.2", "4K"))
    assert "uses 16K pages" in str(scenario_unsupported_reason(c, "7.2", "16K"))


def test_the_model_runs_at_the_booted_version() -> None:
    sc = parse_file(str(next(p for p in library() if p.stem == "cow-reuse-after-child-exit")))
    old, new = prepare(sc, "x", "6.12"), prepare(sc, "x", "7.2")
    assert old.program is not None and new.program is not None
    # The parent's first write after the child exited: 6.12 copies, 7.2 reuses (cow_reuse_large).
    i = next(k for k, s in enumerate(sc.steps) if s.op == "write" and s.proc == "p" and k > 5)
    assert old.model[i].calls != new.model[i].calls


@pytest.mark.parametrize("path", LIBRARY_16K, ids=[p.stem for p in LIBRARY_16K])
def test_16k_library_scenario_prepares(path: Path) -> None:
    sc = parse_file(str(path))
    assert sc.machine.get("page_size") == "16K"
    prep = prepare(sc, path.stem, "7.2", "16K")
    assert prep.reason is None and prep.program is not None
    assert prep.program.page_size == 16384
    assert all(m.violation is None for m in prep.model)
    src = generate_c(prep.program)
    assert "#define PAGE 16384UL" in src and "#define PMD_KB 32768" in src
    for gs in prep.program.steps:
        if gs.addr:
            assert MODEL_WINDOW_LO <= gs.addr < MODEL_WINDOW_HI
    # A 4K-library run skips it, saying why.
    assert "16K" in str(prepare(sc, path.stem, "7.2", "4K").reason)


def test_count_calls_with_16k_tables() -> None:
    # With 16K pages a table page holds 2048 descriptors and maps 32M.
    inside = MODEL_WINDOW_LO + 0x200000
    table = 0xFFFF_0000_C123_4000  # 16K-aligned
    ptep = table + ((inside >> 14) & 2047) * 8
    getter = ptep + 127 * 8  # the block's last entry: inside + 127 pages of 16K
    trace = [
        "g-1 [000] d..1. 1.0: tracing_mark_write: @@B 0",
        f"g-1 [000] d..1. 1.1: f3: (contpte_set_ptes+0x4/0x140) addr={inside:#x} ptep={ptep:#x}",
        f"g-1 [000] d..1. 1.2: f8: (contpte_ptep_get+0x4/0x80) ptep={getter:#x}",
        "g-1 [000] d..1. 1.3: tracing_mark_write: @@E 0",
    ]
    ins, out = count_calls(trace, inside + 127 * 16384, inside + 128 * 16384, page_shift=14)
    assert ins == {0: {"contpte_ptep_get": 1}} and out == {0: {"contpte_set_ptes": 1}}


def test_untraced_symbols_are_read_from_the_console() -> None:
    console = (
        "@@TRACED contpte_set_ptes\r\n@@NOTRACE contpte_convert not in kallsyms (inlined or renamed)\r\n"
    )
    assert parse_untraced(console) == {"contpte_convert": "not in kallsyms (inlined or renamed)"}


# -- against the real kernels ---------------------------------------------------------
def _report(series: str, page_size: str) -> Arm64Report:
    reason = arm64_env.tools_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    try:
        arm64_env.ensure_guest_files(kernel=series, page_size=page_size)
    except arm64_env.Arm64EnvError as e:
        pytest.skip(str(e))
    paths = library(page_size)
    return run_arm64_oracle([parse_file(str(p)) for p in paths], kernel=series, page_size=page_size)


@pytest.fixture(scope="module")
def report_72() -> Arm64Report:
    return _report("7.2", "4K")


@pytest.fixture(scope="module")
def report_72_16k() -> Arm64Report:
    return _report("7.2", "16K")


AGREE_72_4K = frozenset({p.stem for p in library("4K")})
"""The 4K library's scenarios agree with Debian's 7.2 in call counts too.

(``file-private-shared`` needs its file to be a tmpfs file, as the guest's
is: from 6.16 a read fault maps a dirty tmpfs page dirty, ``fault_map_dirty``,
and the child's exit then counts one ``tlb_flush_rmaps``.)
"""
AGREE_72_16K = frozenset({p.stem for p in LIBRARY_16K})
"""The 16K library's scenarios agree with Debian's 7.2 16K kernel, as with 6.12 16K."""


def _check(report: Arm64Report, series: str, page_size: str, agree: frozenset[str]) -> None:
    assert report.series == series and report.page_size == page_size
    assert report.kernel.startswith(f"{series}.") and report.kernel.endswith("-16k") == (page_size == "16K")
    assert report.package.startswith(("linux-binary-", "linux-image-"))
    assert report.untraced == {}, f"7.2 lost traced functions: {report.untraced}"
    statuses = {Path(r.path).stem: r for r in report.results}
    assert set(statuses) == {p.stem for p in library(page_size)}
    bad = []
    for name, r in sorted(statuses.items()):
        assert r.options == {"kernel": series, "page_size": page_size}
        assert r.status != "skipped", f"{name}: {r.reason}"
        # Outcomes and values read must agree everywhere; call counts where the model has the version's code.
        for s, d in r.diffs:
            if not d.field.startswith("calls ") or name in agree:
                bad.append(f"{name} line {s.line} {s.text}: {d.field} model {d.model} kernel {d.live}")
    assert not bad, "\n".join(bad)
    # Something was counted on the kernel side at all.
    assert sum(
        sum(s.kernel_calls.values()) for r in report.results for s in r.steps if hasattr(s, "kernel_calls")
    )


def test_library_at_72_4k(report_72: Arm64Report) -> None:
    """Debian's 7.2 with 4K pages: boot, tracing, and the scenarios that agree already."""
    _check(report_72, "7.2", "4K", AGREE_72_4K)


def test_16k_library_at_72_16k(report_72_16k: Arm64Report) -> None:
    """Debian's 7.2 arm64-16k: 2M contiguous blocks of 128 PTEs, counted per step."""
    _check(report_72_16k, "7.2", "16K", AGREE_72_16K)
    calls = {
        k
        for r in report_72_16k.results
        for s in r.steps
        if hasattr(s, "kernel_calls")
        for k in s.kernel_calls
    }
    assert {"contpte_set_ptes", "contpte_wrprotect_ptes", "contpte_clear_full_ptes"} <= calls <= set(TRACED)


def test_functions_the_kernel_cannot_trace_are_left_out_and_named() -> None:
    from contpte.oracle.arm64.boot import BootResult, GuestRun
    from contpte.oracle.arm64.run import MODEL_UNCOUNTED, compare

    assert not MODEL_UNCOUNTED  # the model counts every traced function
    sc = parse_file(str(next(p for p in library() if p.stem == "mprotect-whole-blocks")))
    prep = prepare(sc, "m", "6.12")
    assert any(ms.calls.get("contpte_convert") for ms in prep.model)
    # A kernel run that agrees on everything but never reports contpte_convert (as if inlined).
    run = GuestRun("m", complete=True)
    run.results = [(i, ms.line, 0, ms.values) for i, ms in enumerate(prep.model)]
    base = 0x7E00_0000_0000
    for i, ms in enumerate(prep.model):
        run.trace.append(f"g-1 [000] d..1. 1.0: tracing_mark_write: @@B {i}")
        for sym, n in ms.calls.items():
            idx = TRACED.index(sym)
            for _ in range(n if sym != "contpte_convert" else 0):
                run.trace.append(
                    f"g-1 [000] d..1. 1.1: f{idx}: ({sym}+0x4/0x10) addr={base:#x} ptep=0xffff000012345000"
                )
        run.trace.append(f"g-1 [000] d..1. 1.2: tracing_mark_write: @@E {i}")
    why = "not in kallsyms (inlined or renamed)"
    seen = compare(prep, BootResult("", {"m": run}, 1.0, "6.12.117+deb13-arm64", {"contpte_convert": why}))
    assert seen.status == "agree", [(s.line, d.field) for s, d in seen.diffs]
    assert seen.excluded == {"calls contpte_convert": f"not traced on Linux 6.12.117+deb13-arm64: {why}"}
    traced_all = compare(prep, BootResult("", {"m": run}, 1.0, "6.12.117+deb13-arm64"))
    assert {d.field for _s, d in traced_all.diffs} == {"calls contpte_convert"}
