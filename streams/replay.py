"""Publish a replay log to the shadow topics (DESIGN §4), confirming every delivery.

Each valid line's messages go to their topics keyed by request_id (catalog: entity_id) with
their original JSON bytes, extra fields included (cut out of the line, not re-encoded). A
line that breaks the contract is published as raw bytes to ``shadow.requests``, where the
evaluator dead-letters it, so ``replay`` and ``evaluate`` agree on what was invalid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from distillwatch.settings import Settings
from schemas.errors import ContractError
from schemas.fastpath import parse_line_fast
from streams import topics
from streams.kafka_io import producer_config

ROLE_TOPICS = {
    "teacher": topics.TEACHER,
    "student": topics.STUDENT,
    "teacher_replica": topics.TEACHER_REPLICA,
}


@dataclass
class ReplayReport:
    lines: int = 0
    pairs: int = 0
    invalid_lines: int = 0
    produced: int = 0
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.delivered == self.produced


class Pacer:
    """Sleeps so that at most ``rate`` pairs per second are published (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.started = time.monotonic()

    def wait(self, done: int) -> None:
        if self.rate:
            ahead = done / self.rate - (time.monotonic() - self.started)
            if ahead > 0:
                time.sleep(ahead)


_NULL = msgspec.Raw(b"null")


class _Parts(msgspec.Struct):
    """A line's messages as the JSON text they were written in (absent or null: ``null``)."""

    request: msgspec.Raw = _NULL
    teacher: msgspec.Raw = _NULL
    student: msgspec.Raw = _NULL
    teacher_replica: msgspec.Raw = _NULL
    catalog: msgspec.Raw = _NULL
    label: msgspec.Raw = _NULL


_parts = msgspec.json.Decoder(_Parts)


def messages_of(raw: bytes) -> list[tuple[str, bytes | None, bytes]]:
    """(topic, key, value) for one log line; an invalid line is one raw record."""
    try:
        line = parse_line_fast(raw)
    except ContractError:
        return [(topics.REQUESTS, None, raw.rstrip(b"\r\n"))]
    parts = _parts.decode(raw)  # a valid line is JSON: this only cuts it into its messages
    if line.catalog is not None:
        return [(topics.CATALOG, line.catalog.entity_id.encode(), bytes(parts.catalog))]
    if line.label is not None:
        return [(topics.LABELS, line.label.request_id.encode(), bytes(parts.label))]
    assert line.request is not None  # a valid line holds exactly one of the three
    key = line.request.request_id.encode()
    out = [(topics.REQUESTS, key, bytes(parts.request))]
    for role, topic in ROLE_TOPICS.items():
        part = getattr(parts, role)
        if part != _NULL:
            out.append((topic, key, bytes(part)))
    return out


def replay(
    lines: Iterable[bytes],
    settings: Settings,
    rate: float | None = None,
    progress: Callable[[ReplayReport], None] | None = None,
    flush_timeout_s: float = 120.0,
    skip_topics: frozenset[str] = frozenset(),
    halt: Callable[[], bool] | None = None,
) -> ReplayReport:
    """Publish every line; the report says how many records the broker acknowledged.

    ``skip_topics`` leaves some messages out, e.g. the answers when live workers give them;
    ``halt`` is asked after each line and stops the replay early when it returns True.
    """
    from confluent_kafka import KafkaException, Producer

    report = ReplayReport()
    # Reports for failed deliveries only: a report per acknowledged record (three a pair) cost
    # the replayer ~9 % of its CPU. A record leaves the producer's queue acknowledged or
    # reported failed, so the acknowledged ones are counted from the queue (see _acknowledged).
    producer = Producer(producer_config(settings, **{"delivery.report.only.error": True}))

    def on_delivery(err: Any, _msg: Any) -> None:  # only called for failures
        report.failed += 1
        if len(report.errors) < 20:
            report.errors.append(str(err))

    pacer = Pacer(rate)
    names = {t: settings.topic(t)
             for t in (topics.REQUESTS, topics.CATALOG, topics.LABELS, *ROLE_TOPICS.values())}
    for raw in lines:
        if not raw.strip():
            continue
        report.lines += 1
        records = messages_of(raw)
        if records[0][1] is None:
            report.invalid_lines += 1
        elif records[0][0] == topics.REQUESTS:
            report.pairs += 1
        for topic, key, value in records:
            if topic in skip_topics:
                continue
            while True:
                try:
                    producer.produce(names[topic], value, key, on_delivery=on_delivery)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.5)
                except KafkaException as exc:
                    report.failed += 1
                    report.errors.append(str(exc))
                    break
            report.produced += 1
        producer.poll(0)
        if progress is not None and report.lines % 5000 == 0:
            _acknowledged(report, producer)
            progress(report)
        pacer.wait(report.pairs)
        if halt is not None and halt():
            break
    remaining = producer.flush(flush_timeout_s)
    _acknowledged(report, producer)
    if remaining:
        report.errors.append(f"{remaining} messages still unacknowledged after {flush_timeout_s:.0f}s")
    if progress is not None:
        progress(report)
    return report


def _acknowledged(report: ReplayReport, producer: Any) -> None:
    """Records the broker acknowledged so far: produced, less those reported failed and those
    still in the producer's queue (``len(producer)``: awaiting transmission or acknowledgement)."""
    report.delivered = report.produced - report.failed - len(producer)
