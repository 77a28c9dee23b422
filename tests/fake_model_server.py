"""A flaky model endpoint for backend and worker tests: stdlib HTTP server on 127.0.0.1:0.

What it does with a request is decided by the request id's first dash-separated word (its
"kind"), so a test states the expected outcome in the id itself:

ok / work  200 with valid intent_probs (work: after ``work_s``, to measure concurrency)
slow       sleeps ``slow_s`` (past the client's timeout), then 200
flaky      503 on the first hit, 200 afterwards
limited    429 with ``Retry-After: 1`` on the first hit, 200 afterwards
toolong    429 with ``Retry-After: 3600`` (longer than a client should wait)
down       503 on every hit
bad        400
garbage    200 with a body that is not JSON (OpenAI mode: a message that is not JSON)
sum17      200 with intent_probs summing to 1.7
fenced     OpenAI mode: the JSON object wrapped in a ```json fence

POST /v1/chat/completions answers in the OpenAI chat-completions shape; the request id is
the first word of the last message. Other paths read the id at ``id_of(body)``. The server
counts hits per request id (with their times) and the most requests it held at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROBS = {"faq": 0.7, "order_tracking": 0.2, "returns": 0.1}
CLAIMS = [{"entity_id": "ent-1", "attribute": "format", "value": "paperback"}]


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 drops SYNs when 8 clients connect at once


class FakeModelServer:
    def __init__(self, slow_s: float = 1.0, work_s: float = 0.05,
                 id_of: Callable[[Any], str] = lambda body: body["request_id"],
                 nest: bool = False) -> None:
        self.slow_s, self.work_s, self.id_of, self.nest = slow_s, work_s, id_of, nest
        self.hits: dict[str, list[float]] = defaultdict(list)
        self.bodies: dict[str, Any] = {}
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real model servers do

            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                server._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def hit_count(self, request_id: str) -> int:
        with self._lock:
            return len(self.hits[request_id])

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("content-length", 0)))
        body = json.loads(raw)
        openai = h.path.endswith("/chat/completions")
        rid = body["messages"][-1]["content"].split()[0] if openai else self.id_of(body)
        kind = rid.split("-", 1)[0]
        with self._lock:
            self.hits[rid].append(time.monotonic())
            hit = len(self.hits[rid])
            self.bodies[rid] = body
            self.paths.append(h.path)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            status, headers, payload = self._decide(kind, hit, openai)
            h.send_response(status)
            for name, value in headers.items():
                h.send_header(name, value)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass
        finally:
            with self._lock:
                self.in_flight -= 1

    def _decide(self, kind: str, hit: int, openai: bool) -> tuple[int, dict[str, str], bytes]:
        if kind == "slow":
            time.sleep(self.slow_s)
        if kind == "work":
            time.sleep(self.work_s)
        if kind == "down" or (kind == "flaky" and hit == 1):
            return 503, {}, b'{"error": "overloaded"}'
        if kind == "limited" and hit == 1:
            return 429, {"retry-after": "1"}, b'{"error": "rate limited"}'
        if kind == "toolong":
            return 429, {"retry-after": "3600"}, b'{"error": "rate limited"}'
        if kind == "bad":
            return 400, {}, b'{"error": "bad request"}'
        probs = {"faq": 0.9, "returns": 0.8} if kind == "sum17" else PROBS
        answer = {"intent_probs": probs, "answer": f"answer ({kind})", "claims": CLAIMS}
        if openai:
            content = json.dumps(answer)
            if kind == "garbage":
                content = "I think the intent is faq."
            elif kind == "fenced":
                content = f"```json\n{content}\n```"
            reply = {"id": "chatcmpl-1", "object": "chat.completion", "model": "fake-gpt-1",
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": content}}],
                     "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}
            return 200, {}, json.dumps(reply).encode()
        if kind == "garbage":
            return 200, {}, b'{"intent_probs": {"faq": 1.0'
        if self.nest:
            return 200, {}, json.dumps({"output": {"probs": probs, "text": answer["answer"]}}).encode()
        return 200, {}, json.dumps(answer).encode()
