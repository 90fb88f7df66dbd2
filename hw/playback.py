"""The speaker's queue: jitter buffer, underrun silence, flush, tail padding, earcon mix.

Shared by the PyAudio :class:`hw.speaker.Speaker` (pulled from the PortAudio
callback) and the simulated speaker (pulled by a pacing thread). It holds audio
already at the device rate; the output side asks for ``n`` bytes at a time and
always gets exactly ``n`` — reply audio, silence, or both — so the device never
starves into crackle (PITFALLS.md "Device side": replies arrive burstier than
realtime).

Life of a reply::

    IDLE --put--> BUFFERING --(jitter_ms queued, or waited 2×jitter_ms,
                               or end_of_reply)--> PLAYING --(queue dry)--> DRY
    DRY --put--> PLAYING (+1 underrun)      DRY --(drain_ms, or end)--> TAIL
    TAIL --(tail_ms of silence played)--> IDLE (+PlaybackDrained)
    any --flush()--> IDLE (nothing posted: whoever flushed knows)

The jitter target shrinks for a server that streams faster than realtime: a reply
arriving ``r`` times faster than it plays refills the queue ``r`` times faster than the
device drains it, so the queue only needs ``jitter_ms / r`` before it starts (the pace
``r`` is learned from each reply that arrived in full). Until a reply has been measured,
``r`` is the Live API's usual ~1.66× (PITFALLS.md "Replies arrive burstier than realtime",
FIELD_REPORTS.md F17), so the first reply of a process is not held back either: a burst
whose first 80 ms chunk already holds ``jitter_ms / 1.66`` plays at once instead of
waiting ~50 ms for a second chunk (issue 13). A server that turns out to stream at
realtime costs at most that first reply an underrun (counted and posted); its measured
pace of 1 then brings the whole jitter buffer back for every later reply.

The tail exists because the ALSA pulse plugin does not drain on stop
(VIRTUAL_AUDIO.md pitfall 2): we keep the stream running and only call the reply
finished after ``tail_ms`` of silence has followed its last sample.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from typing import Callable

import numpy as np

from daemon.events import Event, PlaybackDrained, PlaybackStarted, PlaybackUnderrun

__all__ = ["PlaybackQueue", "Phase", "EXPECTED_PACE"]

EXPECTED_PACE = 1.66
"""Arrival ÷ playback speed assumed until a reply has been measured: the Live API's usual
burst speed (PITFALLS.md "Replies arrive burstier than realtime")."""


class Phase(enum.Enum):
    """Where the current reply is in its life (see module docstring)."""

    IDLE = "idle"
    BUFFERING = "buffering"
    PLAYING = "playing"
    DRY = "dry"
    TAIL = "tail"


class PlaybackQueue:
    """Thread-safe reply queue; ``pull`` is called by the output side only."""

    def __init__(
        self,
        post: Callable[[Event], None],
        rate: int,
        *,
        jitter_ms: int = 120,
        tail_ms: int = 80,
        drain_ms: int = 300,
        clock: Callable[[], float] = time.monotonic,
        on_end: Callable[[], bytes] | None = None,
    ) -> None:
        self._post = post
        self._clock = clock
        self._on_end = on_end  # returns audio still held upstream (resampler tail)
        self._lock = threading.Lock()
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._earcon = bytearray()
        self._phase = Phase.IDLE
        self._since = 0.0  # when the current phase began
        self._ended = False  # end_of_reply() was called for what is queued
        self._tail_left = 0
        self._pace = EXPECTED_PACE  # arrival ÷ playback speed of the last reply (≥ 1)
        self._arrivals: tuple[float, float, int, int] | None = None  # first, last put, bytes, puts
        self.volume = 1.0
        self.underruns = 0
        self.bytes_played = 0  # reply bytes handed to the device (not silence)
        self.set_rate(rate, jitter_ms=jitter_ms, tail_ms=tail_ms, drain_ms=drain_ms)

    def set_rate(self, rate: int, *, jitter_ms: int, tail_ms: int, drain_ms: int) -> None:
        """Set the device rate (on open/reopen) and the timing in ms."""
        self.rate = rate
        self._jitter_bytes = rate * jitter_ms // 1000 * 2
        self._jitter_wait = 2.0 * jitter_ms / 1000
        self._tail_bytes = rate * tail_ms // 1000 * 2
        self._drain_wait = drain_ms / 1000

    @property
    def phase(self) -> Phase:
        """The current phase."""
        return self._phase

    @property
    def earcon_pending(self) -> bool:
        """An earcon is still being mixed into the output."""
        return bool(self._earcon)

    @property
    def queued_bytes(self) -> int:
        """Reply bytes waiting to be played."""
        return self._queued

    # -- producer side (event-loop thread) ----------------------------------
    def put(self, pcm: bytes) -> None:
        """Queue reply audio at the device rate (s16le mono)."""
        if not pcm:
            return
        with self._lock:
            self._chunks.append(pcm)
            self._queued += len(pcm)
            self._ended = False
            now = self._clock()
            if self._phase in (Phase.IDLE, Phase.TAIL):
                self._set(Phase.BUFFERING)
                self._arrivals = (now, now, 0, 0)
            elif self._arrivals is not None:
                first, _, nbytes, puts = self._arrivals
                # Bytes after the first put: they arrived over (now - first).
                self._arrivals = (first, now, nbytes + len(pcm), puts + 1)

    def end_of_reply(self) -> None:
        """No more audio is coming for this reply: start now if waiting, drain when dry."""
        with self._lock:
            self._ended = True

    def add_earcon(self, pcm: bytes) -> None:
        """Mix a short tone over whatever plays next (no playback events)."""
        with self._lock:
            self._earcon += pcm

    def flush(self) -> int:
        """Drop everything queued; the next pulled buffer is silence. Returns bytes dropped."""
        with self._lock:
            dropped = self._queued
            self._chunks.clear()
            self._queued = 0
            self._ended = False
            self._arrivals = None  # cut short: its pace says nothing
            self._set(Phase.IDLE)
            return dropped

    # -- consumer side (device thread) --------------------------------------
    def pull(self, nbytes: int) -> bytes:
        """Exactly ``nbytes`` of output: reply audio and/or silence, earcons mixed in."""
        events: list[Event] = []
        with self._lock:
            out = self._next(nbytes, events)
            if self._earcon:
                out = self._mix_earcon(out)
        for event in events:  # post outside the lock: post may take its own locks
            self._post(event)
        return out

    def _set(self, phase: Phase) -> None:
        self._phase = phase
        self._since = self._clock()

    def _next(self, nbytes: int, events: list[Event]) -> bytes:
        now = self._clock()
        if self._phase is Phase.BUFFERING:
            if (
                self._queued >= self._jitter_bytes / self._pace
                or self._ended
                or now - self._since >= self._jitter_wait
            ):
                self._set(Phase.PLAYING)
                events.append(PlaybackStarted())
        elif self._phase is Phase.DRY:
            if self._queued:
                self.underruns += 1
                events.append(PlaybackUnderrun(self.underruns))
                self._set(Phase.PLAYING)
            elif self._ended or now - self._since >= self._drain_wait:
                self._start_tail()
        if self._phase is Phase.PLAYING:
            out = self._take(nbytes)
            if len(out) < nbytes:
                if self._ended:
                    self._start_tail()
                else:
                    self._set(Phase.DRY)
                out += bytes(nbytes - len(out))
            return self._scaled(out)
        if self._phase is Phase.TAIL:
            out = self._take(nbytes)  # the resampler's last samples, if any
            pad = nbytes - len(out)
            self._tail_left -= pad
            if self._tail_left <= 0:
                self._learn_pace()
                self._set(Phase.IDLE)
                events.append(PlaybackDrained())
            return self._scaled(out + bytes(pad))
        return bytes(nbytes)

    def _learn_pace(self) -> None:
        # A reply that played out in full: how fast did it arrive? Only replies of a few
        # chunks over a measurable span count; a slow one (or a stall) brings the whole
        # jitter buffer back at once.
        arrivals, self._arrivals = self._arrivals, None
        if arrivals is None:
            return
        first, last, nbytes, puts = arrivals
        span = last - first
        if puts < 3 or span <= 0.05:
            return
        audio_seconds = nbytes / 2 / self.rate
        self._pace = min(4.0, max(1.0, audio_seconds / span))

    def _start_tail(self) -> None:
        held = self._on_end() if self._on_end is not None else b""
        if held:
            self._chunks.append(held)
            self._queued += len(held)
        self._tail_left = self._tail_bytes
        self._set(Phase.TAIL)

    def _take(self, nbytes: int) -> bytes:
        parts: list[bytes] = []
        need = nbytes
        while need and self._chunks:
            chunk = self._chunks[0]
            if len(chunk) <= need:
                parts.append(self._chunks.popleft())
                need -= len(chunk)
            else:
                parts.append(chunk[:need])
                self._chunks[0] = chunk[need:]
                need = 0
        out = b"".join(parts)
        self._queued -= len(out)
        self.bytes_played += len(out)
        return out

    def _scaled(self, pcm: bytes) -> bytes:
        if self.volume == 1.0 or not pcm:
            return pcm
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) * self.volume
        return np.clip(x, -32768, 32767).astype("<i2").tobytes()

    def _mix_earcon(self, out: bytes) -> bytes:
        n = min(len(out), len(self._earcon)) // 2 * 2
        tone = np.frombuffer(bytes(self._earcon[:n]), dtype="<i2").astype(np.int32)
        del self._earcon[:n]
        base = np.frombuffer(out, dtype="<i2").astype(np.int32)
        base[: n // 2] += tone
        return np.clip(base, -32768, 32767).astype("<i2").tobytes()
