"""Hot-plug with BOTH streams open on real PortAudio (issue 14): the mic and the speaker
share one PortAudio (hw.pastream.PortAudioHost), so a mic that appears after start, or is
unplugged and plugged back while the speaker plays, is found without a restart.

A USB mic that is unplugged takes its ALSA device with it, and one plugged in later is a
device PortAudio did not list at initialisation. Here that is: an ALSA name (``usbmic``)
declared in the private asoundrc only while "plugged", backed by a PulseAudio source
loaded/unloaded with pactl; on unplug the capture stream is killed as the kernel would.
PortAudio (with the speaker open on it) can then only see the device again after a
complete Pa_Terminate + Pa_Initialize.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from daemon.events import DeviceLost, DeviceRestored, MicFrame, PlaybackDrained, PlaybackStarted
from hw.mic import Mic, MicSettings
from hw.pastream import PortAudioHost
from hw.speaker import Speaker, SpeakerSettings
from tests.hw.harness import Inbox, loud_span, samples, spectrum_db, tone

USB_PCM = 'pcm.usbmic { type pulse device "usbmic" }\n'


class UsbMic:
    """Plug and unplug a virtual USB mic on the private PulseAudio."""

    def __init__(self, pulse) -> None:
        self.pulse = pulse
        self.asoundrc = pulse.root / "xdg" / "alsa" / "asoundrc"
        self.base = self.asoundrc.read_text().replace(USB_PCM, "")
        self.module: str | None = None

    def plug(self) -> None:
        self.module = self.pulse.pactl(
            "load-module", "module-remap-source", "source_name=usbmic", "master=micfeed.monitor"
        ).strip()
        self.asoundrc.write_text(self.base + USB_PCM)

    def unplug(self) -> None:
        self.asoundrc.write_text(self.base)
        if self.module is None:
            return
        source = next(
            (
                line.split()[0]
                for line in self.pulse.pactl("list", "short", "sources").splitlines()
                if line.split()[1] == "usbmic"
            ),
            None,
        )
        ours = [
            line.split()[0]
            for line in self.pulse.pactl("list", "short", "source-outputs").splitlines()
            if line.split()[1] == source
        ]
        self.pulse.pactl("unload-module", self.module)
        self.module = None
        # PulseAudio "rescues" orphaned streams onto another source; a vanished USB
        # device kills them instead, so do that (only the mic's: the test records
        # the speaker through a source output too).
        for index in ours:
            self.pulse.cli(f"kill-source-output {index}")


def _of(kind: type, dev: str):
    return lambda ev: any(isinstance(e, kind) and getattr(e, "kind", dev) == dev for e in ev)


def _mic_settings(reopen_initial: float = 0.1, reopen_max: float = 0.4) -> MicSettings:
    return MicSettings(
        device="usbmic",
        fallback_to_default=False,
        device_rate=48000,
        stall_timeout=0.5,
        reopen_initial=reopen_initial,
        reopen_max=reopen_max,
    )


def _heard_tone(inbox: Inbox, mark: int, hz: float) -> bool:
    x = samples(b"".join(e.pcm for e in inbox.events[mark:] if isinstance(e, MicFrame)))
    if len(x) < 1600:
        return False
    freqs, db = spectrum_db(x[slice(*loud_span(x, 0.05))], 16000)
    return abs(freqs[np.argmax(db)] - hz) < 4


def test_mic_unplugged_and_plugged_back_while_the_speaker_plays(pulse):
    usb = UsbMic(pulse)
    usb.plug()
    host = PortAudioHost(busy_defer_max=0.3)
    inbox = Inbox()
    mic = Mic(_mic_settings(), inbox, host=host)
    spk = Speaker(
        SpeakerSettings(device="vspk", device_rate=48000, stall_timeout=1.0), inbox, host=host
    )
    rec = pulse.record_speaker(48000)
    reply = tone(660, 24000, 6.0, 0.4)  # longer than unplug + replug below
    try:
        mic.start()
        spk.start()
        assert inbox.wait_for(lambda ev: sum(isinstance(e, MicFrame) for e in ev) > 10, 10)
        for i in range(0, len(reply), 4800):
            spk.play(reply[i : i + 4800])
        spk.end_of_reply()
        assert inbox.wait_for(lambda ev: any(isinstance(e, PlaybackStarted) for e in ev), 5)
        usb.unplug()
        assert inbox.wait_for(_of(DeviceLost, "mic"), 5)
        time.sleep(0.5)  # attempts fail while it is gone (and they rescan PortAudio)
        assert not inbox.of(DeviceRestored) and not mic.is_open
        usb.plug()
        assert inbox.wait_for(_of(DeviceRestored, "mic"), 15), host.lost_devices()
        assert mic.is_open and spk.is_open
        mark = len(inbox.events)
        pulse.play_into_mic(tone(440, 48000, 0.6, 0.5), 48000).wait(timeout=10)
        assert inbox.wait_for(lambda ev: _heard_tone(inbox, mark, 440), 10)
        assert inbox.wait_for(lambda ev: any(isinstance(e, PlaybackDrained) for e in ev), 30)
        time.sleep(0.3)
    finally:
        mic.close()
        spk.close()
        pcm = rec.stop()
        usb.unplug()
    assert host.rescans >= 1  # the device could only come back through a rescan
    assert not host.is_initialised  # the last stream out terminated PortAudio
    # The speaker was never lost, and the queued reply survived the rescans: every
    # sample of it went to the device, and the sink heard the tone for nearly all of it
    # (a rescan cuts at most what PortAudio already held: about one buffer each).
    assert not [e for e in inbox.of(DeviceLost) if e.kind == "speaker"]
    assert spk.reply_frames_played >= 6.0 * 48000
    heard = samples(pcm)
    windows = heard[: len(heard) // 480 * 480].reshape(-1, 480)  # 10 ms
    tone_s = float((np.sqrt((windows**2).mean(axis=1)) > 0.1).sum()) / 100
    cuts = host.rescans
    assert tone_s >= 6.0 - 0.15 * cuts - 0.1, (tone_s, cuts)


def test_mic_absent_at_start_appears_later_with_the_speaker_open(pulse, caplog):
    caplog.set_level(logging.WARNING, logger="hw.pastream")
    usb = UsbMic(pulse)
    usb.unplug()
    host = PortAudioHost(remind_every=0.3)
    inbox = Inbox()
    # Few rescans: every Pa_Initialize probes every device on the private PulseAudio, and
    # dozens of them left its virtual mic capturing worse for the next tests (open item).
    mic = Mic(_mic_settings(reopen_initial=0.3, reopen_max=1.0), inbox, host=host)
    spk = Speaker(SpeakerSettings(device="vspk", device_rate=48000), inbox, host=host)
    try:
        mic.start()  # wait_for_device (the default): no exception
        spk.start()
        assert inbox.wait_for(_of(DeviceLost, "mic"), 5)
        lost = host.lost_devices()
        assert [d.kind for d in lost] == ["mic"] and "usbmic" in lost[0].reason
        time.sleep(0.6)
        assert not mic.is_open and spk.lost is None  # (closed for a moment during rescans)
        assert host.lost_devices()[0].attempts >= 1  # it keeps trying

        # The journal keeps saying so while it is missing (every minute by default).
        def reminded() -> bool:
            return any("mic 'usbmic' still missing after" in r.getMessage() for r in caplog.records)

        deadline = time.monotonic() + 10
        while not reminded() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reminded()
        usb.plug()
        assert inbox.wait_for(_of(DeviceRestored, "mic"), 15), host.lost_devices()
        mark = len(inbox.events)
        pulse.play_into_mic(tone(440, 48000, 0.6, 0.5), 48000).wait(timeout=10)
        assert inbox.wait_for(lambda ev: _heard_tone(inbox, mark, 440), 10)
        assert host.lost_devices() == [] and host.rescans >= 1
    finally:
        mic.close()
        spk.close()
        usb.unplug()
