"""Mic through a private PulseAudio: right frequency, no aliasing, speech kept, recovery."""

from __future__ import annotations

import time

import numpy as np
import pytest

from daemon.errors import ConfigError, DeviceError
from daemon.events import DeviceLost, DeviceRestored, MicFrame, MicOverflow
from hw.mic import CaptureFramer, Mic, MicSettings
from tests.hw.harness import Inbox, best_correlation, loud_span, samples, spectrum_db, tone
from tests.timing import wait_until


def _pcm(inbox: Inbox) -> bytes:
    return b"".join(e.pcm for e in inbox.of(MicFrame))


def _capture(pulse, settings: MicSettings, pcm: bytes, rate: int) -> tuple[Mic, Inbox]:
    """Capture ``pcm`` played into the virtual mic, with silence around it. Waits for
    frames, not for fixed times: on a busy machine the stream may start, and the capture
    catch up with the player, later than on an idle one."""
    inbox = Inbox()
    mic = Mic(settings, inbox)
    mic.start()
    frames = lambda: len(inbox.of(MicFrame))  # noqa: E731
    try:
        wait_until(lambda: frames() >= 10, 20, "the mic stream running (200 ms captured)")
        pulse.play_into_mic(pcm, rate).wait(timeout=20)
        # The player has handed its audio to the server; the capture may lag behind it by
        # the server's buffering (250 ms) plus scheduling: wait for that much more.
        played = frames() + len(pcm) // 2 * 50 // rate + 25
        wait_until(lambda: frames() >= played, 20, "the capture to catch up with the player")
    finally:
        mic.close()
    return mic, inbox


def test_mic_tone_at_48k_comes_out_16k_right_frequency_no_aliasing(pulse):
    # 440 Hz plus a 12 kHz tone that a naive x[::3] would fold onto 4 kHz.
    mix = np.frombuffer(tone(440, 48000, 1.5, 0.4), "<i2").astype(np.int32) + np.frombuffer(
        tone(12000, 48000, 1.5, 0.4), "<i2"
    )
    # device_rate=48000: the pulse plugin would take 16 kHz and resample for us;
    # a real USB mic would not, so force the native-rate path through our resampler.
    mic, inbox = _capture(
        pulse, MicSettings(device="VMIC", device_rate=48000), mix.astype("<i2").tobytes(), 48000
    )
    assert mic.device_name == "vmic" and mic.device_rate == 48000
    frames = inbox.of(MicFrame)
    assert frames and all(len(f.pcm) == 640 for f in frames)  # 20 ms at 16 kHz
    x = samples(_pcm(inbox))
    start, end = loud_span(x, 0.05)
    assert (end - start) / 16000 == pytest.approx(1.5, abs=0.05)
    freqs, db = spectrum_db(x[start + 1600 : end - 1600], 16000)
    assert abs(freqs[np.argmax(db)] - 440) < 2
    near_alias = np.abs(freqs - 4000) < 50
    assert db[near_alias].max() < -70  # 12 kHz did not come back as 4 kHz


def test_mic_speech_comes_out_correlated(pulse, speech):
    mic, inbox = _capture(
        pulse, MicSettings(device="vmic", device_rate=48000), speech[48000], 48000
    )
    heard = samples(_pcm(inbox))
    ref = samples(speech[16000])  # sox's 16 kHz: an independent resampler
    corr, lag = best_correlation(ref, heard)
    assert corr > 0.95, corr
    assert lag >= 0 and len(heard) >= lag + len(ref)  # the whole utterance is there


def test_mic_opens_16k_when_the_device_takes_it(pulse):
    mic, inbox = _capture(pulse, MicSettings(device="vmic"), tone(1000, 48000, 0.5), 48000)
    assert mic.device_rate == 16000
    x = samples(_pcm(inbox))
    freqs, db = spectrum_db(x[slice(*loud_span(x, 0.05))], 16000)
    assert abs(freqs[np.argmax(db)] - 1000) < 4


def test_mic_recovers_when_the_sound_server_restarts_mid_stream(pulse):
    inbox = Inbox()
    mic = Mic(
        MicSettings(
            device="vmic", device_rate=48000, stall_timeout=0.5, reopen_initial=0.1, reopen_max=0.5
        ),
        inbox,
    )
    mic.start()
    try:
        assert inbox.wait_for(lambda ev: len(ev) > 10, 3)
        pulse.stop_server()  # the device vanishes under an open stream
        assert inbox.wait_for(lambda ev: any(isinstance(e, DeviceLost) for e in ev), 3)
        lost = inbox.of(DeviceLost)[0]
        assert lost.kind == "mic" and lost.name == "vmic" and lost.reason
        time.sleep(0.5)  # a few failed reopen attempts while it is gone
        pulse.start_server()
        assert inbox.wait_for(lambda ev: any(isinstance(e, DeviceRestored) for e in ev), 15)
        assert inbox.of(DeviceRestored)[0].name == "vmic" and mic.is_open
        # Same process, same Mic object: it hears again.
        mark = len(inbox.events)
        pulse.play_into_mic(tone(440, 48000, 0.6, 0.5), 48000).wait(timeout=10)
        time.sleep(0.3)
        after = b"".join(e.pcm for e in inbox.events[mark:] if isinstance(e, MicFrame))
        x = samples(after)
        freqs, db = spectrum_db(x[slice(*loud_span(x, 0.05))], 16000)
        assert abs(freqs[np.argmax(db)] - 440) < 4
        assert len(inbox.of(DeviceLost)) == 1  # one loss, not a storm
    finally:
        mic.close()


def test_mic_overflow_is_counted_not_fatal():
    # PulseAudio's ALSA plugin never reports input overflow (a 1.5 s stall of the
    # callback did not raise the flag here), so drive the stream callback directly
    # with PortAudio's real flag value.
    import pyaudio

    inbox = Inbox()
    mic = Mic(MicSettings(), inbox)
    for _ in range(3):
        assert mic.on_audio(bytes(640), 320, {}, pyaudio.paInputOverflow) == (
            None,
            pyaudio.paContinue,
        )
    mic.on_audio(bytes(640), 320, {}, 0)
    assert [e.count for e in inbox.of(MicOverflow)] == [1, 2, 3] and mic.overflows == 3
    assert len(inbox.of(MicFrame)) == 4  # the audio around each overflow still flows


def test_mic_unknown_device_is_a_clear_error_without_fallback(pulse):
    mic = Mic(
        MicSettings(device="no such mic", fallback_to_default=False, wait_for_device=False), Inbox()
    )
    with pytest.raises(DeviceError, match="no such mic.*vmic"):
        mic.start()
    assert not mic.is_open


def test_mic_missing_at_start_is_waited_for(pulse):
    """A sound source not up yet at boot: DeviceLost, then DeviceRestored when it appears."""
    module = next(
        line.split()[0]
        for line in pulse.pactl("list", "short", "modules").splitlines()
        if "source_name=vmic" in line
    )
    pulse.pactl("unload-module", module)
    inbox = Inbox()
    mic = Mic(
        MicSettings(device="vmic", stall_timeout=0.5, reopen_initial=0.1, reopen_max=0.3), inbox
    )
    try:
        mic.start()  # does not raise
        assert inbox.wait_for(lambda ev: any(isinstance(e, DeviceLost) for e in ev), 3)
        assert not mic.is_open and "vmic" in inbox.of(DeviceLost)[0].reason
        time.sleep(0.5)
        assert not inbox.of(DeviceRestored) and not inbox.of(MicFrame)
    finally:
        pulse.pactl(
            "load-module", "module-remap-source", "source_name=vmic", "master=micfeed.monitor"
        )
    try:
        assert inbox.wait_for(lambda ev: any(isinstance(e, DeviceRestored) for e in ev), 10)
        assert inbox.wait_for(lambda ev: any(isinstance(e, MicFrame) for e in ev), 3)
        assert len(inbox.of(DeviceLost)) == 1
    finally:
        mic.close()


def test_mic_unknown_device_falls_back_to_default(pulse):
    mic, inbox = _capture(pulse, MicSettings(device="no such mic"), b"", 48000)
    assert mic.device_name and inbox.of(MicFrame)


def test_capture_framer_picks_one_channel_of_a_multichannel_device():
    inbox = Inbox()
    framer = CaptureFramer(inbox, 640)
    framer.configure(16000, 4, 2)
    interleaved = np.zeros((800, 4), "<i2")
    interleaved[:, 2] = np.arange(800)
    interleaved[:, 0] = 9999
    framer.feed(interleaved.tobytes()[:-3])  # a torn last sample is ignored
    frames = inbox.of(MicFrame)
    assert len(frames) == 2
    assert np.array_equal(np.frombuffer(frames[0].pcm + frames[1].pcm, "<i2"), np.arange(640))


def test_mic_settings_reject_bad_values():
    with pytest.raises(ConfigError, match="frame_ms"):
        MicSettings(frame_ms=5)
    with pytest.raises(ConfigError, match="channels"):
        MicSettings(channel=2, channels=2)
    assert MicSettings().frame_bytes == 640


def test_mic_recovers_when_its_device_is_unplugged_and_plugged_back(pulse):
    """Unload the vmic source and kill our stream (what a USB unplug does), reload it."""
    inbox = Inbox()
    mic = Mic(
        MicSettings(
            device="vmic", device_rate=48000, stall_timeout=0.5, reopen_initial=0.1, reopen_max=0.3
        ),
        inbox,
    )
    mic.start()
    try:
        assert inbox.wait_for(lambda ev: len(ev) > 10, 3)
        module = next(
            line.split()[0]
            for line in pulse.pactl("list", "short", "modules").splitlines()
            if "source_name=vmic" in line
        )
        pulse.pactl("unload-module", module)
        # PulseAudio "rescues" orphaned streams onto another source; a vanished USB
        # device kills them instead, so do that.
        for line in pulse.pactl("list", "short", "source-outputs").splitlines():
            pulse.cli(f"kill-source-output {line.split()[0]}")
        assert inbox.wait_for(lambda ev: any(isinstance(e, DeviceLost) for e in ev), 3)
        time.sleep(1.0)  # reopen attempts fail while the device is gone
        assert not inbox.of(DeviceRestored)
        pulse.pactl(
            "load-module", "module-remap-source", "source_name=vmic", "master=micfeed.monitor"
        )
        assert inbox.wait_for(lambda ev: any(isinstance(e, DeviceRestored) for e in ev), 10)
        mark = len(inbox.events)
        pulse.play_into_mic(tone(440, 48000, 0.6, 0.5), 48000).wait(timeout=10)
        time.sleep(0.3)
        x = samples(b"".join(e.pcm for e in inbox.events[mark:] if isinstance(e, MicFrame)))
        freqs, db = spectrum_db(x[slice(*loud_span(x, 0.05))], 16000)
        assert abs(freqs[np.argmax(db)] - 440) < 4
    finally:
        mic.close()


def test_mic_picks_one_channel_of_a_two_channel_device(pulse):
    left = np.frombuffer(tone(440, 48000, 1.0, 0.4), "<i2")
    right = np.frombuffer(tone(1000, 48000, 1.0, 0.4), "<i2")
    stereo = np.stack([left, right], axis=1).astype("<i2").tobytes()
    for channel, want in ((0, 440), (1, 1000)):
        inbox = Inbox()
        mic = Mic(MicSettings(device="vhat", channel=channel, channels=2, device_rate=48000), inbox)
        mic.start()
        try:
            time.sleep(0.2)
            pulse.play_into_mic(stereo, 48000, sink="hatfeed", channels=2).wait(timeout=10)
            time.sleep(0.3)
        finally:
            mic.close()
        x = samples(_pcm(inbox))
        freqs, db = spectrum_db(x[slice(*loud_span(x, 0.05))], 16000)
        assert abs(freqs[np.argmax(db)] - want) < 4, channel
        other = 1000 if want == 440 else 440
        assert db[np.abs(freqs - other) < 20].max() < -60  # the other channel is not mixed in
