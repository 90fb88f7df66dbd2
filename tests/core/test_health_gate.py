"""When a lost audio device stops the watchdog pings (daemon/health.py; issue 14).

Pure decisions with numbers for time; the devices are the real ``hw.pastream.LostDevice``
records the PortAudio host keeps (tests/hw/test_hotplug.py shows their attempts advance).
"""

from __future__ import annotations

from daemon.health import WatchdogGate, format_status
from hw.pastream import LostDevice


def lost(since: float, last_attempt: float, retry_max: float = 5.0) -> LostDevice:
    return LostDevice("mic", "USB Mic", "unplugged", since, last_attempt, 3, retry_max)


def decide(gate: WatchdogGate, now: float, *devices: LostDevice):
    return gate.decide(
        now, last_loop_tick=now - 0.1, last_mic_frame=None, mic_expected=False, lost_devices=devices
    )


def test_a_lost_mic_being_retried_keeps_the_pings():
    gate = WatchdogGate(started_at=0.0)
    verdict = decide(gate, 100.0, lost(since=40.0, last_attempt=96.0))
    assert verdict.ping and "reopening mic 'USB Mic'" in verdict.reason


def test_a_stuck_retry_loop_stops_the_pings():
    gate = WatchdogGate(started_at=0.0, retry_wedge_after=20.0)
    assert decide(gate, 100.0, lost(since=40.0, last_attempt=81.0)).ping
    verdict = decide(gate, 100.0, lost(since=40.0, last_attempt=79.0))
    assert not verdict.ping and "stuck (no attempt for 21s)" in verdict.reason
    # A long configured backoff is not mistaken for a wedge: three delays of slack.
    assert decide(gate, 100.0, lost(since=0.0, last_attempt=79.0, retry_max=10.0)).ping


def test_a_device_missing_for_ten_minutes_gets_one_restart():
    gate = WatchdogGate(started_at=0.0)
    assert decide(gate, 640.0, lost(since=41.0, last_attempt=639.0)).ping
    verdict = decide(gate, 640.0, lost(since=39.0, last_attempt=639.0))
    assert not verdict.ping and "missing for 10m01s" in verdict.reason
    assert decide(
        WatchdogGate(started_at=0.0, lost_restart_after=None),
        9999.0,
        lost(since=0.0, last_attempt=9998.0),
    ).ping


def test_the_loop_stall_still_wins_and_no_devices_keeps_the_old_rules():
    gate = WatchdogGate(started_at=0.0)
    stalled = gate.decide(100.0, 90.0, None, False, [lost(40.0, 99.0)])
    assert not stalled.ping and "loop stalled" in stalled.reason
    assert gate.decide(100.0, 99.9, None, False).ping  # mic lost, no facts: healthy
    assert not gate.decide(100.0, 99.9, 90.0, True).ping  # mic open but silent: wedge


def test_status_names_a_missing_device_and_for_how_long():
    text = format_status(
        {
            "state": "error",
            "session_age": 30.0,
            "devices_missing": [{"kind": "mic", "name": "USB Mic", "seconds": 250.0}],
        }
    )
    assert text == "error; mic 'USB Mic' missing 4m10s; session 30s"
    assert format_status({"state": "idle", "devices_missing": []}) == "idle"
