"""What an alert says to on-call: one firing or resolved event with its forensics bundle.

A :class:`Notification` is built once by the alerter when a fingerprint (rule + slice)
changes state, stored as JSON in ``alerts.evidence``, and rendered per target
(:func:`streams.alerting.targets.render`). ``alert_id`` is the idempotency key: the same
fingerprint, status and window always give the same id (:func:`alert_id_for`), so a
re-delivered notification can be recognised by every receiver.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any, Literal

from schemas.messages import utc_timestamp
from streams.alerting.errors import AlertingError

Status = Literal["firing", "resolved"]
TEST_RULE = "distillwatch_test"


@dataclass(frozen=True)
class Notification:
    """One alert event, everything a receiver needs to act on it without asking back."""

    alert_id: str
    fingerprint: str
    status: Status
    rule: str
    slice: str
    severity: str
    metric: str
    value: float | None
    threshold: float | None
    op: str
    window_start: int
    window_s: int
    starts_at: float
    ends_at: float | None = None
    model: str = "student"
    summary: str = ""
    forensics_sql: str = ""
    example_request_ids: tuple[str, ...] = ()
    replay_offsets: str = ""
    support: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    test: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not self.alert_id:
            problems.append("alert_id is empty")
        if not self.fingerprint:
            problems.append("fingerprint is empty")
        if self.status not in ("firing", "resolved"):
            problems.append(f"status is {self.status!r}; expected 'firing' or 'resolved'")
        if self.op not in ("<", ">"):
            problems.append(f"op is {self.op!r}; expected '<' or '>'")
        if self.window_s <= 0:
            problems.append(f"window_s is {self.window_s}; expected > 0")
        if self.status == "resolved" and self.ends_at is None:
            problems.append("a resolved notification needs ends_at")
        for name in ("value", "threshold", "ci_low", "ci_high", "starts_at", "ends_at"):
            x = getattr(self, name)
            if x is not None and not math.isfinite(x):
                problems.append(f"{name} is {x}; expected a finite number or None")
        if not isinstance(self.example_request_ids, tuple):
            object.__setattr__(self, "example_request_ids", tuple(self.example_request_ids))
        if problems:
            raise AlertingError(f"invalid notification {self.alert_id or '?'}: " + "; ".join(problems))

    @property
    def window_end(self) -> int:
        return self.window_start + self.window_s

    @property
    def window_text(self) -> str:
        """The window as on-call reads it: ``2024-05-01T10:00:00Z/60s``."""
        return f"{iso_time(self.window_start)}/{self.window_s}s"

    @property
    def headline(self) -> str:
        """One line: the summary if given, else rule, slice and value against threshold."""
        if self.summary:
            return self.summary
        verb = "resolved" if self.status == "resolved" else "firing"
        return (f"{self.rule} {verb} on {self.slice}: {self.metric} = {fmt(self.value)} "
                f"{self.op} {fmt(self.threshold)} (model {self.model})")

    def to_json(self) -> str:
        """Stable JSON (sorted keys), the form kept in ``alerts.evidence``."""
        data = asdict(self)
        data["example_request_ids"] = list(self.example_request_ids)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Notification:
        """Read :meth:`to_json` output back; unknown or missing keys raise AlertingError."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise AlertingError(f"notification is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise AlertingError("notification JSON is not an object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AlertingError(f"notification JSON has unknown keys: {unknown}")
        data["example_request_ids"] = tuple(data.get("example_request_ids", ()))
        try:
            return cls(**data)
        except TypeError as exc:
            raise AlertingError(f"notification JSON is incomplete: {exc}") from None


def alert_id_for(fingerprint: str, status: str, window_start: int, window_s: int) -> str:
    """The idempotency key of one state change: same inputs, same id (32 hex digits)."""
    key = f"{fingerprint}\x00{status}\x00{int(window_start)}\x00{int(window_s)}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def make_test_notification(model: str, now: float) -> Notification:
    """A clearly labelled test alert (``distillwatch alerts test``); unique per call."""
    window_s = 60
    window_start = int(now) // window_s * window_s
    return Notification(
        alert_id=f"test-{uuid.uuid4().hex[:24]}",
        fingerprint=f"{TEST_RULE}/all",
        status="firing",
        rule=TEST_RULE,
        slice="all",
        severity="info",
        metric="test",
        value=None,
        threshold=None,
        op=">",
        window_start=window_start,
        window_s=window_s,
        starts_at=now,
        model=model,
        summary=f"TEST alert from `distillwatch alerts test` (model {model}): delivery check, no action needed",
        test=True,
    )


def fmt(x: float | None) -> str:
    """A number as on-call reads it (4 significant digits), '-' when absent."""
    return "-" if x is None else f"{x:.4g}"


def iso_time(epoch_s: float) -> str:
    """RFC 3339 UTC text for an epoch time (what Alertmanager and PagerDuty expect)."""
    return utc_timestamp(datetime.fromtimestamp(epoch_s, timezone.utc))


def as_dict(n: Notification) -> dict[str, Any]:
    """The notification as plain JSON-ready data (tuples as lists)."""
    return json.loads(n.to_json())
