"""Alert targets: configuration checks and the exact request each target gets (DESIGN §6).

Expected bodies are written out by hand from the target's documented format (Alertmanager
API v2 postableAlert, Alertmanager webhook v4, Slack incoming webhook, PagerDuty Events v2).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from distillwatch.settings import load_settings
from schemas.errors import ConfigError
from streams.alerting.errors import AlertingError
from streams.alerting.notification import Notification, alert_id_for, make_test_notification
from streams.alerting.targets import (
    AlertmanagerTarget,
    PagerDutyTarget,
    SlackTarget,
    TargetConfig,
    WebhookTarget,
    render,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOW = 1_700_000_100.0  # 2023-11-14T22:15:00Z

FIRING = Notification(
    alert_id="a1", fingerprint="safety_escalation_recall/region=br", status="firing",
    rule="safety_escalation_recall", slice="region=br", severity="critical",
    metric="safety_escalation_recall", value=0.7125, threshold=0.9, op="<",
    window_start=1_699_999_980, window_s=60, starts_at=1_700_000_000.0, model="student-v3",
    summary="safety_escalation_recall = 0.7125 < 0.9 on region=br for 2 windows of 60s",
    forensics_sql="SELECT * FROM distillwatch.shadow_evaluations WHERE slice = 'region=br'",
    example_request_ids=("r-1", "r-2"), replay_offsets="shadow.requests[3]=1200..1450",
    support=412, ci_low=0.6651, ci_high=0.7551)
RESOLVED = replace(FIRING, alert_id="a2", status="resolved", ends_at=1_700_000_040.0,
                   summary="safety_escalation_recall back above 0.9 on region=br")

LABELS = {"alertname": "safety_escalation_recall", "rule": "safety_escalation_recall",
          "slice": "region=br", "severity": "critical", "model": "student-v3",
          "fingerprint": "safety_escalation_recall/region=br"}
ANNOTATIONS = {
    "summary": "safety_escalation_recall = 0.7125 < 0.9 on region=br for 2 windows of 60s",
    "alert_id": "a1", "metric": "safety_escalation_recall", "value": "0.7125",
    "threshold": "< 0.9", "window": "2023-11-14T22:13:00Z/60s", "ci95": "[0.6651, 0.7551]",
    "support": "412",
    "forensics_sql": "SELECT * FROM distillwatch.shadow_evaluations WHERE slice = 'region=br'",
    "example_request_ids": "r-1, r-2", "replay_offsets": "shadow.requests[3]=1200..1450",
}

targets = TypeAdapter(list[TargetConfig])


# --- Alertmanager ----------------------------------------------------------------------------

def test_alertmanager_firing_alert() -> None:
    req = render(AlertmanagerTarget(name="am", url="http://127.0.0.1:9093/"), FIRING, now=NOW)
    assert (req.method, req.url) == ("POST", "http://127.0.0.1:9093/api/v2/alerts")
    assert req.headers["content-type"] == "application/json"
    assert req.json() == [{
        "labels": LABELS, "annotations": ANNOTATIONS,
        "startsAt": "2023-11-14T22:13:20Z",
        "endsAt": "2023-11-21T22:15:00Z",  # firing_ttl_s (7 days) after the attempt
    }]


def test_alertmanager_resolved_alert_has_same_labels_and_its_end() -> None:
    req = render(AlertmanagerTarget(name="am", url="http://am:9093"), RESOLVED, now=NOW)
    [alert] = req.json()
    assert alert["labels"] == LABELS  # same identity, so Alertmanager resolves the firing one
    assert alert["annotations"]["summary"] == "safety_escalation_recall back above 0.9 on region=br"
    assert alert["annotations"]["alert_id"] == "a2"
    assert (alert["startsAt"], alert["endsAt"]) == ("2023-11-14T22:13:20Z", "2023-11-14T22:14:00Z")


def test_alertmanager_resolution_in_the_future_ends_now() -> None:
    late = replace(RESOLVED, ends_at=NOW + 3600)
    [alert] = render(AlertmanagerTarget(name="am", url="http://am:9093"), late, now=NOW).json()
    assert alert["endsAt"] == "2023-11-14T22:15:00Z"


def test_alertmanager_test_alert_is_labelled_and_expires_in_five_minutes() -> None:
    n = make_test_notification("student", NOW)
    [alert] = render(AlertmanagerTarget(name="am", url="http://am:9093"), n, now=NOW).json()
    assert alert["labels"]["test"] == "true"
    assert alert["labels"]["alertname"] == "distillwatch_test"
    assert alert["labels"]["severity"] == "info"
    assert "TEST" in alert["annotations"]["summary"]
    assert alert["endsAt"] == "2023-11-14T22:20:00Z"
    assert "forensics_sql" not in alert["annotations"]  # empty evidence is left out


# --- generic webhook -------------------------------------------------------------------------

def test_webhook_body_is_alertmanager_v4_and_signed() -> None:
    target = WebhookTarget(name="oncall", url="https://bot.example/hook", secret=SECRET,
                           external_url="https://grafana.example")
    req = render(target, FIRING, now=NOW)
    assert (req.method, req.url) == ("POST", "https://bot.example/hook")
    body = req.json()
    alert = body.pop("alerts")
    assert body == {
        "version": "4",
        "groupKey": '{}:{alertname="safety_escalation_recall", slice="region=br"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "oncall",
        "groupLabels": {"alertname": "safety_escalation_recall", "slice": "region=br"},
        "commonLabels": LABELS,
        "commonAnnotations": ANNOTATIONS,
        "externalURL": "https://grafana.example",
    }
    assert len(alert) == 1
    fp = alert[0].pop("fingerprint")
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert alert[0] == {"status": "firing", "labels": LABELS, "annotations": ANNOTATIONS,
                        "startsAt": "2023-11-14T22:13:20Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "https://grafana.example"}
    assert req.headers["webhook-id"] == "a1.oncall"
    assert req.headers["webhook-timestamp"] == "1700000100"
    assert req.headers["webhook-signature"].startswith("v1,")


def test_webhook_resolved_and_alert_fingerprint_stable_across_status() -> None:
    target = WebhookTarget(name="oncall", url="https://bot.example/hook", secret=SECRET)
    fired = render(target, FIRING, now=NOW).json()
    resolved = render(target, RESOLVED, now=NOW).json()
    assert resolved["status"] == resolved["alerts"][0]["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] == "2023-11-14T22:14:00Z"
    assert resolved["alerts"][0]["fingerprint"] == fired["alerts"][0]["fingerprint"]
    other_slice = render(target, replace(FIRING, slice="region=jp", fingerprint="x/region=jp"), now=NOW).json()
    assert other_slice["alerts"][0]["fingerprint"] != fired["alerts"][0]["fingerprint"]


# --- Slack -----------------------------------------------------------------------------------

def test_slack_text_names_slice_value_threshold_window_and_sql() -> None:
    req = render(SlackTarget(name="s", url="https://hooks.slack.com/services/T/B/X"), FIRING, now=NOW)
    assert req.url == "https://hooks.slack.com/services/T/B/X"
    body = req.json()
    assert list(body) == ["text"]
    lines = body["text"].splitlines()
    assert lines[0] == "*[FIRING] safety_escalation_recall* on `region=br` (critical, model student-v3)"
    assert "safety_escalation_recall = 0.7125 (threshold < 0.9), 95% CI [0.6651, 0.7551], support 412" in lines
    assert "window 2023-11-14T22:13:00Z/60s" in lines
    assert "example requests: r-1, r-2" in lines
    assert "replay: shadow.requests[3]=1200..1450" in lines
    assert body["text"].endswith(
        "forensics SQL:\n```SELECT * FROM distillwatch.shadow_evaluations WHERE slice = 'region=br'```")


def test_slack_resolved_and_test_are_tagged() -> None:
    target = SlackTarget(name="s", url="https://hooks.slack.com/x")
    assert render(target, RESOLVED).json()["text"].startswith("*[RESOLVED] ")
    assert render(target, make_test_notification("m", NOW)).json()["text"].startswith("*[TEST] ")


# --- PagerDuty -------------------------------------------------------------------------------

def test_pagerduty_trigger_event() -> None:
    req = render(PagerDutyTarget(name="pd", routing_key="R" * 32), FIRING, now=NOW)
    assert req.url == "https://events.pagerduty.com/v2/enqueue"
    event = req.json()
    details = event["payload"].pop("custom_details")
    assert event == {
        "routing_key": "R" * 32, "event_action": "trigger",
        "dedup_key": "safety_escalation_recall/region=br",
        "payload": {"summary": ANNOTATIONS["summary"], "source": "distillwatch/student-v3",
                    "severity": "critical", "timestamp": "2023-11-14T22:13:20Z",
                    "component": "student-v3", "group": "region=br",
                    "class": "safety_escalation_recall"},
        "client": "distillwatch",
    }
    assert details == {**{k: v for k, v in ANNOTATIONS.items() if k != "summary"}, "test": False}


def test_pagerduty_resolve_uses_the_same_dedup_key() -> None:
    event = render(PagerDutyTarget(name="pd", routing_key="R" * 32), RESOLVED, now=NOW).json()
    assert event == {"routing_key": "R" * 32, "event_action": "resolve",
                     "dedup_key": "safety_escalation_recall/region=br"}


@pytest.mark.parametrize(("severity", "expected"), [
    ("critical", "critical"), ("warning", "warning"), ("info", "info"), ("CRITICAL", "critical"),
    ("page-me", "warning"),
])
def test_pagerduty_severity_mapping(severity: str, expected: str) -> None:
    event = render(PagerDutyTarget(name="pd", routing_key="k"), replace(FIRING, severity=severity)).json()
    assert event["payload"]["severity"] == expected


# --- configuration ---------------------------------------------------------------------------

def test_targets_are_chosen_by_type() -> None:
    parsed = targets.validate_python([
        {"type": "alertmanager", "name": "am", "url": "http://am:9093"},
        {"type": "webhook", "name": "w", "url": "http://w/h", "secret": SECRET, "timeout_s": 2},
        {"type": "slack", "name": "s", "url": "https://hooks.slack.com/x"},
        {"type": "pagerduty", "name": "pd", "routing_key": "k"},
    ])
    assert [type(t) for t in parsed] == [AlertmanagerTarget, WebhookTarget, SlackTarget, PagerDutyTarget]
    assert parsed[1].timeout_s == 2.0
    assert parsed[3].url == "https://events.pagerduty.com/v2/enqueue"


@pytest.mark.parametrize(("target", "problem"), [
    ({"type": "email", "name": "x", "url": "http://x/y"}, "does not match any of the expected tags"),
    ({"type": "webhook", "name": "w", "url": "http://w/h", "secret": "plain-text"}, "whsec_"),
    ({"type": "webhook", "name": "w", "url": "http://w/h", "secret": "whsec_***"}, "base64"),
    ({"type": "webhook", "name": "w", "url": "http://w/h", "secret": "whsec_c2hvcnQ="}, "at least 16"),
    ({"type": "webhook", "name": "w", "url": "ftp://w/h", "secret": SECRET}, "http"),
    ({"type": "alertmanager", "name": "am", "url": "am:9093"}, "http"),
    ({"type": "slack", "name": "s", "url": "hooks.slack.com/x"}, "http"),
    ({"type": "pagerduty", "name": "pd", "routing_key": "  "}, "empty"),
    ({"type": "alertmanager", "name": "bad name", "url": "http://am:9093"}, "pattern"),
    ({"type": "alertmanager", "name": "am", "url": "http://am:9093", "urll": "x"}, "Extra inputs"),
    ({"type": "alertmanager", "name": "am", "url": "http://am:9093", "timeout_s": 0}, "greater than 0"),
])
def test_bad_target_config_is_rejected(target: dict, problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        targets.validate_python([target])


def test_secrets_are_not_printed() -> None:
    parsed = targets.validate_python([
        {"type": "webhook", "name": "w", "url": "http://w/h", "secret": SECRET},
        {"type": "slack", "name": "s", "url": "https://hooks.slack.com/services/T/B/SECRETTOKEN"},
        {"type": "pagerduty", "name": "pd", "routing_key": "ROUTINGKEY123"},
    ])
    text = repr(parsed) + str(parsed)
    for secret in (SECRET, "SECRETTOKEN", "ROUTINGKEY123"):
        assert secret not in text


def test_settings_read_targets_from_yaml_and_reject_duplicate_names(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "alerting:\n  model: kd-student\n  retry: {max_attempts: 3, base_delay_s: 0.5}\n  targets:\n"
        "    - {type: alertmanager, name: am, url: 'http://127.0.0.1:9093'}\n"
        f"    - {{type: webhook, name: hook, url: 'http://127.0.0.1:8080/h', secret: '{SECRET}'}}\n")
    s = load_settings(config)
    assert s.alerting.model == "kd-student"
    assert [t.name for t in s.alerting.targets] == ["am", "hook"]
    assert (s.alerting.retry.max_attempts, s.alerting.retry.base_delay_s, s.alerting.retry.max_delay_s) == (3, 0.5, 300.0)
    config.write_text(
        "alerting:\n  targets:\n"
        "    - {type: alertmanager, name: am, url: 'http://a:9093'}\n"
        "    - {type: slack, name: am, url: 'https://hooks.slack.com/x'}\n")
    with pytest.raises(ConfigError, match=r"alerting\.targets.*repeated: \['am'\]"):
        load_settings(config)


def test_settings_default_has_no_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISTILLWATCH_ALERTING__TARGETS", raising=False)
    monkeypatch.delenv("DISTILLWATCH_CONFIG", raising=False)
    assert load_settings().alerting.targets == []


# --- notification ----------------------------------------------------------------------------

def test_notification_json_round_trip() -> None:
    for n in (FIRING, RESOLVED, make_test_notification("m", NOW)):
        text = n.to_json()
        assert Notification.from_json(text) == n
        assert json.loads(text)["example_request_ids"] == list(n.example_request_ids)


def test_notification_json_rejects_unknown_and_missing_keys() -> None:
    data = json.loads(FIRING.to_json())
    with pytest.raises(AlertingError, match="unknown keys: \\['colour'\\]"):
        Notification.from_json(json.dumps({**data, "colour": "red"}))
    del data["rule"]
    with pytest.raises(AlertingError, match="incomplete"):
        Notification.from_json(json.dumps(data))
    with pytest.raises(AlertingError, match="not JSON"):
        Notification.from_json("{")


@pytest.mark.parametrize(("change", "problem"), [
    ({"status": "pending"}, "status"),
    ({"op": ">="}, "op"),
    ({"window_s": 0}, "window_s"),
    ({"status": "resolved", "ends_at": None}, "ends_at"),
    ({"value": float("nan")}, "value"),
    ({"alert_id": ""}, "alert_id"),
])
def test_invalid_notification_is_rejected(change: dict, problem: str) -> None:
    with pytest.raises(AlertingError, match=problem):
        replace(FIRING, **change)


def test_alert_id_is_stable_and_distinct_per_status_and_window() -> None:
    a = alert_id_for("r/s", "firing", 600, 60)
    assert a == alert_id_for("r/s", "firing", 600, 60)
    assert re.fullmatch(r"[0-9a-f]{32}", a)
    others = {alert_id_for("r/s", "resolved", 600, 60), alert_id_for("r/s", "firing", 660, 60),
              alert_id_for("r/s", "firing", 600, 3600), alert_id_for("r/t", "firing", 600, 60)}
    assert a not in others and len(others) == 4


def test_test_notifications_are_unique_and_marked() -> None:
    a, b = make_test_notification("m", NOW), make_test_notification("m", NOW)
    assert a.test and b.test and a.alert_id != b.alert_id
    assert a.window_start == 1_700_000_100 and a.window_s == 60  # NOW is on a minute
