"""End to end on this machine: replay → Kafka → ``distillwatch run`` → ClickHouse, measured.

One monitor (the evaluator in its own process; sink, embedded ClickHouse and HTTP API in the
other), the broker on the same cores, fresh topics (a unique prefix) and a fresh data
directory. Three phases:

1. throughput: every pair of the log is published as fast as the replayer goes while the
   monitor runs; sustained pairs/s is pairs / (first publish → last row queryable and the
   evaluator idle). A lag curve (published, consumed, stored, per second) and the monitor's
   RSS are sampled along the way. Latency here is mostly time spent waiting in the backlog.
2. latency: a second, fresh set of pairs published at a steady rate below capacity; the time
   from a request's publication to its ``shadow_evaluations`` row (``inserted_at``) gives
   p50/p95. Rows reach the sink only when the evaluator commits (``evaluator.checkpoint_s``),
   which bounds how low this can go.

3. backlog: the monitor stopped, a third set of pairs is published, then the monitor starts
   and works the backlog off: pairs / (first record → last row stored). The replayer, a load
   generator that in production runs on other machines, no longer shares the two cores.

After these, a plain confluent-kafka consumer reads the same input topics doing nothing: the
ceiling any consumer of those topics has on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cpu_cost
from schemas.replay import open_log
from streams import topics
from streams.replay import replay

INPUT_TOPICS = (topics.REQUESTS, topics.TEACHER, topics.STUDENT, topics.TEACHER_REPLICA, topics.LABELS)
PROBES = 2000
"""Requests of the throughput phase whose latency is measured (evenly spread)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Monitor:
    """A ``distillwatch run`` subprocess with its own data dir, topic prefix and port."""

    work: Path
    bootstrap: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    broker_pid: int | None = None
    """The broker's process when it runs on this machine (its CPU time is then its own line)."""

    def __post_init__(self) -> None:
        self.prefix = f"dwbench{uuid.uuid4().hex[:8]}."
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLWATCH_")}
        env.update({
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "DISTILLWATCH_DATA_DIR": str(self.work / "data"),
            "DISTILLWATCH_TOPIC_PREFIX": self.prefix,
            "DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "DISTILLWATCH_EVALUATOR__GROUP_ID": f"{self.prefix}evaluator",
            "DISTILLWATCH_HTTP__PORT": str(self.port),
            # A rule that fires must not start a CPU training run in the middle of a benchmark.
            "DISTILLWATCH_ALERTING__RETRAIN__LAUNCHER": "none",
        })
        self.env = env | self.env

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "distillwatch", *args], env=self.env, cwd=self.work,
                              capture_output=True, text=True, timeout=timeout)

    def start(self, timeout_s: float = 180) -> None:
        log = open(self.work / "monitor.log", "wb")  # noqa: SIM115 (kept open by the child)
        self.proc = subprocess.Popen([sys.executable, "-m", "distillwatch", "run"], env=self.env,
                                     cwd=self.work, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"monitor exited: {self.log_tail()}")
            if (self.metric("distillwatch_assigned_partitions") or 0) > 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"monitor did not get its partitions in {timeout_s:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)

    def log_tail(self) -> str:
        path = self.work / "monitor.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    def metric(self, name: str, total: bool = False) -> float | None:
        """A sample of /metrics (``total``: the sum over its labels); None when unreachable."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith(name + " ") or line.startswith(name + "{")]
        if not values:
            return None
        return sum(values) if total else values[0]

    def sql(self, query: str) -> list[list[Any]]:
        body = json.dumps({"sql": query}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/sql", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            return list(json.loads(resp.read())["rows"])

    def evaluator_pid(self) -> int:
        """The evaluator's process: the monitor's child (``evaluator.own_process``), else the
        monitor itself."""
        assert self.proc is not None
        children: list[str] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):  # any thread may have started it
            try:
                children += (task / "children").read_text().split()
            except OSError:
                continue
        return int(children[0]) if children else self.proc.pid

    def rss_mb(self, pid: int | None = None) -> tuple[float, float]:
        """(current, peak) resident set of the monitor process (or ``pid``), MB."""
        assert self.proc is not None
        fields = dict(line.split(":", 1) for line in
                      Path(f"/proc/{pid or self.proc.pid}/status").read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def cpu_snapshot(self) -> cpu_cost.CpuSnapshot:
        """CPU seconds so far of the evaluator, the monitor, the broker and this process
        (``bench``: the replayer's thread while it publishes, and the bench's own polling)."""
        assert self.proc is not None
        evaluator = self.evaluator_pid()
        pids = {"evaluator": evaluator, "monitor": self.proc.pid if evaluator != self.proc.pid else None,
                "broker": self.broker_pid, "bench": os.getpid()}
        return cpu_cost.snapshot(pids, time.time())

    def peaks_mb(self) -> dict[str, int]:
        """Peak resident sets: the evaluator's process and the monitor's (sink, ClickHouse, API)."""
        evaluator = self.evaluator_pid()
        out = {"evaluator_peak_rss_mb": round(self.rss_mb(evaluator)[1])}
        if evaluator != self.proc.pid:  # type: ignore[union-attr]
            out["monitor_peak_rss_mb"] = round(self.rss_mb()[1])
        return out


class Published:
    """Lines of a log handed to ``replay``, with the time every ``every``-th request went out."""

    def __init__(self, path: Path, every: int = 1, rename: bytes | None = None) -> None:
        self.path = path
        self.every = every
        self.rename = rename
        self.pairs = 0
        self.sent_at: dict[str, float] = {}
        self.done = threading.Event()
        self.errors: list[str] = []

    def lines(self) -> Iterator[bytes]:
        with open_log(self.path) as handle:
            for raw in handle:
                if self.rename is not None:
                    raw = raw.replace(b'"req-', self.rename)
                if raw.startswith(b'{"request"'):
                    if self.pairs % self.every == 0:
                        start = raw.find(b'"request_id":"') + 14
                        self.sent_at[raw[start:raw.find(b'"', start)].decode()] = time.time()
                    self.pairs += 1
                yield raw

    def publish(self, monitor: Monitor, settings: Any, rate: float | None) -> threading.Thread:
        """Replay into the monitor's topics from a thread, every delivery confirmed."""
        prefixed = settings.model_copy(update={"topic_prefix": monitor.prefix})
        prefixed.kafka = prefixed.kafka.model_copy(update={"bootstrap_servers": monitor.bootstrap})

        def work() -> None:
            try:
                report = replay(self.lines(), prefixed, rate=rate)
                if not report.ok:
                    self.errors.extend(report.errors or ["not every record was acknowledged"])
            except Exception as exc:  # surfaced by the caller
                self.errors.append(repr(exc))
            finally:
                self.done.set()

        thread = threading.Thread(target=work, name="bench-replay", daemon=True)
        thread.start()
        return thread


def latencies(monitor: Monitor, sent_at: dict[str, float], ids: list[str]) -> list[float]:
    """Seconds from publication to the first stored row, for the ids that have one."""
    out = []
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        quoted = ",".join("'" + rid.replace("'", "") + "'" for rid in chunk)
        rows = monitor.sql("SELECT request_id, toFloat64(min(inserted_at)) FROM distillwatch.shadow_evaluations "
                           f"WHERE request_id IN ({quoted}) GROUP BY request_id")
        out += [float(t) - sent_at[rid] for rid, t in rows]
    return out


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_s": None, "p95_s": None, "n": 0}
    ordered = sorted(values)
    return {"p50_s": round(statistics.median(ordered), 3),
            "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3), "n": len(ordered)}


def wait_stored(monitor: Monitor, expected: int, records: int, timeout_s: float,
                sample: Callable[[], None]) -> float:
    """Until all input is consumed and every request has its row, queryable; returns that
    time. Then (not timed) until the evaluator is idle: it has flushed its open windows and
    committed, so the lag read next is the lag after the replay."""
    deadline = time.monotonic() + timeout_s
    stored_at: float | None = None
    while time.monotonic() < deadline:
        sample()
        if stored_at is None and (monitor.metric("distillwatch_records_total") or 0) >= records:
            # count() first: duplicates only add to it, and FINAL costs the monitor's CPU
            if (monitor.sql("SELECT count() FROM distillwatch.shadow_evaluations")[0][0] >= expected
                    and monitor.sql("SELECT count() FROM distillwatch.shadow_evaluations FINAL")[0][0]
                    >= expected):
                stored_at = time.time()
        if stored_at is not None and monitor.metric("distillwatch_idle") == 1.0:
            return stored_at
        time.sleep(0.25)  # the end is known to this much (sample() still runs about once a second)
    raise TimeoutError(f"the monitor did not store {expected} requests and go idle in {timeout_s:.0f} s: "
                       f"{monitor.log_tail()}")


def run_throughput(monitor: Monitor, settings: Any, log: Path, pairs: int, records: int,
                   timeout_s: float) -> dict[str, Any]:
    source = Published(log, every=max(1, pairs // PROBES))
    curve: list[dict[str, float]] = []
    cpu_before = monitor.cpu_snapshot()
    began = time.time()

    def sample(last: bool = False) -> None:  # about once a second, and once at the end
        if not last and curve and time.time() - began - curve[-1]["t_s"] < 0.9:
            return
        consumed = monitor.metric("distillwatch_records_total") or 0
        try:
            stored = monitor.sql("SELECT count() FROM distillwatch.shadow_evaluations")[0][0]
        except OSError:
            stored = curve[-1]["stored_rows"] if curve else 0
        rss, _ = monitor.rss_mb()
        evaluator_rss, _ = monitor.rss_mb(monitor.evaluator_pid())
        curve.append({"t_s": round(time.time() - began, 1), "published_pairs": source.pairs,
                      "consumed_records": consumed, "stored_rows": stored,
                      "evaluator_rss_mb": round(evaluator_rss), "monitor_rss_mb": round(rss)})

    source.publish(monitor, settings, rate=None)
    while not source.done.wait(1.0):
        sample()
    replay_s = time.time() - began
    if source.errors:
        raise RuntimeError(f"replay failed: {source.errors[:3]}")
    finished = wait_stored(monitor, pairs, records, timeout_s, sample)
    cpu = cpu_cost.cost(cpu_before, monitor.cpu_snapshot(), pairs, os.cpu_count() or 1)
    sample(last=True)
    elapsed = finished - began
    peaks = monitor.peaks_mb()
    lag = monitor.metric("distillwatch_consumer_lag", total=True)
    return {
        "pairs": pairs, "records": records, "replay_s": round(replay_s, 1), "elapsed_s": round(elapsed, 1),
        "pairs_per_s": round(pairs / elapsed), "latency_backlog": percentiles(latencies(monitor, source.sent_at, list(source.sent_at))),
        **peaks, "lag_at_end_records": lag, "cpu": cpu, "lag_curve": curve,
    }


def run_latency(monitor: Monitor, settings: Any, log: Path, pairs: int, rate: float,
                timeout_s: float, stored_before: int) -> dict[str, Any]:
    source = Published(log, rename=b'"lat-')
    began = time.time()
    source.publish(monitor, settings, rate=rate).join()
    if source.errors:
        raise RuntimeError(f"replay failed: {source.errors[:3]}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stored = monitor.sql("SELECT count() FROM distillwatch.shadow_evaluations FINAL")[0][0]
        if stored >= stored_before + pairs:
            break
        time.sleep(1.0)
    values = latencies(monitor, source.sent_at, list(source.sent_at))
    return {"pairs": pairs, "rate_pairs_per_s": round(rate, 1), "duration_s": round(time.time() - began, 1),
            **percentiles(values)}


def run_backlog(monitor: Monitor, settings: Any, log: Path, pairs: int, records: int, stored_before: int,
                timeout_s: float) -> dict[str, Any]:
    """With the monitor stopped, publish every pair; then start it and time the drain, from its
    first record to the last row stored. The replayer (a load generator, on other machines in
    production) then takes none of the two cores the broker and the monitor share."""
    source = Published(log, rename=b'"bkl-')
    published = time.time()
    source.publish(monitor, settings, rate=None).join()
    if source.errors:
        raise RuntimeError(f"replay failed: {source.errors[:3]}")
    replay_s = time.time() - published
    started = time.time()
    monitor.start()
    while (monitor.metric("distillwatch_records_total") or 0) == 0:
        if time.time() - started > 120:
            raise TimeoutError(f"the monitor read nothing in 120 s: {monitor.log_tail()}")
        time.sleep(0.05)
    cpu_before = monitor.cpu_snapshot()
    began = time.time()
    curve: list[dict[str, float]] = []

    def sample(last: bool = False) -> None:  # about once a second, and once at the end
        if not last and curve and time.time() - began - curve[-1]["t_s"] < 0.9:
            return
        rss, _ = monitor.rss_mb(monitor.evaluator_pid())
        curve.append({"t_s": round(time.time() - began, 1),
                      "consumed_records": monitor.metric("distillwatch_records_total") or 0,
                      "lag_records": monitor.metric("distillwatch_consumer_lag", total=True) or 0,
                      "evaluator_rss_mb": round(rss)})

    finished = wait_stored(monitor, stored_before + pairs, records, timeout_s, sample)
    cpu = cpu_cost.cost(cpu_before, monitor.cpu_snapshot(), pairs, os.cpu_count() or 1)
    sample(last=True)
    elapsed = finished - began
    return {
        "pairs": pairs, "records": records, "replay_s": round(replay_s, 1),
        "start_to_first_record_s": round(began - started, 1), "elapsed_s": round(elapsed, 1),
        "pairs_per_s": round(pairs / elapsed), **monitor.peaks_mb(),
        "lag_at_end_records": monitor.metric("distillwatch_consumer_lag", total=True), "cpu": cpu,
        "lag_curve": curve,
    }


def plain_consumer(bootstrap: str, prefix: str, records: int, timeout_s: float = 600) -> dict[str, Any]:
    """A confluent-kafka consumer reading the input topics from the start, doing nothing else."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}ceiling-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    consumer.subscribe([prefix + name for name in INPUT_TOPICS])
    seen = first = 0
    started = None
    deadline = time.monotonic() + timeout_s
    try:
        while seen < records and time.monotonic() < deadline:
            for msg in consumer.consume(5000, 1.0):
                if msg.error() is None:
                    if started is None:
                        started = time.perf_counter()
                    seen += 1
                    first += len(msg.value() or b"")
    finally:
        consumer.close()
    elapsed = time.perf_counter() - started if started is not None else float("nan")
    return {"records": seen, "elapsed_s": round(elapsed, 2), "records_per_s": round(seen / elapsed),
            "mb": round(first / 1e6, 1)}
