"""Soak, short mode: two nominal hours of device time (~15 s) with hundreds of
resumes and dozens of rollovers. Every turn answered exactly once with exactly its
audio; open fds, asyncio tasks and threads identical at start and end; memory flat.
(``python -m bench.soak`` runs the full day.)"""

from __future__ import annotations

from bench.soak import describe, run_soak
from tests.timing import scaled


def test_two_device_hours_lose_nothing_and_leak_nothing() -> None:
    # ×500 on an idle machine; the goAway window (25 nominal s) is then 50 wall ms, which a
    # busy machine misses (1011): the scale drops with the measured slowdown (tests/timing.py).
    r = run_soak(hours=2.0, scale=scaled(500.0))
    print(describe(r))
    assert r["turns"] >= 50
    assert r["resumes"] >= 100 and r["rollovers"] >= 15, r
    assert r["frames_lost"] == 0 and r["answered_twice"] == 0, r
    assert r["retries"] == 0, r  # every switch was planned, none was a failure
    assert (r["fds_start"], r["tasks_start"], r["threads_start"]) == \
        (r["fds_end"], r["tasks_end"], r["threads_end"]), r
    # One nominal hour apart: a leak of even 1 kB per resume would show as > 0.1 MB.
    assert r["rss_mb_end"] - r["rss_mb_start"] < 2.0, r
