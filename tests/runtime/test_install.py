"""tools/install.sh into an offline image (--root): the same commands a Pi runs,
minus apt, the venv build and starting the service (no systemd PID 1 here)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KEY = "AIzaSyB-install-test-key_0123456789abcd"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.fail("install.sh tests need root (they create files owned by root and voiced)")
    root = tmp_path / "img"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\naudio:x:29:pi\npi:x:1000:\n")
    return root


def _install(root: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "tools" / "install.sh"), "--root", str(root), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _ids(root: Path) -> dict[str, int]:
    return {
        line.split(":")[0]: int(line.split(":")[2])
        for line in (root / "etc" / "group").read_text().splitlines()
    }


def test_install_uninstall_purge(image: Path, tmp_path: Path):
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"\n  {KEY}  \n")
    result = _install(image, "--key-file", str(key_file))
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout + result.stderr

    unit = image / "etc/systemd/system/voiced.service"
    assert unit.read_text() == (REPO / "systemd/voiced.service").read_text()
    wants = image / "etc/systemd/system/multi-user.target.wants/voiced.service"
    assert os.readlink(wants) == "/etc/systemd/system/voiced.service"  # enabled at boot

    passwd = (image / "etc/passwd").read_text()
    assert "voiced:x:" in passwd and ":/var/lib/voiced:/usr/sbin/nologin" in passwd
    groups = (image / "etc/group").read_text()
    assert "audio:x:29:pi,voiced" in groups and "\ngpio:x:" in groups

    etc = (image / "etc/voiced").stat()
    assert (stat.S_IMODE(etc.st_mode), etc.st_uid, etc.st_gid) == (0o750, 0, _ids(image)["voiced"])
    key = image / "etc/voiced/api-key"
    st = key.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 0, 0)
    assert key.read_text() == KEY + "\n"

    # A second run without a key keeps the key; a key on stdin ("-") replaces it.
    assert "keeping the existing" in _install(image).stdout
    assert key.read_text() == KEY + "\n"
    assert _install(image, "--key-file", "-", stdin="new-key\n").returncode == 0
    assert key.read_text() == "new-key\n"

    result = _install(image, "--uninstall")
    assert result.returncode == 0, result.stderr
    assert not unit.exists() and not os.path.lexists(wants)
    assert not (image / "usr/lib/sysusers.d/voiced.conf").exists()
    assert key.read_text() == "new-key\n"  # config and key survive a plain uninstall

    result = _install(image, "--uninstall", "--purge")
    assert result.returncode == 0, result.stderr
    assert not (image / "etc/voiced").exists()
    assert "voiced" not in (image / "etc/passwd").read_text()
    groups = (image / "etc/group").read_text()
    assert "audio:x:29:pi\n" in groups and "voiced" not in groups


def test_install_without_a_key_leaves_an_empty_root_only_key_file(image: Path):
    # systemd 252 refuses to start a unit whose LoadCredential= file is missing;
    # the daemon reads an empty credential as "no key" (daemon.app.config.resolve_api_key).
    result = _install(image, stdin="")
    assert result.returncode == 0, result.stderr
    key = image / "etc/voiced/api-key"
    assert key.read_text() == ""
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "no API key" in result.stdout


def test_install_refuses_a_key_on_the_command_line(image: Path):
    result = _install(image, "--key", KEY)
    assert result.returncode != 0
    assert "unknown option --key" in result.stderr


def test_the_gpio_udev_rule_is_installed_only_where_no_rule_covers_gpiochip(image: Path):
    """Plain Debian has no rule giving /dev/gpiochip* to group gpio: ours is installed (and
    removed on uninstall). Raspberry Pi OS's 99-com.rules has one: ours is not added."""
    rule = image / "etc/udev/rules.d/60-voiced-gpio.rules"
    result = _install(image, stdin="")
    assert result.returncode == 0, result.stderr
    assert rule.read_text() == (REPO / "systemd/voiced-gpio.rules").read_text()
    assert 'KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"' in rule.read_text()
    assert _install(image, stdin="").returncode == 0  # a rerun keeps ours (not "covered")
    assert rule.exists()
    assert _install(image, "--uninstall").returncode == 0
    assert not rule.exists()

    # Raspberry Pi OS (raspberrypi-sys-mods): the OS rule covers it.
    os_rules = image / "usr/lib/udev/rules.d"
    os_rules.mkdir(parents=True)
    (os_rules / "99-com.rules").write_text(
        '# a comment mentioning gpiochip and GROUP="gpio" does not count\n'
        'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"\n'
    )
    result = _install(image, stdin="")
    assert result.returncode == 0, result.stderr
    assert not rule.exists() and "already gives /dev/gpiochip* to group gpio" in result.stdout

    # A comment alone does not cover it.
    (os_rules / "99-com.rules").write_text('# KERNEL=="gpiochip*", GROUP="gpio"\n')
    assert _install(image, stdin="").returncode == 0
    assert rule.exists()
