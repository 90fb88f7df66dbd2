"""Shared helpers of this folder's tests."""

from __future__ import annotations

import asyncio
import random
from typing import Any, Awaitable, Callable

from daemon import wire
from daemon.liveserver import LiveServer
from daemon.runtime.connection import Endpoint, Keepalive
from daemon.runtime.supervisor import Inbox, Supervisor
from daemon.session import Effect, SendFrame, Session, SessionSettings
from tests.core.harness import MODEL
from tests.core.standins import StandInLed, StandInMic, StandInSpeaker
from tests.timing import ProgressLoop


async def until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``pred`` (wall seconds) until truthy."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        got = pred()
        if got:
            return got
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.002)


class Rig:
    """A supervisor with stand-in hardware, connected to a LiveServer."""

    def __init__(
        self,
        server: LiveServer,
        settings: SessionSettings,
        scale: float,
        keepalive: Keepalive = Keepalive(),
        seed: int = 1,
        api_key: str = "k1",
    ) -> None:
        self.inbox = Inbox()
        self.mic = StandInMic(self.inbox.post, seed)
        self.speaker = StandInSpeaker(self.inbox.post, scale)
        self.led = StandInLed()
        session = Session(
            settings,
            wire.SetupConfig(model=MODEL, system_instruction="Be brief."),
            "gemini",
            0.0,
            rng=random.Random(seed).random,
        )
        self.sup = Supervisor(
            session,
            Endpoint(server.endpoint(), {"x-goog-api-key": api_key}),
            inbox=self.inbox,
            mic=self.mic,
            speaker=self.speaker,
            led=self.led,
            time_scale=scale,
            keepalive=keepalive,
        )
        self.effects: list[Effect] = []
        self.sup.subscribe(self.effects.append)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "Rig":
        self.task = asyncio.get_running_loop().create_task(self.sup.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.sup.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)

    @property
    def phase(self) -> str:
        return self.sup.session.phase.value

    def audio_sent(self) -> bytes:
        out = bytearray()
        for e in self.effects:
            if isinstance(e, SendFrame) and '"audio"' in e.frame[:40]:
                import json

                out += wire.b64decode(json.loads(e.frame)["realtimeInput"]["audio"]["data"])
        return bytes(out)


def run(body: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    """``body`` on a :class:`tests.timing.ProgressLoop`: the supervisor and the local
    server share that loop, so both clocks stop while it waits for a CPU and the ×SCALE
    deadlines (the server's goAway window and caps, the daemon's guards) measure the
    scenario's progress, not the machine's load (they raced it in CI under load).
    ``timeout`` only ends a hang."""

    async def main() -> None:
        async with asyncio.timeout(timeout):
            await body()

    with asyncio.Runner(loop_factory=ProgressLoop) as runner:
        runner.run(main())
