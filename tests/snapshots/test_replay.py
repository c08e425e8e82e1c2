"""contpte replay: synthetic snapshots rebuilt on the arm64 model, with exact coverage, fidelity and counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from contpte.cli import main
from contpte.cost.pricing import Variant
from contpte.cost.profile import load_profile
from contpte.snapshot.format import save
from contpte.snapshot.replay import coverage, fidelity, rebuild, replay

from .synth import Folio, Proc, snapshot, vma

K = 1024
M = 1 << 20
A, B, C, D, G = 0x10000000, 0x20004000, 0x30000000, 0x40000000, 0x70000000


def parent_folios() -> list[Folio]:
    return [
        *(Folio(A + i * 64 * K, 0x1000 + 16 * i, 4) for i in range(16)),
        *(Folio(B + i * 64 * K, 0x2000 + 16 * i, 4) for i in range(4)),
        Folio(C, 0x3000, 4),
        Folio(C + 64 * K, 0x3010, 4, pages=[0, *range(2, 16)]),
        Folio(C + 128 * K, 0x3020, 4),
        Folio(C + 192 * K, 0x3030, 4, pages=list(range(8))),
        Folio(D, 0x40000, 9),
        Folio(G, 0x8000, 0),
        Folio(G + 4 * K, 0x9000, 0, zero=True),
    ]


def vmas(anon_huge: int) -> list:
    return [
        vma(A, A + M),
        vma(B, B + 256 * K),
        vma(C, C + 256 * K),
        vma(D, D + 2 * M, AnonHugePages=anon_huge),
        vma(G, G + 8 * K),
    ]


def family_snapshot():
    parent = Proc(100, vmas(2048), parent_folios())
    # The child CoW'd page 5 of A (a new order-0 page) and dropped 64K of the PMD THP (now PTE-mapped).
    kid = [f for f in parent_folios() if f.va != A and f.va != D]
    kid += [Folio(A + i * 64 * K, 0x1000 + 16 * i, 4) for i in range(1, 16)]
    kid += [Folio(A, 0x1000, 4, pages=[0, 1, 2, 3, 4, *range(6, 16)]), Folio(A + 5 * 4 * K, 0xA000, 0)]
    kid += [Folio(D, 0x40000, 9, pages=[*range(16), *range(32, 512)])]
    child = Proc(101, vmas(0), kid, ppid=100)
    return snapshot(parent, child)


def test_rebuild_reproduces_orders_alignment_and_sharing() -> None:
    snap = family_snapshot()
    rb = rebuild(snap, check=True)
    rb.machine.check()  # every kernel invariant and Arm ARM rule held on the way
    f = fidelity(snap, rb)
    # Parent: 256 + 64 + 55 + 512 + 1 anon pages; child: 256 + 64 + 55 + 496 + 1.
    assert f.pages == 888 + 872
    assert f.present == f.order == f.aligned == f.frames == f.same_folio == f.pages
    assert (
        f.folios == f.folios_matched == 16 + 4 + 4 + 1 + 1 + 1
    )  # A, B, C, D, G's page, the child's CoW page
    assert f.zero_pages == f.zero_present == 2
    assert f.vmas == f.vmas_model == f.vmas_exact == 10
    cov = {c.pid: c for c in coverage(snap, rb)}
    # Parent: A 1024K, C's two whole folios 128K; B is unaligned, D is PMD-mapped.
    assert (cov[100].cont_kb, cov[100].inferred_kb) == (1024 + 128, 1024 + 128)
    # Child: A less the CoW'd block, C, and D's 31 remaining 64K blocks after the PMD split.
    assert (cov[101].cont_kb, cov[101].inferred_kb) == (960 + 128 + 1984, 960 + 128 + 1984)
    # RSS: the zero page is not counted.
    assert cov[100].mapped_kb == 4 * 888 and cov[101].mapped_kb == 4 * 872


def test_unaligned_folios_of_two_phases() -> None:
    # Two 64K folios 16K and 32K past a 64K boundary in one VMA: one moves with the VMA, one by itself.
    base = 0x50000000
    p = Proc(
        7,
        [vma(base, base + 256 * K)],
        [Folio(base + 16 * K, 0x100, 4), Folio(base + 96 * K, 0x200, 4)],
    )
    snap = snapshot(p)
    rb = rebuild(snap)
    f = fidelity(snap, rb)
    assert f.pages == f.present == f.order == f.aligned == f.same_folio == 32
    # The folio moved by itself is a VMA of its own in the model (another anon_vma: no merge).
    assert (f.vmas, f.vmas_model, f.vmas_exact) == (1, 3, 0)
    (c,) = coverage(snap, rb)
    assert c.cont_kb == c.inferred_kb == 0


def test_counts_of_fork_exit_munmap() -> None:
    snap = family_snapshot()
    prof = load_profile("altra")
    res = replay(snap, [prof], [Variant("contpte"), Variant("nocontpte", {"contpte": False})])
    assert [c.cont_kb for c in res.coverage["nocontpte"]] == [0, 0]
    # Present PTEs: parent 256 + 64 + 55 + 2 (D is one PMD), child 256 + 64 + 55 + 496 + 2.
    ptes = (256 + 64 + 55 + 2) + (256 + 64 + 55 + 496 + 2)
    for v in ("contpte", "nocontpte"):
        assert res.counters[v]["fork"]["fork.ptes"] == ptes
        assert res.counters[v]["exit"]["zap.ptes"] == ptes
        assert res.counters[v]["munmap"]["zap.ptes"] == ptes
    assert {(c.op, c.variant) for c in res.costs} == {
        (op, v) for op in ("fork", "exit", "munmap") for v in ("contpte", "nocontpte")
    }
    assert all(c.time_ns > 0 for c in res.costs)
    # contpte: the parent's 20 folded blocks are write-protected at fork without unfolding on v6.12
    # (wrprotect_ptes), and exit clears whole blocks.
    assert res.counters["nocontpte"]["fork"].get("contpte.unfold", 0) == 0


def test_cli_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "fam.npz"
    save(family_snapshot(), f)
    rc = main(["replay", str(f), "--kernel-version", "7.2", "--profile", "altra,m2-vm", "--check"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "Linux 7.2, 4K granule" in " ".join(out.split())
    assert "profile altra" in out and "profile m2-vm" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--granule", "16K"], "captured with 4K pages, cannot be replayed at --granule 16K"),
        (["--variant", "x:page_size=16K"], "page_size cannot be changed in a replay"),
        (["--variant", "x:nosuch=1"], "nosuch"),
        (["--kernel-version", "5.0"], "invalid choice"),
    ],
)
def test_replay_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    f = tmp_path / "fam.npz"
    save(family_snapshot(), f)
    rc = main(["replay", str(f), *argv])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err


def sixteen_k():
    # 16K pages: a contiguous block is 128 PTEs (2M), the PMD 32M.  A 2M folio aligned, one moved
    # 16K past a 2M boundary, and a 64K folio (4 pages: mTHP, never contiguous).
    base = 0x40000000
    return snapshot(
        Proc(
            9,
            [vma(base, base + 4 * M), vma(0x50004000, 0x50004000 + 2 * M), vma(0x60000000, 0x60010000)],
            [Folio(base, 0x4000, 7), Folio(0x50004000, 0x8000, 7), Folio(0x60000000, 0x9000, 2)],
        ),
        page_size=16384,
    )


def test_replay_at_16k() -> None:
    snap = sixteen_k()
    rb = rebuild(snap, check=True)
    f = fidelity(snap, rb)
    assert f.pages == f.present == f.order == f.aligned == f.same_folio == 128 + 128 + 4
    (c,) = coverage(snap, rb)
    assert c.cont_kb == c.inferred_kb == 2048


def test_replay_of_a_16k_snapshot_needs_16k(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = sixteen_k()
    f = tmp_path / "16k.npz"
    save(snap, f)
    rc = main(["replay", str(f), "--granule", "4K"])
    _, err = capsys.readouterr()
    assert rc == 2 and str(f) in err and "captured with 16K pages" in err


def test_replay_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    f = tmp_path / "fam.npz"
    save(family_snapshot(), f)
    assert (
        main(["replay", str(f), "--json", "--variant", "base:", "--variant", "before:batch_fork=false"]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["granule"] == "4K" and data["kernel"] == "6.12"
    assert [v["name"] for v in data["variants"]] == ["base", "before"]
    assert data["fidelity"]["pages"] == data["fidelity"]["frames"] == 888 + 872
    assert [c["cont_kb"] for c in data["coverage"]["base"]] == [1152, 3072]
    fork = {c["variant"]: c for c in data["costs"] if c["op"] == "fork"}
    # Without batching at fork every PTE is copied by itself: more work, never less.
    assert fork["before"]["time_ns"] > fork["base"]["time_ns"] and fork["before"]["change_pct"] > 0


def test_private_file_mappings() -> None:
    # A library's text (two 64K page-cache folios) and its data (one CoW'd page, one page-cache page)
    # beside an anonymous VMA of the same protection, which must not merge with them.
    lib = 0x7F0000000000
    text = vma(lib, lib + 128 * K, "r-xp", "/lib/x.so")
    data = vma(lib + 128 * K, lib + 136 * K, "rw-p", "/lib/x.so")
    data.offset = "00020000"
    for v in (text, data):
        v.dev, v.inode = "fe:00", "1234"
    bss = vma(lib + 136 * K, lib + 140 * K)
    p = Proc(
        5,
        [text, data, bss],
        [
            Folio(lib, 0x5000, 4, anon=False),
            Folio(lib + 64 * K, 0x5010, 4, anon=False),
            Folio(lib + 128 * K, 0x6000, 0),
            Folio(lib + 132 * K, 0x7000, 0, anon=False),
            Folio(lib + 136 * K, 0x8000, 0),
        ],
    )
    snap = snapshot(p)
    rb = rebuild(snap, check=True)
    rb.machine.check()
    f = fidelity(snap, rb)
    assert (f.pages, f.present, f.order) == (2, 2, 2)
    assert f.file_pages == f.file_present == 33
    assert f.vmas == f.vmas_model == f.vmas_exact == 3
    (c,) = coverage(snap, rb)
    assert c.file_cont_kb == c.file_inferred_kb == 128 and c.cont_kb == c.inferred_kb == 0
    assert c.mapped_kb == 4 * 35  # 2 anonymous pages, 33 page-cache pages
    assert rb.processes[0].maps()[0][3] == "fe:00:1234 /lib/x.so"
