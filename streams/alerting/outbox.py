"""The durable outbox: every alert event reaches every configured target, or is recorded as not.

The outbox is the ``alerts`` table itself: an event is pending for a target until
``alert_deliveries`` holds a terminal attempt for the pair (``delivered``, ``failed`` for a
4xx other than 429, ``gave_up`` after the last allowed attempt). Every attempt is a row.
Retries are scheduled, not slept, so one slow receiver does not hold back the others; a
restart reads the attempt numbers back and carries on. A notification may therefore reach a
receiver twice only if the monitor dies between the receiver's answer and the row that
records it; every target carries the alert id (Alertmanager labels, webhook-id, PagerDuty
dedup_key) so receivers can drop the repeat.
A resolution is held back while the firing event of its fingerprint is still pending for
that target, so receivers never see "resolved" before "firing".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import httpx

from streams.alerting.delivery import DeliveryAttempt, attempt_once, http_client
from streams.alerting.notification import Notification
from streams.alerting.policy import RetryPolicy
from streams.alerting.targets import TargetConfig
from streams.clickhouse import Store
from streams.evaluator.outputs import json_each_row

log = logging.getLogger(__name__)

TERMINAL = ("delivered", "failed", "gave_up")


class Outbox(threading.Thread):
    def __init__(self, store: Store, lock: threading.Lock, targets: Sequence[TargetConfig],
                 policy: RetryPolicy, poll_s: float = 1.0, deliver_drift: bool = False) -> None:
        super().__init__(name="alert-outbox", daemon=True)
        self.store = store
        self.lock = lock
        self.targets = list(targets)
        self.policy = policy
        self.poll_s = poll_s
        self.deliver_drift = deliver_drift
        self.error: BaseException | None = None
        self.delivered = 0
        self.pending = 0
        self._next: dict[tuple[str, str], tuple[int, float]] = {}
        """(alert_id, target) → (next attempt number, not before epoch s)."""
        self._halt = threading.Event()
        self._wake = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    def wake(self) -> None:
        """New alert events were written: look now rather than at the next poll."""
        self._wake.set()

    def run(self) -> None:
        try:
            with http_client() as client:
                while not self._halt.is_set():
                    try:
                        self.step(client)
                    except Exception as exc:  # e.g. ClickHouse away: nothing is lost, try again
                        log.warning("alert outbox waiting for the store: %s", exc)
                    self._wake.wait(self.poll_s)
                    self._wake.clear()
        except BaseException as exc:
            self.error = exc
            log.exception("alert outbox stopped")

    def step(self, client: httpx.Client, now: float | None = None) -> int:
        """One pass over pending events; returns how many attempts were made."""
        if not self.targets:
            return 0
        attempts = 0
        for target in self.targets:
            held: set[str] = set()
            for n in self._pending(target.name):
                if n.status == "resolved" and n.fingerprint in held:
                    continue
                if n.status == "firing":
                    held.add(n.fingerprint)
                key = (n.alert_id, target.name)
                number, not_before = self._next.get(key) or (self._attempts_so_far(*key) + 1, 0.0)
                t = time.time() if now is None else now
                if t < not_before:
                    continue
                attempt, delay = attempt_once(target, n, client, number, policy=self.policy)
                self._record(attempt)
                attempts += 1
                if delay is not None:
                    self._next[key] = (number + 1, t + delay)
                    log.info("alert %s to %s: attempt %d failed (%s); next in %.1fs",
                             n.alert_id, target.name, number, attempt.error or attempt.http_status, delay)
                else:
                    self._next.pop(key, None)
                    if attempt.status == "delivered":
                        self.delivered += 1
                        held.discard(n.fingerprint)
                    else:
                        log.error("alert %s to %s: %s after %d attempts (%s)", n.alert_id, target.name,
                                  attempt.status, number, attempt.error or attempt.http_status)
        return attempts

    def _pending(self, target: str) -> list[Notification]:
        db = self.store.database
        with self.lock:
            rows = self.store.query(
                f"SELECT evidence FROM {db}.alerts FINAL WHERE alert_id NOT IN ("
                f"SELECT alert_id FROM {db}.alert_deliveries WHERE target = {{t:String}} "
                f"AND status IN {TERMINAL}) AND (rule NOT LIKE 'drift:%' OR {{drift:UInt8}}) "
                "ORDER BY window_start, status = 'resolved', alert_id",
                parameters={"t": target, "drift": int(self.deliver_drift)}).result_rows
        self.pending = len(rows)
        return [Notification.from_json(r[0]) for r in rows]

    def _attempts_so_far(self, alert_id: str, target: str) -> int:
        with self.lock:
            rows = self.store.query(
                f"SELECT max(attempt) FROM {self.store.database}.alert_deliveries "
                "WHERE alert_id = {a:String} AND target = {t:String}",
                parameters={"a": alert_id, "t": target}).result_rows
        return int(rows[0][0] or 0) if rows else 0

    def _record(self, attempt: DeliveryAttempt) -> None:
        row = attempt.to_row()
        with self.lock:
            self.store.client.raw_insert(
                f"{self.store.database}.alert_deliveries", None, json_each_row([row]), fmt="JSONEachRow",
                settings={"insert_deduplication_token": f"{row['alert_id']}:{row['target']}:{row['attempt']}",
                          "date_time_input_format": "best_effort"})
