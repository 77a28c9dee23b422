"""F3: the Kafka broker stops for 60 s in the middle of a replay, then starts again.

The session's shared broker serves other tests, so this test runs its own single-node broker
(streams/local_kafka.py) on other ports with its own data directory, and stops it with
SIGTERM (a clean shutdown, as a restart or an upgrade does). Nobody restarts the replay or
the monitor: both must ride out the outage and finish on their own. Afterwards every
acknowledged request is stored once and the windows equal the offline evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from distillwatch.settings import LocalKafkaSettings
from streams.local_kafka import LocalKafka
from tests.faults.fault_support import health, live_rows, records, report, request_ids, start_replay, tally, wait_for
from tests.integration.pipeline_support import (
    Cluster, assert_metrics_equal, free_port, make_log, metric, wait_until_quiet,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

OUTAGE_S = 60
PAIRS = 20_000


def test_f3_broker_down_for_60s_mid_replay_everyone_resumes_and_nothing_is_lost(
        make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    broker = LocalKafka(LocalKafkaSettings(port=free_port(), controller_port=free_port(), heap="512m"), tmp_path)
    broker.start(log=lambda line: print(f"[f3 broker] {line}"))
    try:
        cluster = make_cluster(bootstrap=broker.bootstrap)
        log = tmp_path / "replay.jsonl"
        make_log(log, PAIRS, seed=3)
        sent = request_ids(log)
        proc, port = cluster.start_monitor()
        wait_for(lambda: metric(port, "distillwatch_assigned_partitions") == 6.0, "partitions assigned")
        replaying = start_replay(cluster, log, "--rate", str(PAIRS / 90))
        wait_for(lambda: live_rows(port) > PAIRS // 10, "the first rows are stored")

        stopped_at = live_rows(port)
        assert broker.stop(), "the test broker was not running"
        down = time.monotonic()
        healths: set[int] = set()
        while time.monotonic() - down < OUTAGE_S:
            assert proc.poll() is None, "the monitor exited during the outage"
            assert replaying.poll() is None, "the replay gave up during the outage"
            healths.add(health(port)[0])
            time.sleep(2)
        broker.start(log=lambda line: print(f"[f3 broker] {line}"))
        back = time.monotonic()
        outage_s = round(back - down)

        assert replaying.wait(600) == 0, replaying.stdout.read() if replaying.stdout else ""
        replay_done_s = round(time.monotonic() - back)
        wait_until_quiet(port, PAIRS, timeout_s=600)
        caught_up_s = round(time.monotonic() - back)
        assert proc.poll() is None
        consumed = records(port)
        cluster.stop_all()
    finally:
        broker.stop()
    data = tmp_path / "data"
    counts = tally(data, sent)
    windows = assert_metrics_equal(data, log, 60)
    report("F3", pairs=PAIRS, outage_s=outage_s, rows_when_stopped=stopped_at, health_codes_during=sorted(healths),
           replay_finished_after_restart_s=replay_done_s, caught_up_after_restart_s=caught_up_s,
           records_consumed=consumed, monitor_restarts=0, metric_rows_equal_offline=windows, tally=counts)
    assert counts.lost == counts.duplicated == counts.stored_twice == counts.unexpected == 0, counts
    assert counts.rows == PAIRS
