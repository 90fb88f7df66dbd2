"""
A short scripted conversation against a Live server, printing what happened.

``voiced live-server --demo`` runs it against a fresh local server (time
scale 100 by default, so the 10-minute connection cap takes 6 s). It uses the
daemon's own wire encoders and decoder over a plain websockets client:

1. setup (push-to-talk, resumption, transcriptions) → setupComplete
2. a push-to-talk turn with half a second of speech-like audio → reply
3. a typed turn (``realtimeInput.text``) → reply
4. disconnect, resume with the last handle → the session remembers
5. wait for ``goAway`` and the close after it
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from daemon import wire
from daemon.liveserver.model import resample, synthetic_speech

__all__ = ["scripted_conversation"]


@dataclass
class _Turn:
    heard: str = ""
    said: str = ""
    audio_seconds: float = 0.0
    usage: wire.Usage | None = None
    handle: str | None = None
    events: list[wire.ServerEvent] = field(default_factory=list)


def _speech_16k(text: str) -> bytes:
    """Speech-like 16 kHz audio standing in for a microphone."""
    pcm24 = np.frombuffer(synthetic_speech(text), dtype="<i2").astype(np.float64)
    return np.clip(resample(pcm24, 24_000, 16_000), -32768, 32767).astype("<i2").tobytes()


async def _until_turn_complete(ws: ClientConnection) -> _Turn:
    turn = _Turn()
    while True:
        for event in wire.decode_server_message(await ws.recv()):
            turn.events.append(event)
            if isinstance(event, wire.InputTranscription):
                turn.heard += event.text
            elif isinstance(event, wire.OutputTranscription):
                turn.said += event.text
            elif isinstance(event, wire.ModelAudio):
                turn.audio_seconds += len(event.pcm) / (2 * event.rate)
            elif isinstance(event, wire.Usage):
                turn.usage = event
            elif isinstance(event, wire.TurnComplete):
                # The boundary's resumption update follows turnComplete.
                for late in wire.decode_server_message(await ws.recv()):
                    if isinstance(late, wire.ResumptionUpdate) and late.resumable:
                        turn.handle = late.new_handle
                return turn


async def scripted_conversation(
    url: str,
    out: Callable[[str], None] = print,
    model: str = "gemini-3.8-live",
    api_key: str | None = None,
) -> bool:
    """Run the script against *url*; ``out`` gets one line per step.
    True if all went as expected."""
    headers = {"x-goog-api-key": api_key} if api_key else {}
    start = time.monotonic()

    def say(text: str) -> None:
        out(f"[{time.monotonic() - start:6.2f} s] {text}")

    async def open_session(handle: str | None) -> tuple[ClientConnection, str | None]:
        ws = await connect(url, additional_headers=headers, max_size=None)
        await ws.send(wire.encode(wire.setup_message(wire.SetupConfig(model=model, handle=handle))))
        events = wire.decode_server_message(await ws.recv())
        assert isinstance(events[0], wire.SetupComplete), events
        first = wire.decode_server_message(await ws.recv())
        new = next((e.new_handle for e in first if isinstance(e, wire.ResumptionUpdate)), None)
        say(f"setupComplete ({'resumed' if handle else 'new session'}), handle {str(new)[:10]}…")
        return ws, new

    ws, handle = await open_session(None)
    speech = _speech_16k("hello there")
    say(f"push-to-talk: {len(speech) / 32000:.2f} s of audio")
    await ws.send(wire.encode(wire.activity_start_message()))
    for i in range(0, len(speech), 640):
        await ws.send(wire.encode_audio(speech[i : i + 640]))
    await ws.send(wire.encode(wire.activity_end_message()))
    turn = await _until_turn_complete(ws)
    say(f"  heard: {turn.heard}")
    say(
        f"  said:  {turn.said}  ({turn.audio_seconds:.2f} s of 24 kHz audio, "
        f"{turn.usage.total_tokens if turn.usage else '?'} tokens)"
    )
    ok = turn.said.startswith("Turn 1:")

    await ws.send(wire.encode(wire.text_message("What did you hear?")))
    turn = await _until_turn_complete(ws)
    say(f"typed turn → said: {turn.said}")
    handle = turn.handle or handle
    await ws.close()
    say("disconnected; resuming with the last handle")

    ws, _ = await open_session(handle)
    await ws.send(wire.encode(wire.text_message("Still there?")))
    turn = await _until_turn_complete(ws)
    say(f"resumed turn → said: {turn.said}")
    ok = ok and turn.said.startswith("Turn 3:")

    say("waiting for goAway (connection cap)…")
    try:
        while True:
            for event in wire.decode_server_message(await ws.recv()):
                if isinstance(event, wire.GoAway):
                    say(f"goAway: timeLeft {event.time_left:g} s")
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else 1006
        reason = closed.rcvd.reason if closed.rcvd else ""
        say(f"closed by server: {code} {reason}")
        ok = ok and code == 1011
    return ok
