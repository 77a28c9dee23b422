"""Alerting inside the monitor: the alerter, the delivery outbox and the retrain launcher, wired.

The alerter runs in the sink's thread, after each written batch and before its offsets
commit, so it sees ``window_metrics`` exactly as merged and a crash re-judges what was not
yet committed. Delivery and job launching run in their own threads so that a slow receiver
or a training run never holds back ingestion.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distillwatch.settings import Settings
from evaluators.rules import RuleSet
from streams import topics
from streams.alerting.alerter import Alerter
from streams.alerting.evidence import EvidenceFinder
from streams.alerting.outbox import Outbox
from streams.clickhouse import Store
from streams.retrain.launcher import Launcher
from streams.retrain.trigger import RetrainTrigger

log = logging.getLogger(__name__)


class PartitionsWithData:
    """The partitions of an input topic that hold records (refreshed at most every 10 s)."""

    def __init__(self, settings: Settings, topic: str, refresh_s: float = 10.0) -> None:
        from confluent_kafka import Consumer

        self.topic = settings.topic(topic)
        self.consumer = Consumer(settings.kafka.librdkafka_config() | {
            "group.id": f"{settings.evaluator.group_id}-alerter-probe", "enable.auto.commit": False})
        self.refresh_s = refresh_s
        self._cached: set[str] = set()
        self._at = -refresh_s

    def __call__(self) -> set[str]:
        from confluent_kafka import TopicPartition

        now = time.monotonic()
        if now - self._at >= self.refresh_s:
            meta = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
            found = set()
            for p in meta.partitions:
                low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
                if high > low:
                    found.add(str(p))
            self._cached, self._at = found, now
        return self._cached


def load_rules(settings: Settings) -> RuleSet:
    """The configured rules (built-in when no file), with the configured planned fallback rate."""
    references = {"planned_fallback_rate": settings.evaluation.planned_fallback_rate}
    return RuleSet.load(settings.alerting.rules_file, references)


class AlertingService:
    def __init__(self, settings: Settings, store: Store, lock: threading.Lock, rules: RuleSet,
                 settled: Callable[[], bool] = lambda: True) -> None:
        from confluent_kafka import Producer

        cfg = settings.alerting
        self.settings = settings
        self.producer = Producer(settings.kafka.librdkafka_config() | {
            "enable.idempotence": True, "acks": "all"})
        evidence = EvidenceFinder(store, settings.evaluation.high_risk, settings.topic(topics.REQUESTS))
        self.alerter = Alerter(store, lock, rules, settings.evaluation.windows_s, evidence, cfg.model,
                               required_parts=PartitionsWithData(settings, topics.REQUESTS),
                               settled=settled, settle_s=cfg.settle_s,
                               drift=cfg.drift.enabled, drift_hold_windows=cfg.drift.hold_windows)
        self.alerter.load()
        retrain = cfg.retrain
        jobs_dir = retrain.jobs_dir or Path(settings.data_dir) / "retrain"
        self.trigger = RetrainTrigger(
            store, lock, self.producer, settings.topic(topics.RETRAIN),
            {r.name for r in rules.rules if "retrain" in r.actions}, jobs_dir.resolve(),
            retrain.cooldown_s, retrain.snapshot_s, retrain.launcher,
            self.alerter.extra.setdefault("retrain_cooldowns", {}))
        self.alerter.on_firing = self.trigger
        self.outbox = Outbox(store, lock, cfg.targets, cfg.retry, cfg.poll_s, cfg.drift.deliver)
        self.launcher = Launcher(store, lock, retrain.launcher, retrain.command_template, self.producer,
                                 settings.topic(topics.MODELS), tuple(retrain.train_args))
        self.errors = 0
        self._reload = False

    def start(self) -> None:
        self.outbox.start()
        self.launcher.start()

    def after_write(self) -> None:
        """The sink's hook: judge newly completed windows. Never stops ingestion."""
        try:
            if not self._reload and self.alerter.step():
                self.outbox.wake()
        except Exception:
            self.errors += 1
            log.exception("alerter step failed; its state is reloaded and the windows judged again later")
            self._reload = True
        if self._reload:
            try:
                self.alerter.load()
                self._reload = False
            except Exception as exc:  # the store is down: try again at the next batch
                log.warning("alerter state not reloaded yet: %s", exc)

    def stop(self, timeout_s: float = 10.0) -> None:
        self.outbox.stop()
        self.launcher.stop()
        self.outbox.join(timeout_s)
        self.launcher.join(timeout_s)
        self.launcher.terminate_running()
        self.producer.flush(timeout_s)

    def failed(self) -> BaseException | None:
        return self.outbox.error or self.launcher.error

    def snapshot(self) -> dict[str, Any]:
        return {
            "alerts_firing": len(self.alerter.firing), "windows_judged": self.alerter.judged_windows,
            "alerter_errors": self.errors, "outbox_pending": self.outbox.pending,
            "alerts_delivered": self.outbox.delivered, "retrain_jobs_running": len(self.launcher.running),
        }
