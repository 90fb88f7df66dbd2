"""Bench-side device clocks: the real reply path (hw.speaker.ReplyPath) pulled by a thread.

hw.sim.SimSpeaker records everything it plays (a test helper) and, at ``speed=None``,
spins while a reply drains; neither suits a day-long soak. :class:`PacedSpeaker` keeps
the daemon's real queue (jitter buffer, underrun silence, tail, PlaybackStarted /
PlaybackDrained / PlaybackUnderrun) and only replaces the device clock: every
``period`` wall seconds it pulls ``period × speed`` seconds of audio. With
``note_pulls`` it remembers ``(time.monotonic(), reply bytes played)`` after each pull
(the playback-latency benchmark reads them).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from daemon.events import Event

__all__ = ["PacedSpeaker"]


class PacedSpeaker:
    """A speaker shaped like hw_interface.md, clocked by a thread at ``speed`` × realtime."""

    def __init__(
        self,
        post: Callable[[Event], None],
        speed: float = 1.0,
        note_pulls: bool = False,
        drain_ms: int = 300,
    ) -> None:
        from hw.speaker import ReplyPath, SpeakerSettings

        self.path = ReplyPath(SpeakerSettings(drain_ms=drain_ms), post, 24000)
        self.speed = speed
        self.period = max(0.002, 0.02 / speed)
        self.pull_bytes = int(24000 * self.period * speed) * 2
        self.pulls: list[tuple[float, int]] | None = [] if note_pulls else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-speaker", daemon=True)

    @property
    def underruns(self) -> int:
        return self.path.queue.underruns

    def start(self) -> None:
        self._thread.start()

    def play(self, pcm: bytes, rate: int = 24000) -> None:
        self.path.play(pcm, rate)

    def end_of_reply(self) -> None:
        self.path.end_of_reply()

    def flush(self) -> None:
        self.path.flush()

    def earcon(self, name: str) -> None:
        self.path.earcon(name)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def _run(self) -> None:
        queue = self.path.queue
        next_at = time.monotonic()
        while not self._stop.is_set():
            queue.pull(self.pull_bytes)
            if self.pulls is not None:
                self.pulls.append((time.monotonic(), queue.bytes_played))
            next_at += self.period
            delay = next_at - time.monotonic()
            if delay < -1.0:
                next_at = time.monotonic()  # fell far behind: resync, as a device would
            self._stop.wait(max(0.0, delay))
