"""The demo's on-call: a local HTTP endpoint that receives pages and keeps them for display.

It plays two receivers at once: the signed generic webhook (``/webhook``, every signature
checked with the shipped verifier) and Alertmanager's webhook (``/alertmanager``), so the
demo shows the same alert arriving directly and through a real Alertmanager.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from streams.alerting.signing import verify


@dataclass(frozen=True)
class Page:
    via: str  # "webhook" | "alertmanager"
    status: str
    rule: str
    slice: str
    summary: str
    at: float


class PageReceiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.pages: list[Page] = []
        self.rejected = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> PageReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                ok = receiver.receive(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="demo-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def receive(self, path: str, headers: dict[str, str], body: bytes) -> bool:
        via = "alertmanager" if path.startswith("/alertmanager") else "webhook"
        if via == "webhook":
            try:
                verify(self.secret, headers, body)
            except Exception:
                with self._lock:
                    self.rejected += 1
                return False
        data = json.loads(body)
        with self._lock:
            for alert in data.get("alerts", []):
                labels, notes = alert.get("labels", {}), alert.get("annotations", {})
                self.pages.append(Page(via, alert.get("status", "?"), labels.get("rule", "?"),
                                       labels.get("slice", "?"), notes.get("summary", ""), time.time()))
        return True

    def snapshot(self) -> list[Page]:
        with self._lock:
            return list(self.pages)
