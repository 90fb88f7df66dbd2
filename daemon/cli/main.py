"""The ``voiced`` command line: one sub-command per job.

Each sub-command lives in its own module, which provides ``add_arguments(parser)``
and ``main(args) -> int``. This file only lists them, so ``voiced --help`` shows
everything and each job's heavy imports happen only when that job runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# name -> (module, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "live-server": ("daemon.liveserver.cli", "run the local Live API server (no key, no network)"),
    "run": ("daemon.app.run", "run the daemon (what the systemd service starts)"),
    "demo": (
        "daemon.cli.demo.demo",
        "the whole device on this machine: simulated hardware, local server, "
        "a scripted conversation across goAway, resume and rollover",
    ),
    "config": ("daemon.cli.config", "print the effective configuration, secrets redacted"),
    "devices": (
        "daemon.cli.devices",
        "list audio devices (name, channels, rate) and the GPIO pins in use",
    ),
    "check": (
        "daemon.cli.check",
        "try each part once: mic meter, speaker tone, LED walk, button, connection and key",
    ),
    "status": ("daemon.cli.ctl", "ask the running daemon what it is doing"),
    "say": ("daemon.cli.ctl", "ask the running daemon a question by text; the answer is spoken"),
    "context": ("daemon.cli.ctl", "tell the running daemon something to know, without an answer"),
    "instruct": ("daemon.cli.ctl", "replace the running daemon's system instruction"),
    "ptt": ("daemon.cli.ctl", "push-to-talk from the command line: start or stop"),
    "new-session": ("daemon.cli.ctl", "make the running daemon forget the conversation"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voiced",
        description="Push-to-talk voice device for the Gemini Live API.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args._module.main(args) or 0)
