"""
Sans-I/O encoding and decoding of Gemini Live API messages.

The daemon *sends* client messages (``setup``, ``realtimeInput``,
``clientContent``, ``toolResponse``, ``contextUpdate``) and *receives* server
messages, which :func:`decode_server_message` turns into a flat list of typed,
frozen events. Nothing here does I/O or reads a clock.

We are strict in what we send (canonical camelCase proto3 JSON, default fields
omitted) and liberal in what we accept, because the real API and the official
SDK vary (LIVE_PROTOCOL.md §2 "What the emulator must accept", §4):

* text or binary frames (the server sends binary UTF-8 JSON, the SDK text);
* camelCase or snake_case keys (proto3 JSON accepts both);
* standard or URL-safe base64, padded or not (the SDK encodes URL-safe);
* int64 values as JSON strings;
* several parts in one ``serverContent`` (3.1+ models);
* unknown fields are ignored; a message with no known field becomes
  :class:`UnknownMessage` so the caller can log it.

A frame we cannot use raises :class:`~daemon.errors.ProtocolError` whose text
says what was wrong; decoding never raises anything else.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, Union

from daemon.errors import EncodeError, ProtocolError

__all__ = [
    # constants
    "INPUT_RATE",
    "OUTPUT_RATE",
    "INPUT_MIME",
    # helpers
    "camel",
    "normalize",
    "b64decode",
    "b64encode",
    "parse_duration",
    "format_duration",
    # client side
    "Compression",
    "SetupConfig",
    "Turn",
    "FunctionResponse",
    "setup_message",
    "audio_message",
    "video_message",
    "text_message",
    "activity_start_message",
    "activity_end_message",
    "audio_stream_end_message",
    "client_content_message",
    "tool_response_message",
    "context_update_message",
    "encode",
    "encode_audio",
    # server side
    "ServerEvent",
    "SetupComplete",
    "ModelAudio",
    "ModelText",
    "InputTranscription",
    "OutputTranscription",
    "Interrupted",
    "GenerationComplete",
    "TurnComplete",
    "Usage",
    "FunctionCall",
    "ToolCall",
    "ToolCallCancellation",
    "GoAway",
    "ResumptionUpdate",
    "UnknownMessage",
    "decode_server_message",
]

INPUT_RATE = 16_000
"""Audio in: 16-bit little-endian PCM, mono, 16 kHz (LIVE_PROTOCOL.md §3 notes)."""
OUTPUT_RATE = 24_000
"""Audio out: the same format at 24 kHz."""
INPUT_MIME = f"audio/pcm;rate={INPUT_RATE}"

# ---------------------------------------------------------------------------------------------
# Shared helpers (also used by the local Live server)

_SNAKE = re.compile(r"_([a-z0-9])")

# Keys whose *values* are user data (function arguments and results, JSON schemas, labels):
# key spelling inside them is the user's, not the protocol's, so normalize() leaves it alone.
_OPAQUE_KEYS = frozenset(
    {
        "args",
        "response",
        "parameters",
        "parametersJsonSchema",
        "responseJsonSchema",
        "responseSchema",
        "labels",
        "partialArgs",
    }
)


def camel(key: str) -> str:
    """``mime_type`` → ``mimeType``; camelCase keys are returned unchanged."""
    if "_" not in key:
        return key
    return _SNAKE.sub(lambda m: m.group(1).upper(), key)


def normalize(value: Any) -> Any:
    """Return *value* with every protocol key in camelCase, recursively.

    proto3 JSON accepts both spellings, and the SDK mixes them
    (LIVE_PROTOCOL.md §2): pass-through sub-objects such as
    ``realtimeInputConfig`` stay snake_case. User data (function ``args`` and
    ``response``, schemas) is copied as is.
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            ck = camel(k) if isinstance(k, str) else k
            out[ck] = v if ck in _OPAQUE_KEYS else normalize(v)
        return out
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def b64decode(data: str | bytes) -> bytes:
    """Decode standard or URL-safe base64, with or without padding.

    Raises :class:`ProtocolError` on anything else.
    """
    if isinstance(data, str):
        try:
            raw = data.encode("ascii")
        except UnicodeEncodeError:
            raise ProtocolError("base64 data contains non-ASCII characters") from None
    elif isinstance(data, (bytes, bytearray)):
        raw = bytes(data)
    else:
        raise ProtocolError(f"base64 data must be a string, not {type(data).__name__}")
    if b"-" in raw or b"_" in raw:
        raw = raw.translate(_URLSAFE_TO_STD)
    raw = raw.rstrip(b"=")
    raw += b"=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"invalid base64 data: {exc}") from None


_URLSAFE_TO_STD = bytes.maketrans(b"-_", b"+/")


def b64encode(data: bytes) -> str:
    """Standard-alphabet base64, as the real server sends it."""
    return base64.b64encode(data).decode("ascii")


_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d*)?|-?\.\d+)s\s*$")


def parse_duration(value: Any) -> float:
    """Parse a ``google.protobuf.Duration`` in its JSON form (``"50s"``, ``"9.5s"``).

    Also accepts a bare number (seconds) and the ``{"seconds", "nanos"}`` object
    form, which some bridges emit. Raises :class:`ProtocolError` otherwise.
    """
    if isinstance(value, bool):
        raise ProtocolError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ProtocolError(
                f"invalid duration {value!r}: expected a string like '50s' or '9.5s'"
            )
        seconds = float(m.group(1))
    elif isinstance(value, dict):
        seconds = (
            _int(value.get("seconds", 0), "duration.seconds")
            + _int(value.get("nanos", 0), "duration.nanos") / 1e9
        )
    else:
        raise ProtocolError(f"invalid duration {value!r}")
    if seconds < 0 or seconds != seconds:
        raise ProtocolError(f"invalid duration {value!r}: negative")
    return seconds


def format_duration(seconds: float) -> str:
    """``50.0`` → ``"50s"``, ``9.5`` → ``"9.5s"`` (proto3 JSON Duration)."""
    text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _int(value: Any, where: str) -> int:
    # int64 fields may arrive as JSON strings (proto3 JSON).
    if isinstance(value, bool):
        raise ProtocolError(f"{where}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ProtocolError(f"{where}: expected an integer, got {value!r}")


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ProtocolError(f"{where}: expected true or false, got {value!r}")


def _str(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    raise ProtocolError(f"{where}: expected a string, got {type(value).__name__}")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise ProtocolError(f"{where}: expected an object, got {type(value).__name__}")


def _list(value: Any, where: str) -> list[Any]:
    if isinstance(value, list):
        return value
    raise ProtocolError(f"{where}: expected a list, got {type(value).__name__}")


# ---------------------------------------------------------------------------------------------
# Client messages


@dataclass(frozen=True)
class Compression:
    """``contextWindowCompression`` with a sliding window (LIVE_PROTOCOL.md §2).

    ``None`` fields are omitted so the server's defaults apply (trigger: 80% of
    the window; target: trigger / 2).
    """

    trigger_tokens: int | None = None
    target_tokens: int | None = None


@dataclass(frozen=True)
class SetupConfig:
    """Everything the daemon puts in the first ``setup`` frame."""

    model: str
    voice: str | None = None
    language: str | None = None
    system_instruction: str | None = None
    response_modalities: tuple[str, ...] = ("AUDIO",)
    # Push-to-talk: automatic activity detection disabled; the client sends
    # activityStart/activityEnd (LIVE_PROTOCOL.md §2 realtimeInputConfig).
    push_to_talk: bool = True
    activity_handling: str | None = None
    turn_coverage: str | None = None
    # Session resumption: ``resumable`` asks for handles; ``handle`` resumes a session.
    resumable: bool = True
    handle: str | None = None
    compression: Compression | None = None
    input_transcription: bool = True
    output_transcription: bool = True
    temperature: float | None = None
    extra_generation_config: Mapping[str, Any] = field(default_factory=dict)
    # Function declarations (name, description, parameters JSON schema, optional
    # behavior "NON_BLOCKING"); sent as one ``tools`` entry, never as an empty list
    # (FIELD_REPORTS.md F11: empty ``tools: []`` is refused by stricter models).
    tools: tuple[Mapping[str, Any], ...] = ()
    # historyConfig.initialHistoryInClientContent: clientContent right after setupComplete
    # is initial history, ended by turnComplete true, with no model call
    # (gemini-3.1-flash-live-preview takes clientContent only this way; FIELD_REPORTS F8).
    initial_history_in_client_content: bool = False


def _model_name(model: str) -> str:
    # The Gemini API wants "models/{id}"; Vertex wants "projects/…/models/{id}". A name
    # that already has a slash is taken as given (LIVE_PROTOCOL.md §1, §2).
    if not model:
        raise EncodeError("setup.model must not be empty")
    return model if "/" in model else f"models/{model}"


def setup_message(config: SetupConfig) -> dict[str, Any]:
    """The ``setup`` message for *config*, in canonical camelCase."""
    gen: dict[str, Any] = {"responseModalities": list(config.response_modalities)}
    if config.temperature is not None:
        gen["temperature"] = config.temperature
    speech: dict[str, Any] = {}
    if config.voice:
        speech["voiceConfig"] = {"prebuiltVoiceConfig": {"voiceName": config.voice}}
    if config.language:
        speech["languageCode"] = config.language
    if speech:
        gen["speechConfig"] = speech
    gen.update(config.extra_generation_config)

    setup: dict[str, Any] = {"model": _model_name(config.model), "generationConfig": gen}
    if config.system_instruction:
        # The SDK sends role "user" for the system instruction (LIVE_PROTOCOL.md §2).
        setup["systemInstruction"] = {
            "role": "user",
            "parts": [{"text": config.system_instruction}],
        }
    rt: dict[str, Any] = {}
    if config.push_to_talk:
        rt["automaticActivityDetection"] = {"disabled": True}
    if config.activity_handling:
        rt["activityHandling"] = config.activity_handling
    if config.turn_coverage:
        rt["turnCoverage"] = config.turn_coverage
    if rt:
        setup["realtimeInputConfig"] = rt
    if config.resumable or config.handle:
        # Never send {"handle": null}: {} asks for a new resumable session (PITFALLS.md).
        setup["sessionResumption"] = {"handle": config.handle} if config.handle else {}
    if config.compression is not None:
        window: dict[str, Any] = {}
        if config.compression.target_tokens is not None:
            window["targetTokens"] = config.compression.target_tokens
        cwc: dict[str, Any] = {"slidingWindow": window}
        if config.compression.trigger_tokens is not None:
            cwc["triggerTokens"] = config.compression.trigger_tokens
        setup["contextWindowCompression"] = cwc
    if config.input_transcription:
        setup["inputAudioTranscription"] = {}
    if config.output_transcription:
        setup["outputAudioTranscription"] = {}
    if config.tools:
        setup["tools"] = [{"functionDeclarations": [dict(d) for d in config.tools]}]
    if config.initial_history_in_client_content:
        setup["historyConfig"] = {"initialHistoryInClientContent": True}
    return {"setup": setup}


def audio_message(pcm: bytes, rate: int = INPUT_RATE) -> dict[str, Any]:
    """``realtimeInput.audio``: 16-bit little-endian mono PCM at *rate*."""
    return {
        "realtimeInput": {"audio": {"data": b64encode(pcm), "mimeType": f"audio/pcm;rate={rate}"}}
    }


def video_message(jpeg: bytes) -> dict[str, Any]:
    """``realtimeInput.video``: one JPEG frame (≤ 1 FPS recommended)."""
    return {"realtimeInput": {"video": {"data": b64encode(jpeg), "mimeType": "image/jpeg"}}}


def text_message(text: str) -> dict[str, Any]:
    """``realtimeInput.text``: typed input on the realtime stream."""
    if not text:
        raise EncodeError("realtimeInput.text must not be empty")
    return {"realtimeInput": {"text": text}}


def activity_start_message() -> dict[str, Any]:
    """Start of a push-to-talk turn (only with automatic detection disabled)."""
    return {"realtimeInput": {"activityStart": {}}}


def activity_end_message() -> dict[str, Any]:
    """End of a push-to-talk turn; always sent on release (PITFALLS.md)."""
    return {"realtimeInput": {"activityEnd": {}}}


def audio_stream_end_message() -> dict[str, Any]:
    """Mic off, with automatic activity detection on."""
    return {"realtimeInput": {"audioStreamEnd": True}}


@dataclass(frozen=True)
class Turn:
    """One conversation turn: ``role`` is "user", "model" or (Vertex) "system"."""

    role: str
    text: str


_ROLES = frozenset({"user", "model", "system"})


def client_content_message(turns: Sequence[Turn], turn_complete: bool) -> dict[str, Any]:
    """``clientContent``: turns appended to history; ``turn_complete`` asks for a reply."""
    out = []
    for t in turns:
        if t.role not in _ROLES:
            raise EncodeError(f"clientContent turn role {t.role!r}: must be user, model or system")
        out.append({"role": t.role, "parts": [{"text": t.text}]})
    body: dict[str, Any] = {"turns": out}
    if turn_complete:
        body["turnComplete"] = True
    return {"clientContent": body}


@dataclass(frozen=True)
class FunctionResponse:
    """One answer to a ``toolCall``; ``id`` is required on the Gemini API."""

    id: str
    name: str
    response: Mapping[str, Any]
    scheduling: str | None = None


def tool_response_message(responses: Iterable[FunctionResponse]) -> dict[str, Any]:
    out = []
    for r in responses:
        item: dict[str, Any] = {"id": r.id, "name": r.name, "response": dict(r.response)}
        if r.scheduling:
            item["scheduling"] = r.scheduling
        out.append(item)
    if not out:
        raise EncodeError("toolResponse needs at least one function response")
    return {"toolResponse": {"functionResponses": out}}


def context_update_message(system_instruction: str) -> dict[str, Any]:
    """``contextUpdate`` with a new system instruction (gemini-3.8-live family)."""
    return {
        "contextUpdate": {
            "systemInstruction": {"role": "user", "parts": [{"text": system_instruction}]}
        }
    }


def encode(message: Mapping[str, Any]) -> str:
    """Compact JSON text for a client message (the SDK sends text frames)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def encode_audio(pcm: bytes, rate: int = INPUT_RATE) -> str:
    """``encode(audio_message(pcm, rate))`` without the dict and json round trip.

    This is the hot path: one call per 20 ms mic frame.
    """
    return (
        '{"realtimeInput":{"audio":{"data":"'
        + base64.b64encode(pcm).decode("ascii")
        + '","mimeType":"audio/pcm;rate='
        + str(rate)
        + '"}}}'
    )


# ---------------------------------------------------------------------------------------------
# Server events


class ServerEvent:
    """Base class of decoded server events. Don't subclass the leaves."""

    __slots__ = ()


@dataclass(frozen=True)
class SetupComplete(ServerEvent):
    session_id: str | None = None


@dataclass(frozen=True)
class ModelAudio(ServerEvent):
    """One ``inlineData`` audio part of ``modelTurn``: 16-bit LE mono PCM."""

    pcm: bytes
    rate: int = OUTPUT_RATE


@dataclass(frozen=True)
class ModelText(ServerEvent):
    """A text part of ``modelTurn`` (``thought`` marks thinking, not speech)."""

    text: str
    thought: bool = False


@dataclass(frozen=True)
class InputTranscription(ServerEvent):
    text: str
    finished: bool = False


@dataclass(frozen=True)
class OutputTranscription(ServerEvent):
    text: str
    finished: bool = False


@dataclass(frozen=True)
class Interrupted(ServerEvent):
    """The model stopped because the user spoke: flush the playback queue."""


@dataclass(frozen=True)
class GenerationComplete(ServerEvent):
    pass


@dataclass(frozen=True)
class TurnComplete(ServerEvent):
    reason: str | None = None


@dataclass(frozen=True)
class Usage(ServerEvent):
    """``usageMetadata``. Vertex's ``candidatesTokenCount`` maps to ``response_tokens``."""

    prompt_tokens: int = 0
    response_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    thoughts_tokens: int = 0
    tool_use_prompt_tokens: int = 0


@dataclass(frozen=True)
class FunctionCall:
    id: str | None
    name: str
    args: Mapping[str, Any]


@dataclass(frozen=True)
class ToolCall(ServerEvent):
    calls: tuple[FunctionCall, ...]


@dataclass(frozen=True)
class ToolCallCancellation(ServerEvent):
    ids: tuple[str, ...]


@dataclass(frozen=True)
class GoAway(ServerEvent):
    """The server will close this connection in ``time_left`` seconds.

    ``time_left`` is ``None`` when the server did not say (treat it as soon).
    """

    time_left: float | None


@dataclass(frozen=True)
class ResumptionUpdate(ServerEvent):
    """``sessionResumptionUpdate``. Store ``new_handle`` only when ``resumable``."""

    new_handle: str | None
    resumable: bool
    last_consumed_index: int | None = None


@dataclass(frozen=True)
class UnknownMessage(ServerEvent):
    """A message with none of the fields we know; ``keys`` are its top-level keys."""

    keys: tuple[str, ...]


ServerEventT = Union[
    SetupComplete,
    ModelAudio,
    ModelText,
    InputTranscription,
    OutputTranscription,
    Interrupted,
    GenerationComplete,
    TurnComplete,
    Usage,
    ToolCall,
    ToolCallCancellation,
    GoAway,
    ResumptionUpdate,
    UnknownMessage,
]

_KNOWN_TOP = (
    "setupComplete",
    "serverContent",
    "toolCall",
    "toolCallCancellation",
    "goAway",
    "sessionResumptionUpdate",
    "usageMetadata",
)


def decode_server_message(frame: str | bytes | bytearray | memoryview) -> list[ServerEventT]:
    """Decode one WebSocket frame from the server into events, in a stable order.

    Within one ``serverContent`` the order is: input transcription, model-turn
    parts, output transcription, interrupted, generation complete, then usage
    (so token counts are current when the turn ends), then turn complete.

    Raises :class:`ProtocolError` for a frame that is not a JSON object or
    whose known fields have the wrong shape.
    """
    if isinstance(frame, (bytes, bytearray, memoryview)):
        try:
            text = bytes(frame).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"frame is not UTF-8: {exc.reason} at byte {exc.start}") from None
    elif isinstance(frame, str):
        text = frame
    else:
        raise ProtocolError(f"frame must be text or bytes, not {type(frame).__name__}")
    if not text.strip():
        # The SDK parses an empty frame as {} (LIVE_PROTOCOL.md §4); so do we.
        return [UnknownMessage(())]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            f"frame is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ProtocolError("frame is nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"frame must be a JSON object, got {type(data).__name__}")
    try:
        msg = normalize(data)
    except RecursionError:
        raise ProtocolError("frame is nested too deeply") from None

    events: list[ServerEventT] = []
    if "setupComplete" in msg:
        sc = _obj(msg["setupComplete"], "setupComplete")
        sid = sc.get("sessionId")
        events.append(
            SetupComplete(_str(sid, "setupComplete.sessionId") if sid is not None else None)
        )
    usage = _usage(msg["usageMetadata"]) if "usageMetadata" in msg else None
    if "serverContent" in msg:
        _server_content(_obj(msg["serverContent"], "serverContent"), usage, events)
        usage = None
    if usage is not None:
        events.append(usage)
    if "toolCall" in msg:
        events.append(_tool_call(_obj(msg["toolCall"], "toolCall")))
    if "toolCallCancellation" in msg:
        tcc = _obj(msg["toolCallCancellation"], "toolCallCancellation")
        ids = _list(tcc.get("ids", []), "toolCallCancellation.ids")
        events.append(
            ToolCallCancellation(tuple(_str(i, "toolCallCancellation.ids[]") for i in ids))
        )
    if "goAway" in msg:
        ga = _obj(msg["goAway"], "goAway")
        tl = ga.get("timeLeft")
        events.append(GoAway(parse_duration(tl) if tl is not None else None))
    if "sessionResumptionUpdate" in msg:
        events.append(_resumption(_obj(msg["sessionResumptionUpdate"], "sessionResumptionUpdate")))
    if not events and not any(k in msg for k in _KNOWN_TOP):
        events.append(UnknownMessage(tuple(str(k) for k in data)))
    return events


def _server_content(sc: dict[str, Any], usage: Usage | None, events: list[ServerEventT]) -> None:
    if "inputTranscription" in sc:
        events.append(
            InputTranscription(*_transcription(sc["inputTranscription"], "inputTranscription"))
        )
    if "modelTurn" in sc:
        turn = _obj(sc["modelTurn"], "serverContent.modelTurn")
        for i, part in enumerate(_list(turn.get("parts", []), "serverContent.modelTurn.parts")):
            where = f"serverContent.modelTurn.parts[{i}]"
            part = _obj(part, where)
            if "inlineData" in part:
                blob = _obj(part["inlineData"], where + ".inlineData")
                mime = _str(blob.get("mimeType", ""), where + ".inlineData.mimeType")
                data = b64decode(blob.get("data", ""))
                if mime.startswith("audio/pcm") or not mime:
                    events.append(ModelAudio(data, _rate(mime)))
                # Other inline data (images) is not something a voice device can use.
            if "text" in part:
                events.append(
                    ModelText(_str(part["text"], where + ".text"), bool(part.get("thought", False)))
                )
    if "outputTranscription" in sc:
        events.append(
            OutputTranscription(*_transcription(sc["outputTranscription"], "outputTranscription"))
        )
    if sc.get("interrupted"):
        events.append(Interrupted())
    if sc.get("generationComplete"):
        events.append(GenerationComplete())
    if usage is not None:
        events.append(usage)
    if sc.get("turnComplete"):
        reason = sc.get("turnCompleteReason")
        events.append(
            TurnComplete(_str(reason, "turnCompleteReason") if reason is not None else None)
        )


_RATE = re.compile(r"rate=(\d+)")


def _rate(mime: str) -> int:
    m = _RATE.search(mime)
    if not m:
        return OUTPUT_RATE
    rate = int(m.group(1))
    if not 1000 <= rate <= 384_000:
        raise ProtocolError(f"audio mimeType {mime!r}: implausible sample rate")
    return rate


def _transcription(value: Any, where: str) -> tuple[str, bool]:
    t = _obj(value, f"serverContent.{where}")
    text = t.get("text", "")
    return _str(text, f"serverContent.{where}.text"), bool(t.get("finished", False))


_USAGE_FIELDS = {
    "promptTokenCount": "prompt_tokens",
    "responseTokenCount": "response_tokens",
    "candidatesTokenCount": "response_tokens",  # Vertex spelling (LIVE_PROTOCOL.md §4)
    "totalTokenCount": "total_tokens",
    "cachedContentTokenCount": "cached_tokens",
    "thoughtsTokenCount": "thoughts_tokens",
    "toolUsePromptTokenCount": "tool_use_prompt_tokens",
}


def _usage(value: Any) -> Usage:
    u = _obj(value, "usageMetadata")
    kwargs: dict[str, int] = {}
    for key, name in _USAGE_FIELDS.items():
        if key in u:
            kwargs[name] = _int(u[key], f"usageMetadata.{key}")
    if "totalTokenCount" not in u:
        kwargs["total_tokens"] = kwargs.get("prompt_tokens", 0) + kwargs.get("response_tokens", 0)
    return Usage(**kwargs)


def _tool_call(tc: dict[str, Any]) -> ToolCall:
    calls = []
    for i, fc in enumerate(_list(tc.get("functionCalls", []), "toolCall.functionCalls")):
        where = f"toolCall.functionCalls[{i}]"
        fc = _obj(fc, where)
        fid = fc.get("id")
        args = fc.get("args", {})
        calls.append(
            FunctionCall(
                _str(fid, where + ".id") if fid is not None else None,
                _str(fc.get("name", ""), where + ".name"),
                _obj(args, where + ".args") if args is not None else {},
            )
        )
    return ToolCall(tuple(calls))


def _resumption(ru: dict[str, Any]) -> ResumptionUpdate:
    handle = ru.get("newHandle")
    resumable = ru.get("resumable", False)
    index = ru.get("lastConsumedClientMessageIndex")
    return ResumptionUpdate(
        _str(handle, "sessionResumptionUpdate.newHandle") or None if handle is not None else None,
        _bool(resumable, "sessionResumptionUpdate.resumable"),
        _int(index, "sessionResumptionUpdate.lastConsumedClientMessageIndex")
        if index is not None
        else None,
    )
