"""make_hardware: the same bundle for "pi" (real PortAudio on PulseAudio, mock pins) and "sim"."""

from __future__ import annotations

import pytest

from daemon.errors import ConfigError
from daemon.events import ButtonPressed, ButtonReleased, MicFrame, PlaybackDrained
from hw.factory import make_hardware, make_pi_hardware
from hw.mic import MicSettings
from hw.sim import mock_pin_factory
from hw.speaker import SpeakerSettings
from tests.hw.harness import Inbox, tone


def test_factory_pi_bundle_runs_on_real_portaudio(pulse):
    inbox = Inbox()
    factory = mock_pin_factory()
    hw = make_pi_hardware(
        inbox,
        mic=MicSettings(device="vmic"),
        speaker=SpeakerSettings(device="vspk"),
        pin_factory=factory,
    )
    hw.start()
    try:
        assert inbox.wait_for(lambda ev: len([e for e in ev if isinstance(e, MicFrame)]) > 5, 3)
        factory.pin(23).drive_low()
        factory.pin(23).drive_high()
        hw.speaker.play(tone(500, 24000, 0.2))
        hw.speaker.end_of_reply()
        assert inbox.wait_for(lambda ev: any(isinstance(e, PlaybackDrained) for e in ev), 5)
        assert hw.soft_button is None
    finally:
        hw.close()
        factory.close()
    assert [type(e) for e in inbox.events if isinstance(e, (ButtonPressed, ButtonReleased))] == [
        ButtonPressed,
        ButtonReleased,
    ]
    assert not hw.mic.is_open and not hw.speaker.is_playing
    hw.close()  # idempotent


def test_factory_sim_bundle_has_a_soft_button():
    inbox = Inbox()
    hw = make_hardware("sim", inbox, sim_speed=None)
    hw.start()
    try:
        hw.soft_button.press()
        hw.soft_button.release()  # inside the debounce lock-out: released when it ends
        assert inbox.wait_for(lambda ev: len(ev) == 2, 1.0)
        assert [type(e) for e in inbox.events] == [ButtonPressed, ButtonReleased]
    finally:
        hw.close()
    assert not hw.mic.is_open


def test_factory_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="service.hw"):
        make_hardware("arduino", Inbox())  # type: ignore[arg-type]
