"""From a firing alert with the ``retrain`` action to a RetrainRequest on ``distill.retrain``.

The job id is derived from rule, slice and window, so judging the same window twice (after a
crash) asks for the same job, which the store keeps once. At most one job per model per
cooldown, counted in event time (window starts). The request carries a Parquet snapshot of
``distill_examples`` exported through ClickHouse (works on the embedded store too, where
other processes cannot open the data directory), and a ``retrain_jobs`` row with status
``requested`` that the launcher picks up.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from schemas.messages import AlertRef, RetrainRequest, TimeRange
from streams.alerting.notification import Notification
from streams.clickhouse import Store
from streams.evaluator.outputs import json_each_row

log = logging.getLogger(__name__)


def job_id_for(n: Notification) -> str:
    key = f"{n.rule}|{n.slice}|{n.window_s}|{n.window_start}"
    return "rt-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


class RetrainTrigger:
    """Called by the alerter for each firing alert; ``cooldowns`` is persisted with its state."""

    def __init__(self, store: Store, lock: threading.Lock, producer: Any, topic: str,
                 rules_with_retrain: set[str], jobs_dir: Path, cooldown_s: float,
                 snapshot_s: float, launcher: str, cooldowns: dict[str, Any]) -> None:
        self.store = store
        self.lock = lock
        self.producer = producer
        self.topic = topic
        self.rules = rules_with_retrain
        self.jobs_dir = jobs_dir
        self.cooldown_s = cooldown_s
        self.snapshot_s = snapshot_s
        self.launcher = launcher
        self.cooldowns = cooldowns
        """model → window start of its last job (event time)."""
        self.requested: list[str] = []

    def __call__(self, n: Notification) -> str | None:
        if n.rule not in self.rules or n.test:
            return None
        last = self.cooldowns.get(n.model)
        if last is not None and n.window_start - int(last) < self.cooldown_s:
            log.info("retrain for %s not requested: model %s had a job %ds ago (cooldown %ds)",
                     n.fingerprint, n.model, n.window_start - int(last), self.cooldown_s)
            return None
        job_id = job_id_for(n)
        job_dir = self.jobs_dir / job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        end = n.window_start + n.window_s
        start = end - self.snapshot_s
        snapshot = job_dir / "dataset.parquet"
        rows = self._export(snapshot, start, end)
        request = RetrainRequest(
            job_id=job_id, model=n.model, created_at=_utc(end),
            alerts=[AlertRef(fingerprint=n.fingerprint, rule=n.rule, slice=n.slice,
                             window_start=_utc(n.window_start), value=n.value)],
            slices=[n.slice], time_range=TimeRange(start=_utc(start), end=_utc(end)),
            dataset_snapshot=str(snapshot.resolve()),
        )
        body = request.model_dump_json()
        (job_dir / "request.json").write_text(body + "\n", encoding="utf-8")
        self.producer.produce(self.topic, body.encode(), job_id.encode())
        if self.producer.flush(30) != 0:
            raise RuntimeError(f"retrain request {job_id} not acknowledged by Kafka")
        self._record(job_id, n.model, body, str(job_dir), rows)
        self.cooldowns[n.model] = n.window_start
        self.requested.append(job_id)
        log.warning("retrain requested: job %s for %s (%d examples in the snapshot)", job_id, n.fingerprint, rows)
        return job_id

    def _export(self, path: Path, start: float, end: float) -> int:
        db = self.store.database
        where = ("ts >= toDateTime64({s:Float64}, 3, 'UTC') AND ts < toDateTime64({e:Float64}, 3, 'UTC')")
        params = {"s": start, "e": end}
        with self.lock:
            data = self.store.client.raw_query(
                f"SELECT * EXCEPT version FROM {db}.distill_examples FINAL WHERE {where} ORDER BY ts, request_id",
                parameters=params, fmt="Parquet")
            count = self.store.query(f"SELECT count() FROM {db}.distill_examples FINAL WHERE {where}",
                                     parameters=params).result_rows[0][0]
        path.write_bytes(data)
        return int(count)

    def _record(self, job_id: str, model: str, request: str, out_dir: str, rows: int) -> None:
        row = {"job_id": job_id, "model": model, "status": "requested", "request": request,
               "launcher": self.launcher, "output_dir": out_dir,
               "metrics": f'{{"snapshot_rows": {rows}}}', "updated_at": _utc_now_ms()}
        with self.lock:
            self.store.client.raw_insert(
                f"{self.store.database}.retrain_jobs", None, json_each_row([row]), fmt="JSONEachRow",
                settings={"insert_deduplication_token": f"{job_id}:requested",
                          "date_time_input_format": "best_effort"})


def _utc_now_ms() -> float:
    return datetime.now(tz=timezone.utc).timestamp()
