"""A real Prometheus Alertmanager (Debian's prometheus-alertmanager), started per test.

Alertmanager forwards every alert to a local webhook receiver named in its temporary config,
so a test sees both Alertmanager's own view (``GET /api/v2/alerts``) and what on-call's
receiver gets.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from streams.alerting.delivery import deliver, http_client
from streams.alerting.notification import Notification, alert_id_for
from streams.alerting.signing import verify
from streams.alerting.targets import AlertmanagerTarget
from streams.local_alertmanager import LocalAlertmanager, webhook_config
from tests.support_receiver import Receiver

pytestmark = pytest.mark.integration

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def forwarded() -> Iterator[Receiver]:
    """The receiver Alertmanager forwards to."""
    with Receiver() as rx:
        yield rx


@pytest.fixture
def alertmanager(tmp_path: Path, forwarded: Receiver) -> Iterator[LocalAlertmanager]:
    with LocalAlertmanager(tmp_path / "am", webhook_config(forwarded.url + "/am")) as am:
        yield am


def _alerts_named(am: LocalAlertmanager, name: str) -> list[dict]:
    return [a for a in am.alerts() if a["labels"].get("alertname") == name]  # type: ignore[index,union-attr]


def test_local_alertmanager_is_ready_on_its_own_port(alertmanager: LocalAlertmanager) -> None:
    assert alertmanager.port not in (9093, 9094)
    assert httpx.get(f"{alertmanager.url}/-/ready").status_code == 200
    assert alertmanager.alerts() == []


def test_alerts_test_shows_in_alertmanager_and_reaches_its_receiver(
        run_cli: Run, tmp_path: Path, alertmanager: LocalAlertmanager, forwarded: Receiver) -> None:
    """Done-when of issue 5: `distillwatch alerts test` → Alertmanager's own API lists it."""
    with Receiver() as direct:
        config = tmp_path / "dw.yaml"
        config.write_text(
            "alerting:\n  model: kd-student\n  targets:\n"
            f"    - {{type: alertmanager, name: am, url: '{alertmanager.url}'}}\n"
            f"    - {{type: webhook, name: hook, url: '{direct.url}/hook', secret: '{SECRET}'}}\n")
        proc = run_cli("--config", str(config), "alerts", "test", timeout=60)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("ok     am (alertmanager)  delivered  HTTP 200  1 attempt")
        assert lines[1].startswith("ok     hook (webhook)  delivered  HTTP 200  1 attempt")
        assert lines[2].startswith("test alert test-") and lines[2].endswith("delivered to 2 target(s)")
        alert_id = lines[2].split()[2]

        # Alertmanager's own view
        [alert] = _alerts_named(alertmanager, "distillwatch_test")
        assert alert["labels"] == {"alertname": "distillwatch_test", "rule": "distillwatch_test",
                                   "slice": "all", "severity": "info", "model": "kd-student",
                                   "fingerprint": "distillwatch_test/all", "test": "true"}
        assert alert["annotations"]["alert_id"] == alert_id
        assert alert["annotations"]["summary"].startswith("TEST alert")
        assert alert["status"]["state"] == "active"

        # what Alertmanager forwarded to its webhook receiver
        [got] = forwarded.wait_for(lambda r: len(r) >= 1)
        body = got.json()
        assert got.path == "/am" and body["version"] == "4" and body["status"] == "firing"
        assert body["alerts"][0]["labels"]["test"] == "true"
        assert body["alerts"][0]["annotations"]["alert_id"] == alert_id

        # the signed webhook sent directly
        [hook] = direct.requests
        verify(SECRET, hook.headers, hook.body, now=hook.at)
        assert hook.json()["alerts"][0]["annotations"]["alert_id"] == alert_id


def test_alerts_test_exits_1_naming_the_failed_target(
        run_cli: Run, tmp_path: Path, alertmanager: LocalAlertmanager) -> None:
    with Receiver(default=400) as broken:
        config = tmp_path / "dw.yaml"
        config.write_text(
            "alerting:\n  targets:\n"
            f"    - {{type: alertmanager, name: am, url: '{alertmanager.url}'}}\n"
            f"    - {{type: slack, name: chat, url: '{broken.url}/slack'}}\n")
        proc = run_cli("--config", str(config), "alerts", "test", timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[1].startswith("FAILED chat (slack)  failed  HTTP 400  1 attempt")
    assert len(broken.requests) == 1  # a 400 is not retried
    [err] = proc.stderr.strip().splitlines()
    assert err.startswith("distillwatch: error: test alert test-") and err.endswith("1 of 2 target(s): chat")
    assert len(_alerts_named(alertmanager, "distillwatch_test")) == 1


def test_alerts_test_only_named_target_and_unknown_name(
        run_cli: Run, tmp_path: Path, alertmanager: LocalAlertmanager) -> None:
    config = tmp_path / "dw.yaml"
    config.write_text(
        "alerting:\n  targets:\n"
        f"    - {{type: alertmanager, name: am, url: '{alertmanager.url}'}}\n"
        "    - {type: slack, name: chat, url: 'http://127.0.0.1:1/never'}\n")
    proc = run_cli("--config", str(config), "alerts", "test", "--target", "am", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2  # one target line and the summary
    proc = run_cli("--config", str(config), "alerts", "test", "--target", "nope", timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "distillwatch: error: no target named nope; configured: am, chat"


def test_alerts_test_without_targets_fails_with_one_line(run_cli: Run) -> None:
    proc = run_cli("alerts", "test", timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "distillwatch: error: no alert targets configured: add alerting.targets to the YAML file "
        "(see docs/alerting.md)"]


def test_firing_then_resolved_through_alertmanager(
        alertmanager: LocalAlertmanager, forwarded: Receiver) -> None:
    now = time.time()
    window_start = int(now) // 60 * 60 - 120
    firing = Notification(
        alert_id=alert_id_for("safety_escalation_recall/region=br", "firing", window_start, 60),
        fingerprint="safety_escalation_recall/region=br", status="firing",
        rule="safety_escalation_recall", slice="region=br", severity="critical",
        metric="safety_escalation_recall", value=0.71, threshold=0.9, op="<",
        window_start=window_start, window_s=60, starts_at=float(window_start - 60),
        forensics_sql="SELECT request_id FROM distillwatch.shadow_evaluations LIMIT 10",
        example_request_ids=("r-1", "r-2"), replay_offsets="shadow.requests[3]=1200..1450",
        support=412, ci_low=0.66, ci_high=0.76)
    resolved = replace(firing, status="resolved", ends_at=float(window_start + 60),
                       alert_id=alert_id_for(firing.fingerprint, "resolved", window_start + 60, 60),
                       window_start=window_start + 60)
    target = AlertmanagerTarget(name="am", url=alertmanager.url)
    with http_client() as client:
        assert deliver(target, firing, client, lambda a: None).status == "delivered"
        [active] = _alerts_named(alertmanager, "safety_escalation_recall")
        assert active["labels"]["slice"] == "region=br"
        assert active["annotations"]["forensics_sql"] == firing.forensics_sql
        assert active["annotations"]["replay_offsets"] == "shadow.requests[3]=1200..1450"
        first = forwarded.wait_for(lambda r: len(r) >= 1)[0].json()
        assert first["status"] == "firing"
        assert first["alerts"][0]["annotations"]["example_request_ids"] == "r-1, r-2"

        assert deliver(target, resolved, client, lambda a: None).status == "delivered"
        got = forwarded.wait_for(lambda r: any(x.json()["status"] == "resolved" for x in r))
    final = [x.json() for x in got if x.json()["status"] == "resolved"][0]
    [alert] = final["alerts"]
    assert alert["labels"]["fingerprint"] == "safety_escalation_recall/region=br"
    assert alert["endsAt"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(window_start + 60)))
    assert _alerts_named(alertmanager, "safety_escalation_recall") == []  # no longer active
    assert sum(x.json()["status"] == "firing" for x in got) == 1
