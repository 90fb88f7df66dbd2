"""Where the send path's CPU goes: a py-spy profile of the voiced send-path child.

    python -m bench.profile [--seconds 200] [--json]

Runs :mod:`bench.sendpath` ``voiced`` (frames posted from a thread of their own, 20×
realtime, to a local Live server in this process) under ``py-spy record --gil`` (only
samples where a thread holds the GIL: Python work, not waiting), and sums the samples
by the part of the program each frame's innermost function of *ours or a library's*
belongs to. Needs py-spy (``pip install py-spy``); without it the result says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT

__all__ = ["profile_send_path"]

PARTS = [  # (label, path fragments of a frame's file), first match wins, innermost first
    (
        "the session core (daemon/session*.py, vocabulary.py, turns.py)",
        ("daemon/session", "daemon/vocabulary.py", "daemon/turns.py"),
    ),
    ("wire encoding (daemon/wire.py, base64, json)", ("daemon/wire.py", "base64.py", "json/")),
    ("the supervisor and inbox (daemon/runtime/supervisor.py)", ("daemon/runtime/supervisor.py",)),
    ("the connection adapter (daemon/runtime/connection.py)", ("daemon/runtime/connection.py",)),
    ("websockets", ("websockets/",)),
    ("asyncio's loop", ("asyncio/", "selectors.py")),
    (
        "the bench's mic thread and events (bench/, daemon/events.py)",
        ("bench/", "daemon/events.py"),
    ),
]


def _part(stack: list[str]) -> str:
    for frame in reversed(stack):
        for label, fragments in PARTS:
            if any(f in frame for f in fragments):
                return label
    return "other (samples with no Python frame: C code, thread hand-offs)"


def profile_send_path(seconds: float = 200.0) -> dict[str, Any]:
    from daemon.liveserver import LiveServerThread, ServerLimits

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {"profile": None, "profile_note": "py-spy is not installed"}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LiveServerThread(limits=ServerLimits(), voice="synthetic") as server,
    ):
        raw = Path(tmp) / "raw.txt"
        proc = subprocess.run(
            [
                spy,
                "record",
                "--gil",
                "-r",
                "1000",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--",
                sys.executable,
                "-m",
                "bench.sendpath",
                "voiced",
                "--url",
                server.url,
                "--seconds",
                str(seconds),
                "--speed",
                "20",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode or not raw.exists():
            return {"profile": None, "profile_note": f"py-spy failed: {proc.stderr[-500:]}"}
        parts: dict[str, int] = {}
        total = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            if any("importlib" in f for f in frames):
                continue  # start-up, outside the measured span
            n = int(count)
            total += n
            parts[_part(frames)] = parts.get(_part(frames), 0) + n
    share = {k: round(100 * v / total, 1) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])}
    return {
        "profile": share,
        "profile_samples": total,
        "profile_note": f"py-spy --gil, voiced send path, {seconds:g} audio s at 20×",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=200.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    r = profile_send_path(args.seconds)
    for part, pct in (r["profile"] or {}).items():
        print(f"{pct:5.1f}%  {part}")
    print(r["profile_note"])
    if args.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
