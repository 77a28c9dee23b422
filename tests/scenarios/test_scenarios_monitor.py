"""Every failure scenario through the live monitor: simulate → replay → `distillwatch run`.

The same assertions as the offline scenario tests (simulator.truth.check_transitions), but
on the alerts the always-on monitor wrote to ClickHouse: the expected rule fires on the
target slice within two windows of the onset, nothing fires anywhere else, and the clean
control pages nobody. Drift events are stored but not pages, so they are left out here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from simulator import scenarios
from simulator.generate import Simulation
from simulator.truth import Truth, check_transitions, truth_path
from tests.integration.pipeline_support import Cluster, sql, wait_until_quiet

pytestmark = pytest.mark.integration

WITH_RULES = [name for name, sc in scenarios.SCENARIOS.items() if sc.expected]
CLEAN_MINUTES = 30.0


@dataclass(frozen=True)
class Stored:
    kind: str
    rule: str
    slice: str
    window_start: int


def _last_judged(port: int) -> int:
    state = sql(port, "SELECT state FROM distillwatch.alert_state FINAL WHERE key = 'alerter'")
    if not state:
        return 0
    return int(json.loads(state[0][0])["trackers"][0]["last_window"] or 0)


def run_through_monitor(tmp_path: Path, bootstrap: str, name: str, minutes: float | None) -> tuple[Truth, list[Stored]]:
    sim = Simulation(scenarios.get(name), 0, minutes)
    log = tmp_path / f"{name}.jsonl"
    with open(log, "wb") as handle:
        for line in sim.lines():
            handle.write(orjson.dumps(line) + b"\n")
    truth = sim.truth()
    truth.write(truth_path(log))
    cluster = Cluster(tmp_path, bootstrap)
    cluster.env["DISTILLWATCH_EVALUATION__WINDOWS_S"] = "[60]"
    cluster.env["DISTILLWATCH_ALERTING__SETTLE_S"] = "5"
    try:
        assert cluster.cli("init").returncode == 0
        assert cluster.cli("replay", "--quiet", str(log)).returncode == 0
        _, port = cluster.start_monitor()
        wait_until_quiet(port, truth.requests, timeout_s=400)
        # Every window the watermark closed is judged once the input settled.
        last_request = sql(port, "SELECT toUnixTimestamp(max(ts)) FROM distillwatch.shadow_evaluations")[0][0]
        closed_through = (int(last_request) - 120) // 60 * 60 - 60
        deadline = time.monotonic() + 60
        while _last_judged(port) < closed_through and time.monotonic() < deadline:
            time.sleep(1)
        rows = sql(port, "SELECT status, rule, slice, toUnixTimestamp(window_start) FROM distillwatch.alerts "
                         "FINAL WHERE rule NOT LIKE 'drift:%' ORDER BY 4")
        judged = _last_judged(port)
    finally:
        cluster.stop_all()
    assert judged >= closed_through, (judged, closed_through)
    return truth, [Stored(k, r, s, int(w)) for k, r, s, w in rows]


@pytest.mark.parametrize("name", WITH_RULES)
def test_scenario_caught_by_the_monitor(name: str, tmp_path: Path, kafka_bootstrap: str) -> None:
    truth, alerts = run_through_monitor(tmp_path, kafka_bootstrap, name, None)
    assert truth.detect_by_window_start is not None
    problems = check_transitions(truth, alerts)
    assert problems == [], (problems, alerts)


def test_clean_control_pages_nobody(tmp_path: Path, kafka_bootstrap: str) -> None:
    truth, alerts = run_through_monitor(tmp_path, kafka_bootstrap, "clean", CLEAN_MINUTES)
    assert truth.expected == [] and alerts == []


def test_payload_sampling_stays_within_the_policy_share(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Scenario 8: the monitor stores full (redacted) payloads for the policy's share of the
    traffic only; the truth file gives the bounds for the default policy (0.4 % sampled plus
    1 % of the risky requests), computed from the simulation's own counts."""
    sim = Simulation(scenarios.get("payload_sampling"), 0)
    log = tmp_path / "payload_sampling.jsonl"
    with open(log, "wb") as handle:
        for line in sim.lines():
            handle.write(orjson.dumps(line) + b"\n")
    truth = sim.truth()
    bounds = truth.extra["payload_sampling"]
    cluster = Cluster(tmp_path, kafka_bootstrap)
    cluster.env["DISTILLWATCH_EVALUATION__WINDOWS_S"] = "[60]"
    try:
        assert cluster.cli("init").returncode == 0
        assert cluster.cli("replay", "--quiet", str(log)).returncode == 0
        _, port = cluster.start_monitor()
        wait_until_quiet(port, truth.requests, timeout_s=400)
        stored, requests = sql(port, "SELECT (SELECT count() FROM distillwatch.shadow_payloads FINAL), "
                                     "(SELECT count() FROM distillwatch.shadow_evaluations FINAL)")[0]
    finally:
        cluster.stop_all()
    assert requests == truth.requests
    assert bounds["rows_low"] <= stored <= bounds["rows_high"], (stored, bounds)
    assert stored / requests <= 0.005 * 1.5  # the guide's 0.5 % of traffic, with room for noise
