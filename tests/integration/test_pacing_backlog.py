"""A backlog whose topics were written one after the other: the evaluator paces its reading.

Every request is published first, then every student answer, then every teacher answer (one
in 30 never written: that worker "was down"), each record stamped with its request's time. A
consumer reading the topics as fetched would hold most requests in its join buffer, waiting
for answers it has not read. With ``evaluator.max_join_buffer`` the monitor reads the topics
in timestamp order once the buffer is over the bound. Checked against a real broker and the
embedded store: the buffer's peak stays near the bound, topics were paused, and every window
equals offline ``evaluate`` of the same traffic (so pacing changed no figure).
"""

from __future__ import annotations

import random
import time
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from streams import topics
from streams.replay import messages_of
from tests.integration.pipeline_support import (
    Cluster, assert_metrics_equal, make_log, metric, stored, wait_until_quiet,
)

pytestmark = pytest.mark.integration

PAIRS = 6000
LIMIT = 100
BATCH = 200
PARTITIONS = 6


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def publish_topic_by_topic(cluster: Cluster, log: Path, bootstrap: str, drop_teacher: set[str]) -> Path:
    """Publish the log topic by topic, each record stamped with its request's time moved to end
    now; returns the log as the monitor receives it (without the dropped teacher answers).

    Moved: the simulated traffic starts on a fixed date, and records stamped that long ago are
    past the local broker's retention (24 h), which deletes them at its next check (every 5
    minutes): the test then saw no record at all whenever a check fell between publishing and
    reading. Moving every stamp by one amount keeps their order and spacing, all pacing reads.
    """
    from confluent_kafka import Producer

    order = [topics.CATALOG, topics.REQUESTS, topics.STUDENT, topics.TEACHER, topics.LABELS]
    by_topic: dict[str, list[tuple[bytes | None, bytes, int]]] = {t: [] for t in order}
    received: list[bytes] = []
    now_ms = 0
    for raw in log.read_bytes().splitlines():
        data = orjson.loads(raw)
        if "request" in data:
            now_ms = _ms(data["request"]["ts"])
            if data["request"]["request_id"] in drop_teacher:
                data["teacher"] = None
                raw = orjson.dumps(data)
        received.append(raw)
        for topic, key, value in messages_of(raw):
            by_topic[topic].append((key, value, now_ms))
    shift_ms = int(time.time() * 1000) - now_ms  # the last request's time becomes now
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for topic in order:
        for key, value, ts in by_topic[topic]:
            producer.produce(cluster.prefix + topic, value, key, timestamp=ts + shift_ms)
            producer.poll(0)
        assert producer.flush(60) == 0
    out = log.with_name("received.jsonl")
    out.write_bytes(b"\n".join(received) + b"\n")
    return out


def test_topics_written_one_after_another_are_read_in_time_order(tmp_path: Path, kafka_bootstrap: str) -> None:
    cluster = Cluster(tmp_path, kafka_bootstrap)
    cluster.env.update({"DISTILLWATCH_EVALUATOR__MAX_JOIN_BUFFER": str(LIMIT),
                        "DISTILLWATCH_EVALUATOR__BATCH_SIZE": str(BATCH)})
    try:
        init = cluster.cli("init")
        assert init.returncode == 0, init.stderr
        log = tmp_path / "log.jsonl"
        make_log(log, PAIRS, seed=11)
        ids = [orjson.loads(x)["request"]["request_id"] for x in log.read_bytes().splitlines()
               if x.startswith(b'{"request"')]
        drop = set(random.Random(3).sample(ids, PAIRS // 30))
        received = publish_topic_by_topic(cluster, log, kafka_bootstrap, drop)

        _, port = cluster.start_monitor()
        wait_until_quiet(port, PAIRS)
        pauses = metric(port, "distillwatch_input_pauses_total")
        peak = metric(port, "distillwatch_join_buffer_peak")
    finally:
        cluster.stop_all()

    assert pauses is not None and pauses > 0, (pauses, peak)
    # The bound on every partition, plus what pacing cannot hold back: a read batch (the
    # check follows each batch), the labels (never paced; they wait for their requests), the
    # requests whose teacher answer never comes (they wait for the join timeout), and up to a
    # second (SLACK_MS) of traffic a topic may run ahead. Far under the ~PAIRS requests the
    # consumer held with pacing off (6,000 in the run that checked this test can fail).
    labels = sum(1 for x in received.read_bytes().splitlines() if x.startswith(b'{"label"'))
    bound = PARTITIONS * LIMIT + BATCH + labels + len(drop) + 2 * 100
    assert peak is not None and peak <= bound, (peak, bound)
    data = tmp_path / "data"
    (n, unique, teachers, students), = stored(
        data, "SELECT count(), uniqExact(request_id), sum(teacher_present), sum(student_present) "
              "FROM distillwatch.shadow_evaluations FINAL")
    assert n == unique == PAIRS
    assert teachers == PAIRS - len(drop) and students == PAIRS  # every join that could complete did
    assert assert_metrics_equal(data, received, 60) > 100
