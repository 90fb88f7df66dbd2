"""Minimal in-test stand-ins for mic, speaker and LED (shaped like hw_interface.md).

Only the hardware is stood in; the WebSocket side is always the real LiveServer.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Callable

from daemon.events import DeviceState, Event, MicFrame, PlaybackDrained, PlaybackStarted


class StandInMic:
    """Posts the frames the test asks for, in order, from the loop thread."""

    def __init__(self, post: Callable[[Event], None], seed: int = 3) -> None:
        self.post = post
        self.rng = random.Random(seed)
        self.started = self.closed = False
        self.frames_posted = 0

    def start(self) -> None:
        self.started = True

    def next_frame(self) -> bytes:
        self.frames_posted += 1
        return self.rng.randbytes(640)

    def feed(self, n: int) -> list[bytes]:
        out = [self.next_frame() for _ in range(n)]
        for pcm in out:
            self.post(MicFrame(pcm))
        return out

    def close(self) -> None:
        self.closed = True


class StandInSpeaker:
    """'Plays' reply audio in scaled time and reports Started/Drained like the real one."""

    def __init__(self, post: Callable[[Event], None], time_scale: float) -> None:
        self.post = post
        self.time_scale = time_scale
        self.played = bytearray()
        self.flushes = 0
        self.earcons: list[str] = []
        self._until = 0.0
        self._drain: asyncio.TimerHandle | None = None

    def start(self) -> None:
        pass

    def play(self, pcm: bytes, rate: int = 24000) -> None:
        loop = asyncio.get_running_loop()
        if self._drain is None:
            self.post(PlaybackStarted())
        else:
            self._drain.cancel()
        self.played += pcm
        self._until = max(loop.time(), self._until) + len(pcm) / (2 * rate) / self.time_scale
        self._drain = loop.call_at(self._until, self._drained)

    def _drained(self) -> None:
        self._drain = None
        self.post(PlaybackDrained())

    def flush(self) -> None:
        self.flushes += 1
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None
        self._until = 0.0

    def earcon(self, name: str) -> None:
        self.earcons.append(name)

    def close(self) -> None:
        self.flush()


class StandInLed:
    def __init__(self) -> None:
        self.shown: list[frozenset[DeviceState]] = []

    def show(self, states: frozenset[DeviceState]) -> None:
        self.shown.append(states)

    def close(self) -> None:
        pass


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
