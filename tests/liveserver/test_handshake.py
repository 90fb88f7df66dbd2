"""Paths, credentials, models, setup-first and key spellings (LIVE_PROTOCOL.md §1, §2, §8.1–2)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from daemon import wire
from daemon.liveserver import LiveServer, ServerLimits
from tests.liveserver.harness import RawClient, run, text_of, tone

FAST = ServerLimits(time_scale=600.0)
GEMINI_PATHS = [(v, c) for v in ("v1alpha", "v1beta") for c in (False, True)]


@pytest.mark.parametrize("version,constrained", GEMINI_PATHS)
def test_gemini_paths_serve_setup(version, constrained):
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            url = server.endpoint(version=version, constrained=constrained)
            method = "BidiGenerateContentConstrained" if constrained else "BidiGenerateContent"
            assert url.endswith(
                f"/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}"
            )
            client = await RawClient.open(url)
            await client.setup()
            rec = server.connections[0]
            assert (rec.api, rec.version, rec.method) == ("gemini", version, method)

    run(body)


@pytest.mark.parametrize("version", ["v1beta1", "v1"])
def test_vertex_paths_serve_setup(version):
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            url = server.endpoint(api="vertex", version=version)
            assert url.endswith(
                f"/ws/google.cloud.aiplatform.{version}.LlmBidiService/BidiGenerateContent"
            )
            client = await RawClient.open(url, {"Authorization": "Bearer ya29.token"})
            await client.setup(
                model="projects/p/locations/global/publishers/google/models/"
                "gemini-live-2.5-flash-native-audio"
            )
            assert server.connections[0].auth_source == "authorization-bearer"

    run(body)


@pytest.mark.parametrize(
    "path",
    [
        "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent",
        "/ws/google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent",
        "/",
        "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/Other",
    ],
)
def test_unknown_path_is_http_404(path):
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            with pytest.raises(InvalidStatus) as info:
                await connect(server.url + path)
            assert info.value.response.status_code == 404
            assert server.connections == []

    run(body)


@pytest.mark.parametrize("how", ["header", "query-key", "token", "bearer", "query-access-token"])
def test_every_credential_form_is_accepted(how):
    key = "k1"
    headers, query = {}, ""
    if how == "header":
        headers["x-goog-api-key"] = key
    elif how == "query-key":
        query = f"?key={key}"
    elif how == "token":
        headers["Authorization"] = f"Token {key}"
    elif how == "bearer":
        headers["Authorization"] = f"Bearer {key}"
    else:
        query = f"?access_token={key}"
    source = {
        "header": "x-goog-api-key",
        "query-key": "key",
        "token": "authorization-token",
        "bearer": "authorization-bearer",
        "query-access-token": "access_token",
    }[how]

    async def body():
        async with LiveServer(limits=FAST, api_keys={"k1", "k2"}, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint() + query, headers)
            await client.setup()
            assert server.connections[0].auth_source == source

    run(body)


@pytest.mark.parametrize(
    "headers,query",
    [
        ({"x-goog-api-key": "wrong"}, ""),
        ({}, "?key=wrong"),
        ({"Authorization": "Bearer wrong"}, ""),
        ({}, ""),
    ],
)
def test_wrong_or_missing_key_closes_1007(headers, query):
    async def body():
        async with LiveServer(limits=FAST, api_keys={"k1"}, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint() + query, headers)
            await client.setup(expect_complete=False)
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (
                1007,
                "API key not valid. Please pass a valid API key.",
            )
            assert client.received == []
            assert server.sessions == []

    run(body)


def test_no_keys_configured_accepts_any_key_and_none():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            for headers in ({}, {"x-goog-api-key": "anything"}):
                client = await RawClient.open(server.endpoint(), headers)
                await client.setup()
                await client.close()
            assert [c.auth_source for c in server.connections] == [None, "x-goog-api-key"]

    run(body)


@pytest.mark.parametrize(
    "model", ["gemini-2.0-flash", "gemini-live-2.5-flash-preview", "gemini-9-nope"]
)
def test_unknown_or_retired_model_closes_1008(model):
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup(model=model, expect_complete=False)
            closed = await client.expect_close()
            assert closed.code == 1008
            # The real text, cut to the 123 bytes a close frame can carry (RFC 6455 §5.5).
            full = (
                f"models/{model} is not found for API version v1beta, or is not supported for "
                f"bidiGenerateContent. Call ListModels to see the list of available models and "
                f"their supported methods."
            )
            assert closed.reason == full.encode()[:123].decode()

    run(body)


@pytest.mark.parametrize(
    "model",
    [
        "gemini-3.8-live",
        "gemini-3.1-flash-live-preview",
        "gemini-2.5-flash-native-audio-preview-12-2025",
        "models/gemini-2.5-flash-native-audio-preview-09-2025",
    ],
)
def test_documented_native_audio_models_are_accepted(model):
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup(model=model)
            assert server.sessions[0].model == model.rsplit("/", 1)[-1]

    run(body)


@pytest.mark.parametrize(
    "first",
    [
        wire.activity_start_message(),
        wire.text_message("hi"),
        {"clientContent": {"turns": [], "turnComplete": True}},
    ],
)
def test_setup_must_come_first(first):
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.send(first)
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1007, "Request contains an invalid argument.")

    run(body)


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        '{"setup": {"model": "models/gemini-3.8-live"}, "realtimeInput": {}}',
        '{"setup": {"model": "models/gemini-3.8-live", "noSuchField": 1}}',
        '{"setup": {}}',
    ],
)
def test_bad_setup_frames_close_1007(frame):
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.send(frame)
            closed = await client.expect_close()
            assert closed.code == 1007 and closed.reason

    run(body)


def test_second_setup_closes_1007():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await client.setup(expect_complete=False)
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1007, "Request contains an invalid argument.")

    run(body)


def test_snake_case_keys_and_urlsafe_base64_are_accepted():
    """The SDK mixes spellings and sends URL-safe base64 (LIVE_PROTOCOL.md §2)."""
    pcm = tone(0.5, freq=123.4) + bytes(range(256)) * 4  # bytes that need '-'/'_' in URL-safe
    assert b"-" in base64.urlsafe_b64encode(pcm) or b"_" in base64.urlsafe_b64encode(pcm)

    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.send(
                {
                    "setup": {
                        "model": "models/gemini-3.8-live",
                        "generation_config": {"response_modalities": ["AUDIO"]},
                        "realtime_input_config": {
                            "automatic_activity_detection": {"disabled": True}
                        },
                        "session_resumption": {},
                        "output_audio_transcription": {},
                    }
                }
            )
            assert await client.recv() == {"setupComplete": {}}
            await client.send({"realtime_input": {"activity_start": {}}})
            half = len(pcm) // 2
            await client.send(
                {
                    "realtime_input": {
                        "audio": {
                            "data": base64.urlsafe_b64encode(pcm[:half]).decode().rstrip("="),
                            "mime_type": "audio/pcm;rate=16000",
                        }
                    }
                }
            )
            await client.send(
                json.dumps(
                    {
                        "realtimeInput": {
                            "audio": {
                                "data": base64.b64encode(pcm[half:]).decode(),
                                "mimeType": "audio/pcm;rate=16000",
                            }
                        }
                    }
                )
            )
            await client.send({"realtime_input": {"activity_end": {}}})
            msgs = await client.until_turn_complete()
            digest = hashlib.sha256(pcm).hexdigest()
            assert server.sessions[0].audio_digest == digest
            assert text_of(msgs).endswith(f"digest {digest[:6]}.")

    run(body)


def test_bad_base64_closes_1007():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await client.send(
                {"realtimeInput": {"audio": {"data": "!!!", "mimeType": "audio/pcm;rate=16000"}}}
            )
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1007, "Request contains an invalid argument.")

    run(body)


def test_unknown_top_level_client_key_closes_1007():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await client.send({"bogusMessage": {}})
            closed = await client.expect_close()
            assert closed.code == 1007 and '"bogusMessage"' in closed.reason

    run(body)
