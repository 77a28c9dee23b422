"""confluent-kafka clients configured the way every distillwatch producer and consumer needs."""

from __future__ import annotations

from typing import Any

from distillwatch.settings import Settings


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Idempotent, acks=all: a retried send is written once, and only confirmed when durable."""
    conf = settings.kafka.librdkafka_config() | {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 500_000,
        "compression.type": "lz4",
        "message.timeout.ms": 300_000,
    }
    conf.update(overrides)
    return conf


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Manual offset control: offsets are committed only after the work they cover is durable."""
    conf = settings.kafka.librdkafka_config() | {
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
    }
    conf.update(overrides)
    return conf
