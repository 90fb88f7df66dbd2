"""Idle cost (issue 13): while nobody talks, mic frames wait in the inbox's ring instead
of waking the loop, and the core still sees exactly the frames it would have kept.

The inbox is bound to a real selector loop that counts cross-thread wakeups; the
supervisor test runs the real Supervisor, Session and Connection against the local Live
server and checks the server's per-turn digest of the audio, pre-roll included.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any, Callable

from bench.common import MODEL
from daemon import wire
from daemon.events import ButtonPressed, ButtonReleased, DeviceState, MicFrame
from daemon.liveserver import LiveServer, ServerLimits
from daemon.runtime.connection import Endpoint
from daemon.runtime.supervisor import Inbox, Supervisor
from daemon.session import SendText, Session, SessionSettings

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
FRAME = 640
PRE_ROLL = 300 * 32  # the core's default pre_roll_ms in bytes (15 frames of 20 ms)


class CountingLoop(asyncio.SelectorEventLoop):
    """A real selector loop counting cross-thread wakeups (each writes its self-pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.threadsafe_calls = 0

    def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None) -> Any:
        self.threadsafe_calls += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


def _frame(i: int) -> MicFrame:
    return MicFrame(i.to_bytes(4, "little") * (FRAME // 4))


def _index(event: Any) -> int:
    return int.from_bytes(event.pcm[:4], "little")


def _in_thread(fn: Callable[[], None]) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join()  # the loop is blocked meanwhile: nothing is drained before we look


def _run(body: Any, loop: asyncio.AbstractEventLoop) -> Any:
    try:
        return loop.run_until_complete(asyncio.wait_for(body(), 30))
    finally:
        loop.close()


def test_idle_frames_wake_nothing_and_a_press_brings_exactly_the_pre_roll_first() -> None:
    inbox, loop = Inbox(), CountingLoop()

    async def body() -> None:
        queue = inbox._bind(asyncio.get_running_loop())
        assert inbox.hold_idle_frames(PRE_ROLL)
        base = loop.threadsafe_calls
        _in_thread(lambda: [inbox.post(_frame(i)) for i in range(500)])
        assert loop.threadsafe_calls == base, "idle frames woke the loop"
        assert queue.empty() and inbox.last_frame_at is not None  # the mic is seen moving
        _in_thread(lambda: inbox.post(ButtonPressed()))
        assert loop.threadsafe_calls == base + 1  # the press: one wakeup
        assert not inbox.holding  # ...and the hold is over
        got = [await queue.get() for _ in range(16)]
        assert queue.empty()
        # The newest frames making up the pre-roll (the core's own rule), in order, then
        # the press.
        assert [_index(e) for e in got[:15]] == list(range(485, 500))
        assert isinstance(got[15], ButtonPressed)

    _run(body, loop)


def test_frames_after_a_press_are_delivered_every_one_in_order() -> None:
    inbox, loop = Inbox(), CountingLoop()

    async def body() -> None:
        queue = inbox._bind(asyncio.get_running_loop())
        assert inbox.hold_idle_frames(PRE_ROLL)

        def talk() -> None:
            for i in range(40):
                inbox.post(_frame(i))
            inbox.post(ButtonPressed())
            for i in range(40, 400):  # more than the pre-roll: none may be trimmed
                inbox.post(_frame(i))
            inbox.post(ButtonReleased(7.2))

        _in_thread(talk)
        got = [await queue.get() for _ in range(15 + 1 + 360 + 1)]
        assert queue.empty()
        assert [_index(e) for e in got[:15]] == list(range(25, 40))
        assert isinstance(got[15], ButtonPressed) and isinstance(got[-1], ButtonReleased)
        assert [_index(e) for e in got[16:-1]] == list(range(40, 400))

    _run(body, loop)


def test_the_hold_is_refused_while_an_event_is_on_its_way() -> None:
    inbox, loop = Inbox(), CountingLoop()

    async def body() -> None:
        queue = inbox._bind(asyncio.get_running_loop())
        _in_thread(lambda: inbox.post(SendText("hello", True)))  # drain not yet run
        assert not inbox.hold_idle_frames(PRE_ROLL)
        assert isinstance(await queue.get(), SendText)
        assert inbox.hold_idle_frames(PRE_ROLL)
        _in_thread(lambda: [inbox.post(_frame(i)) for i in range(3)])
        inbox.deliver_every_frame()  # a turn opened: held frames now, in order
        assert [_index(queue.get_nowait()) for _ in range(3)] == [0, 1, 2]
        assert not inbox.holding
        inbox.post(_frame(3))  # from the loop thread, delivered at once
        assert _index(queue.get_nowait()) == 3

    _run(body, loop)


def test_an_idle_supervisor_feeds_no_idle_frames_yet_the_turn_keeps_its_pre_roll() -> None:
    """The real supervisor against the local Live server: a mic thread posts frames all
    the time; while idle none reaches the core; the turn the server hears is exactly the
    pre-roll plus what was said (its sha256), and the heartbeat saw the mic moving."""

    async def body() -> None:
        async with LiveServer(limits=ServerLimits(time_scale=20.0), voice="synthetic") as server:
            inbox = Inbox()
            session = Session(SessionSettings(), wire.SetupConfig(model=MODEL), "gemini")
            sup = Supervisor(
                session,
                Endpoint(server.url + PATH, {"x-goog-api-key": "t"}),
                inbox=inbox,
                time_scale=20.0,
            )
            fed: list[str] = []
            handle = session.handle

            def counting(event: Any, now: float) -> Any:
                fed.append(type(event).__name__)
                return handle(event, now)

            session.handle = counting  # type: ignore[method-assign]
            loop = asyncio.get_running_loop()

            async def until(pred: Callable[[], Any], what: str) -> None:
                end = loop.time() + 20
                while not pred():
                    assert loop.time() < end, f"timed out waiting for {what}"
                    await asyncio.sleep(0.005)

            async def drive() -> None:
                await until(
                    lambda: sup.states() == frozenset({DeviceState.IDLE}) and inbox.holding,
                    "idle with the hold armed",
                )
                before = len(fed)
                await asyncio.to_thread(lambda: [inbox.post(_frame(i)) for i in range(300)])
                await asyncio.sleep(0.05)
                assert fed[before:].count("MicFrame") == 0, "idle frames reached the core"
                assert sup.heartbeat.last_mic_frame is not None
                said = list(range(300, 360))

                def talk() -> None:
                    inbox.post(ButtonPressed())
                    for i in said:
                        inbox.post(_frame(i))
                    inbox.post(ButtonReleased(1.2))

                await asyncio.to_thread(talk)
                audio = b"".join(_frame(i).pcm for i in list(range(285, 300)) + said)
                digest = hashlib.sha256(audio).hexdigest()
                await until(
                    lambda: any(t.audio_digest == digest and t.replies for t in server.user_turns),
                    "the turn, answered",
                )
                assert fed.count("MicFrame") == 15 + len(said)
                sup.stop()

            await sup.run(drive())

    asyncio.run(asyncio.wait_for(body(), 60))
