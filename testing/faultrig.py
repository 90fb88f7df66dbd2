"""The device the fault matrix breaks: the real daemon on simulated hardware.

A :class:`FaultRig` is the Supervisor + Session + Connection against a local
LiveServer (optionally behind a :class:`testing.proxy.TcpProxy`), with the real
``hw.led.Led`` and ``hw.button.Button`` on gpiozero mock pins (the LED's ``shown`` is
what a user would see), the real simulated speaker (``hw.sim.SimSpeaker``: jitter
buffer, underruns) and a mic feeder that posts exactly the frames the rig chose, so
the audio of every turn is known byte for byte and can be compared with the server's
per-turn sha256 digest.

Time: server and daemon share a time scale (``SCALE`` nominal seconds per wall
second), so the production timeouts (15 s setup, 30 s reply, 5 s close) hold, only
faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from typing import Any, Callable, Iterator

from daemon import wire
from daemon.events import DeviceState, MicFrame
from daemon.liveserver import LiveServer, ServerLimits
from daemon.runtime.connection import Endpoint
from daemon.runtime.supervisor import Inbox, Supervisor
from daemon.session import Effect, SendFrame, Session, SessionSettings
from testing import MODEL
from testing.proxy import TcpProxy

__all__ = ["FaultRig", "SCALE", "until"]

SCALE = 20.0
PRE_ROLL_FRAMES = 15  # SessionSettings.pre_roll_ms 300 / 20 ms


async def until(pred: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll ``pred`` every millisecond (wall seconds) until truthy."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not (got := pred()):
        if loop.time() > end:
            raise TimeoutError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.001)
    return got


class HoldableClock:
    """The rig Button's clock: ``time.monotonic``, unless a fault holds it at one instant.

    A contact-bounce burst is over in microseconds, well inside the Button's lock-out; the
    thread that emulates it can be descheduled for longer than the lock-out on a busy
    machine, which would turn it into a slow burst (several accepted changes: right for
    the Button, wrong for the fault). Held, every edge of the burst has the same time.
    """

    def __init__(self) -> None:
        self._held: float | None = None

    def __call__(self) -> float:
        held = self._held
        return time.monotonic() if held is None else held

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._held = time.monotonic()
        try:
            yield
        finally:
            self._held = None


class FaultRig:
    """``async with FaultRig(...) as rig:`` — a running daemon and its server."""

    def __init__(
        self,
        *,
        limits: ServerLimits | None = None,
        proxy: bool = False,
        settings: SessionSettings | None = None,
        seed: int = 1,
        mic: Callable[[Callable[..., None]], Any] | None = None,
        arm: Callable[[LiveServer], Any] | None = None,
        wait_idle: bool = True,
    ) -> None:
        from hw.button import Button, ButtonSettings
        from hw.led import Led, LedSettings
        from hw.sim import SimSpeaker, SoftButton, mock_pin_factory
        from hw.speaker import SpeakerSettings

        self.server = LiveServer(limits=limits or ServerLimits(time_scale=SCALE), voice="synthetic")
        self.use_proxy = proxy
        self.proxy: TcpProxy | None = None
        self.settings = settings or SessionSettings()
        self.inbox = Inbox()
        self.pins = mock_pin_factory()
        self.led = Led(LedSettings(), pin_factory=self.pins)
        button = ButtonSettings()
        self.button_clock = HoldableClock()
        self.button = Button(
            button, self.inbox.post, pin_factory=self.pins, clock=self.button_clock
        )
        self.soft_button = SoftButton(self.pins, button.pin)
        self.button_pin = self.pins.pin(button.pin)
        self.speaker = SimSpeaker(SpeakerSettings(), self.inbox.post, speed=SCALE)
        # ``mic(post)`` builds a real mic (e.g. hw.mic.Mic on a private PulseAudio); by
        # default the rig posts the frames itself (``speak``).
        self.mic = mic(self.inbox.post) if mic is not None else None
        self.rng = random.Random(seed)
        self._arm = arm  # faults armed on the server before the daemon starts
        self._wait_idle = wait_idle
        self.effects: list[Effect] = []
        self.sup: Supervisor | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "FaultRig":
        await self.server.start()
        if self._arm is not None:
            self._arm(self.server)
        url = self.server.url
        if self.use_proxy:
            self.proxy = TcpProxy("127.0.0.1", self.server.port).start()
            url = self.proxy.url()
        path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
        session = Session(
            self.settings,
            wire.SetupConfig(model=MODEL, system_instruction="Be brief."),
            "gemini",
            rng=self.rng.random,
        )
        self.sup = Supervisor(
            session,
            Endpoint(url + path, {"x-goog-api-key": "k"}),
            inbox=self.inbox,
            mic=self.mic,
            speaker=self.speaker,
            button=self.button,
            led=self.led,
            time_scale=SCALE,
        )
        self.sup.subscribe(self.effects.append)
        self._task = asyncio.get_running_loop().create_task(self.sup.run())
        if self._wait_idle:
            await until(self.is_idle, what="the first IDLE")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.sup is not None:
            self.sup.stop()
        if self._task is not None:
            await asyncio.wait_for(self._task, 15)
        if self.proxy is not None:
            self.proxy.stop()
        await self.server.stop()
        self.pins.close()

    # -- looking

    @property
    def phase(self) -> str:
        assert self.sup is not None
        return self.sup.session.phase.value

    def is_idle(self) -> bool:
        assert self.sup is not None
        return self.phase == "live" and self.sup.states() == frozenset({DeviceState.IDLE})

    def sent(self, needle: str) -> int:
        """Frames sent containing ``needle`` (e.g. '"activityStart"')."""
        return sum(1 for e in self.effects if isinstance(e, SendFrame) and needle in e.frame)

    def server_turn(self, audio: bytes) -> Any:
        """The server's record of the (last) user turn with exactly this audio, or None."""
        digest = hashlib.sha256(audio).hexdigest()
        return next((t for t in reversed(self.server.user_turns) if t.audio_digest == digest), None)

    def answers(self, audio: bytes) -> int:
        """Replies the server completed for a user turn with exactly this audio."""
        digest = hashlib.sha256(audio).hexdigest()
        return sum(t.replies for t in self.server.user_turns if t.audio_digest == digest)

    # -- doing

    def frames(self, n: int) -> list[bytes]:
        return [self.rng.randbytes(640) for _ in range(n)]

    async def speak(self, frames: list[bytes], gap: float = 0.002) -> None:
        """Post frames as the mic would, ``gap`` wall seconds apart."""
        for pcm in frames:
            self.inbox.post(MicFrame(pcm))
            await asyncio.sleep(gap)

    async def turn(
        self,
        before: int = 20,
        during: int = 30,
        after: int = 30,
        fault: Callable[[], Any] | None = None,
    ) -> bytes:
        """A push-to-talk turn on the soft button (the real Button code runs), with
        ``fault()`` called mid-turn; returns the audio captured for it (pre-roll first)."""
        idle = self.frames(before)
        await self.speak(idle, 0)
        self.soft_button.press()
        spoken = self.frames(during + after)
        await self.speak(spoken[:during])
        if fault is not None:
            got = fault()
            if asyncio.iscoroutine(got):
                await got
        await self.speak(spoken[during:])
        self.soft_button.release()
        return b"".join(idle[-PRE_ROLL_FRAMES:] + spoken)

    async def answered(self, audio: bytes, timeout: float = 20.0) -> None:
        await until(lambda: self.answers(audio) >= 1, timeout, "the turn to be answered")
        await until(self.is_idle, timeout, "IDLE after the answer")
