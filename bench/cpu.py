"""CPU of the send path: voiced vs the google-genai SDK vs a bare websockets floor.

One local Live server runs in this process (its own thread); each measurement is a
separate child process (:mod:`bench.sendpath`) so only the client's CPU is counted.
The three kinds run one after another inside each round, in a rotated order, and the
ratio is taken within each round (pair by pair), then the median over rounds.
"""

from __future__ import annotations

import statistics
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
    with LiveServerThread(limits=ServerLimits(), voice="synthetic") as server:
        for r in range(rounds):
            order = KINDS[r % 3:] + KINDS[:r % 3]
            got: dict[str, float] = {}
            for kind in order:
                out = run_child("sendpath", kind, "--url", server.url, "--seconds", str(seconds),
                                "--speed", str(speed), timeout=60 + 3 * seconds / speed)
                got[kind] = out["cpu_s_per_audio_min"]
                per_kind[kind].append(got[kind])
            ratios_sdk.append(got["voiced"] / got["sdk"])
            ratios_floor.append(got["voiced"] / got["floor"])
    med = {k: statistics.median(v) for k, v in per_kind.items()}
    return {
        "cpu_ratio_vs_sdk": round(statistics.median(ratios_sdk), 3),
        "cpu_ratio_vs_floor": round(statistics.median(ratios_floor), 3),
        "cpu_s_per_audio_min": {k: round(v, 4) for k, v in med.items()},
        "cpu_rounds": rounds, "cpu_audio_s_per_run": seconds, "cpu_speed": speed,
    }


if __name__ == "__main__":
    import json
    print(json.dumps(measure_cpu(20, 2)))
