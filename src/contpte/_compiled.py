"""Which modules are compiled, and how the package finds out at import.

The kernel-shaped core (``hw``, ``arch``, ``mm``, ``check``) is compiled with
Cython in pure-Python mode when the package is installed with a C compiler
present (``setup.py`` reads ``COMPILED`` from this file).  The same ``.py``
files run interpreted, much slower, when:

- no compiler was found at install time (``warn_if_interpreted`` says so
  once, on stderr), or
- ``CONTPTE_INTERPRETED=1`` is set: ``install_source_finder`` then makes
  every ``contpte`` module load from its ``.py`` file even where a compiled
  one sits beside it (tests use it to check that the sources still run).

In a source checkout (``pip install -e .``) a compiled module older than
its ``.py`` would silently run the old code: ``check_fresh`` refuses that
with an ImportError that says how to rebuild.  An installed copy
(``pip install .``) is not checked: its files' times say nothing.

Only the standard library is imported here (setup.py executes this file).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["COMPILED", "interpreted_requested", "install_source_finder", "check_fresh", "warn_if_interpreted"]

COMPILED: tuple[str, ...] = (
    "contpte.counters",
    "contpte.hw.hashmap",
    "contpte.hw.format",
    "contpte.hw.memory",
    "contpte.hw.tlb",
    "contpte.hw.tlbi",
    "contpte.hw.tables",
    "contpte.hw.checker",
    "contpte.hw.hardware",
    "contpte.arch.pgtable",
    "contpte.arch.generic",
    "contpte.arch.arm64.pgtable_prot",
    "contpte.arch.arm64.tlbflush",
    "contpte.arch.arm64.contpte",
    "contpte.arch.arm64.pgtable",
    "contpte.mm.memmap",
    "contpte.mm.page_alloc",
    "contpte.mm.kernel",
    "contpte.mm.mm_types",
    "contpte.mm.shmem",
    "contpte.mm.rmap",
    "contpte.mm.swapfile",
    "contpte.mm.mmu_gather",
    "contpte.mm.mm_h",
    "contpte.mm.internal",
    "contpte.mm.huge_memory",
    "contpte.mm.memory",
    "contpte.mm.mmap",
    "contpte.mm.mremap",
    "contpte.mm.mprotect",
    "contpte.mm.madvise",
    "contpte.mm.userfaultfd",
    "contpte.mm.gup",
    "contpte.mm.vmscan",
    "contpte.check.incremental",
    "contpte.check.isolation",
    "contpte.check.pagemap",
    "contpte.check.stale_tlb",
    "contpte.check.cont_pte",
    "contpte.check.chp_pool",
    "contpte.check.validators",
)
"""Modules compiled by setup.py, in dependency order (dotted names)."""

ENV_INTERPRETED = "CONTPTE_INTERPRETED"
_PKG_DIR = Path(__file__).resolve().parent


def interpreted_requested() -> bool:
    return os.environ.get(ENV_INTERPRETED, "") not in ("", "0")


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Load ``contpte.*`` from ``.py`` files, ignoring compiled extensions."""

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("contpte."):
            return None
        rel = fullname.split(".")[1:]
        base = _PKG_DIR.joinpath(*rel)
        if (base / "__init__.py").is_file():
            return importlib.util.spec_from_file_location(
                fullname, base / "__init__.py", submodule_search_locations=[str(base)]
            )
        py = base.with_suffix(".py")
        if py.is_file():
            return importlib.util.spec_from_file_location(fullname, py)
        return None


def install_source_finder() -> None:
    """Make every later ``contpte.*`` import load the ``.py`` source."""
    if not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder())


def _extension(name: str, pkg_dir: Path = _PKG_DIR) -> Path | None:
    """The compiled file of module ``name`` beside its source, if any."""
    rel = name.split(".")[1:]
    folder = pkg_dir.joinpath(*rel[:-1])
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = folder / (rel[-1] + suffix)
        if p.is_file():
            return p
    return None


def in_source_checkout(pkg_dir: Path = _PKG_DIR) -> bool:
    """Whether the package runs from a source tree (``src/contpte`` beside ``setup.py``).

    An installed copy (``pip install .``: site-packages) is never stale: the
    wheel holds the modules built from the sources it holds, and unpacking
    sets the files' times in no particular order.
    """
    return pkg_dir.parent.name == "src" and (pkg_dir.parent.parent / "setup.py").is_file()


def check_fresh(pkg_dir: Path = _PKG_DIR) -> None:
    """In a source checkout, refuse to import a compiled module older than its ``.py``."""
    if not in_source_checkout(pkg_dir):
        return
    stale = []
    for name in COMPILED:
        ext = _extension(name, pkg_dir)
        if ext is None:
            continue
        src = ext.parent / (name.rsplit(".", 1)[1] + ".py")
        pxd = src.with_suffix(".pxd")
        newest = max(src.stat().st_mtime, pxd.stat().st_mtime if pxd.is_file() else 0.0)
        if newest > ext.stat().st_mtime:
            stale.append(str(src.relative_to(pkg_dir.parent)))
    if stale:
        raise ImportError(
            "contpte: compiled modules are older than their sources ("
            + ", ".join(stale)
            + "); rebuild them with `python setup.py build_ext --inplace` (or `pip install -e .`), "
            f"or set {ENV_INTERPRETED}=1 to run the sources interpreted"
        )


_warned = False


def warn_if_interpreted() -> None:
    """Say once, on stderr, that the core runs interpreted (no compiled modules)."""
    global _warned
    if _warned or interpreted_requested():
        return
    missing = [n for n in COMPILED if _extension(n) is None]
    if missing:
        _warned = True
        print(
            f"contpte: the compiled core is missing ({len(missing)} of {len(COMPILED)} modules, "
            "no C compiler at install?); running interpreted, about 100x slower",
            file=sys.stderr,
        )
