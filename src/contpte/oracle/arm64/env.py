"""What the arm64 oracle needs on the host, and how it gets it.

Models nothing: this finds the host tools (``qemu-system-aarch64`` from
Debian's ``qemu-system-arm``, the ``aarch64-linux-gnu-gcc`` cross compiler
with a static arm64 libc from ``gcc-aarch64-linux-gnu`` and
``libc6-dev-arm64-cross``) and fetches, once, into a cache directory:

- the Debian trixie arm64 kernel ``linux-image-6.12.*-arm64-unsigned``, whose
  ``vmlinuz`` is a plain arm64 ``Image`` that qemu boots directly;
- ``busybox-static`` (arm64), the guest's /init shell.

Both are downloaded with the host's own ``apt-get`` against a private apt
configuration (its own sources list, lists directory, cache and an empty
dpkg status), so the host's package lists and installed packages are left
alone and nothing is installed into the host: the two files are taken out
of the .deb archives with ``dpkg-deb``.  The archive mirror is the one the
host's apt sources already use.

The cache directory is ``$CONTPTE_ARM64_CACHE``, else
``$XDG_CACHE_HOME/contpte/arm64``, else ``~/.cache/contpte/arm64``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KERNEL_SERIES",
    "HOST_PACKAGES",
    "ORACLE_UNAVAILABLE",
    "Arm64Env",
    "cache_dir",
    "missing_tools",
    "tools_unavailable_reason",
    "ensure_guest_files",
    "cached_guest_files",
    "Arm64EnvError",
    "main",
]

KERNEL_SERIES = "6.12"
"""The kernel series the oracle boots (the model's KERNEL_VERSION)."""

SUITE = "trixie"
KERNEL_PACKAGE_RE = re.compile(r"^linux-image-6\.12\.(\d+)\+deb13-arm64-unsigned$")
BUSYBOX_PACKAGE = "busybox-static"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

HOST_PACKAGES = ("qemu-system-arm", "gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross")
"""Debian packages of the host tools (``apt-get install`` them)."""

TOOLS = {
    "qemu-system-aarch64": "qemu-system-arm",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
}
FETCH_TOOLS = ("apt-get", "apt-cache", "dpkg-deb", "tar")

ORACLE_UNAVAILABLE = "the arm64 oracle cannot run here"


class Arm64EnvError(RuntimeError):
    """A tool or a package the arm64 oracle needs cannot be had."""


@dataclass(frozen=True)
class Arm64Env:
    """The files a boot needs."""

    image: Path
    busybox: Path
    kernel_package: str
    cache: Path


def cache_dir() -> Path:
    """Where downloads and builds are kept (never inside the repository)."""
    env = os.environ.get("CONTPTE_ARM64_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "contpte" / "arm64"


def missing_tools() -> list[str]:
    """Host tools not on PATH, as ``tool (Debian package)``."""
    out = [f"{t} ({pkg})" for t, pkg in TOOLS.items() if shutil.which(t) is None]
    if shutil.which("aarch64-linux-gnu-gcc") is not None and not _static_libc():
        out.append("a static arm64 libc (libc6-dev-arm64-cross)")
    return out


def _static_libc() -> bool:
    return any(Path(p).exists() for p in ("/usr/aarch64-linux-gnu/lib/libc.a",))


def tools_unavailable_reason() -> str | None:
    """Why the host tools are missing (None: all there)."""
    missing = missing_tools()
    if not missing:
        return None
    return (
        f"{ORACLE_UNAVAILABLE}: missing {', '.join(missing)}; install with "
        f"'apt-get install {' '.join(HOST_PACKAGES)}'"
    )


_STAMP = "guest.json"


def cached_guest_files(cache: Path | None = None) -> Arm64Env | None:
    """The kernel and busybox already in the cache (None: not fetched yet)."""
    cache = cache or cache_dir()
    try:
        meta = json.loads((cache / _STAMP).read_text())
    except (OSError, ValueError):
        return None
    image, busybox = cache / "Image", cache / "busybox"
    if not (image.is_file() and busybox.is_file()):
        return None
    return Arm64Env(image, busybox, str(meta.get("kernel", "?")), cache)


def _debian_mirror() -> str:
    """The Debian archive URI the host's apt sources use (not the security archive)."""
    texts: list[str] = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.suffix in (".list", ".sources") and path.is_file():
            try:
                texts.append(path.read_text())
            except OSError:
                continue
    for text in texts:
        for m in re.finditer(r"(?:URIs:|deb(?:\s+\[[^\]]*\])?)\s+(\S+)", text):
            for uri in m.group(1).split():
                if "security" not in uri and uri.rstrip("/").endswith("/debian"):
                    return uri.rstrip("/")
    raise Arm64EnvError(
        f"{ORACLE_UNAVAILABLE}: no Debian archive in the host's apt sources to fetch the "
        f"{SUITE} arm64 kernel from"
    )


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Arm64EnvError(f"{ORACLE_UNAVAILABLE}: {what} failed: {e}") from None
    if r.returncode != 0:
        tail = " ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
        raise Arm64EnvError(f"{ORACLE_UNAVAILABLE}: {what} failed (exit {r.returncode}): {tail}")
    return r.stdout


def _apt_options(apt: Path) -> list[str]:
    return [
        "-o", f"Dir::Etc::SourceList={apt / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={apt / 'lists'}",
        "-o", f"Dir::State::status={apt / 'status'}",
        "-o", f"Dir::Cache={apt / 'cache'}",
        "-o", "APT::Architecture=arm64",
        "-o", "APT::Architectures::=arm64",
        "-o", "APT::Sandbox::User=root",
        "-o", "Debug::NoLocking=1",
        "-q",
    ]  # fmt: skip


def _version_key(name: str) -> int:
    m = KERNEL_PACKAGE_RE.match(name)
    return int(m.group(1)) if m else -1


def _download_bytes(opts: list[str], packages: list[str]) -> int:
    """The size of the .debs ``apt-get download`` would fetch (``--print-uris``: nothing fetched)."""
    out = _run(["apt-get", *opts, "--print-uris", "download", *packages], "apt-get --print-uris download")
    total = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].startswith("'") and parts[2].isdigit():
            total += int(parts[2])
    return total


def ensure_guest_files(
    cache: Path | None = None, log: list[str] | None = None, say: Callable[[str], None] | None = None
) -> Arm64Env:
    """The kernel Image and busybox, fetched into the cache on first use.

    ``say`` is told, before each download, what is fetched from where and
    how much.  Raises ``Arm64EnvError`` saying what is missing when the
    tools or the packages cannot be had.
    """
    say = say or (lambda _text: None)
    cache = cache or cache_dir()
    have = cached_guest_files(cache)
    if have is not None:
        return have
    missing = [t for t in FETCH_TOOLS if shutil.which(t) is None]
    if missing:
        raise Arm64EnvError(
            f"{ORACLE_UNAVAILABLE}: cannot fetch the arm64 kernel without {', '.join(missing)}"
        )
    if not Path(KEYRING).exists():
        raise Arm64EnvError(
            f"{ORACLE_UNAVAILABLE}: no {KEYRING} (debian-archive-keyring) to check the {SUITE} archive"
        )
    cache.mkdir(parents=True, exist_ok=True)
    apt = cache / "apt"
    for d in (apt / "lists" / "partial", apt / "cache" / "archives" / "partial"):
        d.mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(
        f"deb [arch=arm64 signed-by={KEYRING}] {_debian_mirror()} {SUITE} main\n"
    )
    (apt / "status").touch()
    opts = _apt_options(apt)
    mirror = _debian_mirror()
    say(f"fetching the Debian {SUITE} arm64 package lists from {mirror} into {apt}")
    _run(["apt-get", *opts, "update"], f"apt-get update of the private {SUITE} arm64 lists")
    names = _run(["apt-cache", *opts, "pkgnames", "linux-image-6.12"], "apt-cache pkgnames").split()
    kernels = sorted((n for n in names if KERNEL_PACKAGE_RE.match(n)), key=_version_key)
    if not kernels:
        raise Arm64EnvError(
            f"{ORACLE_UNAVAILABLE}: no linux-image-{KERNEL_SERIES}.*-arm64-unsigned package in {SUITE} (arm64)"
        )
    kernel = kernels[-1]
    size = _download_bytes(opts, [kernel, BUSYBOX_PACKAGE])
    say(
        f"downloading {kernel} and {BUSYBOX_PACKAGE} ({size / 1e6:.0f} MB of arm64 .debs, not installed; "
        f"the kernel Image and busybox are kept in {cache})"
    )
    with tempfile.TemporaryDirectory(dir=cache, prefix="fetch-") as tmp:
        t = Path(tmp)
        _run(["apt-get", *opts, "download", kernel, BUSYBOX_PACKAGE], f"apt-get download {kernel}", cwd=t)
        debs = {p.name.split("_", 1)[0]: p for p in t.glob("*.deb")}
        if kernel not in debs or BUSYBOX_PACKAGE not in debs:
            raise Arm64EnvError(f"{ORACLE_UNAVAILABLE}: apt-get download gave {sorted(debs)}")
        x = t / "x"
        x.mkdir()
        # Only the files we need: the kernel package is mostly modules.
        for deb, members in ((debs[kernel], ["./boot/"]), (debs[BUSYBOX_PACKAGE], ["./usr/bin/busybox"])):
            tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=False)
            if tar.returncode != 0:
                raise Arm64EnvError(f"{ORACLE_UNAVAILABLE}: dpkg-deb --fsys-tarfile {deb.name} failed")
            r = subprocess.run(["tar", "-x", "-C", str(x), *members], input=tar.stdout, capture_output=True)
            if r.returncode != 0:
                raise Arm64EnvError(
                    f"{ORACLE_UNAVAILABLE}: unpacking {deb.name}: {r.stderr.decode().strip()}"
                )
        vmlinuz = sorted((x / "boot").glob("vmlinuz-*"))
        configs = sorted((x / "boot").glob("config-*"))
        if not vmlinuz:
            raise Arm64EnvError(f"{ORACLE_UNAVAILABLE}: {kernel} has no /boot/vmlinuz-*")
        shutil.copyfile(vmlinuz[0], cache / "Image")
        if configs:
            shutil.copyfile(configs[0], cache / "config")
        shutil.copyfile(x / "usr" / "bin" / "busybox", cache / "busybox")
    (cache / _STAMP).write_text(json.dumps({"kernel": kernel, "image": vmlinuz[0].name}) + "\n")
    if log is not None:
        log.append(f"fetched {kernel} and {BUSYBOX_PACKAGE} into {cache}")
    env = cached_guest_files(cache)
    assert env is not None
    return env


def main(argv: list[str] | None = None) -> int:
    """``python -m contpte.oracle.arm64``: fetch the guest files now (CI does); say what is there.

    Exit 0 when the oracle can run, 3 (with the reason on stderr) when it cannot.
    """
    import sys

    reason = tools_unavailable_reason()
    if reason is not None:
        print(f"contpte arm64 oracle: {reason}", file=sys.stderr)
        return 3
    notes: list[str] = []
    try:
        env = ensure_guest_files(
            log=notes, say=lambda text: print(f"contpte arm64 oracle: {text}", flush=True)
        )
    except Arm64EnvError as e:
        print(f"contpte arm64 oracle: {e}", file=sys.stderr)
        return 3
    for n in notes:
        print(f"contpte arm64 oracle: {n}")
    print(f"contpte arm64 oracle: ready ({env.kernel_package}, cache {env.cache})")
    return 0
