"""Workers against the real broker: every request answered exactly once, offsets committed
only for answered batches, replayed answers equal the recorded ones, SIGTERM drains a batch."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

import schemas
from distillwatch.settings import Settings, load_settings
from schemas import ModelResponse
from streams.kafka_io import producer_config
from streams.topics import ensure_topics
from tests.fake_model_server import PROBS, FakeModelServer

pytestmark = pytest.mark.integration
PARTITIONS = 6


def kind_of(i: int) -> str:
    """What the fake server does with request i (see tests/fake_model_server.py)."""
    for kind, modulus, rest in (("down", 25, 7), ("bad", 30, 11), ("slow", 50, 13),
                                ("flaky", 20, 3), ("limited", 100, 17)):
        if i % modulus == rest:
            return kind
    return "ok"


EXPECTED_ERROR = {"down": "http_503", "bad": "http_400", "slow": "timeout"}


def request(rid: str, i: int) -> dict[str, Any]:
    return {"request_id": rid, "ts": f"2025-03-01T12:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "prompt": f"{rid} いつ届きますか? #{i}", "slice": {"region": ("jp", "us")[i % 2]},
            "trace_id": f"t-{i}"}


@pytest.fixture
def settings(kafka_bootstrap: str, unique_prefix: str, drop_topics_with_prefix: list[str]) -> Settings:
    drop_topics_with_prefix.append(unique_prefix)
    s = load_settings(topic_prefix=unique_prefix, kafka={"bootstrap_servers": kafka_bootstrap},
                      topics={"partitions": PARTITIONS})
    ensure_topics(s)
    return s


def env_of(settings: Settings) -> dict[str, str]:
    return {"DISTILLWATCH_TOPIC_PREFIX": settings.topic_prefix,
            "DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers}


def publish(settings: Settings, values: list[tuple[bytes | None, bytes]]) -> None:
    from confluent_kafka import Producer

    producer = Producer(producer_config(settings))
    failed: list[Any] = []
    for key, value in values:
        producer.produce(settings.topic("shadow.requests"), value, key,
                         on_delivery=lambda err, _m: err is not None and failed.append(err))
    assert producer.flush(30) == 0 and failed == []


def read_all(settings: Settings, topic: str, at_least: int, settle_s: float = 2.0) -> list[Any]:
    """Every record of a topic: read until ``at_least`` arrived and nothing more for settle_s."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                         "group.id": f"dw-read-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([settings.topic(topic)])
    out: list[Any] = []
    deadline, quiet_since = time.monotonic() + 90, time.monotonic()
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                if len(out) >= at_least and time.monotonic() - quiet_since >= settle_s:
                    break
                continue
            assert msg.error() is None, msg.error()
            out.append(msg)
            quiet_since = time.monotonic()
    finally:
        consumer.close()
    return out


def committed_lag(settings: Settings, role: str) -> int:
    """Records of shadow.requests the worker group has not committed."""
    from confluent_kafka import Consumer, TopicPartition

    topic = settings.topic("shadow.requests")
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                         "group.id": f"{settings.topic_prefix}distillwatch-worker-{role}"})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        lag = 0
        for tp in parts:
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def test_student_worker_answers_every_request_once_despite_a_flaky_endpoint(
        settings: Settings, run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    run = uuid.uuid4().hex[:6]
    ids = {f"{kind_of(i)}-{run}-{i:04d}": i for i in range(300)}
    values = [(rid.encode(), orjson.dumps(request(rid, i))) for rid, i in ids.items()]
    values[150:150] = [(None, b"not json"), (b"x", orjson.dumps({"request_id": "x", "slice": {}}))]
    publish(settings, values)

    with FakeModelServer(slow_s=1.5) as server:
        proc = run_cli("worker", "student", "--backend", "http", "--endpoint", server.url + "/predict",
                       "--model", "student-http", "--model-version", "t1", "--timeout-s", "0.5",
                       "--retries", "2", "--concurrency", "8", "--idle-exit-s", "3",
                       env=env_of(settings), timeout=180)
        assert proc.returncode == 0, proc.stderr
        assert "302 records, 2 invalid (skipped), 300 responses acknowledged" in proc.stderr

        records = read_all(settings, "shadow.student", at_least=300)
        responses = [schemas.parse(ModelResponse, m.value()) for m in records]
        assert len(responses) == 300
        assert sorted(r.request_id for r in responses) == sorted(ids)
        assert all(m.key() == r.request_id.encode() for m, r in zip(records, responses))
        for r in responses:
            kind = kind_of(ids[r.request_id])
            assert r.role == "student" and r.model == "student-http" and r.model_version == "t1"
            assert r.error == EXPECTED_ERROR.get(kind), (r.request_id, r.error)
            assert r.intent_probs == (None if kind in EXPECTED_ERROR else PROBS)
            assert server.hit_count(r.request_id) == {"flaky": 2, "limited": 2, "down": 3,
                                                      "slow": 3}.get(kind, 1), r.request_id
            assert r.ts.tzinfo is not None and r.latency_ms >= 0
        assert orjson.loads(records[0].value())["ts"].endswith("Z")
        assert committed_lag(settings, "student") == 0

        again = run_cli("worker", "student", "--backend", "http", "--endpoint", server.url,
                        "--idle-exit-s", "2", env=env_of(settings), timeout=120)
        assert again.returncode == 0, again.stderr
        assert "0 records" in again.stderr  # everything answered was committed


def test_replay_worker_publishes_the_recorded_responses(
        settings: Settings, run_cli: Callable[..., subprocess.CompletedProcess[str]],
        tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    lines, recorded = [], {}
    for i in range(120):
        rid = f"rp-{run}-{i:04d}"
        teacher: dict[str, Any] | None = {
            "request_id": rid, "ts": f"2025-03-01T12:00:{i % 60:02d}.5+09:00", "role": "teacher",
            "model": "teacher-xl", "model_version": "2025-02", "latency_ms": 100 + i,
            "intent_probs": {"faq": 0.6, "returns": 0.4}, "answer": f"a{i}", "cost_usd": 0.003,
            "claims": [{"entity_id": "e1", "attribute": "volumes", "value": ["1", "2"]}],
            "data_snapshot_ts": "2025-01-01T00:00:00Z", "vendor_trace": {"n": i}}
        if i % 10 == 4:
            teacher = None
        elif i % 10 == 7:
            teacher = {k: v for k, v in teacher.items() if k != "intent_probs"} | {"error": "unavailable"}
        if teacher is not None:
            recorded[rid] = teacher
        lines.append({"request": request(rid, i), "teacher": teacher, "student": None})
    log = tmp_path / "recorded.jsonl"
    log.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    publish(settings, [(line["request"]["request_id"].encode(), orjson.dumps(line["request"]))
                       for line in lines])

    proc = run_cli("worker", "teacher", "--backend", "replay", "--replay-log", str(log),
                   "--batch-size", "16", "--idle-exit-s", "3", env=env_of(settings), timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = read_all(settings, "shadow.teacher", at_least=120)
    assert len(records) == 120
    for m in records:
        got = schemas.parse(ModelResponse, m.value())
        if got.request_id in recorded:
            assert got == schemas.validate(ModelResponse, recorded[got.request_id])
            assert orjson.loads(m.value())["vendor_trace"] == recorded[got.request_id]["vendor_trace"]
        else:
            assert got.error == "no_recorded_response" and got.role == "teacher"
    assert {schemas.parse(ModelResponse, m.value()).request_id for m in records} == \
        {line["request"]["request_id"] for line in lines}
    assert committed_lag(settings, "teacher") == 0


def test_sigterm_finishes_the_batch_commits_and_exits_zero(
        settings: Settings, child_env: Callable[..., dict[str, str]],
        run_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    ids = [f"work-{run}-{i:03d}" for i in range(120)]
    publish(settings, [(rid.encode(), orjson.dumps(request(rid, i))) for i, rid in enumerate(ids)])
    args = ["worker", "student", "--backend", "http", "--concurrency", "2", "--batch-size", "8"]
    with FakeModelServer(work_s=0.1) as server:
        proc = subprocess.Popen([sys.executable, "-m", "distillwatch", *args, "--endpoint", server.url],
                                cwd=tmp_path, env=child_env(**env_of(settings)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while sum(len(h) for h in list(server.hits.values())) < 12 and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        first = len(read_all(settings, "shadow.student", at_least=1))
        assert 0 < first < len(ids)  # stopped early, after finishing the batch in progress
        assert committed_lag(settings, "student") == len(ids) - first

        rest = run_cli(*args, "--endpoint", server.url, "--idle-exit-s", "2",
                       env=env_of(settings), timeout=120)
        assert rest.returncode == 0, rest.stderr
    responses = [schemas.parse(ModelResponse, m.value()).request_id
                 for m in read_all(settings, "shadow.student", at_least=len(ids))]
    assert sorted(responses) == ids  # each exactly once: the interrupted batch was committed
