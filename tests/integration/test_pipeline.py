"""The shadow pipeline end to end: replay → Kafka → evaluator → ClickHouse, against offline.

Real broker, real embedded ClickHouse, the monitor as its own process (``distillwatch run``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
import signal
import time
from pathlib import Path

import pytest

from tests.integration.pipeline_support import (
    Cluster, assert_metrics_equal, make_log, metric, stored, wait_until_quiet,
)
from tests.integration.pipeline_support import sql as cluster_sql

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path, kafka_bootstrap: str) -> Cluster:
    c = Cluster(tmp_path, kafka_bootstrap)
    init = c.cli("init")
    assert init.returncode == 0, init.stderr
    yield c
    c.stop_all()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting until {what}")


def replay(cluster: Cluster, log: Path) -> None:
    done = cluster.cli("replay", "--quiet", str(log))
    assert done.returncode == 0, done.stderr


def test_streamed_metrics_equal_offline_with_bad_and_duplicate_input(cluster: Cluster, tmp_path: Path) -> None:
    """50,000 pairs with 0.5 % malformed lines and 1 % duplicated records: window_metrics equal
    `evaluate` (60 s and 3600 s), each valid pair stored once, each malformed line dead-lettered."""
    log = tmp_path / "replay.jsonl"
    counts = make_log(log, 50_000, seed=1, malformed=0.005, duplicated=0.01)
    assert counts["malformed"] > 100 and counts["duplicated"] > 200
    replay(cluster, log)
    _, port = cluster.start_monitor()
    wait_until_quiet(port, 50_000)
    cluster.stop_all()
    data = tmp_path / "data"
    assert assert_metrics_equal(data, log, 60) > 1000
    assert assert_metrics_equal(data, log, 3600) > 100
    (final, unique), = stored(data, "SELECT (SELECT count() FROM distillwatch.shadow_evaluations FINAL), "
                                    "(SELECT uniqExact(request_id) FROM distillwatch.shadow_evaluations)")
    assert final == unique == 50_000
    (dead,), = stored(data, "SELECT count() FROM distillwatch.dead_letters")
    assert dead == counts["malformed"]


def test_kill_9_mid_window_loses_and_double_counts_nothing(cluster: Cluster, tmp_path: Path) -> None:
    """SIGKILL the monitor at a random point while it works through the log, start it again:
    the final window_metrics equal the offline result; every pair is stored exactly once."""
    log = tmp_path / "replay.jsonl"
    make_log(log, 20_000, seed=2)
    replay(cluster, log)
    proc, _ = cluster.start_monitor()
    time.sleep(random.Random().uniform(5, 9))
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    _, port = cluster.start_monitor()
    wait_until_quiet(port, 20_000)
    cluster.stop_all()
    data = tmp_path / "data"
    assert_metrics_equal(data, log, 60)
    (final, unique), = stored(
        data, "SELECT (SELECT count() FROM distillwatch.shadow_evaluations FINAL), "
              "(SELECT uniqExact(request_id) FROM distillwatch.shadow_evaluations)")
    assert final == unique == 20_000  # lost 0 (unique), double-counted 0 (final − unique)


def test_two_instances_share_partitions_and_one_leaving_loses_nothing(cluster: Cluster, tmp_path: Path) -> None:
    """Two evaluators in one group split the partitions (partials merged by the sink); the one
    without the sink leaves mid-replay; the result equals one instance, equals offline."""
    log = tmp_path / "replay.jsonl"
    make_log(log, 20_000, seed=3)
    _, port = cluster.start_monitor("--instance-id", "evaluator-a")
    second, port_b = cluster.start_monitor("--no-sink", "--instance-id", "evaluator-b", name="second")
    wait_for(lambda: metric(port, "distillwatch_assigned_partitions") == 3.0
             and metric(port_b, "distillwatch_assigned_partitions") == 3.0, "both instances share")
    replay(cluster, log)
    wait_for(lambda: (metric(port_b, "distillwatch_records_total") or 0) > 1000, "the second works")
    second.send_signal(signal.SIGTERM)
    assert second.wait(60) == 0, (tmp_path / "second-1.log").read_text()[-2000:]
    wait_until_quiet(port, 20_000)
    cluster.stop_all()
    data = tmp_path / "data"
    assert_metrics_equal(data, log, 60)
    (parts,), = stored(data, "SELECT uniqExact(part) FROM distillwatch.window_partials")
    assert parts == 6
    (final,), = stored(data, "SELECT count() FROM distillwatch.shadow_evaluations FINAL")
    assert final == 20_000


def test_sigterm_stops_within_30s_and_nothing_is_read_twice(cluster: Cluster, tmp_path: Path) -> None:
    """SIGTERM mid-run: the monitor commits and exits 0 within 30 s; the next run reads only what
    the first had not (the two runs' record counts add up to the input), and the result equals
    offline."""
    log = tmp_path / "replay.jsonl"
    make_log(log, 20_000, seed=5)
    replay(cluster, log)
    first, port = cluster.start_monitor()
    wait_for(lambda: (metric(port, "distillwatch_records_total") or 0) > 5_000, "work under way")
    started = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    assert time.monotonic() - started < 30
    _, port = cluster.start_monitor()
    wait_until_quiet(port, 20_000)
    cluster.stop_all()
    consumed = [int(re.search(r"stopped cleanly: (\d+) records", p.read_text()).group(1))
                for p in sorted(tmp_path.glob("monitor-*.log"))]
    inputs = sum(1 for line in log.read_bytes().splitlines()
                 for key in (b'"request"', b'"teacher":{', b'"student":{', b'"label"') if key in line)
    assert len(consumed) == 2 and consumed[0] > 0 and sum(consumed) == inputs
    assert_metrics_equal(tmp_path / "data", log, 60)


def test_caught_up_evaluator_commits_before_its_checkpoint_interval(cluster: Cluster, tmp_path: Path) -> None:
    """With checkpoint_s and idle_flush_s at 120 s, rows can only reach the store within the
    first minute through the commit the evaluator makes once it has processed all it read
    (evaluator.caught_up_commit_s); the metric counts those commits."""
    cluster.env.update({"DISTILLWATCH_EVALUATOR__CHECKPOINT_S": "120", "DISTILLWATCH_EVALUATOR__IDLE_FLUSH_S": "120",
                        "DISTILLWATCH_EVALUATOR__CAUGHT_UP_COMMIT_S": "0.5"})
    log = tmp_path / "replay.jsonl"
    make_log(log, 2_000, seed=7)
    _, port = cluster.start_monitor()
    wait_for(lambda: (metric(port, "distillwatch_assigned_partitions") or 0) > 0, "partitions assigned")
    replay(cluster, log)
    wait_for(lambda: cluster_sql(port, "SELECT count() FROM distillwatch.shadow_evaluations FINAL")[0][0] == 2_000,
             "every request stored", timeout_s=60)
    assert (metric(port, "distillwatch_caught_up_checkpoints_total") or 0) >= 1
    assert metric(port, "distillwatch_checkpoints_total") == metric(port, "distillwatch_caught_up_checkpoints_total")
