"""PlaybackQueue (pure, float clock): jitter buffer, underrun, drain with tail, flush, volume."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

from daemon.events import PlaybackDrained, PlaybackStarted, PlaybackUnderrun
from hw.playback import Phase, PlaybackQueue
from hw.speaker import ReplyPath, SpeakerSettings
from tests.hw.harness import Inbox, samples, tone

RATE = 48000
FRAME = RATE * 20 // 1000 * 2  # 20 ms in bytes


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(inbox: Inbox, clock: Clock, **kw) -> PlaybackQueue:
    opts = dict(jitter_ms=120, tail_ms=80, drain_ms=300)
    opts.update(kw)
    return PlaybackQueue(inbox, RATE, clock=clock, **opts)


def pull(q: PlaybackQueue, clock: Clock, n: int = 1) -> bytes:
    out = b""
    for _ in range(n):
        out += q.pull(FRAME)
        clock.now += 0.02
    return out


def test_playback_waits_for_the_jitter_buffer_then_starts():
    # Before any reply was measured the pace is the Live API's usual one: 120 ms / 1.66.
    inbox, clock = Inbox(), Clock()
    q = make(inbox, clock)
    q.put(b"\x01\x00" * (RATE // 20))  # 50 ms < 72 ms
    assert pull(q, clock) == bytes(FRAME) and not inbox.events
    q.put(b"\x01\x00" * (RATE // 20))  # now 100 ms queued
    out = pull(q, clock)
    assert out == b"\x01\x00" * (FRAME // 2)
    assert [type(e) for e in inbox.events] == [PlaybackStarted]


def test_playback_first_burst_chunk_plays_at_once():
    # Issue 13: the first reply of a process must not wait for a second chunk when its
    # first 80 ms chunk already covers the jitter target at the expected burst pace.
    inbox, clock = Inbox(), Clock()
    q = make(inbox, clock)
    q.put(b"\x01\x00" * (RATE * 80 // 1000))
    assert pull(q, clock) == b"\x01\x00" * (FRAME // 2)
    assert [type(e) for e in inbox.events] == [PlaybackStarted]


def play_out(q: PlaybackQueue, clock: Clock, chunks: int, every: float) -> None:
    """One whole reply of 80 ms chunks put every ``every`` s, pulled until it drained."""
    for _ in range(chunks):
        q.put(b"\x01\x00" * (RATE * 80 // 1000))
        steps = round(every / 0.02)
        pull(q, clock, steps)
    q.end_of_reply()
    while q.phase is not Phase.IDLE:
        pull(q, clock)


def test_playback_after_a_realtime_reply_keeps_the_whole_jitter_buffer():
    inbox, clock = Inbox(), Clock()
    q = make(inbox, clock)
    play_out(q, clock, 5, 0.08)  # arrived at realtime: learned pace 1
    inbox.events.clear()
    q.put(b"\x01\x00" * (RATE // 10))  # 100 ms < 120 ms: waits now
    assert pull(q, clock) == bytes(FRAME) and not inbox.events
    q.put(b"\x01\x00" * (RATE // 20))  # 150 ms
    assert pull(q, clock) == b"\x01\x00" * (FRAME // 2)
    assert [type(e) for e in inbox.events] == [PlaybackStarted]


def test_playback_short_reply_starts_after_waiting_twice_the_jitter():
    inbox, clock = Inbox(), Clock()
    q = make(inbox, clock)
    q.put(b"\x01\x00" * 480)  # 10 ms reply, nothing more coming
    silent = pull(q, clock, 12)  # 240 ms: still waiting
    assert silent == bytes(len(silent)) and not inbox.events
    pull(q, clock, 2)
    assert inbox.of(PlaybackStarted)


def test_playback_underrun_plays_silence_and_is_counted():
    inbox, clock = Inbox(), Clock()
    q = make(inbox, clock)
    q.put(b"\x01\x00" * (RATE // 5))  # 200 ms
    out = pull(q, clock, 12)  # 240 ms: ran dry after 200
    assert out[-FRAME:] == bytes(FRAME)
    assert q.phase is Phase.DRY and not inbox.of(PlaybackUnderrun)
    q.put(b"\x02\x00" * (RATE // 5))  # more arrives: that was an underrun
    out = pull(q, clock)
    assert out == b"\x02\x00" * (FRAME // 2)
    assert [e.count for e in inbox.of(PlaybackUnderrun)] == [1] and q.underruns == 1


def test_playback_drains_with_tail_padding_after_end_of_reply():
    inbox, clock = Inbox(), Clock()
    q = make(inbox, clock)
    reply = b"\x03\x00" * (RATE // 10 + 7)  # 100 ms and a bit
    q.put(reply)
    q.end_of_reply()  # don't wait for the jitter buffer
    out = b""
    while not inbox.of(PlaybackDrained):
        out += pull(q, clock)
        assert len(out) < 20 * FRAME
    assert out.startswith(reply)
    tail = out[len(reply) :]
    assert tail == bytes(len(tail)) and len(tail) >= RATE * 80 // 1000 * 2
    assert [type(e) for e in inbox.events] == [PlaybackStarted, PlaybackDrained]
    assert q.phase is Phase.IDLE


def test_playback_without_end_drains_after_drain_ms():
    inbox, clock = Inbox(), Clock()
    q = make(inbox, clock)
    q.put(b"\x03\x00" * (RATE // 5))
    pull(q, clock, 10)  # played; dry from 200 ms
    assert not inbox.of(PlaybackDrained)
    pull(q, clock, 25)  # 300 ms dry + 80 ms tail
    assert len(inbox.of(PlaybackDrained)) == 1 and not inbox.of(PlaybackUnderrun)


def test_playback_flush_silences_the_next_buffer():
    inbox, clock = Inbox(), Clock()
    q = make(inbox, clock)
    q.put(b"\x05\x00" * RATE)  # 1 s
    assert pull(q, clock, 7) != bytes(7 * FRAME)
    dropped = q.flush()
    assert dropped > RATE  # most of the second was still queued
    assert pull(q, clock) == bytes(FRAME)
    assert q.phase is Phase.IDLE and q.queued_bytes == 0


def test_playback_volume_scales_and_clips():
    inbox, clock = Inbox(), Clock()
    q = make(inbox, clock, jitter_ms=0)
    q.volume = 0.5
    q.put(np.full(FRAME // 2, 1000, "<i2").tobytes())
    assert set(np.frombuffer(q.pull(FRAME), "<i2")) == {500}
    q.volume = 2.0
    q.put(np.full(FRAME // 2, 30000, "<i2").tobytes())
    assert set(np.frombuffer(q.pull(FRAME), "<i2")) == {32767}


def test_playback_earcon_is_mixed_without_playback_events():
    inbox, clock = Inbox(), Clock()
    q = make(inbox, clock)
    q.add_earcon(np.full(FRAME // 4, 100, "<i2").tobytes())  # half a frame
    out = np.frombuffer(pull(q, clock), "<i2")
    assert (out[: FRAME // 4] == 100).all() and (out[FRAME // 4 :] == 0).all()
    assert not inbox.events


def test_reply_path_resamples_24k_to_device_rate_and_keeps_the_tail():
    inbox, clock = Inbox(), Clock()
    path = ReplyPath(SpeakerSettings(jitter_ms=0), inbox, RATE, clock=clock)
    reply = tone(1000, 24000, 0.5, 0.5)
    for i in range(0, len(reply), 960):
        path.play(reply[i : i + 960])
    path.end_of_reply()
    out = b""
    while not inbox.of(PlaybackDrained):
        out += pull(path.queue, clock)
    x = samples(out)
    assert len(x) >= RATE // 2  # the whole half second at 48 kHz, tail included
    spec = np.abs(np.fft.rfft(x[: RATE // 2]))
    assert abs(np.argmax(spec) * 2 - 1000) <= 2


class GateClock(Clock):
    """A clock the test can stop inside: armed, the next call blocks (the caller still
    holding whatever lock it holds) until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> float:
        if self.armed:
            self.armed = False
            self.entered.set()
            self.release.wait(30)
        return self.now


def blocked_in(thread: threading.Thread, function: str, module: str) -> bool:
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == function and code.co_filename.endswith(module):
            return True
        frame = frame.f_back
    return False


def test_reply_rate_change_while_the_device_thread_ends_a_reply_does_not_deadlock():
    # Issue 10 item 9: play() with a new rate pushed the old resampler's tail into the
    # queue while holding ReplyPath's lock; the device thread, ending a reply, held the
    # queue's lock and asked ReplyPath for the resampler tail. Two real threads, that
    # exact interleaving forced: the device thread is stopped inside pull() (queue lock
    # held) at the moment it will ask for the tail; the producer changes the rate.
    inbox, clock = Inbox(), GateClock()
    path = ReplyPath(SpeakerSettings(jitter_ms=0), inbox, RATE, clock=clock)
    path.play(tone(1000, 24000, 0.1, 0.5))
    path.end_of_reply()
    path.queue.pull(path.queue.queued_bytes)  # everything played: the next pull ends it
    clock.armed = True
    device = threading.Thread(target=path.queue.pull, args=(FRAME,), daemon=True)
    producer = threading.Thread(
        target=path.play, args=(tone(500, 16000, 0.1, 0.5), 16000), daemon=True
    )
    device.start()
    assert clock.entered.wait(10), "the device thread never reached the queue's clock"
    producer.start()
    deadline = time.monotonic() + 10
    while not blocked_in(producer, "put", "hw/playback.py") and producer.is_alive():
        assert time.monotonic() < deadline, "the producer never reached PlaybackQueue.put"
        time.sleep(0.001)
    clock.release.set()
    device.join(10)
    producer.join(10)
    assert not device.is_alive() and not producer.is_alive(), "deadlock: play vs pull"
    # And the new-rate reply still plays: its audio is queued after the old tail.
    assert path.queue.queued_bytes > 0
