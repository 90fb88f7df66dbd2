"""The server's pure protocol layer: paths, credentials, setup, client messages, builders."""

from __future__ import annotations

import base64
import json

import pytest

from daemon import wire
from daemon.liveserver import handshake as hs
from daemon.liveserver import messages as m
from daemon.liveserver import protocol as p


def test_parse_path_accepts_the_documented_paths_only():
    assert hs.parse_path(
        "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=x"
    ) == hs.Endpoint("gemini", "v1beta", "BidiGenerateContent")
    assert hs.parse_path(
        "/ws/google.cloud.aiplatform.v1.LlmBidiService/BidiGenerateContent"
    ) == hs.Endpoint("vertex", "v1", "BidiGenerateContent")
    for bad in (
        "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent",
        "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent/x",
        "",
    ):
        assert hs.parse_path(bad) is None
    ep = hs.Endpoint("gemini", "v1alpha", "BidiGenerateContentConstrained")
    assert hs.parse_path(ep.path) == ep


def test_credentials_from_every_place():
    headers = {"x-goog-api-key": "A", "authorization": "Token auth_tokens/B"}
    assert hs.credentials("/x?key=C&access_token=D", headers) == [
        ("x-goog-api-key", "A"),
        ("authorization-token", "auth_tokens/B"),
        ("key", "C"),
        ("access_token", "D"),
    ]
    assert hs.credentials("/x", {"authorization": "Basic zzz"}) == []


def test_parse_setup_defaults_and_both_spellings():
    params = p.parse_first_message(json.dumps({"setup": {"model": "models/gemini-3.8-live"}}))
    assert params == p.SetupParams(model="gemini-3.8-live")
    snake = {
        "setup": {
            "model": "models/gemini-3.8-live",
            "realtime_input_config": {
                "automatic_activity_detection": {"disabled": True, "silence_duration_ms": 300},
                "activity_handling": "NO_INTERRUPTION",
            },
            "session_resumption": {"handle": "h1"},
            "context_window_compression": {"trigger_tokens": "25600", "sliding_window": {}},
            "system_instruction": {"role": "user", "parts": [{"text": "Be "}, {"text": "brief."}]},
            "generation_config": {
                "speech_config": {"voice_config": {"prebuilt_voice_config": {"voice_name": "Kore"}}}
            },
            "input_audio_transcription": {},
        }
    }
    params = p.parse_first_message(json.dumps(snake).encode())
    assert params == p.SetupParams(
        model="gemini-3.8-live",
        automatic_vad=False,
        silence_ms=300,
        interrupts=False,
        resumption=True,
        handle="h1",
        compression=True,
        trigger_tokens=25600,
        input_transcription=True,
        system_instruction="Be brief.",
        voice="Kore",
    )


def test_our_encoder_setup_round_trips():
    config = wire.SetupConfig(
        model="gemini-3.8-live",
        voice="Puck",
        system_instruction="hi",
        compression=wire.Compression(1000, 500),
        handle="h",
    )
    params = p.parse_first_message(wire.encode(wire.setup_message(config)))
    assert (
        params.automatic_vad,
        params.handle,
        params.trigger_tokens,
        params.target_tokens,
        params.voice,
        params.output_transcription,
    ) == (False, "h", 1000, 500, "Puck", True)


@pytest.mark.parametrize(
    "setup,detail",
    [
        ({"model": ""}, "model"),
        (
            {"model": "m", "generationConfig": {"responseModalities": ["AUDIO", "TEXT"]}},
            "responseModalities",
        ),
        (
            {"model": "m", "realtimeInputConfig": {"activityHandling": "SOMETIMES"}},
            "activityHandling",
        ),
        ({"model": "m", "contextWindowCompression": {"triggerTokens": "many"}}, "triggerTokens"),
    ],
)
def test_bad_setup_is_refused_with_1007_and_a_detail(setup, detail):
    with pytest.raises(p.ClientRefused) as info:
        p.parse_setup(wire.normalize(setup))
    assert info.value.code == 1007 and detail in str(info.value)


def test_parse_client_messages():
    pcm = bytes(range(200))
    assert p.parse_client_message(wire.encode_audio(pcm)) == [p.RealtimeAudio(pcm, 16000)]
    urlsafe = base64.urlsafe_b64encode(pcm).decode().rstrip("=")
    legacy = {
        "realtime_input": {"media_chunks": [{"data": urlsafe, "mime_type": "audio/pcm;rate=16000"}]}
    }
    assert p.parse_client_message(json.dumps(legacy)) == [p.RealtimeAudio(pcm, 16000)]
    both = {"realtimeInput": {"activityEnd": {}, "text": "x", "activityStart": {}}}
    assert p.parse_client_message(json.dumps(both)) == [
        p.ActivityStart(),
        p.RealtimeText("x"),
        p.ActivityEnd(),
    ]
    cc = wire.client_content_message([wire.Turn("user", "a"), wire.Turn("model", "b")], True)
    assert p.parse_client_message(wire.encode(cc)) == [
        p.ClientContent((("user", "a"), ("model", "b")), True)
    ]
    assert p.parse_client_message(wire.encode(wire.context_update_message("SI"))) == [
        p.ContextUpdate("SI")
    ]
    tr = wire.tool_response_message([wire.FunctionResponse("fc1", "f", {"ok": 1})])
    assert p.parse_client_message(wire.encode(tr)) == [
        p.ToolResponse((("fc1", "f", {"ok": 1}),), ("",))
    ]  # no scheduling sent


@pytest.mark.parametrize(
    "frame",
    [
        # 1 byte:
        '{"realtimeInput": {"audio": {"data": "AA", "mimeType": "audio/pcm;rate=16000"}}}',
        '{"realtimeInput": {"audio": {"data": "AAAA", "mimeType": "audio/opus"}}}',
        '{"realtimeInput": {"mystery": 1}}',
        '{"clientContent": {"turns": [{"role": "robot"}]}}',
        '{"setup": {"model": "m"}}',
        "{}",
        b"\xff\xfe",
    ],
)
def test_bad_client_messages_are_refused(frame):
    with pytest.raises(p.ClientRefused) as info:
        p.parse_client_message(frame)
    assert info.value.code == 1007


def test_builders_omit_defaults_and_use_real_shapes():
    assert m.resumption_update(None) == {"sessionResumptionUpdate": {}}
    assert m.resumption_update("h", 7) == {
        "sessionResumptionUpdate": {
            "newHandle": "h",
            "resumable": True,
            "lastConsumedClientMessageIndex": "7",
        }
    }
    assert m.go_away(9.5) == {"goAway": {"timeLeft": "9.5s"}}
    assert m.go_away(60) == {"goAway": {"timeLeft": "60s"}}
    assert m.turn_complete(0, 0) == {
        "serverContent": {"turnComplete": True},
        "usageMetadata": {"totalTokenCount": 0},
    }
    vertex = m.turn_complete(10, 5, api="vertex")["usageMetadata"]
    assert vertex == {
        "promptTokenCount": 10,
        "candidatesTokenCount": 5,
        "totalTokenCount": 15,
        "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": 5}],
    }
    frame = m.encode_server(m.model_audio(b"\x01\x02"))
    assert isinstance(frame, bytes)
    events = wire.decode_server_message(frame)
    assert events == [wire.ModelAudio(b"\x01\x02", 24000)]
