"""daemon.health (watchdog gate, STATUS text)
and daemon.runtime.service's credentials and exit codes."""

from __future__ import annotations

import enum

import pytest

from daemon.errors import ConfigError, DeviceError
from daemon.health import STATUS_MAX, WatchdogGate, format_status
from daemon.runtime.service import EXIT_CONFIG, EXIT_SOFTWARE, exit_code_for

GATE = WatchdogGate(started_at=100.0, loop_limit=5.0, mic_limit=3.0)


def test_gate_pings_while_loop_and_mic_move():
    verdict = GATE.decide(now=200.0, last_loop_tick=199.9, last_mic_frame=199.98, mic_expected=True)
    assert verdict.ping and verdict.reason == "loop and mic moving"


def test_gate_gives_a_start_up_grace_before_the_first_tick_and_frame():
    assert GATE.decide(102.9, None, None, True).ping
    verdict = GATE.decide(103.1, 103.0, None, True)
    assert not verdict.ping and verdict.reason == "no mic frame for 3.1s"
    assert not GATE.decide(105.1, None, None, False).ping  # no tick at all: wedged


def test_gate_stops_when_the_supervisor_loop_stalls():
    verdict = GATE.decide(now=200.0, last_loop_tick=194.0, last_mic_frame=199.99, mic_expected=True)
    assert not verdict.ping and "supervisor loop stalled for 6.0s" == verdict.reason
    # A stalled loop is unhealthy even when the mic is lost.
    assert not GATE.decide(200.0, 194.0, None, False).ping


def test_gate_stops_when_mic_frames_stop_but_not_when_the_mic_is_reported_lost():
    assert not GATE.decide(200.0, 199.9, 196.5, True).ping
    verdict = GATE.decide(200.0, 199.9, 150.0, False)
    assert verdict.ping and "mic lost" in verdict.reason


class _State(enum.Enum):
    IDLE = "idle"


def test_format_status_full():
    text = format_status(
        {
            "state": _State.IDLE,
            "session_age": 723.9,
            "connection_age": 250,
            "next_rollover_in": 360,
            "tokens_used": 12_345,
            "token_window": 128_000,
            "last_error": "1011 Deadline expired before operation could complete.",
        }
    )
    assert text == (
        "idle; session 12m03s; connection 4m10s; rollover in 6m00s; "
        "tokens 12.3k/128.0k; last error: 1011 Deadline expired before operation "
        "could complete."
    )


@pytest.mark.parametrize(
    "stats,expected",
    [
        ({}, "starting"),
        ({"state": "offline", "next_retry_in": 8.2}, "offline; retry in 8s"),
        (
            {"state": "connecting", "session_age": 7300, "next_resume_in": 0.4},
            "connecting; session 2h01m; resume in 0s",
        ),
        ({"state": "idle", "tokens_used": 999}, "idle; tokens 999"),
        (
            {"state": "idle", "tokens_used": 2_500_000, "token_window": 32_000},
            "idle; tokens 2.5M/32.0k",
        ),
        # malformed values are left out, not crashed on
        (
            {
                "state": "idle",
                "session_age": "soon",
                "connection_age": float("nan"),
                "tokens_used": True,
                "last_error": None,
            },
            "idle",
        ),
        (
            {"state": "error", "last_error": "line one\nline two"},
            "error; last error: line one line two",
        ),
    ],
)
def test_format_status_cases(stats, expected):
    assert format_status(stats) == expected


def test_format_status_is_bounded():
    text = format_status({"state": "error", "last_error": "x" * 1000})
    assert len(text) == STATUS_MAX and text.endswith("…")


def test_exit_codes():
    assert EXIT_CONFIG == 78
    assert exit_code_for(ConfigError("audio.mic", "USB PnP", "no such device")) == EXIT_CONFIG
    assert exit_code_for(DeviceError("mic gone")) == EXIT_SOFTWARE
    # hw start(): no device matches the configured name and no fallback
    assert exit_code_for(DeviceError("no mic matches 'USB'"), starting=True) == EXIT_CONFIG
    assert exit_code_for(OSError("network"), starting=True) == EXIT_SOFTWARE
    assert exit_code_for(RuntimeError()) == EXIT_SOFTWARE
