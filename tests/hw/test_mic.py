"""Mic through a private PulseAudio: right frequency, no aliasing, speech kept, recovery."""

from __future__ import annotations

import numpy as np

from daemon.events import MicFrame
from hw.mic import Mic, MicSettings
from tests.hw.audio_util import Inbox, samples, spectrum_db, tone


def _pcm(inbox: Inbox) -> bytes:
    return b"".join(e.pcm for e in inbox.of(MicFrame))


def test_mic_tone_48k_comes_out_16k_at_the_right_frequency(pulse):
    inbox = Inbox()
    mic = Mic(MicSettings(device="vmic"), inbox)
    mic.start()
    try:
        assert mic.device_name == "vmic"
        player = pulse.play_into_mic(tone(440, 48000, 1.5, 0.5), 48000)
        player.wait(timeout=10)
        inbox.wait_for(lambda ev: False, 0.3)
    finally:
        mic.close()
    x = samples(_pcm(inbox))
    print(len(x), mic.device_rate, np.abs(x).max())
    freqs, db = spectrum_db(x, 16000)
    print(freqs[np.argmax(db)])
