"""Core-mm writes hardware state only through the arch layer.

import-linter (``.importlinter``) keeps ``contpte.mm`` from importing
``contpte.hw`` (type-only imports aside), but mm reaches hardware objects
through attributes (``mm.space``, ``k.arch.pool``, ``k.hw``), which no
import graph shows.  This test reads the mm sources instead: it fails on any
call of a state-changing hardware method and any assignment into hardware
state made by mm, and on any use of a name imported from ``contpte.hw``
outside an annotation.  The kernel's equivalents are the arch functions
(``set_ptes``, ``copy_user_highpage``, ``clear_highpage``,
``pte_alloc_one``/``pmd_populate``, ``pmd_clear``/``pte_free_tlb``, the TLB
flushes); reads (``pool.peek``, ``space.pte_table``) may stay direct.

Which hardware methods change state is derived from ``src/contpte/hw``:
a method that assigns into ``self`` (or into something reached from it),
calls a container mutator on it, or calls another such method.  Which
attributes hold hardware objects is derived from the ``.pxd`` declarations
(``cdef public AddressSpace space``).  Both are name-based, so they err
towards reporting.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "contpte"
HW = SRC / "hw"
MM = SRC / "mm"

#: Mutating methods of Python's and numpy's containers (list, dict, set,
#: ndarray): hardware state is held in them.
CONTAINER_MUTATORS = frozenset(
    [
        "append",
        "extend",
        "insert",
        "pop",
        "popitem",
        "remove",
        "clear",
        "sort",
        "reverse",
        "update",
        "setdefault",
        "add",
        "discard",
        "difference_update",
        "intersection_update",
        "symmetric_difference_update",
        "fill",
        "put",
        "itemset",
        "resize",
        "partition",
        "setfield",
    ]
)
#: Read-only container methods mm may call on hardware state.
CONTAINER_READERS = frozenset(["get", "keys", "values", "items", "__contains__", "__len__", "tolist"])
#: Functions that write into their first argument (or an ``out=`` array).
WRITING_FUNCTIONS = frozenset(["setattr", "delattr", "copyto", "put", "place", "putmask"])


def _root_name(node: ast.expr) -> str | None:
    """The variable an attribute/subscript chain starts from (``self`` of ``self.a[i].b``)."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        out: list[ast.expr] = []
        for t in node.targets:
            out += _flatten(t)
        return out
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return _flatten(node.target) if not isinstance(node, ast.AnnAssign) or node.value is not None else []
    if isinstance(node, ast.Delete):
        out = []
        for t in node.targets:
            out += _flatten(t)
        return out
    return []


def _flatten(t: ast.expr) -> list[ast.expr]:
    if isinstance(t, (ast.Tuple, ast.List)):
        out: list[ast.expr] = []
        for e in t.elts:
            out += _flatten(e)
        return out
    if isinstance(t, ast.Starred):
        return _flatten(t.value)
    return [t]


@dataclass(frozen=True)
class HwApi:
    classes: frozenset[str]
    methods: frozenset[str]
    mutators: frozenset[str]
    attrs: frozenset[str]  # attribute names that hold hardware objects


@cache
def hw_api() -> HwApi:
    """Classes, methods, state-changing methods of ``contpte.hw`` and the attributes holding them."""
    classes: set[str] = set()
    methods: dict[str, list[ast.FunctionDef]] = {}
    for path in sorted(HW.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for cls in tree.body:
            if isinstance(cls, ast.ClassDef):
                classes.add(cls.name)
                for f in cls.body:
                    if isinstance(f, ast.FunctionDef) and f.name != "__init__":
                        methods.setdefault(f.name, []).append(f)

    def self_rooted(f: ast.FunctionDef) -> set[str]:
        """``self`` and the locals bound to something reached from it."""
        names = {"self"}
        changed = True
        while changed:
            changed = False
            for node in ast.walk(f):
                value = getattr(node, "value", None)
                if isinstance(node, (ast.Assign, ast.AnnAssign)) and value is not None:
                    if _root_name(value) in names:
                        for t in _targets(node) if isinstance(node, ast.Assign) else [node.target]:
                            if isinstance(t, ast.Name) and t.id not in names:
                                names.add(t.id)
                                changed = True
        return names

    def direct_mutation(f: ast.FunctionDef) -> bool:
        rooted = self_rooted(f)
        for node in ast.walk(f):
            for t in _targets(node):
                if isinstance(t, (ast.Attribute, ast.Subscript)) and _root_name(t) in rooted:
                    return True
            if isinstance(node, ast.Call):
                fn = node.func
                if (
                    isinstance(fn, ast.Attribute)
                    and fn.attr in CONTAINER_MUTATORS
                    and _root_name(fn.value) in rooted
                ):
                    return True
                if isinstance(fn, ast.Name) and fn.id in WRITING_FUNCTIONS and node.args:
                    if _root_name(node.args[0]) in rooted:
                        return True
        return False

    def called(f: ast.FunctionDef) -> set[str]:
        return {
            n.func.attr for n in ast.walk(f) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
        }

    mutators = {name for name, defs in methods.items() if any(direct_mutation(f) for f in defs)}
    changed = True
    while changed:  # a method calling a mutator (on any hardware object) is one
        changed = False
        for name, defs in methods.items():
            if name not in mutators and any(called(f) & mutators for f in defs):
                mutators.add(name)
                changed = True

    attrs: set[str] = set()
    decl = re.compile(r"^\s*cdef\s+(?:public\s+|readonly\s+)?(\w+)\s+([\w\s,]+?)\s*$")
    for pxd in SRC.rglob("*.pxd"):
        for line in pxd.read_text().splitlines():
            m = decl.match(line)
            if m and m.group(1) in classes:
                attrs.update(a.strip() for a in m.group(2).split(","))
    return HwApi(frozenset(classes), frozenset(methods), frozenset(mutators), frozenset(attrs))


def _hw_imports(tree: ast.Module, module: str) -> set[str]:
    """Names a module binds from ``contpte.hw`` (``module``: its dotted name)."""
    names: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target == "contpte.hw" or target.startswith("contpte.hw."):
                names.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "contpte.hw" or a.name.startswith("contpte.hw."):
                    names.add((a.asname or a.name).split(".")[0])
    return names


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        anns: list[ast.expr | None] = []
        if isinstance(node, ast.arg):
            anns.append(node.annotation)
        elif isinstance(node, ast.AnnAssign):
            anns.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            anns.append(node.returns)
        for a in anns:
            if a is not None:
                inside.update(id(n) for n in ast.walk(a))
    return inside


def _ann_names(ann: ast.expr | None) -> set[str]:
    if ann is None:
        return set()
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
        try:
            ann = ast.parse(ann.value, mode="eval").body
        except SyntaxError:
            return set()
    return {n.id for n in ast.walk(ann) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(ann) if isinstance(n, ast.Attribute)
    }


class _Scope:
    """Which expressions of one function hold hardware state."""

    def __init__(self, api: HwApi, fn: ast.AST) -> None:
        self.api = api
        self.names: set[str] = set()
        args = fn.args if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else None
        if args is not None:
            for a in args.posonlyargs + args.args + args.kwonlyargs:
                if _ann_names(a.annotation) & api.classes:
                    self.names.add(a.arg)
        changed = True
        while changed:  # flow-insensitive: a name bound to hardware state anywhere holds it
            changed = False
            for node in ast.walk(fn):
                bound: list[ast.expr] = []
                if isinstance(node, ast.AnnAssign):
                    if _ann_names(node.annotation) & api.classes or (node.value and self.is_hw(node.value)):
                        bound = [node.target]
                elif isinstance(node, ast.Assign) and self.is_hw(node.value):
                    bound = _targets(node)
                elif isinstance(node, (ast.For, ast.comprehension)) and self.is_hw(node.iter):
                    bound = _flatten(node.target)
                for t in bound:
                    if isinstance(t, ast.Name) and t.id not in self.names:
                        self.names.add(t.id)
                        changed = True

    def is_hw(self, e: ast.expr) -> bool:
        if isinstance(e, ast.Name):
            return e.id in self.names
        if isinstance(e, ast.Attribute):
            return e.attr in self.api.attrs or self.is_hw(e.value)
        if isinstance(e, ast.Subscript):
            return self.is_hw(e.value)
        if isinstance(e, ast.Call):
            return isinstance(e.func, ast.Attribute) and self.is_hw(e.func.value)
        if isinstance(e, ast.Starred):
            return self.is_hw(e.value)
        return False


def check_source(source: str, filename: str = "<mm>", module: str = "contpte.mm.snippet") -> list[str]:
    """Every write of hardware state (and runtime use of a hw import) in one mm module."""
    api = hw_api()
    tree = ast.parse(source, filename)
    problems: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        problems.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}: {ast.unparse(node)[:100]}")

    hw_names = _hw_imports(tree, module)
    in_ann = _annotation_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in hw_names and id(node) not in in_ann:
            report(node, f"{node.id} (imported from contpte.hw) used outside an annotation")

    funcs: list[ast.AST] = [tree] + [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
    ]
    seen: set[tuple[int, str]] = set()
    for fn in funcs:
        scope = _Scope(api, fn)
        for node in ast.walk(fn):
            found: list[tuple[ast.AST, str]] = []
            for t in _targets(node):
                if isinstance(t, (ast.Attribute, ast.Subscript)) and scope.is_hw(t.value):
                    found.append((node, "assignment into hardware state"))
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Attribute) and scope.is_hw(f.value):
                    if f.attr in api.mutators or f.attr in CONTAINER_MUTATORS:
                        found.append((node, f"hardware state changed by .{f.attr}()"))
                    elif f.attr not in api.methods and f.attr not in CONTAINER_READERS:
                        found.append((node, f".{f.attr}() on hardware state: not a known read"))
                name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                if name in WRITING_FUNCTIONS and node.args and scope.is_hw(node.args[0]):
                    found.append((node, f"{name}() writes into hardware state"))
                for kw in node.keywords:
                    if kw.arg == "out" and scope.is_hw(kw.value):
                        found.append((node, "out= into hardware state"))
            for n, what in found:
                key = (id(n), what)
                if key not in seen:
                    seen.add(key)
                    report(n, what)
    return problems


def _mm_modules() -> list[Path]:
    return sorted(MM.glob("*.py"))


def test_hw_api_is_derived() -> None:
    api = hw_api()
    # What the kernel does through arch, the hardware's writers.
    for name in ("store", "xchg", "cmpxchg", "hw_store", "poke", "fill", "copy", "alloc_pte_table",
                 "free_pte_table", "hook_table", "unhook_table", "slot_alloc", "slot_free", "pmd_store",
                 "tlbi_op", "dsb_op", "invlpg", "access", "translate", "insert", "invalidate_range",
                 "ptl_release", "on_store", "new_space", "retire_space"):  # fmt: skip
        assert name in api.mutators, name
    # Reads stay reads (load counts a pte.read: counters are not hardware state).
    for name in (
        "peek",
        "load",
        "none_count",
        "entries",
        "pte_table",
        "pte_ptr",
        "pmd_peek",
        "pmd_load",
        "va",
    ):
        assert name in api.methods and name not in api.mutators, name
    assert {"space", "pool", "hw", "memory", "checker"} <= api.attrs
    assert {"Hardware", "PtePool", "AddressSpace", "PhysMemory", "Tlb", "RuleChecker"} <= api.classes


@pytest.mark.parametrize("path", _mm_modules(), ids=lambda p: p.name)
def test_mm_writes_hardware_only_through_arch(path: Path) -> None:
    problems = check_source(path.read_text(), str(path.relative_to(SRC.parent)), f"contpte.mm.{path.stem}")
    assert not problems, "\n".join(problems)


VIOLATIONS = {
    "memory copy": "def f(k, new, page):\n    k.hw.memory.copy(new, page, 1)\n",
    "memory slice store": "def f(k, a, vals):\n    k.hw.memory.data[a : a + 2] = vals\n",
    "memory through a local": "def f(k, a):\n    d = k.hw.memory.data\n    d[a] += 1\n",
    "cpu selection": "def f(k, mm):\n    k.hw.current_cpu = min(mm.cpumask)\n",
    "table allocation": "def f(mm, i):\n    space: AddressSpace = mm.space\n    return space.alloc_pte_table(i)\n",
    "raw descriptor store": "def f(k, ptep):\n    k.arch.pool.store(ptep, 0)\n",
    "level-2 dict": "def f(mm, i):\n    del mm.space.pmds[i]\n",
    "container mutator": "def f(mm, i):\n    mm.space.tables.pop(i)\n",
    "tlb in a loop": "def f(k):\n    for t in k.hw.tlbs:\n        t.invalidate_all()\n",
    "setattr": "def f(k):\n    setattr(k.hw, 'current_cpu', 1)\n",
    "numpy out=": "import numpy as np\ndef f(mm, s, v):\n    np.add(v, 1, out=mm.space.pool.entries(s))\n",
    "unknown method": "def f(mm):\n    mm.space.frobnicate()\n",
    "runtime use of a hw import": (
        "from ..hw.tables import AddressSpace\ndef f(x):\n    return isinstance(x, AddressSpace)\n"
    ),
}


@pytest.mark.parametrize("snippet", list(VIOLATIONS.values()), ids=list(VIOLATIONS))
def test_checker_catches_injected_violation(snippet: str) -> None:
    problems = check_source(snippet)
    assert len(problems) == 1, problems


def test_checker_catches_violation_injected_into_real_module() -> None:
    path = MM / "memory.py"
    source = path.read_text()
    marker = "    count(k.counters, PAGE_COPY, 1)\n"
    assert marker in source
    injected = source.replace(marker, "    k.hw.memory.copy(new, page, 1)\n" + marker, 1)
    problems = check_source(injected, "memory.py", "contpte.mm.memory")
    assert len(problems) == 1 and ".copy()" in problems[0], problems


def test_checker_allows_reads_and_arch_calls() -> None:
    clean = textwrap.dedent(
        """
        from ..hw.tables import AddressSpace, PtePool
        def f(k, mm, vma, ptep: int, new: int, page: int) -> int:
            space: AddressSpace = mm.space
            pool: PtePool = k.arch.pool
            slot = space.pte_table(3)
            n = pool.none_count(ptep, 16) + pool.peek(ptep)
            for pmd in space.pmds.values():
                n += pmd
            k.arch.copy_user_highpage(new, page, 0, vma)
            k.arch.set_ptes(mm, 0, ptep, 0, 1)
            x = k.hw.memory.nr_frames
            return slot + n + x + space.pmds.get(3, 0)
        """
    )
    assert check_source(clean) == []


def test_every_package_has_a_layer() -> None:
    """A new subpackage (``contpte.sweep``, ...) is placed in the layers contract, not left outside it."""
    text = (SRC.parents[1] / ".importlinter").read_text()
    layers = text.split("layers =", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"contpte\.(\w+)", layers))
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()}
    assert packages <= named, f"not in .importlinter's layers: {sorted(packages - named)}"
    assert "sweep" in named
