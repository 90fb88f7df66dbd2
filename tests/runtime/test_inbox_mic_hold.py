"""The inbox with the mic's framer attached as its idle source (issue 13): while the
ring is armed the framer posts nothing (no wakeup, no resampling); a press posted from
another thread brings the pre-roll — resampled then — ahead of itself, and the frames
that follow continue the same stream, bit for bit as if every frame had been resampled
and delivered."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from daemon.events import ButtonPressed, MicFrame
from daemon.runtime.supervisor import Inbox
from hw.mic import CaptureFramer

FRAME = 640
PRE_ROLL = 300 * 32
RATE = 48000
CHUNK = RATE // 50 * 2  # one 20 ms device callback


def _audio(seconds: float) -> list[bytes]:
    rng = np.random.default_rng(7)
    pcm = np.clip(rng.normal(0, 6000, int(RATE * seconds)), -32768, 32767).astype("<i2")
    raw = pcm.tobytes()
    return [raw[i : i + CHUNK] for i in range(0, len(raw), CHUNK)]


def test_a_press_brings_the_held_pre_roll_first_and_the_stream_continues() -> None:
    chunks = _audio(4.0)
    reference: list[bytes] = []
    ref = CaptureFramer(lambda e: reference.append(e.pcm), FRAME)  # type: ignore[attr-defined]
    ref.configure(RATE, 1, 0)
    for c in chunks:
        ref.feed(c)

    inbox = Inbox()
    framer = CaptureFramer(inbox.post, FRAME)
    framer.configure(RATE, 1, 0)
    inbox.attach_idle_source(framer)
    wakeups = 0

    async def body() -> None:
        nonlocal wakeups
        loop = asyncio.get_running_loop()
        queue = inbox._bind(loop)
        for c in chunks[:20]:  # live: every frame delivered
            framer.feed(c)
        live = [(await queue.get()).pcm for _ in range(framer.frames_posted)]
        assert inbox.hold_idle_frames(PRE_ROLL)
        original = loop.call_soon_threadsafe

        def counting(*args: object, **kw: object) -> asyncio.Handle:
            nonlocal wakeups
            wakeups += 1
            return original(*args, **kw)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]

        def device(part: list[bytes], press: bool) -> None:
            for c in part:
                framer.feed(c)
            if press:
                inbox.post(ButtonPressed())

        t = threading.Thread(target=device, args=(chunks[20:150], True))
        t.start()
        t.join()
        assert wakeups == 1  # the press alone; 130 idle callbacks woke nothing
        assert inbox.last_frame_at is not None  # the watchdog still sees the mic move
        pressed_at = framer.frames_posted
        got = []
        while True:
            event = await queue.get()
            if isinstance(event, ButtonPressed):
                break
            assert isinstance(event, MicFrame)
            got.append(event.pcm)
        assert got == reference[pressed_at - 15 : pressed_at]  # the pre-roll, resampled
        t = threading.Thread(target=device, args=(chunks[150:], False))
        t.start()
        t.join()
        after = [(await queue.get()).pcm for _ in range(framer.frames_posted - pressed_at)]
        assert queue.empty()
        assert live + got + after == reference[: len(live)] + reference[pressed_at - 15 :]
        inbox._unbind()

    asyncio.run(asyncio.wait_for(body(), 30))
