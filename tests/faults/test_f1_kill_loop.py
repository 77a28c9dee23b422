"""F1: the monitor is killed with SIGKILL five times at random points while a log is replayed.

Each incarnation is killed a random 0.2–5 s after it has started consuming (mid-batch,
mid-transaction or mid-insert: wherever it happens to be), and restarted at once. The
replay runs alongside at a fixed rate, so the kills fall while input is still arriving.
Afterwards every acknowledged request is stored once, every malformed line is
dead-lettered once, and every window equals the offline evaluation.

The seed of the kill schedule is printed; ``DW_FAULTS_SEED=N`` replays a schedule.
CI runs 20,000 pairs; the 100,000-pair run is marked slow.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.faults.fault_support import (
    records, replay, report, request_ids, start_replay, tally, wait_for,
)
from tests.integration.pipeline_support import (
    Cluster, assert_metrics_equal, make_log, metric, stored, wait_until_quiet,
)

pytestmark = pytest.mark.integration

KILLS = 5


def kill_loop(cluster: Cluster, tmp_path: Path, pairs: int, replay_s: float) -> None:
    seed = int(os.environ.get("DW_FAULTS_SEED") or random.randrange(1 << 30))
    print(f"\nF1 kill schedule seed {seed} (DW_FAULTS_SEED={seed} repeats it)")
    rng = random.Random(seed)
    log = tmp_path / "replay.jsonl"
    counts = make_log(log, pairs, seed=11, malformed=0.002, duplicated=0.005)
    sent = request_ids(log)
    assert len(sent) == pairs
    proc, port = cluster.start_monitor()
    wait_for(lambda: metric(port, "distillwatch_assigned_partitions") == 6.0, "partitions assigned")
    replaying = start_replay(cluster, log, "--rate", str(pairs / replay_s))
    started = time.monotonic()
    kills: list[dict[str, float]] = []
    for _ in range(KILLS):
        wait_for(lambda: records(port) > 0 or replaying.poll() is not None, "the monitor consumes", 120)
        time.sleep(rng.uniform(0.2, 5))
        consumed = records(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        kills.append({"at_s": round(time.monotonic() - started, 1), "records_since_start": consumed})
        proc, port = cluster.start_monitor()
    replay_running_at_last_kill = replaying.poll() is None
    assert replaying.wait(600) == 0, replaying.stdout.read() if replaying.stdout else ""
    wait_until_quiet(port, pairs, timeout_s=600)
    cluster.stop_all()
    data = tmp_path / "data"
    counts_stored = tally(data, sent)
    windows = assert_metrics_equal(data, log, 60) + assert_metrics_equal(data, log, 3600)
    (dead, dead_unique), = stored(data, "SELECT count(), uniqExact(topic, partition, offset) "
                                        "FROM distillwatch.dead_letters")
    report("F1", pairs=pairs, seed=seed, kills=kills, replay_running_at_last_kill=replay_running_at_last_kill,
           malformed_lines=counts["malformed"], dead_letters=dead, duplicate_records=counts["duplicated"],
           metric_rows_equal_offline=windows, seconds=round(time.monotonic() - started), tally=counts_stored)
    assert counts_stored.lost == counts_stored.duplicated == 0, counts_stored
    assert counts_stored.stored_twice == counts_stored.unexpected == 0, counts_stored
    assert counts_stored.rows == pairs
    assert dead == dead_unique == counts["malformed"]


def test_f1_five_kills_during_a_20k_replay(cluster: Cluster, tmp_path: Path) -> None:
    kill_loop(cluster, tmp_path, 20_000, replay_s=30)


@pytest.mark.slow
def test_f1_five_kills_during_a_100k_replay(cluster: Cluster, tmp_path: Path) -> None:
    kill_loop(cluster, tmp_path, 100_000, replay_s=60)


def committed_lag(port: int) -> float | None:
    """Records behind the log end as of the last committed checkpoint (None before one)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        lags = [float(line.rsplit(" ", 1)[1]) for line in resp.read().decode().splitlines()
                if line.startswith("distillwatch_consumer_lag{")]
    return sum(lags) if lags else None


def test_a_restarted_monitor_joins_restored_requests_before_it_calls_the_input_idle(
        cluster: Cluster, tmp_path: Path) -> None:
    """Found by F1. Requests whose teacher answer had not come yet are in the checkpoint when
    the monitor is killed; the answers are in Kafka when it restarts. The idle flush (which
    evaluates waiting requests as unanswered) used to count idleness from the process start, so
    it fired as soon as the partitions were assigned, before the waiting answers were read."""
    import orjson

    log = tmp_path / "replay.jsonl"
    make_log(log, 2_000, seed=12)
    lines = [orjson.loads(raw) for raw in log.read_bytes().splitlines()]
    without_teacher = tmp_path / "requests-and-students.jsonl"
    without_teacher.write_bytes(b"".join(orjson.dumps({**ln, "teacher": None} if "request" in ln else ln) + b"\n"
                                         for ln in lines))
    replay(cluster, without_teacher)
    slow_idle = {"DISTILLWATCH_EVALUATOR__IDLE_FLUSH_S": "3600"}
    cluster.env.update(slow_idle)
    first, port = cluster.start_monitor()
    inputs = sum(1 + bool(ln.get("student")) if "request" in ln else "label" in ln for ln in lines)
    wait_for(lambda: records(port) >= inputs, "requests and student answers are read")
    wait_for(lambda: committed_lag(port) == 0, "a checkpoint holds them, waiting for their teacher")
    first.send_signal(signal.SIGKILL)
    first.wait(30)

    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": cluster.env["DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS"]})
    for ln in lines:
        if "request" in ln and ln.get("teacher"):
            producer.produce(cluster.prefix + "shadow.teacher", orjson.dumps(ln["teacher"]),
                             ln["request"]["request_id"].encode())
    assert producer.flush(60) == 0
    for key in slow_idle:
        del cluster.env[key]
    _, port = cluster.start_monitor()
    wait_until_quiet(port, 2_000)
    cluster.stop_all()
    data = tmp_path / "data"
    (unanswered,), = stored(data, "SELECT countIf(teacher_present = 0) FROM distillwatch.shadow_evaluations FINAL")
    want = sum(1 for ln in lines if "request" in ln and not ln.get("teacher"))
    assert unanswered == want
    assert_metrics_equal(data, log, 60)
