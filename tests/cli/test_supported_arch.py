"""64-bit only, said once and clearly (tools/supported-arch.sh, used by bootstrap.sh and
install.sh): 32-bit Raspberry Pi OS has no numpy wheel on PyPI (issue 14)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _fake_dpkg(tmp_path: Path, arch: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dpkg = bin_dir / "dpkg"
    dpkg.write_text(
        f'#!/bin/sh\n[ "$1" = --print-architecture ] && echo {arch} && exit 0\nexit 1\n'
    )
    dpkg.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize(
    "arch, ok",
    [("arm64", True), ("amd64", True), ("armhf", False), ("armel", False), ("i386", False)],
)
def test_the_userland_architecture_decides(tmp_path: Path, arch: str, ok: bool) -> None:
    proc = subprocess.run(
        ["bash", "-c", ". tools/supported-arch.sh; voiced_check_arch x"],
        cwd=ROOT,
        env=_fake_dpkg(tmp_path, arch),
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert (proc.returncode == 0) is ok
    if not ok:
        assert f"this is a 32-bit system ({arch}): voiced needs a 64-bit OS" in proc.stderr
        assert "Raspberry Pi OS (64-bit)" in proc.stderr


def test_bootstrap_refuses_32_bit_before_installing_anything(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", "tools/bootstrap.sh", "demo"],
        cwd=ROOT,
        env=_fake_dpkg(tmp_path, "armhf"),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("bootstrap.sh: this is a 32-bit system (armhf)")
    assert "apt" not in proc.stdout
