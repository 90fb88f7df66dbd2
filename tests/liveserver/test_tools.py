"""Tool calls: toolCall, toolResponse, cancellation, and 1008 for realtime input while a
blocking call is unanswered (LIVE_PROTOCOL.md §3–§4, §8.3; PITFALLS.md)."""

from __future__ import annotations

from google import genai
from google.genai import types

from daemon import wire
from daemon.liveserver import LiveServer, ServerLimits
from daemon.liveserver.turns import TOOL_PENDING, UNKNOWN_CALL
from tests.liveserver.harness import RawClient, run, text_of, tone

# 60x, not 600x: at 600x the 10-minute connection cap is one wall second, which a loaded
# machine outlasts (close 1011 "Deadline expired" mid-test, seen at load 16).
FAST = ServerLimits(time_scale=60.0)
OLD_MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"  # BLOCKING by default


async def open_with_tools(server: LiveServer, model: str, behavior: str | None = None) -> RawClient:
    client = await RawClient.open(server.endpoint())
    setup = wire.setup_message(wire.SetupConfig(model=model))
    declaration = {"name": "turn_on_lights", "description": "lights"}
    if behavior:
        declaration["behavior"] = behavior
    setup["setup"]["tools"] = [{"functionDeclarations": [declaration]}]
    await client.send(setup)
    assert await client.recv() == {"setupComplete": {}}
    await client.recv()  # first handle
    return client


def test_tool_call_then_response_then_spoken_result():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await open_with_tools(server, OLD_MODEL)
            await client.send(wire.text_message('call turn_on_lights {"room": "hall"}'))
            msgs = await client.recv_until(lambda m: "toolCall" in m)
            assert {"sessionResumptionUpdate": {}} in msgs  # not resumable during the call
            call = msgs[-1]["toolCall"]["functionCalls"][0]
            assert call["name"] == "turn_on_lights" and call["args"] == {"room": "hall"}
            types.LiveServerMessage.model_validate(msgs[-1])
            await client.send(
                wire.tool_response_message(
                    [wire.FunctionResponse(call["id"], "turn_on_lights", {"ok": True})]
                )
            )
            msgs = await client.until_turn_complete()
            assert text_of(msgs) == 'Turn 1: turn_on_lights returned {"ok":true}.'
            assert server.sessions[0].history[1:] == [
                ("model", '[call turn_on_lights {"room": "hall"}]'),
                ("user", '[turn_on_lights returned {"ok":true}]'),
                ("model", 'Turn 1: turn_on_lights returned {"ok":true}.'),
            ]

    run(body)


def test_realtime_input_during_a_blocking_call_closes_1008():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await open_with_tools(server, OLD_MODEL)
            await client.send(wire.text_message("call turn_on_lights"))
            await client.recv_until(lambda m: "toolCall" in m)
            await client.send(wire.encode_audio(tone(0.1)))
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1008, TOOL_PENDING)

    run(body)


def test_non_blocking_call_is_cancelled_by_barge_in():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await open_with_tools(server, "gemini-3.8-live")  # NON_BLOCKING by default
            await client.send(wire.text_message("call turn_on_lights"))
            call_id = (await client.recv_until(lambda m: "toolCall" in m))[-1]["toolCall"][
                "functionCalls"
            ][0]["id"]
            await client.send(wire.encode_audio(tone(0.1)))  # allowed: the call does not block
            await client.send(wire.activity_start_message())
            msgs = await client.until_turn_complete()
            assert msgs[0] == {"toolCallCancellation": {"ids": [call_id]}}
            assert msgs[1] == {"serverContent": {"interrupted": True}}
            types.LiveServerMessage.model_validate(msgs[0])
            assert server.sessions[0].user_turns[0].interrupted == 1

    run(body)


def test_sdk_tool_round_trip():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = genai.Client(api_key="FAKE", http_options={"api_version": "v1beta"})
            client._api_client._websocket_base_url = lambda *a, **k: server.url
            client._api_client._websocket_ssl_ctx = {}
            config = types.LiveConnectConfig(
                response_modalities=["AUDIO"],
                output_audio_transcription=types.AudioTranscriptionConfig(),
                tools=[
                    types.Tool(
                        function_declarations=[
                            types.FunctionDeclaration(
                                name="turn_on_lights", behavior=types.Behavior.BLOCKING
                            )
                        ]
                    )
                ],
            )
            async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
                await session.send_realtime_input(text="call turn_on_lights")
                async for msg in session.receive():
                    if msg.tool_call:
                        call = msg.tool_call.function_calls[0]
                        break
                await session.send_tool_response(
                    function_responses=[
                        types.FunctionResponse(
                            id=call.id, name=call.name, response={"lights": "on"}
                        )
                    ]
                )
                said = "".join(
                    [
                        m.server_content.output_transcription.text
                        async for m in session.receive()
                        if m.server_content and m.server_content.output_transcription
                    ]
                )
                assert said == 'Turn 1: turn_on_lights returned {"lights":"on"}.'

    run(body)


def test_client_content_during_a_blocking_call_closes_1008_aborted():
    # FIELD_REPORTS F10: "a matching toolResponse before any other client messages".
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await open_with_tools(server, OLD_MODEL)
            await client.send(wire.text_message("call turn_on_lights"))
            await client.recv_until(lambda m: "toolCall" in m)
            await client.send(
                wire.client_content_message([wire.Turn("user", "hello")], turn_complete=True)
            )
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1008, "The operation was aborted.")

    run(body)


def test_tool_response_with_an_unknown_id_closes_1008_not_found():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await open_with_tools(server, OLD_MODEL)
            await client.send(wire.text_message("call turn_on_lights"))
            await client.recv_until(lambda m: "toolCall" in m)
            await client.send(
                wire.tool_response_message(
                    [wire.FunctionResponse("fc-nobody", "turn_on_lights", {"ok": True})]
                )
            )
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1008, UNKNOWN_CALL)

    run(body)


def test_late_response_to_a_cancelled_call_is_refused():
    # A cancelled id never gets a result (F18): the server treats one as an unknown id.
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await open_with_tools(server, "gemini-3.8-live")
            await client.send(wire.text_message("call turn_on_lights"))
            call_id = (await client.recv_until(lambda m: "toolCall" in m))[-1]["toolCall"][
                "functionCalls"
            ][0]["id"]
            await client.send(wire.activity_start_message())
            await client.until_turn_complete()
            await client.send(
                wire.tool_response_message(
                    [wire.FunctionResponse(call_id, "turn_on_lights", {"late": True})]
                )
            )
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1008, UNKNOWN_CALL)

    run(body)


def test_scripted_call_answers_a_pressed_audio_turn_and_speaks_the_result():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await open_with_tools(server, "gemini-3.8-live")
            server.tool_script.answer_next("turn_on_lights", {"room": "hall"})
            await client.send(wire.activity_start_message())
            await client.send(wire.encode_audio(tone(0.3)))
            await client.send(wire.activity_end_message())
            msgs = await client.recv_until(lambda m: "toolCall" in m)
            call = msgs[-1]["toolCall"]["functionCalls"][0]
            assert (call["name"], call["args"]) == ("turn_on_lights", {"room": "hall"})
            assert server.tool_script.issued == [(call["id"], "turn_on_lights", {"room": "hall"})]
            # NON_BLOCKING on 3.8: audio may flow while the call runs.
            await client.send(wire.encode_audio(tone(0.05)))
            await client.send(
                wire.tool_response_message(
                    [wire.FunctionResponse(call["id"], "turn_on_lights", {"lights": "on"})]
                )
            )
            msgs = await client.until_turn_complete()
            assert text_of(msgs) == 'Turn 1: turn_on_lights returned {"lights":"on"}.'
            assert server.tool_script.waiting == 0

    run(body)


def test_flash_live_3_1_blocks_even_when_declared_non_blocking():
    # 3.1 Flash Live: "Function calling is synchronous only" (FIELD_REPORTS Part 0/3).
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await open_with_tools(
                server, "gemini-3.1-flash-live-preview", behavior="NON_BLOCKING"
            )
            await client.send(wire.text_message("call turn_on_lights"))
            await client.recv_until(lambda m: "toolCall" in m)
            await client.send(wire.encode_audio(tone(0.1)))
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1008, TOOL_PENDING)

    run(body)
