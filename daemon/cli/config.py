"""``voiced config``: print the effective configuration (file, environment overrides and
defaults), secrets redacted. A configuration error is one line on stderr and exit 78,
the same as ``voiced run`` would give."""

from __future__ import annotations

import argparse
import os
import sys

from daemon.app import config
from daemon.errors import ConfigError
from daemon.runtime.service import EXIT_CONFIG

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"configuration file (default {config.DEFAULT_PATH}, or $VOICED_CONFIG)",
    )


def main(args: argparse.Namespace) -> int:
    try:
        cfg = config.load(args.config, os.environ)
    except ConfigError as exc:
        print(f"voiced: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    sys.stdout.write(config.to_toml(cfg))
    return 0
