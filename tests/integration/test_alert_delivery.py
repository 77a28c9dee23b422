"""Delivery over real HTTP to a local receiver: retries, outages, timeouts, recorded attempts.

The receiver is a real server on 127.0.0.1 (tests/support_receiver.py); only the waiting
between attempts is faked, so no test sleeps through a backoff.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from streams.alerting.delivery import DELIVERY_COLUMNS, DeliveryAttempt, deliver, http_client
from streams.alerting.notification import Notification
from streams.alerting.policy import RetryPolicy
from streams.alerting.signing import verify
from streams.alerting.targets import (
    AlertmanagerTarget,
    PagerDutyTarget,
    SlackTarget,
    WebhookTarget,
    render,
)
from streams.clickhouse import open_store
from streams.migrations import migrate
from tests.support_receiver import Receiver, Reply

pytestmark = pytest.mark.integration

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
N = Notification(alert_id="a1", fingerprint="safety_escalation_recall/region=br", status="firing",
                 rule="safety_escalation_recall", slice="region=br", severity="critical",
                 metric="safety_escalation_recall", value=0.71, threshold=0.9, op="<",
                 window_start=1_700_000_000, window_s=60, starts_at=1_699_999_940.0,
                 forensics_sql="SELECT 1", example_request_ids=("r-1",), support=300)


class FakeWait:
    """Records every attempt and every wait, in order; can run a hook at each wait."""

    def __init__(self, on_sleep=None) -> None:
        self.events: list[tuple[str, object]] = []
        self.on_sleep = on_sleep

    def record(self, attempt: DeliveryAttempt) -> None:
        self.events.append(("record", attempt))

    def sleep(self, seconds: float) -> None:
        self.events.append(("sleep", seconds))
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))

    @property
    def attempts(self) -> list[DeliveryAttempt]:
        return [e for kind, e in self.events if kind == "record"]  # type: ignore[misc]

    @property
    def sleeps(self) -> list[float]:
        return [e for kind, e in self.events if kind == "sleep"]  # type: ignore[misc]


def test_500_then_429_retry_after_then_400_over_http() -> None:
    """Retried, retried after the receiver's delay, not retried; every attempt recorded."""
    with Receiver([Reply(500, body=b"internal"), Reply(429, {"Retry-After": "7"}), Reply(400, body=b"no")]) as rx, \
            http_client() as client:
        wait = FakeWait()
        target = WebhookTarget(name="hook", url=rx.url + "/h", secret=SECRET)
        last = deliver(target, N, client, wait.record, policy=RetryPolicy(jitter=0.2),
                       sleep=wait.sleep, rng=random.Random(3))
    assert len(rx.requests) == 3
    assert [(a.attempt, a.status, a.http_status) for a in wait.attempts] == [
        (1, "retry", 500), (2, "retry", 429), (3, "failed", 400)]
    assert last is wait.attempts[-1]
    assert 0.8 <= wait.sleeps[0] <= 1.2 and wait.sleeps[1] == 7.0
    assert [k for k, _ in wait.events] == ["record", "sleep", "record", "sleep", "record"]
    assert [a.error for a in wait.attempts] == ["HTTP 500: internal", "HTTP 429", "HTTP 400: no"]
    # the receiver saw the same message three times, each verifiable, one webhook-id
    assert {r.headers["webhook-id"] for r in rx.requests} == {"a1.hook"}
    for r in rx.requests:
        verify(SECRET, r.headers, r.body, now=r.at)


def test_receiver_down_then_up_is_delivered_once() -> None:
    rx = Receiver().start()
    port = rx.port
    rx.stop()  # down: connections are refused

    def bring_up(n_sleeps: int) -> None:
        if n_sleeps == 2:
            rx.start(port=port)

    wait = FakeWait(on_sleep=bring_up)
    try:
        with http_client() as client:
            last = deliver(AlertmanagerTarget(name="am", url=f"http://127.0.0.1:{port}"), N, client,
                           wait.record, policy=RetryPolicy(jitter=0.0), sleep=wait.sleep)
    finally:
        rx.stop()
    assert [(a.status, a.http_status) for a in wait.attempts] == [
        ("retry", None), ("retry", None), ("delivered", 200)]
    assert wait.attempts[0].error.startswith("connection error: ConnectError")
    assert wait.sleeps == [1.0, 2.0]
    assert last.status == "delivered"
    assert len(rx.requests) == 1 and rx.requests[0].path == "/api/v2/alerts"
    assert rx.requests[0].json()[0]["labels"]["slice"] == "region=br"


def test_timeout_is_retried() -> None:
    with Receiver([Reply(200, delay_s=3.0)]) as rx, http_client() as client:
        wait = FakeWait()
        last = deliver(SlackTarget(name="s", url=rx.url + "/slack", timeout_s=0.3), N, client,
                       wait.record, policy=RetryPolicy(jitter=0.0), sleep=wait.sleep)
    assert [(a.status, a.http_status) for a in wait.attempts] == [("retry", None), ("delivered", 200)]
    assert wait.attempts[0].error.startswith("timeout after 0.3 s")
    assert last.attempt == 2


def test_gives_up_when_the_receiver_stays_broken() -> None:
    with Receiver(default=Reply(503)) as rx, http_client() as client:
        wait = FakeWait()
        last = deliver(PagerDutyTarget(name="pd", url=rx.url + "/pd", routing_key="k"), N, client,
                       wait.record, policy=RetryPolicy(max_attempts=4, jitter=0.0), sleep=wait.sleep)
    assert len(rx.requests) == 4
    assert [a.status for a in wait.attempts] == ["retry", "retry", "retry", "gave_up"]
    assert wait.sleeps == [1.0, 2.0, 4.0] and last.status == "gave_up"


TARGETS = {
    "slack": lambda url: SlackTarget(name="s", url=url + "/slack"),
    "pagerduty": lambda url: PagerDutyTarget(name="pd", url=url + "/pd", routing_key="k"),
    "alertmanager": lambda url: AlertmanagerTarget(name="am", url=url),
    "webhook": lambda url: WebhookTarget(name="w", url=url + "/hook", secret=SECRET),
}


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_each_target_type_posts_its_rendered_body(kind: str) -> None:
    with Receiver() as rx, http_client() as client:
        target = TARGETS[kind](rx.url)
        last = deliver(target, N, client, lambda a: None, sleep=lambda s: None, now=lambda: 1_700_000_100.0)
    assert last.status == "delivered"
    [got] = rx.requests
    expected = render(target, N, now=1_700_000_100.0)
    assert got.json() == expected.json()
    assert {k: got.headers[k] for k in expected.headers} == expected.headers
    assert got.headers["content-type"] == "application/json"


def test_attempts_fit_the_alert_deliveries_table(tmp_path: Path) -> None:
    """Rows from to_row() insert into the real table and read back unchanged."""
    attempts = [DeliveryAttempt("a1", "hook", 1, "retry", 500, "HTTP 500", 1_700_000_000.125),
                DeliveryAttempt("a1", "hook", 2, "retry", None, "timeout after 3 s (ReadTimeout)", 1_700_000_001.5),
                DeliveryAttempt("a1", "hook", 3, "delivered", 204, "", 1_700_000_004.0)]
    with open_store(f"chdb://{tmp_path / 'ch'}") as store:
        migrate(store)
        store.insert("alert_deliveries", [list(a.to_row().values()) for a in attempts], DELIVERY_COLUMNS)
        rows = store.query(
            "SELECT alert_id, target, attempt, status, http_status, error, toFloat64(attempted_at) "
            "FROM distillwatch.alert_deliveries ORDER BY attempt").result_rows
    assert [tuple(r) for r in rows] == [
        ("a1", "hook", 1, "retry", 500, "HTTP 500", 1_700_000_000.125),
        ("a1", "hook", 2, "retry", None, "timeout after 3 s (ReadTimeout)", 1_700_000_001.5),
        ("a1", "hook", 3, "delivered", 204, "", 1_700_000_004.0)]


def test_connection_refused_needs_no_server() -> None:
    """A closed port is a connection error on every attempt (no receiver process at all)."""
    with http_client() as client:
        wait = FakeWait()
        last = deliver(AlertmanagerTarget(name="am", url="http://127.0.0.1:1"), N, client, wait.record,
                       policy=RetryPolicy(max_attempts=2, jitter=0.0), sleep=wait.sleep)
    assert [a.status for a in wait.attempts] == ["retry", "gave_up"]
    assert last.http_status is None
