"""
Which Live API ``voiced run`` talks to, and as whom: ``[live] endpoint`` → a
:class:`Target` (URL, credential headers, API flavour, model name as that API wants it).

No I/O except the optional Google credentials lookup for Vertex (lazy, only when
asked for). The embedded local server has no URL until it listens, so "local" is
resolved to a :class:`Target` with ``local=True`` and the caller fills in the URL
with :meth:`Target.at`.

Endpoint values (LIVE_PROTOCOL.md §1):

* ``auto``: the Gemini API when an API key was found, else the embedded local
  server (answers are simulated; the caller logs a warning).
* ``gemini``: ``wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.
  {api_version}.GenerativeService.BidiGenerateContent`` with ``x-goog-api-key``.
  No key is a :class:`~daemon.errors.ConfigError` (exit 78).
* ``vertex``: the regional ``LlmBidiService`` URL; with an API key, express mode
  (``x-goog-api-key``), else ``Authorization: Bearer`` from Application Default
  Credentials (google-auth), refreshed before each connection. The model is
  expanded to ``projects/{p}/locations/{l}/publishers/google/models/{id}``.
* ``local``: the embedded :class:`~daemon.liveserver.LiveServer`.
* a ``ws://`` / ``wss://`` URL: any Live server. Plain ``ws://`` only for loopback
  hosts (the key and the conversation would cross the network in clear text);
  a URL without a ``/ws/`` path gets the Gemini path appended.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit, urlunsplit

from daemon.app.config import LiveSettings, Secret
from daemon.errors import ConfigError
from daemon.runtime.connection import Endpoint

__all__ = ["Target", "resolve", "gemini_path", "vertex_url", "is_loopback", "BearerHeaders"]

log = logging.getLogger(__name__)

GEMINI_HOST = "generativelanguage.googleapis.com"
VERTEX_VERSION = "v1beta1"  # the SDK's default for Live on Vertex (LIVE_PROTOCOL.md §1)
_KEY_SOURCES = "the systemd credential api-key, [live] key_file, or VOICED_API_KEY"


def gemini_path(api_version: str = "v1beta") -> str:
    """The Gemini API Live path (v1beta: the one Live works on, LIVE_PROTOCOL.md §1)."""
    return f"/ws/google.ai.generativelanguage.{api_version}.GenerativeService.BidiGenerateContent"


def vertex_url(location: str) -> str:
    """The Vertex AI Live URL for ``location`` ("global", "us"/"eu" multi-regions, or a region)."""
    if location in ("", "global"):
        host = "aiplatform.googleapis.com"
    elif location in ("us", "eu"):
        host = f"aiplatform.{location}.rep.googleapis.com"
    else:
        host = f"{location}-aiplatform.googleapis.com"
    return f"wss://{host}/ws/google.cloud.aiplatform.{VERTEX_VERSION}.LlmBidiService/BidiGenerateContent"


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerHeaders(Mapping[str, str]):
    """``Authorization: Bearer <token>`` from Google Application Default Credentials,
    refreshed when it is about to expire. The connection copies the headers at each
    connect, so every new connection gets a valid token.

    Reading it may block: the refresh is an HTTPS call (about once an hour; tokens last
    60 minutes). ``blocking = True`` tells :class:`~daemon.runtime.connection.Connection` to copy
    it off the event loop, in a worker thread; the lock keeps two copies from
    refreshing at once."""

    blocking = True

    def __init__(self, credentials: Any, quota_project: str | None = None) -> None:
        self._credentials = credentials
        self._quota_project = quota_project
        self._lock = threading.Lock()

    def _headers(self) -> dict[str, str]:
        creds = self._credentials
        with self._lock:
            # google-auth's own test (token present, not within its refresh margin of
            # expiry; expiry is naive UTC, which it handles).
            if not creds.valid:
                from google.auth.transport.requests import Request

                creds.refresh(Request())
            token = creds.token
        out = {"Authorization": f"Bearer {token}"}
        if self._quota_project:
            out["x-goog-user-project"] = self._quota_project
        return out

    def __getitem__(self, key: str) -> str:
        return self._headers()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers())

    def __len__(self) -> int:
        return 2 if self._quota_project else 1

    def __repr__(self) -> str:
        return "BearerHeaders(<hidden>)"


@dataclass(frozen=True)
class Target:
    """A resolved endpoint.

    Attributes:
        kind: "gemini", "vertex", "local" or "custom" (a URL).
        api: "gemini" or "vertex": which flavour of the protocol (decides how the
            session changes an instruction mid-session, and the model name form).
        endpoint: URL and credential headers (``url`` is "" for local until :meth:`at`).
        model: the model name as this API wants it in ``setup.model``.
        simulated: the answers come from the embedded local server, not a model.
    """

    kind: str
    api: str
    endpoint: Endpoint
    model: str
    simulated: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def local(self) -> bool:
        return self.kind == "local"

    def at(self, url: str) -> "Target":
        """The same target with the embedded server's URL filled in."""
        return replace(self, endpoint=Endpoint(url, self.endpoint.headers))

    def describe(self) -> str:
        """For logs and ``voiced status``: the URL without any query, never a credential."""
        if self.local:
            return f"local ({self.endpoint.url.split('?')[0] or 'embedded'}, simulated answers)"
        return self.endpoint.url.split("?")[0]


def _key_headers(key: Secret | None) -> dict[str, str]:
    return {"x-goog-api-key": key.reveal()} if key else {}


def _vertex_model(model: str, project: str, location: str) -> str:
    if "/" in model:
        return model  # already a resource name
    if project:
        return (
            f"projects/{project}/locations/{location or 'global'}/publishers/google/models/{model}"
        )
    return f"publishers/google/models/{model}"  # express mode (API key, no project)


def resolve(live: LiveSettings, key: Secret | None, *, credentials: Any = None) -> Target:
    """Resolve ``live.endpoint`` (see the module docstring).

    Args:
        live: the ``[live]`` settings (``endpoint`` may have been overridden by ``--endpoint``).
        key: the API key, if any.
        credentials: Google credentials for Vertex without a key (default: looked up
            with ``google.auth.default()``); tests pass their own.

    Raises:
        ConfigError: naming ``live.endpoint`` (or the Vertex key) and what is allowed.
    """
    value = live.endpoint.strip()
    if value == "auto":
        value = "gemini" if key else "local"
    if value == "local":
        return Target("local", "gemini", Endpoint("", {}), live.model, simulated=True)
    if value == "gemini":
        if not key:
            raise ConfigError(
                "live.endpoint",
                "gemini",
                f"the Gemini API needs an API key: put it in {_KEY_SOURCES}",
            )
        url = f"wss://{GEMINI_HOST}{gemini_path(live.api_version)}"
        return Target("gemini", "gemini", Endpoint(url, _key_headers(key)), live.model)
    if value == "vertex":
        return _vertex(live, key, credentials)
    if value.startswith(("ws://", "wss://")):
        return _custom(value, live, key)
    raise ConfigError(
        "live.endpoint",
        value,
        'must be one of "auto", "gemini", "vertex", "local", or a ws:// / wss:// URL',
    )


def _vertex(live: LiveSettings, key: Secret | None, credentials: Any) -> Target:
    location = live.location.strip()
    if key:
        # Express mode: an API key, no project needed (LIVE_PROTOCOL.md §1).
        headers: Mapping[str, str] = _key_headers(key)
        url = vertex_url(location if live.project else "global")
    else:
        if not live.project:
            raise ConfigError(
                "live.project",
                live.project,
                "Vertex AI needs a project id (or an API key for express mode)",
            )
        if credentials is None:
            try:
                import google.auth

                credentials, _ = google.auth.default(
                    scopes=["https://www.googleapis.com/auth/cloud-platform"]
                )
            except Exception as exc:  # DefaultCredentialsError, ImportError
                raise ConfigError(
                    "live.endpoint",
                    "vertex",
                    "no API key and no Google Application Default Credentials "
                    f"({type(exc).__name__}): set GOOGLE_APPLICATION_CREDENTIALS "
                    f"or put an express-mode key in {_KEY_SOURCES}",
                ) from None
        quota = getattr(credentials, "quota_project_id", None)
        headers = BearerHeaders(credentials, quota)
        url = vertex_url(location)
    model = _vertex_model(live.model, live.project, location)
    return Target("vertex", "vertex", Endpoint(url, headers), model)


def _custom(value: str, live: LiveSettings, key: Secret | None) -> Target:
    parts = urlsplit(value)
    host = parts.hostname or ""
    if not host:
        raise ConfigError("live.endpoint", value, "a ws:// or wss:// URL needs a host")
    if parts.scheme == "ws" and not is_loopback(host):
        raise ConfigError(
            "live.endpoint",
            value,
            "plain ws:// is allowed only for loopback hosts (127.0.0.1, ::1, "
            "localhost); use wss:// for anything else",
        )
    if "key=" in (parts.query or "") or "access_token=" in (parts.query or ""):
        raise ConfigError(
            "live.endpoint",
            "<URL with a credential in its query>",
            "must not carry a key in the URL (it would be logged and shown); "
            f"put the key in {_KEY_SOURCES}",
        )
    url = value
    if not parts.path.startswith("/ws/"):
        url = urlunsplit(
            (
                parts.scheme,
                parts.netloc,
                parts.path.rstrip("/") + gemini_path(live.api_version),
                parts.query,
                "",
            )
        )
    api = "vertex" if "LlmBidiService" in url else "gemini"
    model = (
        live.model if api == "gemini" else _vertex_model(live.model, live.project, live.location)
    )
    return Target("custom", api, Endpoint(url, _key_headers(key)), model)
