"""F6: poison input. Every bad message is dead-lettered exactly once, nothing crashes, no
metric becomes NaN, and the monitor's memory grows by at most 200 MB.

Bad input arrives two ways. A replay log with bad lines (``replay`` publishes each such line
raw to shadow.requests, as DESIGN §4 says) and records written straight to every input topic
by a plain producer: broken JSON, NaN and Infinity, probabilities summing to 1.7, missing
ids, wrong types, invalid UTF-8, a lone surrogate, 100,000-deep nesting, an empty record, a
response on the wrong topic, and 5 MB payloads (one broken, one a valid request with a 5 MB
prompt). Kafka's default 1 MB record limit keeps 5 MB records out of a topic; the test raises
shadow.requests' limit to 16 MB first, as a cluster configured for large prompts would.

Expected counts are the messages the test wrote; each dead letter is matched to its message
by the SHA-256 of the raw bytes. The valid part of the log must still equal ``evaluate``.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simulator.traffic import TrafficConfig, World
from tests.faults.fault_support import health, replay, report, rss_mb, wait_for
from tests.integration.pipeline_support import (
    Cluster, assert_metrics_equal, metric, sql, stored, wait_until_quiet,
)

pytestmark = pytest.mark.integration

PAIRS = 3000
FIVE_MB = 5 * 1024 * 1024


def valid_line(world_line: dict[str, Any], rid: str) -> dict[str, Any]:
    line = json.loads(json.dumps(world_line))
    for part in ("request", "teacher", "student"):
        line[part]["request_id"] = rid
    return line


def poison_lines(base: dict[str, Any]) -> dict[str, bytes]:
    """Bad replay lines by name (each is published raw to shadow.requests)."""
    def dump(obj: Any) -> bytes:
        return json.dumps(obj, allow_nan=True).encode()

    nan = valid_line(base, "poison-nan")
    nan["teacher"]["intent_probs"]["faq"] = float("nan")
    inf = valid_line(base, "poison-inf")
    inf["student"]["latency_ms"] = float("inf")
    sum17 = valid_line(base, "poison-sum-1.7")
    sum17["student"]["intent_probs"] = {k: v * 1.7 for k, v in sum17["student"]["intent_probs"].items()}
    no_id = valid_line(base, "poison-no-id")
    del no_id["request"]["request_id"]
    long_id = valid_line(base, "x" * 129)
    bad_slice = valid_line(base, "poison-slice")
    bad_slice["request"]["slice"] = "region=eu"
    utf8 = dump(valid_line(base, "poison-utf8")).replace(b'"prompt": "', b'"prompt": "\xff\xfe\xc3(', 1)
    surrogate = dump(valid_line(base, "poison-surrogate")).replace(b'"prompt": "', b'"prompt": "\\ud800', 1)
    assert b"\xff" in utf8 and b"\\ud800" in surrogate
    return {
        "truncated JSON": dump(valid_line(base, "poison-truncated"))[:200],
        "NaN probability": dump(nan),
        "Infinity latency": dump(inf),
        "probabilities sum to 1.7": dump(sum17),
        "missing request id": dump(no_id),
        "request id of 129 characters": dump(long_id),
        "slice not an object": dump(bad_slice),
        "invalid UTF-8": utf8,
        "lone surrogate": surrogate,
        "100,000-deep nesting": b"[" * 100_000 + b"]" * 100_000,
        "JSON array": b"[1, 2, 3]",
        "JSON null": b"null",
        "empty object": b"{}",
    }


def direct_poison(base: dict[str, Any]) -> list[tuple[str, bytes | None, str]]:
    """(topic, raw value, name) written straight to the input topics."""
    teacher = dict(valid_line(base, "poison-direct")["teacher"])
    student = dict(valid_line(base, "poison-direct")["student"])
    sum17 = dict(teacher, intent_probs={k: v * 1.7 for k, v in teacher["intent_probs"].items()})
    no_id = {k: v for k, v in student.items() if k != "request_id"}
    wrong_role = dict(student, role="student")
    huge_prompt = valid_line(base, "poison-5mb-valid")["request"]
    huge_prompt["prompt"] = "a" * FIVE_MB  # one 5 MB word: hostile to backtracking regexes
    huge_prompt["ts"] = "2026-10-01T00:00:00.000Z"  # a month late: kept as a row, in no window
    return [
        ("shadow.teacher", json.dumps(sum17).encode(), "teacher: probabilities sum to 1.7"),
        ("shadow.teacher", json.dumps(dict(teacher, latency_ms=float("nan"))).encode(), "teacher: NaN latency"),
        ("shadow.teacher", json.dumps(wrong_role).encode(), "teacher topic: a student response"),
        ("shadow.teacher", b'{"request_id": "poison-direct", "role": "teacher", "\xff": 1}', "teacher: invalid UTF-8"),
        ("shadow.student", json.dumps(no_id).encode(), "student: missing request id"),
        ("shadow.student", json.dumps(dict(student, latency_ms=-5)).encode(), "student: negative latency"),
        ("shadow.student", b'{"request_id": "poison-direct", "role": "student", "answer": "\\udfff"}',
         "student: lone surrogate"),
        ("shadow.teacher_replica", b"not json at all", "replica: not JSON"),
        ("shadow.labels", json.dumps({"request_id": "poison-direct", "ts": teacher["ts"],
                                      "source": "human"}).encode(), "label: says nothing"),
        ("shadow.labels", json.dumps({"request_id": "poison-direct", "ts": teacher["ts"], "source": "robot",
                                      "intent": "faq"}).encode(), "label: unknown source"),
        ("shadow.requests", None, "request: empty record"),
        ("shadow.requests", random.Random(6).randbytes(FIVE_MB), "request: 5 MB of random bytes"),
    ] + [("shadow.requests", json.dumps(huge_prompt).encode(), "VALID: request with a 5 MB prompt")]


def produce(cluster: Cluster, records: list[tuple[str, bytes | None, str]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": cluster.env["DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS"],
                         "message.max.bytes": 16 * 1024 * 1024, "acks": "all"})
    failures: list[str] = []
    for i, (topic, value, name) in enumerate(records):
        producer.produce(cluster.prefix + topic, value, f"poison-{i}".encode(),
                         on_delivery=lambda err, _m, name=name: err and failures.append(f"{name}: {err}"))
    assert producer.flush(120) == 0 and not failures, failures


def allow_big_requests(cluster: Cluster) -> None:
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient({"bootstrap.servers": cluster.env["DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS"]})
    resource = ConfigResource("topic", cluster.prefix + "shadow.requests", incremental_configs=[
        ConfigEntry("max.message.bytes", str(16 * 1024 * 1024),
                    incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()


def dlq_records(cluster: Cluster) -> tuple[int, list[dict[str, str]]]:
    """Committed records on the dead-letter topic, and the headers of those kept truncated."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    topic = cluster.prefix + "shadow.dlq"
    consumer = Consumer({"bootstrap.servers": cluster.env["DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS"],
                         "group.id": "f6-dlq-count", "enable.partition.eof": True,
                         "isolation.level": "read_committed", "fetch.max.bytes": 64 * 1024 * 1024})
    try:
        parts = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        done, count, truncated, deadline = set(), 0, [], time.monotonic() + 60
        while len(done) < len(parts) and time.monotonic() < deadline:
            for msg in consumer.consume(500, 1.0):
                if msg.error() is None:
                    count += 1
                    headers = {k: v.decode() for k, v in msg.headers() or []}
                    if "truncated_from" in headers:
                        truncated.append(headers | {"kept_bytes": str(len(msg.value() or b""))})
                elif msg.error().code() == KafkaError._PARTITION_EOF:
                    done.add(msg.partition())
        assert len(done) == len(parts)
        return count, truncated
    finally:
        consumer.close()


def test_f6_poison_is_dead_lettered_exactly_once_without_crash_nan_or_memory_growth(
        make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    cluster = make_cluster()
    allow_big_requests(cluster)
    world = World(TrafficConfig(pairs=PAIRS, rate_per_s=20), seed=6)
    lines = [json.dumps(line).encode() for line in world.lines()]
    base = json.loads(next(raw for raw in lines if b'"request"' in raw))
    bad_lines = poison_lines(base)
    step = len(lines) // (len(bad_lines) + 1)
    for i, raw in enumerate(bad_lines.values()):  # spread through the log
        lines.insert((i + 1) * step + i, raw)
    log = tmp_path / "poisoned.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    direct = direct_poison(base)
    expected = {hashlib.sha256(raw).hexdigest(): name for name, raw in bad_lines.items()}
    expected |= {hashlib.sha256(value or b"").hexdigest(): name for _, value, name in direct
                 if not name.startswith("VALID")}
    assert len(expected) == len(bad_lines) + len(direct) - 1

    proc, port = cluster.start_monitor()
    replay(cluster, log)
    wait_until_quiet(port, PAIRS)
    baseline_mb = rss_mb(proc.pid)
    produce(cluster, direct)
    peak_mb, started = baseline_mb, time.monotonic()
    while (metric(port, "distillwatch_dead_letters_total") or 0) < len(expected) and time.monotonic() - started < 300:
        assert proc.poll() is None, "the monitor died"
        peak_mb = max(peak_mb, rss_mb(proc.pid))
        time.sleep(0.3)
    wait_until_quiet(port, PAIRS + 1)
    peak_mb = max(peak_mb, rss_mb(proc.pid))
    assert proc.poll() is None and health(port)[0] == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        exposition = resp.read().decode()
    dead_total = metric(port, "distillwatch_dead_letters_total")
    (huge_row,), = sql(port, "SELECT count() FROM distillwatch.shadow_evaluations FINAL "
                             "WHERE request_id = 'poison-5mb-valid' AND late = 1")
    cluster.stop_all()
    data = tmp_path / "data"

    rows = stored(data, "SELECT sha256, error, raw_size, lengthUTF8(raw_truncated) FROM distillwatch.dead_letters")
    by_sha: dict[str, list[tuple[str, int, int]]] = {}
    for sha, error, size, kept in rows:
        by_sha.setdefault(sha.decode() if isinstance(sha, bytes) else sha, []).append((error, size, kept))
    missing = {name for sha, name in expected.items() if sha not in by_sha}
    twice = {expected.get(sha, sha): len(v) for sha, v in by_sha.items() if len(v) > 1}
    unexpected = set(by_sha) - set(expected)
    assert not missing and not twice and not unexpected, (missing, twice, unexpected)
    errors = {expected[sha]: v[0][0] for sha, v in by_sha.items()}
    assert "UTF-8" in errors["invalid UTF-8"] and "JSON" in errors["truncated JSON"]
    assert "request_id" in errors["missing request id"] and "role" in errors["teacher topic: a student response"]
    (big,) = by_sha[hashlib.sha256(direct[-2][1] or b"").hexdigest()]
    assert big[1] == len(direct[-2][1] or b"") and big[2] <= 4096  # size recorded, raw truncated

    nan_metrics, = stored(data, """
        SELECT countIf(isNaN(ifNull(value, 0)) OR isInfinite(ifNull(value, 0))
                       OR isNaN(ifNull(numerator, 0)) OR isNaN(ifNull(denominator, 0))
                       OR isNaN(ifNull(ci_low, 0)) OR isNaN(ifNull(ci_high, 0)))
        FROM distillwatch.window_metrics""")
    nan_exposed = [line for line in exposition.splitlines()
                   if not line.startswith("#") and ("NaN" in line or "Inf" in line)]
    dlq, truncated = dlq_records(cluster)
    windows = assert_metrics_equal(data, log, 60)
    growth = peak_mb - baseline_mb
    report("F6", poison_messages=len(expected), dead_letter_rows=len(rows), dead_letters_metric=dead_total,
           dlq_topic_records=dlq, dlq_truncated=len(truncated), per_kind=sorted(errors), nan_in_window_metrics=nan_metrics[0],
           nan_in_prometheus=len(nan_exposed), monitor_rss_baseline_mb=round(baseline_mb),
           monitor_rss_peak_mb=round(peak_mb), growth_mb=round(growth), five_mb_valid_request_row=huge_row,
           metric_rows_equal_offline=windows)
    assert len(rows) == dead_total == dlq == len(expected)
    assert nan_metrics[0] == 0 and not nan_exposed
    assert huge_row == 1
    big_raw = direct[-2][1] or b""  # the 5 MB record, in the DLQ topic cut to 1,000,000 bytes
    assert truncated == [{"error": truncated[0]["error"], "source_topic": cluster.prefix + "shadow.requests",
                          "source_partition": truncated[0]["source_partition"],
                          "source_offset": truncated[0]["source_offset"], "truncated_from": str(len(big_raw)),
                          "sha256": hashlib.sha256(big_raw).hexdigest(), "kept_bytes": "1000000"}]
    assert growth <= 200, growth
