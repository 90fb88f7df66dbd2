"""Conformance refereed by the official google-genai SDK (LIVE_PROTOCOL.md §7 option (b)).

(a) every message the server emits validates as ``types.LiveServerMessage``
(pydantic, ``extra='forbid'``, so an unknown or misspelt field fails);
(b) the SDK's own live client holds a full conversation with the server.
"""

from __future__ import annotations

import hashlib

import pytest
from google import genai
from google.genai import _live_converters as live_converters
from google.genai import errors, types

from daemon import wire
from daemon.liveserver import LiveServer, ServerLimits
from tests.liveserver.harness import RawClient, run, silence, tone


def sdk_client(server: LiveServer, vertex: bool = False) -> genai.Client:
    """The SDK pointed at the loopback server (LIVE_PROTOCOL.md §7 (b)): patching the
    SDK's privates is fine here, the SDK is the referee, not our code."""
    client = genai.Client(api_key="FAKE-KEY", http_options={"api_version": "v1beta"})
    client._api_client._websocket_base_url = lambda *a, **k: server.url
    client._api_client._websocket_ssl_ctx = {}
    return client


PTT_CONFIG = dict(
    response_modalities=["AUDIO"],
    realtime_input_config=types.RealtimeInputConfig(
        automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
    ),
    input_audio_transcription=types.AudioTranscriptionConfig(),
    output_audio_transcription=types.AudioTranscriptionConfig(),
    speech_config=types.SpeechConfig(
        voice_config=types.VoiceConfig(
            prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Kore")
        )
    ),
    system_instruction="You are terse.",
)


async def sdk_turn(session, pcm: bytes) -> list[types.LiveServerMessage]:
    """A push-to-talk turn through the SDK: activityStart, audio, activityEnd."""
    await session.send_realtime_input(activity_start=types.ActivityStart())
    for i in range(0, len(pcm), 3200):
        await session.send_realtime_input(
            audio=types.Blob(data=pcm[i : i + 3200], mime_type="audio/pcm;rate=16000")
        )
    await session.send_realtime_input(activity_end=types.ActivityEnd())
    return [m async for m in session.receive()]  # receive() ends at turnComplete


async def next_message(session) -> types.LiveServerMessage:
    async for message in session.receive():
        return message
    raise AssertionError("receive() ended without a message")


def summarize(messages: list[types.LiveServerMessage]) -> dict:
    audio = b"".join(
        m.server_content.model_turn.parts[0].inline_data.data
        for m in messages
        if m.server_content and m.server_content.model_turn
    )
    said = "".join(
        m.server_content.output_transcription.text
        for m in messages
        if m.server_content and m.server_content.output_transcription
    )
    heard = "".join(
        m.server_content.input_transcription.text
        for m in messages
        if m.server_content and m.server_content.input_transcription
    )
    return {"audio": audio, "said": said, "heard": heard, "last": messages[-1]}


def test_sdk_holds_a_full_conversation_with_resumption_goaway_and_close():
    # ×200: the 600 s connection cap lasts 3 s, goAway comes at 2.7 s.
    limits = ServerLimits(time_scale=200.0)

    async def body():
        async with LiveServer(limits=limits, voice="synthetic") as server:
            client = sdk_client(server)
            config = types.LiveConnectConfig(
                session_resumption=types.SessionResumptionConfig(), **PTT_CONFIG
            )
            first_pcm = tone(1.2)
            async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
                turn = summarize(await sdk_turn(session, first_pcm))
                digest = hashlib.sha256(first_pcm).hexdigest()[:6]
                assert turn["said"] == f"Turn 1: I heard 1.20 seconds of audio, digest {digest}."
                assert digest in turn["heard"] and "1.20 seconds" in turn["heard"]
                assert len(turn["audio"]) > 48_000  # > 1 s of 24 kHz s16le speech
                assert turn["last"].server_content.turn_complete is True
                usage = turn["last"].usage_metadata
                assert usage.prompt_token_count == 4 + 30  # system instruction + 1.2 s × 25/s
                assert (
                    usage.total_token_count == usage.prompt_token_count + usage.response_token_count
                )
                update = (await next_message(session)).session_resumption_update
                assert update.resumable is True and update.new_handle
                handle = update.new_handle

            second_pcm = tone(0.6, freq=330)
            config2 = types.LiveConnectConfig(
                session_resumption=types.SessionResumptionConfig(handle=handle), **PTT_CONFIG
            )
            async with client.aio.live.connect(model="gemini-3.8-live", config=config2) as session:
                turn = summarize(await sdk_turn(session, second_pcm))
                # Turn 2: the resumed session still has the first turn in its history.
                assert turn["said"].startswith("Turn 2: I heard 0.60 seconds of audio")
                assert turn["last"].usage_metadata.prompt_token_count > 34 + 15
                record = server.sessions[0]
                assert len(server.sessions) == 1 and record.connections[-1].resumed
                assert record.history[0] == ("user", f"[1.20 seconds of audio, digest {digest}]")
                assert record.audio_digest == hashlib.sha256(first_pcm + second_pcm).hexdigest()
                # goAway before the scaled cap, then the close after it.
                go_away = None
                while go_away is None:
                    go_away = (await next_message(session)).go_away
                assert go_away.time_left == "60s"
                try:
                    await next_message(session)
                except errors.APIError as exc:
                    assert exc.code == 1011
                    assert "Deadline expired before operation could complete." in str(exc)
                else:
                    raise AssertionError("no close after goAway")
            conn = record.connections[-1]
            assert conn.close_code == 1011
            assert conn.closed_at - conn.opened_at >= 600 and conn.goaway_at - conn.opened_at < 600

    run(body)


def test_sdk_connect_surfaces_refusals():
    async def body():
        async with LiveServer(
            limits=ServerLimits(time_scale=600), api_keys={"good"}, voice="synthetic"
        ) as server:
            client = sdk_client(server)  # presents "FAKE-KEY"
            try:
                async with client.aio.live.connect(
                    model="gemini-3.8-live", config=types.LiveConnectConfig(**PTT_CONFIG)
                ):
                    pass
            except errors.APIError as exc:
                assert exc.code == 1007
                assert "API key not valid. Please pass a valid API key." in str(exc)
            else:
                raise AssertionError("wrong key accepted")

    run(body)


def test_every_server_message_validates_as_LiveServerMessage():
    """(a): a raw client walks through every kind of server message; the SDK's
    pydantic model (extra='forbid') accepts each frame as sent."""
    limits = ServerLimits(time_scale=300.0)

    async def body():
        async with LiveServer(limits=limits, voice="synthetic") as server:
            raw = await RawClient.open(server.endpoint())
            await raw.setup(
                wire.SetupConfig(
                    model="gemini-3.8-live",
                    system_instruction="Be brief.",
                    compression=wire.Compression(1000, 500),
                )
            )
            await raw.ptt_turn(tone(0.5))
            # Barge in mid-reply: interrupted then turnComplete.
            await raw.send(wire.activity_start_message())
            await raw.send(wire.encode_audio(tone(0.3)))
            await raw.send(wire.activity_end_message())
            await raw.recv_until(lambda m: "modelTurn" in m.get("serverContent", {}))
            await raw.send(wire.activity_start_message())
            await raw.send(wire.activity_end_message())
            await raw.until_turn_complete()
            await raw.until_turn_complete()
            await raw.send(wire.text_message("hello there"))
            await raw.until_turn_complete()
            await raw.send(wire.client_content_message([wire.Turn("user", "what now?")], True))
            await raw.until_turn_complete()
            await raw.expect_close(timeout=5)  # goAway then 1011
            frames = raw.received
            kinds = set()
            for message in frames:
                validated = types.LiveServerMessage.model_validate(message)
                kinds |= {k for k, v in validated.model_dump(exclude_none=True).items()}
                if validated.server_content:
                    kinds |= set(validated.server_content.model_dump(exclude_none=True))
            assert {
                "setup_complete",
                "server_content",
                "usage_metadata",
                "go_away",
                "session_resumption_update",
                "model_turn",
                "input_transcription",
                "output_transcription",
                "interrupted",
                "generation_complete",
                "turn_complete",
            } <= kinds, kinds

    run(body)


def test_vertex_frames_validate_after_the_sdk_vertex_converter():
    async def body():
        async with LiveServer(limits=ServerLimits(time_scale=600.0), voice="synthetic") as server:
            raw = await RawClient.open(server.endpoint(api="vertex"))
            await raw.setup(
                wire.SetupConfig(
                    model="projects/p/locations/us-central1/publishers/google/models/gemini-3.8-live"
                )
            )
            msgs = await raw.ptt_turn(tone(0.4))
            usage = msgs[-1]["usageMetadata"]
            assert "candidatesTokenCount" in usage and "responseTokenCount" not in usage
            for message in raw.received:
                converted = live_converters._LiveServerMessage_from_vertex(message)
                validated = types.LiveServerMessage._from_response(response=converted, kwargs={})
                if "usageMetadata" in message:
                    assert (
                        validated.usage_metadata.response_token_count
                        == usage["candidatesTokenCount"]
                    )
            await raw.close()

    run(body)


def test_sdk_rich_setup_text_client_content_context_update_and_vad():
    """The SDK's full-featured setup (mixed spellings, tools, proactivity, compression)
    is accepted; its send_* calls all land where they should."""

    async def body():
        async with LiveServer(limits=ServerLimits(time_scale=600.0), voice="synthetic") as server:
            client = sdk_client(server)
            config = types.LiveConnectConfig(
                response_modalities=["AUDIO"],
                system_instruction="You are terse.",
                tools=[
                    types.Tool(
                        function_declarations=[
                            types.FunctionDeclaration(name="turn_on_lights", description="x")
                        ]
                    )
                ],
                proactivity=types.ProactivityConfig(proactive_audio=True),
                context_window_compression=types.ContextWindowCompressionConfig(
                    trigger_tokens=25600, sliding_window=types.SlidingWindow(target_tokens=12800)
                ),
                realtime_input_config=types.RealtimeInputConfig(
                    activity_handling=types.ActivityHandling.START_OF_ACTIVITY_INTERRUPTS
                ),
                session_resumption=types.SessionResumptionConfig(),
                output_audio_transcription=types.AudioTranscriptionConfig(),
            )
            async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
                await session.send_client_content(
                    turns=[
                        types.Content(role="user", parts=[types.Part(text="my name is Ada")]),
                        types.Content(role="model", parts=[types.Part(text="hello Ada")]),
                    ],
                    turn_complete=False,
                )
                await session.send_realtime_input(text="what is my name?")
                said = summarize([msg async for msg in session.receive()])["said"]
                assert said == "Turn 1: you wrote \u201cwhat is my name?\u201d."
                await session.send_context_update(system_instruction="Be verbose.")
                pcm = silence(0.2) + tone(0.8)
                for i in range(0, len(pcm), 3200):
                    await session.send_realtime_input(
                        audio=types.Blob(data=pcm[i : i + 3200], mime_type="audio/pcm;rate=16000")
                    )
                await session.send_realtime_input(audio_stream_end=True)
                said = summarize([msg async for msg in session.receive()])["said"]
                assert said.startswith("Turn 2: I heard 0.80 seconds of audio")
            record = server.sessions[0]
            assert record.system_instruction == "Be verbose."
            assert record.history[:3] == [
                ("user", "my name is Ada"),
                ("model", "hello Ada"),
                ("user", "what is my name?"),
            ]
            assert [t.source for t in record.user_turns] == ["text", "vad"]

    run(body)


@pytest.mark.filterwarnings("ignore:The SDK's ephemeral token support is experimental")
def test_sdk_ephemeral_token_uses_the_constrained_v1alpha_endpoint():
    async def body():
        async with LiveServer(
            limits=ServerLimits(time_scale=600.0), api_keys={"auth_tokens/t1"}, voice="synthetic"
        ) as server:
            client = genai.Client(api_key="auth_tokens/t1", http_options={"api_version": "v1alpha"})
            client._api_client._websocket_base_url = lambda *a, **k: server.url
            client._api_client._websocket_ssl_ctx = {}
            async with client.aio.live.connect(
                model="gemini-3.8-live", config=types.LiveConnectConfig(**PTT_CONFIG)
            ) as session:
                assert session is not None
            rec = server.connections[0]
            assert (rec.version, rec.method) == ("v1alpha", "BidiGenerateContentConstrained")
            assert rec.auth_source in ("x-goog-api-key", "authorization-token")
            assert rec.setup_completed_at is not None

    run(body)
