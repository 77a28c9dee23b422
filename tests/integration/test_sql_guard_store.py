"""The read-only guard against a real embedded store: 50+ write and injection attempts, each
through the monitor's HTTP API (what ``distillwatch sql`` uses while the monitor holds the
store) and through the direct path, are refused; afterwards every table, row and setting is
as it was and no file was written; reads return the right rows with bound parameters."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from schemas.errors import DistillwatchError
from streams.clickhouse import Store, open_store
from streams.http_api import make_handler, serve
from streams.migrations import migrate
from streams.sql import check_read_only, read_settings, run_sql
from tests.integration.pipeline_support import free_port
from tests.unit.test_sql_guard import ENGINE_REFUSED, PROBE_DIR, TEXT_REFUSED

pytestmark = pytest.mark.integration

ALERT_COLUMNS = ["alert_id", "fingerprint", "rule", "slice", "status", "severity", "metric", "window_start",
                 "window_s", "starts_at", "evidence"]


class Guarded:
    def __init__(self, store: Store, api: str, dsn: str) -> None:
        self.store, self.api, self.dsn = store, api, dsn

    def via_api(self, sql: str, params: dict[str, Any] | None = None, max_rows: int = 1000) -> tuple[int, Any]:
        body = json.dumps({"sql": sql, "params": params or {}, "max_rows": max_rows}).encode()
        req = urllib.request.Request(f"{self.api}/sql", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def direct(self, sql: str, params: dict[str, Any] | None = None, max_rows: int = 1000) -> list[Any]:
        """What run_sql does when it can open the store: the text guard, then readonly=1."""
        result = self.store.query(check_read_only(sql), parameters=params, settings=read_settings(max_rows))
        return [list(r) for r in result.result_rows]

    def state(self) -> dict[str, Any]:
        """Every table with its columns and row count, plus the settings a guard depends on."""
        tables = self.store.query(
            "SELECT database, name, engine FROM system.tables WHERE database NOT IN ('system', "
            "'INFORMATION_SCHEMA', 'information_schema') ORDER BY database, name").result_rows
        out: dict[str, Any] = {"tables": [list(t) for t in tables]}
        for db, name, _ in tables:
            cols = self.store.query("SELECT name, type FROM system.columns WHERE database = {d:String} "
                                    "AND table = {t:String} ORDER BY position",
                                    parameters={"d": db, "t": name}).result_rows
            out[f"{db}.{name}"] = ([list(c) for c in cols],
                                   self.store.query(f"SELECT count() FROM `{db}`.`{name}`").result_rows[0][0])
        out["settings"] = self.store.query(
            "SELECT name, value FROM system.settings WHERE name IN ('readonly', 'allow_ddl')").result_rows
        return out


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    shutil.rmtree(PROBE_DIR, ignore_errors=True)
    Path(PROBE_DIR).mkdir(parents=True)
    path = tmp_path_factory.mktemp("guard") / "ch"
    dsn = f"chdb://{path}"
    with open_store(dsn, owner="test_sql_guard_store") as store:
        migrate(store)
        t0 = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
        rows = [[f"a{i}", f"rule{i % 3}/region=br", f"rule{i % 3}", "region=br", "firing", "page", "accuracy",
                 t0 + timedelta(minutes=i), 60, t0 + timedelta(minutes=i), "{}"] for i in range(12)]
        store.insert("alerts", rows, ALERT_COLUMNS)
        port = free_port()
        server = serve("127.0.0.1", port, make_handler(store, threading.Lock(), CollectorRegistry(),
                                                        lambda: (True, "ok")))
        try:
            yield Guarded(store, f"http://127.0.0.1:{port}", dsn)
        finally:
            server.shutdown()
    shutil.rmtree(PROBE_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def before(guarded: Guarded) -> dict[str, Any]:
    return guarded.state()


ATTEMPTS = TEXT_REFUSED + ENGINE_REFUSED


@pytest.mark.parametrize("sql", ATTEMPTS)
def test_refused_through_the_monitors_api(guarded: Guarded, before: dict[str, Any], sql: str) -> None:
    code, body = guarded.via_api(sql)
    assert code == 400, body
    assert body["error"]  # ClickHouse's or the guard's reason, passed on


@pytest.mark.parametrize("sql", ATTEMPTS)
def test_refused_on_the_direct_path(guarded: Guarded, before: dict[str, Any], sql: str) -> None:
    with pytest.raises(DistillwatchError):
        guarded.direct(sql)


def test_run_sql_falls_back_to_the_api_and_is_refused_there_too(guarded: Guarded) -> None:
    # The store is held by this test's monitor stand-in, so run_sql goes through the API.
    out = run_sql("SELECT count() AS n FROM distillwatch.alerts", {}, guarded.dsn, "distillwatch", guarded.api)
    assert out.via == guarded.api and out.rows == [[12]]
    with pytest.raises(DistillwatchError, match="readonly"):
        run_sql("SELECT 1 SETTINGS readonly = 0", {}, guarded.dsn, "distillwatch", guarded.api)


def test_reads_return_the_right_rows_with_bound_parameters(guarded: Guarded) -> None:
    sql = ("SELECT alert_id FROM distillwatch.alerts WHERE rule = {rule:String} "
           "AND starts_at >= {t:DateTime64(3, 'UTC')} ORDER BY alert_id")
    params = {"rule": "rule1", "t": "2023-11-14 22:20:20.000"}  # alert a7 starts then
    expected = [["a10"], ["a7"]]  # rule1 is a1, a4, a7, a10; ordered as strings
    assert guarded.direct(sql, params) == expected
    code, body = guarded.via_api(sql, params)
    assert code == 200 and body["rows"] == expected and body["columns"] == ["alert_id"]


def test_an_injected_parameter_is_only_a_value(guarded: Guarded, before: dict[str, Any]) -> None:
    sql = "SELECT count() FROM distillwatch.alerts WHERE rule = {rule:String}"
    for value in ["rule1' OR 1=1 --", "x'; DROP TABLE distillwatch.alerts; --", "rule1\\' OR \\'1\\'=\\'1"]:
        assert guarded.direct(sql, {"rule": value}) == [[0]]
        code, body = guarded.via_api(sql, {"rule": value})
        assert code == 200 and body["rows"] == [[0]]
    assert guarded.direct(sql, {"rule": "rule1"}) == [[4]]


def test_the_row_limit_holds(guarded: Guarded) -> None:
    rows = guarded.direct("SELECT number FROM numbers(1000000)", max_rows=10)
    assert 10 <= len(rows) < 1_000_000  # 'break' stops at the first block past the limit
    code, body = guarded.via_api("SELECT number FROM numbers(1000000)", max_rows=10)
    assert code == 200 and len(body["rows"]) < 1_000_000


def test_nothing_changed_after_every_attempt(guarded: Guarded, before: dict[str, Any]) -> None:
    """Runs last in this module (pytest keeps file order): the attempts above left no trace."""
    assert guarded.state() == before
    assert list(Path(PROBE_DIR).iterdir()) == []
