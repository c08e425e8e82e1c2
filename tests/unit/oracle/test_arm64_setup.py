"""The arm64 oracle's set-up says what it installs and downloads, and how to skip it."""

from __future__ import annotations

from pathlib import Path

import pytest

from contpte.oracle.arm64 import env

ROOT = Path(__file__).parents[3]


def test_download_size_from_print_uris(monkeypatch: pytest.MonkeyPatch) -> None:
    uris = (
        "'http://deb.debian.org/debian/pool/main/l/linux/linux-image.deb' "
        "linux-image-6.12.117+deb13-arm64-unsigned_6.12.117-1_arm64.deb 93000000 SHA256:ab\n"
        "'http://deb.debian.org/debian/pool/main/b/busybox/busybox-static.deb' "
        "busybox-static_1.37.0-6_arm64.deb 1000000 SHA256:cd\n"
    )
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
        calls.append(cmd)
        return uris

    monkeypatch.setattr(env, "_run", fake_run)
    assert env._download_bytes(["-o", "x"], ["a", "b"]) == 94_000_000
    assert "--print-uris" in calls[0] and calls[0][-2:] == ["a", "b"]


def test_run_tests_says_what_it_installs_and_how_to_skip() -> None:
    script = (ROOT / "run-tests").read_text()
    # the package list has one source, the oracle's own
    assert "HOST_PACKAGES" in script
    assert not any(pkg in script.split("arm64_oracle_setup()", 1)[1] for pkg in env.HOST_PACKAGES)
    assert 'echo "installing Debian packages' in script
    assert "CONTPTE_SKIP_ARM64_SETUP" in script
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "CONTPTE_SKIP_ARM64_SETUP=1 ./run-tests" in quick
    assert all(pkg in quick for pkg in env.HOST_PACKAGES)
