"""The fault matrix (bench/faults.py), asserted: recover with 0 frames lost, or stop cleanly.

Every recoverable fault hits the middle of a push-to-talk turn on the real daemon
(Supervisor, Session, Connection) with the real LED and button on gpiozero mock pins;
the local Live server's per-turn sha256 digest must equal the captured audio, the turn
must be answered exactly once, the LED must be back to IDLE and the retries bounded.
Fatal faults must end in FAILED with the LED showing ERROR and no retry at all.
"""

from __future__ import annotations

import pytest

from bench.faults import FAULTS, FaultResult, run_fault

RECOVERABLE = [n for n, (_, expect, _) in FAULTS.items() if expect == "recover"]
FATAL = [n for n, (_, expect, _) in FAULTS.items() if expect == "stop"]
RESTART = [n for n, (_, expect, _) in FAULTS.items() if expect == "restart"]


def test_the_matrix_has_at_least_15_faults() -> None:
    assert len(FAULTS) >= 15


@pytest.mark.parametrize("name", RECOVERABLE)
def test_fault_is_survived_without_losing_a_frame(name: str) -> None:
    r = run_fault(name)
    print(r)
    assert r.outcome == "recovered", r
    assert r.answered == 1, f"the turn hit by {name} was answered {r.answered} times"
    assert r.frames_lost == 0, r
    assert r.led == "idle", r
    assert r.retries <= 3 and r.connections <= 3, f"unbounded retries: {r}"
    check_specifics(r)


@pytest.mark.parametrize("name", FATAL)
def test_fatal_fault_stops_cleanly_without_retrying(name: str) -> None:
    r = run_fault(name)
    print(r)
    assert r.outcome == "stopped cleanly", r
    assert r.led == "error", r
    assert r.retries == 0 and r.connections == 0, r
    assert r.detail.startswith(name[-4:]), r.detail  # the server's code and reason, verbatim


@pytest.mark.parametrize("name", RESTART)
def test_process_stopped_or_killed_mid_turn_restarts_into_the_same_session(name: str) -> None:
    r = run_fault(name)
    print(r)
    x = r.extra
    assert r.outcome == "restarted", r
    assert x["resumed_same_session"] == 1, r
    if name == "sigterm_mid_turn":
        assert x["exit_code"] == 0 and x["stopping_noted"] == 1, r
        assert x["close_code"] == 1000, r         # we closed the connection, cleanly
    else:
        assert x["exit_code"] == -9 and x["close_code"] == 1006, r
    assert r.answered == 1 and r.frames_captured > 0 and r.frames_lost == 0, r
    assert r.led == "idle" and r.retries == 0 and r.connections == 1, r


def check_specifics(r: FaultResult) -> None:
    """What each fault must show beyond surviving it."""
    x = r.extra
    if r.name in ("close_1000", "close_1006", "close_1011", "huge_frame"):
        assert r.retries == 1 and r.connections == 1, r      # one reconnect, a resume
    if r.name == "goaway_silence":
        assert r.retries == 0 and r.connections == 1, r      # a timer-driven switch, no failure
    if r.name == "setup_never":
        assert "setupComplete" in r.detail, r
    if r.name == "handle_refused":
        assert x["sessions"] == 2, r                          # went fresh, with context
    if r.name == "tcp_stall":
        assert "stall" in r.detail or "1011" in r.detail, r
    if r.name in ("malformed_frame", "unknown_frame", "oversized_frame", "mic_overflow_storm",
                  "mic_vanishes", "speaker_underrun"):
        assert r.retries == 0 and r.connections == 0, r      # nothing to reconnect for
    if r.name == "malformed_frame":
        assert x["bad_frames"] == 1, r
    if r.name == "mic_overflow_storm":
        assert x["mic_overflows"] == 10_000, r
    if r.name == "mic_vanishes":
        assert r.led_during == "error", r
    if r.name == "speaker_underrun":
        assert x["underruns"] > 0 and x["reply_bytes_played"] > 0, r
    if r.name == "button_bounce_storm":
        assert x["activity_starts"] == x["activity_ends"] == 1, r
        assert x["button_active"] == 0, r
