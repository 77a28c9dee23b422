"""Counting for the fault suite, the way Jepsen's Kafka checker counts.

Every request in a test log has a unique id. After the fault and the recovery:

- lost = acknowledged request ids that ``shadow_evaluations`` does not hold;
- duplicated = ``count()`` of the logical table (``FINAL``) − ``uniqExact(request_id)``;
- stored twice = physical rows with the same (request_id, version) beyond the first
  (a retried insert the deduplication token should have dropped);
- the window aggregates are compared with ``distillwatch evaluate`` on the same log
  (``assert_metrics_equal`` in tests/integration/pipeline_support.py).

The monitor runs as its own process (``Cluster``); these helpers only observe it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.integration.pipeline_support import Cluster, metric, sql, stored


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting until {what}")


def request_ids(log: Path) -> set[str]:
    """Ids of the requests on the log's valid lines (read with the standard library)."""
    ids: set[str] = set()
    for raw in log.read_bytes().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and isinstance(line.get("request"), dict):
            ids.add(line["request"]["request_id"])
    return ids


def input_records(log: Path) -> int:
    """Records ``replay`` publishes to the evaluator's input topics (requests, answers, labels)."""
    total = 0
    for raw in log.read_bytes().splitlines():
        line = json.loads(raw)
        if "label" in line:
            total += 1
        elif "request" in line:
            total += 1 + sum(1 for role in ("teacher", "student", "teacher_replica") if line.get(role))
    return total


@dataclass
class Tally:
    rows: int
    """Logical rows (FINAL)."""
    unique: int
    lost: int
    duplicated: int
    stored_twice: int
    unexpected: int
    """Stored ids that were never sent."""


def tally(data_dir: Path, acknowledged: set[str]) -> Tally:
    """Lost / duplicated counts of ``shadow_evaluations`` (the monitor must have stopped)."""
    ids = {r[0] for r in stored(data_dir, "SELECT DISTINCT request_id FROM distillwatch.shadow_evaluations")}
    (rows, unique, physical, versions), = stored(
        data_dir, "SELECT (SELECT count() FROM distillwatch.shadow_evaluations FINAL), "
                  "(SELECT uniqExact(request_id) FROM distillwatch.shadow_evaluations), "
                  "(SELECT count() FROM distillwatch.shadow_evaluations), "
                  "(SELECT uniqExact(request_id, version) FROM distillwatch.shadow_evaluations)")
    return Tally(rows=rows, unique=unique, lost=len(acknowledged - ids), duplicated=rows - unique,
                 stored_twice=physical - versions, unexpected=len(ids - acknowledged))


def committed(cluster: Cluster, group: str, names: list[str], partitions: int = 6) -> dict[tuple[str, int], int]:
    """The consumer group's committed offsets, read without joining the group."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": cluster.env["DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS"],
                         "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(cluster.prefix + n, p) for n in names for p in range(partitions)]
        return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(parts, timeout=10)}
    finally:
        consumer.close()


def live_rows(port: int) -> int:
    """shadow_evaluations rows as the running monitor sees them (FINAL)."""
    return int(sql(port, "SELECT count() FROM distillwatch.shadow_evaluations FINAL")[0][0])


def health(port: int) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def records(port: int) -> float:
    return metric(port, "distillwatch_records_total") or 0.0


def event_counter(port: int, kind: str) -> float:
    """distillwatch_evaluator_events_total{kind=...} of the running monitor (0 if absent)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(f'distillwatch_evaluator_events_total{{kind="{kind}"}}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def start_replay(cluster: Cluster, log: Path, *args: str) -> subprocess.Popen[str]:
    """``distillwatch replay`` in the background (its stderr says what was acknowledged)."""
    return subprocess.Popen([sys.executable, "-m", "distillwatch", "replay", "--quiet", *args, str(log)],
                            env=cluster.env, cwd=cluster.tmp, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def replay(cluster: Cluster, log: Path, *args: str) -> None:
    done = cluster.cli("replay", "--quiet", *args, str(log))
    assert done.returncode == 0, done.stderr


def monitor_output(cluster: Cluster) -> str:
    """Everything the test's monitor processes wrote to stdout and stderr."""
    return "\n".join(p.read_text(errors="replace") for p in sorted(cluster.tmp.glob("*.log"))
                     if p.name.startswith(("monitor-", "second-")))


def report(case: str, **numbers: Any) -> None:
    """Print a case's measured numbers (``pytest -s``); append them to $DW_FAULTS_REPORT if set."""
    numbers = {k: asdict(v) if isinstance(v, Tally) else v for k, v in numbers.items()}
    line = json.dumps({"case": case, **numbers}, default=str)
    print(f"\n[faults] {line}")
    target = os.environ.get("DW_FAULTS_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(line + "\n")
