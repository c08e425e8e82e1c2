"""What the arm64 oracle needs on the host, and how it gets it.

Models nothing: this finds the host tools (``qemu-system-aarch64`` from
Debian's ``qemu-system-arm``, the ``aarch64-linux-gnu-gcc`` cross compiler
with a static arm64 libc from ``gcc-aarch64-linux-gnu`` and
``libc6-dev-arm64-cross``) and fetches, once, into a cache directory:

- a Debian arm64 kernel of the series asked for (``contpte.version``'s
  ``KERNEL_VERSIONS``: 6.12 by default), with 4K pages (flavour ``arm64``)
  or 16K pages (``arm64-16k``): v6.12 from trixie
  (``linux-image-6.12.N+deb13-arm64[-16k]-unsigned``), the newer series
  from trixie-backports, as ``linux-image-*`` (6.16 to 6.18, one package
  with the modules) or, since Debian split the kernel packages (6.19),
  ``linux-binary[-unsigned]-*`` (the kernel alone, at
  ``usr/lib/modules/<release>/vmlinuz``).  The newest point release of the
  series that actually downloads is taken (some .debs are missing on
  mirrors); its ``vmlinuz`` is a plain arm64 ``Image`` that qemu boots
  directly.  ``debian_kernels()`` reads the package names; Debian has no
  arm64 kernel of 6.13, 6.14 and 6.15, and no 64K-page flavour;
- ``busybox-static`` (arm64), the guest's /init shell.

Everything is downloaded with the host's own ``apt-get`` against a private
apt configuration (its own sources list with trixie and trixie-backports,
lists directory, cache and an empty dpkg status), so the host's package
lists and installed packages are left alone and nothing is installed into
the host: the files are taken out of the .deb archives with ``dpkg-deb``.
The archive mirror is the one the host's apt sources already use.

The cache directory is ``$CONTPTE_ARM64_CACHE``, else
``$XDG_CACHE_HOME/contpte/arm64``, else ``~/.cache/contpte/arm64``; each
kernel is kept in ``kernels/<series>-<page size>/`` (``Image``,
``kernel.json``), busybox beside them.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ...version import KERNEL_VERSION, KERNEL_VERSIONS, version_key

__all__ = [
    "KERNEL_SERIES",
    "PAGE_SIZES",
    "TEST_KERNELS",
    "HOST_PACKAGES",
    "ORACLE_UNAVAILABLE",
    "Arm64Env",
    "DebianKernel",
    "debian_kernels",
    "kernel_candidates",
    "check_guest_kernel",
    "cache_dir",
    "missing_tools",
    "tools_unavailable_reason",
    "ensure_guest_files",
    "cached_guest_files",
    "Arm64EnvError",
    "main",
]

KERNEL_SERIES = KERNEL_VERSION
"""The kernel series the oracle boots by default (the model's KERNEL_VERSION, 6.12)."""

PAGE_SIZES = ("4K", "16K")
"""The arm64 page sizes Debian builds kernels for (flavours ``arm64`` and ``arm64-16k``)."""

TEST_KERNELS: tuple[tuple[str, str], ...] = (("6.12", "4K"), ("7.2", "4K"), ("7.2", "16K"))
"""The (series, page size) the tests boot; ``python -m contpte.oracle.arm64`` fetches them."""

SUITES = ("trixie", "trixie-backports")

DEBIAN_KERNEL_RE = re.compile(
    r"^linux-(?P<kind>image|binary|binary-unsigned)-(?P<series>\d+\.\d+)\.(?P<point>\d+)"
    r"\+deb13-arm64(?P<k16>-16k)?(?P<unsigned>-unsigned)?$"
)
"""A Debian arm64 kernel package of flavour ``arm64`` or ``arm64-16k`` (not cloud, rt or -dbg)."""

_KIND_PREFERENCE = {"binary": 0, "binary-unsigned": 1, "image-unsigned": 2, "image": 3}
"""Among the packages of one point release: the kernel alone before the package with the modules
(a signed Image differs from the unsigned one only by its PE signature)."""

MAX_DOWNLOAD_TRIES = 4
"""Candidate packages tried before giving up on a series (a 404 moves on to the next)."""

BUSYBOX_PACKAGE = "busybox-static"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

HOST_PACKAGES = ("qemu-system-arm", "gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross")
"""Debian packages of the host tools (``apt-get install`` them)."""

TOOLS = {
    "qemu-system-aarch64": "qemu-system-arm",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
}
FETCH_TOOLS = ("apt-get", "apt-cache", "dpkg-deb")

ORACLE_UNAVAILABLE = "the arm64 oracle cannot run here"

_ARM64_IMAGE_MAGIC = b"ARM\x64"
"""The magic at offset 0x38 of an arm64 kernel ``Image`` (Documentation/arch/arm64/booting.rst)."""


class Arm64EnvError(RuntimeError):
    """A tool or a package the arm64 oracle needs cannot be had."""


@dataclass(frozen=True)
class Arm64Env:
    """The files a boot needs."""

    image: Path
    busybox: Path
    kernel_package: str
    cache: Path
    series: str = KERNEL_SERIES
    """The kernel series (``"7.2"``): the version the model runs at."""
    page_size: str = "4K"
    """The kernel's page size (``"4K"`` or ``"16K"``)."""
    release: str = ""
    """The Debian kernel release (``"7.2.12+deb13-arm64-16k"``, ``uname -r``)."""


@dataclass(frozen=True, order=True)
class DebianKernel:
    """One Debian arm64 kernel package that holds a bootable Image."""

    series: str
    point: int
    page_size: str
    kind: str
    """``image``, ``image-unsigned``, ``binary`` or ``binary-unsigned``."""
    package: str

    @property
    def version(self) -> str:
        """``"7.2.12"``."""
        return f"{self.series}.{self.point}"


def debian_kernels(names: Iterable[str]) -> list[DebianKernel]:
    """The arm64 kernels among package ``names`` (``apt-cache pkgnames``).

    Since the split of the kernel packages (6.19), ``linux-image-*`` is a
    metapackage without the kernel when a ``linux-binary*`` package of the
    same release exists: it is left out then.
    """
    out: list[DebianKernel] = []
    for name in names:
        m = DEBIAN_KERNEL_RE.match(name)
        if m is None:
            continue
        kind = m.group("kind") + ("-unsigned" if m.group("unsigned") else "")
        page_size = "16K" if m.group("k16") else "4K"
        out.append(DebianKernel(m.group("series"), int(m.group("point")), page_size, kind, name))
    split = {(k.series, k.point, k.page_size) for k in out if k.kind.startswith("binary")}
    return sorted(k for k in out if not (k.kind == "image" and (k.series, k.point, k.page_size) in split))


def kernel_candidates(kernels: list[DebianKernel], series: str, page_size: str) -> list[DebianKernel]:
    """The packages to try for ``series`` at ``page_size``: newest point release first.

    Raises ``Arm64EnvError`` naming the series Debian has when it has none of this one.
    """
    fit = [k for k in kernels if k.series == series and k.page_size == page_size]
    if not fit:
        have = _series_summary(kernels, page_size)
        raise Arm64EnvError(
            f"{ORACLE_UNAVAILABLE}: Debian ({'/'.join(SUITES)}) has no arm64 kernel of the {series} series "
            f"with {page_size} pages; it has {have or 'none'}"
        )
    return sorted(fit, key=lambda k: (-k.point, _KIND_PREFERENCE[k.kind]))


def _series_summary(kernels: list[DebianKernel], page_size: str) -> str:
    newest: dict[str, int] = {}
    for k in kernels:
        if k.page_size == page_size and k.series in KERNEL_VERSIONS:
            newest[k.series] = max(newest.get(k.series, 0), k.point)
    return ", ".join(f"{s} ({s}.{newest[s]})" for s in sorted(newest, key=version_key))


def check_guest_kernel(series: str, page_size: str) -> None:
    """ValueError unless ``series`` is a modelled version and ``page_size`` a Debian arm64 flavour."""
    if series not in KERNEL_VERSIONS:
        raise ValueError(
            f"kernel version {series!r}: not a modelled version; expected one of {', '.join(KERNEL_VERSIONS)}"
        )
    if page_size not in PAGE_SIZES:
        raise ValueError(
            f"page size {page_size!r}: Debian's arm64 kernels come with {' or '.join(PAGE_SIZES)} pages"
        )


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


_STAMP = "kernel.json"


def _kernel_dir(cache: Path, series: str, page_size: str) -> Path:
    return cache / "kernels" / f"{series}-{page_size}"


def cached_guest_files(
    cache: Path | None = None, kernel: str = KERNEL_SERIES, page_size: str = "4K"
) -> Arm64Env | None:
    """The kernel and busybox already in the cache (None: not fetched yet)."""
    cache = cache or cache_dir()
    kdir = _kernel_dir(cache, kernel, page_size)
    try:
        meta = json.loads((kdir / _STAMP).read_text())
    except (OSError, ValueError):
        return None
    image, busybox = kdir / "Image", cache / "busybox"
    if not (image.is_file() and busybox.is_file()):
        return None
    return Arm64Env(
        image, busybox, str(meta.get("package", "?")), cache, kernel, page_size, str(meta.get("release", ""))
    )


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
        f"{ORACLE_UNAVAILABLE}: no Debian archive in the host's apt sources to fetch the arm64 kernels from"
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


def _download_bytes(opts: list[str], packages: list[str]) -> int:
    """The size of the .debs ``apt-get download`` would fetch (``--print-uris``: nothing fetched)."""
    out = _run(["apt-get", *opts, "--print-uris", "download", *packages], "apt-get --print-uris download")
    total = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].startswith("'") and parts[2].isdigit():
            total += int(parts[2])
    return total


@contextmanager
def _fetch_lock(cache: Path) -> Iterator[None]:
    """One fetch at a time per cache (parallel test workers share the private apt lists)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "fetch.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _extract(deb: Path, pick: Callable[[str], str | None], dest: Path) -> dict[str, Path]:
    """Copy the regular files of ``deb`` that ``pick`` names (member -> file name) into ``dest``."""
    got: dict[str, Path] = {}
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                name = pick(member.name.removeprefix("./"))
                if name is None or not member.isfile():
                    continue
                src = tar.extractfile(member)
                assert src is not None
                with open(dest / name, "wb") as out:
                    shutil.copyfileobj(src, out)
                got[name] = dest / name
    except tarfile.TarError as e:
        raise Arm64EnvError(f"{ORACLE_UNAVAILABLE}: unpacking {deb.name}: {e}") from None
    finally:
        proc.stdout.close()
        proc.wait()
    return got


_VMLINUZ_RE = re.compile(
    r"^(?:boot/vmlinuz-(?P<b>[^/]+)|usr/lib/modules/(?P<m>[^/]+)/vmlinuz(?:\.unsigned)?)$"
)


def _kernel_member(releases: list[str]) -> Callable[[str], str | None]:
    """``_extract``'s picker of a kernel package: the vmlinuz (its release into ``releases``), the config."""

    def pick(name: str) -> str | None:
        m = _VMLINUZ_RE.match(name)
        if m:
            releases.append(m.group("b") or m.group("m"))
            return "Image"
        return "config" if name.startswith("boot/config-") else None

    return pick


def _private_apt(cache: Path) -> list[str]:
    """Prepare the private apt configuration (trixie and trixie-backports, arm64); its options."""
    apt = cache / "apt"
    for d in (apt / "lists" / "partial", apt / "cache" / "archives" / "partial"):
        d.mkdir(parents=True, exist_ok=True)
    mirror = _debian_mirror()
    (apt / "sources.list").write_text(
        "".join(f"deb [arch=arm64 signed-by={KEYRING}] {mirror} {suite} main\n" for suite in SUITES)
    )
    (apt / "status").touch()
    return _apt_options(apt)


def _check_fetch_tools() -> None:
    missing = [t for t in FETCH_TOOLS if shutil.which(t) is None]
    if missing:
        raise Arm64EnvError(
            f"{ORACLE_UNAVAILABLE}: cannot fetch the arm64 kernel without {', '.join(missing)}"
        )
    if not Path(KEYRING).exists():
        raise Arm64EnvError(
            f"{ORACLE_UNAVAILABLE}: no {KEYRING} (debian-archive-keyring) to check the Debian archive"
        )


def ensure_guest_files(
    cache: Path | None = None,
    log: list[str] | None = None,
    say: Callable[[str], None] | None = None,
    *,
    kernel: str = KERNEL_SERIES,
    page_size: str = "4K",
) -> Arm64Env:
    """The Image of Debian's arm64 kernel ``kernel`` with ``page_size`` pages, and busybox.

    Fetched into the cache on first use: the newest point release of the
    series that downloads.  ``say`` is told, before each download, what is
    fetched from where and how much; ``log`` gets one line per fetched
    package (and per package that failed to download).  Raises
    ``ValueError`` for a version the model does not know or a page size
    Debian does not build, ``Arm64EnvError`` saying what is missing when
    the tools or the packages cannot be had (naming the series Debian has).
    """
    check_guest_kernel(kernel, page_size)
    say = say or (lambda _text: None)
    cache = cache or cache_dir()
    have = cached_guest_files(cache, kernel, page_size)
    if have is not None:
        return have
    _check_fetch_tools()
    with _fetch_lock(cache):
        have = cached_guest_files(cache, kernel, page_size)  # another worker fetched it meanwhile
        if have is not None:
            return have
        opts = _private_apt(cache)
        say(f"fetching the Debian {'/'.join(SUITES)} arm64 package lists into {cache / 'apt'}")
        _run(["apt-get", *opts, "update"], "apt-get update of the private arm64 lists")
        names = _run(["apt-cache", *opts, "pkgnames", "linux-"], "apt-cache pkgnames").split()
        candidates = kernel_candidates(debian_kernels(names), kernel, page_size)
        if not (cache / "busybox").is_file():
            _fetch_busybox(cache, opts, say)
        _fetch_kernel(cache, opts, candidates, say, log)
    env = cached_guest_files(cache, kernel, page_size)
    assert env is not None
    return env


def _fetch_busybox(cache: Path, opts: list[str], say: Callable[[str], None]) -> None:
    size = _download_bytes(opts, [BUSYBOX_PACKAGE])
    say(
        f"downloading {BUSYBOX_PACKAGE} ({size / 1e6:.1f} MB arm64 .deb, not installed; busybox kept in {cache})"
    )
    with tempfile.TemporaryDirectory(dir=cache, prefix="fetch-") as tmp:
        t = Path(tmp)
        _run(["apt-get", *opts, "download", BUSYBOX_PACKAGE], f"apt-get download {BUSYBOX_PACKAGE}", cwd=t)
        debs = sorted(t.glob(f"{BUSYBOX_PACKAGE}_*.deb"))
        if not debs:
            raise Arm64EnvError(f"{ORACLE_UNAVAILABLE}: apt-get download gave no {BUSYBOX_PACKAGE} .deb")
        got = _extract(debs[0], lambda n: "busybox" if n == "usr/bin/busybox" else None, t)
        if "busybox" not in got:
            raise Arm64EnvError(f"{ORACLE_UNAVAILABLE}: {debs[0].name} has no usr/bin/busybox")
        got["busybox"].replace(cache / "busybox")


def _fetch_kernel(
    cache: Path,
    opts: list[str],
    candidates: list[DebianKernel],
    say: Callable[[str], None],
    log: list[str] | None,
) -> None:
    failed: list[str] = []
    for k in candidates[:MAX_DOWNLOAD_TRIES]:
        size = _download_bytes(opts, [k.package])
        say(
            f"downloading {k.package} ({size / 1e6:.0f} MB arm64 .deb, not installed; "
            f"its kernel Image is kept in {_kernel_dir(cache, k.series, k.page_size)})"
        )
        with tempfile.TemporaryDirectory(dir=cache, prefix="fetch-") as tmp:
            t = Path(tmp)
            try:
                _run(["apt-get", *opts, "download", k.package], f"apt-get download {k.package}", cwd=t)
            except Arm64EnvError as e:
                failed.append(f"{k.package}: {str(e).removeprefix(ORACLE_UNAVAILABLE + ': ')}")
                if log is not None:
                    log.append(f"could not download {k.package}; trying the next candidate")
                continue
            debs = sorted(t.glob("*.deb"))
            releases: list[str] = []
            got = _extract(debs[0], _kernel_member(releases), t) if debs else {}
            why = None
            if not debs:
                why = "apt-get download gave no .deb"
            elif "Image" not in got:
                why = "no boot/vmlinuz-* or usr/lib/modules/*/vmlinuz in it"
            else:
                with open(got["Image"], "rb") as f:
                    if f.read(64)[0x38:0x3C] != _ARM64_IMAGE_MAGIC:
                        why = "its vmlinuz is not a plain arm64 Image"
            if why is not None:
                failed.append(f"{k.package}: {why}")
                if log is not None:
                    log.append(f"cannot use {k.package}: {why}; trying the next candidate")
                continue
            kdir = _kernel_dir(cache, k.series, k.page_size)
            kdir.mkdir(parents=True, exist_ok=True)
            got["Image"].replace(kdir / "Image")
            if "config" in got:
                got["config"].replace(kdir / "config")
            meta = {"package": k.package, "version": k.version, "release": releases[-1],
                    "series": k.series, "page_size": k.page_size}  # fmt: skip
            (kdir / _STAMP).write_text(json.dumps(meta) + "\n")
            if log is not None:
                log.append(f"fetched {k.package} ({k.version}) into {kdir}")
            return
    raise Arm64EnvError(
        f"{ORACLE_UNAVAILABLE}: no arm64 kernel of the {candidates[0].series} series with "
        f"{candidates[0].page_size} pages could be fetched: " + "; ".join(failed)
    )


def _parse_kernel_arg(text: str) -> tuple[str, str]:
    series, _, page_size = text.partition(":")
    return series, (page_size or "4K").upper()


def main(argv: list[str] | None = None) -> int:
    """``python -m contpte.oracle.arm64 [SERIES[:PAGESIZE] ...]``: fetch the guest files now; say what is there.

    Without arguments it fetches what the tests boot (``TEST_KERNELS``).
    Exit 0 when the oracle can run, 3 (with the reason on stderr) when it
    cannot, 2 on a bad argument.
    """
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        wanted = [_parse_kernel_arg(a) for a in args] or list(TEST_KERNELS)
        for series, page_size in wanted:
            check_guest_kernel(series, page_size)
    except ValueError as e:
        print(f"contpte arm64 oracle: {e}", file=sys.stderr)
        return 2
    reason = tools_unavailable_reason()
    if reason is not None:
        print(f"contpte arm64 oracle: {reason}", file=sys.stderr)
        return 3
    rc = 0
    for series, page_size in wanted:
        notes: list[str] = []
        try:
            env = ensure_guest_files(
                log=notes,
                say=lambda text: print(f"contpte arm64 oracle: {text}", flush=True),
                kernel=series,
                page_size=page_size,
            )
        except Arm64EnvError as e:
            print(f"contpte arm64 oracle: {e}", file=sys.stderr)
            rc = 3
            continue
        for n in notes:
            print(f"contpte arm64 oracle: {n}")
        print(f"contpte arm64 oracle: ready: {series} {page_size} ({env.kernel_package}, cache {env.cache})")
    return rc
