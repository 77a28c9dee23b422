"""F7: ClickHouse unavailable while the pipeline runs.

The embedded store has no server to stop, so the outage is injected where the sink talks to
ClickHouse (streams/fault_injection.py, enabled only by the variable this test sets): while a
file exists, each sink call raises clickhouse-connect's OperationalError, the error a
server that does not answer produces. Reads through the monitor's API still work, which is
how the test watches the store while the sink cannot write.

During the outage the sink must hold its batch (one batch: a bounded buffer), pause
consumption, commit nothing and say so in /healthz and /metrics, while the evaluator goes on
writing its output to Kafka. After it, nothing is lost or stored twice and the windows equal
the offline evaluation. The slow variant lasts 2 minutes and also kills the monitor with
SIGKILL in the middle of the outage: had offsets passed the last durable write, the batch
held at that moment would be lost.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.fault_injection import STORE_DOWN_ENV
from tests.faults.fault_support import (
    committed, health, live_rows, records, report, request_ids, rss_mb, start_replay, tally,
    wait_for,
)
from tests.integration.pipeline_support import (
    Cluster, assert_metrics_equal, make_log, metric, wait_until_quiet,
)

pytestmark = pytest.mark.integration

SINK_BATCH = 2000
"""The sink consumes at most this many messages per batch (streams/sink.py)."""


def run_outage(make_cluster: Callable[..., Cluster], tmp_path: Path, pairs: int, outage_s: float,
               kill_midway: bool, replay_s: float = 40) -> None:
    down = tmp_path / "clickhouse-down"
    cluster = make_cluster(**{STORE_DOWN_ENV: str(down)})
    log = tmp_path / "replay.jsonl"
    make_log(log, pairs, seed=7)
    sent = request_ids(log)
    proc, port = cluster.start_monitor()
    wait_for(lambda: metric(port, "distillwatch_assigned_partitions") == 6.0, "partitions assigned")
    replaying = start_replay(cluster, log, "--rate", str(pairs / replay_s))
    wait_for(lambda: live_rows(port) > pairs // 10, "the first rows are stored")

    down.touch()
    started = time.monotonic()
    wait_for(lambda: metric(port, "distillwatch_sink_store_up") == 0.0, "the sink notices the outage", 60)
    sink_group = cluster.env["DISTILLWATCH_EVALUATOR__GROUP_ID"] + "-sink"
    frozen_offsets = committed(cluster, sink_group, ["distill.rows", "distill.partials"])
    frozen_rows = live_rows(port)
    records_at_start, rss_at_start = records(port), rss_mb(proc.pid)
    samples, held_max, rss_max, killed_at, evaluated_before_kill = 0, 0.0, rss_at_start, None, 0.0
    while time.monotonic() - started < outage_s:
        if kill_midway and killed_at is None and time.monotonic() - started > outage_s / 2:
            evaluated_before_kill = records(port) - records_at_start
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            killed_at = time.monotonic() - started
            proc, port = cluster.start_monitor()
            wait_for(lambda: metric(port, "distillwatch_sink_store_up") == 0.0, "the new sink meets the outage", 60)
        code, body = health(port)
        assert code == 503 and "ClickHouse writes failing" in body["detail"], (code, body)
        held = metric(port, "distillwatch_sink_held_messages") or 0.0
        assert 0 < held <= SINK_BATCH, held
        assert committed(cluster, sink_group, ["distill.rows", "distill.partials"]) == frozen_offsets
        assert live_rows(port) == frozen_rows
        held_max, rss_max = max(held_max, held), max(rss_max, rss_mb(proc.pid))
        samples += 1
        time.sleep(random.uniform(0.5, 2))
    # The evaluator kept working (its output waits in Kafka); after a kill, the new one too.
    evaluated_meanwhile = evaluated_before_kill + records(port) - (0 if killed_at else records_at_start)
    assert evaluated_meanwhile > 0 and (not killed_at or evaluated_before_kill > 0 and records(port) > 0)
    down.unlink()
    recovered = time.monotonic()

    assert replaying.wait(300) == 0, replaying.stdout.read() if replaying.stdout else ""
    wait_for(lambda: health(port)[0] == 200, "healthy again", 120)
    healthy_after_s = time.monotonic() - recovered
    retries = metric(port, "distillwatch_sink_store_retries")
    wait_until_quiet(port, pairs)
    cluster.stop_all()
    data = tmp_path / "data"
    counts = tally(data, sent)
    windows = assert_metrics_equal(data, log, 60)
    report("F7", pairs=pairs, outage_s=round(recovered - started),
           kill_during_outage_at_s=killed_at and round(killed_at), samples=samples,
           held_messages_max=held_max, committed_offsets_moved=False, rows_written_during_outage=0,
           monitor_rss_growth_mb=round(rss_max - rss_at_start, 1), sink_retries=retries,
           records_evaluated_during_outage=evaluated_meanwhile,
           healthy_again_after_s=round(healthy_after_s, 1), windows_equal_offline=windows, tally=counts)
    assert counts.lost == counts.duplicated == counts.stored_twice == counts.unexpected == 0, counts
    assert counts.rows == pairs


def test_f7_store_outage_pauses_the_sink_and_loses_nothing(make_cluster: Callable[..., Cluster],
                                                          tmp_path: Path) -> None:
    """Core variant: a 10 s outage in the middle of a 6,000-pair replay."""
    run_outage(make_cluster, tmp_path, 6_000, outage_s=10, kill_midway=False, replay_s=25)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_f7_two_minute_outage_with_a_kill_in_the_middle(make_cluster: Callable[..., Cluster],
                                                       tmp_path: Path) -> None:
    """Full variant: 2 minutes down, the monitor SIGKILLed and restarted half-way through."""
    run_outage(make_cluster, tmp_path, 50_000, outage_s=120, kill_midway=True, replay_s=200)
