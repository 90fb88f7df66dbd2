"""A loopback TCP proxy on its own thread: timestamps client bytes, can stall.

Used two ways: the push-to-talk benchmark reads *when* the client's bytes reached
the wire (the proxy sits between the daemon and the Live server), and the fault
matrix stalls it — the TCP connections stay open but nothing is forwarded in either
direction any more, as a dead NAT or Wi-Fi path does. Connections made after a
stall are forwarded normally (the network came back; the old path did not).

Running on its own thread with its own event loop keeps its timestamps honest even
while the daemon's loop is busy.
"""

from __future__ import annotations

import asyncio
import threading
import time

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forward ``127.0.0.1:port`` → ``target_host:target_port``.

    ``client_chunks`` holds ``(time.monotonic(), nbytes)`` of every client→server read.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.client_chunks: list[tuple[float, int]] = []
        self.connections = 0
        self._pipes: list[_Pipe] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._server: asyncio.Server | None = None
        self.port = 0

    def start(self) -> "TcpProxy":
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", 0), self._loop
        ).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stall(self) -> int:
        """Stop forwarding on every connection open now (they stay open); returns how many."""

        async def do() -> int:
            open_pipes = [p for p in self._pipes if not p.closed]
            for pipe in open_pipes:
                pipe.stalled = True
            return len(open_pipes)

        return asyncio.run_coroutine_threadsafe(do(), self._loop).result(5)

    def stop(self) -> None:
        async def do() -> None:
            if self._server is not None:
                self._server.close()
            for pipe in self._pipes:
                pipe.abort()
            # Aborted pipes end their pumps on their own; cancelling an accept task
            # instead makes asyncio.streams log a spurious CancelledError.
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if others:
                _, stuck = await asyncio.wait(others, timeout=2)
                for task in stuck:
                    task.cancel()

        asyncio.run_coroutine_threadsafe(do(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pipe = _Pipe(writer, up_writer)
        self._pipes.append(pipe)
        await asyncio.gather(
            pipe.pump(reader, up_writer, self.client_chunks),
            pipe.pump(up_reader, writer, None),
            return_exceptions=True,
        )
        pipe.abort()


class _Pipe:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client, self.upstream = client, upstream
        self.stalled = False
        self.closed = False
        self._gone = asyncio.Event()

    async def pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        log: list[tuple[float, int]] | None,
    ) -> None:
        while not self.closed:
            data = await reader.read(65536)
            if log is not None and data:
                log.append((time.monotonic(), len(data)))
            if self.stalled:
                # Swallow and forward nothing, forever: the TCP connection stays up.
                await self._gone.wait()
                return
            if not data:
                break
            writer.write(data)
            await writer.drain()
        self.abort()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self._gone.set()
            for w in (self.client, self.upstream):
                w.transport.abort()
