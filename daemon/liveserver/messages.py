"""
What the local Live server sends, built as dicts (pure): canonical camelCase
proto3 JSON with default-valued fields left out (LIVE_PROTOCOL.md §4), sent as
binary UTF-8 JSON frames.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from daemon.wire import b64encode, format_duration

__all__ = [
    "encode_server",
    "setup_complete",
    "model_audio",
    "output_transcription",
    "input_transcription",
    "interrupted",
    "generation_complete",
    "turn_complete",
    "go_away",
    "resumption_update",
    "tool_call",
    "tool_call_cancellation",
]


def encode_server(message: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON for a binary frame, as the real server sends (LIVE_PROTOCOL.md §4)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def setup_complete() -> dict[str, Any]:
    return {"setupComplete": {}}


def model_audio(pcm: bytes, rate: int = 24_000) -> dict[str, Any]:
    return {
        "serverContent": {
            "modelTurn": {
                "role": "model",
                "parts": [
                    {"inlineData": {"mimeType": f"audio/pcm;rate={rate}", "data": b64encode(pcm)}}
                ],
            }
        }
    }


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


def turn_complete(
    prompt_tokens: int,
    response_tokens: int,
    api: str = "gemini",
    response_modality: str = "AUDIO",
    prompt_details: Sequence[tuple[str, int]] = (),
) -> dict[str, Any]:
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


def tool_call(call_id: str, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """``toolCall`` with one function call (LIVE_PROTOCOL.md §4)."""
    call: dict[str, Any] = {"id": call_id, "name": name}
    if args:
        call["args"] = dict(args)
    return {"toolCall": {"functionCalls": [call]}}


def tool_call_cancellation(ids: Sequence[str]) -> dict[str, Any]:
    """``toolCallCancellation``: the client interrupted the turn that made these calls."""
    return {"toolCallCancellation": {"ids": list(ids)}}


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
