"""The retrain trigger and launcher against the real broker and the embedded store.

A firing alert with the retrain action → a Parquet snapshot exported through ClickHouse, a
RetrainRequest on distill.retrain, a `requested` job; a second alert inside the cooldown asks
for nothing. The launcher runs the job from a command template (here a stand-in that writes
the files `distillwatch train` writes; the training itself is tested in the training tests),
records `succeeded` with its metrics, a model_versions row, and a distill.models event.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from schemas.messages import RetrainRequest
from streams.alerting.notification import Notification, alert_id_for
from streams.clickhouse import open_store
from streams.evaluator.outputs import json_each_row
from streams.migrations import migrate
from streams.retrain.launcher import Launcher
from streams.retrain.trigger import RetrainTrigger

pytestmark = pytest.mark.integration

FAKE_TRAIN = (
    f"{sys.executable} -c \"import json, pathlib, sys; out = pathlib.Path(sys.argv[2]); "
    "out.mkdir(parents=True); req = json.load(open(sys.argv[1])); "
    "(out / 'metrics.json').write_text(json.dumps(dict(model_version='student-v2', "
    "job_id=req['job_id'], choice=dict(epoch=3, promotion_score=0.71))))\" {request} {out}"
)


def firing(window_start: int, slice_key: str) -> Notification:
    fp = f"safety_escalation_recall_low/{slice_key}"
    return Notification(alert_id=alert_id_for(fp, "firing", window_start, 60), fingerprint=fp,
                        status="firing", rule="safety_escalation_recall_low", slice=slice_key,
                        severity="critical", metric="recall.safety_escalation", value=0.4,
                        threshold=0.9, op="<", window_start=window_start, window_s=60,
                        starts_at=float(window_start - 60))


def consume_all(bootstrap: str, topic: str, expected: int) -> list[Any]:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + 30
    while len(out) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            out.append(json.loads(msg.value()))
    time.sleep(1)
    msg = consumer.poll(1.0)  # nothing more
    if msg is not None and msg.error() is None:
        out.append(json.loads(msg.value()))
    consumer.close()
    return out


def test_one_job_per_cooldown_snapshot_launch_and_announce(tmp_path: Path, kafka_bootstrap: str) -> None:
    from confluent_kafka import Producer

    prefix = f"dwr{uuid.uuid4().hex[:8]}."
    store = open_store(f"chdb://{tmp_path}/ch")
    migrate(store)
    lock = threading.Lock()
    t0 = 1_795_000_000
    examples = [{"request_id": f"r{i}", "ts": t0 - 3600 + i, "slice": {"language": "es"},
                 "prompt_redacted": "help [EMAIL]", "teacher_probs": {"faq": 0.9, "safety_escalation": 0.1},
                 "reference_intent": "faq", "reference_source": "teacher", "teacher_supported": 1,
                 "teacher_fact_error": 0, "evidence_covered": 1, "sample_reason": "sample", "version": 1}
                for i in range(50)]
    store.client.raw_insert(f"{store.database}.distill_examples", None, json_each_row(examples),
                            fmt="JSONEachRow", settings={"date_time_input_format": "best_effort"})
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    cooldowns: dict[str, Any] = {}
    trigger = RetrainTrigger(store, lock, producer, f"{prefix}distill.retrain",
                             {"safety_escalation_recall_low"}, tmp_path / "jobs", cooldown_s=6 * 3600,
                             snapshot_s=86_400, launcher="template", cooldowns=cooldowns)
    first = trigger(firing(t0, "language=es"))
    again = trigger(firing(t0 + 600, "region=br"))  # another alert, same model, inside the cooldown
    assert first is not None and again is None
    requests = consume_all(kafka_bootstrap, f"{prefix}distill.retrain", 1)
    assert len(requests) == 1
    request = RetrainRequest.model_validate(requests[0])
    assert request.job_id == first and request.slices == ["language=es"]
    snapshot = pq.read_table(request.dataset_snapshot)
    assert snapshot.num_rows == 50 and "prompt_redacted" in snapshot.column_names

    launcher = Launcher(store, lock, "template", FAKE_TRAIN, producer, f"{prefix}distill.models", poll_s=0.2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        launcher.step()
        status = store.query(f"SELECT status FROM {store.database}.retrain_jobs FINAL").result_rows
        if status and status[0][0] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    jobs = store.query(f"SELECT job_id, status, metrics FROM {store.database}.retrain_jobs FINAL").result_rows
    versions = store.query(f"SELECT model, model_version, job_id, promotion_score "
                           f"FROM {store.database}.model_versions FINAL").result_rows
    store.close()
    assert [(j, s) for j, s, _ in jobs] == [(first, "succeeded")]
    assert json.loads(jobs[0][2])["result"]["choice"]["epoch"] == 3
    assert versions == [("student", "student-v2", first, pytest.approx(0.71))]
    announced = consume_all(kafka_bootstrap, f"{prefix}distill.models", 1)
    assert [(a["model_version"], a["job_id"]) for a in announced] == [("student-v2", first)]
