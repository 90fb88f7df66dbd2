"""Child process of :mod:`bench.soak`: the daemon, talking for ``--hours`` of device time.

Prints one JSON line: every turn's ``[sha256, frames]``, the core's counters, and a
resource sample (RSS MB, open fds, asyncio tasks, threads) per nominal hour — the
first after one hour of warm-up, the last just before shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import hashlib
import random
import sys
import threading
from dataclasses import asdict
from typing import Any

from bench.common import MODEL, emit, open_fds, rss_mb
from bench.sendpath import PATH
from daemon import wire
from daemon.connection import Endpoint, Keepalive
from daemon.events import DeviceState, MicFrame
from daemon.session import Session, SessionSettings
from daemon.supervisor import Inbox, Supervisor

PRE_ROLL_FRAMES = 15
_LIBC = ctypes.CDLL("libc.so.6")


def settings_for_soak() -> SessionSettings:
    """The server's short limits, told to the core; timeouts that are wall-clock things
    at heart (a loaded loop at ×500 loses 30 nominal seconds in 60 ms) made roomier."""
    return SessionSettings(connection_cap=45.0, connection_switch_window=25.0, resume_margin=2.0,
                           session_cap_audio=240.0, rollover_window=30.0, reply_timeout=900.0,
                           setup_timeout=300.0, close_timeout=120.0, playback_slack=2.0)


async def soak(url: str, hours: float, scale: float, seed: int) -> dict[str, Any]:
    from hw.button import Button, ButtonSettings
    from hw.led import Led, LedSettings
    from bench.devices import PacedSpeaker
    from hw.sim import SoftButton, mock_pin_factory

    rng = random.Random(seed)
    inbox = Inbox()
    pins = mock_pin_factory()
    led = Led(LedSettings(), pin_factory=pins)
    button = Button(ButtonSettings(), inbox.post, pin_factory=pins)
    soft = SoftButton(pins, ButtonSettings().pin)
    speaker = PacedSpeaker(inbox.post, speed=scale, drain_ms=40)
    session = Session(settings_for_soak(),
                      wire.SetupConfig(model=MODEL, system_instruction="Be brief."), "gemini",
                      rng=rng.random)
    sup = Supervisor(session, Endpoint(url + PATH, {"x-goog-api-key": "soak"}), inbox=inbox,
                     speaker=speaker, button=button, led=led, time_scale=scale,
                     keepalive=Keepalive(600.0, 6000.0))
    turns: list[list[Any]] = []
    samples: list[dict[str, Any]] = []
    end = hours * 3600.0

    def sample() -> None:
        # gpiozero's MockPin keeps every state change in ``pin.states`` (one PinState per
        # LED PWM step): test-harness history, not ours — forget it before measuring.
        for pin in (LedSettings().pin, ButtonSettings().pin):
            pins.pin(pin).clear_states()
        gc.collect()
        raw = rss_mb()
        # Freed memory glibc keeps in its arenas shows up in RSS; trimming tells such
        # retention apart from live objects that grow (a leak).
        _LIBC.malloc_trim(0)
        samples.append({"nominal_h": round(sup.now() / 3600, 2), "rss_mb": round(raw, 2),
                        "rss_trimmed_mb": round(rss_mb(), 2), "fds": open_fds(),
                        "tasks": len(asyncio.all_tasks()), "threads": threading.active_count(),
                        "py_heap_mb": round(sum(sys.getsizeof(o) for o in gc.get_objects())
                                            / 2**20, 2)})

    async def wait(pred: Any, what: str, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        stop = loop.time() + timeout
        while not pred():
            if loop.time() > stop:
                raise RuntimeError(f"soak: timed out waiting for {what} at "
                                   f"{sup.now():.0f} s nominal: {sup.stats()}")
            await asyncio.sleep(0.001)

    def idle() -> bool:
        return sup.session.phase.value == "live" and sup.states() == frozenset({DeviceState.IDLE})

    async def drive() -> None:
        await wait(idle, "the first IDLE")
        next_sample = 3600.0
        try:
            while sup.now() < end:
                await asyncio.sleep(rng.uniform(20, 70) / scale)
                if sup.now() >= next_sample:
                    sample()
                    next_sample += 3600.0
                idle_frames = [rng.randbytes(640) for _ in range(20)]
                for pcm in idle_frames:
                    inbox.post(MicFrame(pcm))
                soft.press()
                spoken = [rng.randbytes(640) for _ in range(rng.randint(10, 80))]
                for i, pcm in enumerate(spoken):
                    inbox.post(MicFrame(pcm))
                    if i % 10 == 9:
                        await asyncio.sleep(0.2 / scale)  # 10 frames per 0.2 nominal s
                soft.release()
                audio = b"".join(idle_frames[-PRE_ROLL_FRAMES:] + spoken)
                turns.append([hashlib.sha256(audio).hexdigest(), len(audio) // 640])
                # The release reached the core (its turn counter), then back to IDLE:
                # no ask owed, nothing generating or playing.
                await wait(lambda: sup.stats().turns >= len(turns) and idle(), "the answer")
            sample()
        finally:
            sup.stop()

    await sup.run(drive())
    pins.close()
    return {"turns": turns, "samples": samples, "stats": asdict(sup.stats())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--scale", type=float, default=500.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    emit(asyncio.run(soak(args.url, args.hours, args.scale, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
