"""Child process: a whole device on simulated hardware — voiced, or the same job on the SDK.

    python -m bench.footprint voiced|sdk --url ws://127.0.0.1:PORT --turns 4 --speed 5

Both kinds run the *same* simulated hardware (hw.sim: paced WAV-less mic posting
frames all the time, paced speaker, the real gpiozero Button and Led on mock pins) and
do the same job: push-to-talk turns, each answered and played out. Only the client stack
differs:

* ``voiced``: the daemon's core (Supervisor + Session + Connection) on exactly this harness
  (``ready`` = the first IDLE state: connected, set up, press to talk); the whole
  ``voiced run`` process is measured from outside by :func:`voiced_run_footprint`;
* ``sdk``: a cookbook-style app on google-genai 3.6.1 — mic frames forwarded with
  ``send_realtime_input`` while the button is down, reply audio handed to the speaker
  (``ready`` = ``connect()`` returned, i.e. setupComplete).

Hardware clocks, the server and the daemon all run at ``speed`` × realtime so a turn takes
a fraction of a second. Prints one JSON line: ``ready_at`` (``time.monotonic()``, the
parent subtracts its spawn time), RSS after each turn (MB), peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any, Callable

from bench.common import MODEL, emit, peak_rss_mb, rss_mb
from bench.sendpath import PATH

TURN_SECONDS = 1.5


def utterance(seed: int) -> bytes:
    """A turn's audio: noise-like 16 kHz PCM (what the server hears does not matter here)."""
    return random.Random(seed).randbytes(int(TURN_SECONDS * 16000) * 2)


async def until(pred: Callable[[], Any], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def talk(hw: Any, seed: int, answered: Callable[[], bool]) -> None:
    """One push-to-talk turn on the soft button; returns once the reply has played."""
    hw.soft_button.press()
    hw.mic.feed(utterance(seed))
    await until(lambda: hw.mic.pending_bytes == 0, 30, "the mic to hear the turn")
    hw.soft_button.release()
    await until(answered, 30, "the reply to be played")


async def run_voiced(url: str, turns: int, speed: float) -> dict[str, Any]:
    from daemon import wire
    from daemon.events import DeviceState
    from daemon.runtime.connection import Endpoint
    from daemon.runtime.supervisor import Inbox, Supervisor
    from daemon.session import Session, SessionSettings
    from hw.sim import make_sim_hardware

    inbox = Inbox()
    hw = make_sim_hardware(inbox.post, speed=speed)
    session = Session(
        SessionSettings(), wire.SetupConfig(model=MODEL, system_instruction="Be brief."), "gemini"
    )
    sup = Supervisor(
        session,
        Endpoint(url + PATH, {"x-goog-api-key": "bench"}),
        inbox=inbox,
        mic=hw.mic,
        speaker=hw.speaker,
        button=hw.button,
        led=hw.led,
        time_scale=speed,
    )
    out: dict[str, Any] = {"rss_mb": []}
    seen = {"spoke": False}

    def watch(effect: object) -> None:
        states = getattr(effect, "states", None)
        if states is None:
            return
        if DeviceState.IDLE in states and "ready_at" not in out:
            out["ready_at"] = time.monotonic()
        if DeviceState.SPEAKING in states:
            seen["spoke"] = True

    sup.subscribe(watch)

    async def drive() -> None:
        await until(lambda: "ready_at" in out, 30, "IDLE")
        for i in range(turns):
            seen["spoke"] = False
            await talk(hw, i, lambda: seen["spoke"] and DeviceState.IDLE in sup.states())
            out["rss_mb"].append(rss_mb())
        sup.stop()

    await sup.run(drive())
    hw.pin_factory.close()
    return out


async def run_sdk(url: str, turns: int, speed: float) -> dict[str, Any]:
    from google import genai
    from google.genai import types

    from daemon.events import ButtonPressed, ButtonReleased, MicFrame, PlaybackDrained
    from hw.sim import make_sim_hardware

    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Any] = asyncio.Queue()

    def post(event: Any) -> None:  # hardware threads → the loop, as any asyncio app does
        loop.call_soon_threadsafe(events.put_nowait, event)

    hw = make_sim_hardware(post, speed=speed)
    hw.start()
    client = genai.Client(api_key="bench", http_options={"api_version": "v1beta"})
    client._api_client._websocket_base_url = lambda *a, **k: url  # LIVE_PROTOCOL.md §7 (b)
    client._api_client._websocket_ssl_ctx = {}
    config = types.LiveConnectConfig(
        response_modalities=["AUDIO"],
        system_instruction="Be brief.",
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
        ),
        session_resumption=types.SessionResumptionConfig(),
    )
    out: dict[str, Any] = {"rss_mb": []}
    drained = asyncio.Event()
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        out["ready_at"] = time.monotonic()

        async def pump() -> None:
            talking = False
            while True:
                event = await events.get()
                if isinstance(event, ButtonPressed):
                    talking = True
                    await session.send_realtime_input(activity_start=types.ActivityStart())
                elif isinstance(event, ButtonReleased):
                    talking = False
                    await session.send_realtime_input(activity_end=types.ActivityEnd())
                elif isinstance(event, MicFrame) and talking:
                    await session.send_realtime_input(
                        audio=types.Blob(data=event.pcm, mime_type="audio/pcm;rate=16000")
                    )
                elif isinstance(event, PlaybackDrained):
                    drained.set()

        async def play() -> None:
            while True:
                async for message in session.receive():
                    content = message.server_content
                    if content and content.model_turn:
                        for part in content.model_turn.parts or ():
                            if part.inline_data and part.inline_data.data:
                                hw.speaker.play(part.inline_data.data)

        tasks = [loop.create_task(pump()), loop.create_task(play())]
        try:
            for i in range(turns):
                drained.clear()
                await talk(hw, i, drained.is_set)
                out["rss_mb"].append(rss_mb())
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    hw.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("voiced", "sdk"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--speed", type=float, default=5.0)
    args = parser.parse_args(argv)
    runner = run_voiced if args.kind == "voiced" else run_sdk
    out = asyncio.run(runner(args.url, args.turns, args.speed))
    out.update(kind=args.kind, peak_rss_mb=peak_rss_mb())
    emit(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# ------------------------------------------------------------------------------ `voiced run`


def process_rss_mb(pid: int) -> float:
    """VmRSS of another process, MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


def voiced_run_footprint(turns: int, scale: float = 4.0) -> dict[str, Any]:
    """Start the real ``voiced run --hw sim`` (this process plays systemd: NOTIFY_SOCKET),
    talk ``turns`` push-to-talk turns through its control socket, read its RSS from /proc.

    Returns ``ready_s`` (spawn → READY=1), ``idle_s`` (spawn → first IDLE seen on the
    control socket: connected and set up), ``rss_mb`` after each turn.
    """
    import signal
    import tempfile
    from pathlib import Path

    from daemon.liveserver import LiveServerThread, ServerLimits
    from testing.processrig import VoicedProcess

    async def drive(p: VoicedProcess, server: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"rss_mb": []}
        out["ready_s"] = await p.wait_noted("READY=1") - p.started_at
        await p.wait_status(lambda s: s["state"] == "idle")
        out["idle_s"] = time.monotonic() - p.started_at
        for i in range(turns):
            await p.control("ptt", action="start")
            await asyncio.sleep(0.5)
            await p.control("ptt", action="stop")
            await until(
                lambda: len(server.user_turns) > i and server.user_turns[i].replies,
                30,
                "the answer",
            )
            await p.wait_status(lambda s: s["state"] == "idle", 30)
            out["rss_mb"].append(process_rss_mb(p.proc.pid))
        p.signal(signal.SIGTERM)
        out["exit_code"] = await p.wait_exit(20)
        return out

    with (
        tempfile.TemporaryDirectory() as tmp,
        LiveServerThread(limits=ServerLimits(time_scale=scale), voice="synthetic") as server,
    ):
        p = VoicedProcess(Path(tmp), server.endpoint(), scale)
        try:
            return asyncio.run(drive(p, server))
        finally:
            p.close()
