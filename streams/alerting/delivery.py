"""Sending one notification to one target, with retries, every attempt recorded.

:func:`attempt_once` makes one HTTP attempt and says what it was and when to try again, so
the outbox can schedule retries without blocking; :func:`deliver` loops over it, sleeping in
between, for callers that may block (``distillwatch alerts test``). An attempt is

``delivered``  any 2xx;
``retry``      a timeout, a connection error, a 5xx or a 429, with attempts left: the next
               one is due after :meth:`RetryPolicy.delay_s` (which honours ``Retry-After``);
``failed``     any other status (other 4xx, 3xx: redirects are not followed): not retried,
               since sending the same request again cannot succeed;
``gave_up``    a retryable failure on the last allowed attempt.

Each :class:`DeliveryAttempt` is one ``alert_deliveries`` row (:meth:`DeliveryAttempt.to_row`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import httpx

from streams.alerting.notification import Notification
from streams.alerting.policy import RetryPolicy, parse_retry_after
from streams.alerting.targets import Target, render

__all__ = ["DELIVERY_COLUMNS", "DeliveryAttempt", "RetryPolicy", "attempt_once", "deliver", "http_client"]

DeliveryStatus = Literal["delivered", "retry", "failed", "gave_up"]
DELIVERY_COLUMNS = ("alert_id", "target", "attempt", "status", "http_status", "error", "attempted_at")
"""The columns of ``alert_deliveries``, in the order of :meth:`DeliveryAttempt.to_row`."""
_ERROR_CHARS = 300


@dataclass(frozen=True)
class DeliveryAttempt:
    """One HTTP attempt of one notification to one target (one ``alert_deliveries`` row)."""

    alert_id: str
    target: str
    attempt: int
    status: DeliveryStatus
    http_status: int | None
    error: str
    attempted_at: float

    @property
    def final(self) -> bool:
        """No further attempt follows this one."""
        return self.status != "retry"

    def to_row(self) -> dict[str, Any]:
        """Column → value for ``alert_deliveries`` (attempted_at as an aware UTC datetime)."""
        return {
            "alert_id": self.alert_id,
            "target": self.target,
            "attempt": self.attempt,
            "status": self.status,
            "http_status": self.http_status,
            "error": self.error,
            "attempted_at": datetime.fromtimestamp(self.attempted_at, timezone.utc),
        }


def http_client() -> httpx.Client:
    """A client for delivery: no redirects followed (a 3xx is a misconfigured URL)."""
    return httpx.Client(follow_redirects=False)


def attempt_once(
    target: Target,
    notification: Notification,
    client: httpx.Client,
    attempt_no: int,
    *,
    policy: RetryPolicy | None = None,
    now: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> tuple[DeliveryAttempt, float | None]:
    """Make attempt ``attempt_no`` (1-based); return it and the seconds until the next one.

    The delay is None when no attempt follows (delivered, failed or gave up).
    """
    policy = policy or RetryPolicy()
    if attempt_no < 1:
        raise ValueError(f"attempt_no is 1-based, got {attempt_no}")
    started = now()
    request = render(target, notification, now=started)
    http_status: int | None = None
    retry_after: float | None = None
    try:
        response = client.request(request.method, request.url, headers=request.headers,
                                  content=request.body, timeout=target.timeout_s)
    except httpx.TimeoutException as exc:
        retryable, error = True, f"timeout after {target.timeout_s:g} s ({type(exc).__name__})"
    except httpx.TransportError as exc:
        retryable, error = True, f"connection error: {type(exc).__name__}: {exc}"
    else:
        http_status = response.status_code
        if 200 <= http_status < 300:
            return _attempt(notification, target, attempt_no, "delivered", http_status, "", started), None
        retryable = http_status >= 500 or http_status == 429
        snippet = _snippet(response)
        error = f"HTTP {http_status}: {snippet}" if snippet else f"HTTP {http_status}"
        if retryable:
            retry_after = parse_retry_after(response.headers.get("retry-after"), now())
    if not retryable:
        return _attempt(notification, target, attempt_no, "failed", http_status, error, started), None
    if attempt_no >= policy.max_attempts:
        error = f"{error} (gave up after {attempt_no} attempts)"
        return _attempt(notification, target, attempt_no, "gave_up", http_status, error, started), None
    delay = policy.delay_s(attempt_no, retry_after, rng)
    return _attempt(notification, target, attempt_no, "retry", http_status, error, started), delay


def deliver(
    target: Target,
    notification: Notification,
    client: httpx.Client,
    record: Callable[[DeliveryAttempt], None],
    *,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> DeliveryAttempt:
    """Attempt until delivered, failed or out of attempts; return the last attempt.

    ``record`` sees every attempt before the sleep that follows it, so a process killed while
    waiting has still recorded what happened.
    """
    attempt_no = 1
    while True:
        attempt, delay = attempt_once(target, notification, client, attempt_no,
                                      policy=policy, now=now, rng=rng)
        record(attempt)
        if delay is None:
            return attempt
        sleep(delay)
        attempt_no += 1


def _attempt(n: Notification, target: Target, attempt_no: int, status: DeliveryStatus,
             http_status: int | None, error: str, at: float) -> DeliveryAttempt:
    return DeliveryAttempt(n.alert_id, target.name, attempt_no, status, http_status,
                           error[:_ERROR_CHARS], at)


def _snippet(response: httpx.Response) -> str:
    text = response.content[:200].decode("utf-8", "replace")
    return " ".join(text.split())
