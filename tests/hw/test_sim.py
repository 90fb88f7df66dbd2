"""Simulated hardware: the real Button/Led over mock pins, WAV mic paced, WAV speaker recording."""

from __future__ import annotations

import time
import wave

import numpy as np
import pytest

from daemon.errors import DeviceError
from daemon.events import (
    ButtonPressed,
    ButtonReleased,
    DeviceState,
    MicFrame,
    PlaybackDrained,
    PlaybackStarted,
)
from hw.mic import MicSettings
from hw.sim import SimMic, make_sim_hardware, read_wav
from hw.speaker import SpeakerSettings
from tests.hw.harness import Inbox, best_correlation, samples, tone


def write_wav(path, pcm: bytes, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def test_sim_soft_button_drives_the_real_button_and_led_shows(tmp_path):
    inbox = Inbox()
    hw = make_sim_hardware(inbox, speed=None)
    try:
        hw.soft_button.press()
        time.sleep(0.05)
        hw.soft_button.release()
        assert [type(e) for e in inbox.events] == [ButtonPressed, ButtonReleased]
        hw.led.show(frozenset({DeviceState.LISTENING}))
        time.sleep(0.05)
        assert hw.pin_factory.pin(25).state == 1.0
    finally:
        hw.close()
    assert hw.pin_factory.pin(25).states[-1].state == 0.0  # LED off on close


def test_sim_mic_paced_at_speed_and_fed_at_runtime(tmp_path):
    inbox = Inbox()
    path = tmp_path / "utt.wav"
    write_wav(path, tone(440, 48000, 0.5), 48000)
    mic = SimMic(MicSettings(), inbox, speed=4.0)
    mic.start()
    try:
        start = time.monotonic()
        mic.feed(path)  # a WAV at 48 kHz: resampled to 16 kHz
        assert mic.wait_heard(5)
        elapsed = time.monotonic() - start
        time.sleep(0.1)
    finally:
        mic.close()
    # 0.5 s of audio at 4x takes about 0.125 s; silence frames keep coming after it.
    assert 0.08 < elapsed < 0.5
    x = samples(b"".join(e.pcm for e in inbox.of(MicFrame)))
    assert len(x) > 8000
    spec = np.abs(np.fft.rfft(x[:8000]))
    assert abs(np.argmax(spec) * 2 - 440) <= 2


def test_sim_mic_as_fast_as_possible_posts_only_what_was_fed():
    inbox = Inbox()
    mic = SimMic(MicSettings(frame_ms=20), inbox, source=tone(300, 16000, 1.0), speed=None)
    mic.start()
    try:
        assert mic.wait_heard(2)
        time.sleep(0.05)
        assert mic.frames_posted == 50  # 1 s in 20 ms frames, no padding frames
        mic.feed(tone(300, 16000, 0.1))
        assert mic.wait_heard(2)
        time.sleep(0.05)
        assert mic.frames_posted == 55
    finally:
        mic.close()


def test_sim_speaker_records_the_reply_and_writes_the_wav(tmp_path, speech):
    inbox = Inbox()
    out = tmp_path / "spk.wav"
    hw = make_sim_hardware(inbox, speaker=SpeakerSettings(), speaker_path=out, speed=None)
    hw.speaker.start()
    try:
        hw.speaker.play(speech[24000])
        hw.speaker.end_of_reply()
        assert inbox.wait_for(lambda ev: any(isinstance(e, PlaybackDrained) for e in ev), 5)
    finally:
        hw.close()
    assert [type(e) for e in inbox.events] == [PlaybackStarted, PlaybackDrained]
    recorded, rate = read_wav(out)
    assert rate == 24000 and recorded == bytes(hw.speaker.recorded)
    corr, lag = best_correlation(samples(speech[24000]), samples(recorded))
    assert corr > 0.999 and lag == 0
    assert len(recorded) >= len(speech[24000]) + 24000 * 2 * 50 // 1000  # tail padding


def test_sim_read_wav_rejects_what_it_cannot_use(tmp_path):
    with pytest.raises(DeviceError, match="cannot read WAV"):
        read_wav(tmp_path / "missing.wav")
    path = tmp_path / "stereo.wav"
    stereo = np.stack([np.full(100, 7), np.full(100, -7)], axis=1).astype("<i2")
    write_wav(path, stereo.tobytes(), 8000, channels=2)
    pcm, rate = read_wav(path)
    assert rate == 8000 and set(np.frombuffer(pcm, "<i2")) == {7}  # first channel


def test_sim_pins_keep_a_bounded_history() -> None:
    """A simulated LED left running for hours must not grow memory (soak finding)."""
    from hw.sim import _PIN_HISTORY, mock_pin_factory

    factory = mock_pin_factory()
    try:
        pin = factory.pin(25)
        pin.function = "output"
        for i in range(3 * _PIN_HISTORY):
            pin.state = i % 2
        assert _PIN_HISTORY // 2 <= len(pin.states) <= _PIN_HISTORY
        assert pin.states[-1].state == (3 * _PIN_HISTORY - 1) % 2
        assert isinstance(pin.states[-3:], list)
    finally:
        factory.close()
