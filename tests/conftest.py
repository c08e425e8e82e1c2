"""Shared fixtures.

``mthp_sysfs`` is for live-kernel tests (marker ``live``): it lets a test set
the kernel's multi-size THP policy and always puts the original settings back.
"""

from __future__ import annotations

import atexit
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

THP_DIR = Path("/sys/kernel/mm/transparent_hugepage")

_SIZE_RE = re.compile(r"^(\d+)([KMG])B?$", re.IGNORECASE)
_UNIT = {"K": 1, "M": 1024, "G": 1024 * 1024}

MthpSetter = Callable[[str, str], None]


def _current(text: str) -> str:
    """Return the selected word of a sysfs policy file ("always [madvise] never")."""
    m = re.search(r"\[([^\]]+)\]", text)
    return m.group(1) if m else text.strip()


def _policy_file(size: str) -> Path:
    """Map ``"64K"``, ``"64kB"``, ``"2M"`` or ``"thp"`` (top level) to its sysfs file."""
    if size in ("thp", "top", "enabled"):
        return THP_DIR / "enabled"
    m = _SIZE_RE.match(size)
    if m is None:
        raise ValueError(f"bad mTHP size {size!r}; expected e.g. '64K', '2M' or 'thp'")
    kib = int(m.group(1)) * _UNIT[m.group(2).upper()]
    return THP_DIR / f"hugepages-{kib}kB" / "enabled"


@pytest.fixture
def mthp_sysfs() -> Iterator[MthpSetter]:
    """Yield ``set(size, value)`` for the live kernel's THP policy; restore on exit.

    Saves the top-level ``enabled`` and every ``hugepages-*kB/enabled`` first,
    and writes them all back in ``finally`` (which pytest also runs after a
    KeyboardInterrupt); an ``atexit`` hook covers a process that dies between.
    Skips, saying why, when the files are absent, we are not root, or they are
    not writable.
    """
    if not (THP_DIR / "enabled").exists():
        pytest.skip(f"no {THP_DIR}: kernel without transparent hugepages (or not Linux)")
    if os.geteuid() != 0:
        pytest.skip("changing mTHP policy in sysfs needs root")
    files = [THP_DIR / "enabled", *sorted(THP_DIR.glob("hugepages-*kB/enabled"))]
    not_writable = [str(f) for f in files if not os.access(f, os.W_OK)]
    if not_writable:
        pytest.skip(f"sysfs not writable (read-only /sys in a container?): {not_writable[0]}")
    saved = {f: _current(f.read_text()) for f in files}
    restored = False

    def restore() -> None:
        nonlocal restored
        if restored:
            return
        errors = []
        for f, value in saved.items():
            try:
                if _current(f.read_text()) != value:
                    f.write_text(value)
            except OSError as e:  # keep restoring the others
                errors.append(f"{f}: {e}")
        restored = True
        if errors:
            raise RuntimeError("could not restore mTHP policy: " + "; ".join(errors))

    atexit.register(restore)

    def set_policy(size: str, value: str) -> None:
        path = _policy_file(size)
        if path not in saved:
            raise ValueError(f"{path} does not exist on this kernel")
        path.write_text(value)
        if _current(path.read_text()) != value:
            raise RuntimeError(f"{path}: wrote {value!r}, kernel kept {path.read_text().strip()!r}")

    try:
        yield set_policy
    finally:
        try:
            restore()
        finally:
            atexit.unregister(restore)
