"""A float-clock driver for the pure session core (no I/O, no event loop)."""

from __future__ import annotations

import json
import random
from typing import Any, Iterable

from daemon import wire
from daemon.events import (
    ButtonPressed,
    ButtonReleased,
    Event,
    MicFrame,
    PlaybackDrained,
)
from daemon.session import (
    CloseConnection,
    ConnectionClosed,
    ConnectionOpened,
    Effect,
    OpenConnection,
    SendFrame,
    ServerEvents,
    Session,
    SessionSettings,
    Start,
    TimerFired,
)

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"


def frame(i: int, size: int = 640) -> bytes:
    """A recognisable 20 ms mic frame: its index repeated."""
    return (i % 65536).to_bytes(2, "little") * (size // 2)


class Harness:
    """Drives one :class:`Session` with a float clock and records every effect."""

    def __init__(
        self,
        settings: SessionSettings | None = None,
        *,
        api: str = "gemini",
        model: str = MODEL,
        instruction: str | None = "Be brief.",
        session: Session | None = None,
        seed: int = 1,
    ) -> None:
        self.now = 0.0
        self.session = session or Session(
            settings or SessionSettings(),
            wire.SetupConfig(model=model, system_instruction=instruction),
            api,
            0.0,
            rng=random.Random(seed).random,
        )
        self.effects: list[Effect] = []
        self.conn = 0
        self.mic_index = 0

    # -- driving
    def feed(self, event: Event) -> list[Effect]:
        out = self.session.handle(event, self.now)
        self.effects.extend(out)
        for e in out:
            if isinstance(e, OpenConnection):
                self.conn = e.conn_id
        return out

    def advance(self, dt: float) -> list[Effect]:
        """Move the clock ``dt`` seconds, firing every deadline on the way
        (as the supervisor does)."""
        target = self.now + dt
        out: list[Effect] = []
        while True:
            d = self.session.deadline()
            if d is None or d > target:
                break
            self.now = max(self.now, d)
            out += self.feed(TimerFired())
        self.now = target
        return out

    def reconnect(self, limit: float = 120.0) -> None:
        """Let the backoff run out (small steps) until a new connection is asked for."""
        start = self.now
        while self.session.phase.value != "connecting":
            assert self.now - start < limit, f"no reconnect within {limit} s"
            self.advance(0.05)

    def server(self, *events: wire.ServerEventT) -> list[Effect]:
        return self.feed(ServerEvents(self.conn, tuple(events)))

    def server_frame(self, message: dict[str, Any]) -> list[Effect]:
        return self.server(*wire.decode_server_message(json.dumps(message).encode()))

    def mic(self, n: int = 1) -> list[bytes]:
        """Post ``n`` consecutive mic frames, 20 ms apart; returns their PCM."""
        out = []
        for _ in range(n):
            pcm = frame(self.mic_index)
            self.mic_index += 1
            self.feed(MicFrame(pcm))
            out.append(pcm)
            self.now += 0.02
        return out

    def connect(self) -> int:
        """Start (or continue) until LIVE on a new connection; returns its id."""
        if self.session.phase.value in ("new", "failed"):
            self.feed(Start())
        assert self.session.phase.value == "connecting", self.session.phase
        self.feed(ConnectionOpened(self.conn))
        self.server(wire.SetupComplete())
        assert self.session.phase.value == "live"
        return self.conn

    def finish_close(self) -> None:
        """The connection we were asked to close is gone."""
        closes = [e for e in self.effects if isinstance(e, CloseConnection)]
        assert closes, "no CloseConnection was asked for"
        self.feed(ConnectionClosed(closes[-1].conn_id, 1000, ""))

    def reply(self, text: str = "Sure.", chunks: int = 3, handle: str | None = "h") -> None:
        """A complete model reply as the real server sends it (LIVE_PROTOCOL.md §4)."""
        for _ in range(chunks):
            self.server(wire.ModelAudio(b"\x01\x00" * 2400), wire.OutputTranscription(text))
        self.server(wire.GenerationComplete())
        self.server(wire.Usage(100, 20, 120), wire.TurnComplete())
        if handle:
            self.server(wire.ResumptionUpdate(handle, True))

    # -- inspecting
    def sent(self, effects: Iterable[Effect] | None = None, conn: int | None = None) -> list[dict]:
        """Client messages sent (decoded), optionally on one connection."""
        return [
            json.loads(e.frame)
            for e in (self.effects if effects is None else effects)
            if isinstance(e, SendFrame) and (conn is None or e.conn_id == conn)
        ]

    def of(self, kind: type, effects: Iterable[Effect] | None = None) -> list[Any]:
        return [e for e in (self.effects if effects is None else effects) if isinstance(e, kind)]

    def setups(self) -> list[dict]:
        return [json.loads(e.setup_frame)["setup"] for e in self.of(OpenConnection)]

    def clear(self) -> None:
        self.effects.clear()


def audio_sent(messages: list[dict]) -> list[bytes]:
    return [
        wire.b64decode(m["realtimeInput"]["audio"]["data"])
        for m in messages
        if "audio" in m.get("realtimeInput", {})
    ]


def kinds(messages: list[dict]) -> list[str]:
    """A compact trace: "start", "audio", "end", "content", "content!" (turnComplete), "update"."""
    out = []
    for m in messages:
        ri = m.get("realtimeInput", {})
        if "activityStart" in ri:
            out.append("start")
        elif "activityEnd" in ri:
            out.append("end")
        elif "audio" in ri:
            out.append("audio")
        elif "video" in ri:
            out.append("video")
        elif "clientContent" in m:
            out.append("content!" if m["clientContent"].get("turnComplete") else "content")
        elif "contextUpdate" in m:
            out.append("update")
        else:
            out.append("?")
    return out


def live(settings: SessionSettings | None = None, **kw) -> Harness:
    h = Harness(settings, **kw)
    h.connect()
    h.server(wire.ResumptionUpdate("h0", True))
    return h


def talk(h: Harness, frames: int = 10) -> list[bytes]:
    """A whole push-to-talk turn; returns the frames captured after the press."""
    h.feed(ButtonPressed())
    pcm = h.mic(frames)
    h.feed(ButtonReleased(frames * 0.02))
    return pcm


def come_back(h: Harness) -> int:
    """The connection the core is opening comes up (after any backoff)."""
    if h.session.phase.value == "closing":
        h.finish_close()
    h.reconnect()
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    return h.conn


def exchange(h: Harness, said: str, answer: str, handle: str = "h") -> None:
    talk(h)
    h.server(wire.InputTranscription(said))
    h.reply(text=answer, chunks=1, handle=handle)
    h.feed(PlaybackDrained())


def reopen(h: Harness) -> list[dict]:
    h.finish_close()
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    return h.sent(conn=h.conn)


def responses(h: Harness, conn: int | None = None) -> list[dict]:
    return [
        r
        for m in h.sent(conn=conn)
        if "toolResponse" in m
        for r in m["toolResponse"]["functionResponses"]
    ]


def call(h: Harness, *calls: tuple[str, str, dict]) -> None:
    h.server(wire.ToolCall(tuple(wire.FunctionCall(i, n, a) for i, n, a in calls)))
