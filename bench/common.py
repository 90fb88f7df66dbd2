"""Small shared helpers of the benchmarks: process figures, percentiles, child runs.

Pure helpers plus :func:`run_child`, which starts ``python -m bench.<module>`` and
returns the JSON object on its last stdout line (each child prints exactly one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Sequence

from testing import MODEL, ROOT

__all__ = [
    "MODEL",
    "ROOT",
    "rss_mb",
    "peak_rss_mb",
    "open_fds",
    "percentile",
    "run_child",
    "audio_frames",
    "emit",
]


FRAME_BYTES = 640  # 20 ms of 16 kHz s16le mono: what hw.mic posts


def _status(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB → MB
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_mb() -> float:
    """Resident memory of this process now, MB (VmRSS)."""
    return _status("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MB (VmHWM)."""
    return _status("VmHWM")


def open_fds() -> int:
    """File descriptors this process holds open."""
    return len(os.listdir("/proc/self/fd"))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), nearest-rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def audio_frames(seconds: float, seed: int = 7) -> list[bytes]:
    """``seconds`` of noise-like 16 kHz mono PCM in 20 ms frames (base64 cost does not
    depend on content; distinct frames make digests meaningful)."""
    import random

    rng = random.Random(seed)
    return [rng.randbytes(FRAME_BYTES) for _ in range(int(seconds * 50))]


def emit(result: dict[str, Any]) -> None:
    """Print a child's one result line."""
    print(json.dumps(result), flush=True)


def run_child(
    module: str, *args: str, timeout: float = 300.0, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``python -m bench.<module> args`` and return its last JSON line, plus
    ``spawned_at`` (``time.monotonic()`` just before the process was started)."""
    cmd = [sys.executable, "-m", f"bench.{module}", *args]
    spawned = time.monotonic()
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(
            f"bench child {' '.join(cmd[2:])} failed ({proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    out = json.loads(lines[-1])
    out["spawned_at"] = spawned
    return out
