"""
``voiced status | say | context | instruct | ptt | new-session``: talk to the running
daemon through its control socket (daemon/runtime/control.py ``request``).

One module serves the six sub-commands: daemon/cli/main.py gives each sub-command its own
parser and ``args.command`` says which one runs. Exit status: 0 done, 1 the daemon
refused or failed the request, 3 no daemon is running (like ``systemctl is-active``),
4 not allowed to use the socket.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any

from daemon.runtime.control import SOCKET_NAME, format_report, request

__all__ = ["DEFAULT_RUNTIME_DIR", "EXIT_NOT_RUNNING", "EXIT_FORBIDDEN", "send", "add_arguments",
           "main"]

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
            "directory", EXIT_NOT_RUNNING) from None
    except PermissionError:
        raise ControlClientError(
            f"not allowed to use {path}: run as root or join the daemon's control group "
            "(service.control_group, default \"voiced\")", EXIT_FORBIDDEN) from None
    except socket.timeout:
        raise ControlClientError(f"the daemon did not answer within {timeout:g} s ({path})") from None
    except OSError as exc:
        raise ControlClientError(f"cannot talk to the daemon at {path}: {exc.strerror or exc}") from None
    except ValueError:  # empty or non-JSON answer: the daemon went away mid-request
        raise ControlClientError(f"the daemon closed the connection without an answer ({path})") from None
    if not isinstance(reply, dict):
        raise ControlClientError(f"the daemon sent an unexpected answer: {reply!r}")
    if not reply.get("ok"):
        raise ControlClientError(f"the daemon refused {cmd}: {reply.get('error', 'no reason given')}")
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
    parser.add_argument("--runtime-dir", default=None, metavar="DIR",
                        help="the daemon's runtime directory, where control.sock lives "
                             "(default: [service] runtime_dir of /etc/voiced/voiced.toml, "
                             f"else {DEFAULT_RUNTIME_DIR})")
    if name == "status":
        parser.add_argument("--json", action="store_true", help="print the raw status as JSON")
    elif name in ("say", "context", "instruct"):
        parser.add_argument("text", nargs="+", metavar="TEXT", help="the text (words are joined)")
    elif name == "ptt":
        parser.add_argument("action", choices=("start", "stop"),
                            help="start or stop talking, as if the button were held")


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
