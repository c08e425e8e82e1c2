"""The repository stands alone: every document it cites is a file it contains.

A citation is a path ending in ``.md`` in source, tests, benchmarks, docs,
the README or ``.importlinter``; it must name a file relative to the
repository root or to the citing file's directory.  Nothing may point
outside the repository (``../shared/...``, the reference notes of the
project's first sessions).  Paths qualified by a repository
(``owner/repo:path/file.md``) name other projects and are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]

SCANNED = ("src", "tests", "benchmarks", "docs", "README.md", ".importlinter")
SUFFIXES = {".py", ".md", ".toml", ".scn", ".txt", ".cfg", ".ini", ""}


_CITE = re.compile(r"(?<![\w/.:-])((?:\.\./)*(?:[\w.-]+/)*[\w-][\w.-]*\.md)\b")
_OUTSIDE = re.compile(r"\.\./shared|shared/reference")


def _files() -> list[Path]:
    out: list[Path] = []
    for name in SCANNED:
        p = ROOT / name
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += [f for f in sorted(p.rglob("*")) if f.is_file() and f.suffix in SUFFIXES]
    # Build output (setuptools' egg-info, Cython's C files) is not the repository's text.
    return [
        f for f in out if "__pycache__" not in f.parts and not any(p.endswith(".egg-info") for p in f.parts)
    ]


def dangling(path: Path, text: str) -> list[str]:
    """The citations in ``text`` (of the file ``path``) that name no file of the repository."""
    bad = [f"{m.group(0)!r} points outside the repository" for m in _OUTSIDE.finditer(text)]
    for m in _CITE.finditer(text):
        cited = m.group(1)
        if not ((ROOT / cited).is_file() or (path.parent / cited).is_file()):
            bad.append(f"{cited!r} is not a file of the repository")
    return bad


def test_every_cited_document_is_in_the_repository() -> None:
    problems = []
    files = _files()
    assert len(files) > 100
    for f in files:
        if f.resolve() == Path(__file__).resolve():
            continue  # this file names the forbidden forms on purpose
        text = f.read_text(errors="replace")
        for line_no, line in enumerate(text.splitlines(), 1):
            for why in dangling(f, line):
                problems.append(f"{f.relative_to(ROOT)}:{line_no}: {why}")
    assert not problems, "\n".join(problems)


def test_the_checker_catches_what_it_must() -> None:
    here = ROOT / "src" / "contpte" / "x.py"
    assert dangling(here, "see numbers.md for the fit set")
    assert dangling(here, "see DESIGN.md")
    assert dangling(here, "../shared/reference/kernel.md a.3")
    assert dangling(here, "the facts are in ../shared/")
    assert not dangling(here, "see docs/numbers.md and docs/kernel.md b.3")
    assert not dangling(ROOT / "docs" / "x.md", "see SCENARIOS.md")  # beside the citing file
    assert not dangling(here, "wuyongzheng/arm-md-specs:arm/arm-D8.7.md")
    assert not dangling(here, 'path.with_suffix(".md")')


def test_the_design_and_its_references_are_in_docs() -> None:
    for name in (
        "DESIGN.md",
        "INTERNALS.md",
        "SCENARIOS.md",
        "kernel.md",
        "arm-rules.md",
        "numbers.md",
        "peers.md",
    ):
        assert (ROOT / "docs" / name).is_file(), name
    # the sections the code cites exist
    kernel = (ROOT / "docs" / "kernel.md").read_text()
    for label in ("### a.3", "### b.1", "### b.3", "### b.5", "### c.2"):
        assert label in kernel
    rules = (ROOT / "docs" / "arm-rules.md").read_text()
    for label in ("### 1.4", "### 3.4", "### 3.5", "### 4.2"):
        assert label in rules
