"""confluent-kafka clients configured the way every distillwatch producer and consumer needs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distillwatch.settings import Settings


def client_config(conf: Mapping[str, Any], tuning: Mapping[str, Any] | None = None,
                  required: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One client's configuration: ``tuning``, then ``conf``, then ``required``.

    ``conf`` is the connection with the user's ``kafka.extra``, which therefore overrides the
    tuning defaults (batching, timeouts, queue sizes). ``required`` holds what a delivery
    guarantee rests on; settings refuse a ``kafka.extra`` that sets one of those keys
    (``distillwatch.settings.GUARANTEED_KAFKA_KEYS``).
    """
    return {**(tuning or {}), **conf, **(required or {})}


def producer_config(settings: Settings, **required: Any) -> dict[str, Any]:
    """Idempotent, acks=all: a retried send is written once, and only confirmed when durable."""
    return client_config(
        settings.kafka.librdkafka_config(),
        tuning={"linger.ms": 20, "batch.num.messages": 10_000, "queue.buffering.max.messages": 500_000,
                "compression.type": "lz4", "message.timeout.ms": 300_000},
        required={"enable.idempotence": True, "acks": "all", **required},
    )


def consumer_config(settings: Settings, group_id: str, **tuning: Any) -> dict[str, Any]:
    """Manual offset control: offsets are committed only after the work they cover is durable."""
    return client_config(
        settings.kafka.librdkafka_config(),
        tuning=tuning,
        required={"group.id": group_id, "enable.auto.commit": False, "enable.auto.offset.store": False,
                  "auto.offset.reset": "earliest", "partition.assignment.strategy": "cooperative-sticky"},
    )
