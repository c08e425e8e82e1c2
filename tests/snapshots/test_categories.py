"""thpmaps' categories on synthetic snapshots: exact kB derived by hand from tools/mm/thpmaps' rules."""

from __future__ import annotations

import pytest

from contpte.snapshot.thpmaps import cont_order, format_report, report

from .synth import Folio, Proc, snapshot, vma

K = 1024
M = 1 << 20


def family() -> Proc:
    return Proc(
        100,
        [
            vma(0x10000000, 0x10000000 + M),  # A: 16 aligned 64K folios
            vma(0x20004000, 0x20044000),  # B: 4 64K folios 16K past a 64K boundary
            vma(0x30000000, 0x30040000),  # C: 64K folios, two partly mapped
            vma(0x40000000, 0x40000000 + 2 * M, AnonHugePages=2048),  # D: a PMD-mapped THP
            vma(0x50000000, 0x50020000, "r-xp", "/lib/x.so"),  # E: two 64K page-cache folios
            vma(0x60000000, 0x60019000),  # F: the first 100K of a 128K folio
            vma(0x70000000, 0x70001000),  # G: one order-0 page
        ],
        [
            *(Folio(0x10000000 + i * 64 * K, 0x1000 + 16 * i, 4) for i in range(16)),
            *(Folio(0x20004000 + i * 64 * K, 0x2000 + 16 * i, 4) for i in range(4)),
            Folio(0x30000000, 0x3000, 4),
            Folio(0x30010000, 0x3010, 4, pages=[0, *range(2, 16)]),
            Folio(0x30020000, 0x3020, 4),
            Folio(0x30030000, 0x3030, 4, pages=list(range(8))),
            Folio(0x40000000, 0x40000, 9),
            Folio(0x50000000, 0x5000, 4, anon=False),
            Folio(0x50010000, 0x6000, 4, anon=False),
            Folio(0x60000000, 0x7000, 5, pages=list(range(25))),
            Folio(0x70000000, 0x8000, 0),
        ],
    )


def nonzero(stats: dict[str, dict[str, int]]) -> dict[str, int]:
    return {k: s["value"] for k, s in stats.items() if s["value"]}


def test_per_vma_categories_exact_kb() -> None:
    snap = snapshot(family())
    rows = report(snap, [cont_order("64K", 4096, 9)])
    got = [nonzero(r["stats"]) for r in rows]
    assert got[0] == {"anon-thp-pte-aligned-64kB": 1024, "anon-cont-pte-aligned-64kB": 1024}
    # Virtual and physical offsets differ modulo 64K: no contiguous block.
    assert got[1] == {"anon-thp-pte-unaligned-64kB": 256}
    # Range 1: folio 0 whole (aligned), folio 1's head alone (partial, the next PFN is its tail);
    # range 2: folio 1's last 14 pages (partial), folio 2 whole, folio 3's first 8 (partial).
    assert got[2] == {
        "anon-thp-pte-aligned-64kB": 128,
        "anon-thp-pte-partial": 92,
        "anon-cont-pte-aligned-64kB": 128,
    }
    # PMD-mapped: taken out of the PTE counts (AnonHugePages), shown as pmd.
    assert got[3] == {"anon-thp-pmd-aligned-2048kB": 2048, "anon-cont-pmd-aligned-64kB": 2048}
    assert got[4] == {"file-thp-pte-aligned-64kB": 128, "file-cont-pte-aligned-64kB": 128}
    # thpmaps' own example: a 128K THP mapping its first 100K gives one 64K block.
    assert got[5] == {"anon-thp-pte-partial": 100, "anon-cont-pte-aligned-64kB": 64}
    assert got[6] == {}
    assert [r["anon_kb"] for r in rows] == [1024, 256, 220, 2048, 0, 100, 4]
    assert [r["file_kb"] for r in rows] == [0, 0, 0, 0, 128, 0, 0]


def test_text_layout_matches_thpmaps() -> None:
    text = format_report(report(snapshot(family()), [4]))
    lines = text.splitlines()
    assert lines[0] == "       PID             START              END PROT   OFFSET   DEV    INODE OBJECT"
    i = lines.index("0000000100: 0000000030000000-0000000030040000 rw-p 00000000 00:00 00000000 ")
    assert lines[i + 1 : i + 4] == [
        "anon-thp-pte-aligned-64kB:           128 kB (58%)",
        "anon-thp-pte-partial:                 92 kB (42%)",
        "anon-cont-pte-aligned-64kB:          128 kB (58%)",
    ]
    assert "0000000100: 0000000050000000-0000000050020000 r-xp 00000000 00:00 00000000 /lib/x.so" in lines


def test_rollup_sums_every_vma() -> None:
    text = format_report(report(snapshot(family()), [4]), rollup=True)
    assert text.splitlines() == [
        "anon-thp-pmd-aligned-2048kB:        2048 kB (56%)",
        "anon-thp-pte-aligned-64kB:          1152 kB (32%)",
        "anon-thp-pte-unaligned-64kB:         256 kB ( 7%)",
        "anon-thp-pte-partial:                192 kB ( 5%)",
        "file-thp-pte-aligned-64kB:           128 kB (100%)",
        "anon-cont-pmd-aligned-64kB:         2048 kB (56%)",
        "anon-cont-pte-aligned-64kB:         1216 kB (33%)",
        "file-cont-pte-aligned-64kB:          128 kB (100%)",
    ]


def test_inc_empty_lists_every_category() -> None:
    text = format_report(report(snapshot(family())), rollup=True, inc_empty=True)
    labels = [line.split(":")[0] for line in text.splitlines()]
    # pmd (2), per type: aligned and unaligned for orders 2..9 (8 each), partial.
    assert len(labels) == 2 + 2 * (2 * 8 + 1)
    assert labels[:4] == [
        "anon-thp-pmd-aligned-2048kB",
        "file-thp-pmd-aligned-2048kB",
        "anon-thp-pte-aligned-16kB",
        "anon-thp-pte-aligned-32kB",
    ]


@pytest.mark.parametrize("bad", ["3K", "4K", "0", "4M", "x"])
def test_cont_sizes_thpmaps_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match="--cont"):
        cont_order(bad, 4096, 9)
