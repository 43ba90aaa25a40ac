"""A small blocking HTTP client (one keep-alive connection per caller), and the transport a
simulated device speaks through: it retries lost responses and honours 503 Retry-After."""

from __future__ import annotations

import hashlib
import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

PASSWORD = "demo-pass-2026"


class Dropped(ConnectionError):
    """The connection ended before a whole response arrived (the request may have applied)."""


@dataclass
class Reply:
    """A whole HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float

    @property
    def status_code(self) -> int:
        """Flask test-client spelling, so tests/sync/device.py can use this transport."""
        return self.status

    def json(self) -> Any:
        """The decoded JSON body (None when empty or not JSON)."""
        try:
            return orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            return None

    get_json = json


class Http:
    """Requests on one loopback connection, reopened when the server closes it."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 60.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None
        self.last_used = 0.0

    def close(self) -> None:
        """Drop the connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send and read a whole response; Dropped when the connection breaks."""
        # gunicorn closes idle keep-alive connections after a few seconds; reusing one that is
        # about to close would look like a dropped response, so reconnect after a short idle.
        if self.conn is not None and time.monotonic() - self.last_used > 1.0:
            self.close()
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        start = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
        except (http.client.HTTPException, OSError) as exc:
            self.close()
            raise Dropped(f"{method} {path}: {exc!r}") from exc
        elapsed = time.perf_counter() - start
        self.last_used = time.monotonic()
        if resp.will_close:
            self.close()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, elapsed)


def request_url(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Reply:
    """One request to an absolute URL (a presigned S3 PUT) on a fresh connection."""
    parts = urlsplit(url)
    client = Http(parts.port or 80, parts.hostname or "127.0.0.1", timeout=30)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return client.request(method, path, body, headers)
    finally:
        client.close()


def login(port: int, email: str) -> tuple[str, str]:
    """(access token, user id) of a demo account."""
    reply = Http(port).request(
        "POST",
        "/api/v1/auth/login",
        orjson.dumps({"email": email, "password": PASSWORD}),
        {"Content-Type": "application/json"},
    )
    if reply.status != 200:
        raise RuntimeError(f"login {email}: {reply.status} {reply.body[:200]!r}")
    body = reply.json()
    return body["access_token"], body["user"]["id"]


@dataclass
class Tally:
    """What the transports saw, across threads."""

    counts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, n: int = 1) -> None:
        """Count one event."""
        with self.lock:
            self.counts[key] += n


def route(method: str, path: str) -> str:
    """A request's endpoint with ids blanked: 'POST /attachments/*/upload'."""
    parts = path.split("?")[0].removeprefix("/api/v1").strip("/").split("/")
    if parts and parts[0] in ("attachments", "inspections") and len(parts) > 1:
        parts[1] = "*"
    return f"{method} /{'/'.join(parts)}"


class Transport:
    """What a device's sync code calls (the Flask test-client interface of device.py)."""

    # A lost response is retried at once with the same bytes; a push carries an
    # Idempotency-Key derived from the device id and the body (as the protocol suggests), so
    # the retry of a push that did apply replays the stored answer instead of applying twice.
    # A 503 waits out Retry-After (capped) and retries. After `attempts` the last failure is
    # raised and the changes stay dirty for the next sync, as WatermelonDB's synchronize()
    # leaves them.

    def __init__(
        self,
        http_client: Http,
        device_id: str,
        tally: Tally,
        attempts: int = 6,
        retry_after_cap: float = 5.0,
    ) -> None:
        self.http = http_client
        self.device_id = device_id
        self.tally = tally
        self.attempts = attempts
        self.retry_after_cap = retry_after_cap
        self.stop = threading.Event()

    def get(
        self, path: str, query_string: dict | None = None, headers: dict | None = None
    ) -> Reply:
        """GET with query parameters."""
        query = f"?{urlencode(query_string)}" if query_string else ""
        return self.send("GET", path + query, None, headers or {})

    def post(self, path: str, headers: dict | None = None, json: Any = None) -> Reply:
        """POST a JSON body; pushes get an Idempotency-Key."""
        body = orjson.dumps(json)
        headers = {**(headers or {}), "Content-Type": "application/json"}
        if path.endswith("/sync/push"):
            digest = hashlib.sha256(self.device_id.encode() + b"\n" + body).hexdigest()
            headers["Idempotency-Key"] = digest
        return self.send("POST", path, body, headers)

    def send(self, method: str, path: str, body: bytes | None, headers: dict) -> Reply:
        """Retry lost responses and 503s; return the first other answer."""
        name = route(method, path)
        failure: Exception | None = None
        for attempt in range(self.attempts):
            if attempt:
                self.tally.add(f"retry {name}")
            try:
                reply = self.http.request(method, path, body, headers)
            except Dropped as exc:
                self.tally.add(f"lost {name}")
                failure = exc
                self.stop.wait(0.02 * attempt)
                continue
            self.tally.add(f"status {reply.status}")
            if reply.status == 503:
                self.tally.add(f"503 {name}")
                failure = Dropped(f"{name}: 503")
                wait = float(reply.headers.get("retry-after") or 1)
                self.stop.wait(min(wait, self.retry_after_cap))
                continue
            if reply.status >= 500:
                self.tally.add(f"5xx {name}")
            return reply
        assert failure is not None
        raise failure
