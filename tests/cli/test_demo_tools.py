"""The tools and Home Assistant segment of ``voiced demo`` (daemon/cli/demo/tools.py), on its own
against the local Live server: the pin goes high, the result is spoken, the discovery and
an announcement round trip go through a real mosquitto."""

from __future__ import annotations

import asyncio

from daemon.cli.demo.tools import run_tools_segment
from daemon.liveserver import LiveServer, ServerLimits


def test_tools_segment() -> None:
    lines: list[tuple[str, str]] = []

    async def body() -> dict:
        async with LiveServer(limits=ServerLimits(time_scale=20.0), voice="synthetic") as server:
            return await run_tools_segment(
                server, "gemini-3.8-live", 20.0, lambda kind, text: lines.append((kind, text))
            )

    totals = asyncio.run(body())
    assert totals == {
        "tool_turns": 1,
        "pin_went_high": True,
        "ha_entities": 11,
        "announce_round_trip": True,
        "errors": [],
    }, lines
    assert ("GPIO", "pin 17 low → high (porch light on)") in lines
