"""The embedded ClickHouse store (chdb): migrations, idempotent inserts, one-process ownership."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from streams.clickhouse import Store, open_store
from streams.migrations import migrate

pytestmark = pytest.mark.integration

DESIGN_TABLES = {"shadow_evaluations", "shadow_payloads", "window_metrics", "alerts",
                 "alert_deliveries", "retrain_jobs", "model_versions", "dead_letters",
                 "distill_examples"}
DELIVERY_COLUMNS = ["alert_id", "target", "attempt", "status", "http_status", "error", "attempted_at"]


@pytest.fixture
def dsn(tmp_path: Path) -> str:
    return f"chdb://{tmp_path}/ch"


@pytest.fixture
def store(dsn: str) -> Iterator[Store]:
    s = open_store(dsn)
    try:
        yield s
    finally:
        s.close()


def _tables(store: Store) -> set[str]:
    rows = store.query("SELECT name FROM system.tables WHERE database = {db:String}",
                       parameters={"db": store.database}).result_rows
    return {r[0] for r in rows}


def test_migrate_is_idempotent_and_creates_design_tables(store: Store) -> None:
    """migrate() creates every §7 table; a second run applies nothing and does not fail."""
    first = migrate(store)
    assert 1 in [m.version for m in first]
    assert DESIGN_TABLES <= _tables(store)
    assert migrate(store) == []
    versions = store.query(f"SELECT version FROM {store.database}.schema_migrations FINAL").result_rows
    assert sorted(r[0] for r in versions) == sorted(m.version for m in first)


def test_migrations_persist_across_reopen(dsn: str) -> None:
    """An embedded store keeps its tables and migration record after close and reopen."""
    with open_store(dsn) as s:
        assert migrate(s) != []
    with open_store(dsn) as s:
        assert migrate(s) == []
        assert DESIGN_TABLES <= _tables(s)


def _deliveries(alert_id: str) -> list[list[object]]:
    at = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
    return [[alert_id, "https://oncall.example/hook", 1, "failed", 503, "Service Unavailable", at],
            [alert_id, "https://oncall.example/hook", 2, "ok", 200, "", at]]


def _count(store: Store, alert_id: str) -> int:
    rows = store.query(f"SELECT count() FROM {store.database}.alert_deliveries WHERE alert_id = {{a:String}}",
                       parameters={"a": alert_id}).result_rows
    return int(rows[0][0])


def test_retried_insert_with_same_token_stored_once(store: Store) -> None:
    """Three inserts of the same rows with one dedup token leave one copy; a new token adds one."""
    migrate(store)
    rows = _deliveries("alert-1")
    for _ in range(3):
        store.insert("alert_deliveries", rows, DELIVERY_COLUMNS, dedup_token="alert-1/batch-1")
    assert _count(store, "alert-1") == len(rows)
    store.insert("alert_deliveries", rows, DELIVERY_COLUMNS, dedup_token="alert-1/batch-2")
    assert _count(store, "alert-1") == 2 * len(rows)


OPEN_IN_CHILD = """
import json, sys, time
from streams.clickhouse import open_store
start = time.monotonic()
try:
    store = open_store(sys.argv[1], owner="test-child")
except Exception as exc:
    print(json.dumps({"opened": False, "error": type(exc).__name__, "message": str(exc),
                      "elapsed": time.monotonic() - start}))
else:
    n = store.query("SELECT count() FROM system.tables WHERE database = 'distillwatch'").result_rows[0][0]
    store.close()
    print(json.dumps({"opened": True, "tables": int(n), "elapsed": time.monotonic() - start}))
"""


def _open_in_child(dsn: str, env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", OPEN_IN_CHILD, dsn], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_second_process_is_refused_fast_then_admitted_after_close(dsn: str, child_env: Any) -> None:
    """Another process gets StoreLockedError naming our pid within 5 s; after close() it opens."""
    holder = open_store(dsn, owner="test-holder")
    try:
        migrate(holder)
        refused = _open_in_child(dsn, child_env())
        assert refused["opened"] is False
        assert refused["error"] == "StoreLockedError"
        assert f"pid {os.getpid()}" in str(refused["message"])
        assert float(refused["elapsed"]) < 5.0  # type: ignore[arg-type]
    finally:
        holder.close()
    admitted = _open_in_child(dsn, child_env())
    assert admitted["opened"] is True
    assert int(admitted["tables"]) >= len(DESIGN_TABLES)  # type: ignore[call-overload]
