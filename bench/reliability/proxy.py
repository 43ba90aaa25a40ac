"""A small asyncio HTTP proxy that loses responses: it reads the request, forwards it, lets the
server answer in full, and then, for a share of requests, closes the client's connection
without passing the answer on. The server has done the work; the client cannot know."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import Counter

from bench.reliability.client import route

_HOP = (b"connection", b"keep-alive", b"proxy-connection")


class DroppingProxy:
    """Loopback proxy in a background thread; `drop_rate` may change while it runs."""

    def __init__(self, upstream_port: int, drop_rate: float, seed: int = 7) -> None:
        self.upstream_port = upstream_port
        self.drop_rate = drop_rate
        self.rng = random.Random(seed)
        self.forwarded: Counter = Counter()
        self.dropped: Counter = Counter()
        self.dropped_status: Counter = Counter()  # (endpoint, status the server had answered)
        self.upstream_errors = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> DroppingProxy:
        """Listen on a free loopback port."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=512)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="dropping-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the listener and the loop."""
        if self._loop is None:
            return

        async def close() -> None:
            """Close the listener inside its own loop."""
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)

    @property
    def total_dropped(self) -> int:
        """Responses swallowed so far."""
        return sum(self.dropped.values())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._one(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        method, target, _version = lines[0].split(b" ", 2)
        headers, length = [], 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() in _HOP:
                continue
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
            headers.append(line)
        body = await reader.readexactly(length) if length else b""
        # One request per connection keeps the proxy simple and makes every drop unambiguous.
        request = b"\r\n".join([lines[0], *headers, b"Connection: close", b"", b""]) + body
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            with self._lock:
                self.upstream_errors += 1
            return
        try:
            up_writer.write(request)
            await up_writer.drain()
            response = await up_reader.read()  # to EOF: the server closes after answering
        finally:
            up_writer.close()
        name = route(method.decode(), target.decode())
        with self._lock:
            drop = bool(response) and self.rng.random() < self.drop_rate
            (self.dropped if drop else self.forwarded)[name] += 1
            if drop:
                self.dropped_status[name, response[9:12].decode(errors="replace")] += 1
        if drop:
            # Abort rather than close: the client sees a reset with no bytes, as when a mobile
            # link dies after the request went out.
            writer.transport.abort()
            return
        writer.write(response)
        await writer.drain()
