"""
The local Live API server: websockets I/O, routing, auth, inspection.

Routing and auth follow LIVE_PROTOCOL.md §1: the Gemini API paths (v1alpha,
v1beta; BidiGenerateContent and BidiGenerateContentConstrained) and the Vertex
LlmBidiService path (v1beta1, v1). Any other path gets HTTP 404 at the
handshake. Credentials come from ``x-goog-api-key``, ``?key=``,
``Authorization: Token|Bearer`` or ``?access_token=``; with ``api_keys=None``
anything (or nothing) is accepted.

Each connection is served by :class:`~daemon.liveserver.connection.LiveConnection`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from http import HTTPStatus
from typing import Any, Callable, Iterable

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from daemon.liveserver import handshake as hs
from daemon.liveserver.connection import LiveConnection
from daemon.liveserver.faults import Faults
from daemon.liveserver.limits import ServerLimits
from daemon.liveserver.model import Voice
from daemon.liveserver.store import ConnectionRecord, SessionRecord, Store, UserTurn
from daemon.liveserver.turns import ToolScript

__all__ = ["LiveServer", "LiveServerThread"]

log = logging.getLogger(__name__)


class LiveServer:
    """A protocol-faithful local Gemini Live API server.

    Use as ``async with LiveServer(...) as server:`` or ``await start()`` /
    ``await stop()``. See the package docstring for the whole API.

    Args:
        host, port: where to listen; port 0 picks a free port (read ``port``).
        limits: caps, deadlines and the time scale (:class:`ServerLimits`).
        api_keys: ``None`` accepts any key or none; a collection accepts only those
            (compared with every credential the client presents, §1).
        voice: "auto" (espeak-ng if installed), "espeak" or "synthetic".
        models: extra model ids to accept besides the documented ones.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        limits: ServerLimits | None = None,
        api_keys: Iterable[str] | None = None,
        voice: str = "auto",
        models: Iterable[str] | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.limits = limits or ServerLimits()
        if isinstance(api_keys, str):
            raise ValueError("LiveServer api_keys must be a collection of keys, not one string")
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.voice = Voice(voice)
        self.extra_models = frozenset(models or ())
        self.store = Store(self.limits)
        self.faults = Faults(self._live_targets, self.store.expire_all_handles, self.now)
        self._server: Server | None = None
        self._live: set[LiveConnection] = set()
        self._t0 = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None  # created on start (needs a loop)
        self.tool_script = ToolScript()  # tool calls scripted for pressed turns (turns.py)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> LiveServer:
        """Start listening; ``port`` and ``url`` are valid afterwards."""
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._changed = asyncio.Event()
        self._server = await serve(
            self._handle,
            self.host,
            self._requested_port,
            process_request=self._route,
            max_size=self.limits.max_frame_bytes,
            # The real server's pong timing is its own business (PITFALLS.md "Keepalive");
            # we never ping clients, so a stalled test client is not dropped by us.
            ping_interval=None,
            # Audio is base64 JSON: deflate costs CPU for little; clients work either way.
            compression=None,
            close_timeout=2,
        )
        log.info("= live server listening on %s", self.url)
        return self

    async def stop(self) -> None:
        """Close every connection (1001) and stop listening."""
        if self._server is None:
            return
        live = list(self._live)
        for conn in live:
            if conn.stalled:
                conn.abort()  # a stalled socket would never finish a close handshake
        # Close through our own path so records say who closed and why.
        await asyncio.gather(
            *(c.close(1001, "") for c in live if not c.stalled), return_exceptions=True
        )
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        log.info("x live server stopped")

    async def __aenter__(self) -> LiveServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("LiveServer is not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """``ws://HOST:PORT`` (no path)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def endpoint(
        self, api: str = "gemini", version: str | None = None, constrained: bool = False
    ) -> str:
        """The full WebSocket URL of an API path (LIVE_PROTOCOL.md §1)."""
        if api == "vertex":
            ep = hs.Endpoint("vertex", version or "v1beta1", "BidiGenerateContent")
        elif api == "gemini":
            method = "BidiGenerateContentConstrained" if constrained else "BidiGenerateContent"
            ep = hs.Endpoint("gemini", version or "v1beta", method)
        else:
            raise ValueError(f"api {api!r}: must be gemini or vertex")
        return self.url + ep.path

    # --- time ------------------------------------------------------------------------------

    def now(self) -> float:
        """Server time in nominal seconds since start (wall seconds × time_scale)."""
        loop = self._loop or asyncio.get_running_loop()
        return (loop.time() - self._t0) * self.limits.time_scale

    # --- inspection ------------------------------------------------------------------------

    @property
    def sessions(self) -> list[SessionRecord]:
        """Every session, oldest first."""
        return self.store.sessions

    @property
    def connections(self) -> list[ConnectionRecord]:
        """Every connection (including refused ones), oldest first."""
        return self.store.connections

    @property
    def user_turns(self) -> list[UserTurn]:
        """Every user turn of every session, in session then turn order."""
        return [t for s in self.store.sessions for t in s.user_turns]

    def changed(self) -> None:
        """Wake everything waiting in :meth:`wait_for` (called on every state change)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float | None = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy and return its value.

        *timeout* is in wall seconds; ``TimeoutError`` says what was awaited.
        """

        async def poll() -> Any:
            while True:
                assert self._changed is not None
                event = self._changed
                value = predicate()
                if value:
                    return value
                await event.wait()

        try:
            return await asyncio.wait_for(poll(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"LiveServer.wait_for({getattr(predicate, '__name__', predicate)}) "
                f"timed out after {timeout} s"
            ) from None

    async def wait_connections(
        self, n: int, timeout: float | None = 10.0
    ) -> list[ConnectionRecord]:
        """Wait until *n* connections have completed setup (``setupComplete`` sent)."""

        def opened() -> list[ConnectionRecord] | None:
            done = [c for c in self.connections if c.setup_completed_at is not None]
            return done if len(done) >= n else None

        return await self.wait_for(opened, timeout)

    async def wait_closed(self, n: int, timeout: float | None = 10.0) -> list[ConnectionRecord]:
        """Wait until *n* connections have closed."""

        def closed() -> list[ConnectionRecord] | None:
            done = [c for c in self.connections if c.closed_at is not None]
            return done if len(done) >= n else None

        return await self.wait_for(closed, timeout)

    async def wait_turns(
        self, k: int, session: SessionRecord | None = None, timeout: float | None = 10.0
    ) -> list[UserTurn]:
        """Wait until *k* user turns have been answered or interrupted (in *session*,
        or across all sessions)."""

        def answered() -> list[UserTurn] | None:
            turns = session.user_turns if session is not None else self.user_turns
            done = [t for t in turns if t.replies or t.interrupted]
            return done if len(done) >= k else None

        return await self.wait_for(answered, timeout)

    # --- handshake -------------------------------------------------------------------------

    def is_known_model(self, model: str, api: str) -> bool:
        return model in self.extra_models or hs.is_known_model(model, api)

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        if hs.parse_path(request.path) is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    def _authorise(self, creds: list[tuple[str, str]]) -> tuple[bool, str | None]:
        if self.api_keys is None:
            return True, creds[0][0] if creds else None
        for source, value in creds:
            if value in self.api_keys:
                return True, source
        return False, None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        record = self.store.new_connection(request.path.split("?", 1)[0], self.now())
        endpoint = hs.parse_path(request.path)
        assert endpoint is not None  # _route answered 404 otherwise
        record.api, record.version, record.method = endpoint.api, endpoint.version, endpoint.method
        creds = hs.credentials(request.path, request.headers)
        ok, record.auth_source = self._authorise(creds)
        if creds:
            record.key_id = hashlib.sha256(creds[0][1].encode()).hexdigest()[:12]
        conn = LiveConnection(self, ws, record, endpoint, ok)
        self._live.add(conn)
        self.changed()
        log.debug("= connection %d opened on %s", record.id, record.path)
        try:
            await conn.run()
        finally:
            self._live.discard(conn)
            log.debug(
                "= connection %d closed: %s %s", record.id, record.close_code, record.close_reason
            )
            self.changed()

    def _live_targets(self) -> list[LiveConnection]:
        return [c for c in self._live if c.record.closed_at is None]


class LiveServerThread:
    """Run a :class:`LiveServer` on its own event loop in a daemon thread.

    For synchronous callers (a CLI, a demo)::

        with LiveServerThread(limits=ServerLimits(time_scale=10)) as server:
            print(server.endpoint())

    Inspection works as on :class:`LiveServer`; fault injection must run on the
    server's loop (``call(fn, ...)``), and so must waits (``run(coro)``).
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="live-server", daemon=True
        )
        self.server: LiveServer | None = None

    def start(self) -> LiveServer:
        self._thread.start()
        self.server = self.run(self._start())
        return self.server

    async def _start(self) -> LiveServer:
        return await LiveServer(**self._kwargs).start()

    def run(self, coro: Any, timeout: float | None = 30.0) -> Any:
        """Run *coro* on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call *fn* on the server's loop thread (e.g. ``call(server.faults.close_now, 1011)``)
        and return its result: fault injection is not thread-safe otherwise."""

        async def wrapper() -> Any:
            return fn(*args, **kwargs)

        return self.run(wrapper())

    def stop(self) -> None:
        if self.server is not None:
            self.run(self.server.stop())
            self.server = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
