"""The shipped unit, sysusers and tmpfiles files, checked by systemd's own tools."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from daemon.runtime.service import EXIT_CONFIG

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "voiced.service"
SHIPPED_EXEC = "/opt/voiced/bin/voiced"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # fail loudly: a missing tool must not look like a pass
        pytest.fail(f"{name} is not installed (apt install systemd)")
    return path


def _unit_settings(text: str) -> dict[str, list[str]]:
    """KEY -> values, over all sections (our keys are unique across sections)."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> Path:
    """A copy of the shipped unit whose ExecStart points at an executable that exists.

    `systemd-analyze verify` fails (exit 1) when the ExecStart binary is missing,
    and /opt/voiced/bin/voiced only exists on an installed device. Only the
    binary path is rewritten; every other line is verified exactly as shipped.
    """
    fake = tmp_path / "voiced"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    text = UNIT.read_text()
    assert f"ExecStart={SHIPPED_EXEC} run" in text
    unit = tmp_path / "voiced.service"
    unit.write_text(text.replace(f"ExecStart={SHIPPED_EXEC} ", f"ExecStart={fake} "))
    return unit


def test_unit_verifies_clean(verifiable_unit: Path):
    result = subprocess.run(
        [_tool("systemd-analyze"), "verify", str(verifiable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown keys and bad values are only warnings with exit 0: stderr must be empty too.
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_unit_verify_catches_a_bad_key(verifiable_unit: Path):
    # The check above can fail: a typo'd key prints a warning on stderr.
    text = verifiable_unit.read_text().replace("NotifyAccess=", "NotifyAcess=")
    verifiable_unit.write_text(text)
    result = subprocess.run(
        [_tool("systemd-analyze"), "verify", str(verifiable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "NotifyAcess" in result.stderr


def test_unit_security_exposure_at_most_2(tmp_path: Path):
    unit = tmp_path / "voiced.service"
    shutil.copy(UNIT, unit)
    result = subprocess.run(
        [_tool("systemd-analyze"), "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(
        r"Overall exposure level for voiced\.service: (\d+\.\d+) (\w+)", result.stdout
    )
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security: exposure {exposure} {match.group(2)}")
    assert exposure <= 2.0


def test_unit_has_the_required_settings():
    s = _unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] and s["Restart"] == ["on-failure"]
    # No start limit: a transient failure must never leave the device dead.
    assert s["StartLimitIntervalSec"] == ["0"]
    assert s["RestartPreventExitStatus"] == [str(EXIT_CONFIG)]
    assert "network-online.target" in s["Wants"][0]
    assert {"network-online.target", "sound.target"} <= set(s["After"][0].split())
    assert s["User"] == ["voiced"]
    assert set(s["SupplementaryGroups"][0].split()) == {"audio", "gpio"}
    assert s["LoadCredential"] == ["api-key:/etc/voiced/api-key"]
    for key in ("ConfigurationDirectory", "StateDirectory", "RuntimeDirectory"):
        assert s[key] == ["voiced"]
    assert s["WorkingDirectory"] == ["/run/voiced"]  # lgpio needs a writable cwd
    # Group voiced reaches control.sock (0660) through its directory (issue 14).
    assert s["RuntimeDirectoryMode"] == ["0750"] and s["Group"] == ["voiced"]
    assert s["ExecStart"] == [f"{SHIPPED_EXEC} run"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["DevicePolicy"] == ["closed"]
    allowed = {v.split()[0] for v in s["DeviceAllow"]}
    assert allowed == {"char-alsa", "char-gpiochip", "char-bcm2835-gpiomem", "/dev/gpiomem"}
    # The key never goes through the environment.
    assert not any("KEY" in v.upper() for v in s.get("Environment", []))


def test_sysusers_creates_user_and_groups(tmp_path: Path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\naudio:x:29:\n")
    result = subprocess.run(
        [_tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSTEMD / "voiced.sysusers")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    group = (tmp_path / "etc" / "group").read_text()
    user = [line for line in passwd.splitlines() if line.startswith("voiced:")]
    assert len(user) == 1 and user[0].endswith(":/var/lib/voiced:/usr/sbin/nologin")
    assert re.search(r"^audio:x:29:voiced$", group, re.M)
    assert re.search(r"^gpio:x:\d+:voiced$", group, re.M)  # created: plain Debian has none


def test_tmpfiles_makes_config_dir_readable_by_the_service_only(tmp_path: Path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\nvoiced:x:990:990::/var/lib/voiced:/usr/sbin/nologin\n"
    )
    (tmp_path / "etc" / "group").write_text("root:x:0:\nvoiced:x:990:\n")
    result = subprocess.run(
        [
            _tool("systemd-tmpfiles"),
            f"--root={tmp_path}",
            "--create",
            str(SYSTEMD / "voiced.tmpfiles"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    st = (tmp_path / "etc" / "voiced").stat()
    assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == ("0o750", 0, 990)
