"""The comparison itself (no live kernel needed)."""

from __future__ import annotations

from contpte.oracle.run import ARCH_DIFFERENCES, MODEL_ARCHS, ProcState, compare_states

PS = 4096
BASE = 0x7EFF_0000_0000


def _state(
    pages: dict[int, tuple[int, int, int, int]], rss: int = 0, lazy: set[int] | None = None
) -> ProcState:
    lazy = lazy or set()
    return ProcState(
        pages, [(BASE, BASE + 16 * PS, "rw-p")], {"Rss": rss, "Anonymous": rss, "LazyFree": len(lazy)}, lazy
    )


def _name(va: int) -> str:
    return f"buf+{va - BASE:#x}"


def test_equal_states_agree_whatever_the_class_numbers() -> None:
    m = {"p": _state({BASE: (1, 4, 0, 0)}), "c": _state({BASE: (1, 4, 0, 0)})}
    lv = {"p": _state({BASE: (1, 4, 0, 7)}), "c": _state({BASE: (1, 4, 0, 7)})}
    assert compare_states(m, lv, _name, PS) == []


def test_consecutive_pages_with_the_same_difference_merge() -> None:
    m = {"p": _state({BASE + i * PS: (1, 4, 1, i) for i in range(16)}, 16)}
    lv = {"p": _state({BASE + i * PS: (1, 0, 1, i) for i in range(16)}, 16)}
    diffs = compare_states(m, lv, _name, PS)
    assert [(d.field, d.model, d.live, d.npages) for d in diffs] == [("order", "4", "0", 16)]


def test_sharing_presence_value_exclusive_and_rss_differences() -> None:
    m = {
        "p": _state({BASE: (1, 0, 0, 0), BASE + PS: (2, 0, 1, 1)}, 2),
        "c": _state({BASE: (1, 0, 0, 0)}, 1),
    }
    lv = {
        "p": _state({BASE: (1, 0, 1, 0), BASE + PS: (3, 0, 1, 1), BASE + 2 * PS: (0, 0, 0, 2)}, 3),
        "c": _state({BASE: (1, 0, 1, 5)}, 1),
    }
    fields = {(d.proc, d.field) for d in compare_states(m, lv, _name, PS)}
    assert fields == {
        ("p", "exclusive"),
        ("p", "shares frame with"),
        ("p", "value"),
        ("p", "present"),
        ("p", "smaps Rss (pages)"),
        ("p", "smaps Anonymous (pages)"),
        ("c", "exclusive"),
        ("c", "shares frame with"),
    }


def test_lazyfree_differences_per_page_and_in_smaps() -> None:
    pages = {BASE + i * PS: (1, 4, 1, i) for i in range(16)}
    m = {"p": _state(pages, 16, {BASE + i * PS for i in range(16)})}
    lv = {"p": _state(pages, 16, {BASE + i * PS for i in range(8)})}
    diffs = compare_states(m, lv, _name, PS)
    assert [(d.field, d.where, d.model, d.live) for d in diffs] == [
        ("smaps LazyFree (pages)", "-", "16", "8"),
        ("lazyfree", "buf+0x8000 (8 pages)", "yes", "no"),
    ]


def test_a_missing_process_is_a_difference() -> None:
    diffs = compare_states({"p": _state({})}, {}, _name, PS)
    assert [(d.proc, d.field) for d in diffs] == [("p", "process")]


def _lazy_states(
    model_lazyfree: int, live_lazyfree: int
) -> tuple[dict[str, ProcState], dict[str, ProcState]]:
    """Both sides: 16 lazyfree pages (per-page state equal); smaps LazyFree as given."""
    pages = {BASE + i * PS: (1, 4, 1, i) for i in range(16)}
    lazy = {BASE + i * PS for i in range(16)}
    m, lv = _state(pages, 16, set(lazy)), _state(pages, 16, set(lazy))
    m.rss["LazyFree"] = model_lazyfree
    lv.rss["LazyFree"] = live_lazyfree
    return {"p": m}, {"p": lv}


def test_arm64_lazyfree_is_compared_one_way() -> None:
    # A page written after MADV_FREE dirties the whole contiguous block in
    # arm64's ptep_get() (contpte_ptep_get gathers the dirty bit): the arm64
    # model may count fewer LazyFree pages than x86, never more.
    m, lv = _lazy_states(0, 15)
    assert compare_states(m, lv, _name, PS, "arm64") == []
    assert [(d.field, d.model, d.live) for d in compare_states(m, lv, _name, PS, "generic")] == [
        ("smaps LazyFree (pages)", "0", "15")
    ]
    m, lv = _lazy_states(16, 15)
    for arch in ("generic", "arm64"):
        assert [(d.field, d.model, d.live) for d in compare_states(m, lv, _name, PS, arch)] == [
            ("smaps LazyFree (pages)", "16", "15")
        ]


def test_every_arch_difference_names_its_reason() -> None:
    assert set(ARCH_DIFFERENCES) <= set(MODEL_ARCHS)
    for arch, fields in ARCH_DIFFERENCES.items():
        for fld, why in fields.items():
            assert len(why) > 80, (arch, fld)
            assert "arch/arm64" in why or arch != "arm64", (arch, fld)


def _lazyfree_after(arch: str, bugs: str = "") -> int:
    """The model's smaps LazyFree after madvise-free-64K's line 11 (one page of a lazyfree 64K block written)."""
    from contpte.oracle import SCENARIO_DIR
    from contpte.oracle.run import _model_state
    from contpte.workloads.scenario import Env, make_machine, parse, run_step

    text = (SCENARIO_DIR / "madvise-free-64K.scn").read_text()
    sc = parse(text.replace("mthp.64K=always", f"mthp.64K=always check=false{bugs}", 1), "x.scn")
    m, env = make_machine(sc, arch=arch), Env()
    for step in sc.steps:
        run_step(m, env, sc, step, counters=False)
        if step.op == "write" and step.line == 11:
            break
    return _model_state(m, env)["p"].rss["LazyFree"]


def test_model_smaps_lazyfree_reads_ptes_through_the_arch_ptep_get() -> None:
    # x86 (and the generic model): the 15 clean pages of the block count.
    assert _lazyfree_after("generic") == 15
    # arm64: contpte_ptep_get() gathers the written entry's dirty bit over the block.
    assert _lazyfree_after("arm64") == 0
    # With ptep_get not gathering (a catalogued arm64 bug) arm64 smaps would look like x86's.
    assert _lazyfree_after("arm64", " bugs=ptep_get_no_gather") == 15
