"""Journal fields: connection ends carry CLOSE_CODE/REASON, the core's lines a SESSION_ID."""

from __future__ import annotations

import asyncio
import logging

import pytest

from daemon.liveserver import LiveServer
from daemon.runtime.connection import Endpoint
from daemon.runtime.supervisor import Supervisor
from daemon.session import Session
from daemon.vocabulary import SessionSettings
from daemon.wire import SetupConfig


def test_close_codes_and_session_ids_are_structured_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    async def body() -> None:
        async with asyncio.timeout(20), LiveServer() as server:
            session = Session(
                SessionSettings(backoff_base=0.01),
                SetupConfig(model="gemini-3.8-live"),
                "gemini",
                0.0,
            )
            sup = Supervisor(session, Endpoint(server.endpoint(), {}))

            async def script() -> None:
                await server.wait_connections(1)
                server.faults.close_now(1011, "Internal error occurred.")
                await server.wait_connections(2)
                sup.stop()

            await sup.run(script())

    asyncio.run(body())
    closes = [r for r in caplog.records if getattr(r, "CLOSE_CODE", None) == 1011]
    assert (
        closes and closes[0].REASON == "Internal error occurred." and closes[0].CONNECTION_ID == 1
    )
    core = [r for r in caplog.records if r.name == "daemon.session" and hasattr(r, "SESSION_ID")]
    assert core and all(isinstance(r.SESSION_ID, int) and r.SESSION_ID >= 1 for r in core)
