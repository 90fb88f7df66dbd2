"""The control client commands (daemon/cli/ctl.py) as a user runs them: child processes
against real AF_UNIX sockets — no daemon, a stale socket, a daemon that refuses, hangs
up or never answers, and one that answers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from daemon.cli import ctl
from daemon.runtime import control


def voiced(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *argv], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("status",),
        ("status", "--json"),
        ("say", "what", "time", "is", "it"),
        ("context", "I am in the kitchen"),
        ("instruct", "Be brief."),
        ("ptt", "start"),
        ("ptt", "stop"),
        ("new-session",),
    ],
)
def test_every_command_says_clearly_that_no_daemon_runs(
    tmp_path: Path, argv: tuple[str, ...]
) -> None:
    proc = voiced(*argv, "--runtime-dir", str(tmp_path / "nothing-here"))
    assert proc.returncode == ctl.EXIT_NOT_RUNNING
    assert "no voiced daemon is running" in proc.stderr
    assert str(tmp_path / "nothing-here" / "control.sock") in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_a_stale_socket_file_means_no_daemon(tmp_path: Path) -> None:
    # A daemon killed with -9 leaves its socket file behind: connecting is refused.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(tmp_path / control.SOCKET_NAME))
    proc = voiced("status", "--runtime-dir", str(tmp_path))
    assert proc.returncode == ctl.EXIT_NOT_RUNNING
    assert "no voiced daemon is running" in proc.stderr


def test_usage_errors_are_argparse_errors(tmp_path: Path) -> None:
    proc = voiced("ptt", "sideways", "--runtime-dir", str(tmp_path))
    assert proc.returncode == 2 and "invalid choice: 'sideways'" in proc.stderr
    proc = voiced("say", "--runtime-dir", str(tmp_path))
    assert proc.returncode == 2 and "TEXT" in proc.stderr


class Target:
    """A ControlTarget that records what it was asked (our own interface)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def status(self) -> dict[str, Any]:
        return {
            "state": "idle",
            "endpoint": "embedded",
            "session_age": 754.0,
            "connection_age": 154.0,
            "next_resume_in": 356.0,
            "next_rollover_in": 26.0,
            "tokens_used": 32768,
            "context_window": 131072,
            "turns": 7,
            "replies": 7,
            "resumes": 1,
            "rollovers": 0,
            "retries": 0,
            "last_error": None,
        }

    def say(self, text: str) -> None:
        self.calls.append(("say", text))

    def context(self, text: str) -> None:
        self.calls.append(("context", text))

    def instruct(self, text: str) -> None:
        raise RuntimeError("the session is shutting down")

    def ptt(self, start: bool) -> None:
        self.calls.append(("ptt", start))

    def new_session(self) -> None:
        self.calls.append(("new-session", None))


def with_control_server(tmp_path: Path, target: Target, body: Callable[[], None]) -> None:
    """Serve the real control protocol on tmp_path while ``body`` runs in a thread."""

    async def main() -> None:
        async with asyncio.timeout(60):
            server = control.ControlServer(target, tmp_path)
            await server.start()
            try:
                await asyncio.to_thread(body)
            finally:
                await server.stop()

    asyncio.run(main())


def test_commands_reach_the_daemon_and_report_what_it_did(tmp_path: Path) -> None:
    target = Target()
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    rd = ("--runtime-dir", str(tmp_path))

    def body() -> None:
        results["say"] = voiced("say", "what", "time", "is", "it?", *rd)
        results["context"] = voiced("context", "I am in the kitchen", *rd)
        results["ptt"] = voiced("ptt", "start", *rd)
        results["new"] = voiced("new-session", *rd)
        results["instruct"] = voiced("instruct", "Be brief.", *rd)
        results["status"] = voiced("status", *rd)
        results["json"] = voiced("status", "--json", *rd)

    with_control_server(tmp_path, target, body)
    assert target.calls == [
        ("say", "what time is it?"),
        ("context", "I am in the kitchen"),
        ("ptt", True),
        ("new-session", None),
    ]
    for name in ("say", "context", "ptt", "new", "status", "json"):
        assert results[name].returncode == 0, (name, results[name].stderr)
    assert "answer will be spoken" in results["say"].stdout
    # The daemon refused: exit 1 and its reason, no traceback.
    bad = results["instruct"]
    assert bad.returncode == 1
    assert "the daemon refused instruct" in bad.stderr and "shutting down" in bad.stderr
    assert "Traceback" not in bad.stderr
    # status: the human report (ages, bar) and the raw JSON.
    out = results["status"].stdout
    assert "state        idle" in out and "12m34s" in out and "32,768/131,072 tokens (25%)" in out
    assert json.loads(results["json"].stdout)["tokens_used"] == 32768


def serve_raw(path: Path, handler: Callable[[socket.socket], None]) -> threading.Thread:
    """An AF_UNIX server accepting one client and handing it to ``handler``."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)

    def run() -> None:
        with srv:
            conn, _ = srv.accept()
            with conn:
                handler(conn)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_a_daemon_that_hangs_up_or_never_answers_is_reported(tmp_path: Path) -> None:
    sock = tmp_path / control.SOCKET_NAME
    t = serve_raw(sock, lambda conn: conn.recv(1024))  # reads, closes without a word
    with pytest.raises(ctl.ControlClientError, match="closed the connection without an answer"):
        ctl.send(str(tmp_path), "status")
    t.join(5)
    os.unlink(sock)

    release = threading.Event()
    t = serve_raw(sock, lambda conn: release.wait(10))  # accepts, never answers
    try:
        with pytest.raises(ctl.ControlClientError, match=r"did not answer within 0.3 s") as err:
            ctl.send(str(tmp_path), "status", timeout=0.3)
        assert err.value.code == 1
    finally:
        release.set()
        t.join(5)


def test_runtime_dir_comes_from_the_daemons_config_by_default(tmp_path: Path) -> None:
    (tmp_path / "voiced.toml").write_text(f'[service]\nruntime_dir = "{tmp_path / "rd"}"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "status"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "VOICED_CONFIG": str(tmp_path / "voiced.toml")},
    )
    assert proc.returncode == ctl.EXIT_NOT_RUNNING
    assert str(tmp_path / "rd" / "control.sock") in proc.stderr
