"""Keeps the evaluator's catalog current from the compacted ``shadow.catalog`` topic.

Every evaluator instance needs the whole catalog, so this reader takes every partition
(no consumer group) from the beginning. A claim must be judged by the catalog of its time:
the evaluator holds back a request until the reader has read every catalog record created
before it (``safe_time_ms``), as the offline ``evaluate`` does by reading the log in order.
"""

from __future__ import annotations

import logging
import threading
import time

from evaluators.catalog import Catalog
from schemas.errors import ContractError
from schemas.fastpath import parse_message

log = logging.getLogger(__name__)

APPEND_SLACK_MS = 500
"""A record created before we saw the end of the log may still be on its way (linger, network)."""


class CatalogReader(threading.Thread):
    def __init__(self, conf: dict[str, object], topic: str) -> None:
        super().__init__(name="catalog-reader", daemon=True)
        self.catalog = Catalog()
        self.topic = topic
        self._conf = conf | {
            "group.id": "distillwatch-catalog-reader",  # required by librdkafka; never committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
        self._halt = threading.Event()
        self._caught_up_ms = 0.0
        self.records = 0
        self.invalid = 0
        self.ready = threading.Event()
        """Set once the reader has reached the end of every partition at least once."""

    @property
    def safe_time_ms(self) -> float:
        """Records created before this (epoch ms) have been applied."""
        return self._caught_up_ms - APPEND_SLACK_MS

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        from confluent_kafka import Consumer, KafkaError, TopicPartition

        consumer = Consumer(self._conf)
        try:
            meta = consumer.list_topics(self.topic, timeout=30)
            parts = list(meta.topics[self.topic].partitions) if self.topic in meta.topics else []
            consumer.assign([TopicPartition(self.topic, p, 0) for p in parts])
            at_end = {p: False for p in parts}
            if not parts:
                self.ready.set()
            while not self._halt.is_set():
                polled_at = time.time() * 1000
                for msg in consumer.consume(1000, 0.05):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            at_end[msg.partition()] = True
                        continue
                    at_end[msg.partition()] = False
                    self._apply(msg.value())
                if all(at_end.values()):
                    self._caught_up_ms = polled_at
                    self.ready.set()
        finally:
            consumer.close()

    def _apply(self, value: bytes | None) -> None:
        if value is None:  # tombstone
            return
        try:
            record = parse_message("catalog", value)
        except ContractError as exc:
            self.invalid += 1
            log.warning("invalid catalog record skipped: %s", exc)
            return
        self.catalog.apply(record)
        self.records += 1
