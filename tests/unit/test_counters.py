"""Counters: a closed catalog, every counter listed (zeros included), measure()."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import contpte
from contpte.counters import (
    CONTPTE_CALLS,
    DECLARED,
    DSB_NAMES,
    FAMILIES,
    FAMILY_MEMBERS,
    HW_FAULT_KINDS,
    MM_CALLS,
    TLBI_NAMES,
    TOTALS,
    UNFOLD_CALLERS,
    counter,
    counter_name,
    counter_names,
)
from contpte.errors import ModelUsageError

PAGE = 4096


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported yet but what it imports)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout


@pytest.mark.parametrize(("page_size", "shift"), [("4K", 12), ("16K", 14), ("64K", 16)])
def test_stats_lists_every_counter_zeros_included(page_size: str, shift: int) -> None:
    m = contpte.Machine(arch="arm64", memory="1G", page_size=page_size)
    s = m.stats()
    assert set(s) == set(counter_names(shift)) | set(TOTALS)
    assert all(v == 0 for k, v in s.items() if k != "buddy.alloc")  # the zero page's allocation
    # the README's pattern on a machine that has not folded yet
    assert s["contpte.fold"] == 0 and s["contpte.unfold"] == 0 and s["tlbi.total"] == 0
    # the per-size mTHP stats of this page size's sizes (orders 2..PMD_ORDER), and only those
    sizes = {k.split(".")[1] for k in s if k.startswith("mthp.")}
    pmd_order = shift - 3
    assert sizes == {f"{(1 << shift << o) // 1024}kB" for o in range(2, pmd_order + 1)}


def test_stats_on_the_generic_backend_lists_the_same_names() -> None:
    a = contpte.Machine(arch="arm64", memory="64M").stats()
    g = contpte.Machine(arch="generic", memory="64M").stats()
    assert set(a) == set(g)


def test_families_are_closed_sets() -> None:
    assert FAMILY_MEMBERS["tlbi"] == tuple("tlbi." + n for n in TLBI_NAMES)
    assert FAMILY_MEMBERS["dsb"] == tuple("dsb." + n for n in DSB_NAMES)
    assert FAMILY_MEMBERS["fault"] == tuple("fault." + n for n in HW_FAULT_KINDS)
    assert FAMILY_MEMBERS["contpte.unfold"] == tuple("contpte.unfold." + n for n in UNFOLD_CALLERS)
    assert FAMILY_MEMBERS["call"] == tuple("call." + n for n in CONTPTE_CALLS + MM_CALLS)
    for prefix, members in FAMILY_MEMBERS.items():
        assert prefix in FAMILIES
        assert all(n in DECLARED for n in members)
    with pytest.raises(ModelUsageError, match="not declared"):
        counter("tlbi.NOSUCHOP")
    with pytest.raises(ModelUsageError, match="not declared"):
        contpte.Machine(memory="64M").counters.add("contpte.unfold.no_such_caller")


def test_the_catalog_matches_the_hardware_and_the_backend() -> None:
    from contpte.arch.arm64 import contpte as arm64_contpte
    from contpte.hw.hardware import DSB_DOMAINS, RANGE_TLBI_OPS, TLBI_OPS

    ops = {op + sh for op in (*TLBI_OPS, *RANGE_TLBI_OPS) for sh in ("", "IS", "OS")}
    assert set(TLBI_NAMES) == ops | {"INVLPG", "INVPCID"}
    assert set(DSB_NAMES) == set(DSB_DOMAINS)
    # The module keeps counter ids (compiled: published C constants).
    calls = {counter_name(v) for k, v in vars(arm64_contpte).items() if k.startswith("CALL_")}
    assert calls == {"call." + n for n in CONTPTE_CALLS}


def test_declarations_do_not_depend_on_imports() -> None:
    # Only the base module imported: the whole catalog is there, and
    # importing every layer declares nothing more.
    code = (
        "import contpte.counters as c, importlib, pkgutil, contpte\n"
        "before = set(c.DECLARED), set(c.TOTALS)\n"
        "for mod in pkgutil.walk_packages(contpte.__path__, 'contpte.'):\n"
        "    if not mod.name.endswith('__main__'):\n"
        "        importlib.import_module(mod.name)\n"
        "print(before == (set(c.DECLARED), set(c.TOTALS)), len(before[0]))\n"
    )
    same, n = _run(code).split()
    assert same == "True" and int(n) == len(DECLARED)


def test_describe_counter_before_any_machine() -> None:
    # A fresh interpreter: no Machine made, the arm64 backend not imported.
    out = _run(
        "import sys, contpte\n"
        "assert 'contpte.arch.arm64.contpte' not in sys.modules\n"
        "for n in ('contpte.fold', 'contpte.unfold', 'contpte.unfold.set_ptes', 'call.contpte_convert',\n"
        "          'tlbi.total', 'tlbi.VALE1IS', 'mthp.64kB.anon_fault_alloc', 'fault.translation'):\n"
        "    print(n, *contpte.Machine.describe_counter(n), sep='|')\n"
    )
    rows = [line.split("|") for line in out.splitlines()]
    assert [r[0] for r in rows][:3] == ["contpte.fold", "contpte.unfold", "contpte.unfold.set_ptes"]
    assert all(r[1] and r[2] for r in rows)
    assert {r[0]: r[1] for r in rows}["tlbi.total"] == "instructions"


def test_every_stats_name_is_described() -> None:
    m = contpte.Machine(arch="arm64", memory="64M")
    for name in m.stats():
        unit, desc = contpte.Machine.describe_counter(name)
        assert unit and desc
    with pytest.raises(ModelUsageError):
        contpte.Machine.describe_counter("no.such.counter")


def _forking_machine() -> tuple[contpte.Machine, contpte.Process, int]:
    m = contpte.Machine(arch="arm64", memory="64M", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(1 << 20)
    p.write(a, 1 << 20, 7)
    return m, p, a


def test_measure_gives_the_counters_of_the_block() -> None:
    m, p, a = _forking_machine()
    before = m.stats()
    with m.measure() as d:
        c = p.fork()
    assert set(d) == set(m.stats())  # every counter and total, zeros included
    assert d == m.stats_delta(before)
    assert d["fork.ptes"] == 256 and d["fork.batch"] == 16
    assert d["tlbi.total"] == sum(d["tlbi." + n] for n in TLBI_NAMES)
    assert d["contpte.unfold"] == 0 and d["page.copy"] == 0
    with m.measure() as d2:
        c.write(a, PAGE, 9)
    assert d2["fault.wp_copy"] == 1 and d2["fork.ptes"] == 0
    assert d2["contpte.unfold"] == sum(d2["contpte.unfold." + n] for n in UNFOLD_CALLERS) >= 1


def test_measure_fills_the_delta_when_the_block_raises() -> None:
    m, p, a = _forking_machine()
    with pytest.raises(contpte.SegmentationFault), m.measure() as d:
        p.mprotect(a, 1 << 20, "r")
        p.write(a, PAGE, 1)
    assert d["fault.permission"] == 1


def test_every_module_takes_declared_names() -> None:
    # Every module imports (each takes its counter names with counter(),
    # which raises at import on an undeclared name).
    for mod in pkgutil.walk_packages(contpte.__path__, "contpte."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)


def test_the_readme_library_example_runs() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("## Using the library", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert "m.measure()" in block and 'm.stats()["contpte.fold"]' in block
    exec(compile(block, "README.md", "exec"), {})
