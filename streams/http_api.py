"""The monitor's own HTTP API: /healthz, /metrics (Prometheus), POST /sql (read-only).

The embedded ClickHouse store belongs to the monitor's process, so other processes
(``distillwatch sql``) query it here. Queries run with ``readonly=1``, a row limit and a
time limit; parameters are bound by ClickHouse, never pasted into the text.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from streams.clickhouse import Store
from streams.sql import check_read_only, read_settings

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20


class MonitorCollector:
    """Exposes the engine's and the sink's counters at scrape time."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Any:
        s = self.snapshot()
        yield CounterMetricFamily("distillwatch_records", "Input records consumed", value=s["records"])
        yield CounterMetricFamily("distillwatch_dead_letters", "Records sent to the dead-letter topic",
                                  value=s["dead_letters"])
        yield CounterMetricFamily("distillwatch_checkpoints", "Committed evaluator transactions",
                                  value=s["checkpoints"])
        yield CounterMetricFamily("distillwatch_caught_up_checkpoints",
                                  "Of the committed transactions, those committed before evaluator.checkpoint_s "
                                  "because all input read so far was processed",
                                  value=s.get("caught_up_checkpoints", 0))
        yield CounterMetricFamily("distillwatch_producer_waits",
                                  "Times the evaluator waited for the broker (its producer buffer full)",
                                  value=s.get("producer_waits", 0))
        yield CounterMetricFamily("distillwatch_input_pauses",
                                  "Times an input topic-partition was paused, its queue of records read "
                                  "and not processed yet being over evaluator.max_join_buffer",
                                  value=s.get("input_pauses", 0))
        yield GaugeMetricFamily("distillwatch_paused_inputs", "Input topic-partitions paused now (pacing)",
                                value=s.get("paused_inputs", 0))
        yield GaugeMetricFamily("distillwatch_join_buffer",
                                "Requests and answers waiting for the rest of their join",
                                value=s.get("join_buffer", 0))
        yield GaugeMetricFamily("distillwatch_join_buffer_peak", "Largest join buffer since start",
                                value=s.get("join_buffer_peak", 0))
        yield GaugeMetricFamily("distillwatch_open_windows", "Open windows", value=s["open_windows"])
        yield GaugeMetricFamily("distillwatch_assigned_partitions", "Input partitions this instance owns",
                                value=s["partitions"])
        yield GaugeMetricFamily("distillwatch_idle", "1 when all input so far is evaluated and committed",
                                value=s["idle"])
        yield GaugeMetricFamily("distillwatch_events_per_second", "Input records per second",
                                value=s["events_per_second"])
        yield GaugeMetricFamily("distillwatch_sink_batch_seconds", "Latency of the last sink batch",
                                value=s["sink_batch_latency_s"])
        lag = GaugeMetricFamily("distillwatch_consumer_lag", "Records behind the log end",
                                labels=["topic", "partition"])
        for (topic, partition), value in s["lag"].items():
            lag.add_metric([topic, str(partition)], value)
        yield lag
        for name, value in s.get("sink_store", {}).items():
            yield GaugeMetricFamily(f"distillwatch_sink_{name}", f"Sink: {name.replace('_', ' ')}", value=value)
        for name, value in s.get("alerting", {}).items():
            yield GaugeMetricFamily(f"distillwatch_{name}", f"Alerting: {name.replace('_', ' ')}", value=value)
        counters = CounterMetricFamily("distillwatch_evaluator_events", "Evaluator outcomes",
                                       labels=["kind"])
        for kind, value in s["counters"].items():
            counters.add_metric([kind], value)
        yield counters


def make_handler(store: Store | None, lock: threading.Lock, registry: CollectorRegistry,
                 health: Callable[[], tuple[bool, str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug(fmt, *args)

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            if self.path == "/healthz":
                ok, detail = health()
                self._send(200 if ok else 503, json.dumps({"ok": ok, "detail": detail}).encode())
            elif self.path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b'{"error": "not found"}')

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/sql":
                self._send(404, b'{"error": "not found"}')
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, b'{"error": "query too large"}')
                return
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
                sql, params = request["sql"], request.get("params") or {}
                limit = min(int(request.get("max_rows", 10_000)), 100_000)
            except (ValueError, KeyError, TypeError) as exc:
                self._send(400, json.dumps({"error": f"bad request: {exc}"}).encode())
                return
            if store is None:
                self._send(503, b'{"error": "no store"}')
                return
            try:
                body_sql = check_read_only(sql)
                with lock:
                    result = store.client.query(body_sql, parameters=params or None,
                                                settings=read_settings(limit))
            except Exception as exc:  # ClickHouse's own message says what was wrong
                self._send(400, json.dumps({"error": str(exc).strip()[:2000]}).encode())
                return
            body = {"columns": list(result.column_names), "types": [t.name for t in result.column_types],
                    "rows": result.result_rows}
            self._send(200, json.dumps(body, default=str).encode())

    return Handler


def serve(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="http-api", daemon=True).start()
    return server
