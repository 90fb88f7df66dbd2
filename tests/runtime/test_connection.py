"""The websockets adapter (daemon/runtime/connection.py) on real loopback sockets."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from daemon import wire
from daemon.events import Event
from daemon.liveserver import LiveServer, ServerLimits
from daemon.runtime.connection import Connection, Endpoint, Keepalive
from daemon.session import (
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpened,
    FrameRejected,
    ServerEvents,
)
from tests.core.harness import MODEL
from tests.runtime.harness import run, until

SETUP = wire.encode(wire.setup_message(wire.SetupConfig(model=MODEL)))


class Driver:
    """Runs one Connection the way the supervisor does, recording what it posts."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, **kw: Any) -> None:
        self.events: list[Event] = []
        self.conn = Connection(1, Endpoint(url, headers or {}), self.events.append, **kw)
        self.reader: asyncio.Task[None] | None = None
        self.writer: asyncio.Task[None] | None = None

    def start(self) -> "Driver":
        loop = asyncio.get_running_loop()
        self.reader = loop.create_task(self.conn.run(SETUP))
        self.writer = loop.create_task(self.conn.send_loop())
        return self

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def terminal(self) -> Event | None:
        ends = [e for e in self.events if isinstance(e, (ConnectionClosed, ConnectionFailed))]
        assert len(ends) <= 1, f"more than one terminal event: {ends}"
        return ends[0] if ends else None

    async def finish(self) -> None:
        assert self.reader is not None and self.writer is not None
        await asyncio.wait_for(self.reader, 5)
        self.writer.cancel()


async def slow_pong_server(scale: float, pong_delay: float):
    """A server that sends setupComplete, then reads (and so answers pings) only in short
    windows every ``pong_delay`` nominal seconds: pongs arrive that late, like Gemini's."""
    loop = asyncio.get_running_loop()

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        # A *text* frame, as the SDK-style bridges send (LiveServer sends binary):
        # PITFALLS.md "Server frames are binary UTF-8 JSON … Accept both".
        await ws.send('{"setupComplete":{}}')

        def pause() -> None:
            if ws.transport.is_closing():
                return
            ws.transport.pause_reading()
            loop.call_later(pong_delay / scale, resume)

        def resume() -> None:
            if ws.transport.is_closing():
                return
            ws.transport.resume_reading()
            loop.call_later(0.01, pause)

        pause()
        await ws.wait_closed()

    return await serve(handler, "127.0.0.1", 0, ping_interval=None)


def test_keepalive_survives_pongs_25_s_late_where_websockets_defaults_fail() -> None:
    """PITFALLS.md "Keepalive": websockets' 20 s ping_timeout is shorter than Gemini's
    observed 8–30 s pong delay → client-side 1011 "keepalive ping timeout"."""
    scale = 100.0

    async def body() -> None:
        server = await slow_pong_server(scale, pong_delay=25.0)
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        ours = Keepalive()
        defaults = Keepalive(20.0, 20.0, require_pongs=True)  # websockets' own rule
        a = Driver(url, keepalive=Keepalive(ours.interval / scale, ours.timeout / scale)).start()
        b = Driver(
            url,
            keepalive=Keepalive(
                defaults.interval / scale, defaults.timeout / scale, require_pongs=True
            ),
        ).start()
        await asyncio.sleep(200 / scale)  # 200 nominal seconds
        assert isinstance(a.of(ServerEvents)[0].events[0], wire.SetupComplete)
        assert a.terminal() is None, f"our keepalive dropped a healthy connection: {a.terminal()}"
        end = b.terminal()
        assert isinstance(end, ConnectionClosed) and end.code == 1011
        assert "keepalive ping timeout" in end.reason
        a.conn.close()
        await a.finish()
        server.close()
        await server.wait_closed()

    run(body)


def test_malformed_and_oversized_frames_never_end_the_connection() -> None:
    async def body() -> None:
        async with LiveServer(limits=ServerLimits(time_scale=100.0), voice="synthetic") as server:
            d = Driver(server.endpoint()).start()
            await until(lambda: d.of(ServerEvents))
            assert isinstance(d.of(ServerEvents)[0].events[0], wire.SetupComplete)
            server.faults.send_malformed()
            await until(lambda: d.of(FrameRejected), what="FrameRejected")
            server.faults.send_oversized(2 * 1024 * 1024)  # > websockets' 1 MiB default
            await until(lambda: len(d.of(ServerEvents)) >= 2, what="the big frame")
            assert d.terminal() is None
            d.conn.send(wire.encode(wire.text_message("still there?")))
            await until(lambda: server.user_turns and server.user_turns[0].replies)
            d.conn.close(1000, "bye")
            await d.finish()
            end = d.terminal()
            assert isinstance(end, ConnectionClosed) and end.code == 1000
            assert [type(e) for e in d.events[:1]] == [ConnectionOpened]

    run(body)


def test_failures_to_connect_are_reported_by_kind() -> None:
    async def body() -> None:
        async with LiveServer(limits=ServerLimits(time_scale=100.0)) as server:
            bad_path = server.url + "/ws/not.a.service"
            port = server.port
        refused = Driver(f"ws://127.0.0.1:{port}/x").start()
        invalid = Driver("http://[not a uri").start()
        async with LiveServer(limits=ServerLimits(time_scale=100.0)) as server:
            http = Driver(server.url + "/ws/not.a.service").start()
            await http.finish()
        await refused.finish()
        await invalid.finish()
        assert bad_path
        kinds = {
            name: (d.terminal().error_kind, d.terminal().status)
            for name, d in (("refused", refused), ("invalid", invalid), ("http", http))
        }
        assert kinds == {
            "refused": ("connect", None),
            "invalid": ("invalid", None),
            "http": ("http", 404),
        }

    run(body)


def test_close_of_a_stalled_server_is_finished_by_abort() -> None:
    async def body() -> None:
        async with LiveServer(limits=ServerLimits(time_scale=100.0), voice="synthetic") as server:
            d = Driver(server.endpoint(), close_timeout=0.2).start()
            await until(lambda: d.of(ServerEvents))
            server.faults.stall()
            for _ in range(2000):  # fill the socket buffers: the writer blocks on drain
                d.conn.send(wire.encode_audio(b"\0\0" * 8000))
            await asyncio.sleep(0.1)
            d.conn.close(1000, "leaving")
            asyncio.get_running_loop().call_later(0.3, d.conn.abort)  # the supervisor's backstop
            await d.finish()
            assert isinstance(d.terminal(), ConnectionClosed)

    run(body)
