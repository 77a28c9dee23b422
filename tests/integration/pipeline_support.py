"""Running the real monitor (``distillwatch run``) against the real broker, for pipeline tests."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson

from evaluators.config import EvalConfig
from evaluators.offline import LogSummary, evaluate_log
from simulator.traffic import TrafficConfig, World
from streams.clickhouse import open_store

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_log(path: Path, pairs: int, seed: int, malformed: float = 0.0, duplicated: float = 0.0) -> dict[str, int]:
    """A synthetic replay log; returns how many malformed lines and duplicates it holds."""
    rng = random.Random(seed)
    out: list[bytes] = []
    counts = {"malformed": 0, "duplicated": 0}
    world = World(TrafficConfig(pairs=pairs, rate_per_s=100, label_share=0.05), seed=seed)
    for line in world.lines():
        raw = orjson.dumps(line)
        out.append(raw)
        if rng.random() < malformed:
            out.append(raw[: len(raw) // 2])  # a truncated line: not JSON
            counts["malformed"] += 1
        elif "request" in line and rng.random() < duplicated:
            out.insert(len(out) - rng.randint(0, 3), raw)  # a retried record, nearby
            counts["duplicated"] += 1
    path.write_bytes(b"\n".join(out) + b"\n")
    return counts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """Environment shared by the monitor processes and CLI calls of one test."""

    def __init__(self, tmp: Path, bootstrap: str) -> None:
        self.tmp = tmp
        self.prefix = f"dwp{uuid.uuid4().hex[:10]}."
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLWATCH_")}
        self.env.update({
            "PYTHONPATH": str(REPO_ROOT),
            "DISTILLWATCH_DATA_DIR": str(tmp / "data"),
            "DISTILLWATCH_TOPIC_PREFIX": self.prefix,
            "DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "DISTILLWATCH_EVALUATOR__GROUP_ID": f"{self.prefix}evaluator",
            "DISTILLWATCH_EVALUATOR__CHECKPOINT_S": "1",
            "DISTILLWATCH_EVALUATOR__IDLE_FLUSH_S": "2",
            # Tests that fire retrain rules check the request, not a CPU training run.
            "DISTILLWATCH_ALERTING__RETRAIN__LAUNCHER": "none",
        })
        self.procs: list[subprocess.Popen[bytes]] = []

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "distillwatch", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, cwd=self.tmp)

    def start_monitor(self, *args: str, name: str = "monitor") -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        env = self.env | {"DISTILLWATCH_HTTP__PORT": str(port)}
        log = open(self.tmp / f"{name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "distillwatch", "run", *args], env=env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append(proc)
        return proc, port

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def sql(port: int, query: str) -> list[list[Any]]:
    body = json.dumps({"sql": query}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/sql", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["rows"]


def metric(port: int, name: str) -> float | None:
    """A sample of the monitor's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


def wait_until_quiet(port: int, expected_rows: int, timeout_s: float = 240, quiet_s: float = 8) -> None:
    """Until shadow_evaluations holds the expected requests and window_metrics stops changing."""
    deadline = time.monotonic() + timeout_s
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        try:
            now = sql(port, "SELECT (SELECT count() FROM distillwatch.shadow_evaluations FINAL), "
                            "(SELECT count() FROM distillwatch.window_metrics), "
                            "(SELECT count() FROM distillwatch.window_partials)")[0]
            idle = metric(port, "distillwatch_idle") == 1.0
        except OSError:
            now, idle = None, False
        if now != last or not idle:
            last, since = now, time.monotonic()
        elif now is not None and now[0] >= expected_rows and time.monotonic() - since >= quiet_s:
            return
        time.sleep(1)
    raise AssertionError(f"pipeline did not settle: last counts {last}, expected {expected_rows} requests")


def stored(data_dir: Path, query: str) -> list[tuple[Any, ...]]:
    """Read the embedded store directly (the monitor must have stopped)."""
    with open_store(f"chdb://{data_dir / 'clickhouse'}", lock_timeout_s=10) as store:
        return list(store.query(query).result_rows)


def offline_metrics(log: Path, window_s: int) -> dict[tuple[int, str, str], float]:
    rows = evaluate_log(lambda: open(log, "rb"), EvalConfig(), window_s, 120, LogSummary())
    return {(r.window_start, r.slice, r.metric): r.value for r in rows}


def assert_metrics_equal(data_dir: Path, log: Path, window_s: int) -> int:
    """window_metrics (latest version) equal offline evaluate: every row, every metric."""
    want = offline_metrics(log, window_s)
    rows = stored(data_dir, "SELECT toUnixTimestamp(window_start), slice, metric, value "
                            f"FROM distillwatch.window_metrics FINAL WHERE window_s = {window_s}")
    got = {(int(a), b, c): float(v) for a, b, c, v in rows}
    assert set(got) == set(want), (sorted(set(want) - set(got))[:5], sorted(set(got) - set(want))[:5])
    for key, value in want.items():
        sketch = "latency" in key[2] or "age_days" in key[2]
        ok = math.isclose(got[key], value, rel_tol=0.01 if sketch else 1e-9, abs_tol=1e-9)
        assert ok, (key, got[key], value)
    return len(want)
