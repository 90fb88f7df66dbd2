"""
``voiced status | say | context | instruct | ptt | new-session``: talk to the running
daemon through its control socket (``request`` below).

One module serves the six sub-commands: daemon/cli/main.py gives each sub-command its own
parser and ``args.command`` says which one runs. Exit status: 0 done, 1 the daemon
refused or failed the request, 3 no daemon is running (like ``systemctl is-active``),
4 not allowed to use the socket.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Mapping

from daemon.runtime.control import SOCKET_NAME

__all__ = [
    "request",
    "format_report",
    "DEFAULT_RUNTIME_DIR",
    "EXIT_NOT_RUNNING",
    "EXIT_FORBIDDEN",
    "send",
    "add_arguments",
    "main",
]

DEFAULT_RUNTIME_DIR = "/run/voiced"
EXIT_NOT_RUNNING = 3
EXIT_FORBIDDEN = 4


class ControlClientError(Exception):
    """A request could not be delivered or answered; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def send(runtime_dir: str, cmd: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
    """One request to the daemon; its reply, or :class:`ControlClientError` saying why not."""
    path = Path(runtime_dir) / SOCKET_NAME
    try:
        reply = request(runtime_dir, cmd, timeout=timeout, **fields)
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControlClientError(
            f"no voiced daemon is running (no control socket answers at {path}); start it with "
            "`systemctl start voiced` or `voiced run`, or point --runtime-dir at its runtime "
            "directory",
            EXIT_NOT_RUNNING,
        ) from None
    except PermissionError:
        raise ControlClientError(
            f"not allowed to use {path}: run as root or join the daemon's control group "
            '(service.control_group, default "voiced")',
            EXIT_FORBIDDEN,
        ) from None
    except socket.timeout:
        raise ControlClientError(
            f"the daemon did not answer within {timeout:g} s ({path})"
        ) from None
    except OSError as exc:
        raise ControlClientError(
            f"cannot talk to the daemon at {path}: {exc.strerror or exc}"
        ) from None
    except ValueError:  # empty or non-JSON answer: the daemon went away mid-request
        raise ControlClientError(
            f"the daemon closed the connection without an answer ({path})"
        ) from None
    if not isinstance(reply, dict):
        raise ControlClientError(f"the daemon sent an unexpected answer: {reply!r}")
    if not reply.get("ok"):
        raise ControlClientError(
            f"the daemon refused {cmd}: {reply.get('error', 'no reason given')}"
        )
    return reply


def _configured_runtime_dir() -> str:
    """``[service] runtime_dir`` of the daemon's configuration, or the default when the
    file is missing, broken or not readable by us (/etc/voiced is group voiced only).

    Only that one key is read: loading the whole configuration would also read the
    key, and a user outside the group would get a PermissionError instead of the
    documented exit 4 (issue 14)."""
    from daemon.app import config as cfg

    return cfg.peek("service", "runtime_dir", DEFAULT_RUNTIME_DIR) or DEFAULT_RUNTIME_DIR


_DONE = {
    "say": "asked; the answer will be spoken",
    "context": "context added",
    "instruct": "system instruction replaced",
    "new-session": "starting a new conversation",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the control sub-command this parser is for (its name ends ``prog``)."""
    name = parser.prog.rsplit(" ", 1)[-1]
    parser.add_argument(
        "--runtime-dir",
        default=None,
        metavar="DIR",
        help="the daemon's runtime directory, where control.sock lives "
        "(default: [service] runtime_dir of /etc/voiced/voiced.toml, "
        f"else {DEFAULT_RUNTIME_DIR})",
    )
    if name == "status":
        parser.add_argument("--json", action="store_true", help="print the raw status as JSON")
    elif name in ("say", "context", "instruct"):
        parser.add_argument("text", nargs="+", metavar="TEXT", help="the text (words are joined)")
    elif name == "ptt":
        parser.add_argument(
            "action",
            choices=("start", "stop"),
            help="start or stop talking, as if the button were held",
        )


def main(args: argparse.Namespace) -> int:
    """Send the sub-command's request and print the result."""
    cmd = args.command
    fields: dict[str, Any] = {}
    if cmd in ("say", "context", "instruct"):
        fields["text"] = " ".join(args.text)
        if not fields["text"].strip():
            print(f"voiced {cmd}: TEXT must not be empty", file=sys.stderr)
            return 2
    elif cmd == "ptt":
        fields["action"] = args.action
    try:
        reply = send(args.runtime_dir or _configured_runtime_dir(), cmd, **fields)
    except ControlClientError as exc:
        print(f"voiced {cmd}: {exc}", file=sys.stderr)
        return exc.code
    if cmd == "status":
        status = reply.get("status", {})
        print(json.dumps(status, indent=2, default=str) if args.json else format_report(status))
    elif cmd == "ptt":
        print(f"push-to-talk {args.action}")
    else:
        print(_DONE.get(cmd, "done"))
    return 0


def request(
    directory: str | os.PathLike[str], cmd: str, timeout: float = 5.0, **fields: Any
) -> dict[str, Any]:
    """Send one request to a running daemon and return its reply (blocking; for the CLI)."""
    path = Path(directory) / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def _age(seconds: Any) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _bar(used: int, total: int, width: int = 30) -> str:
    frac = 0.0 if total <= 0 else min(1.0, used / total)
    filled = round(frac * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {used:,}/{total:,} tokens ({frac:.0%})"


def format_report(st: Mapping[str, Any]) -> str:
    """The human ``voiced status`` report from the daemon's status mapping."""
    lines = [
        f"state        {st.get('state', '?')}",
        f"endpoint     {st.get('endpoint', '?')}",
        f"session      age {_age(st.get('session_age'))}, "
        f"connection age {_age(st.get('connection_age'))}",
        f"next         resume in {_age(st.get('next_resume_in'))}, "
        f"rollover in {_age(st.get('next_rollover_in'))}",
        f"context      {_bar(int(st.get('tokens_used') or 0), int(st.get('context_window') or 0))}",
        "counts       "
        + ", ".join(
            f"{k} {st.get(k, 0)}" for k in ("turns", "replies", "resumes", "rollovers", "retries")
        ),
        "audio        "
        + ", ".join(
            f"{k.replace('frames_', '')} {st.get(k, 0)}"
            for k in ("frames_captured", "frames_sent", "frames_buffered", "frames_dropped")
        ),
        "asks         "
        + ", ".join(
            f"{label} {st.get(k, 0)}"
            for k, label in (
                ("asks", "asked"),
                ("asks_answered", "answered"),
                ("asks_interrupted", "cut"),
                ("asks_dropped", "dropped"),
                ("asks_waiting", "open"),
                ("phantom_replies", "phantoms"),
            )
        )
        + (
            f"; waiting for {st['waiting']} ({_age(st.get('wait_left'))} left)"
            if st.get("waiting")
            else ""
        ),
        f"devices      mic {st.get('mic', '?')}, speaker {st.get('speaker', '?')}"
        + (f", gpio {st['gpio']}" if st.get("gpio") else ""),
        f"last error   {st.get('last_error') or 'none'}",
    ]
    return "\n".join(lines)
