"""The Vertex OAuth token refresh runs off the event loop (issue 10, endpoints.BearerHeaders).

Real google-auth user credentials refresh against a local token endpoint that answers
after 1.5 s (a real HTTP server in a thread, a real blocking ``requests`` call); a ticker
on the event loop must keep ticking while the refresh blocks, and the Vertex connection
to the local Live server must carry the fresh Bearer token.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from daemon import wire
from daemon.app.endpoints import BearerHeaders
from daemon.liveserver import LiveServer, ServerLimits
from daemon.runtime.connection import Connection, Endpoint
from daemon.vocabulary import ConnectionFailed, ServerEvents
from tests.liveserver.harness import run

google_credentials = pytest.importorskip("google.oauth2.credentials")

REFRESH_S = 1.5
SETUP = wire.encode(
    wire.setup_message(
        wire.SetupConfig(
            model="projects/p/locations/us-central1/publishers/google/models/gemini-3.8-live"
        )
    )
)


class SlowTokenService(BaseHTTPRequestHandler):
    tokens_issued = 0
    fail = False

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(REFRESH_S)  # the slow HTTPS round trip
        if SlowTokenService.fail:
            body, status = {"error": "invalid_grant", "error_description": "revoked"}, 400
        else:
            SlowTokenService.tokens_issued += 1
            body, status = (
                {
                    "access_token": f"tok-{SlowTokenService.tokens_issued}",
                    "expires_in": 3600,
                    "token_type": "Bearer",
                },
                200,
            )
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def token_service():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), SlowTokenService)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    SlowTokenService.tokens_issued, SlowTokenService.fail = 0, False
    yield f"http://127.0.0.1:{httpd.server_address[1]}/token"
    httpd.shutdown()
    thread.join(5)


def credentials(token_uri: str):
    return google_credentials.Credentials(
        token=None, refresh_token="refresh", client_id="c", client_secret="s", token_uri=token_uri
    )


async def open_while_ticking(url: str, headers: BearerHeaders):
    events: list = []
    conn = Connection(1, Endpoint(url, headers), events.append)
    loop = asyncio.get_running_loop()
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(loop.time())
            await asyncio.sleep(0.01)

    tick = loop.create_task(ticker())
    reader = loop.create_task(conn.run(SETUP))
    writer = loop.create_task(conn.send_loop())
    t0 = loop.time()
    end = t0 + 10
    while not any(isinstance(e, (ServerEvents, ConnectionFailed)) for e in events):
        assert loop.time() < end, events
        await asyncio.sleep(0.005)
    opened_after = loop.time() - t0
    tick.cancel()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    conn.close(1000, "bye")
    await asyncio.wait([reader, writer], timeout=5)
    return events, opened_after, max(gaps, default=0.0), len(ticks)


def test_token_refresh_blocks_a_worker_thread_not_the_event_loop(token_service):
    async def body():
        async with LiveServer(limits=ServerLimits(time_scale=100.0), voice="synthetic") as server:
            headers = BearerHeaders(credentials(token_service))
            events, opened_after, worst_gap, ticks = await open_while_ticking(
                server.endpoint(api="vertex"), headers
            )
            assert any(
                isinstance(e, ServerEvents) and isinstance(e.events[0], wire.SetupComplete)
                for e in events
            ), events
            assert opened_after >= REFRESH_S  # the refresh really happened ...
            assert SlowTokenService.tokens_issued == 1
            # ... and the loop kept running through it: on the loop it would have stalled
            # for the whole refresh (the token service alone takes REFRESH_S), and ticked
            # at most twice. A busy machine may delay ticks, never by that much.
            assert worst_gap < REFRESH_S, f"the loop stalled {worst_gap:.3f} s"
            assert ticks >= 5
            assert server.connections[0].auth_source == "authorization-bearer"
            # A valid token is not refreshed again.
            await open_while_ticking(server.endpoint(api="vertex"), headers)
            assert SlowTokenService.tokens_issued == 1

    run(body, timeout=30)


def test_a_failed_refresh_is_one_retryable_connect_failure(token_service):
    async def body():
        SlowTokenService.fail = True
        async with LiveServer(limits=ServerLimits(time_scale=100.0), voice="synthetic") as server:
            events, _, worst_gap, ticks = await open_while_ticking(
                server.endpoint(api="vertex"), BearerHeaders(credentials(token_service))
            )
            failed = [e for e in events if isinstance(e, ConnectionFailed)]
            assert len(failed) == 1 and failed[0].error_kind == "connect", events
            assert "credential refresh failed: RefreshError" in failed[0].detail
            assert worst_gap < REFRESH_S and ticks >= 5  # the loop ran meanwhile
            assert not server.connections  # never dialled

    run(body, timeout=30)
