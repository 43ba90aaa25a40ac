"""The reliability bench's own tools (bench/reliability): the proxy really loses answers after
the server did the work, and a device's transport retries a push with the same key."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from bench.reliability.client import Dropped, Http, Tally, Transport
from bench.reliability.proxy import DroppingProxy


class _Counting(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str | None, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers.get("Idempotency-Key"), body))
        data = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream():
    _Counting.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_lost_answers_are_retried_with_the_same_idempotency_key(upstream):
    proxy = DroppingProxy(upstream.server_address[1], drop_rate=1.0).start()
    try:
        transport = Transport(Http(proxy.port), "phone-1", Tally(), attempts=3)
        with pytest.raises(Dropped):
            transport.post("/api/v1/sync/push", {}, {"changes": {}})
        # The server handled every attempt; the device never heard back.
        assert len(_Counting.seen) == 3 and proxy.dropped["POST /sync/push"] == 3
        assert len({(key, body) for _path, key, body in _Counting.seen}) == 1
        assert _Counting.seen[0][1]
        proxy.drop_rate = 0.0
        assert transport.post("/api/v1/sync/push", {}, {"changes": {}}).json() == {"ok": True}
        assert proxy.forwarded["POST /sync/push"] == 1
        assert proxy.dropped_status["POST /sync/push", "200"] == 3
    finally:
        proxy.stop()
