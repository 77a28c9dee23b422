"""Runs requested retrain jobs: a local subprocess, a command template, or nothing.

The queue is the ``retrain_jobs`` table: a job whose newest row says ``requested`` is
started and marked ``running``; when its process exits the job is marked ``succeeded`` or
``failed`` with the job's ``metrics.json``, a ``model_versions`` row is written for a
success, and a ``distill.models`` event announces the new student. With ``launcher: none``
jobs stay ``requested`` for an external consumer of ``distill.retrain``.

``subprocess`` runs ``python -m distillwatch train --request REQ --out DIR``; ``template``
runs the configured command (e.g. ``torchrun --nproc-per-node 4 -m distillwatch train
--request {request} --out {out}``) with ``{request}``, ``{out}``, ``{job_id}`` filled in.
The training process never opens the store: it reads the Parquet snapshot and writes files.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from streams.clickhouse import Store
from streams.evaluator.outputs import json_each_row

log = logging.getLogger(__name__)

LauncherKind = Literal["none", "subprocess", "template"]


@dataclass
class RunningJob:
    job_id: str
    model: str
    out_dir: Path
    process: subprocess.Popen[bytes]
    request: str
    started: float


def command_for(kind: LauncherKind, template: str, request: Path, out: Path, job_id: str,
                extra_args: tuple[str, ...] = ()) -> list[str]:
    if kind == "subprocess":
        return [sys.executable, "-m", "distillwatch", "train", "--request", str(request),
                "--out", str(out), *extra_args]
    if kind == "template":
        return shlex.split(template.format(request=shlex.quote(str(request)),
                                           out=shlex.quote(str(out)), job_id=job_id))
    raise ValueError(f"launcher {kind!r} runs nothing")


class Launcher(threading.Thread):
    def __init__(self, store: Store, lock: threading.Lock, kind: LauncherKind, template: str,
                 producer: Any, models_topic: str, extra_args: tuple[str, ...] = (),
                 poll_s: float = 1.0) -> None:
        super().__init__(name="retrain-launcher", daemon=True)
        self.store = store
        self.lock = lock
        self.kind = kind
        self.template = template
        self.producer = producer
        self.models_topic = models_topic
        self.extra_args = extra_args
        self.poll_s = poll_s
        self.running: dict[str, RunningJob] = {}
        self.finished: dict[str, str] = {}
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def terminate_running(self) -> None:
        """After the thread stopped: a job still running is terminated and marked
        ``interrupted`` (it can be requested again); no training outlives its monitor."""
        for job in list(self.running.values()):
            if job.process.poll() is None:
                try:
                    os.killpg(job.process.pid, signal.SIGTERM)
                    job.process.wait(10)
                except (OSError, subprocess.TimeoutExpired):
                    job.process.kill()
            del self.running[job.job_id]
            try:
                self._status(job.job_id, job.model, "interrupted", job.request, str(job.out_dir.parent),
                             {"exit_code": job.process.returncode})
            except Exception as exc:  # the store may be closing; the job stays 'running' there
                log.warning("retrain job %s interrupted, status not recorded: %s", job.job_id, exc)

    def run(self) -> None:
        try:
            while not self._halt.wait(self.poll_s):
                try:
                    self.step()
                except Exception as exc:  # e.g. ClickHouse away: the queue is the table
                    log.warning("retrain launcher waiting for the store: %s", exc)
        except BaseException as exc:
            self.error = exc
            log.exception("retrain launcher stopped")

    def step(self) -> None:
        if self.kind != "none":
            for job_id, model, request, out_dir in self._requested():
                self._start(job_id, model, request, Path(out_dir))
        for job in list(self.running.values()):
            if job.process.poll() is not None:
                self._finish(job)

    def _requested(self) -> list[tuple[str, str, str, str]]:
        with self.lock:
            rows = self.store.query(
                f"SELECT job_id, model, request, output_dir FROM {self.store.database}.retrain_jobs FINAL "
                "WHERE status = 'requested' ORDER BY updated_at").result_rows
        return [tuple(r) for r in rows if r[0] not in self.running and r[0] not in self.finished]  # type: ignore[misc]

    def _start(self, job_id: str, model: str, request: str, job_dir: Path) -> None:
        out = job_dir / "model"
        argv = command_for(self.kind, self.template, job_dir / "request.json", out, job_id, self.extra_args)
        log_file = open(job_dir / "train.log", "ab")  # noqa: SIM115  (closed by the child's exit)
        env = dict(os.environ)
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        log_file.close()
        self.running[job_id] = RunningJob(job_id, model, out, process, request, time.time())
        self._status(job_id, model, "running", request, str(job_dir), {"pid": process.pid, "argv": argv})
        log.warning("retrain job %s started: %s (log %s)", job_id, " ".join(argv), job_dir / "train.log")

    def _finish(self, job: RunningJob) -> None:
        del self.running[job.job_id]
        code = job.process.returncode
        metrics_file = job.out_dir / "metrics.json"
        metrics: dict[str, Any] = {"exit_code": code, "seconds": round(time.time() - job.started, 1)}
        if metrics_file.exists():
            metrics["result"] = json.loads(metrics_file.read_text(encoding="utf-8"))
        status = "succeeded" if code == 0 and metrics_file.exists() else "failed"
        self.finished[job.job_id] = status
        self._status(job.job_id, job.model, status, job.request, str(job.out_dir.parent), metrics)
        if status == "succeeded":
            self._announce(job, metrics["result"])
        log.warning("retrain job %s %s (exit %s)", job.job_id, status, code)

    def _announce(self, job: RunningJob, result: dict[str, Any]) -> None:
        choice = result.get("choice") or {}
        score = choice.get("promotion_score") if isinstance(choice, dict) else None
        version = str(result.get("model_version") or job.job_id)
        row = {"model": job.model, "model_version": version, "job_id": job.job_id,
               "path": str(job.out_dir.resolve()), "promotion_score": score,
               "metrics": json.dumps(result)[:1_000_000], "created_at": time.time()}
        self._insert("model_versions", row, f"model:{job.job_id}")
        event = {k: row[k] for k in ("model", "model_version", "job_id", "path", "promotion_score")}
        self.producer.produce(self.models_topic, json.dumps(event).encode(), job.model.encode())
        self.producer.flush(30)

    def _status(self, job_id: str, model: str, status: str, request: str, out_dir: str,
                metrics: dict[str, Any]) -> None:
        row = {"job_id": job_id, "model": model, "status": status, "request": request,
               "launcher": self.kind, "output_dir": out_dir, "metrics": json.dumps(metrics),
               "updated_at": datetime.now(tz=timezone.utc).timestamp()}
        self._insert("retrain_jobs", row, f"{job_id}:{status}")

    def _insert(self, table: str, row: dict[str, Any], token: str) -> None:
        with self.lock:
            self.store.client.raw_insert(
                f"{self.store.database}.{table}", None, json_each_row([row]), fmt="JSONEachRow",
                settings={"insert_deduplication_token": token, "date_time_input_format": "best_effort"})
