"""
One WebSocket to the Live API, on the websockets asyncio client. Decides nothing.

It reports what happened as inbox events (``ConnectionOpened``, ``ServerEvents``,
``FrameRejected``, ``ConnectionClosed``, ``ConnectionFailed``) through ``post`` and
obeys ``send`` / ``close`` / ``abort``. The session core decides what any of it means.
Exactly one terminal event (Closed or Failed) is posted per connection.

The supervisor (the only place that creates tasks) runs :meth:`Connection.run` and
:meth:`Connection.send_loop` as tasks; ``send`` and ``close`` never block the event
loop, because a stalled server must never stall the daemon: frames wait in a queue
that the writer drains, and ``close`` is backed by ``abort`` on a timer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Callable, Mapping

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.exceptions import InvalidStatus, InvalidURI

from daemon.errors import ProtocolError
from daemon.events import Event
from daemon.vocabulary import (
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpened,
    FrameRejected,
    ServerEvents,
)
from daemon.wire import decode_server_message

__all__ = ["Endpoint", "Keepalive", "Connection"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """Where to connect: the full ``ws(s)://…/BidiGenerateContent`` URL and the headers
    carrying the credentials (``x-goog-api-key`` or ``Authorization``). Never logged."""

    url: str
    headers: Mapping[str, str]

    def __repr__(self) -> str:  # keep keys out of logs and tracebacks
        return f"Endpoint(url={self.url.split('?')[0]!r}, headers=<{len(self.headers)} hidden>)"


@dataclass(frozen=True)
class Keepalive:
    """WebSocket pings, in nominal seconds (the supervisor divides by its time scale).

    Gemini's pongs have been measured 8–30 s late, and a server may not answer pings
    at all while the session is otherwise healthy (FIELD_REPORTS.md F13; PITFALLS.md
    "Keepalive"; python-genai#2935, sip-to-ai PR #14): waiting for a pong, as
    websockets does by default (20 s), ends healthy connections with a client-side
    1011 "keepalive ping timeout". So by default a missing pong ends nothing. We still
    ping every ``interval``: the pings keep NAT mappings alive and put bytes in flight,
    and the kernel must see those bytes acknowledged by the server's TCP within
    ``timeout`` (``TCP_USER_TIMEOUT``) — a dead path is noticed, a slow server is not
    mistaken for one. ``require_pongs=True`` is websockets' rule instead: no pong
    within ``timeout`` → 1011 "keepalive ping timeout".
    """

    interval: float = 30.0
    timeout: float = 60.0
    require_pongs: bool = False


# Replies can be large (several parts, long audio chunks, future fields): 16 MiB, not
# websockets' 1 MiB default, so a legitimate big frame never becomes a 1009 close.
MAX_FRAME_BYTES = 16 * 1024 * 1024

_CLOSE = object()  # sentinel in the send queue: close after what was queued before


class Connection:
    """One connection, ``conn_id`` as the session core named it.

    Args:
        conn_id: the core's id for this connection (echoed in every event).
        endpoint: URL and credential headers.
        post: thread-safe callable taking an inbox event.
        keepalive: ping interval and timeout in *wall* seconds (already scaled).
        open_timeout: wall seconds for TCP + TLS + the WebSocket handshake.
        close_timeout: wall seconds for the closing handshake before the TCP abort.
    """

    def __init__(
        self,
        conn_id: int,
        endpoint: Endpoint,
        post: Callable[[Event], None],
        *,
        keepalive: Keepalive = Keepalive(),
        open_timeout: float = 15.0,
        close_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.conn_id = conn_id
        self._endpoint = endpoint
        self._post = post
        self._keepalive = keepalive
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._ssl = ssl_context
        self._ws: ClientConnection | None = None
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._closing = False
        self._opened = asyncio.Event()  # set once the handshake succeeded or failed
        self._terminal_posted = False
        self.frames_sent = 0

    # -- obeying (never blocks)

    def send(self, frame: str) -> None:
        """Queue a text frame (the SDK sends text; the server accepts both)."""
        if not self._closing:
            self._queue.put_nowait(frame)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after the frames already queued; :meth:`abort` is the caller's backstop."""
        if self._closing:
            return
        self._closing = True
        self._queue.put_nowait((_CLOSE, code, reason))

    def abort(self) -> None:
        """Drop the TCP connection now (a close that did not finish in time)."""
        ws = self._ws
        if ws is not None and ws.transport is not None:
            ws.transport.abort()

    @property
    def is_open(self) -> bool:
        """The handshake succeeded (closing or not)."""
        return self._ws is not None

    # -- running (tasks created by the supervisor)

    async def run(self, setup_frame: str) -> None:
        """Connect, send the setup, then post every server frame until the connection ends."""
        ws = await self._open(setup_frame)
        if ws is None:
            return
        try:
            async for message in ws:
                try:
                    events = decode_server_message(message)
                except ProtocolError as exc:
                    self._post(FrameRejected(self.conn_id, str(exc)))
                    continue
                self._post(ServerEvents(self.conn_id, tuple(events)))
        except WsConnectionClosed:
            pass  # reported below from the close frame (or its absence)
        except asyncio.CancelledError:
            self.abort()
            self._terminal(ConnectionClosed(self.conn_id, 1000, "cancelled"))
            raise
        rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
        if rcvd is not None:
            self._terminal(ConnectionClosed(self.conn_id, int(rcvd.code), rcvd.reason))
        elif sent is not None and sent.code == 1011:
            # Our side gave up (keepalive ping timeout): report it as websockets does.
            self._terminal(ConnectionClosed(self.conn_id, 1011, sent.reason))
        else:
            # No close frame from the server: abnormal closure, as the SDK reports it.
            self._terminal(ConnectionClosed(self.conn_id, 1006, ""))

    async def send_loop(self) -> None:
        """Write queued frames in order; close when asked. Runs until the connection ends."""
        await self._opened.wait()
        while True:
            item = await self._queue.get()
            ws = self._ws
            if ws is None:
                return
            try:
                if isinstance(item, tuple) and item[0] is _CLOSE:
                    await ws.close(item[1], item[2])
                    return
                await ws.send(item)  # type: ignore[arg-type]
                self.frames_sent += 1
            except WsConnectionClosed:
                return

    async def _headers(self) -> dict[str, str]:
        """The credential headers as of now. Headers marked ``blocking`` (Vertex OAuth:
        a token refresh is an HTTPS call, endpoints.BearerHeaders) are read in a worker
        thread, so the event loop — button, LED, audio — never waits on it."""
        headers = self._endpoint.headers
        if getattr(headers, "blocking", False):
            return await asyncio.to_thread(dict, headers)
        return dict(headers)

    async def _open(self, setup_frame: str) -> ClientConnection | None:
        kind, detail, status = "connect", "", None
        try:
            headers = await self._headers()
        except asyncio.CancelledError:
            self._opened.set()
            self._terminal(ConnectionClosed(self.conn_id, 1000, "cancelled"))
            raise
        except Exception as exc:  # google.auth RefreshError, requests' ConnectionError, …
            # Retryable like any failure to connect: the token service may be unreachable.
            self._opened.set()
            self._terminal(
                ConnectionFailed(
                    self.conn_id,
                    "connect",
                    f"credential refresh failed: {type(exc).__name__}: {exc}",
                    None,
                )
            )
            return None
        try:
            ws = await connect(
                self._endpoint.url,
                additional_headers=headers,
                open_timeout=self._open_timeout,
                close_timeout=self._close_timeout,
                ping_interval=self._keepalive.interval,
                ping_timeout=self._keepalive.timeout if self._keepalive.require_pongs else None,
                max_size=MAX_FRAME_BYTES,
                # Base64 PCM barely deflates; skipping permessage-deflate saves a Pi's CPU.
                compression=None,
                ssl=self._ssl,
            )
        except (InvalidURI, ValueError) as exc:
            # A malformed URL can fail in urllib before websockets sees it (ValueError).
            kind, detail = "invalid", str(exc)
        except InvalidStatus as exc:
            kind, status = "http", exc.response.status_code
            detail = f"server rejected WebSocket connection: HTTP {status}"
        except socket.gaierror as exc:
            kind, detail = "dns", str(exc)
        except ssl.SSLError as exc:
            kind, detail = "tls", str(exc)
        except (TimeoutError, asyncio.TimeoutError):
            kind, detail = "timeout", f"no handshake within {self._open_timeout:g} s"
        except (OSError, websockets.exceptions.InvalidHandshake) as exc:
            kind, detail = "connect", str(exc) or type(exc).__name__
        except asyncio.CancelledError:
            self._opened.set()
            self._terminal(ConnectionClosed(self.conn_id, 1000, "cancelled"))
            raise
        else:
            self._ws = ws
            if not self._keepalive.require_pongs:
                self._set_tcp_user_timeout(ws)
            self._opened.set()
            self._post(ConnectionOpened(self.conn_id))
            try:
                await ws.send(setup_frame)
            except WsConnectionClosed:
                pass  # run() reports the close
            return ws
        self._opened.set()
        self._terminal(ConnectionFailed(self.conn_id, kind, detail, status))
        return None

    def _set_tcp_user_timeout(self, ws: ClientConnection) -> None:
        """Unacknowledged bytes older than ``keepalive.timeout`` end the connection
        (Linux ``TCP_USER_TIMEOUT``; see :class:`Keepalive`). Elsewhere, the OS default."""
        sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
        option = getattr(socket, "TCP_USER_TIMEOUT", None)
        if sock is None or option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(self._keepalive.timeout * 1000)))
        except OSError as exc:  # not fatal: pings still keep NAT mappings alive
            log.warning("could not set TCP_USER_TIMEOUT: %s", exc)

    @property
    def tcp_user_timeout_ms(self) -> int | None:
        """``TCP_USER_TIMEOUT`` of the open socket as the kernel reports it (None: unknown)."""
        ws = self._ws
        sock = ws.transport.get_extra_info("socket") if ws and ws.transport else None
        option = getattr(socket, "TCP_USER_TIMEOUT", None)
        if sock is None or option is None:
            return None
        return int(sock.getsockopt(socket.IPPROTO_TCP, option))

    def _terminal(self, event: Event) -> None:
        if not self._terminal_posted:
            self._terminal_posted = True
            # One line per connection end, with journal fields (logs.py) so that
            # `journalctl -u voiced CLOSE_CODE=1011` finds them.
            if isinstance(event, ConnectionClosed):
                log.info(
                    "x connection %d closed: %s %s",
                    self.conn_id,
                    event.code,
                    event.reason,
                    extra={
                        "CONNECTION_ID": self.conn_id,
                        "CLOSE_CODE": event.code,
                        "REASON": event.reason,
                    },
                )
            else:
                log.info(
                    "x connection %d failed: %s",
                    self.conn_id,
                    event,
                    extra={
                        "CONNECTION_ID": self.conn_id,
                        "ERROR_KIND": getattr(event, "error_kind", ""),
                    },
                )
            self._post(event)
