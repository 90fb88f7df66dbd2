"""Supervisor companions: coroutines the supervisor runs beside its loop and cancels at stop."""

from __future__ import annotations

import asyncio

from daemon.liveserver import LiveServer
from daemon.runtime.connection import Endpoint
from daemon.runtime.supervisor import Supervisor
from daemon.session import Session
from daemon.vocabulary import SessionSettings
from daemon.wire import SetupConfig


def test_companions_run_beside_the_loop_fail_alone_and_are_cancelled_at_stop() -> None:
    seen: list[str] = []

    async def body() -> None:
        async with asyncio.timeout(20), LiveServer() as server:
            session = Session(
                SessionSettings(), SetupConfig(model="gemini-3.8-live"), "gemini", 0.0
            )
            sup = Supervisor(session, Endpoint(server.endpoint(), {}))

            async def forever() -> None:
                seen.append("forever started")
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    seen.append("forever cancelled")
                    raise

            async def broken() -> None:
                raise RuntimeError("a companion bug")

            async def script() -> None:
                await server.wait_connections(1)
                seen.append("connected")
                sup.stop()

            await sup.run(forever(), broken(), script())
            assert server.connections[0].close_code == 1000

    asyncio.run(body())
    assert seen == ["forever started", "connected", "forever cancelled"]
