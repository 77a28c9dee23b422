"""How long to wait before the next delivery attempt: exponential backoff with jitter.

After failed attempt ``n`` (1-based) the nominal delay is ``base_delay_s · 2^(n-1)``, capped
at ``max_delay_s``; jitter then scales it by a uniform factor in ``[1 - jitter, 1 + jitter]``
(capped again), so retries of many alerts after one outage do not arrive in lock step, while
each delay stays within ±jitter of its nominal value. A ``Retry-After`` from the receiver
(429 or 5xx) raises the delay to what it asks for, but never beyond ``max_delay_s``.

>>> p = RetryPolicy(base_delay_s=1.0, max_delay_s=300.0, jitter=0.0)
>>> [p.backoff_s(n) for n in (1, 2, 3, 10)]
[1.0, 2.0, 4.0, 300.0]
>>> p.delay_s(1, retry_after_s=30.0), p.delay_s(1, retry_after_s=3600.0)
(30.0, 300.0)
"""

from __future__ import annotations

import random
from datetime import timezone
from email.utils import parsedate_to_datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RetryPolicy(BaseModel):
    """Attempts and backoff for one notification to one target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=8, ge=1, description="attempts in all, the first included")
    base_delay_s: float = Field(default=1.0, gt=0)
    max_delay_s: float = Field(default=300.0, gt=0)
    jitter: float = Field(default=0.2, ge=0, lt=1, description="± share of each delay")

    @model_validator(mode="after")
    def _ordered(self) -> RetryPolicy:
        if self.max_delay_s < self.base_delay_s:
            raise ValueError(f"max_delay_s ({self.max_delay_s}) is below base_delay_s ({self.base_delay_s})")
        return self

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay after failed attempt ``attempt`` (1-based), jitter included."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        nominal = min(self.max_delay_s, self.base_delay_s * 2.0 ** min(attempt - 1, 60))
        if self.jitter == 0:
            return nominal
        factor = 1.0 + (rng or random).uniform(-self.jitter, self.jitter)
        return min(self.max_delay_s, nominal * factor)

    def delay_s(self, attempt: int, retry_after_s: float | None = None,
                rng: random.Random | None = None) -> float:
        """The backoff, or the receiver's Retry-After when longer (capped at max_delay_s)."""
        delay = self.backoff_s(attempt, rng)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_delay_s))
        return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    ``now`` is the epoch time the response arrived (a date in the past means 0); None when the
    header is absent or unreadable.

    >>> parse_retry_after("120", now=0.0)
    120.0
    >>> parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0)
    60.0
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": HTTP dates are GMT anyway
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)
