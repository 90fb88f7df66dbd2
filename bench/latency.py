"""Child process: the daemon's latencies on loopback — resume gap, playback, push-to-talk.

    python -m bench.latency resume   --goaways 200
    python -m bench.latency playback --replies 5
    python -m bench.latency ptt      --presses 100

Each mode runs the local Live server and the real Supervisor + Session + Connection in
this process and prints one JSON line.

* **resume**: idle, the server sends ``goAway``; as the switch starts the user presses
  and talks. Gap = the core handling goAway → the first audio frame of that turn sent
  on the new socket (close, TCP connect, WebSocket handshake, setup, setupComplete, the
  held turn replayed). After each turn the server's per-turn audio digest is compared
  with what was captured: ``frames_lost``.
* **playback**: reply latency as heard. A turn is talked (press, 0.4 s of frames,
  release, posted from another thread as the button and mic do); the speaker is the
  real reply path (hw.speaker.ReplyPath: jitter buffer, queue) pulled every 20 ms by a
  paced thread as a device would. Per reply: release → first reply sample pulled by
  the device ("heard"), split into the server's part (release → first reply audio
  decoded off the socket) and ours (that → the first sample at the device: core,
  speaker.play, jitter buffer, device clock); underruns per reply beside it; and the
  code path alone (socket → ``speaker.play``). At the server's default pacing
  (faster than realtime, as the Live API streams) and at realtime.
* **ptt**: the real hw.button.Button on a gpiozero mock pin, driven from another thread
  (as gpiozero's would); a loopback TCP proxy (testing.proxy) between daemon and server
  notes when the daemon's bytes arrive. Latency = pin edge → activityStart on the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import threading
import time
from typing import Any, Callable

from bench.common import MODEL, audio_frames, emit, percentile
from daemon import wire
from daemon.events import ButtonPressed, ButtonReleased, DeviceState, Event, MicFrame
from daemon.liveserver import LiveServer, ServerLimits
from daemon.runtime.connection import Endpoint
from daemon.runtime.supervisor import Inbox, Supervisor
from daemon.session import (
    CloseConnection,
    Notify,
    Play,
    SendFrame,
    ServerEvents,
    Session,
    SessionSettings,
)
from testing.devices import PacedSpeaker

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


async def until(pred: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not (got := pred()):
        if loop.time() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)
    return got


def _supervisor(
    url: str, scale: float, inbox: Inbox, settings: SessionSettings, **hw: Any
) -> Supervisor:
    session = Session(
        settings, wire.SetupConfig(model=MODEL, system_instruction="Be brief."), "gemini"
    )
    return Supervisor(
        session,
        Endpoint(url + PATH, {"x-goog-api-key": "bench"}),
        inbox=inbox,
        time_scale=scale,
        **hw,
    )


def _idle(sup: Supervisor) -> bool:
    return sup.session.phase.value == "live" and sup.states() == frozenset({DeviceState.IDLE})


# ------------------------------------------------------------------------------ resume gap


async def resume(goaways: int, scale: float = 50.0) -> dict[str, Any]:
    async with LiveServer(limits=ServerLimits(time_scale=scale), voice="synthetic") as server:
        inbox = Inbox()
        sup = _supervisor(server.url, scale, inbox, SessionSettings(reply_timeout=300.0))
        loop = asyncio.get_running_loop()
        marks: dict[str, float] = {}
        gaps: list[float] = []
        state = {"conn": 0}

        def watch(effect: object) -> None:
            if isinstance(effect, Notify) and effect.message.startswith("goAway"):
                marks["goaway"] = loop.time()
                inbox.post(ButtonPressed())  # the user talks straight into the switch
            elif isinstance(effect, CloseConnection) and "goaway" in marks:
                state["conn"] = effect.conn_id
            elif (
                isinstance(effect, SendFrame)
                and "goaway" in marks
                and "flow" not in marks
                and effect.conn_id > state["conn"] > 0
                and '"audio"' in effect.frame[:40]
            ):
                marks["flow"] = loop.time()

        sup.subscribe(watch)
        captured: list[bytes] = []
        seed = 0

        async def drive() -> None:
            nonlocal seed
            await until(lambda: _idle(sup), what="first IDLE")
            for _ in range(goaways):
                marks.clear()
                seed += 1
                frames = audio_frames(0.8, seed)  # 15 pre-roll + 25 spoken
                for pcm in frames[:15]:
                    inbox.post(MicFrame(pcm))
                server.faults.go_away_now(time_left=60.0)
                await until(lambda: "goaway" in marks, what="goAway")
                for pcm in frames[15:]:  # spoken while the switch runs: 2 ms apart
                    inbox.post(MicFrame(pcm))
                    await asyncio.sleep(0.002)
                await until(lambda: "flow" in marks, what="audio on the new socket")
                inbox.post(ButtonReleased(0.5))
                captured.append(b"".join(frames))
                gaps.append((marks["flow"] - marks["goaway"]) * 1000)
                digest = hashlib.sha256(captured[-1]).hexdigest()
                await until(
                    lambda: any(t.audio_digest == digest and t.replies for t in server.user_turns),
                    what="the answer",
                )
                await until(lambda: _idle(sup), what="IDLE again")
            sup.stop()

        await sup.run(drive())
        answered = {t.audio_digest for t in server.user_turns if t.replies}
        lost = sum(len(c) // 640 for c in captured if hashlib.sha256(c).hexdigest() not in answered)
        st = sup.stats()
        return {
            "goaways": len(gaps),
            "resumes": st.resumes,
            "rollovers": st.rollovers,
            "resume_gap_p50_ms": percentile(gaps, 50),
            "resume_gap_p95_ms": percentile(gaps, 95),
            "resume_gap_max_ms": max(gaps),
            "frames_lost": lost + st.frames_dropped,
            "frames_captured": sum(len(c) // 640 for c in captured),
        }


# ------------------------------------------------------------------------------ playback


class _TimingInbox(Inbox):
    """An Inbox noting when each reply chunk was decoded off the socket (post is called
    by the connection right after decoding) and its byte offset in the reply stream."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[float, int]] = []  # (time, offset of its first byte)
        self.audio_bytes = 0

    def post(self, event: Event) -> None:
        if isinstance(event, ServerEvents):
            for ev in event.events:
                if isinstance(ev, wire.ModelAudio):
                    self.received.append((time.monotonic(), self.audio_bytes))
                    self.audio_bytes += len(ev.pcm)
        super().post(event)


async def heard(replies: int, pace: float | None) -> dict[str, Any]:
    """Button release → first reply sample at the device, per reply.

    ``pace`` None is the server's default pacing (faster than realtime, as the Live API
    streams); 1.0 is realtime. The release and the mic frames are posted from another
    thread, as hw.button and hw.mic do; the speaker is the real reply path pulled by a
    20 ms device clock (testing.devices.PacedSpeaker)."""
    limits = (
        ServerLimits(time_scale=1.0)
        if pace is None
        else ServerLimits(time_scale=1.0, reply_pace=pace)
    )
    async with LiveServer(limits=limits, voice="synthetic") as server:
        inbox = _TimingInbox()
        speaker = PacedSpeaker(inbox.post, speed=1.0, note_pulls=True)
        sup = _supervisor(server.url, 1.0, inbox, SessionSettings(), speaker=speaker)
        handed: list[float] = []
        sup.subscribe(lambda e: handed.append(time.monotonic()) if isinstance(e, Play) else None)
        rows: list[dict[str, float]] = []

        def talk(i: int, released: list[float]) -> None:  # the button and mic threads
            inbox.post(ButtonPressed())
            for pcm in audio_frames(0.4, i):
                inbox.post(MicFrame(pcm))
            released.append(time.monotonic())
            inbox.post(ButtonReleased(0.4))

        async def drive() -> None:
            await until(lambda: _idle(sup), what="first IDLE")
            for i in range(replies):
                await asyncio.sleep(0.1)  # the device at rest between turns
                chunks_before, played_before = len(inbox.received), len(handed)
                underruns_before = speaker.underruns
                released: list[float] = []
                thread = threading.Thread(target=talk, args=(i, released))
                thread.start()
                await until(
                    lambda: (
                        server.user_turns
                        and len(server.user_turns) == i + 1
                        and server.user_turns[-1].replies
                    ),
                    what="the reply",
                )
                await until(
                    lambda: (
                        speaker.path.queue.phase.value == "idle"
                        and speaker.path.queue.bytes_played >= inbox.audio_bytes
                    ),
                    30,
                    what="the reply played out",
                )
                thread.join()
                first_at, offset = inbox.received[chunks_before]
                pulls = speaker.pulls or []
                sample_at = next(t for t, played in pulls if played > offset)
                rows.append(
                    {
                        "heard": (sample_at - released[0]) * 1000,
                        "server": (first_at - released[0]) * 1000,
                        "ours": (sample_at - first_at) * 1000,
                        "to_play": (handed[played_before] - first_at) * 1000,
                        "underruns": speaker.underruns - underruns_before,
                    }
                )
            sup.stop()

        await sup.run(drive())
        col = {k: [r[k] for r in rows] for k in rows[0]}
        return {
            "replies": replies,
            "pace": pace if pace is not None else limits.reply_pace,
            "heard_p50_ms": percentile(col["heard"], 50),
            "heard_p95_ms": percentile(col["heard"], 95),
            "server_p50_ms": percentile(col["server"], 50),
            "added_p50_ms": percentile(col["ours"], 50),
            "added_p95_ms": percentile(col["ours"], 95),
            "added_max_ms": max(col["ours"]),
            "to_play_p95_ms": percentile(col["to_play"], 95),
            "underruns_per_reply": col["underruns"],
        }


async def playback(replies: int) -> dict[str, Any]:
    """Reply latency as heard, at the server's default pacing and at realtime."""
    default = await heard(replies, None)
    realtime = await heard(replies, 1.0)
    out: dict[str, Any] = {
        "replies": replies,
        "reply_pace_default": default["pace"],
        "reply_heard_latency_p50_ms": default["heard_p50_ms"],
        "reply_heard_latency_p95_ms": default["heard_p95_ms"],
        "reply_server_latency_p50_ms": default["server_p50_ms"],
        "reply_added_latency_p50_ms": default["added_p50_ms"],
        "reply_added_latency_p95_ms": default["added_p95_ms"],
        "reply_added_latency_max_ms": default["added_max_ms"],
        "reply_underruns_per_reply": default["underruns_per_reply"],
        "playback_pipeline_p95_ms": default["to_play_p95_ms"],
    }
    for k, v in realtime.items():
        if k.endswith("_ms") or k == "underruns_per_reply":
            out[f"realtime_{k}"] = v
    return out


# ------------------------------------------------------------------------------ push-to-talk


async def ptt(presses: int, scale: float = 20.0) -> dict[str, Any]:
    from hw.button import Button, ButtonSettings
    from hw.sim import mock_pin_factory
    from testing.proxy import TcpProxy

    async with LiveServer(limits=ServerLimits(time_scale=scale), voice="synthetic") as server:
        with TcpProxy("127.0.0.1", server.port) as proxy:
            inbox = Inbox()
            factory = mock_pin_factory()
            settings = ButtonSettings()
            button = Button(settings, inbox.post, pin_factory=factory)
            pin = factory.pin(settings.pin)
            sup = _supervisor(
                proxy.url(), scale, inbox, SessionSettings(reply_timeout=300.0), button=button
            )
            lat: list[float] = []

            def edge(level: str, out: list[float]) -> None:
                out.append(time.monotonic())
                pin.drive_low() if level == "low" else pin.drive_high()

            async def drive() -> None:
                await until(lambda: _idle(sup), what="first IDLE")
                for i in range(presses):
                    await asyncio.sleep(0.03)  # past the debounce lock-out; the link is quiet
                    n = len(proxy.client_chunks)
                    t: list[float] = []
                    thread = threading.Thread(target=edge, args=("low", t))
                    thread.start()
                    chunk = await until(
                        lambda: len(proxy.client_chunks) > n and proxy.client_chunks[n],
                        what="activityStart",
                    )
                    thread.join()
                    lat.append((chunk[0] - t[0]) * 1000)
                    for pcm in audio_frames(0.1, i):
                        inbox.post(MicFrame(pcm))
                    await asyncio.sleep(0.03)
                    threading.Thread(target=edge, args=("high", [])).start()
                    await until(
                        lambda: len(server.user_turns) == i + 1 and server.user_turns[-1].replies,
                        what="the answer",
                    )
                    await until(lambda: _idle(sup), what="IDLE again")
                sup.stop()

            await sup.run(drive())
            factory.close()
        return {
            "presses": presses,
            "ptt_latency_p50_ms": percentile(lat, 50),
            "ptt_latency_p99_ms": percentile(lat, 99),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("resume", "playback", "ptt"))
    parser.add_argument("--count", type=int, default=None, help="goAways / replies / presses")
    args = parser.parse_args(argv)
    if args.mode == "resume":
        out = asyncio.run(resume(args.count or 200))
    elif args.mode == "playback":
        out = asyncio.run(playback(args.count or 5))
    else:
        out = asyncio.run(ptt(args.count or 100))
    emit({k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
