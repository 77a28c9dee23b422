"""Kafka → ClickHouse: the evaluator's rows and window partials, each insert idempotent.

Reads ``distill.rows`` and ``distill.partials`` (read_committed: only what an evaluator
transaction committed). Every message becomes one insert whose deduplication token is its
Kafka coordinates, so a message delivered again after a crash is stored once; consumer
offsets are committed only after the inserts of a batch returned. Partials are merged
across partitions into ``window_metrics`` here, from what ``window_partials`` holds.

When ClickHouse fails, the batch is kept and written again with backoff (its tokens make
the retried inserts idempotent) while consumption is paused: memory holds one batch, the
backlog stays in Kafka, and offsets never pass what is durably written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from evaluators.readout import window_rows
from evaluators.window_state import Layout, WindowState
from streams import fault_injection, topics
from streams.clickhouse import Store
from streams.errors import StoreError
from streams.evaluator.outputs import COMPACT_FORMAT, json_each_row
from streams.kafka_io import client_config

log = logging.getLogger(__name__)

INSERT_SETTINGS = {"input_format_skip_unknown_fields": 1, "date_time_input_format": "best_effort"}
"""For JSONEachRow rows, whose time columns may be written either way."""
FORMAT_SETTINGS: dict[str, dict[str, Any]] = {
    "JSONEachRow": INSERT_SETTINGS,
    COMPACT_FORMAT: {},  # epoch seconds, which the basic parser reads (best_effort: +25 % CPU)
}
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0


@dataclass
class SinkStats:
    messages: int = 0
    rows_inserted: int = 0
    windows_merged: int = 0
    batches: int = 0
    last_batch_s: float = 0.0
    batch_latency_s: float = 0.0
    caught_up_s: float = 0.0
    """When a poll last found nothing new: everything committed before then is written."""
    store_down_since: float = 0.0
    """When the current run of failed ClickHouse writes began (0: writes succeed)."""
    store_retries: int = 0
    store_error: str = ""
    held_messages: int = 0
    """Messages of the batch kept for retry while ClickHouse fails."""


class Sink(threading.Thread):
    def __init__(self, kafka_conf: dict[str, Any], topic: Callable[[str], str], store: Store,
                 store_lock: threading.Lock, layout: Layout, group_id: str,
                 after_write: Callable[[], None] | None = None) -> None:
        super().__init__(name="clickhouse-sink", daemon=True)
        self.kafka_conf = kafka_conf
        self.topic = topic
        self.store = store
        self.lock = store_lock
        self.layout = layout
        self.group_id = group_id
        self.after_write = after_write
        """Called after each batch is written and before its offsets commit, and after each poll
        that found nothing (the alerter)."""
        self.stats = SinkStats()
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # surfaced by the monitor, which exits non-zero
            self.error = exc
            log.exception("sink stopped")

    def consumer_config(self) -> dict[str, Any]:
        """Committed evaluator output only; offsets committed by hand after the inserts."""
        return client_config(self.kafka_conf, tuning={"session.timeout.ms": 10000}, required={
            "group.id": self.group_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        })

    def _run(self) -> None:
        from confluent_kafka import Consumer, KafkaException

        consumer = Consumer(self.consumer_config())
        consumer.subscribe([self.topic(topics.ROWS), self.topic(topics.PARTIALS)])
        try:
            while not self._halt.is_set():
                polled_at = time.time()
                msgs = [m for m in consumer.consume(2000, 0.2) if m.error() is None]
                if not msgs:
                    self.stats.caught_up_s = polled_at
                    if self.after_write is not None:
                        self.after_write()  # settled input: windows waiting to be judged may be
                if msgs:
                    started = time.monotonic()
                    if not self._write_until_durable(consumer, msgs):
                        break  # stopping while ClickHouse fails: the batch stays uncommitted
                    try:
                        consumer.commit(asynchronous=False)
                    except KafkaException as exc:  # broker away: written, so a re-read is deduplicated
                        log.warning("offset commit failed (the next one covers this batch): %s", exc)
                    self.stats.batches += 1
                    self.stats.batch_latency_s = time.monotonic() - started
                    self.stats.last_batch_s = time.time()
        finally:
            consumer.close()

    def _write_until_durable(self, consumer: Any, msgs: list[Any]) -> bool:
        """Write the batch and run the after-write hook, retrying while ClickHouse fails.

        The partitions are paused meanwhile (polling keeps the group membership, nothing more
        is read) and nothing is committed. False when asked to stop before it succeeded.
        """
        from clickhouse_connect.driver.exceptions import Error as ClickHouseError

        delay, paused = RETRY_FIRST_S, False
        try:
            while True:
                try:
                    self.write(msgs)
                    if self.after_write is not None:
                        self.after_write()
                    return True
                except (StoreError, ClickHouseError, OSError) as exc:
                    stats = self.stats
                    if not stats.store_down_since:
                        stats.store_down_since = time.time()
                        log.warning("ClickHouse write failed, holding %d messages and retrying: %s",
                                    len(msgs), exc)
                    stats.store_retries += 1
                    stats.store_error = (str(exc).strip() or repr(exc)).splitlines()[0][:300]
                    stats.held_messages = len(msgs)
                    if not paused:
                        consumer.pause(consumer.assignment())
                        paused = True
                    deadline = time.monotonic() + delay
                    while time.monotonic() < deadline:
                        if self._halt.is_set():
                            return False
                        msg = consumer.poll(0.2)
                        if msg is not None and msg.error() is None:
                            msgs.append(msg)  # fetched before the pause took effect: keep it
                    delay = min(delay * 2, RETRY_MAX_S)
        finally:
            if paused and not self._halt.is_set():
                consumer.resume(consumer.assignment())
                log.warning("ClickHouse writes succeed again after %.0f s (%d retries so far)",
                            time.time() - self.stats.store_down_since, self.stats.store_retries)
            self.stats.store_down_since, self.stats.held_messages = 0.0, 0

    def store_problem(self) -> str | None:
        """What /healthz reports while ClickHouse writes fail (None while they succeed)."""
        s = self.stats
        if not s.store_down_since:
            return None
        return (f"ClickHouse writes failing for {time.time() - s.store_down_since:.0f} s "
                f"({s.store_retries} retries, {s.held_messages} messages held, consumption "
                f"paused, nothing committed): {s.store_error}")

    def store_gauges(self) -> dict[str, float]:
        """For /metrics, as distillwatch_sink_<name>."""
        s = self.stats
        return {"store_up": 0.0 if s.store_down_since else 1.0,
                "store_retries": float(s.store_retries), "held_messages": float(s.held_messages)}

    def write(self, msgs: list[Any]) -> None:
        windows: set[tuple[int, int]] = set()
        partial_rows: list[tuple[str, list[dict[str, Any]]]] = []
        for msg in msgs:
            self.stats.messages += 1
            token = f"{msg.topic()}:{msg.partition()}:{msg.offset()}"
            if msg.topic() == self.topic(topics.ROWS):
                headers = dict(msg.headers() or [])
                table = headers.get("table", msg.key() or b"").decode()
                columns = headers["columns"].decode().split(",") if "columns" in headers else None
                fmt = headers.get("format", b"JSONEachRow").decode()
                self._insert(table, msg.value(), token, fmt, columns)
            else:
                partial = orjson.loads(msg.value())
                windows.add((partial["window_s"], partial["window_start"]))
                partial_rows.append((token, [
                    {"window_s": partial["window_s"], "window_start": partial["window_start"],
                     "slice": key, "part": partial["part"], "version": partial["version"],
                     "final": int(partial["final"]), "state": orjson.dumps(state).decode()}
                    for key, state in partial["states"].items()
                ]))
        for token, rows in partial_rows:
            self._insert("window_partials", json_each_row(rows), token)
        for size, start in sorted(windows):
            self._merge_window(size, start)

    def _insert(self, table: str, body: bytes, token: str, fmt: str = "JSONEachRow",
                columns: list[str] | None = None) -> None:
        if fmt not in FORMAT_SETTINGS:
            raise StoreError(f"rows for {table} in format {fmt!r}: the sink inserts only "
                             f"{sorted(FORMAT_SETTINGS)}")
        fault_injection.check_store()
        with self.lock:
            self.store.client.raw_insert(
                f"{self.store.database}.{table}", columns, body, fmt=fmt,
                settings=FORMAT_SETTINGS[fmt] | {"insert_deduplication_token": token},
            )
        self.stats.rows_inserted += body.count(b"\n")

    def _merge_window(self, size: int, start: int) -> None:
        """window_metrics of one window from every partition's latest partial."""
        fault_injection.check_store()
        with self.lock:
            result = self.store.query(
                f"SELECT slice, part, state, version FROM {self.store.database}.window_partials "
                "FINAL WHERE window_s = {s:UInt32} AND window_start = toDateTime({w:Int64}, 'UTC')",
                parameters={"s": size, "w": start},
            )
        merged: dict[str, WindowState] = {}
        part_versions: dict[str, int] = {}
        for slice_key, part, state_json, part_version in result.result_rows:
            state = WindowState.from_dict(orjson.loads(state_json), self.layout)
            if slice_key in merged:
                merged[slice_key].merge(state)
            else:
                merged[slice_key] = state
            part_versions[part] = max(part_versions.get(part, 0), int(part_version))
        # Each partition's partial versions only grow, so their sum grows with any of them.
        version = sum(part_versions.values())
        rows = [
            {"window_start": r.window_start, "window_end": r.window_end, "window_s": r.window_s,
             "slice": r.slice, "metric": r.metric, "value": r.value, "numerator": r.numerator,
             "denominator": r.denominator, "support": r.support, "ci_low": r.ci_low,
             "ci_high": r.ci_high, "version": version}
            for r in window_rows(start, size, merged, self.layout)
        ]
        if rows:
            self._insert("window_metrics", json_each_row(rows), f"wm:{size}:{start}:{version}")
        self.stats.windows_merged += 1
