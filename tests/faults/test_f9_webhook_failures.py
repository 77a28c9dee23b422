"""F9: the receiver misbehaves; pages are still delivered as DESIGN §6 says, and flapping
does not flood on-call or start a retraining per flap.

The outbox runs against a real embedded store and a real local HTTP receiver; its clock is
stepped by the test (``Outbox.step(now=…)``), so "down for 10 minutes" takes seconds.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from evaluators.alert_tracker import RuleTracker
from evaluators.breaches import Breach
from evaluators.rules import RuleSet
from streams.alerting.alerter import Alerter
from streams.alerting.delivery import http_client
from streams.alerting.notification import Notification, alert_id_for
from streams.alerting.outbox import Outbox
from streams.alerting.policy import RetryPolicy
from streams.alerting.signing import new_secret
from streams.alerting.targets import WebhookTarget
from streams.clickhouse import Store
from streams.evaluator.outputs import json_each_row
from tests.support_receiver import Receiver, Reply

pytestmark = pytest.mark.integration


def notification(status: str, window_start: int, fingerprint: str = "confident_errors/region=br") -> Notification:
    rule, slice_key = fingerprint.split("/")
    return Notification(
        alert_id=alert_id_for(fingerprint, status, window_start, 60), fingerprint=fingerprint,
        status=status, rule=rule, slice=slice_key, severity="critical", metric="confident_error_rate",
        value=0.2, threshold=0.05, op=">", window_start=window_start, window_s=60,
        starts_at=float(window_start), ends_at=float(window_start) if status == "resolved" else None)


def write_alerts(store: Store, *events: Notification) -> None:
    rows = [Alerter._alert_row(n) for n in events]
    store.client.raw_insert(f"{store.database}.alerts", None, json_each_row(rows), fmt="JSONEachRow",
                            settings={"date_time_input_format": "best_effort"})


def attempts(store: Store) -> list[tuple[str, int, str, int | None]]:
    rows = store.query(f"SELECT alert_id, attempt, status, http_status FROM {store.database}.alert_deliveries "
                       "ORDER BY alert_id, attempt").result_rows
    return [(a, int(n), s, h) for a, n, s, h in rows]


def outbox(store: Store, url: str, timeout_s: float = 5.0) -> Outbox:
    target = WebhookTarget(name="hook", url=url + "/hook", secret=new_secret(), timeout_s=timeout_s)
    policy = RetryPolicy(max_attempts=16, base_delay_s=1.0, max_delay_s=300.0, jitter=0.0)
    return Outbox(store, threading.Lock(), [target], policy)


def run_for(box: Outbox, start: float, seconds: float, step_s: float = 1.0) -> float:
    """Step the outbox's clock through ``seconds``; return the end time."""
    now = start
    with http_client() as client:
        while now < start + seconds:
            box.step(client, now=now)
            now += step_s
    return now


def test_receiver_down_ten_minutes_then_up_delivers_each_event_once(migrated_store: Store) -> None:
    receiver = Receiver().start()
    port = receiver.port
    receiver.stop()  # down: connection refused
    firing, resolved = notification("firing", 1_000_020), notification("resolved", 1_000_200)
    write_alerts(migrated_store, firing, resolved)
    box = outbox(migrated_store, f"http://127.0.0.1:{port}")
    now = run_for(box, 0.0, 600.0, step_s=5.0)  # ten minutes down
    down = attempts(migrated_store)
    # Exponential backoff (1, 2, 4, … s, capped at 300 s): few attempts, all retries, none
    # given up, and the resolution held back behind its firing event.
    assert all(s == "retry" for _, _, s, _ in down)
    assert {a for a, _, _, _ in down} == {firing.alert_id}
    assert 5 <= len(down) <= 12
    with Receiver() as back:
        back.stop()
        back.start(port=port)
        run_for(box, now, 400.0, step_s=5.0)
        got = Counter((r.json()["alerts"][0]["status"]) for r in back.requests)
    assert got == Counter({"firing": 1, "resolved": 1})
    final = [(a, s) for a, _, s, _ in attempts(migrated_store) if s != "retry"]
    assert sorted(final) == sorted([(firing.alert_id, "delivered"), (resolved.alert_id, "delivered")])


def test_500_then_429_with_retry_after_then_400(migrated_store: Store) -> None:
    event = notification("firing", 2_000_040)
    write_alerts(migrated_store, event)
    with Receiver([500, Reply(429, {"Retry-After": "30"}), 400]) as receiver:
        box = outbox(migrated_store, receiver.url)
        with http_client() as client:
            box.step(client, now=0.0)   # 500: retry after the 1 s backoff
            box.step(client, now=0.5)   # too early: nothing sent
            box.step(client, now=1.0)   # 429 asking for 30 s
            box.step(client, now=20.0)  # too early for Retry-After
            box.step(client, now=31.0)  # 400: not retried
            box.step(client, now=1000.0)
        sent = len(receiver.requests)
    assert sent == 3
    assert [(n, s, h) for _, n, s, h in attempts(migrated_store)] == [
        (1, "retry", 500), (2, "retry", 429), (3, "failed", 400)]


def test_slow_receiver_times_out_and_is_retried_until_it_answers(migrated_store: Store) -> None:
    event = notification("firing", 3_000_000)
    write_alerts(migrated_store, event)
    slow = threading.Event()

    class SlowThenFast(Receiver):
        def _record(self, received):  # type: ignore[no-untyped-def]
            if not slow.is_set():
                slow.set()
                threading.Event().wait(3.0)  # slower than the target's timeout
            return super()._record(received)

    with SlowThenFast() as receiver:
        box = outbox(migrated_store, receiver.url, timeout_s=1.0)
        with http_client() as client:
            box.step(client, now=0.0)
            box.step(client, now=2.0)
    statuses = [s for _, _, s, _ in attempts(migrated_store)]
    assert statuses == ["retry", "delivered"]
    assert "timeout" in migrated_store.query(f"SELECT error FROM {migrated_store.database}.alert_deliveries "
                                    "WHERE attempt = 1").result_rows[0][0]


def test_flapping_ten_times_in_ten_minutes_pages_once_each_way() -> None:
    """A slice breaching every other window for ten minutes: with the rule's cooldown (15 min)
    it fires once and resolves once; the flaps in between page nobody."""
    rules = RuleSet.from_data({"rules": [{"name": "confident_errors", "metric": "confident_error_rate",
                                          "condition": "> 0.05", "for": 1, "cooldown_s": 900,
                                          "actions": ["page", "retrain"]}]})
    tracker = RuleTracker(rules, 60)
    transitions = []
    for i in range(10):  # ten minutes: breaching and clear windows alternating (5 flaps up, 5 down)
        start = 60 * i
        breaches = [Breach("confident_errors", "region=br", start, 60, "confident_error_rate", 0.2, ">", 0.05, 500)
                    ] if i % 2 == 0 else []
        transitions += tracker.step(start, breaches)
    kinds = Counter(t.kind for t in transitions)
    assert kinds == Counter({"firing": 1, "resolved": 1})
    firing = [t for t in transitions if t.kind == "firing"]
    assert len({(t.rule, t.slice, t.window_start) for t in firing}) == 1  # one retrain job id
