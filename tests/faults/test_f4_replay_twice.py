"""F4: the same log replayed twice, with the consumer groups reset to the earliest offsets.

After a first pass (replay, monitor until quiet, stop), the log is published a second time
and both consumer groups, the evaluator's and the sink's, are reset to offset 0 of every
partition of their topics, as an operator would with ``kafka-consumer-groups
--reset-offsets --to-earliest``. Then the monitor runs again.

Expected: not one new request row (physically: ``count()`` of shadow_evaluations does not
change), every window value unchanged and equal to the offline evaluation of the log, and
each malformed line of the second copy dead-lettered exactly once.

Why it holds: the evaluator's position lives in its transactional checkpoints (DESIGN §2),
so the group reset does not make it read the first copy again; every request of the second
copy is a duplicate within the de-duplication horizon (1,800 s of event time, capped at
2 × max_handles ids per partition; this log spans 40 s). The sink does re-read all of
distill.rows and distill.partials, and each insert carries its Kafka coordinates as its
deduplication token, so ClickHouse drops them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.faults.fault_support import event_counter, replay, report, request_ids, tally
from tests.integration.pipeline_support import (
    Cluster, assert_metrics_equal, make_log, stored, wait_until_quiet,
)

pytestmark = pytest.mark.integration

INPUTS = ["shadow.requests", "shadow.teacher", "shadow.student", "shadow.teacher_replica", "shadow.labels"]
OUTPUTS = ["distill.rows", "distill.partials"]
PAIRS = 4_000


def reset_to_earliest(cluster: Cluster, group: str, names: list[str], partitions: int = 6) -> None:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cluster.env["DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS"]})
    parts = [TopicPartition(cluster.prefix + n, p, 0) for n in names for p in range(partitions)]
    for future in admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, parts)]).values():
        done = future.result()
        assert all(tp.error is None and tp.offset == 0 for tp in done.topic_partitions), done


def snapshot(data: Path) -> dict[str, int]:
    (evals, dead, metrics, checksum), = stored(data, """
        SELECT (SELECT count() FROM distillwatch.shadow_evaluations),
               (SELECT count() FROM distillwatch.dead_letters),
               (SELECT count() FROM distillwatch.window_metrics FINAL),
               (SELECT groupBitXor(cityHash64(window_s, window_start, slice, metric, value, numerator,
                                              denominator, support, ci_low, ci_high))
                FROM distillwatch.window_metrics FINAL)""")
    return {"shadow_evaluations": evals, "dead_letters": dead, "window_metric_rows": metrics,
            "window_values_checksum": checksum}


def test_f4_replaying_the_log_twice_changes_nothing(cluster: Cluster, tmp_path: Path) -> None:
    log = tmp_path / "replay.jsonl"
    counts = make_log(log, PAIRS, seed=4, malformed=0.003, duplicated=0.01)
    sent = request_ids(log)
    replay(cluster, log)
    _, port = cluster.start_monitor()
    wait_until_quiet(port, PAIRS)
    cluster.stop_all()
    data = tmp_path / "data"
    first = snapshot(data)
    assert first["dead_letters"] == counts["malformed"]

    replay(cluster, log)
    group = cluster.env["DISTILLWATCH_EVALUATOR__GROUP_ID"]
    reset_to_earliest(cluster, group, INPUTS)
    reset_to_earliest(cluster, f"{group}-sink", OUTPUTS)
    _, port = cluster.start_monitor()
    wait_until_quiet(port, PAIRS)
    duplicates = event_counter(port, "duplicates")
    cluster.stop_all()
    second = snapshot(data)
    consumed = [int(re.search(r"stopped cleanly: (\d+) records", p.read_text()).group(1))
                for p in sorted(tmp_path.glob("monitor-*.log"))]

    counts_stored = tally(data, sent)
    windows = assert_metrics_equal(data, log, 60) + assert_metrics_equal(data, log, 3600)
    report("F4", pairs=PAIRS, first=first, second=second, records_consumed_per_run=consumed,
           evaluator_duplicates_total=duplicates, duplicate_records_in_log=counts["duplicated"],
           new_request_rows=second["shadow_evaluations"] - first["shadow_evaluations"],
           new_dead_letters=second["dead_letters"] - first["dead_letters"],
           metric_rows_equal_offline=windows, tally=counts_stored)
    assert second["shadow_evaluations"] == first["shadow_evaluations"]  # 0 new rows
    assert second["window_values_checksum"] == first["window_values_checksum"]
    assert second["window_metric_rows"] == first["window_metric_rows"]
    assert second["dead_letters"] - first["dead_letters"] == counts["malformed"]  # the 2nd copy's, once
    assert consumed[1] == consumed[0]  # the second run read the second copy only
    assert duplicates == PAIRS + 2 * counts["duplicated"]  # both runs' (counters live in checkpoints)
    assert counts_stored.lost == counts_stored.duplicated == counts_stored.stored_twice == 0, counts_stored
