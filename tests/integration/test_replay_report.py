"""Against the real local broker: ``replay``'s report says what the broker acknowledged.

The producer asks for delivery reports of failures only, and counts acknowledged records as
produced − failed − still queued; these tests check that count against the records a plain
consumer reads back, with and without records the broker refuses.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from distillwatch.settings import Settings
from simulator.traffic import TrafficConfig, World
from streams import topics
from streams.replay import replay

pytestmark = pytest.mark.integration

PAIRS = 60
SHADOW = (topics.REQUESTS, topics.TEACHER, topics.STUDENT, topics.TEACHER_REPLICA, topics.CATALOG,
          topics.LABELS)


def _lines() -> list[bytes]:
    lines = [orjson.dumps(line) for line in World(TrafficConfig(pairs=PAIRS), seed=5).lines()]
    return [*lines, b'{"request": {"request_id": ""}}']  # invalid: published raw to shadow.requests


def _create(admin: Any, settings: Settings, configs: dict[str, dict[str, str]]) -> None:
    from confluent_kafka.admin import NewTopic

    new = [NewTopic(settings.topic(t), num_partitions=2, replication_factor=1, config=configs.get(t, {}))
           for t in SHADOW]
    for future in admin.create_topics(new, operation_timeout=30).values():
        future.result()


def _read_all(bootstrap: str, settings: Settings) -> dict[str, int]:
    """Records per topic, read back from the start until the topics are quiet."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([settings.topic(t) for t in SHADOW])
    counts: dict[str, int] = {}
    idle = 0
    try:
        while idle < 5:
            batch = consumer.consume(1000, 1.0)
            idle = 0 if batch else idle + 1
            for msg in batch:
                if msg.error() is None:
                    counts[msg.topic()] = counts.get(msg.topic(), 0) + 1
    finally:
        consumer.close()
    return counts


def test_every_record_acknowledged(kafka_bootstrap: str, kafka_admin: Any,
                                   drop_topics_with_prefix: list[str], unique_prefix: str) -> None:
    settings = Settings(topic_prefix=unique_prefix)
    settings.kafka.bootstrap_servers = kafka_bootstrap
    drop_topics_with_prefix.append(unique_prefix)
    _create(kafka_admin, settings, {})
    lines = _lines()
    report = replay(lines, settings)
    read = _read_all(kafka_bootstrap, settings)
    assert report.ok, report.errors
    assert report.pairs == PAIRS and report.invalid_lines == 1
    assert report.failed == 0
    assert report.delivered == report.produced == sum(read.values())
    assert read[settings.topic(topics.REQUESTS)] == PAIRS + 1


def test_refused_records_are_reported(kafka_bootstrap: str, kafka_admin: Any,
                                      drop_topics_with_prefix: list[str], unique_prefix: str) -> None:
    """The broker refuses every teacher record (its topic takes no message over 64 bytes): each
    is reported failed, the rest acknowledged, and the report is not ok."""
    settings = Settings(topic_prefix=unique_prefix)
    settings.kafka.bootstrap_servers = kafka_bootstrap
    drop_topics_with_prefix.append(unique_prefix)
    _create(kafka_admin, settings, {topics.TEACHER: {"max.message.bytes": "64"}})
    lines = _lines()
    report = replay(lines, settings)
    read = _read_all(kafka_bootstrap, settings)
    assert not report.ok
    assert settings.topic(topics.TEACHER) not in read
    teacher_records = sum(1 for line in lines if b'"teacher":{' in line)
    assert teacher_records > 0
    assert report.failed == teacher_records
    assert report.delivered == report.produced - teacher_records == sum(read.values())
    assert report.errors and all("too large" in e.lower() or "size" in e.lower() for e in report.errors)
