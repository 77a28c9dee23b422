"""A local HTTP receiver for alert-delivery tests: scripted answers, every request recorded.

``Receiver(script=[500, Reply(429, {"Retry-After": "7"}), 400])`` answers the first three
requests with those statuses and every later one with ``default`` (200). It runs a stdlib
server on 127.0.0.1 in a thread; ``stop()`` then ``start(port=r.port)`` takes it down and
brings it back on the same port (a receiver outage). ``wait_for`` blocks until enough
requests arrived, for services (Alertmanager) that forward asynchronously.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0
    """Wait this long before answering (to make a client time out)."""


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is expected here, not a failure


class Receiver:
    def __init__(self, script: Iterable[Reply | int] = (), default: Reply | int = 200) -> None:
        self._script: deque[Reply] = deque(_reply(r) for r in script)
        self.default = _reply(default)
        self.requests: list[Received] = []
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                reply = receiver._record(Received(
                    "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()))
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port if port is None else port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Receiver:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, received: Received) -> Reply:
        with self._cond:
            self.requests.append(received)
            reply = self._script.popleft() if self._script else self.default
            self._cond.notify_all()
        return reply

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout_s: float = 30.0) -> list[Received]:
        """Block until ``predicate(requests)`` holds; AssertionError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver: condition not met in {timeout_s} s; got {len(self.requests)} requests")
                self._cond.wait(left)
            return list(self.requests)


def _reply(r: Reply | int) -> Reply:
    return Reply(r) if isinstance(r, int) else r
