"""What the local server's "model" does with a NON_BLOCKING tool result, by its
``scheduling`` (FIELD_REPORTS Part 3; LIVE_PROTOCOL.md §3, where the field sits in each
FunctionResponse): SILENT adds it to the context and says nothing; WHEN_IDLE and INTERRUPT
are spoken (this model's turn waits for the result with nothing else to say, so it is
idle when the result comes). A blocking call is awaited and spoken whatever the field says.
On the wire, with a raw client."""

from __future__ import annotations

from typing import Any

import pytest

from daemon import wire
from daemon.liveserver import LiveServer, ServerLimits
from tests.liveserver.harness import RawClient, audio_of, run, text_of

# Gentle: at 600x the server's own deadlines (a few nominal seconds) are milliseconds of wall
# time, which a loaded machine misses ("1011 Deadline expired"); replies stay short at 10x.
LIMITS = ServerLimits(time_scale=10.0)
MODEL = "gemini-3.8-live"  # NON_BLOCKING by default, takes SILENT / WHEN_IDLE / INTERRUPT


async def call_and_answer(
    server: LiveServer, scheduling: str | None, behavior: str = ""
) -> tuple[RawClient, list[dict[str, Any]]]:
    """Ask for ``lights``, answer its toolCall with ``scheduling``; returns the client and
    what the server sent from the answer up to the turn's turnComplete."""
    client = await RawClient.open(server.endpoint())
    setup = wire.setup_message(wire.SetupConfig(model=MODEL))
    decl: dict[str, Any] = {"name": "lights", "description": "l"}
    if behavior:
        decl["behavior"] = behavior
    setup["setup"]["tools"] = [{"functionDeclarations": [decl]}]
    await client.send(setup)
    assert await client.recv() == {"setupComplete": {}}
    await client.recv()  # first handle
    await client.send(wire.text_message('call lights {"on": true}'))
    msgs = await client.recv_until(lambda m: "toolCall" in m)
    call_id = msgs[-1]["toolCall"]["functionCalls"][0]["id"]
    answer = wire.FunctionResponse(call_id, "lights", {"ok": True}, scheduling)
    await client.send(wire.tool_response_message([answer]))
    return client, await client.until_turn_complete()


def history(server: LiveServer) -> list[tuple[str, str]]:
    return [(e.role, e.text) for e in server.sessions[0].entries]


def test_a_silent_result_joins_the_context_and_nothing_is_spoken() -> None:
    async def body() -> None:
        async with LiveServer(limits=LIMITS, voice="synthetic") as server:
            client, msgs = await call_and_answer(server, "SILENT")
            assert audio_of(msgs) == b"" and text_of(msgs) == ""
            assert not any("modelTurn" in m.get("serverContent", {}) for m in msgs)
            # The turn still ends properly: the client's ask is answered, in silence.
            assert any(m.get("serverContent", {}).get("generationComplete") for m in msgs)
            assert msgs[-1]["serverContent"]["turnComplete"] is True
            turn = server.user_turns[0]
            assert (turn.replies, turn.silent_results, turn.reply_text) == (1, 1, "")
            assert ("user", '[lights returned {"ok":true}]') in history(server)
            # And the conversation carries on: the next question is answered aloud.
            await client.send(wire.text_message("And now?"))
            after = await client.until_turn_complete()
            assert text_of(after).startswith("Turn 2") and audio_of(after)
            await client.close()

    run(body)


@pytest.mark.parametrize("scheduling", ["WHEN_IDLE", "INTERRUPT", None])
def test_when_idle_and_interrupt_results_are_spoken(scheduling: str | None) -> None:
    async def body() -> None:
        async with LiveServer(limits=LIMITS, voice="synthetic") as server:
            client, msgs = await call_and_answer(server, scheduling)
            assert text_of(msgs) == 'Turn 1: lights returned {"ok":true}.'
            assert audio_of(msgs)
            assert server.user_turns[0].silent_results == 0
            await client.close()

    run(body)


def test_a_blocking_calls_result_is_spoken_whatever_its_scheduling() -> None:
    """scheduling is for NON_BLOCKING results; a BLOCKING call's answer is awaited."""

    async def body() -> None:
        async with LiveServer(limits=LIMITS, voice="synthetic") as server:
            client, msgs = await call_and_answer(server, "SILENT", behavior="BLOCKING")
            assert text_of(msgs) == 'Turn 1: lights returned {"ok":true}.'
            assert server.user_turns[0].silent_results == 0
            await client.close()

    run(body)
