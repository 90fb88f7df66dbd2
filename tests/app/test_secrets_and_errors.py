"""The API key never shows (logs, STATUS, control status, argv, environment, state file), and
fatal configuration errors exit 78 with the key named."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from daemon.cli.ctl import format_report
from tests.app.conftest import REPO, Manager, live_server, write_config

KEY_PREFIX = "AIzaSyTEST"


def _dump(pid: int, what: str) -> bytes:
    return Path(f"/proc/{pid}/{what}").read_bytes()


@pytest.mark.parametrize("source", ["credential", "key_file", "environment"])
def test_a_known_key_leaves_no_trace(
    tmp_path: Path, manager: Manager, spawn: Any, source: str
) -> None:
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    with live_server(api_keys={key}) as live:
        extra, env = "", {}
        if source == "credential":
            creds = tmp_path / "creds"
            creds.mkdir()
            (creds / "api-key").write_text(key + "\n")
            env["CREDENTIALS_DIRECTORY"] = str(creds)
        elif source == "key_file":
            (tmp_path / "key").write_text(key)
            extra = f'[live]\nkey_file = "{tmp_path / "key"}"\n'
        else:
            env["VOICED_API_KEY"] = key
        cfg = write_config(tmp_path / "voiced.toml", tmp_path, extra, log_level="DEBUG")
        d = spawn(cfg, live.endpoint(), manager, env=env)
        manager.wait("READY=1")
        d.wait_control()
        # The key was really used: the server only accepts this key.
        conns = live.thread.run(live.wait_connections(1))
        assert conns[0].auth_source == "x-goog-api-key"
        assert d.control("say", text="say something")["ok"]
        live.thread.run(live.wait_turns(1))
        status = d.control("status")
        d.control("ptt", action="start")
        d.control("ptt", action="stop")
        live.thread.run(live.wait_turns(2))
        dumps = {
            "cmdline": _dump(d.pid, "cmdline"),
            "environ": _dump(d.pid, "environ"),
            "control status": json.dumps(status).encode()
            + format_report(status["status"]).encode(),
            "notify": "\n".join(line for _, line in manager.lines()).encode(),
        }
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
        dumps["log"] = d.log_path.read_bytes()
        dumps["state"] = (tmp_path / "state" / "state.json").read_bytes()
        shown = subprocess.run(
            [sys.executable, "-m", "daemon", "config", "--config", str(cfg)],
            cwd=REPO,
            env={**env, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            check=True,
        )
        dumps["voiced config"] = shown.stdout + shown.stderr
    assert b"api key: set (redacted)" in dumps["voiced config"]
    assert b"DEBUG" in dumps["log"] and b"STATUS=" in dumps["notify"]
    for what, data in dumps.items():
        assert key.encode() not in data, f"the API key leaked into {what}"
        assert key[len(KEY_PREFIX) :][:16].encode() not in data, f"part of the key in {what}"
    if source == "environment":
        # Moved out by a re-exec (same PID): /proc/<pid>/environ is the start-up environment.
        assert b"VOICED_API_KEY=" not in dumps["environ"]
    print(f"\n{source}: checked {', '.join(f'{k} ({len(v)} B)' for k, v in dumps.items())}")


def _run_expecting_78(tmp_path: Path, toml: str, *args: str, one_line: bool = True) -> str:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon",
            "run",
            "--config",
            str(cfg),
            "--hw",
            "sim",
            "--state-dir",
            str(tmp_path / "s"),
            "--runtime-dir",
            str(tmp_path / "r"),
            *args,
        ],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 78, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("voiced: "), proc.stderr
    if one_line:  # a config error is found before anything else is said
        assert len(lines) == 1, proc.stderr
    return proc.stderr


@pytest.mark.parametrize(
    "toml,args,named",
    [
        ("", ("--endpoint", "ws://example.com/ws/x"), "live.endpoint"),
        ("", ("--endpoint", "htp://typo"), "--endpoint"),
        ('[live]\nendpoint = "ws://192.0.2.7:9000"\n', (), "live.endpoint"),
        ('[live]\nendpoint = "gemini"\n', (), "live.endpoint"),
        ('[live]\nendpoint = "smoke-signals"\n', (), "live.endpoint"),
        ('[live]\nkey_file = "/nonexistent/key"\n', (), "live.key_file"),
        ("[button]\npin = 99\n", (), "button.pin"),
        ("[mic]\nloudness = 11\n", (), "mic.loudness"),
        ("[live\n", (), "bad.toml"),
        ('[live]\nendpoint = "vertex"\nproject = ""\n', (), "live.project"),
    ],
)
def test_fatal_config_errors_exit_78_naming_the_key(
    tmp_path: Path, toml: str, args: tuple[str, ...], named: str
) -> None:
    err = _run_expecting_78(tmp_path, toml, *args)
    assert named in err, err
    assert "Traceback" not in err


def test_a_missing_sim_mic_file_is_a_fatal_device_error(tmp_path: Path) -> None:
    err = _run_expecting_78(
        tmp_path,
        "",
        "--endpoint",
        "ws://127.0.0.1:9/",
        "--mic-wav",
        str(tmp_path / "none.wav"),
        one_line=False,
    )
    assert "device error" in err and "none.wav" in err


def test_the_gemini_endpoint_without_a_key_names_where_the_key_goes(tmp_path: Path) -> None:
    err = _run_expecting_78(tmp_path, "", "--endpoint", "gemini")
    assert "api-key" in err and "VOICED_API_KEY" in err and "key_file" in err
