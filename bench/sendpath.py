"""Child process: stream the same 16 kHz frames to a Live server three ways; report CPU.

    python -m bench.sendpath voiced|sdk|floor --url ws://127.0.0.1:PORT --seconds 60 --speed 20

* ``voiced``: frames are posted to the supervisor's inbox from a thread of their own,
  paced like a device clock (as hw.mic's PortAudio callback does: the thread hop is
  paid), the pure session core turns each into a ``realtimeInput.audio`` frame, the
  connection's writer sends it on a real WebSocket — the daemon's whole send path;
* ``sdk``: google-genai 3.6.1 ``session.send_realtime_input(audio=Blob)`` per frame, as
  in Google's cookbook;
* ``floor``: bare ``websockets`` + ``json.dumps`` + ``base64`` per frame: the least any
  Python client can do.

All three open a push-to-talk activity, send the frames paced at ``speed`` × realtime on
an absolute schedule, close the activity and stop the clock when the first reply audio
arrives (so every frame was received and acted on by the server). CPU is
``time.process_time()`` of this process over exactly that span (connect and imports
excluded). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from typing import Any, Awaitable, Callable

from bench.common import MODEL, audio_frames, emit

PTT_SETUP = {
    "setup": {
        "model": f"models/{MODEL}",
        "generationConfig": {"responseModalities": ["AUDIO"]},
        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
    }
}
PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


async def pace(
    frames: list[bytes], speed: float, send: Callable[[bytes], Awaitable[Any] | None]
) -> None:
    """Send each frame at its slot on an absolute schedule (20 ms / speed apart)."""
    loop = asyncio.get_running_loop()
    period = 0.02 / speed
    t0 = loop.time()
    for i, pcm in enumerate(frames):
        pending = send(pcm)
        if pending is not None:
            await pending
        delay = t0 + (i + 1) * period - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


def pace_from_thread(
    frames: list[bytes], speed: float, post: Callable[[Any], None], make: Callable[[bytes], Any]
) -> None:
    """The mic's side: post each frame at its slot (20 ms / speed apart, absolute
    schedule) from this (non-loop) thread."""
    period = 0.02 / speed
    t0 = time.monotonic()
    for i, pcm in enumerate(frames):
        post(make(pcm))
        delay = t0 + (i + 1) * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)


async def run_voiced(url: str, frames: list[bytes], speed: float) -> float:
    from daemon import wire
    from daemon.events import DeviceState, MicFrame
    from daemon.runtime.connection import Endpoint
    from daemon.runtime.supervisor import Inbox, Supervisor
    from daemon.session import Play, PttStart, PttStop, Session, SessionSettings, ShowStates

    inbox = Inbox()
    session = Session(SessionSettings(pre_roll_ms=0), wire.SetupConfig(model=MODEL), "gemini")
    sup = Supervisor(session, Endpoint(url + PATH, {"x-goog-api-key": "bench"}), inbox=inbox)
    ready, replied = asyncio.Event(), asyncio.Event()

    def watch(effect: object) -> None:
        if isinstance(effect, ShowStates) and DeviceState.IDLE in effect.states:
            ready.set()
        elif isinstance(effect, Play):
            replied.set()

    sup.subscribe(watch)
    cpu: list[float] = []

    async def drive() -> None:
        await ready.wait()
        c0 = time.process_time()
        inbox.post(PttStart())
        # A thread of its own, as hw.mic's PortAudio callback: the hop is paid.
        await asyncio.to_thread(pace_from_thread, frames, speed, inbox.post, MicFrame)
        inbox.post(PttStop())
        await replied.wait()
        cpu.append(time.process_time() - c0)
        sup.stop()

    await sup.run(drive())
    if not cpu:
        raise RuntimeError("voiced run ended without a reply")
    return cpu[0]


async def run_sdk(url: str, frames: list[bytes], speed: float) -> float:
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="bench", http_options={"api_version": "v1beta"})
    # LIVE_PROTOCOL.md §7 (b): the SDK forces wss://; point it at the plain-ws loopback.
    client._api_client._websocket_base_url = lambda *a, **k: url
    client._api_client._websocket_ssl_ctx = {}
    config = types.LiveConnectConfig(
        response_modalities=["AUDIO"],
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
        ),
    )
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        c0 = time.process_time()
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await pace(
            frames,
            speed,
            lambda pcm: session.send_realtime_input(
                audio=types.Blob(data=pcm, mime_type="audio/pcm;rate=16000")
            ),
        )
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        async for message in session.receive():
            if message.server_content and message.server_content.model_turn:
                break
        return time.process_time() - c0


async def run_floor(url: str, frames: list[bytes], speed: float) -> float:
    from websockets.asyncio.client import connect

    async with connect(
        url + PATH, additional_headers={"x-goog-api-key": "bench"}, compression=None
    ) as ws:
        await ws.send(json.dumps(PTT_SETUP))
        await ws.recv()  # setupComplete
        c0 = time.process_time()
        await ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
        await pace(
            frames,
            speed,
            lambda pcm: ws.send(
                json.dumps(
                    {
                        "realtimeInput": {
                            "audio": {
                                "data": base64.b64encode(pcm).decode("ascii"),
                                "mimeType": "audio/pcm;rate=16000",
                            }
                        }
                    }
                )
            ),
        )
        await ws.send(json.dumps({"realtimeInput": {"activityEnd": {}}}))
        while True:
            message = json.loads(await ws.recv())
            if "modelTurn" in message.get("serverContent", {}):
                break
        return time.process_time() - c0


RUNNERS = {"voiced": run_voiced, "sdk": run_sdk, "floor": run_floor}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(RUNNERS))
    parser.add_argument("--url", required=True, help="ws://HOST:PORT of the Live server")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio seconds to stream")
    parser.add_argument("--speed", type=float, default=20.0, help="× realtime pacing")
    args = parser.parse_args(argv)
    frames = audio_frames(args.seconds)
    cpu = asyncio.run(RUNNERS[args.kind](args.url, frames, args.speed))
    minutes = len(frames) * 0.02 / 60
    emit(
        {
            "kind": args.kind,
            "cpu_s": cpu,
            "audio_min": minutes,
            "cpu_s_per_audio_min": cpu / minutes,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
