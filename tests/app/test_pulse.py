"""The watchdog's pulse (daemon/app/pulse.py), in-process: a lost mic keeps the pings, a
silent one stops them."""

from __future__ import annotations

from daemon.app.pulse import Pulse
from daemon.events import DeviceLost, DeviceRestored, MicFrame
from daemon.health import WatchdogGate
from daemon.runtime.supervisor import Heartbeat


def test_pulse_a_lost_mic_keeps_pings_a_silent_one_stops_them() -> None:
    hb = Heartbeat(last_iteration=100.0, last_mic_frame=90.0)
    clock = [100.0]
    pulse = Pulse(hb, clock=lambda: clock[0])
    posted: list[object] = []
    post = pulse.wrap(posted.append)
    gate = WatchdogGate(started_at=80.0)
    verdict = gate.decide(100.0, pulse.last_loop_tick, pulse.last_mic_frame, pulse.mic_expected)
    assert not verdict.ping and "no mic frame" in verdict.reason  # 10 s without a frame
    post(DeviceLost("mic", "vmic", "unplugged"))
    assert posted and not pulse.mic_expected
    assert gate.decide(100.0, pulse.last_loop_tick, pulse.last_mic_frame, False).ping
    post(MicFrame(b"\0\0"))  # other events pass through untouched
    post(DeviceLost("speaker", "vspk", "gone"))
    assert not pulse.mic_expected
    clock[0] = 120.0
    post(DeviceRestored("mic", "vmic"))
    assert pulse.mic_expected and pulse.last_mic_frame == 120.0  # a fresh grace period
    assert len(posted) == 4


def test_pulse_without_a_supervisor_yet_reports_nothing() -> None:
    pulse = Pulse()
    assert pulse.last_loop_tick is None and pulse.last_mic_frame is None
