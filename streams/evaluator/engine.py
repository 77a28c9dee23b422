"""The evaluator loop: Kafka in, evaluator state, Kafka out, exactly once.

confluent-kafka consumes the co-partitioned input topics in batches. Each record is queued
for its partition and topic (streams/evaluator/pacing.py), then goes to its partition's
:class:`PartitionState`, in timestamp order across topics while the join buffer is long.
Outputs (rows, window partials, dead letters) are produced inside a Kafka transaction, and
every ``checkpoint_s`` the transaction is committed together with each partition's state
snapshot and the consumer offsets (KIP-447). A crash at any point rolls back to the last
commit: state, outputs and input position stay consistent, so nothing is lost or counted
twice.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evaluators.config import EvalConfig
from evaluators.window_state import Layout
from evaluators.windowing import ClosedWindow
from schemas.errors import ContractError
from schemas.fastpath import parse_message
from streams import topics
from streams.evaluator import snapshot
from streams.evaluator.catalog_reader import CatalogReader
from streams.evaluator.checkpoints import read_latest
from streams.evaluator.outputs import (
    DEAD_LETTERS, RowBuilder, dead_letter_row, encode_rows, json_each_row, partial_message, row_headers,
)
from streams.evaluator.pacing import PartitionInput, in_step, release_limit, topics_to_pause
from streams.evaluator.partition import Evaluated, PartitionState
from streams.kafka_io import client_config

log = logging.getLogger(__name__)

DLQ_MAX_BYTES = 1_000_000
"""A dead letter larger than this (Kafka's default record limit is 1 MB) goes to the DLQ topic
truncated, its size and SHA-256 in headers: at full size the broker would refuse it, failing
the transaction every time the record is read again."""

PRODUCER_BUFFER_KB = 128 * 1024
"""What the evaluator's producer may hold undelivered (librdkafka's default is 1 GB)."""

ROWS_MESSAGE_BYTES = 4 * 1024 * 1024
"""Rows per message up to this size (the topics take BIG_MESSAGE_BYTES)."""

INPUT_KINDS = {
    topics.REQUESTS: "request", topics.TEACHER: "response", topics.STUDENT: "response",
    topics.TEACHER_REPLICA: "response", topics.LABELS: "label",
}
PACED = (topics.REQUESTS, topics.TEACHER, topics.STUDENT)
"""The topics a join waits on, processed in timestamp order when the join buffer grows
(streams/evaluator/pacing.py)."""
STALLED_S = 2.0
"""A topic a few records short of its end (MARKER_GAP) that delivered nothing for this long
while not paused no longer sets the pace: past a transactional producer's last record a
topic holds commit markers, which count in its end offset but are never delivered."""
MARKER_GAP = 100
STALLED_LONG_S = 30.0
"""Any topic silent this long no longer sets the pace (e.g. an aborted transaction's tail)."""


@dataclass
class EngineOptions:
    group_id: str = "distillwatch-evaluator"
    instance_id: str = "evaluator-1"
    window_sizes: list[int] = field(default_factory=lambda: [60, 3600])
    grace_s: float = 120.0
    handle_horizon_s: float = 1800.0
    max_handles: int = 20_000
    checkpoint_s: float = 5.0
    caught_up_commit_s: float = 1.0
    idle_flush_s: float = 3.0
    batch_size: int = 5000
    catalog_wait_s: float = 5.0
    max_join_buffer: int = 5000


@dataclass
class EngineStats:
    """Read by the HTTP API's /metrics (one writer: the engine thread)."""

    records: int = 0
    dead_letters: int = 0
    checkpoints: int = 0
    caught_up_checkpoints: int = 0
    """Of ``checkpoints``, those committed early because the input was read to its end."""
    last_checkpoint_s: float = 0.0
    partitions: list[int] = field(default_factory=list)
    open_windows: int = 0
    catalog_waits: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    idle: bool = False
    """Partitions are assigned, no input came since the last idle flush, and it is committed."""
    producer_waits: int = 0
    """Times the evaluator waited for the broker because its producer buffer was full."""
    join_buffer: int = 0
    """Requests and answers waiting for the rest of their join, all partitions."""
    join_buffer_peak: int = 0
    input_pauses: int = 0
    """Times a topic-partition was paused, its queue being long (streams/evaluator/pacing.py)."""
    paused_inputs: int = 0


FULL_COLLECTION_EVERY_S = 60.0
POLL_S = 0.2
HELD_POLL_S = 0.05
"""How long the loop waits for input; shorter while records wait for the catalog reader."""


def quiet_collector(at_checkpoints: bool = False) -> None:
    """Tune the cyclic garbage collector for a process that runs an evaluator.

    The evaluator keeps ~10^5 long-lived objects (recent evaluations, join state) and
    allocates short-lived ones per record; with the default thresholds the collector rescans
    them so often that it took ~25 % of the evaluator's time (it finds almost no cycles).
    Objects alive now (start-up) are frozen out of its scans. With ``at_checkpoints`` (the
    evaluator's own process) it does not run on its own at all: the engine collects
    everything after a checkpoint every FULL_COLLECTION_EVERY_S, which took another ~10 % off
    the evaluator's CPU; otherwise young objects are only collected rarer.
    """
    gc.freeze()
    if at_checkpoints:
        gc.disable()
    else:
        gc.set_threshold(10_000, 10, 10)


class EvaluatorEngine:
    """Runs until ``stop`` is set; ``run`` raises on errors it cannot recover from."""

    def __init__(self, kafka_conf: dict[str, Any], topic: Any, config: EvalConfig,
                 rows: RowBuilder, options: EngineOptions) -> None:
        self.kafka_conf = kafka_conf
        self.topic = topic  # name → prefixed name
        self.config = config
        self.layout = Layout(config)
        self.rows = rows
        self.opts = options
        self.stats = EngineStats()
        self.states: dict[int, PartitionState] = {}
        self.offsets: dict[int, dict[str, int]] = {}
        self.emit_seq: dict[int, int] = {}
        self.catalog = CatalogReader(kafka_conf, topic(topics.CATALOG))
        self._names = {topic(name): name for name in INPUT_KINDS}
        self._stop = threading.Event()
        self._in_txn = False
        self._assigned = False
        self._dirty: set[int] = set()
        self._inputs: dict[int, PartitionInput] = {}
        """Per partition: records delivered and not processed yet (streams/evaluator/pacing.py)."""
        self._rows_pending: dict[str, list[bytes]] = {}
        self._rows_pending_bytes: dict[str, int] = {}
        """Per table: encoded rows not produced yet, and their size (_produce_rows)."""
        self._full_collection = time.monotonic()
        """When the collector last ran over everything (_collect_garbage)."""
        self._holding = False
        """Records are still queued after _ready: held for the catalog reader, or by pacing."""
        self._catalog_behind = False
        """The catalog reader is more than catalog_wait_s behind (_catalog_hold_ms)."""
        self._callback_error: Exception | None = None
        """Raised in a librdkafka callback, re-raised by the loop (from inside the callback it
        reaches Python in a form no ``except`` clause matches)."""

    def stop(self) -> None:
        self._stop.set()

    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- set-up --------------------------------------------------------------------------------

    def _new_state(self) -> PartitionState:
        return PartitionState(self.config, self.layout, self.opts.window_sizes,
                              self.opts.grace_s, self.opts.handle_horizon_s, self.opts.max_handles)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import OFFSET_STORED

        numbers = sorted({tp.partition for tp in partitions} - set(self.states))
        saved = read_latest(self.kafka_conf, self.topic(topics.CHECKPOINTS), self.opts.group_id)
        for p in numbers:
            state = self._new_state()
            offsets: dict[str, int] = {}
            if p in saved:
                offsets = snapshot.load(saved[p], state)
            self.states[p], self.offsets[p] = state, offsets
            self.emit_seq[p] = state.counters.get("emit_seq", 0)
        for tp in partitions:
            name = self._names.get(tp.topic)
            tp.offset = self.offsets.get(tp.partition, {}).get(name or "", OFFSET_STORED)
        consumer.assign(partitions)
        consumer.resume(partitions)  # a partition paused before a rebalance starts unpaused
        now = time.monotonic()  # a topic that delivers nothing from now on stops setting the pace
        for p in numbers:
            self._inputs[p] = PartitionInput(read_at=dict.fromkeys(PACED, now))
        self.stats.partitions = sorted(self.states)
        self._assigned = True
        log.info("assigned partitions %s (restored %s)", numbers, sorted(set(numbers) & set(saved)))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        if self._in_txn and self._callback_error is None:
            try:
                self._commit(consumer, force=True)
            except Exception as exc:  # the transaction is lost; the loop raises it
                self._callback_error = exc
        for p in {tp.partition for tp in partitions}:
            self.states.pop(p, None)
            self.offsets.pop(p, None)
            self._inputs.pop(p, None)  # not processed, not committed: read again by the next owner
        consumer.unassign()
        self.stats.partitions = sorted(self.states)

    # -- the loop ------------------------------------------------------------------------------

    def producer_config(self) -> dict[str, Any]:
        """Transactional: outputs, state and input offsets commit together."""
        return client_config(self.kafka_conf, tuning={
            "linger.ms": 20, "compression.type": "lz4", "transaction.timeout.ms": 30000,
            # bounded: see _send (rows messages are up to 4 MiB, snapshots a few MiB each)
            "queue.buffering.max.kbytes": PRODUCER_BUFFER_KB,
        }, required={
            "transactional.id": f"{self.opts.group_id}-{self.opts.instance_id}",
            "enable.idempotence": True, "acks": "all",
            # rows and snapshot messages are up to the size the topics take: a user's kafka.extra
            # may raise this (for the workers' large answers, say) but not lower it here
            "message.max.bytes": max(int(topics.BIG_MESSAGE_BYTES), int(self.kafka_conf.get("message.max.bytes", 0))),
        })

    def consumer_config(self) -> dict[str, Any]:
        """Committed input only; the group's offsets move inside the evaluator's transactions."""
        return client_config(self.kafka_conf, tuning={
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000, "max.poll.interval.ms": 300000,
            # Prefetch a few batches, not the backlog: librdkafka's defaults (100,000 messages
            # per partition, 64 MB) let a backlog run fill the evaluator's memory with input
            # it would not read for minutes.
            "queued.min.messages": 5000, "queued.max.messages.kbytes": 16384,
            # With queues this short, librdkafka's default 1 s pause after a full queue
            # (fetch.queue.backoff.ms) capped reading at ~77,000 records/s and left the
            # evaluator waiting for input a quarter of the time.
            "fetch.queue.backoff.ms": 10,
        }, required={
            "group.id": self.opts.group_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "partition.assignment.strategy": "range",
        })

    def run(self) -> None:
        from confluent_kafka import Consumer, Producer

        self.catalog.start()
        self.producer = Producer(self.producer_config())
        self.producer.init_transactions(60)  # fences a previous incarnation, aborts its open txn
        if not self.catalog.ready.wait(60):
            raise TimeoutError("catalog reader did not reach the end of the catalog topic in 60s")
        consumer = Consumer(self.consumer_config())
        consumer.subscribe([self.topic(name) for name in INPUT_KINDS],
                           on_assign=self._on_assign, on_revoke=self._on_revoke)
        last_commit = last_input = time.monotonic()
        idle_flushed = False  # flush once after start: restored state may hold unflushed windows
        try:
            while not self._stop.is_set():
                # records held for the catalog are released within ~0.5 s: look again sooner
                timeout = HELD_POLL_S if self._holding else POLL_S
                msgs = consumer.consume(self.opts.batch_size, timeout)
                # less than a batch in the timeout: the consumer has handed over all it had fetched
                short_read = len(msgs) < self.opts.batch_size
                if self._callback_error is not None:
                    raise self._callback_error
                if self._assigned:  # new (possibly restored) partitions: flush them once idle
                    self._assigned = idle_flushed = False
                    self.stats.idle = False
                    last_input = time.monotonic()  # idle counts from now, not from before the assignment
                self._deliver(msgs)
                ready = self._ready(consumer)  # after empty reads too: a topic may have stalled
                if ready:
                    self._begin()
                    self._process(ready)
                    last_input = time.monotonic()
                    idle_flushed = False
                    self.stats.idle = False
                self._bound_queues(consumer)
                now = time.monotonic()
                if not idle_flushed and now - last_input >= self.opts.idle_flush_s and not self._holding:
                    self._begin()
                    self._idle_flush()
                    idle_flushed = True
                due = now - last_commit >= self.opts.checkpoint_s or idle_flushed
                # records may still be queued, held for the catalog for a moment, but none for
                # pacing: a partition reading in step is working off a backlog
                caught_up = (not due and short_read and now - last_commit >= self.opts.caught_up_commit_s
                             and not any(inp.in_step for inp in self._inputs.values()))
                if self._in_txn and (due or caught_up):
                    self._commit(consumer)
                    last_commit = now
                    self.stats.caught_up_checkpoints += caught_up
                    self.stats.idle = idle_flushed and bool(self.states)
            if self._in_txn:
                self._commit(consumer)
        finally:
            consumer.close()
            self.catalog.stop()
            self.producer.flush(30)

    def _collect_garbage(self) -> None:
        """Where the collector does not run on its own (quiet_collector), run it here: over
        everything, every FULL_COLLECTION_EVERY_S. (Collecting the young generations at each
        checkpoint as well cost ~160 ms a checkpoint on a 1,000,000-pair backlog, all of what
        survived since the last one, the join buffer's decoded messages among them, and found
        little: 2-6 % more pairs/s without it, peak RSS within 30 MB.)"""
        if gc.isenabled():
            return
        now = time.monotonic()
        if now - self._full_collection >= FULL_COLLECTION_EVERY_S:
            gc.collect()
            self._full_collection = now

    def _begin(self) -> None:
        if not self._in_txn:
            self.producer.begin_transaction()
            self._in_txn = True

    def _deliver(self, msgs: list[Any]) -> None:
        """Queue what the consumer delivered, per partition and topic."""
        now = time.monotonic()
        wall_ms = int(time.time() * 1000)
        for msg in msgs:
            if msg.error() is not None:
                log.warning("consumer error: %s", msg.error())
                continue
            p, name = msg.partition(), self._names.get(msg.topic())
            inp = self._inputs.get(p)
            if inp is None or name is None:
                continue
            # a record stamped in the future counts as made now (it exists already): it is
            # then held for the catalog, and paced, by the time it was read instead
            inp.add(name, min(msg.timestamp()[1], wall_ms), msg.offset(), msg)
            inp.read_at[name] = now

    def _ready(self, consumer: Any) -> list[Any]:
        """The queued records to process now: all of them, or while a partition's join buffer
        is over its bound, those up to its release limit (streams/evaluator/pacing.py); in
        both cases only those the catalog is known to be complete for (``_catalog_hold_ms``)."""
        ready: list[Any] = []
        bound = self.opts.max_join_buffer
        hold = self._catalog_hold_ms()
        total = 0
        for p, inp in self._inputs.items():
            state = self.states.get(p)
            if state is None:
                continue
            pending, queued = len(state.pending), inp.queued()
            total += pending
            inp.in_step = in_step(inp.in_step, pending + queued, bound)
            if not queued:
                continue
            limit = release_limit(inp.newest_ms, self._with_more(consumer, p, inp)) if inp.in_step else None
            ready += inp.take(limit, PACED, hold)
        self._holding = any(inp.queued() for inp in self._inputs.values())
        self.stats.join_buffer = total
        self.stats.join_buffer_peak = max(self.stats.join_buffer_peak, total)
        return ready

    def _process(self, msgs: list[Any]) -> None:
        outs: dict[int, list[Evaluated]] = {}
        for msg in msgs:
            p, name = msg.partition(), self._names.get(msg.topic())
            state = self.states.get(p)
            if state is None or name is None:
                continue
            offsets = self.offsets[p]
            if msg.offset() < offsets.get(name, 0):
                continue  # already inside the restored state
            offsets[name] = msg.offset() + 1
            self.stats.records += 1
            out = outs.setdefault(p, [])
            start = len(out)
            try:
                message = parse_message(INPUT_KINDS[name], msg.value() or b"")
            except ContractError as exc:
                self._dead_letter(msg, str(exc))
                continue
            if name == topics.REQUESTS:
                state.on_request(message, self.catalog.catalog, out)
                waiting = state.pending.get(message.request_id)
                if waiting is not None and waiting.request is message:
                    waiting.offset = msg.offset()  # kept until its answers complete the join
            elif name == topics.LABELS:
                state.on_label(message, out)
            else:
                if message.role != name.split(".", 1)[1]:
                    self._dead_letter(msg, f"role {message.role!r} on topic {msg.topic()}")
                    continue
                state.on_response(message, self.catalog.catalog, out)
            for item in out[start:]:
                if item.request is not None and name == topics.REQUESTS:
                    item.handle.meta["offset"] = msg.offset()
        tables: dict[str, list[bytes]] = {}
        for p, out in outs.items():
            state = self.states[p]
            closed = state.advance(self.catalog.catalog, out)
            self._collect_rows(out, p, tables)
            self._emit_windows(p, closed + state.take_revised(), final=True)
        self._produce_rows(tables)
        self._dirty |= set(outs)

    def _with_more(self, consumer: Any, p: int, inp: PartitionInput) -> list[str]:
        """Paced topics of partition ``p`` that may still deliver: delivered up to before their
        end offset (as last fetched), and unless paused, a record delivered (or the partition
        assigned) recently (STALLED_S near the end, STALLED_LONG_S otherwise)."""
        from confluent_kafka import TopicPartition

        now = time.monotonic()
        out = []
        for name in PACED:
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic(name), p), cached=True)
            left = high - inp.delivered.get(name, self.offsets[p].get(name, 0))
            if high < 0 or left <= 0:
                continue  # read to its end, or nothing fetched yet to tell
            silent = now - inp.read_at.get(name, now)
            if name not in inp.held and silent > (STALLED_S if left <= MARKER_GAP else STALLED_LONG_S):
                continue
            out.append(name)
        return out

    def _bound_queues(self, consumer: Any) -> None:
        """Pause a topic-partition whose queue is long, resume it when half as long."""
        from confluent_kafka import TopicPartition

        bound = self.opts.max_join_buffer
        for p, inp in self._inputs.items():
            want = topics_to_pause({n: len(q) for n, q in inp.queues.items()}, inp.held, bound)
            if want == inp.held:
                continue
            release, hold = inp.held - want, want - inp.held
            if release:
                consumer.resume([TopicPartition(self.topic(n), p) for n in sorted(release)])
            if hold:
                consumer.pause([TopicPartition(self.topic(n), p) for n in sorted(hold)])
                self.stats.input_pauses += len(hold)
            inp.held = want
        self.stats.paused_inputs = sum(len(inp.held) for inp in self._inputs.values())

    def _catalog_hold_ms(self) -> int | None:
        """Records stamped after this wait in their queues: a claim is judged by the catalog
        of its time, and the catalog reader has applied every catalog record made before its
        ``safe_time_ms``. Holding only the records that are too new (~0.5 s at most while the
        reader keeps up) lets the others go on; the whole batch used to wait for its newest
        record, ~0.5 s a batch whenever the evaluator kept up with its input.

        None (hold nothing) while the reader is more than ``catalog_wait_s`` behind: stuck, or
        the catalog topic unreachable. Evaluation then goes on with the catalog it has, each
        such episode counted in ``catalog_waits`` and logged."""
        safe = self.catalog.safe_time_ms
        if time.time() * 1000 - safe > self.opts.catalog_wait_s * 1000:
            if not self._catalog_behind:
                self._catalog_behind = True
                self.stats.catalog_waits += 1
                log.warning("the catalog reader is %.1f s behind: evaluating with the catalog as read so far",
                            time.time() - safe / 1000)
            return None
        self._catalog_behind = False
        return int(safe)

    def _idle_flush(self) -> None:
        log.info("input idle: evaluating waiting requests, emitting open windows of %d partitions",
                 len(self.states))
        for p, state in self.states.items():
            out: list[Evaluated] = []
            state.flush(self.catalog.catalog, out)
            self._emit_rows(out, p)
            self._emit_windows(p, state.take_revised(), final=True)
            self._emit_windows(p, state.open_windows(), final=False)
            self._dirty.add(p)

    # -- outputs -------------------------------------------------------------------------------

    def _emit_rows(self, items: list[Evaluated], partition: int) -> None:
        tables: dict[str, list[bytes]] = {}
        self._collect_rows(items, partition, tables)
        self._produce_rows(tables)

    def _collect_rows(self, items: list[Evaluated], partition: int, tables: dict[str, list[bytes]]) -> None:
        """Each item's rows, encoded (outputs.encode_rows), added to ``tables``."""
        for item in items:
            for table, rows in self.rows.rows(item, partition).items():
                tables.setdefault(table, []).append(encode_rows(table, rows))
            snapshot.pack_handle(item.handle)  # while its row record is at hand

    def _produce_rows(self, tables: dict[str, list[bytes]]) -> None:
        """Rows wait per table until they fill a message (ROWS_MESSAGE_BYTES) or the transaction
        commits (_flush_rows): every message becomes one ClickHouse insert, one part to merge,
        and the sink sees nothing of a transaction before its commit anyway. One message per
        batch made ~1,700-row parts; ~100 µs a pair of ClickHouse time once went to small inserts."""
        for table, lines in tables.items():
            pending = self._rows_pending.setdefault(table, [])
            size = self._rows_pending_bytes.get(table, 0)
            for line in lines:
                if pending and size + len(line) > ROWS_MESSAGE_BYTES:
                    self._produce_table(table, b"".join(pending))
                    pending.clear()
                    size = 0
                pending.append(line)
                size += len(line)
            self._rows_pending_bytes[table] = size
        self.producer.poll(0)

    def _flush_rows(self) -> None:
        """Produce the rows still waiting, into the open transaction."""
        for table, pending in self._rows_pending.items():
            if pending:
                self._produce_table(table, b"".join(pending))
        self._rows_pending.clear()
        self._rows_pending_bytes.clear()

    def _send(self, topic: str, value: bytes | None, key: bytes | None, headers: dict[str, str] | None = None) -> None:
        """Produce, waiting for deliveries while the producer's buffer is full: when the broker
        falls behind, the evaluator slows to its pace instead of buffering without bound (at
        the default 1 GB buffer a backlog run grew the evaluator to 1.9 GB)."""
        while True:
            try:
                self.producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:
                self.stats.producer_waits += 1
                self.producer.poll(0.05)

    def _produce_table(self, table: str, body: bytes) -> None:
        self._send(self.topic(topics.ROWS), body, table.encode(), headers=row_headers(table))

    def _emit_windows(self, partition: int, windows: list[ClosedWindow], final: bool) -> None:
        for window in windows:
            self.emit_seq[partition] += 1
            self._send(
                self.topic(topics.PARTIALS),
                partial_message(window, str(partition), self.emit_seq[partition], final),
                f"{window.size}:{window.start}".encode(),
            )

    def _dead_letter(self, msg: Any, error: str) -> None:
        self.stats.dead_letters += 1
        value, headers = msg.value(), {
            "error": error[:1000], "source_topic": msg.topic(),
            "source_partition": str(msg.partition()), "source_offset": str(msg.offset()),
        }
        if value is not None and len(value) > DLQ_MAX_BYTES:
            headers |= {"truncated_from": str(len(value)), "sha256": hashlib.sha256(value).hexdigest()}
            value = value[:DLQ_MAX_BYTES]
        self._send(self.topic(topics.DLQ), value, msg.key(), headers=headers)
        row = dead_letter_row(msg.topic(), msg.partition(), msg.offset(), msg.value(), error, self.rows.redact)
        self._send(self.topic(topics.ROWS), json_each_row([row]), DEAD_LETTERS.encode(),
                              headers={"table": DEAD_LETTERS})

    def _commit(self, consumer: Any, force: bool = False) -> None:
        from confluent_kafka import TopicPartition

        self._flush_rows()
        for p in sorted(self._dirty):
            state = self.states.get(p)
            if state is None:
                continue
            state.counters["emit_seq"] = self.emit_seq[p]
            self._send(self.topic(topics.CHECKPOINTS), snapshot.dump(state, self.offsets[p]),
                                  f"{self.opts.group_id}/{p}".encode())
        positions = [TopicPartition(self.topic(name), p, off)
                     for p, offs in self.offsets.items() for name, off in offs.items()]
        if positions:
            self.producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
            for tp in positions:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0:
                    self.stats.lag[(tp.topic, tp.partition)] = max(0, high - tp.offset)
        self.producer.commit_transaction(60)
        self._in_txn = False
        self._dirty.clear()
        self._collect_garbage()
        self.stats.checkpoints += 1
        self.stats.last_checkpoint_s = time.time()
        self.stats.open_windows = sum(len(w.open) for s in self.states.values() for w in s.windows.values())
        totals: dict[str, int] = {}
        for s in self.states.values():
            for k, v in s.counters.items():
                totals[k] = totals.get(k, 0) + v
        self.stats.counters = totals



def run_restarting(new_engine: Callable[[], EvaluatorEngine], engine: EvaluatorEngine,
                   stopping: threading.Event,
                   on_change: Callable[[str | None, EvaluatorEngine, int], None]) -> None:
    """Run ``engine``; when Kafka fails it (a broker outage outlasting a transaction), start a
    fresh one from the last checkpoint, as a restarted process would. ``on_change`` hears of
    each problem and each new engine (problem None); other errors propagate."""
    from confluent_kafka import KafkaException

    delay = 1.0
    restarts = 0
    while True:
        try:
            engine.run()
            return
        except (KafkaException, TimeoutError) as exc:
            if stopping.is_set():
                return
            problem = f"Kafka failed the evaluator ({exc}); restarting it from its checkpoint"
            delay = 1.0 if engine.stats.checkpoints else min(delay * 2, 30.0)  # backoff while it fails at once
            log.warning("%s in %.0f s", problem, delay)
            on_change(problem, engine, restarts)
            if stopping.wait(delay):
                return
            engine, restarts = new_engine(), restarts + 1
            on_change(None, engine, restarts)
            if stopping.is_set():  # a stop that reached the engine just replaced
                return
