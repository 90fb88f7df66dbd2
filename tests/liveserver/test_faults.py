"""Fault injection: every way the server can misbehave, seen from a raw client."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import connect

from daemon import wire
from daemon.errors import ProtocolError
from daemon.liveserver import LiveServer, ServerLimits
from tests.liveserver.harness import RawClient, no_message, run, text_of

FAST = ServerLimits(time_scale=600.0)


def test_stall_stops_reading_and_writing_but_keeps_the_socket():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            assert server.faults.stall() == 1
            await client.send(wire.text_message("anyone there?"))
            pong = await client.ws.ping()
            await no_message(client, 0.4)
            assert not pong.done()  # no pong either: reading is paused
            rec = server.connections[0]
            assert rec.is_open and rec.faults == ["stall"]
            # Well past the connection cap (1 s): a stalled server closes nothing.
            await asyncio.sleep(0.8)
            assert rec.is_open
            start = time.monotonic()
        assert time.monotonic() - start < 1.9  # stop() aborts; a close handshake would take 2 s

    run(body)


def test_silent_after_goaway_now():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            assert server.faults.silent_after_goaway(now=True, time_left=30) == 1
            assert await client.recv() == {"goAway": {"timeLeft": "30s"}}
            await client.send(wire.text_message("hello?"))
            await no_message(client, 1.3)  # past timeLeft and the cap: no reply, no close
            assert server.connections[0].is_open

    run(body)


def test_silent_after_goaway_armed_for_the_next_connection():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            assert server.faults.silent_after_goaway(now=False) == 0
            client = await RawClient.open(server.endpoint())
            await client.setup()
            assert await client.recv(timeout=2) == {"goAway": {"timeLeft": "60s"}}
            await no_message(client, 0.5)  # the cap (1 s) passes in silence
            assert server.connections[0].is_open
            assert server.connections[0].faults == ["silent_after_goaway"]
            other = await RawClient.open(server.endpoint())  # only one was armed
            await other.setup()
            await other.expect_close(timeout=2)

    run(body)


def test_go_away_now_then_close_after_time_left():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            assert server.faults.go_away_now(time_left=9.5) == 1
            assert await client.recv() == {"goAway": {"timeLeft": "9.5s"}}
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (
                1011,
                "Deadline expired before operation could complete.",
            )
            rec = server.connections[0]
            assert 9.4 <= rec.closed_at - rec.goaway_at < 300  # not at the 600 s cap

    run(body)


def test_delay_setup_complete():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            server.faults.delay_setup_complete(300)  # 0.5 s wall
            client = await RawClient.open(server.endpoint())
            start = time.monotonic()
            await client.setup()
            assert time.monotonic() - start >= 0.45
            second = await RawClient.open(server.endpoint())
            start = time.monotonic()
            await second.setup()
            assert time.monotonic() - start < 0.45  # one connection only

    run(body)


def test_withhold_setup_complete():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            server.faults.withhold_setup_complete()
            client = await RawClient.open(server.endpoint())
            await client.setup(expect_complete=False)
            await no_message(client, 0.5)
            assert (
                server.connections[0].is_open and server.connections[0].setup_completed_at is None
            )

    run(body)


def test_close_next_closes_right_after_setup_complete():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            server.faults.close_next(1011, "The service is currently unavailable.")
            client = await RawClient.open(server.endpoint())
            await client.setup(resumable=False)
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1011, "The service is currently unavailable.")

    run(body)


def test_send_malformed_frame():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            assert server.faults.send_malformed() == 1
            frame = await client.ws.recv()
            with pytest.raises(ProtocolError, match="not JSON"):
                wire.decode_server_message(frame)
            # The connection goes on.
            await client.send(wire.text_message("still there?"))
            assert "you wrote" in text_of(await client.until_turn_complete())

    run(body)


def test_send_unknown_field():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            server.faults.send_unknown_field()
            events = wire.decode_server_message(await client.ws.recv())
            assert events == [wire.UnknownMessage(("futureFeature",))]

    run(body)


def test_send_oversized_frame_trips_the_client_max_size():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())  # websockets default max_size: 1 MiB
            await client.setup()
            server.faults.send_oversized(2 * 1024 * 1024)
            closed = await client.expect_close()
            assert closed.code == 1009 or closed.code == 1006
            await server.wait_closed(1)
            assert server.connections[0].close_code == 1009
            # A client with a generous max_size gets the frame whole.
            ws = await connect(server.endpoint(), max_size=4 * 1024 * 1024)
            await ws.send(
                wire.encode(
                    wire.setup_message(wire.SetupConfig(model="gemini-3.8-live", resumable=False))
                )
            )
            await ws.recv()
            server.faults.send_oversized(2 * 1024 * 1024)
            frame = await ws.recv()
            assert len(frame) >= 2 * 1024 * 1024 - 100
            assert isinstance(wire.decode_server_message(frame)[0], wire.OutputTranscription)
            await ws.close()

    run(body)


def test_faults_now_hit_only_open_connections():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            assert server.faults.close_now() == 0
            assert server.faults.stall() == 0
            a = await RawClient.open(server.endpoint())
            await a.setup()
            b = await RawClient.open(server.endpoint())
            await b.setup()
            assert server.faults.close_now(1011, "Internal error occurred.") == 2
            for c in (a, b):
                assert (await c.expect_close()).code == 1011

    run(body)
