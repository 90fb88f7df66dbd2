"""
What clients send to the local Live server, parsed (pure, sans-I/O).

Parses ``setup``, then ``realtimeInput``, ``clientContent``, ``toolResponse``
and ``contextUpdate`` into frozen dataclasses (LIVE_PROTOCOL.md §2–§3). The
handshake (paths, credentials, models) is in :mod:`.handshake`; what the
server sends is built by :mod:`.messages`.

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
from typing import Any, Union

from daemon.errors import ProtocolError
from daemon.wire import b64decode, normalize

__all__ = [
    "ClientRefused",
    "INVALID_ARGUMENT",
    "BAD_KEY",
    "SESSION_NOT_FOUND",
    "DEADLINE_EXPIRED",
    "INTERNAL",
    "UNAVAILABLE",
    "CANCELLED",
    "ABORTED",
    "NOT_IMPLEMENTED",
    "CONTENT_TYPE_AUDIO",
    "KEY_EXPIRED",
    "RESOURCE_EXHAUSTED",
    "model_id",
    "SetupParams",
    "parse_setup",
    "parse_first_message",
    "RealtimeAudio",
    "RealtimeVideo",
    "RealtimeText",
    "ActivityStart",
    "ActivityEnd",
    "AudioStreamEnd",
    "ClientContent",
    "ToolResponse",
    "ContextUpdate",
    "ClientInput",
    "parse_client_message",
]

# ---------------------------------------------------------------------------------------------
# Close reasons, verbatim from the real API (LIVE_PROTOCOL.md §6)

INVALID_ARGUMENT = "Request contains an invalid argument."
BAD_KEY = "API key not valid. Please pass a valid API key."
SESSION_NOT_FOUND = "BidiGenerateContent session not found"
DEADLINE_EXPIRED = "Deadline expired before operation could complete."
INTERNAL = "Internal error occurred."
# Field texts (FIELD_REPORTS.md Part 0 table and F1, F9–F12; the fault modes send them)
UNAVAILABLE = "The service is currently unavailable."  # 1011, F9
CANCELLED = "The operation was cancelled."  # 1000 at the cap on Vertex, F1
ABORTED = "The operation was aborted."  # 1008, F10
NOT_IMPLEMENTED = "Operation is not implemented, or supported, or enabled."  # 1008, F10
CONTENT_TYPE_AUDIO = (
    "The audio content type (CONTENT_TYPE_AUDIO) is not supported for this "
    "model configuration."
)  # 1007 mid-session, F11
KEY_EXPIRED = "API key expired. Please renew the API key."  # 1007 at setup, F11
RESOURCE_EXHAUSTED = (
    "RESOURCE_EXHAUSTED: You exceeded your current quota, please check your plan "
    "and billing details."
)
"""1011 for the concurrent-session cap and the daily budget (F12). [UNCONFIRMED] The
exact Live API wording is not on record: FIELD_REPORTS.md F12 calls its own text a
placeholder (the 429-as-1011 claim rests on a bot-written summary); this follows the
REST API's RESOURCE_EXHAUSTED message."""


class ClientRefused(ProtocolError):
    """The client sent something the real API refuses; close with ``code`` and ``reason``.

    Defined here (not in daemon/errors.py) because only the server raises it.
    """

    def __init__(self, code: int, reason: str, detail: str = "") -> None:
        self.code = code
        self.reason = reason
        self.detail = detail
        super().__init__(f"{code} {reason}" + (f" ({detail})" if detail else ""))


def model_id(name: str) -> str:
    """``models/X`` or ``projects/…/publishers/google/models/X`` → ``X``."""
    return name.rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------------
# setup

# Keys the setup message may carry (LIVE_PROTOCOL.md §2, types.LiveClientSetup in SDK 3.6.1).
# proto3 JSON parsers refuse unknown fields, so the real API closes with 1007 for others.
_SETUP_KEYS = frozenset(
    {
        "model",
        "generationConfig",
        "systemInstruction",
        "tools",
        "realtimeInputConfig",
        "sessionResumption",
        "contextWindowCompression",
        "inputAudioTranscription",
        "outputAudioTranscription",
        "proactivity",
        "historyConfig",
        "explicitVadSignal",
        "avatarConfig",
        "safetySettings",
        "labels",
    }
)
_ACTIVITY_HANDLING = frozenset(
    {"ACTIVITY_HANDLING_UNSPECIFIED", "START_OF_ACTIVITY_INTERRUPTS", "NO_INTERRUPTION"}
)


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
    functions: tuple[tuple[str, str], ...] = ()
    """Declared functions as ``(name, behavior)``; behavior "" when unset."""


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
                raise ClientRefused(
                    1007, INVALID_ARGUMENT, f"{where}.parts[{i}].text: not a string"
                )
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


def _functions(tools: Any) -> tuple[tuple[str, str], ...]:
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise ClientRefused(1007, INVALID_ARGUMENT, "setup.tools: expected a list")
    out = []
    for i, tool in enumerate(tools):
        for j, fd in enumerate(
            _obj(tool, f"setup.tools[{i}]").get("functionDeclarations", []) or []
        ):
            fd = _obj(fd, f"setup.tools[{i}].functionDeclarations[{j}]")
            name = fd.get("name")
            if not isinstance(name, str) or not name:
                raise ClientRefused(
                    1007, INVALID_ARGUMENT, f"functionDeclarations[{j}].name is required"
                )
            out.append((name, str(fd.get("behavior", ""))))
    return tuple(out)


def parse_setup(setup: Any) -> SetupParams:
    """Validate a normalised ``setup`` object. Raises :class:`ClientRefused` (1007)."""
    setup = _obj(setup, "setup")
    unknown = sorted(set(setup) - _SETUP_KEYS)
    if unknown:
        raise ClientRefused(
            1007,
            f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
            f"'setup': Cannot find field.",
        )
    model = setup.get("model")
    if not isinstance(model, str) or not model:
        raise ClientRefused(1007, INVALID_ARGUMENT, "setup.model is required")
    gen = _obj(setup.get("generationConfig"), "setup.generationConfig")
    modalities = gen.get("responseModalities", ["AUDIO"])
    if (
        not isinstance(modalities, list)
        or len(modalities) > 1
        or any(m not in ("AUDIO", "TEXT") for m in modalities)
    ):
        raise ClientRefused(
            1007, INVALID_ARGUMENT, "responseModalities: exactly one of AUDIO, TEXT"
        )
    voice = None
    speech = _obj(gen.get("speechConfig"), "speechConfig")
    prebuilt = _obj(
        _obj(speech.get("voiceConfig"), "voiceConfig").get("prebuiltVoiceConfig"),
        "prebuiltVoiceConfig",
    )
    if isinstance(prebuilt.get("voiceName"), str):
        voice = prebuilt["voiceName"]

    rt = _obj(setup.get("realtimeInputConfig"), "setup.realtimeInputConfig")
    aad = _obj(rt.get("automaticActivityDetection"), "automaticActivityDetection")
    disabled = aad.get("disabled", False)
    if not isinstance(disabled, bool):
        raise ClientRefused(
            1007, INVALID_ARGUMENT, "automaticActivityDetection.disabled: not a bool"
        )
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
        functions=_functions(setup.get("tools")),
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
    responses: tuple[tuple[str, str, Any], ...]
    """``(id, name, response)`` of each function response."""
    scheduling: tuple[str, ...] = ()
    """The ``scheduling`` of each function response, "" when it had none."""


@dataclass(frozen=True)
class ContextUpdate:
    system_instruction: str | None


ClientInput = Union[
    RealtimeAudio,
    RealtimeVideo,
    RealtimeText,
    ActivityStart,
    ActivityEnd,
    AudioStreamEnd,
    ClientContent,
    ToolResponse,
    ContextUpdate,
]

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
        raise ClientRefused(
            1007, f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
        )
    if len(msg) != 1:
        # Exactly one of the oneof fields (LIVE_PROTOCOL.md §2 protocol rules).
        raise ClientRefused(
            1007, INVALID_ARGUMENT, f"expected exactly one message field, got {sorted(msg)}"
        )
    return msg


def parse_first_message(frame: str | bytes) -> SetupParams:
    """The first client frame must be ``setup`` (else 1007, LIVE_PROTOCOL.md §2)."""
    msg = _load(frame)
    if "setup" not in msg:
        raise ClientRefused(
            1007, INVALID_ARGUMENT, f"first message is {next(iter(msg))}, not setup"
        )
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
                raise ClientRefused(
                    1007, INVALID_ARGUMENT, f"clientContent.turns[{i}].role {role!r}"
                )
            turns.append((role, _text_of(turn, f"clientContent.turns[{i}]")))
        return [ClientContent(tuple(turns), bool(cc.get("turnComplete", False)))]
    if "toolResponse" in msg:
        tr = _obj(msg["toolResponse"], "toolResponse")
        responses, scheduling = [], []
        for i, fr in enumerate(tr.get("functionResponses", []) or []):
            fr = _obj(fr, f"toolResponse.functionResponses[{i}]")
            responses.append((str(fr.get("id", "")), str(fr.get("name", "")), fr.get("response")))
            scheduling.append(_scheduling(fr, i))
        return [ToolResponse(tuple(responses), tuple(scheduling))]
    cu = _obj(msg["contextUpdate"], "contextUpdate")
    si = cu.get("systemInstruction")
    return [
        ContextUpdate(_text_of(si, "contextUpdate.systemInstruction") if si is not None else None)
    ]


SCHEDULING = ("SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT")
"""FunctionResponse.scheduling, the proto enum (LIVE_PROTOCOL.md §3; FIELD_REPORTS Part 3)."""


def _scheduling(fr: dict[str, Any], i: int) -> str:
    # An enum outside the proto's values is refused like any bad field (1007); a model
    # without NON_BLOCKING calls takes the field and has nothing to schedule (nothing
    # on record says the real service refuses it there).
    if not isinstance(fr.get("willContinue", False), bool):
        raise ClientRefused(
            1007, INVALID_ARGUMENT, f"toolResponse.functionResponses[{i}].willContinue: not a bool"
        )
    value = fr.get("scheduling")
    if value is None:
        return ""
    if value not in SCHEDULING:
        raise ClientRefused(
            1007, INVALID_ARGUMENT, f"toolResponse.functionResponses[{i}].scheduling {value!r}"
        )
    return str(value)


def _realtime(rt: dict[str, Any]) -> list[ClientInput]:
    out: list[ClientInput] = []
    if "activityStart" in rt:
        out.append(ActivityStart())
    if "mediaChunks" in rt:
        # Deprecated; only the first chunk is used (LIVE_PROTOCOL.md §3).
        chunks = rt["mediaChunks"]
        if isinstance(chunks, list) and chunks:
            data, mime = _blob(chunks[0], "realtimeInput.mediaChunks[0]")
            out.append(
                _audio(data, mime, "realtimeInput.mediaChunks[0]")
                if mime.startswith("audio/")
                else RealtimeVideo(data, mime)
            )
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
    known = {
        "activityStart",
        "activityEnd",
        "audio",
        "video",
        "text",
        "audioStreamEnd",
        "mediaChunks",
    }
    unknown = sorted(set(rt) - known)
    if unknown:
        raise ClientRefused(
            1007,
            f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
            f"'realtime_input': Cannot find field.",
        )
    return out
