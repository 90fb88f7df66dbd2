"""Figures, not assertions on time: the cost of the core's hot path (one mic frame)."""

from __future__ import annotations

import time

from daemon.events import ButtonPressed, ButtonReleased, MicFrame
from daemon.session import SendFrame
from tests.core.harness import frame, live


def test_bench_core_cost_per_mic_frame() -> None:
    h = live()
    pcm = [frame(i) for i in range(5000)]
    s = h.session
    t0 = time.perf_counter()
    for p in pcm:
        s.handle(MicFrame(p), h.now)
    idle = (time.perf_counter() - t0) / len(pcm)
    s.handle(ButtonPressed(), h.now)
    sent = 0
    t0 = time.perf_counter()
    for p in pcm:
        sent += sum(isinstance(e, SendFrame) for e in s.handle(MicFrame(p), h.now))
    talking = (time.perf_counter() - t0) / len(pcm)
    s.handle(ButtonReleased(100.0), h.now)
    assert sent == len(pcm)
    print(
        f"\ncore per 20 ms mic frame: idle (pre-roll only) {idle * 1e6:.1f} µs, "
        f"talking (encode + send effect) {talking * 1e6:.1f} µs "
        f"= {talking / 0.02 * 100:.2f}% of one core in real time"
    )
