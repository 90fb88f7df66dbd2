"""Control socket: real AF_UNIX sockets, the blocking CLI client against the asyncio server."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

from daemon.cli import ctl
from daemon.runtime import control


class Recorder:
    """A ControlTarget that records what it was asked (our own interface, not a library)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def status(self) -> dict[str, Any]:
        return {"state": "idle", "tokens_used": 1200, "context_window": 131072, "resumes": 3}

    def say(self, text: str) -> None:
        self.calls.append(("say", text))

    def context(self, text: str) -> None:
        self.calls.append(("context", text))

    def instruct(self, text: str) -> None:
        self.calls.append(("instruct", text))

    def ptt(self, start: bool) -> None:
        self.calls.append(("ptt", start))

    def new_session(self) -> None:
        raise RuntimeError("no connection yet")


def run_with_server(tmp_path: Path, body) -> Recorder:
    target = Recorder()

    async def main() -> None:
        async with asyncio.timeout(10):
            server = control.ControlServer(target, tmp_path)
            await server.start()
            try:
                await asyncio.to_thread(body, server)
            finally:
                await server.stop()
            assert not server.path.exists(), "the socket file is removed on stop"

    asyncio.run(main())
    return target


def test_commands_reach_the_target_in_order(tmp_path: Path) -> None:
    replies = []

    def body(server: control.ControlServer) -> None:
        replies.append(ctl.request(tmp_path, "say", text="what time is it?"))
        replies.append(ctl.request(tmp_path, "context", text="I am in the kitchen."))
        replies.append(ctl.request(tmp_path, "instruct", text="Answer in French."))
        replies.append(ctl.request(tmp_path, "ptt", action="start"))
        replies.append(ctl.request(tmp_path, "ptt", action="stop"))

    target = run_with_server(tmp_path, body)
    assert replies == [{"ok": True}] * 5
    assert target.calls == [
        ("say", "what time is it?"),
        ("context", "I am in the kitchen."),
        ("instruct", "Answer in French."),
        ("ptt", True),
        ("ptt", False),
    ]


def test_status_and_its_human_format(tmp_path: Path) -> None:
    got = {}

    def body(server: control.ControlServer) -> None:
        got.update(ctl.request(tmp_path, "status"))

    run_with_server(tmp_path, body)
    assert got["ok"] is True and got["status"]["resumes"] == 3
    text = ctl.format_report(got["status"])
    assert "state        idle" in text
    assert "1,200/131,072 tokens (1%)" in text
    assert "resumes 3" in text


def test_bad_requests_get_clear_errors_and_the_server_survives(tmp_path: Path) -> None:
    replies = []

    def body(server: control.ControlServer) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(server.path))
            for line in (
                b"not json\n",
                b'{"cmd": 3}\n',
                b'{"cmd": "fly"}\n',
                b'{"cmd": "say"}\n',
                b'{"cmd": "ptt", "action": "maybe"}\n',
                b'{"cmd": "new-session"}\n',
            ):
                s.sendall(line)
                replies.append(json.loads(s.makefile().readline()))
        replies.append(ctl.request(tmp_path, "say", text="still there?"))

    target = run_with_server(tmp_path, body)
    errors = [r.get("error", "") for r in replies[:-1]]
    assert errors[0] == "request is not JSON"
    assert "cmd" in errors[1]
    assert "unknown command 'fly'" in errors[2]
    assert errors[3] == "say needs non-empty text"
    assert "start" in errors[4] and "stop" in errors[4]
    assert errors[5] == "new-session failed: no connection yet"
    assert replies[-1] == {"ok": True} and target.calls == [("say", "still there?")]


def test_socket_is_group_only_and_a_stale_one_is_replaced(tmp_path: Path) -> None:
    stale = tmp_path / control.SOCKET_NAME
    stale.write_text("left over by a crash")
    modes = []

    def body(server: control.ControlServer) -> None:
        modes.append(stat.S_IMODE(os.stat(server.path).st_mode))
        modes.append(stat.S_ISSOCK(os.stat(server.path).st_mode))

    run_with_server(tmp_path, body)
    assert modes == [0o660, True]
