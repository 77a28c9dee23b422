"""S3: 200 write and injection attempts through the forensics SQL paths execute nothing.

25 harmful statements (DML, DDL, SYSTEM, GRANT, SET, file and network table functions,
INTO OUTFILE, SETTINGS readonly = 0, BACKUP) × 8 disguises (as written, odd case and
spacing, a comment posing as the verb, a line comment, stacked after a read, a ';' inside a
string, a WITH prefix, and a quote inside a quoted identifier). Each goes through the running
monitor's POST /sql (what ``distillwatch sql`` calls while the monitor owns the store; two
go through the command itself) and, after the monitor stops, through ``distillwatch sql``'s
code path straight against the store.

Nothing may run: every table keeps its rows and checksum, no database, table or user
appears, no file is written, and the monitor's own writes still work afterwards (a statement
that leaves the store session read-only would stop the sink). ClickHouse's query log is not
available in the embedded engine (``system.query_log`` does not exist there), so the check is
the state itself. A deliberately slow read is cut off by the time limit.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from schemas.errors import DistillwatchError
from streams.sql import MAX_EXECUTION_S, run_sql
from tests.faults.fault_support import live_rows, replay, report, wait_for
from tests.integration.pipeline_support import Cluster, make_log, sql, stored, wait_until_quiet

pytestmark = pytest.mark.integration

HARMFUL = [
    "INSERT INTO distillwatch.shadow_evaluations (request_id) VALUES ('pwned')",
    "INSERT INTO distillwatch.alerts SELECT * FROM distillwatch.alerts",
    "INSERT INTO FUNCTION file('{probe}/insert.csv', 'CSV', 'x UInt8') VALUES (1)",
    "DROP TABLE distillwatch.window_metrics",
    "DROP DATABASE distillwatch",
    "TRUNCATE TABLE distillwatch.shadow_evaluations",
    "ALTER TABLE distillwatch.shadow_evaluations DELETE WHERE 1",
    "ALTER TABLE distillwatch.window_metrics UPDATE value = 0 WHERE 1",
    "DELETE FROM distillwatch.dead_letters WHERE 1",
    "CREATE TABLE distillwatch.pwned (x UInt8) ENGINE = Memory",
    "CREATE DATABASE pwned",
    "CREATE USER pwned IDENTIFIED BY 'x'",
    "RENAME TABLE distillwatch.alerts TO distillwatch.gone",
    "OPTIMIZE TABLE distillwatch.shadow_evaluations FINAL",
    "DETACH TABLE distillwatch.window_metrics",
    "SYSTEM STOP MERGES",
    "KILL QUERY WHERE 1",
    "GRANT ALL ON *.* TO default",
    "SET readonly = 0",
    "SELECT 1 INTO OUTFILE '{probe}/one.txt'",
    "SELECT * FROM distillwatch.shadow_evaluations INTO OUTFILE '{probe}/dump.csv' FORMAT CSV",
    "SELECT count() FROM distillwatch.alerts SETTINGS readonly = 0",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')",
    "BACKUP DATABASE distillwatch TO File('{probe}/backup')",
]
DISGUISES = [
    lambda s: s,
    lambda s: "  " + "\n\t".join(w.lower() if i % 2 else w for i, w in enumerate(s.split(" "))) + " ;",
    lambda s: "/* SELECT */ " + s,
    lambda s: "-- SELECT 1\n" + s,
    lambda s: "SELECT 1; " + s,
    lambda s: "SELECT ';' AS a; " + s + " -- '",
    lambda s: "WITH 1 AS x " + s,
    lambda s: "WITH 1 AS \"a'b\" " + s + " -- '",
]


def attempts(probe: Path) -> list[str]:
    out = [disguise(h.replace("{probe}", str(probe))) for h in HARMFUL for disguise in DISGUISES]
    assert len(out) == len(set(out)) == 200
    return out


def post(port: int, query: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/sql", method="POST",
                                 data=json.dumps({"sql": query}).encode())
    try:
        with urllib.request.urlopen(req, timeout=MAX_EXECUTION_S + 30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


GROW_WITH_INPUT = {f"distillwatch.{t}" for t in (
    "shadow_evaluations", "window_metrics", "window_partials", "shadow_payloads", "distill_examples",
    "dead_letters", "alert_state", "alerts", "alert_deliveries")}
STATE = """
    SELECT database, name FROM system.tables
    WHERE database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema') ORDER BY database, name"""


def state(query: Any) -> dict[str, Any]:
    """Every table (rows and a checksum of every column) and database (system.users needs a
    grant the embedded default user lacks)."""
    tables = [tuple(r) for r in query(STATE)]
    out: dict[str, Any] = {"tables": tables,
                           "databases": [tuple(r) for r in query("SELECT name FROM system.databases ORDER BY name")]}
    for db, name in tables:
        out[f"{db}.{name}"] = tuple(query(f"SELECT count(), sum(cityHash64(*)) FROM `{db}`.`{name}`")[0])
    return out


def files_under(*roots: Path) -> set[str]:
    return {str(p) for root in roots if root.exists() for p in root.rglob("*")
            if "data" not in p.relative_to(root).parts[:1]}


def test_s3_two_hundred_injection_attempts_execute_nothing_and_slow_reads_are_cut_off(
        cluster: Cluster, tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    log = tmp_path / "replay.jsonl"
    make_log(log, 2_000, seed=33)
    replay(cluster, log)
    _, port = cluster.start_monitor()
    wait_until_quiet(port, 2_000)
    before = state(lambda q: sql(port, q))
    files_before = files_under(tmp_path, Path("/var/lib/clickhouse/user_files"))
    queries = attempts(probe)

    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        phases[name] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()

    outcomes: dict[str, int] = {"guard": 0, "clickhouse": 0}
    accepted: list[str] = []
    for query in queries:  # the monitor's API
        code, body = post(port, query)
        if code != 400:
            accepted.append(query)
        else:
            outcomes["clickhouse" if "DB::Exception" in body.get("error", "") else "guard"] += 1
    phase("POST /sql")
    cluster.env["DISTILLWATCH_HTTP__PORT"] = str(port)
    for query in queries[71::100]:  # the command, through the monitor's API: one-line refusals
        done = cluster.cli("sql", "--", query)  # "--": a query may start with a comment
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    phase("CLI")
    assert not accepted, accepted[:5]
    assert state(lambda q: sql(port, q)) == before

    # A deliberately slow read (sleeps, so it costs no CPU) is cut off by the time limit.
    slow = cluster.cli("sql", "SELECT sum(sleepEachRow(0.00004)) FROM numbers(1000000000)", timeout=120)
    phase("slow query")
    assert slow.returncode == 1 and "TIMEOUT_EXCEEDED" in slow.stderr, slow.stderr

    # The monitor still writes: a statement that left its store session read-only would stop the sink.
    more = tmp_path / "more.jsonl"
    make_log(more, 500, seed=34)
    lines = more.read_text().replace('"req-', '"more-')
    more.write_text(lines)
    replay(cluster, more)
    wait_for(lambda: live_rows(port) == 2_500, "the second log is stored", 180)
    cluster.stop_all()
    phase("second log")

    # With the monitor stopped, `distillwatch sql` opens the store itself: the same 200 attempts.
    store_dsn = f"chdb://{tmp_path / 'data' / 'clickhouse'}"
    for query in queries:
        with pytest.raises(DistillwatchError):
            run_sql(query, {}, store_dsn, "distillwatch", "http://127.0.0.1:9")
    phase("direct")
    after = state(lambda q: stored(tmp_path / "data", q))
    grew = {k for k in before if k.startswith("distillwatch.") and after.get(k) != before[k]}
    assert grew <= GROW_WITH_INPUT, grew  # the second log's rows; every other table as it was
    assert all(after[k][0] > before[k][0] for k in grew)
    assert {k: v for k, v in after.items() if k not in grew} == {k: v for k, v in before.items() if k not in grew}
    assert files_under(tmp_path, Path("/var/lib/clickhouse/user_files")) - files_before == {
        str(more)}
    (query_log,), = stored(tmp_path / "data", "SELECT count() FROM system.tables WHERE database = 'system' "
                                              "AND name = 'query_log'")
    report("S3", attempts_per_path=len(queries), paths=["POST /sql", "distillwatch sql on the store",
                                                        "distillwatch sql through the API x2"],
           refused_by=outcomes, executed=len(accepted), tables_checked=len(before) - 2,
           files_written=0, slow_query=slow.stderr.strip()[-160:], query_log_available=bool(query_log),
           sink_writes_after=True, seconds=phases)
