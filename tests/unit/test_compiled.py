"""The compiled core and its interpreted sources behave the same; stale builds are refused.

- A whole machine (fault, fork, CoW, mprotect, MADV_DONTNEED, munmap, exit,
  PMD-mapped THPs, every validator on) gives the same counters, pagemap and data when the
  core runs interpreted (``CONTPTE_INTERPRETED=1``) as when it runs
  compiled: the ``.py`` files are the only source of both.
- In a source checkout, a compiled module older than its ``.py`` is
  refused at import with a message that says how to rebuild; an installed
  copy (no ``setup.py`` beside ``src/``) is not checked.
- Without the compiled modules the package says once that it runs
  interpreted.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from contpte import _compiled

SCRIPT = textwrap.dedent(
    """
    import json
    import contpte
    import contpte.mm.memory as M

    out = {"compiled": not M.__file__.endswith(".py")}
    for arch in ("arm64", "generic"):
        m = contpte.Machine(arch=arch, memory="64M", mthp={"16K": "always", "64K": "always"}, check=True)
        p = m.spawn()
        a = p.mmap("1M", prot="rw", flags="private|anonymous")
        p.write(a + 20 * 4096, "700K", value=3)
        c = p.fork()
        c.write(a + 40 * 4096, 4096 * 3, value=9)
        p.madvise(a + 64 * 4096, "40K", "dontneed")
        p.mprotect(a + 100 * 4096, "64K", "r")
        c.munmap(a + 130 * 4096, "16K")
        pm = [p.pagemap(a, "1M").tolist(), c.pagemap(a, "1M").tolist()]
        data = [p.read(a, "1M").tolist(), c.read(a, 130 * 4096).tolist()]
        c.exit()
        out[arch] = {"stats": m.stats(), "pagemap": pm, "data": data}
    # PMD-mapped THPs (a fork, a CoW write that splits the PMD, a partial munmap)
    m = contpte.Machine(arch="arm64", memory="64M", thp="always", check=True)
    p = m.spawn()
    a = p.mmap("4M", prot="rw", flags="private|anonymous")
    p.write(a, "4M", value=1)
    c = p.fork()
    c.write(a + 4096, 4096, value=2)
    p.munmap(a + (2 << 20), "64K")
    out["thp"] = {"stats": m.stats(), "pagemap": p.pagemap(a, "2M").tolist(), "data": c.read(a, 8192).tolist()}
    print(json.dumps(out, default=str))
    """
)


def run(interpreted: bool) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("CONTPTE_INTERPRETED", None)
    if interpreted:
        env["CONTPTE_INTERPRETED"] = "1"
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    out: dict[str, object] = json.loads(r.stdout)
    return out


def test_interpreted_machine_equals_compiled() -> None:
    comp = run(False)
    if not comp.pop("compiled"):
        pytest.skip("the compiled core is not built (no C compiler at install): nothing to compare")
    interp = run(True)
    assert interp.pop("compiled") is False
    for case in ("arm64", "generic", "thp"):
        assert interp[case] == comp[case], case
    # the run did something worth comparing: folds on arm64, CoW, a zap
    stats = comp["arm64"]["stats"]  # type: ignore[index]
    assert stats["contpte.fold"] > 0 and stats["fault.wp_copy"] > 0 and stats["zap.ptes"] > 0
    assert comp["thp"]["stats"]["thp_fault_alloc"] == 2  # type: ignore[index]


def fake_tree(root: Path, checkout: bool, stale: bool) -> Path:
    """A package folder with one compiled module: its .py older or newer than the build."""
    pkg = root / "src" / "contpte" if checkout else root / "site-packages" / "contpte"
    pkg.mkdir(parents=True)
    if checkout:
        (root / "setup.py").write_text("")
    src = pkg / "counters.py"
    ext = pkg / ("counters" + importlib.machinery.EXTENSION_SUFFIXES[0])
    src.write_text("")
    ext.write_bytes(b"")
    old, new = 1_000_000_000, 1_000_000_100
    os.utime(src, (new, new) if stale else (old, old))
    os.utime(ext, (old, old) if stale else (new, new))
    return pkg


def test_stale_build_in_a_checkout_is_refused(tmp_path: Path) -> None:
    pkg = fake_tree(tmp_path, checkout=True, stale=True)
    assert _compiled.in_source_checkout(pkg)
    with pytest.raises(ImportError, match=r"contpte/counters\.py.*build_ext --inplace"):
        _compiled.check_fresh(pkg)


def test_fresh_build_in_a_checkout_passes(tmp_path: Path) -> None:
    _compiled.check_fresh(fake_tree(tmp_path, checkout=True, stale=False))


def test_installed_copy_is_not_checked(tmp_path: Path) -> None:
    pkg = fake_tree(tmp_path, checkout=False, stale=True)
    assert not _compiled.in_source_checkout(pkg)
    _compiled.check_fresh(pkg)


def test_interpreted_core_says_so_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CONTPTE_INTERPRETED", raising=False)
    monkeypatch.setattr(_compiled, "_warned", False)
    monkeypatch.setattr(_compiled, "_extension", lambda name, pkg_dir=None: None)
    _compiled.warn_if_interpreted()
    _compiled.warn_if_interpreted()
    err = capsys.readouterr().err
    assert err.count("running interpreted") == 1
    assert f"{len(_compiled.COMPILED)} of {len(_compiled.COMPILED)} modules" in err
