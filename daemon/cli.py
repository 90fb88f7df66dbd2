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
    "devices": ("hw.devices", "list audio devices (name, channels, rate) to pick in the config"),
    "run": ("daemon.app", "run the daemon (what the systemd service starts)"),
    "config": ("daemon.config_cmd", "print the effective configuration, secrets redacted"),
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
