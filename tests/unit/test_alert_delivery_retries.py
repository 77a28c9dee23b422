"""Retry policy and delivery outcomes with a fake clock and an in-process HTTP transport.

Nothing here sleeps or opens a socket: ``httpx.MockTransport`` answers from a script and the
clock only moves when ``deliver`` sleeps. Expected delays are the documented formula worked
by hand (base · 2^(n-1), ±jitter, capped; Retry-After raises it).
"""

from __future__ import annotations

import doctest
import importlib
import random
from datetime import datetime, timezone

import httpx
import pytest
from pydantic import ValidationError

from streams.alerting.delivery import DELIVERY_COLUMNS, DeliveryAttempt, attempt_once, deliver
from streams.alerting.notification import Notification
from streams.alerting.policy import RetryPolicy, parse_retry_after
from streams.alerting.signing import verify
from streams.alerting.targets import AlertmanagerTarget, WebhookTarget

T0 = 1_700_000_000.0
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
N = Notification(alert_id="a1", fingerprint="r/s", status="firing", rule="r", slice="s",
                 severity="critical", metric="m", value=0.5, threshold=0.9, op="<",
                 window_start=1_699_999_940, window_s=60, starts_at=1_699_999_940.0)
AM = AlertmanagerTarget(name="am", url="http://am.test:9093", timeout_s=3)


class Clock:
    """Epoch time that advances only when slept; logs sleeps and records in order."""

    def __init__(self) -> None:
        self.t = T0
        self.events: list[tuple[str, object]] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.events.append(("sleep", seconds))
        self.t += seconds

    def record(self, attempt: DeliveryAttempt) -> None:
        self.events.append(("record", attempt))

    @property
    def attempts(self) -> list[DeliveryAttempt]:
        return [e for kind, e in self.events if kind == "record"]  # type: ignore[misc]

    @property
    def sleeps(self) -> list[float]:
        return [e for kind, e in self.events if kind == "sleep"]  # type: ignore[misc]


def scripted(*answers: httpx.Response | Exception) -> tuple[httpx.Client, list[httpx.Request]]:
    """A client whose n-th request gets the n-th answer (an exception is raised instead)."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.Client(transport=httpx.MockTransport(handle)), seen


def run(answers: list[httpx.Response | Exception], policy: RetryPolicy,
        target=AM, seed: int = 7) -> tuple[DeliveryAttempt, Clock, list[httpx.Request]]:
    clock = Clock()
    client, seen = scripted(*answers)
    last = deliver(target, N, client, clock.record, policy=policy, sleep=clock.sleep,
                   now=clock.now, rng=random.Random(seed))
    return last, clock, seen


# --- policy ----------------------------------------------------------------------------------

def test_backoff_doubles_from_base_and_is_capped() -> None:
    p = RetryPolicy(base_delay_s=1.0, max_delay_s=300.0, jitter=0.0)
    assert [p.backoff_s(n) for n in range(1, 12)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert p.backoff_s(10_000) == 300.0
    q = RetryPolicy(base_delay_s=0.5, max_delay_s=3.0, jitter=0.0)
    assert [q.backoff_s(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]


def test_jitter_stays_within_plus_minus_its_share_and_spreads() -> None:
    p = RetryPolicy(base_delay_s=1.0, max_delay_s=300.0, jitter=0.2)
    rng = random.Random(1)
    for n, nominal in ((1, 1.0), (4, 8.0), (8, 128.0)):
        draws = [p.backoff_s(n, rng) for _ in range(2000)]
        assert min(draws) >= 0.8 * nominal and max(draws) <= 1.2 * nominal
        assert min(draws) < 0.82 * nominal and max(draws) > 1.18 * nominal  # both ends reached
    capped = [p.backoff_s(9, rng) for _ in range(500)]  # nominal 256: +20 % would pass the cap
    assert max(capped) == pytest.approx(300.0) and min(capped) >= 0.8 * 256


def test_retry_after_raises_the_delay_but_not_past_the_cap() -> None:
    p = RetryPolicy(base_delay_s=1.0, max_delay_s=300.0, jitter=0.0)
    assert p.delay_s(1, retry_after_s=7.0) == 7.0
    assert p.delay_s(6, retry_after_s=7.0) == 32.0  # the backoff is longer already
    assert p.delay_s(1, retry_after_s=3600.0) == 300.0
    assert p.delay_s(2, retry_after_s=None) == 2.0


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValidationError, match="below base_delay_s"):
        RetryPolicy(base_delay_s=10, max_delay_s=1)
    with pytest.raises(ValidationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValidationError):
        RetryPolicy(jitter=1.0)
    with pytest.raises(ValueError, match="1-based"):
        RetryPolicy().backoff_s(0)


@pytest.mark.parametrize(("header", "now", "expected"), [
    ("120", 0.0, 120.0),
    ("0", 0.0, 0.0),
    ("-5", 0.0, 0.0),
    ("2.5", 0.0, 2.5),
    ("Tue, 14 Nov 2023 22:14:20 GMT", T0, 60.0),  # T0 is 22:13:20Z
    ("Tue, 14 Nov 2023 22:14:20 -0000", T0, 60.0),
    ("Tue, 14 Nov 2023 22:00:00 GMT", T0, 0.0),  # already past
    ("soon", 0.0, None),
    ("", 0.0, None),
    (None, 0.0, None),
])
def test_parse_retry_after(header: str | None, now: float, expected: float | None) -> None:
    assert parse_retry_after(header, now) == expected


# --- deliver ---------------------------------------------------------------------------------

def test_500_then_429_with_retry_after_then_400() -> None:
    last, clock, seen = run([httpx.Response(500, text="boom"),
                             httpx.Response(429, headers={"Retry-After": "7"}),
                             httpx.Response(400, text="bad alert")],
                            RetryPolicy(base_delay_s=1.0, jitter=0.2))
    assert [(a.attempt, a.status, a.http_status) for a in clock.attempts] == [
        (1, "retry", 500), (2, "retry", 429), (3, "failed", 400)]
    assert last == clock.attempts[-1]
    assert len(seen) == 3  # the 400 was not retried
    first_wait, second_wait = clock.sleeps
    assert 0.8 <= first_wait <= 1.2  # backoff after attempt 1: 1 s ± 20 %
    assert second_wait == 7.0  # Retry-After beats the 2 s ± 20 % backoff
    # every attempt is recorded before the sleep that follows it
    assert [kind for kind, _ in clock.events] == ["record", "sleep", "record", "sleep", "record"]
    assert [a.attempted_at for a in clock.attempts] == [T0, T0 + first_wait, T0 + first_wait + 7.0]
    assert clock.attempts[0].error == "HTTP 500: boom"
    assert clock.attempts[2].error == "HTTP 400: bad alert"


def test_retry_after_as_http_date_uses_the_injected_clock() -> None:
    _, clock, _ = run([httpx.Response(503, headers={"Retry-After": "Tue, 14 Nov 2023 22:13:50 GMT"}),
                       httpx.Response(200)], RetryPolicy(jitter=0.0))
    assert clock.sleeps == [30.0]
    assert [a.status for a in clock.attempts] == ["retry", "delivered"]


def test_retry_after_longer_than_the_cap_waits_the_cap() -> None:
    _, clock, _ = run([httpx.Response(429, headers={"Retry-After": "86400"}), httpx.Response(202)],
                      RetryPolicy(max_delay_s=300.0))
    assert clock.sleeps == [300.0]


def test_timeouts_and_connection_errors_are_retried_until_delivered() -> None:
    last, clock, _ = run([httpx.ReadTimeout("slow"), httpx.ConnectError("refused"),
                          httpx.RemoteProtocolError("eof"), httpx.Response(200)],
                         RetryPolicy(base_delay_s=2.0, jitter=0.0))
    assert [(a.status, a.http_status) for a in clock.attempts] == [
        ("retry", None), ("retry", None), ("retry", None), ("delivered", 200)]
    assert clock.attempts[0].error == "timeout after 3 s (ReadTimeout)"
    assert clock.attempts[1].error == "connection error: ConnectError: refused"
    assert clock.sleeps == [2.0, 4.0, 8.0]
    assert last.status == "delivered" and last.error == "" and last.attempt == 4


def test_gives_up_after_max_attempts() -> None:
    last, clock, seen = run([httpx.Response(503)] * 3, RetryPolicy(max_attempts=3, jitter=0.0))
    assert [a.status for a in clock.attempts] == ["retry", "retry", "gave_up"]
    assert len(seen) == 3 and clock.sleeps == [1.0, 2.0]
    assert last.error == "HTTP 503 (gave up after 3 attempts)"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 410, 413, 422])
def test_other_4xx_fail_at_once(status: int) -> None:
    last, clock, seen = run([httpx.Response(status)], RetryPolicy())
    assert (last.status, last.http_status, last.attempt) == ("failed", status, 1)
    assert len(seen) == 1 and clock.sleeps == []


def test_redirect_is_not_followed_and_fails() -> None:
    last, _, seen = run([httpx.Response(301, headers={"Location": "http://elsewhere/"})], RetryPolicy())
    assert (last.status, last.http_status) == ("failed", 301)
    assert len(seen) == 1


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered_without_waiting(status: int) -> None:
    last, clock, seen = run([httpx.Response(status)], RetryPolicy())
    assert (last.status, last.http_status, last.attempt) == ("delivered", status, 1)
    assert clock.sleeps == []
    assert seen[0].method == "POST" and str(seen[0].url) == "http://am.test:9093/api/v2/alerts"


def test_each_webhook_retry_is_signed_at_its_own_time() -> None:
    target = WebhookTarget(name="hook", url="http://hook.test/h", secret=SECRET)
    _, clock, seen = run([httpx.Response(502), httpx.Response(200)], RetryPolicy(jitter=0.0), target=target)
    stamps = [int(r.headers["webhook-timestamp"]) for r in seen]
    assert stamps == [int(T0), int(T0 + 1.0)]
    assert {r.headers["webhook-id"] for r in seen} == {"a1.hook"}
    for request, at in zip(seen, (T0, T0 + 1.0)):
        verify(SECRET, dict(request.headers), request.content, now=at)


def test_attempt_once_reports_the_next_delay_for_a_scheduler() -> None:
    client, _ = scripted(httpx.Response(500), httpx.Response(200))
    policy = RetryPolicy(jitter=0.0, base_delay_s=5.0)
    first, delay = attempt_once(AM, N, client, 1, policy=policy, now=lambda: T0)
    assert (first.status, delay) == ("retry", 5.0)
    second, delay = attempt_once(AM, N, client, 2, policy=policy, now=lambda: T0 + 5)
    assert (second.status, second.attempt, delay) == ("delivered", 2, None)
    with pytest.raises(ValueError):
        attempt_once(AM, N, client, 0)


def test_attempt_row_matches_alert_deliveries_columns() -> None:
    a = DeliveryAttempt("a1", "am", 2, "retry", 503, "HTTP 503", T0 + 0.25)
    row = a.to_row()
    assert tuple(row) == DELIVERY_COLUMNS
    assert row["attempted_at"] == datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=timezone.utc)
    assert not a.final and DeliveryAttempt("a1", "am", 3, "failed", 400, "", T0).final


def test_long_error_bodies_are_cut() -> None:
    last, _, _ = run([httpx.Response(400, text="x" * 5000)], RetryPolicy())
    assert len(last.error) <= 300 and last.error.startswith("HTTP 400: xxx")


@pytest.mark.parametrize("module", ["streams.alerting.policy", "streams.alerting.signing"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
