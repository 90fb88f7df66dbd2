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
from tests.timing import scaled

DESIGNED_DROPS = {
    "it went unanswered on two connections",
    "the server refused its audio twice (1007)",
    "the model rejected it twice (RESPONSE_REJECTED)",
}
"""Why the core may give up on a question (README: the designed drops), as it says it."""


def _every_turn_answered_once_or_reported(r: dict) -> None:
    """Every turn answered once with exactly its audio, or ended by one of the core's
    designed, reported ends (a question dropped, a turn capped at max_turn_seconds, a turn
    asked without part of its audio), each counted by the core; nothing lost silently,
    nothing answered twice (an answer completed while the core closed its connection is
    taken, not asked again: tests/core/test_answered_once.py)."""
    assert r["turns_silently_lost"] == 0, (r["designed_ends"], r["not_answered_once"])
    assert r["answered_twice"] == 0, (r["answered_twice"], r["not_answered_once"])
    # Every drop is one of the designed causes, and the core's counter agrees with what
    # it said.
    assert set(r["drops_by_cause"]) <= DESIGNED_DROPS, r["drops_by_cause"]
    assert sum(r["drops_by_cause"].values()) == r["designed_ends"]["asks_dropped"], r


def _every_frame_accounted(r: dict) -> None:
    """The core's frame accounting balances (README): captured = sent + buffered +
    dropped, and it captured what the tap saw in turns unless it capped one."""
    c = r["core_frames"]
    assert c["frames_captured"] == c["frames_sent"] + c["frames_buffered"] + c["frames_dropped"], c
    if r["designed_ends"]["turns_capped"] == 0:
        # No turn was cut short by the core: it captured exactly the frames the tap did.
        assert c["frames_captured"] == r["frames_captured"], (c, r["frames_captured"])


def _no_state_left_behind(r: dict) -> None:
    assert r["exit_code"] == 0, r  # SIGTERM: the production shutdown path
    # Nothing grew between two settled, quiet moments an hour apart (each sample looks
    # until two looks 20 ms apart agree: a socket closing, a state save in its thread is
    # there for a moment; a leak in every look). What grew is named (fd targets, tasks).
    assert r["samples_not_quiet"] == 0, r["samples"]
    assert not r["fds_added"] and not r["tasks_added"], (r["fds_added"], r["tasks_added"])
    for what in ("fds", "tasks", "threads"):
        assert r[f"{what}_end"] <= r[f"{what}_start"], (what, r)


def _every_frame_of_the_day_went_through_the_tap(r: dict) -> None:
    # The mic posted at its real rate all day; every frame reached the inbox through
    # the tap (idle ones through the pre-roll ring).
    assert r["frames_posted"] >= r["hours"] * 3600 * 50 * 0.95, r
    assert r["frames_tapped"] == r["frames_posted"], r


def test_two_device_hours_with_the_mic_at_its_real_rate_lose_nothing_and_leak_nothing() -> None:
    # ×120 on an idle machine, proportionally slower on a busy one (tests/timing.py): the
    # production timeouts (a 15 s reply guard is 125 ms of wall time at ×120) must see the
    # same nominal time for the same progress, or a descheduled loop misses them and a
    # fault-free day reports drops (seen 3 of 3 with every core busy).
    r = run_soak(hours=2.05, scale=scaled(120.0))
    print(describe(r))
    # How many turns and switches fit depends on how fast the machine is: printed above,
    # only required to happen.
    assert r["turns"] > 0 and r["resumes"] + r["rollovers"] > 0, r
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
    _every_turn_answered_once_or_reported(r)
    _every_frame_accounted(r)
    # No faults: no turn may end short, every one answered with exactly its audio.
    assert r["turns_not_received_intact"] == r["turns_unanswered"] == 0, r["not_answered_once"]


@pytest.fixture(scope="module")
def chaos_day() -> dict:
    """One chaos day, read by the two tests below (it takes about a minute)."""
    r = run_soak(hours=1.6, scale=scaled(150.0), chaos=True)
    print(describe(r))
    return r


def test_a_chaos_day_answers_every_turn_once_or_reports_it(chaos_day: dict) -> None:
    r = chaos_day
    assert len(r["faults_injected"]) >= 3, r
    assert {name for name, _ in CHAOS} >= {n.split(" (failed")[0] for n in r["faults_injected"]}
    # A turn cut mid-answer on its second connection used to be taken for answered
    # (server tally [1, 0, 1, 0], nobody told): tests/core/test_answered_once.py.
    _every_turn_answered_once_or_reported(r)
    _every_frame_of_the_day_went_through_the_tap(r)
    _no_state_left_behind(r)


def test_a_chaos_day_loses_no_audio_silently(chaos_day: dict) -> None:
    """Frames of turns the core reported ending short are designed drops, not losses
    (the presses are exact: bench/soakchild.py SoakMic.press_for); every frame the core
    captured it sent, holds or counted as dropped."""
    _every_frame_accounted(chaos_day)
    # Turns the server never received intact are all designed ends the core reported
    # (the turn-level check above counts them with the unanswered ones).
    ends = chaos_day["designed_ends"]
    assert chaos_day["turns_not_received_intact"] <= ends["turns_ended_by_design"], (
        ends,
        chaos_day["not_answered_once"],
    )
