"""Where alerts go, and the HTTP request each kind of target expects (DESIGN §6).

Targets are configured in YAML under ``alerting.targets``, any number of each ``type``::

    alerting:
      targets:
        - {type: alertmanager, name: am, url: "http://alertmanager:9093"}
        - {type: webhook, name: oncall-bot, url: "https://bot.example/hook", secret: "whsec_…"}
        - {type: slack, name: ml-alerts, url: "https://hooks.slack.com/services/…"}
        - {type: pagerduty, name: pd, routing_key: "…"}

:func:`render` turns one notification into one request for one target; it does no I/O, so
every body can be checked without a network. Secrets (webhook secret, Slack URL, PagerDuty
routing key) are ``SecretStr`` and never printed. This module must not import
``distillwatch.settings``: the settings import it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from schemas.errors import ConfigError
from streams.alerting.notification import Notification, fmt, iso_time
from streams.alerting.signing import decode_secret, sign

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
TEST_ALERT_TTL_S = 300.0
"""A test alert expires in Alertmanager by itself after this long."""
ZERO_TIME = "0001-01-01T00:00:00Z"
"""Alertmanager's endsAt of a firing alert in webhook bodies."""
USER_AGENT = "distillwatch-alerting/1"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")) or len(url) < 10:
        raise ValueError(f"{url[:60]!r} is not an http(s):// URL")
    return url


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="unique among targets; recorded with each attempt")
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="per HTTP attempt")


class AlertmanagerTarget(_Target):
    """Prometheus Alertmanager: ``POST {url}/api/v2/alerts``."""

    type: Literal["alertmanager"] = "alertmanager"
    url: str = Field(description="base URL, e.g. http://127.0.0.1:9093")
    firing_ttl_s: float = Field(
        default=7 * 86400.0, gt=0,
        description="endsAt of a firing alert, this far ahead: distillwatch sends each state once, "
                    "and Alertmanager would otherwise resolve it after its resolve_timeout (5 min)")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _http_url(url).rstrip("/")


class WebhookTarget(_Target):
    """Any HTTP endpoint: the Alertmanager webhook v4 body, signed per Standard Webhooks."""

    type: Literal["webhook"] = "webhook"
    url: str
    secret: SecretStr = Field(description="whsec_<base64>, shared with the receiver")
    external_url: str = Field(default="", description="externalURL in the body (a dashboard)")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _http_url(url)

    @field_validator("secret")
    @classmethod
    def _secret(cls, secret: SecretStr) -> SecretStr:
        try:
            decode_secret(secret.get_secret_value())
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return secret


class SlackTarget(_Target):
    """A Slack incoming webhook (the URL is the credential, so it is a secret)."""

    type: Literal["slack"] = "slack"
    url: SecretStr

    @field_validator("url")
    @classmethod
    def _url(cls, url: SecretStr) -> SecretStr:
        try:
            _http_url(url.get_secret_value())
        except ValueError:
            raise ValueError("is not an http(s):// URL") from None
        return url


class PagerDutyTarget(_Target):
    """PagerDuty Events API v2: trigger and resolve, ``dedup_key`` = fingerprint."""

    type: Literal["pagerduty"] = "pagerduty"
    url: str = PAGERDUTY_EVENTS_URL
    routing_key: SecretStr

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _http_url(url)

    @field_validator("routing_key")
    @classmethod
    def _key(cls, key: SecretStr) -> SecretStr:
        if not key.get_secret_value().strip():
            raise ValueError("is empty")
        return key


Target = Union[AlertmanagerTarget, WebhookTarget, SlackTarget, PagerDutyTarget]
TargetConfig = Annotated[Target, Field(discriminator="type")]


def check_unique_names(targets: Iterable[Target]) -> None:
    """Raise ValueError when two targets share a name (attempts are recorded by name)."""
    counts = Counter(t.name for t in targets)
    dupes = sorted(n for n, c in counts.items() if c > 1)
    if dupes:
        raise ValueError(f"target names must be unique; repeated: {dupes}")


@dataclass(frozen=True)
class HttpRequest:
    """One request, ready to send: no I/O happened to build it."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body parsed (for tests and debugging)."""
        return json.loads(self.body)


def render(target: Target, notification: Notification, *, now: float | None = None) -> HttpRequest:
    """The request that delivers ``notification`` to ``target`` at time ``now`` (epoch s).

    ``now`` sets the webhook timestamp and a firing alert's endsAt in Alertmanager; render
    again for each attempt so a retry carries a fresh, verifiable timestamp.
    """
    at = time.time() if now is None else now
    if isinstance(target, AlertmanagerTarget):
        return _post(f"{target.url}/api/v2/alerts", [alertmanager_alert(target, notification, at)])
    if isinstance(target, WebhookTarget):
        body = _dumps(webhook_body(target, notification))
        msg_id = webhook_id(target, notification)
        headers = sign(target.secret.get_secret_value(), msg_id, int(at), body)
        return HttpRequest("POST", target.url, {**_JSON_HEADERS, **headers}, body)
    if isinstance(target, SlackTarget):
        return _post(target.url.get_secret_value(), {"text": slack_text(notification)})
    if isinstance(target, PagerDutyTarget):
        return _post(target.url, pagerduty_event(target, notification))
    raise TypeError(f"unknown target type {type(target).__name__}")


_JSON_HEADERS = {"content-type": "application/json", "user-agent": USER_AGENT}


def _dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _post(url: str, data: Any) -> HttpRequest:
    return HttpRequest("POST", url, dict(_JSON_HEADERS), _dumps(data))


def alert_labels(n: Notification) -> dict[str, str]:
    """Alertmanager labels: the identity of the alert (the same when firing and resolved)."""
    out = {"alertname": n.rule, "rule": n.rule, "slice": n.slice, "severity": n.severity,
           "model": n.model, "fingerprint": n.fingerprint}
    if n.test:
        out["test"] = "true"
    return out


def alert_annotations(n: Notification) -> dict[str, str]:
    """Alertmanager annotations: the evidence and the forensics bundle (empty ones left out)."""
    out = {
        "summary": n.headline,
        "alert_id": n.alert_id,
        "metric": n.metric,
        "value": fmt(n.value),
        "threshold": f"{n.op} {fmt(n.threshold)}" if n.threshold is not None else "",
        "window": n.window_text,
        "ci95": f"[{fmt(n.ci_low)}, {fmt(n.ci_high)}]" if n.ci_low is not None or n.ci_high is not None else "",
        "support": "" if n.support is None else str(n.support),
        "forensics_sql": n.forensics_sql,
        "example_request_ids": ", ".join(n.example_request_ids),
        "replay_offsets": n.replay_offsets,
    }
    return {k: v for k, v in out.items() if v}


def alertmanager_alert(target: AlertmanagerTarget, n: Notification, now: float) -> dict[str, Any]:
    """One element of the ``POST /api/v2/alerts`` list (postableAlert)."""
    alert: dict[str, Any] = {"labels": alert_labels(n), "annotations": alert_annotations(n),
                             "startsAt": iso_time(n.starts_at)}
    if n.status == "resolved":
        assert n.ends_at is not None
        alert["endsAt"] = iso_time(max(n.starts_at, min(n.ends_at, now)))
    else:
        alert["endsAt"] = iso_time(now + (TEST_ALERT_TTL_S if n.test else target.firing_ttl_s))
    return alert


def _am_fingerprint(lbls: dict[str, str]) -> str:
    return hashlib.sha256(_dumps(sorted(lbls.items()))).hexdigest()[:16]


def webhook_id(target: Target, n: Notification) -> str:
    """The ``webhook-id``: the same for every retry of one notification to one target."""
    return f"{n.alert_id}.{target.name}"


def webhook_body(target: WebhookTarget, n: Notification) -> dict[str, Any]:
    """The Alertmanager webhook (version 4) body with this one alert."""
    lbls, notes = alert_labels(n), alert_annotations(n)
    group = {"alertname": n.rule, "slice": n.slice}
    group_key = "{}:{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in group.items()) + "}"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": target.name,
        "groupLabels": group,
        "commonLabels": lbls,
        "commonAnnotations": notes,
        "externalURL": target.external_url,
        "alerts": [{
            "status": n.status,
            "labels": lbls,
            "annotations": notes,
            "startsAt": iso_time(n.starts_at),
            "endsAt": iso_time(n.ends_at) if n.status == "resolved" and n.ends_at is not None else ZERO_TIME,
            "generatorURL": target.external_url,
            "fingerprint": _am_fingerprint(lbls),
        }],
    }


_SLACK_SQL_CHARS = 3000


def slack_text(n: Notification) -> str:
    """Readable Slack text: what, where, value against threshold, window, evidence and SQL."""
    tag = "TEST" if n.test else n.status.upper()
    lines = [f"*[{tag}] {n.rule}* on `{n.slice}` ({n.severity}, model {n.model})", n.headline]
    if n.threshold is not None or n.value is not None:
        detail = f"{n.metric} = {fmt(n.value)} (threshold {n.op} {fmt(n.threshold)})"
        if n.ci_low is not None or n.ci_high is not None:
            detail += f", 95% CI [{fmt(n.ci_low)}, {fmt(n.ci_high)}]"
        if n.support is not None:
            detail += f", support {n.support}"
        lines.append(detail)
    lines.append(f"window {n.window_text}")
    if n.example_request_ids:
        lines.append("example requests: " + ", ".join(n.example_request_ids))
    if n.replay_offsets:
        lines.append(f"replay: {n.replay_offsets}")
    if n.forensics_sql:
        sql = n.forensics_sql
        if len(sql) > _SLACK_SQL_CHARS:
            sql = sql[:_SLACK_SQL_CHARS] + " …"
        lines.append(f"forensics SQL:\n```{sql}```")
    return "\n".join(lines)


_PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


def pagerduty_severity(severity: str) -> str:
    """Rule severity → PagerDuty severity (unknown ones page as warning)."""
    return _PD_SEVERITY.get(severity.lower(), "warning")


def pagerduty_event(target: PagerDutyTarget, n: Notification) -> dict[str, Any]:
    """An Events API v2 event: trigger with the evidence, or resolve by dedup_key."""
    event: dict[str, Any] = {
        "routing_key": target.routing_key.get_secret_value(),
        "event_action": "resolve" if n.status == "resolved" else "trigger",
        "dedup_key": n.fingerprint[:255],
    }
    if n.status == "resolved":
        return event
    details: dict[str, Any] = {k: v for k, v in alert_annotations(n).items() if k != "summary"}
    details["test"] = n.test
    event["payload"] = {
        "summary": n.headline[:1024],
        "source": f"distillwatch/{n.model}",
        "severity": pagerduty_severity(n.severity),
        "timestamp": iso_time(n.starts_at),
        "component": n.model,
        "group": n.slice,
        "class": n.rule,
        "custom_details": details,
    }
    event["client"] = "distillwatch"
    return event
