"""Alerts from the always-on monitor: replay → evaluator → rules → outbox → receivers.

The regression log: a healthy MangaAssist student over 14 one-minute windows, whose
confidence stays high while its accuracy drops to 0.80 on region=br from minute 5 to minute
9. The expected alerts are computed independently by the offline judge
(``evaluate --alerts`` code: evaluators.offline + evaluators.judge) on the same log; the
monitor must page exactly those, once each, through a real Alertmanager and a signed webhook,
and request exactly one retrain job (one model, one cooldown).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from evaluators.config import EvalConfig
from evaluators.judge import judge_rows
from evaluators.offline import LogSummary, evaluate_log
from evaluators.rules import RuleSet
from simulator.traffic import Regression, World, healthy
from streams.alerting.signing import new_secret, verify
from streams.local_alertmanager import LocalAlertmanager, find_binary, webhook_config
from tests.integration.pipeline_support import Cluster, sql, wait_until_quiet
from tests.support_receiver import Receiver

pytestmark = pytest.mark.integration

RATE, MINUTES, ONSET_S, END_S = 50.0, 14, 300, 540


class RecoveringWorld(World):
    """The simulator's world, with the regression lifted at ``end_s``."""

    def __init__(self, config: Any, seed: int, end_s: float) -> None:
        super().__init__(config, seed)
        self.end_s = end_s

    def _student_quality(self, slices: dict[str, str], offset_s: float) -> tuple[float, float]:
        if offset_s >= self.end_s:
            return self.cfg.student_accuracy, self.cfg.student_confidence
        return super()._student_quality(slices, offset_s)


def regression_log(path: Path) -> tuple[int, int]:
    """Write the log; return (pairs, epoch start of the run)."""
    pairs = int(RATE * 60 * MINUTES)
    cfg = healthy(pairs, RATE, [Regression(slice="region=br", onset_s=ONSET_S, accuracy=0.80, confidence=0.93)])
    lines = [orjson.dumps(x) for x in RecoveringWorld(cfg, 7, END_S).lines()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return pairs, int(cfg.start.timestamp())


def offline_transitions(log: Path) -> set[tuple[str, str, str, int]]:
    rows = evaluate_log(lambda: open(log, "rb"), EvalConfig(), 60, 120, LogSummary())
    rules = RuleSet.load(None, {"planned_fallback_rate": 0.10})
    return {(t.kind, t.rule, t.slice, t.window_start) for t in judge_rows(rows, rules)}


def stored_transitions(port: int) -> set[tuple[str, str, str, int]]:
    rows = sql(port, "SELECT status, rule, slice, toUnixTimestamp(window_start) FROM distillwatch.alerts FINAL "
                     "WHERE rule NOT LIKE 'drift:%'")
    return {(s, r, sl, int(w)) for s, r, sl, w in rows}


def write_config(path: Path, targets: list[dict[str, Any]]) -> Path:
    config = {
        "evaluation": {"windows_s": [60]},
        "alerting": {"targets": targets, "poll_s": 0.2,
                     "retry": {"base_delay_s": 0.5, "max_delay_s": 2.0, "max_attempts": 50},
                     "retrain": {"launcher": "none"}},
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@pytest.fixture
def cluster(tmp_path: Path, kafka_bootstrap: str) -> Any:
    c = Cluster(tmp_path, kafka_bootstrap)
    assert c.cli("init").returncode == 0
    yield c
    c.stop_all()


def notifications(received: list[Any]) -> list[tuple[str, str]]:
    """(status, fingerprint) of every alert in every webhook / Alertmanager-forwarded body."""
    out = []
    for r in received:
        body = r.json()
        for alert in body.get("alerts", []):
            out.append((alert["status"], alert["labels"]["fingerprint"]))
    return out


def test_monitor_pages_what_offline_judging_finds_once_each(cluster: Cluster, tmp_path: Path) -> None:
    find_binary()  # Debian's prometheus-alertmanager, installed by scripts/system-deps.sh
    log = tmp_path / "regression.jsonl"
    pairs, start = regression_log(log)
    expected = offline_transitions(log)
    firing = {(r, s) for k, r, s, _ in expected if k == "firing"}
    assert firing and all(s == "region=br" for _, s in firing), expected
    assert all(w - start <= ONSET_S + 60 for k, _, _, w in expected if k == "firing")
    assert {(r, s) for k, r, s, _ in expected if k == "resolved"} == firing

    secret = new_secret()
    with Receiver() as hook, Receiver() as via_am:
        am = LocalAlertmanager(tmp_path / "am", webhook_config(via_am.url + "/am")).start()
        try:
            cluster.env["DISTILLWATCH_CONFIG"] = str(write_config(tmp_path / "dw.yaml", [
                {"type": "webhook", "name": "hook", "url": hook.url + "/hook", "secret": secret},
                {"type": "alertmanager", "name": "am", "url": am.url},
            ]))
            assert cluster.cli("replay", "--quiet", str(log)).returncode == 0
            _, port = cluster.start_monitor("-v")
            wait_until_quiet(port, pairs)
            n = len(expected)
            hook.wait_for(lambda rs: len(rs) >= n, timeout_s=60)
            via_am.wait_for(lambda rs: Counter(s for s, _ in notifications(rs))["resolved"] >= len(firing),
                            timeout_s=60)
            time.sleep(3)  # anything extra (a repeat) would arrive now
            assert stored_transitions(port) == expected
            jobs = sql(port, "SELECT job_id, status, request FROM distillwatch.retrain_jobs FINAL")
            deliveries = sql(port, "SELECT target, status, count() FROM distillwatch.alert_deliveries "
                                   "GROUP BY target, status ORDER BY target, status")
            no_offset = sql(port, "SELECT countIf(kafka_offset < 0) FROM distillwatch.shadow_evaluations FINAL")
            cluster.env["DISTILLWATCH_HTTP__PORT"] = str(port)
            listed = cluster.cli("alerts", "list", "--format", "json")  # through the monitor's API
            table = cluster.cli("alerts", "list")
            drift = sql(port, "SELECT status, rule, slice, toUnixTimestamp(window_start) FROM distillwatch.alerts "
                              "FINAL WHERE rule LIKE 'drift:%' ORDER BY 4")

        finally:
            am.stop()
    # The signed webhook: every event exactly once, each signature genuine.
    for r in hook.requests:
        verify(secret, r.headers, r.body)
    got = Counter(notifications(hook.requests))
    want = Counter((k, f"{r}/{s}") for k, r, s, _ in expected)
    assert got == want
    # Through Alertmanager: one firing and one resolved notification per fingerprint.
    am_got = Counter(notifications(via_am.requests))
    assert am_got == Counter({(k, f"{r}/{s}"): 1 for r, s in firing for k in ("firing", "resolved")})
    assert deliveries == [["am", "delivered", n], ["hook", "delivered", n]]
    assert listed.returncode == 0, listed.stderr
    events = [e for e in map(json.loads, listed.stdout.splitlines()) if not e["rule"].startswith("drift:")]
    assert {(e["status"], e["rule"], e["slice"], e["window_start"]) for e in events} == expected
    assert all(e["deliveries"].count(":delivered") == 2 for e in events)
    assert all(e["evidence"]["forensics_sql"].startswith("SELECT") for e in events)
    # Every request row knows its Kafka coordinates, so every page says what to replay.
    assert no_offset == [[0]]
    assert all("shadow.requests[" in e["evidence"]["replay_offsets"] for e in events if e["status"] == "firing")
    assert table.returncode == 0 and "alert(s) firing now" in table.stdout, table.stdout
    # Drift detectors: ADWIN sees the student's error stream on region=br shift at the onset;
    # nothing drifts before it. Drift events are stored, not delivered (alerting.drift.deliver).
    assert ["firing", "drift:adwin:student_error", "region=br", start + ONSET_S] in drift
    assert all(w >= start + ONSET_S for _, _, _, w in drift)
    # Both fired rules carry the retrain action; one model, one cooldown: one job.
    assert len(jobs) == 1 and jobs[0][1] == "requested"
    request = json.loads(jobs[0][2])
    snapshot = Path(request["dataset_snapshot"])
    assert snapshot.exists() and snapshot.read_bytes()[:4] == b"PAR1"


def test_page_survives_receiver_outage_and_monitor_kill(cluster: Cluster, tmp_path: Path) -> None:
    """Receiver down when the alerts fire; the monitor is killed (-9) with them undelivered;
    after restart and recovery each event is delivered exactly once, and one retrain job exists."""
    log = tmp_path / "regression.jsonl"
    pairs, _ = regression_log(log)
    expected = offline_transitions(log)
    hook = Receiver().start()
    port_hook = hook.port
    hook.stop()  # down: connection refused
    cluster.env["DISTILLWATCH_CONFIG"] = str(write_config(tmp_path / "dw.yaml", [
        {"type": "webhook", "name": "hook", "url": f"http://127.0.0.1:{port_hook}/hook", "secret": new_secret()},
    ]))
    assert cluster.cli("replay", "--quiet", str(log)).returncode == 0
    proc, port = cluster.start_monitor()
    wait_until_quiet(port, pairs)
    deadline = time.monotonic() + 60
    while len(stored_transitions(port)) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stored_transitions(port) == expected
    failed = sql(port, "SELECT count() FROM distillwatch.alert_deliveries WHERE status = 'retry'")[0][0]
    # Attempted and failing while the receiver is down; resolutions wait for their firing.
    assert failed >= sum(1 for e in expected if e[0] == "firing")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    with Receiver() as back:
        back.stop()
        back.start(port=port_hook)
        _, port = cluster.start_monitor()
        back.wait_for(lambda rs: len(rs) >= len(expected), timeout_s=90)
        time.sleep(3)
        got = Counter(notifications(back.requests))
        jobs = sql(port, "SELECT count() FROM distillwatch.retrain_jobs FINAL")[0][0]
    assert got == Counter((k, f"{r}/{s}") for k, r, s, _ in expected)
    assert jobs == 1


def test_clean_two_hours_with_44_slices_pages_nobody(cluster: Cluster, tmp_path: Path) -> None:
    """DESIGN §6: a clean day pages nobody. Two simulated hours of the healthy student,
    region × device crossed (44 slices), through the monitor to a live receiver: 0 pages."""
    log = tmp_path / "clean.jsonl"
    rate, pairs = 10.0, 10 * 7200
    lines = [orjson.dumps(x) for x in World(healthy(pairs, rate), 3).lines()]
    log.write_bytes(b"\n".join(lines) + b"\n")
    with Receiver() as hook:
        config = write_config(tmp_path / "dw.yaml", [
            {"type": "webhook", "name": "hook", "url": hook.url + "/hook", "secret": new_secret()}])
        data = json.loads(config.read_text())
        data["evaluation"]["crosses"] = [["region", "device"]]
        config.write_text(json.dumps(data))
        cluster.env["DISTILLWATCH_CONFIG"] = str(config)
        assert cluster.cli("replay", "--quiet", str(log)).returncode == 0
        _, port = cluster.start_monitor()
        wait_until_quiet(port, pairs)
        deadline = time.monotonic() + 60  # until every closed window is judged
        while time.monotonic() < deadline:
            if _judged_windows(port) >= 7200 // 60 - 3:
                break
            time.sleep(1)
        slices = sql(port, "SELECT uniqExact(slice) FROM distillwatch.window_metrics")[0][0]
        judged = _judged_windows(port)
        pages = sql(port, "SELECT count() FROM distillwatch.alerts WHERE rule NOT LIKE 'drift:%'")[0][0]
        time.sleep(2)
    assert slices >= 44 and judged >= 7200 // 60 - 3
    assert pages == 0 and hook.requests == []


def _judged_windows(port: int) -> int:
    """How many 60 s windows the monitor's alerter has judged so far."""
    state = sql(port, "SELECT state FROM distillwatch.alert_state FINAL WHERE key = 'alerter'")
    if not state:
        return 0
    tracker = json.loads(state[0][0])["trackers"][0]
    first = sql(port, "SELECT toUnixTimestamp(min(window_start)) FROM distillwatch.window_metrics")[0][0]
    return (int(tracker["last_window"] or 0) - int(first)) // 60 + 1
