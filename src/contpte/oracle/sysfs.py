"""The live kernel's THP policy in sysfs: set it for a run, always put it back.

Models nothing: this drives the real ``/sys/kernel/mm/transparent_hugepage``
(Documentation/admin-guide/mm/transhuge.rst).  ``ThpSysfs`` saves every
file it may touch before the first write and restores them all on
``restore()``, on leaving its ``with`` block (also after an exception or a
KeyboardInterrupt) and, as a last resort, from an ``atexit`` hook.

Besides the anonymous policy the oracle pins a few knobs that would make a
live run nondeterministic, and restores them too:

- ``shmem_enabled`` (top level and per size) = ``never``: shared anonymous
  memory and memfd/tmpfs files then use order-0 folios, as the model's
  shmem does;
- khugepaged is told to collapse nothing (``max_ptes_none`` = 0,
  ``max_ptes_shared`` = 0) and to sleep long (``scan_sleep_millisecs``):
  khugepaged runs asynchronously and the model has no khugepaged, so a
  collapse in the middle of a scenario would be a spurious difference.

Every ``ThpSysfs`` holds a machine-wide file lock (``LOCK_PATH``) from its
first save to its restore, so parallel users wait for each other, and keeps
what it saved in ``SAVED_PATH`` until it restored it: a run killed outright
is repaired by the next one.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import re
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["THP_DIR", "ThpSysfs", "current_setting", "policy_file", "default_policy"]

THP_DIR = Path("/sys/kernel/mm/transparent_hugepage")

_SIZE_RE = re.compile(r"^(\d+)([KMG])B?$", re.IGNORECASE)
_UNIT = {"K": 1, "M": 1024, "G": 1024 * 1024}

#: khugepaged knobs pinned during a run (file -> value).
KHUGEPAGED_PINNED = {
    "khugepaged/max_ptes_none": "0",
    "khugepaged/max_ptes_shared": "0",
    "khugepaged/scan_sleep_millisecs": "3600000",
    "khugepaged/alloc_sleep_millisecs": "3600000",
}


LOCK_PATH = Path(tempfile.gettempdir()) / "contpte-thp-sysfs.lock"
SAVED_PATH = Path(tempfile.gettempdir()) / "contpte-thp-sysfs.saved.json"
"""The values saved by the current holder of the lock.  A run killed
outright (SIGKILL, a crash: no ``finally``, no ``atexit``) leaves it behind;
the next ``save()`` puts those values back before saving anew."""
"""Serialises every user of ``ThpSysfs`` on this machine (parallel test
workers would otherwise change the global policy under each other)."""

_lock_fd = -1
_lock_depth = 0


def _lock() -> None:
    """Take the machine-wide lock (re-entrant within a process)."""
    global _lock_fd, _lock_depth
    if _lock_depth == 0:
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        _lock_fd = fd
    _lock_depth += 1


def _unlock() -> None:
    global _lock_fd, _lock_depth
    if _lock_depth == 0:
        return
    _lock_depth -= 1
    if _lock_depth == 0:
        fcntl.flock(_lock_fd, fcntl.LOCK_UN)
        os.close(_lock_fd)
        _lock_fd = -1


def current_setting(text: str) -> str:
    """The selected word of a sysfs policy file (``"always [madvise] never"`` -> ``"madvise"``)."""
    m = re.search(r"\[([^\]]+)\]", text)
    return m.group(1) if m else text.strip()


def size_kib(size: str) -> int:
    """``"64K"``, ``"64kB"``, ``"2M"`` -> KiB."""
    m = _SIZE_RE.match(size.strip())
    if m is None:
        raise ValueError(f"bad mTHP size {size!r}; expected e.g. '64K', '2M' or 'thp'")
    return int(m.group(1)) * _UNIT[m.group(2).upper()]


def policy_file(size: str, root: Path = THP_DIR) -> Path:
    """The ``enabled`` file of ``"64K"``/``"2M"`` (per size) or ``"thp"`` (top level)."""
    if size in ("thp", "top", "enabled"):
        return root / "enabled"
    return root / f"hugepages-{size_kib(size)}kB" / "enabled"


def default_policy(thp: str, mthp: dict[str, str] | None, root: Path = THP_DIR) -> dict[Path, str]:
    """Every anonymous policy file -> the value a ``Machine(thp=, mthp=)`` implies.

    As in ``contpte.Machine``: sizes not given are ``never``, the PMD size
    ``inherit``; the top level is ``thp``.
    """
    pmd_kib = int((root / "hpage_pmd_size").read_text()) // 1024
    out: dict[Path, str] = {root / "enabled": thp}
    for f in sorted(root.glob("hugepages-*kB/enabled")):
        kib = int(f.parent.name.removeprefix("hugepages-").removesuffix("kB"))
        out[f] = "inherit" if kib == pmd_kib else "never"
    for size, value in (mthp or {}).items():
        f = policy_file(size, root)
        if f not in out:
            raise ValueError(f"mTHP size {size}: {f} does not exist on this kernel")
        out[f] = value
    return out


class ThpSysfs:
    """Save, set and restore the live kernel's THP sysfs settings.

    ``with ThpSysfs() as thp: thp.apply("madvise", {"64K": "always"})``.
    """

    def __init__(self, root: Path = THP_DIR, pin_nondeterminism: bool = True) -> None:
        self.root = root
        self.pin_nondeterminism = pin_nondeterminism
        self.saved: dict[Path, str] = {}
        self._registered = False

    # -- availability -------------------------------------------------------
    def files(self) -> list[Path]:
        """Every file this object may write."""
        r = self.root
        out = [r / "enabled", *sorted(r.glob("hugepages-*kB/enabled"))]
        if self.pin_nondeterminism:
            out += [r / "shmem_enabled", *sorted(r.glob("hugepages-*kB/shmem_enabled"))]
            out += [r / k for k in KHUGEPAGED_PINNED if (r / k).exists()]
        return out

    def unavailable_reason(self) -> str | None:
        """Why the policy cannot be changed here (None: it can)."""
        if not (self.root / "enabled").exists():
            return f"no {self.root}: kernel without transparent hugepages (or not Linux)"
        if os.geteuid() != 0:
            return "changing the THP policy in sysfs needs root"
        bad = [str(f) for f in self.files() if not os.access(f, os.W_OK)]
        if bad:
            return f"sysfs not writable (read-only /sys in a container?): {bad[0]}"
        return None

    # -- save / set / restore -------------------------------------------------
    def save(self) -> None:
        """Remember every file's current value (once; later calls keep the first)."""
        if self.saved:
            return
        _lock()
        try:
            outermost = _lock_depth == 1
            if outermost:
                self._recover_stale()
            self.saved = {f: current_setting(f.read_text()) for f in self.files()}
            if outermost:
                SAVED_PATH.write_text(json.dumps({str(f): v for f, v in self.saved.items()}))
        except BaseException:
            _unlock()
            raise
        if not self._registered:
            atexit.register(self.restore)
            self._registered = True

    @staticmethod
    def _recover_stale() -> None:
        """Put back what a killed earlier run saved (we hold the lock: it is not running)."""
        try:
            stale = json.loads(SAVED_PATH.read_text())
        except (OSError, ValueError):
            return
        for name, value in stale.items():
            f = Path(name)
            try:
                if f.exists() and current_setting(f.read_text()) != value:
                    f.write_text(value)
            except OSError:
                pass
        SAVED_PATH.unlink(missing_ok=True)

    def write(self, path: Path, value: str) -> None:
        """Write one file (saving everything first) and check the kernel kept it."""
        self.save()
        if path not in self.saved:
            raise ValueError(f"{path} does not exist on this kernel")
        if current_setting(path.read_text()) == value:
            return
        path.write_text(value)
        got = current_setting(path.read_text())
        if got != value:
            raise RuntimeError(f"{path}: wrote {value!r}, kernel kept {got!r}")

    def set(self, size: str, value: str) -> None:
        """Set one size's policy (``"64K"``, ``"2M"``) or the top level (``"thp"``)."""
        self.write(policy_file(size, self.root), value)

    def apply(self, thp: str = "madvise", mthp: dict[str, str] | None = None) -> dict[str, str]:
        """Set the whole policy a ``Machine(thp=, mthp=)`` header describes; return it by file name."""
        self.save()
        wanted = default_policy(thp, mthp, self.root)
        if self.pin_nondeterminism:
            for f in self.saved:
                if f.name == "shmem_enabled":
                    wanted[f] = "never"
            for k, v in KHUGEPAGED_PINNED.items():
                if self.root / k in self.saved:
                    wanted[self.root / k] = v
        for f, v in wanted.items():
            self.write(f, v)
        return {str(f.relative_to(self.root)): v for f, v in wanted.items()}

    def restore(self) -> None:
        """Write every saved value back; keeps going past errors, then raises them."""
        if not self.saved:
            return
        errors = []
        for f, value in self.saved.items():
            try:
                if current_setting(f.read_text()) != value:
                    f.write_text(value)
            except OSError as e:
                errors.append(f"{f}: {e}")
        self.saved = {}
        if not errors and _lock_depth == 1:
            SAVED_PATH.unlink(missing_ok=True)
        _unlock()
        if self._registered:
            atexit.unregister(self.restore)
            self._registered = False
        if errors:
            raise RuntimeError("could not restore the THP policy: " + "; ".join(errors))

    def __enter__(self) -> ThpSysfs:
        self.save()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.restore()
