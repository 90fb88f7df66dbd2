"""The daemon's keepalive (daemon/runtime/connection.py) against the server's F13 pong faults.

FIELD_REPORTS.md F13: pongs 8–30 s late, or never, on a healthy session; the daemon must
not disconnect itself. A dead TCP path is still noticed: the kernel must see our pings
acknowledged within ``Keepalive.timeout`` (TCP_USER_TIMEOUT, read back from the socket).
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from daemon import wire
from daemon.liveserver import LiveServer, ServerLimits
from daemon.runtime.connection import Connection, Endpoint, Keepalive
from daemon.vocabulary import ConnectionClosed, ConnectionFailed, ServerEvents
from tests.liveserver.harness import run

SCALE = 100.0
SETUP = wire.encode(wire.setup_message(wire.SetupConfig(model="gemini-3.8-live")))


async def until(pred, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, f"timed out waiting for {pred}"
        await asyncio.sleep(0.005)


class Driven:
    """One Connection run as the supervisor runs it, recording what it posts."""

    def __init__(self, url: str, keepalive: Keepalive) -> None:
        self.events: list = []
        self.conn = Connection(1, Endpoint(url, {}), self.events.append, keepalive=keepalive)
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self.conn.run(SETUP)),
            loop.create_task(self.conn.send_loop()),
        ]

    def ended(self):
        return [e for e in self.events if isinstance(e, (ConnectionClosed, ConnectionFailed))]

    async def stop(self) -> None:
        self.conn.close(1000, "bye")
        await asyncio.wait(self.tasks, timeout=5)


def scaled(keepalive: Keepalive) -> Keepalive:
    return Keepalive(keepalive.interval / SCALE, keepalive.timeout / SCALE, keepalive.require_pongs)


@pytest.mark.parametrize("pong_delay", [25.0, None])
def test_late_or_missing_pongs_never_end_a_healthy_connection(pong_delay):
    async def body():
        async with LiveServer(limits=ServerLimits(time_scale=SCALE), voice="synthetic") as server:
            server.faults.pongs(pong_delay)
            ours = Driven(server.endpoint(), scaled(Keepalive()))
            strict = Driven(server.endpoint(), scaled(Keepalive(20.0, 20.0, require_pongs=True)))
            await until(
                lambda: all(
                    any(isinstance(e, ServerEvents) for e in d.events) for d in (ours, strict)
                )
            )
            await asyncio.sleep(200 / SCALE)  # 200 nominal s: several pings
            assert not ours.ended(), f"our keepalive dropped a healthy connection: {ours.ended()}"
            assert server.connections[0].pings_received >= 3
            # websockets' own rule (a pong within 20 s) would have ended it: the fault bites.
            end = strict.ended()
            assert (
                len(end) == 1 and end[0].code == 1011 and "keepalive ping timeout" in end[0].reason
            )
            await ours.stop()

    run(body, timeout=30)


def test_a_dead_path_is_still_noticed_through_tcp_user_timeout():
    if not hasattr(socket, "TCP_USER_TIMEOUT"):
        pytest.skip("TCP_USER_TIMEOUT is Linux-only")

    async def body():
        async with LiveServer(limits=ServerLimits(time_scale=SCALE), voice="synthetic") as server:
            keepalive = scaled(Keepalive())
            d = Driven(server.endpoint(), keepalive)
            await until(lambda: any(isinstance(e, ServerEvents) for e in d.events))
            assert d.conn.tcp_user_timeout_ms == int(keepalive.timeout * 1000)
            strict = Driven(server.endpoint(), scaled(Keepalive(require_pongs=True)))
            await until(lambda: any(isinstance(e, ServerEvents) for e in strict.events))
            assert strict.conn.tcp_user_timeout_ms == 0  # the OS default: pongs decide
            await d.stop()
            await strict.stop()

    run(body, timeout=30)
