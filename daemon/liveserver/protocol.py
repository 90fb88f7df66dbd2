"""
The server side of the Live API wire protocol (pure, sans-I/O).

Parses what clients send (handshake path and credentials, ``setup``, then
``realtimeInput``, ``clientContent``, ``toolResponse``, ``contextUpdate``) into
frozen dataclasses, and builds the server messages as dicts in canonical
camelCase proto3 JSON with default-valued fields left out (LIVE_PROTOCOL.md §4).

A client message the real API would refuse raises :class:`ClientRefused`,
which carries the WebSocket close code and the real reason text
(LIVE_PROTOCOL.md §6); the server closes the connection with exactly that.

Key spellings and base64 alphabets are normalised with the helpers of
:mod:`daemon.wire` (the SDK mixes snake_case and camelCase and encodes bytes
URL-safe, LIVE_PROTOCOL.md §2).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union
from urllib.parse import parse_qs, urlsplit

from daemon.errors import ProtocolError
from daemon.wire import b64decode, b64encode, format_duration, normalize

__all__ = [
    "ClientRefused", "Endpoint", "parse_path", "credentials", "INVALID_ARGUMENT", "BAD_KEY",
    "SESSION_NOT_FOUND", "DEADLINE_EXPIRED", "INTERNAL", "model_not_found", "model_id",
    "is_known_model", "GEMINI_MODELS", "VERTEX_MODELS", "RETIRED_MODELS",
    "SetupParams", "parse_setup", "parse_first_message",
    "RealtimeAudio", "RealtimeVideo", "RealtimeText", "ActivityStart", "ActivityEnd",
    "AudioStreamEnd", "ClientContent", "ToolResponse", "ContextUpdate", "ClientInput",
    "parse_client_message", "encode_server",
    "setup_complete", "model_audio", "output_transcription", "input_transcription",
    "interrupted", "generation_complete", "turn_complete", "go_away", "resumption_update",
]

# ---------------------------------------------------------------------------------------------
# Close reasons, verbatim from the real API (LIVE_PROTOCOL.md §6)

INVALID_ARGUMENT = "Request contains an invalid argument."
BAD_KEY = "API key not valid. Please pass a valid API key."
SESSION_NOT_FOUND = "BidiGenerateContent session not found"
DEADLINE_EXPIRED = "Deadline expired before operation could complete."
INTERNAL = "Internal error occurred."


class ClientRefused(ProtocolError):
    """The client sent something the real API refuses; close with ``code`` and ``reason``.

    Defined here (not in daemon/errors.py) because only the server raises it.
    """

    def __init__(self, code: int, reason: str, detail: str = "") -> None:
        self.code = code
        self.reason = reason
        self.detail = detail
        super().__init__(f"{code} {reason}" + (f" ({detail})" if detail else ""))


# ---------------------------------------------------------------------------------------------
# Handshake: path and credentials (LIVE_PROTOCOL.md §1)

_GEMINI_PATH = re.compile(
    r"^/ws/google\.ai\.generativelanguage\.(v1alpha|v1beta)\.GenerativeService\."
    r"(BidiGenerateContent|BidiGenerateContentConstrained)$")
_VERTEX_PATH = re.compile(
    r"^/ws/google\.cloud\.aiplatform\.(v1beta1|v1)\.LlmBidiService/(BidiGenerateContent)$")


@dataclass(frozen=True)
class Endpoint:
    """What the request path selects: ``api`` is "gemini" or "vertex"."""

    api: str
    version: str
    method: str

    @property
    def path(self) -> str:
        if self.api == "vertex":
            return f"/ws/google.cloud.aiplatform.{self.version}.LlmBidiService/{self.method}"
        return f"/ws/google.ai.generativelanguage.{self.version}.GenerativeService.{self.method}"


def parse_path(path: str) -> Endpoint | None:
    """The endpoint for a request path (query string allowed), or None (→ HTTP 404)."""
    route = urlsplit(path).path
    if m := _GEMINI_PATH.match(route):
        return Endpoint("gemini", m.group(1), m.group(2))
    if m := _VERTEX_PATH.match(route):
        return Endpoint("vertex", m.group(1), m.group(2))
    return None


def credentials(path: str, headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every credential the client presented, as ``(source, value)`` pairs.

    Sources: ``x-goog-api-key`` header and ``Authorization: Token …`` (SDK ≥1.30),
    ``Authorization: Bearer …`` (Vertex OAuth), ``?key=`` and ``?access_token=``
    (SDK ≤1.20 and browser clients). LIVE_PROTOCOL.md §1.
    """
    found: list[tuple[str, str]] = []
    header_key = headers.get("x-goog-api-key")
    if header_key:
        found.append(("x-goog-api-key", header_key.strip()))
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() in ("token", "bearer") and value.strip():
            found.append((f"authorization-{scheme.lower()}", value.strip()))
    query = parse_qs(urlsplit(path).query)
    for name in ("key", "access_token"):
        for value in query.get(name, []):
            if value:
                found.append((name, value))
    return found


# ---------------------------------------------------------------------------------------------
# Models (LIVE_PROTOCOL.md §2 "Models for native-audio Live")

GEMINI_MODELS = frozenset({
    "gemini-3.8-live", "gemini-3.8-live-extended-thinking", "gemini-3.1-flash-live-preview",
    "gemini-2.5-flash-native-audio-preview-12-2025", "gemini-2.5-flash-native-audio-preview-09-2025",
    "gemini-2.5-flash-native-audio-latest",
})
VERTEX_MODELS = frozenset({
    "gemini-3.8-live", "gemini-live-2.5-flash-native-audio",
    "gemini-live-2.5-flash-preview-native-audio-09-2025",
})
RETIRED_MODELS = frozenset({"gemini-live-2.5-flash-preview", "gemini-2.0-flash-exp", "gemini-2.0-flash"})


def model_id(name: str) -> str:
    """``models/X`` or ``projects/…/publishers/google/models/X`` → ``X``."""
    return name.rsplit("/", 1)[-1]


def is_known_model(model: str, api: str) -> bool:
    """Whether *model* (a bare id) serves bidiGenerateContent on *api*."""
    if model in RETIRED_MODELS:
        return False
    return model in (VERTEX_MODELS if api == "vertex" else GEMINI_MODELS)


def model_not_found(model: str, endpoint: Endpoint) -> ClientRefused:
    """1008 with the real API's text (LIVE_PROTOCOL.md §6).

    The Gemini text is verbatim from the table. For Vertex no Live close text is
    on record; we reuse the same sentence with the Vertex version rather than
    invent one.
    """
    return ClientRefused(
        1008,
        f"models/{model} is not found for API version {endpoint.version}, or is not supported "
        f"for bidiGenerateContent. Call ListModels to see the list of available models and "
        f"their supported methods.")


# ---------------------------------------------------------------------------------------------
# setup

# Keys the setup message may carry (LIVE_PROTOCOL.md §2, types.LiveClientSetup in SDK 3.6.1).
# proto3 JSON parsers refuse unknown fields, so the real API closes with 1007 for others.
_SETUP_KEYS = frozenset({
    "model", "generationConfig", "systemInstruction", "tools", "realtimeInputConfig",
    "sessionResumption", "contextWindowCompression", "inputAudioTranscription",
    "outputAudioTranscription", "proactivity", "historyConfig", "explicitVadSignal",
    "avatarConfig", "safetySettings", "labels",
})
_ACTIVITY_HANDLING = frozenset({"ACTIVITY_HANDLING_UNSPECIFIED", "START_OF_ACTIVITY_INTERRUPTS",
                                "NO_INTERRUPTION"})


@dataclass(frozen=True)
class SetupParams:
    """The parts of ``setup`` the local server acts on."""

    model: str
    """Bare model id, e.g. ``gemini-3.8-live``."""
    automatic_vad: bool = True
    silence_ms: int | None = None
    interrupts: bool = True
    """``activityHandling`` is START_OF_ACTIVITY_INTERRUPTS (the default)."""
    resumption: bool = False
    handle: str | None = None
    transparent: bool = False
    compression: bool = False
    trigger_tokens: int | None = None
    target_tokens: int | None = None
    input_transcription: bool = False
    output_transcription: bool = False
    system_instruction: str = ""
    voice: str | None = None


def _text_of(content: Any, where: str) -> str:
    # A Content: {"role": …, "parts": [{"text": …}, …]}; non-text parts carry no words.
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, dict):
        raise ClientRefused(1007, INVALID_ARGUMENT, f"{where}: expected an object")
    parts = content.get("parts", [])
    if not isinstance(parts, list):
        raise ClientRefused(1007, INVALID_ARGUMENT, f"{where}.parts: expected a list")
    texts = []
    for i, part in enumerate(parts):
        if not isinstance(part, dict):
            raise ClientRefused(1007, INVALID_ARGUMENT, f"{where}.parts[{i}]: expected an object")
        text = part.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise ClientRefused(1007, INVALID_ARGUMENT, f"{where}.parts[{i}].text: not a string")
            texts.append(text)
    return "".join(texts)


def _opt_int(value: Any, where: str) -> int | None:
    # int64 fields may be JSON strings (proto3 JSON).
    if value is None:
        return None
    if isinstance(value, bool):
        raise ClientRefused(1007, INVALID_ARGUMENT, f"{where}: expected an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ClientRefused(1007, INVALID_ARGUMENT, f"{where}: expected an integer") from None


def _obj(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ClientRefused(1007, INVALID_ARGUMENT, f"{where}: expected an object")
    return value


def parse_setup(setup: Any) -> SetupParams:
    """Validate a normalised ``setup`` object. Raises :class:`ClientRefused` (1007)."""
    setup = _obj(setup, "setup")
    unknown = sorted(set(setup) - _SETUP_KEYS)
    if unknown:
        raise ClientRefused(1007, f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                                  f"'setup': Cannot find field.")
    model = setup.get("model")
    if not isinstance(model, str) or not model:
        raise ClientRefused(1007, INVALID_ARGUMENT, "setup.model is required")
    gen = _obj(setup.get("generationConfig"), "setup.generationConfig")
    modalities = gen.get("responseModalities", ["AUDIO"])
    if not isinstance(modalities, list) or len(modalities) > 1 or any(
            m not in ("AUDIO", "TEXT") for m in modalities):
        raise ClientRefused(1007, INVALID_ARGUMENT, "responseModalities: exactly one of AUDIO, TEXT")
    voice = None
    speech = _obj(gen.get("speechConfig"), "speechConfig")
    prebuilt = _obj(_obj(speech.get("voiceConfig"), "voiceConfig").get("prebuiltVoiceConfig"),
                    "prebuiltVoiceConfig")
    if isinstance(prebuilt.get("voiceName"), str):
        voice = prebuilt["voiceName"]

    rt = _obj(setup.get("realtimeInputConfig"), "setup.realtimeInputConfig")
    aad = _obj(rt.get("automaticActivityDetection"), "automaticActivityDetection")
    disabled = aad.get("disabled", False)
    if not isinstance(disabled, bool):
        raise ClientRefused(1007, INVALID_ARGUMENT, "automaticActivityDetection.disabled: not a bool")
    handling = rt.get("activityHandling", "START_OF_ACTIVITY_INTERRUPTS")
    if handling not in _ACTIVITY_HANDLING:
        raise ClientRefused(1007, INVALID_ARGUMENT, f"activityHandling {handling!r}")

    resumption = "sessionResumption" in setup
    sr = _obj(setup.get("sessionResumption"), "setup.sessionResumption")
    handle = sr.get("handle")
    if handle is not None and not isinstance(handle, str):
        raise ClientRefused(1007, INVALID_ARGUMENT, "sessionResumption.handle: not a string")

    compression = "contextWindowCompression" in setup
    cwc = _obj(setup.get("contextWindowCompression"), "setup.contextWindowCompression")
    sw = _obj(cwc.get("slidingWindow"), "contextWindowCompression.slidingWindow")
    trigger = _opt_int(cwc.get("triggerTokens"), "contextWindowCompression.triggerTokens")
    target = _opt_int(sw.get("targetTokens"), "slidingWindow.targetTokens")
    if (trigger is not None and trigger <= 0) or (target is not None and target < 0):
        raise ClientRefused(1007, INVALID_ARGUMENT, "compression token counts must be positive")

    return SetupParams(
        model=model_id(model),
        automatic_vad=not disabled,
        silence_ms=_opt_int(aad.get("silenceDurationMs"), "silenceDurationMs"),
        interrupts=handling != "NO_INTERRUPTION",
        resumption=resumption,
        handle=handle or None,
        transparent=bool(sr.get("transparent", False)),
        compression=compression,
        trigger_tokens=trigger,
        target_tokens=target,
        input_transcription="inputAudioTranscription" in setup,
        output_transcription="outputAudioTranscription" in setup,
        system_instruction=_text_of(setup.get("systemInstruction"), "setup.systemInstruction"),
        voice=voice,
    )


# ---------------------------------------------------------------------------------------------
# Client messages after setup (LIVE_PROTOCOL.md §3)


@dataclass(frozen=True)
class RealtimeAudio:
    pcm: bytes
    rate: int


@dataclass(frozen=True)
class RealtimeVideo:
    data: bytes
    mime_type: str


@dataclass(frozen=True)
class RealtimeText:
    text: str


@dataclass(frozen=True)
class ActivityStart:
    pass


@dataclass(frozen=True)
class ActivityEnd:
    pass


@dataclass(frozen=True)
class AudioStreamEnd:
    pass


@dataclass(frozen=True)
class ClientContent:
    turns: tuple[tuple[str, str], ...]
    """``(role, text)`` pairs in order."""
    turn_complete: bool


@dataclass(frozen=True)
class ToolResponse:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class ContextUpdate:
    system_instruction: str | None


ClientInput = Union[RealtimeAudio, RealtimeVideo, RealtimeText, ActivityStart, ActivityEnd,
                    AudioStreamEnd, ClientContent, ToolResponse, ContextUpdate]

_MESSAGE_KEYS = ("setup", "clientContent", "realtimeInput", "toolResponse", "contextUpdate")
_RATE = re.compile(r"rate=(\d+)")


def _load(frame: str | bytes) -> dict[str, Any]:
    # The SDK sends text frames; other clients send binary UTF-8 (LIVE_PROTOCOL.md §4).
    try:
        text = frame.decode("utf-8") if isinstance(frame, (bytes, bytearray)) else frame
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ClientRefused(1007, "Invalid JSON payload received.", str(exc)) from None
    if not isinstance(data, dict):
        raise ClientRefused(1007, "Invalid JSON payload received.", "not a JSON object")
    try:
        msg = normalize(data)
    except RecursionError:
        raise ClientRefused(1007, "Invalid JSON payload received.", "nested too deeply") from None
    unknown = [k for k in msg if k not in _MESSAGE_KEYS]
    if unknown:
        raise ClientRefused(1007, f'Invalid JSON payload received. Unknown name "{unknown[0]}": '
                                  f"Cannot find field.")
    if len(msg) != 1:
        # Exactly one of the oneof fields (LIVE_PROTOCOL.md §2 protocol rules).
        raise ClientRefused(1007, INVALID_ARGUMENT, f"expected exactly one message field, got {sorted(msg)}")
    return msg


def parse_first_message(frame: str | bytes) -> SetupParams:
    """The first client frame must be ``setup`` (else 1007, LIVE_PROTOCOL.md §2)."""
    msg = _load(frame)
    if "setup" not in msg:
        raise ClientRefused(1007, INVALID_ARGUMENT, f"first message is {next(iter(msg))}, not setup")
    return parse_setup(msg["setup"])


def _blob(value: Any, where: str) -> tuple[bytes, str]:
    blob = _obj(value, where)
    mime = blob.get("mimeType", "")
    if not isinstance(mime, str):
        raise ClientRefused(1007, INVALID_ARGUMENT, f"{where}.mimeType: not a string")
    try:
        return b64decode(blob.get("data", "")), mime
    except ProtocolError as exc:
        raise ClientRefused(1007, INVALID_ARGUMENT, f"{where}.data: {exc}") from None


def _audio(pcm: bytes, mime: str, where: str) -> RealtimeAudio:
    m = _RATE.search(mime)
    rate = int(m.group(1)) if m else 16_000
    if not mime.startswith("audio/pcm") or not 8000 <= rate <= 48000:
        raise ClientRefused(1007, INVALID_ARGUMENT, f"{where}: unsupported audio type {mime!r}")
    if len(pcm) % 2:
        raise ClientRefused(1007, INVALID_ARGUMENT, f"{where}: 16-bit PCM has an odd byte count")
    return RealtimeAudio(pcm, rate)


def parse_client_message(frame: str | bytes) -> list[ClientInput]:
    """Parse one client frame after setup into inputs, in a stable order.

    Raises :class:`ClientRefused` for anything the real API would refuse
    (a second ``setup``, malformed JSON, unknown fields, bad base64).
    """
    msg = _load(frame)
    if "setup" in msg:
        raise ClientRefused(1007, INVALID_ARGUMENT, "setup may only be sent once")
    if "realtimeInput" in msg:
        return _realtime(_obj(msg["realtimeInput"], "realtimeInput"))
    if "clientContent" in msg:
        cc = _obj(msg["clientContent"], "clientContent")
        turns = []
        raw_turns = cc.get("turns", [])
        if not isinstance(raw_turns, list):
            raise ClientRefused(1007, INVALID_ARGUMENT, "clientContent.turns: expected a list")
        for i, turn in enumerate(raw_turns):
            turn = _obj(turn, f"clientContent.turns[{i}]")
            role = turn.get("role", "user")
            if role not in ("user", "model", "system"):
                raise ClientRefused(1007, INVALID_ARGUMENT, f"clientContent.turns[{i}].role {role!r}")
            turns.append((role, _text_of(turn, f"clientContent.turns[{i}]")))
        return [ClientContent(tuple(turns), bool(cc.get("turnComplete", False)))]
    if "toolResponse" in msg:
        tr = _obj(msg["toolResponse"], "toolResponse")
        ids = []
        for fr in tr.get("functionResponses", []) or []:
            if isinstance(fr, dict) and isinstance(fr.get("id"), str):
                ids.append(fr["id"])
        return [ToolResponse(tuple(ids))]
    cu = _obj(msg["contextUpdate"], "contextUpdate")
    si = cu.get("systemInstruction")
    return [ContextUpdate(_text_of(si, "contextUpdate.systemInstruction") if si is not None else None)]


def _realtime(rt: dict[str, Any]) -> list[ClientInput]:
    out: list[ClientInput] = []
    if "activityStart" in rt:
        out.append(ActivityStart())
    if "mediaChunks" in rt:
        # Deprecated; only the first chunk is used (LIVE_PROTOCOL.md §3).
        chunks = rt["mediaChunks"]
        if isinstance(chunks, list) and chunks:
            data, mime = _blob(chunks[0], "realtimeInput.mediaChunks[0]")
            out.append(_audio(data, mime, "realtimeInput.mediaChunks[0]") if mime.startswith("audio/")
                       else RealtimeVideo(data, mime))
    if "audio" in rt:
        data, mime = _blob(rt["audio"], "realtimeInput.audio")
        out.append(_audio(data, mime or "audio/pcm;rate=16000", "realtimeInput.audio"))
    if "video" in rt:
        data, mime = _blob(rt["video"], "realtimeInput.video")
        out.append(RealtimeVideo(data, mime))
    if "text" in rt:
        text = rt["text"]
        if not isinstance(text, str):
            raise ClientRefused(1007, INVALID_ARGUMENT, "realtimeInput.text: not a string")
        if text:
            out.append(RealtimeText(text))
    if rt.get("audioStreamEnd"):
        out.append(AudioStreamEnd())
    if "activityEnd" in rt:
        out.append(ActivityEnd())
    known = {"activityStart", "activityEnd", "audio", "video", "text", "audioStreamEnd", "mediaChunks"}
    unknown = sorted(set(rt) - known)
    if unknown:
        raise ClientRefused(1007, f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                                  f"'realtime_input': Cannot find field.")
    return out


# ---------------------------------------------------------------------------------------------
# Server messages: dicts in canonical camelCase, default fields omitted (LIVE_PROTOCOL.md §4)


def encode_server(message: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON for a binary frame, as the real server sends (LIVE_PROTOCOL.md §4)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def setup_complete() -> dict[str, Any]:
    return {"setupComplete": {}}


def model_audio(pcm: bytes, rate: int = 24_000) -> dict[str, Any]:
    return {"serverContent": {"modelTurn": {"role": "model", "parts": [
        {"inlineData": {"mimeType": f"audio/pcm;rate={rate}", "data": b64encode(pcm)}}]}}}


def output_transcription(text: str) -> dict[str, Any]:
    return {"serverContent": {"outputTranscription": {"text": text}}}


def input_transcription(text: str, finished: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text}
    if finished:
        body["finished"] = True
    return {"serverContent": {"inputTranscription": body}}


def interrupted() -> dict[str, Any]:
    return {"serverContent": {"interrupted": True}}


def generation_complete() -> dict[str, Any]:
    return {"serverContent": {"generationComplete": True}}


def turn_complete(prompt_tokens: int, response_tokens: int, api: str = "gemini",
                  response_modality: str = "AUDIO",
                  prompt_details: Sequence[tuple[str, int]] = ()) -> dict[str, Any]:
    """``turnComplete`` with ``usageMetadata`` in the same message (LIVE_PROTOCOL.md §4).

    Vertex names the response count ``candidatesTokenCount``.
    """
    usage: dict[str, Any] = {}
    if prompt_tokens:
        usage["promptTokenCount"] = prompt_tokens
    response_key = "candidatesTokenCount" if api == "vertex" else "responseTokenCount"
    if response_tokens:
        usage[response_key] = response_tokens
    usage["totalTokenCount"] = prompt_tokens + response_tokens
    details = [{"modality": m, "tokenCount": n} for m, n in prompt_details if n]
    if details:
        usage["promptTokensDetails"] = details
    if response_tokens:
        details_key = "candidatesTokensDetails" if api == "vertex" else "responseTokensDetails"
        usage[details_key] = [{"modality": response_modality, "tokenCount": response_tokens}]
    return {"serverContent": {"turnComplete": True}, "usageMetadata": usage}


def go_away(time_left: float) -> dict[str, Any]:
    """``goAway`` with a Duration string: ``"50s"``, ``"9.5s"`` (LIVE_PROTOCOL.md §4)."""
    return {"goAway": {"timeLeft": format_duration(max(0.0, time_left))}}


def resumption_update(handle: str | None, last_index: int | None = None) -> dict[str, Any]:
    """``{newHandle, resumable:true}`` at a boundary; ``{}`` (resumable false) otherwise."""
    body: dict[str, Any] = {}
    if handle:
        body["newHandle"] = handle
        body["resumable"] = True
    if last_index is not None:
        # int64 → JSON string (proto3 JSON); Vertex transparent mode only.
        body["lastConsumedClientMessageIndex"] = str(last_index)
    return {"sessionResumptionUpdate": body}
