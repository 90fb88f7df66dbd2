"""A small raw websockets client for the server tests (real sockets, our wire encoders)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from daemon import wire

MODEL = "gemini-3.8-live"


def tone(
    seconds: float,
    freq: float = 220.0,
    amplitude: float = 8000.0,
    rate: int = 16_000,
    phase: float = 0.0,
) -> bytes:
    """A sine burst: loud enough for the energy VAD."""
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype("<i2").tobytes()


def silence(seconds: float, rate: int = 16_000) -> bytes:
    return b"\x00\x00" * int(seconds * rate)


class Closed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class RawClient:
    """One connection: send wire messages, receive decoded JSON dicts."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self.frame_types: list[type] = []
        self.handle: str | None = None

    @classmethod
    async def open(cls, url: str, headers: dict[str, str] | None = None, **kw: Any) -> RawClient:
        ws = await connect(url, additional_headers=headers or {}, ping_interval=None, **kw)
        return cls(ws)

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def setup(
        self, config: wire.SetupConfig | None = None, expect_complete: bool = True, **overrides: Any
    ) -> dict[str, Any] | None:
        config = config or wire.SetupConfig(**{"model": MODEL, **overrides})
        await self.send(wire.setup_message(config))
        if not expect_complete:
            return None
        msg = await self.recv()
        assert msg == {"setupComplete": {}}, msg
        if config.resumable or config.handle:
            # The server hands out a handle right after setupComplete.
            update = (await self.recv())["sessionResumptionUpdate"]
            assert update["resumable"] is True and update["newHandle"], update
            self.handle = update["newHandle"]
        return msg

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        try:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            raise Closed(rcvd.code if rcvd else 1006, rcvd.reason if rcvd else "") from None
        self.frame_types.append(type(frame))
        msg = json.loads(frame)
        self.received.append(msg)
        return msg

    async def recv_until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        out = []
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv(timeout)
                out.append(msg)
                if predicate(msg):
                    return out

    async def until_turn_complete(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        return await self.recv_until(
            lambda m: m.get("serverContent", {}).get("turnComplete", False), timeout
        )

    async def ptt_turn(self, pcm: bytes, chunk: int = 640) -> list[dict[str, Any]]:
        """activityStart, audio in 20 ms chunks, activityEnd; messages up to turnComplete."""
        await self.send(wire.activity_start_message())
        for i in range(0, len(pcm), chunk):
            await self.send(wire.encode_audio(pcm[i : i + chunk]))
        await self.send(wire.activity_end_message())
        return await self.until_turn_complete()

    async def expect_close(self, timeout: float = 5.0) -> Closed:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.recv(timeout)
        except Closed as closed:
            return closed
        raise AssertionError("connection did not close")

    async def close(self) -> None:
        await self.ws.close()


def handle_of(messages: list[dict[str, Any]]) -> str | None:
    """The last resumable handle in *messages*."""
    handle = None
    for m in messages:
        upd = m.get("sessionResumptionUpdate")
        if upd and upd.get("resumable") and upd.get("newHandle"):
            handle = upd["newHandle"]
    return handle


def audio_of(messages: list[dict[str, Any]]) -> bytes:
    out = b""
    for m in messages:
        for part in m.get("serverContent", {}).get("modelTurn", {}).get("parts", []):
            if "inlineData" in part:
                out += wire.b64decode(part["inlineData"]["data"])
    return out


def text_of(messages: list[dict[str, Any]], key: str = "outputTranscription") -> str:
    return "".join(m.get("serverContent", {}).get(key, {}).get("text", "") for m in messages)


def run(body: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run an async test body under a hard timeout (no pytest-asyncio)."""

    async def main() -> Any:
        async with asyncio.timeout(timeout):
            return await body()

    return asyncio.run(main())


async def no_message(client: RawClient, seconds: float) -> None:
    """Assert nothing arrives for *seconds* (wall)."""
    try:
        msg = await client.recv(timeout=seconds)
    except (asyncio.TimeoutError, TimeoutError):
        return
    raise AssertionError(f"unexpected message {str(msg)[:200]}")
