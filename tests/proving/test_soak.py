"""Soak, short mode: ``voiced run``'s own App living a couple of device hours (about a
minute of wall time) with the mic posting 50 frames per nominal second all day from its
own thread, production timeouts, the state keeper, control socket, STATUS and the
watchdog gate — and the same with the local server's fault modes injected at random
moments. Every turn answered exactly once with exactly its audio, or reported; open fds,
asyncio tasks and threads identical at two settled moments an hour apart; memory flat.
(``python -m bench.soak`` runs the full day, ``--chaos`` the chaos day.)

No timing is asserted: retries are printed, not counted against the daemon (on a busy
machine a 15 s setup timeout is 150 ms of wall time at ×100)."""

from __future__ import annotations

import pytest

from bench.soak import CHAOS, describe, run_soak


def _every_turn_arrived_and_was_answered_once(r: dict) -> None:
    """Last, after every other check: no audio lost, no turn answered twice (an answer
    completed while the core closed its connection is taken, not asked again:
    tests/core/test_answered_once.py)."""
    assert r["frames_lost"] == 0, (r["frames_lost"], r["not_answered_once"])
    assert r["answered_twice"] == 0, (r["answered_twice"], r["not_answered_once"])


def _no_state_left_behind(r: dict) -> None:
    assert r["exit_code"] == 0, r  # SIGTERM: the production shutdown path
    # Nothing grew between two settled moments an hour apart. A count can be one lower at
    # the end (seen: 6 asyncio tasks at the first sample, 5 at the last — a state save or
    # reconnect still in flight when the first one was taken); growth is what a leak is.
    for what in ("fds", "tasks", "threads"):
        assert r[f"{what}_end"] <= r[f"{what}_start"], (what, r)


def _every_frame_of_the_day_went_through_the_tap(r: dict) -> None:
    # The mic posted at its real rate all day; every frame reached the inbox through
    # the tap (idle ones through the pre-roll ring).
    assert r["frames_posted"] >= r["hours"] * 3600 * 50 * 0.95, r
    assert r["frames_tapped"] == r["frames_posted"], r


def test_two_device_hours_with_the_mic_at_its_real_rate_lose_nothing_and_leak_nothing() -> None:
    r = run_soak(hours=2.05, scale=120.0)
    print(describe(r))
    # How many turns and switches fit depends on how fast the machine is (a 15 s setup
    # timeout is 125 ms of wall time here): printed above, only required to happen.
    assert r["turns"] > 0 and r["resumes"] + r["rollovers"] > 0, r
    assert r["turns_unanswered_unreported"] == 0, r["not_answered_once"]
    _every_frame_of_the_day_went_through_the_tap(r)
    # The watchdog gate saw the loop and the mic moving all day: pings kept coming.
    assert r["watchdog_pings"] >= r["wall_s"] * 0.5, r
    assert r["status_updates"] > 0 and r["state_saves"] > 0, r
    _no_state_left_behind(r)
    # One nominal hour apart (~130 resumes and rollovers): live Python objects growing by
    # 1 kB per switch would be 0.13 MB, so the threshold is 0.1 MB; resident memory after
    # malloc_trim within 1 MB (the allocator's arenas move by a few hundred kB).
    assert r["py_heap_mb_end"] - r["py_heap_mb_start"] < 0.1, r
    assert r["rss_trimmed_mb_end"] - r["rss_trimmed_mb_start"] < 1.0, r
    _every_turn_arrived_and_was_answered_once(r)


# A known open defect, shown in every run (xfail when it strikes, xpass when it does not;
# see the session note of 2026-12-01): in about one chaos day in three a turn the server
# received and then dropped under an injected fault (server tally [1, 0, 1, 0]) is neither
# sent again nor reported by the core. Remove this mark with the fix.
@pytest.mark.xfail(strict=False, reason="open defect: a turn dropped by the server under an "
                   "injected fault is sometimes neither resent nor reported")
def test_a_chaos_day_answers_every_turn_once_or_reports_it() -> None:
    r = run_soak(hours=1.6, scale=150.0, chaos=True)
    print(describe(r))
    assert len(r["faults_injected"]) >= 3, r
    assert {name for name, _ in CHAOS} >= {n.split(" (failed")[0] for n in r["faults_injected"]}
    assert r["turns_unanswered_unreported"] == 0, r["not_answered_once"]
    _every_frame_of_the_day_went_through_the_tap(r)
    _no_state_left_behind(r)
    _every_turn_arrived_and_was_answered_once(r)
