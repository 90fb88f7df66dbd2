"""Wire protocol: our encoders and decoder, refereed by the official google-genai types.

The SDK is the referee (a test-only dependency): what we send must be what the SDK would send
for the same intent, and every server message the SDK's own types can express must decode to
the events it means. See LIVE_PROTOCOL.md §2–§4.
"""

from __future__ import annotations

import base64
import json

import pytest
from google.genai import _common, _live_converters, types
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import wire
from daemon.errors import EncodeError, ProtocolError

# ---------------------------------------------------------------------------------------------
# Client messages: setup compared with the SDK's own converter


class _MldevClient:
    """The converter only asks the client whether it is Vertex."""

    vertexai = False


def sdk_setup(model: str, config: types.LiveConnectConfig) -> dict:
    """The setup frame google-genai 3.6.1 would send for *config* (its own code path)."""
    params = types.LiveConnectParameters(model=model, config=config).model_dump(exclude_none=True)
    out = _common.convert_to_dict(
        _live_converters._LiveConnectParameters_to_mldev(
            api_client=_MldevClient(), from_object=params
        )
    )
    del out["config"]
    return wire.normalize(out)


def voice(name: str, language: str | None = None) -> types.SpeechConfig:
    return types.SpeechConfig(
        voice_config=types.VoiceConfig(
            prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=name)
        ),
        language_code=language,
    )


SETUP_CASES = [
    pytest.param(
        wire.SetupConfig(
            model="gemini-3.8-live",
            voice="Kore",
            language="en-US",
            system_instruction="You are terse.",
            compression=wire.Compression(),
        ),
        types.LiveConnectConfig(
            response_modalities=["AUDIO"],
            speech_config=voice("Kore", "en-US"),
            system_instruction="You are terse.",
            realtime_input_config=types.RealtimeInputConfig(
                automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
            ),
            session_resumption=types.SessionResumptionConfig(),
            context_window_compression=types.ContextWindowCompressionConfig(
                sliding_window=types.SlidingWindow()
            ),
            input_audio_transcription=types.AudioTranscriptionConfig(),
            output_audio_transcription=types.AudioTranscriptionConfig(),
        ),
        id="push-to-talk, new resumable session, compression",
    ),
    pytest.param(
        wire.SetupConfig(
            model="gemini-3.8-live",
            handle="h-123",
            push_to_talk=False,
            compression=wire.Compression(trigger_tokens=25600, target_tokens=12800),
            input_transcription=False,
            output_transcription=False,
            temperature=0.5,
        ),
        types.LiveConnectConfig(
            response_modalities=["AUDIO"],
            temperature=0.5,
            session_resumption=types.SessionResumptionConfig(handle="h-123"),
            context_window_compression=types.ContextWindowCompressionConfig(
                trigger_tokens=25600, sliding_window=types.SlidingWindow(target_tokens=12800)
            ),
        ),
        id="automatic detection, resume with handle, explicit token counts",
    ),
    pytest.param(
        wire.SetupConfig(
            model="gemini-2.5-flash-native-audio-preview-12-2025",
            resumable=False,
            activity_handling="NO_INTERRUPTION",
            turn_coverage="TURN_INCLUDES_ALL_INPUT",
            input_transcription=False,
        ),
        types.LiveConnectConfig(
            response_modalities=["AUDIO"],
            realtime_input_config=types.RealtimeInputConfig(
                automatic_activity_detection=types.AutomaticActivityDetection(disabled=True),
                activity_handling="NO_INTERRUPTION",
                turn_coverage="TURN_INCLUDES_ALL_INPUT",
            ),
            output_audio_transcription=types.AudioTranscriptionConfig(),
        ),
        id="no resumption, activity handling and turn coverage",
    ),
]


@pytest.mark.parametrize("ours, theirs", SETUP_CASES)
def test_setup_equals_what_the_sdk_sends(
    ours: wire.SetupConfig, theirs: types.LiveConnectConfig
) -> None:
    sent = json.loads(wire.encode(wire.setup_message(ours)))
    assert sent == sdk_setup(f"models/{ours.model}", theirs)


def test_setup_never_sends_a_null_handle() -> None:
    """PITFALLS.md: send {} for a new resumable session, never {"handle": null}."""
    msg = wire.setup_message(wire.SetupConfig(model="m", handle=None))
    assert msg["setup"]["sessionResumption"] == {}
    assert "null" not in wire.encode(msg)


def test_setup_keeps_a_vertex_model_path() -> None:
    name = "projects/p/locations/us-central1/publishers/google/models/gemini-live-2.5-flash-native-audio"  # noqa: E501
    assert wire.setup_message(wire.SetupConfig(model=name))["setup"]["model"] == name


def test_setup_refuses_an_empty_model() -> None:
    with pytest.raises(EncodeError, match="model"):
        wire.setup_message(wire.SetupConfig(model=""))


CLIENT_MESSAGES = [
    wire.audio_message(b"\x01\x02" * 320),
    wire.video_message(b"\xff\xd8\xff\xe0"),
    wire.text_message("what is the time?"),
    wire.activity_start_message(),
    wire.activity_end_message(),
    wire.audio_stream_end_message(),
    wire.client_content_message(
        [wire.Turn("user", "hi"), wire.Turn("model", "hello")], turn_complete=False
    ),
    wire.client_content_message([wire.Turn("user", "and now?")], turn_complete=True),
    wire.client_content_message([wire.Turn("system", "Speak French.")], turn_complete=False),
    wire.tool_response_message(
        [wire.FunctionResponse("fc1", "lights", {"result": "ok"}, "WHEN_IDLE")]
    ),
    wire.context_update_message("Speak French."),
]


@pytest.mark.parametrize(
    "message", CLIENT_MESSAGES, ids=lambda m: next(iter(m.values())).__str__()[:40]
)
def test_client_message_validates_as_sdk_type(message: dict) -> None:
    # extra="forbid" in the SDK's models: an unknown or misspelt field fails here.
    parsed = types.LiveClientMessage.model_validate(json.loads(wire.encode(message)))
    assert parsed.model_dump(exclude_none=True)


def test_audio_hot_path_matches_the_generic_encoder() -> None:
    pcm = bytes(range(256)) * 5
    assert wire.encode_audio(pcm) == wire.encode(wire.audio_message(pcm))
    parsed = types.LiveClientMessage.model_validate_json(wire.encode_audio(pcm, rate=16000))
    assert parsed.realtime_input.audio.data == pcm
    assert parsed.realtime_input.audio.mime_type == "audio/pcm;rate=16000"


def test_client_content_turn_complete_false_is_omitted() -> None:
    """proto3 JSON: default values are omitted (LIVE_PROTOCOL.md §4)."""
    msg = wire.client_content_message([wire.Turn("user", "x")], turn_complete=False)
    assert "turnComplete" not in msg["clientContent"]


def test_client_content_refuses_unknown_role() -> None:
    with pytest.raises(EncodeError, match="role 'robot'"):
        wire.client_content_message([wire.Turn("robot", "x")], turn_complete=True)


# ---------------------------------------------------------------------------------------------
# Server messages: built with the SDK's types, serialised both ways, decoded by us


def frames(message: types.LiveServerMessage) -> list[bytes | str]:
    """The same message as the real server (binary, camel)
    and as a bridge (text, snake) sends it."""
    camel = json.dumps(message.model_dump(mode="json", by_alias=True, exclude_none=True))
    snake = json.dumps(message.model_dump(mode="json", exclude_none=True))
    return [camel.encode(), snake]


def test_decode_reply_with_several_parts_transcripts_usage_and_turn_complete() -> None:
    pcm1, pcm2 = b"\x00\x01" * 100, b"\xfe\xff" * 50
    msg = types.LiveServerMessage(
        server_content=types.LiveServerContent(
            model_turn=types.Content(
                role="model",
                parts=[
                    types.Part(inline_data=types.Blob(data=pcm1, mime_type="audio/pcm;rate=24000")),
                    types.Part(inline_data=types.Blob(data=pcm2, mime_type="audio/pcm;rate=24000")),
                ],
            ),
            output_transcription=types.Transcription(text="Hello there"),
            input_transcription=types.Transcription(text="hi", finished=True),
            generation_complete=True,
            turn_complete=True,
        ),
        usage_metadata=types.UsageMetadata(
            prompt_token_count=147, response_token_count=36, total_token_count=183
        ),
    )
    for frame in frames(msg):
        assert wire.decode_server_message(frame) == [
            wire.InputTranscription("hi", finished=True),
            wire.ModelAudio(pcm1, 24000),
            wire.ModelAudio(pcm2, 24000),
            wire.OutputTranscription("Hello there"),
            wire.GenerationComplete(),
            wire.Usage(prompt_tokens=147, response_tokens=36, total_tokens=183),
            wire.TurnComplete(),
        ]


@pytest.mark.parametrize("time_left, seconds", [("50s", 50.0), ("9.5s", 9.5), ("0.000001s", 1e-6)])
def test_decode_go_away_duration_strings(time_left: str, seconds: float) -> None:
    assert wire.decode_server_message(json.dumps({"goAway": {"timeLeft": time_left}})) == [
        wire.GoAway(seconds)
    ]
    # The SDK keeps the Duration as its JSON string; the referee only checks it is a valid message.
    sdk = types.LiveServerMessage.model_validate({"goAway": {"timeLeft": time_left}})
    assert sdk.go_away.time_left == time_left


def test_decode_go_away_without_time_left() -> None:
    assert wire.decode_server_message(b'{"goAway":{}}') == [wire.GoAway(None)]


def test_decode_resumption_updates() -> None:
    msg = types.LiveServerMessage(
        session_resumption_update=types.LiveServerSessionResumptionUpdate(
            new_handle="abc", resumable=True, last_consumed_client_message_index=7
        )
    )
    for frame in frames(msg):
        assert wire.decode_server_message(frame) == [wire.ResumptionUpdate("abc", True, 7)]
    # Mid-generation: not resumable, empty handle -> no handle to store (PITFALLS.md).
    assert wire.decode_server_message(
        '{"sessionResumptionUpdate":{"newHandle":"","resumable":false}}'
    ) == [wire.ResumptionUpdate(None, False)]
    # proto3 omits false and int64 arrives as a string.
    assert wire.decode_server_message(
        '{"sessionResumptionUpdate":{"lastConsumedClientMessageIndex":"12"}}'
    ) == [wire.ResumptionUpdate(None, False, 12)]


def test_decode_tool_call_and_cancellation() -> None:
    msg = types.LiveServerMessage(
        tool_call=types.LiveServerToolCall(
            function_calls=[
                types.FunctionCall(id="fc1", name="lights", args={"room_name": "kitchen"})
            ]
        )
    )
    for frame in frames(msg):
        # User data keeps its own key spelling: "room_name" is not camel-cased.
        assert wire.decode_server_message(frame) == [
            wire.ToolCall((wire.FunctionCall("fc1", "lights", {"room_name": "kitchen"}),))
        ]
    assert wire.decode_server_message('{"toolCallCancellation":{"ids":["fc1"]}}') == [
        wire.ToolCallCancellation(("fc1",))
    ]


def test_decode_setup_complete_interrupted_and_vertex_usage() -> None:
    assert wire.decode_server_message(b'{"setupComplete":{}}') == [wire.SetupComplete()]
    assert wire.decode_server_message('{"setup_complete":{"session_id":"s1"}}') == [
        wire.SetupComplete("s1")
    ]
    assert wire.decode_server_message('{"serverContent":{"interrupted":true}}') == [
        wire.Interrupted()
    ]
    # Vertex spells the response count candidatesTokenCount (LIVE_PROTOCOL.md §4).
    assert wire.decode_server_message(
        '{"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":"5","trafficType":"ON_DEMAND"}}'
    ) == [wire.Usage(prompt_tokens=10, response_tokens=5, total_tokens=15)]


@pytest.mark.parametrize("alphabet", ["standard", "urlsafe"])
@pytest.mark.parametrize("padded", [True, False])
def test_decode_both_base64_alphabets_with_or_without_padding(alphabet: str, padded: bool) -> None:
    pcm = bytes([0xFB, 0xFF, 0xBF, 0x3E, 0x00])
    enc = base64.b64encode(pcm) if alphabet == "standard" else base64.urlsafe_b64encode(pcm)
    text = enc.decode()
    if not padded:
        text = text.rstrip("=")
    frame = json.dumps(
        {
            "serverContent": {
                "modelTurn": {
                    "parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": text}}]
                }
            }
        }
    )
    assert wire.decode_server_message(frame) == [wire.ModelAudio(pcm, 24000)]


def test_unknown_fields_are_ignored_and_unknown_messages_reported() -> None:
    assert wire.decode_server_message(
        '{"serverContent":{"turnComplete":true,"somethingNew":{"x":1}},"alsoNew":3}'
    ) == [wire.TurnComplete()]
    assert wire.decode_server_message('{"voiceActivity":{"type":"ACTIVITY_START"}}') == [
        wire.UnknownMessage(("voiceActivity",))
    ]
    # The SDK parses an empty frame as {} (LIVE_PROTOCOL.md §4).
    assert wire.decode_server_message(b"") == [wire.UnknownMessage(())]


@pytest.mark.parametrize(
    "frame, says",
    [
        (b"\xff\xfe", "not UTF-8"),
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object, got list"),
        ('{"goAway":{"timeLeft":"soon"}}', "invalid duration 'soon'"),
        ('{"goAway":{"timeLeft":"-5s"}}', "invalid duration"),
        ('{"serverContent":"x"}', "serverContent: expected an object"),
        (
            '{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"data":"!!!"}}]}}}',
            "invalid base64",
        ),
        ('{"serverContent":{"modelTurn":{"parts":{}}}}', "parts: expected a list"),
        ('{"usageMetadata":{"promptTokenCount":"many"}}', "usageMetadata.promptTokenCount"),
        ('{"sessionResumptionUpdate":{"resumable":"yes"}}', "resumable: expected true or false"),
        ('{"toolCall":{"functionCalls":[{"name":"f","args":[1]}]}}', "args: expected an object"),
        (
            '{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=5","data":""}}]}}}',
            "implausible sample rate",
        ),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_frames_raise_a_protocol_error_that_says_what(
    frame: bytes | str, says: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        wire.decode_server_message(frame)
    assert says in str(info.value)


# Arbitrary input never crashes: it decodes, or it raises ProtocolError (issue 7, item 3).
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "setupComplete",
                    "serverContent",
                    "modelTurn",
                    "parts",
                    "inlineData",
                    "data",
                    "mimeType",
                    "goAway",
                    "timeLeft",
                    "turnComplete",
                    "usageMetadata",
                    "promptTokenCount",
                    "sessionResumptionUpdate",
                    "newHandle",
                    "resumable",
                    "toolCall",
                    "functionCalls",
                    "args",
                    "text",
                    "interrupted",
                    "x",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_fuzz_structured_json_never_crashes(value: object) -> None:
    try:
        events = wire.decode_server_message(json.dumps(value))
    except ProtocolError:
        return
    assert all(isinstance(e, wire.ServerEvent) for e in events)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_fuzz_raw_bytes_never_crash(frame: bytes | str) -> None:
    try:
        wire.decode_server_message(frame)
    except ProtocolError:
        pass


# ---------------------------------------------------------------------------------------------
# Helpers


def test_normalize_converts_protocol_keys_but_not_user_data() -> None:
    raw = {
        "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
        "tool_response": {"function_responses": [{"response": {"snake_key": 1}}]},
    }
    assert wire.normalize(raw) == {
        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
        "toolResponse": {"functionResponses": [{"response": {"snake_key": 1}}]},
    }


@pytest.mark.parametrize("seconds", [0.0, 9.5, 50.0, 0.25, 3600.0])
def test_duration_round_trip(seconds: float) -> None:
    assert wire.parse_duration(wire.format_duration(seconds)) == seconds


def test_duration_accepts_number_and_object_forms() -> None:
    assert wire.parse_duration(12) == 12.0
    assert wire.parse_duration({"seconds": "9", "nanos": 500_000_000}) == 9.5
