"""``scheduling`` on NON_BLOCKING tool results (FIELD_REPORTS Part 3 and F18; LIVE_PROTOCOL.md
§3: it sits in each FunctionResponse): the core sends the tool's choice on models that take
it, never on the blocking-only gemini-3.1-flash-live-preview; google-genai (the referee)
accepts our encoding; the local server validates the field like the real service."""

from __future__ import annotations

import pytest
from google.genai import types

from daemon import wire
from daemon.liveserver import LiveServer, ServerLimits
from daemon.runtime.actions import parse_tools
from daemon.runtime.tools import declarations, session_tools
from daemon.session import ConnectionClosed, SessionSettings, ToolDone
from tests.core.harness import call, come_back, live, responses, talk
from tests.liveserver.harness import RawClient, run, text_of

# 60x, not 600x: at 600x the 10-minute connection cap is one wall second (a loaded machine
# outlasts it: close 1011 "Deadline expired" mid-test).
FAST = ServerLimits(time_scale=60.0)

TABLES = (
    {"name": "lights", "description": "Lights.", "gpio": {"pin": 17}},
    {"name": "note", "description": "A note.", "scheduling": "SILENT", "gpio": {"pin": 18}},
    {"name": "door", "description": "Door.", "behavior": "BLOCKING", "gpio": {"pin": 19}},
)


def specs():
    return parse_tools(list(TABLES))


def settings(model: str) -> SessionSettings:
    return SessionSettings(backoff_base=0.1, **session_tools(specs(), model))


def test_the_core_sends_each_tools_scheduling_on_a_non_blocking_model() -> None:
    h = live(settings("gemini-3.8-live"), model="gemini-3.8-live")
    talk(h)
    call(
        h,
        ("c1", "lights", {"on": True}),
        ("c2", "note", {"on": True}),
        ("c3", "door", {"on": True}),
    )
    for call_id, name in (("c1", "lights"), ("c2", "note"), ("c3", "door")):
        h.feed(ToolDone(call_id, name, {"ok": True}))
    sent = {r["id"]: r.get("scheduling") for r in responses(h)}
    # INTERRUPT is our default (F18: WHEN_IDLE left voice turns unanswered); a tool's own
    # choice wins; a BLOCKING tool's result is awaited, so it has none.
    assert sent == {"c1": "INTERRUPT", "c2": "SILENT", "c3": None}
    # What google-genai builds from the same fields is what we sent.
    for message in (m for m in h.sent() if "toolResponse" in m):
        parsed = types.LiveClientToolResponse.model_validate(message["toolResponse"])
        ours_all = message["toolResponse"]["functionResponses"]
        for fr, ours in zip(parsed.function_responses or [], ours_all):
            assert fr.id == ours["id"] and fr.name == ours["name"]
            assert (fr.scheduling.value if fr.scheduling else None) == ours.get("scheduling")


def test_a_result_delivered_on_the_resumed_session_keeps_its_scheduling() -> None:
    h = live(settings("gemini-3.8-live"), model="gemini-3.8-live")
    talk(h)
    call(h, ("c1", "note", {"on": True}))
    h.reply("Noting.", handle="h1")
    h.feed(ConnectionClosed(h.conn, 1006, ""))
    h.feed(ToolDone("c1", "note", {"ok": True}))
    conn = come_back(h)
    assert responses(h, conn) == [
        {"id": "c1", "name": "note", "response": {"ok": True}, "scheduling": "SILENT"}
    ]


def test_never_on_the_blocking_only_model() -> None:
    model = "gemini-3.1-flash-live-preview"
    assert all("behavior" not in d for d in declarations(specs(), model))
    h = live(settings(model), model=model)
    talk(h)
    call(h, ("c1", "lights", {"on": True}), ("c2", "note", {"on": True}))
    h.feed(ToolDone("c1", "lights", {"ok": True}))
    h.feed(ToolDone("c2", "note", {"ok": True}))
    assert [r.get("scheduling") for r in responses(h)] == [None, None]


def test_declarations_are_non_blocking_where_the_model_takes_it() -> None:
    decls = {d["name"]: d for d in declarations(specs(), "gemini-3.8-live")}
    assert decls["lights"]["behavior"] == "NON_BLOCKING"
    assert decls["door"]["behavior"] == "BLOCKING"
    for decl in decls.values():
        types.FunctionDeclaration.model_validate(decl)


async def _call_and_answer(server: LiveServer, scheduling: object) -> RawClient:
    client = await RawClient.open(server.endpoint())
    setup = wire.setup_message(wire.SetupConfig(model="gemini-3.8-live"))
    setup["setup"]["tools"] = [{"functionDeclarations": [{"name": "lights", "description": "l"}]}]
    await client.send(setup)
    assert await client.recv() == {"setupComplete": {}}
    await client.recv()  # first handle
    await client.send(wire.text_message("call lights"))
    msgs = await client.recv_until(lambda m: "toolCall" in m)
    call_id = msgs[-1]["toolCall"]["functionCalls"][0]["id"]
    response = wire.tool_response_message([wire.FunctionResponse(call_id, "lights", {"ok": True})])
    response["toolResponse"]["functionResponses"][0]["scheduling"] = scheduling
    await client.send(response)
    return client


def test_the_local_server_takes_a_valid_scheduling_and_records_it() -> None:
    async def body() -> None:
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await _call_and_answer(server, "WHEN_IDLE")
            msgs = await client.until_turn_complete()
            assert text_of(msgs) == 'Turn 1: lights returned {"ok":true}.'
            got = [r[1:] for r in server.connections[0].tool_responses]
            assert got == [("lights", "WHEN_IDLE")]
            await client.close()

    run(body)


@pytest.mark.parametrize("bad", ["LATER", 3])
def test_the_local_server_refuses_a_scheduling_outside_the_enum_1007(bad: object) -> None:
    async def body() -> None:
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await _call_and_answer(server, bad)
            closed = await client.expect_close()
            assert closed.code == 1007
            assert closed.reason == "Request contains an invalid argument."

    run(body)
