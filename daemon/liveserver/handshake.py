"""
The WebSocket handshake of the local Live server (pure): which paths exist,
where credentials come from, which models serve bidiGenerateContent
(LIVE_PROTOCOL.md §1, §2 "Models").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import parse_qs, urlsplit

from daemon.liveserver.protocol import ClientRefused

__all__ = [
    "Endpoint",
    "parse_path",
    "credentials",
    "GEMINI_MODELS",
    "VERTEX_MODELS",
    "RETIRED_MODELS",
    "is_known_model",
    "model_not_found",
]

_GEMINI_PATH = re.compile(
    r"^/ws/google\.ai\.generativelanguage\.(v1alpha|v1beta)\.GenerativeService\."
    r"(BidiGenerateContent|BidiGenerateContentConstrained)$"
)
_VERTEX_PATH = re.compile(
    r"^/ws/google\.cloud\.aiplatform\.(v1beta1|v1)\.LlmBidiService/(BidiGenerateContent)$"
)


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

GEMINI_MODELS = frozenset(
    {
        "gemini-3.8-live",
        "gemini-3.8-live-extended-thinking",
        "gemini-3.1-flash-live-preview",
        "gemini-2.5-flash-native-audio-preview-12-2025",
        "gemini-2.5-flash-native-audio-preview-09-2025",
        "gemini-2.5-flash-native-audio-latest",
    }
)
VERTEX_MODELS = frozenset(
    {
        "gemini-3.8-live",
        "gemini-live-2.5-flash-native-audio",
        "gemini-live-2.5-flash-preview-native-audio-09-2025",
    }
)
RETIRED_MODELS = frozenset(
    {"gemini-live-2.5-flash-preview", "gemini-2.0-flash-exp", "gemini-2.0-flash"}
)


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
        f"their supported methods.",
    )
