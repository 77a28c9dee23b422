"""Only single read statements get through to ClickHouse (which also runs them readonly=1)."""

from __future__ import annotations

import pytest

from streams.sql import NotAReadError, check_read_only


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "  select count() from distillwatch.window_metrics FINAL  ",
    "WITH 1 AS x SELECT x",
    "-- why this page fired\nSELECT * FROM distillwatch.alerts",
    "/* by slice */ SHOW TABLES FROM distillwatch",
    "DESCRIBE TABLE distillwatch.shadow_evaluations",
    "EXPLAIN SELECT 1",
    "SELECT 'a;b' AS s;",
])
def test_reads_pass(sql: str) -> None:
    assert check_read_only(sql)


@pytest.mark.parametrize("sql, why", [
    ("INSERT INTO distillwatch.alerts VALUES ()", "got INSERT"),
    ("DROP TABLE distillwatch.alerts", "got DROP"),
    ("ALTER TABLE distillwatch.alerts DELETE WHERE 1", "got ALTER"),
    ("SELECT 1; DROP TABLE distillwatch.alerts", "one statement"),
    ("/* SELECT */ TRUNCATE TABLE distillwatch.alerts", "got TRUNCATE"),
    ("-- SELECT\nOPTIMIZE TABLE distillwatch.alerts", "got OPTIMIZE"),
    ("   ", "empty"),
])
def test_writes_and_batches_are_refused_with_a_reason(sql: str, why: str) -> None:
    with pytest.raises(NotAReadError, match=why):
        check_read_only(sql)
