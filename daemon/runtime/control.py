"""
The control socket: a Unix socket in the runtime directory that ``voiced status``,
``say``, ``context``, ``instruct``, ``ptt`` and ``new-session`` talk to.

Protocol: one JSON object per line each way. Request ``{"cmd": "say", "text": "…"}``;
reply ``{"ok": true, …}`` or ``{"ok": false, "error": "…"}``. The socket is created
with mode 0660 so only root and the configured group may use it; the daemon
never reads anything else from it.

The server side is given a :class:`ControlTarget` (the supervisor) and decides
nothing itself: it validates requests and forwards them.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Protocol

__all__ = ["SOCKET_NAME", "ControlTarget", "ControlServer", "COMMANDS"]

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
_MAX_LINE = 64 * 1024  # a request is a short command; anything longer is refused


class ControlTarget(Protocol):
    """What the control socket drives (the supervisor implements it)."""

    def status(self) -> Mapping[str, Any]: ...
    def say(self, text: str) -> None: ...
    def announce(self, text: str) -> None: ...
    def context(self, text: str) -> None: ...
    def instruct(self, text: str) -> None: ...
    def ptt(self, start: bool) -> None: ...
    def new_session(self) -> None: ...


# cmd -> (needs text?, help). The CLI builds its sub-commands from this table.
COMMANDS: dict[str, tuple[bool, str]] = {
    "status": (
        False,
        "what the daemon is doing: state, ages, next resume/rollover, tokens, counts",
    ),
    "say": (True, "ask a question by text; the answer is spoken"),
    "announce": (True, "say this text verbatim (through the model; on the device when offline)"),
    "context": (True, "add context to the conversation without asking for an answer"),
    "instruct": (True, "replace the system instruction mid-conversation"),
    "ptt": (False, "push-to-talk from the command line: start or stop"),
    "new-session": (False, "forget the conversation and start a new one"),
}


class ControlServer:
    """Serves the control protocol on ``directory/control.sock`` for *target*."""

    def __init__(
        self, target: ControlTarget, directory: str | os.PathLike[str], group: str | None = None
    ) -> None:
        self.target = target
        self.path = Path(directory) / SOCKET_NAME
        self.group = group
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a crash
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=_MAX_LINE
        )
        os.chmod(self.path, 0o660)
        if self.group:
            self._apply_group(self.group)
        log.info("control socket at %s", self.path)

    def _apply_group(self, group: str) -> None:
        """Give the socket to ``group`` — only when it is not already: under the unit
        (``Group=voiced``) the socket is born with that group, and a chown would be
        refused anyway (``SystemCallFilter=~@privileged`` takes in @chown: issue 14)."""
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            log.warning("control socket group %r not applied: no such group", group)
            return
        if os.stat(self.path).st_gid == gid:
            return
        try:
            os.chown(self.path, -1, gid)
        except OSError as exc:
            # Not fatal: root (and our own group) can still use it. Say why once.
            log.warning("control socket group %r not applied: %s", group, exc.strerror or exc)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await self._reply(writer, {"ok": False, "error": "request too long"})
                    return
                if not line:
                    return
                await self._reply(writer, self.dispatch(line))
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: Mapping[str, Any]) -> None:
        writer.write(json.dumps(reply, default=str).encode() + b"\n")
        await writer.drain()

    def dispatch(self, line: bytes) -> dict[str, Any]:
        """Validate one request line and forward it to the target."""
        try:
            req = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            return {"ok": False, "error": 'request must be an object with a "cmd" string'}
        cmd = req["cmd"]
        if cmd not in COMMANDS:
            return {"ok": False, "error": f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}"}
        needs_text, _ = COMMANDS[cmd]
        text = req.get("text")
        if needs_text and (not isinstance(text, str) or not text.strip()):
            return {"ok": False, "error": f"{cmd} needs non-empty text"}
        text = text if isinstance(text, str) else ""
        try:
            if cmd == "status":
                return {"ok": True, "status": dict(self.target.status())}
            if cmd == "say":
                self.target.say(text)
            elif cmd == "announce":
                self.target.announce(text)
            elif cmd == "context":
                self.target.context(text)
            elif cmd == "instruct":
                self.target.instruct(text)
            elif cmd == "ptt":
                action = req.get("action")
                if action not in ("start", "stop"):
                    return {"ok": False, "error": 'ptt needs "action": "start" or "stop"'}
                self.target.ptt(action == "start")
            elif cmd == "new-session":
                self.target.new_session()
        except Exception as exc:  # the daemon must outlive a bad request; say what happened
            log.exception("control command %s failed", cmd)
            return {"ok": False, "error": f"{cmd} failed: {exc}"}
        return {"ok": True}
