"""Evaluator checkpoints live in a compacted Kafka topic, key = "<group>/<partition>".

Each record holds a partition's state and the input offsets it covers. It is written in the
same Kafka transaction as the outputs and the consumer offsets, so state, outputs and
position always agree: a restarted evaluator neither loses nor repeats anything.
"""

from __future__ import annotations

import time
from typing import Any


def read_latest(conf: dict[str, Any], topic: str, group_id: str, timeout_s: float = 30.0) -> dict[int, bytes]:
    """{partition: snapshot bytes} of the last committed checkpoint of each partition."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer(conf | {
        "group.id": f"{group_id}-checkpoint-reader", "enable.auto.commit": False,
        "enable.partition.eof": True, "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
    })
    latest: dict[int, bytes] = {}
    prefix = f"{group_id}/".encode()
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
        if topic not in meta.topics:
            return latest
        parts = list(meta.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        done: set[int] = set()
        for p in parts:  # an empty partition sends no EOF before its first fetch
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high <= low:
                done.add(p)
        deadline = time.monotonic() + timeout_s
        while len(done) < len(parts) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        done.add(msg.partition())
                    continue
                key = msg.key() or b""
                if key.startswith(prefix) and msg.value() is not None:
                    latest[int(key[len(prefix):])] = msg.value()
        if len(done) < len(parts):
            raise TimeoutError(f"could not read checkpoints from {topic} within {timeout_s:.0f}s")
    finally:
        consumer.close()
    return latest
