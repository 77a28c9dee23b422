"""Against the real local broker: contract messages survive Kafka; topics of DESIGN §1 are created."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import schemas
from distillwatch.settings import load_settings
from schemas import ShadowRequest
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration

DESIGN_TOPICS = ["shadow.requests", "shadow.teacher", "shadow.student", "shadow.teacher_replica",
                 "shadow.catalog", "shadow.labels", "shadow.dlq", "distill.retrain", "distill.models",
                 # the evaluator's own: rows and window partials for the sink, its checkpoints
                 "distill.rows", "distill.partials", "distill.checkpoints"]


def _requests(n: int) -> list[ShadowRequest]:
    t0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
    run = uuid.uuid4().hex[:8]
    return [
        schemas.validate(ShadowRequest, {
            "request_id": f"rt-{run}-{i:04d}",
            "ts": (t0 + timedelta(seconds=i)).isoformat(),
            "prompt": f"ワンピース {i}巻 はいつ届きますか? #{i}",
            "slice": {"region": ("jp", "us", "eu")[i % 3], "device": ("ios", "web")[i % 2]},
            "entities": [f"ent-{i % 7}"],
            "evidence": [{"doc_id": f"doc-{i}", "entity_id": f"ent-{i % 7}", "extra_score": i / 10}],
            "reference": {"intent": "order_tracking", "source": "crm"} if i % 5 == 0 else None,
            "trace_id": f"trace-{i}",
        })
        for i in range(n)
    ]


def test_shadow_requests_round_trip(kafka_bootstrap: str, kafka_admin: Any,
                                    drop_topics_with_prefix: list[str]) -> None:
    """200 ShadowRequests produced idempotently (acks=all) are all delivered and read back equal."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import NewTopic

    topic = f"dw-roundtrip-{uuid.uuid4().hex}"
    drop_topics_with_prefix.append(topic)
    for future in kafka_admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)],
                                            operation_timeout=30).values():
        future.result()

    sent = _requests(200)
    delivered: list[tuple[Any, bytes | None]] = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5})
    for req in sent:
        producer.produce(topic, key=req.request_id.encode(), value=req.model_dump_json().encode(),
                         on_delivery=lambda err, msg: delivered.append((err, msg.key())))
        producer.poll(0)
    assert producer.flush(30) == 0
    assert [err for err, _ in delivered if err is not None] == []
    assert sorted(k.decode() for _, k in delivered if k) == sorted(r.request_id for r in sent)

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"dw-test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    received: list[ShadowRequest] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            parsed = schemas.parse(ShadowRequest, msg.value())
            assert msg.key() == parsed.request_id.encode()
            received.append(parsed)
    finally:
        consumer.close()

    assert len(received) == len(sent)
    by_id = {r.request_id: r for r in received}
    assert set(by_id) == {r.request_id for r in sent}
    for req in sent:
        assert by_id[req.request_id] == req
        assert by_id[req.request_id].model_extra["trace_id"] == req.model_extra["trace_id"]


def _topic_config(admin: Any, topic: str) -> dict[str, str]:
    from confluent_kafka.admin import ConfigResource, ResourceType

    (future,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
    return {name: entry.value for name, entry in future.result(timeout=30).items()}


def test_ensure_topics_creates_then_reports_exists(kafka_bootstrap: str, kafka_admin: Any,
                                                   unique_prefix: str,
                                                   drop_topics_with_prefix: list[str]) -> None:
    """The first call creates every prefixed topic (catalog compacted); the second finds them all."""
    drop_topics_with_prefix.append(unique_prefix)
    settings = load_settings(topic_prefix=unique_prefix, kafka={"bootstrap_servers": kafka_bootstrap})
    expected = {unique_prefix + name for name in DESIGN_TOPICS}

    first = ensure_topics(settings)
    assert first == {name: "created" for name in expected}

    metadata = kafka_admin.list_topics(timeout=10).topics
    assert expected <= set(metadata)
    co_partitioned = ["shadow.requests", "shadow.teacher", "shadow.student", "shadow.labels"]
    counts = {len(metadata[unique_prefix + n].partitions) for n in co_partitioned}
    assert counts == {settings.topics.partitions}

    assert _topic_config(kafka_admin, unique_prefix + "shadow.catalog")["cleanup.policy"] == "compact"
    assert _topic_config(kafka_admin, unique_prefix + "distill.checkpoints")["cleanup.policy"] == "compact"
    assert _topic_config(kafka_admin, unique_prefix + "shadow.requests")["cleanup.policy"] == "delete"

    second = ensure_topics(settings)
    assert second == {name: "exists" for name in expected}


def test_ensure_topics_unreachable_broker_fails_fast() -> None:
    """With no broker at the address, ensure_topics raises KafkaSetupError naming the address."""
    from streams.errors import KafkaSetupError

    settings = load_settings(kafka={"bootstrap_servers": "127.0.0.1:19998"})
    start = time.monotonic()
    with pytest.raises(KafkaSetupError, match="127.0.0.1:19998"):
        ensure_topics(settings, timeout_s=5)
    assert time.monotonic() - start < 30
