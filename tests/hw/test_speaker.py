"""Speaker through a private PulseAudio: complete replies, no cut tail, fast flush."""

from __future__ import annotations

import time

import numpy as np

from daemon.events import PlaybackDrained, PlaybackStarted
from hw.speaker import Speaker, SpeakerSettings
from tests.hw.audio_util import Inbox, best_correlation, loud_span, samples, tone


def test_speaker_reply_24k_heard_complete_on_the_sink_monitor(pulse, speech):
    inbox = Inbox()
    spk = Speaker(SpeakerSettings(device="vspk", device_rate=48000), inbox)
    spk.start()
    rec = pulse.record_speaker(48000)
    try:
        time.sleep(0.3)
        reply = speech[24000]
        for i in range(0, len(reply), 4800):  # 100 ms chunks, as the Live API sends
            spk.play(reply[i:i + 4800])
        assert inbox.wait_for(lambda ev: any(isinstance(e, PlaybackDrained) for e in ev), 10)
        time.sleep(0.3)
    finally:
        spk.close()
        pcm = rec.stop()
    heard = samples(pcm)
    ref = samples(speech[48000])
    corr, lag = best_correlation(ref, heard)
    print(corr, lag, len(heard), len(ref))
    start, end = loud_span(heard, 0.01, 480)
    rs, re_ = loud_span(ref, 0.01, 480)
    print(start, end, rs, re_, end - start, re_ - rs)
