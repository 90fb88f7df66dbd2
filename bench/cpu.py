"""CPU of the send path: voiced vs the google-genai SDK vs a bare websockets floor.

One local Live server runs in this process (its own thread); each measurement is a
separate child process (:mod:`bench.sendpath`) so only the client's CPU is counted.
The three kinds run one after another inside each round, in a rotated order, and the
ratio is taken within each round (pair by pair), then the median over rounds.
"""

from __future__ import annotations

import statistics
import subprocess
from typing import Any

from bench.common import run_child
from daemon.liveserver import LiveServerThread, ServerLimits

__all__ = ["measure_cpu"]

KINDS = ("voiced", "sdk", "floor")


def measure_cpu(seconds: float, rounds: int, speed: float = 20.0) -> dict[str, Any]:
    """Stream ``seconds`` of audio per child, ``rounds`` rounds; return the figures."""
    per_kind: dict[str, list[float]] = {k: [] for k in KINDS}
    ratios_sdk: list[float] = []
    ratios_floor: list[float] = []
    failed: list[str] = []
    with LiveServerThread(limits=ServerLimits(), voice="synthetic") as server:
        for r in range(rounds):
            order = KINDS[r % 3 :] + KINDS[: r % 3]
            got: dict[str, float] = {}
            try:
                for kind in order:
                    out = run_child(
                        "sendpath",
                        kind,
                        "--url",
                        server.url,
                        "--seconds",
                        str(seconds),
                        "--speed",
                        str(speed),
                        timeout=60 + 3 * seconds / speed,
                    )
                    got[kind] = out["cpu_s_per_audio_min"]
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                # A child that hangs or fails (seen: the SDK child on a machine loaded to
                # 40) voids its round, which is counted and said, not the whole bench.
                failed.append(f"round {r}: {str(exc).splitlines()[0][:200]}")
                continue
            for kind, value in got.items():
                per_kind[kind].append(value)
            ratios_sdk.append(got["voiced"] / got["sdk"])
            ratios_floor.append(got["voiced"] / got["floor"])
    if not ratios_floor:
        raise RuntimeError(f"every CPU round failed: {failed}")
    med = {k: statistics.median(v) for k, v in per_kind.items()}
    return {
        "cpu_ratio_vs_sdk": round(statistics.median(ratios_sdk), 3),
        "cpu_ratio_vs_floor": round(statistics.median(ratios_floor), 3),
        "cpu_s_per_audio_min": {k: round(v, 4) for k, v in med.items()},
        "cpu_rounds": rounds - len(failed),
        "cpu_rounds_failed": failed,
        "cpu_audio_s_per_run": seconds,
        "cpu_speed": speed,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure_cpu(20, 2)))
