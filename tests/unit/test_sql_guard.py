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


# --- the write and injection corpus (also run against a real store in
# tests/integration/test_sql_guard_store.py) ----------------------------------------------------

PROBE_DIR = "/tmp/distillwatch-guard-probe"
"""Attempts that would write a file aim here; the integration test checks it stays empty."""

TEXT_REFUSED = [
    # writes and DDL, each refused by its verb
    "INSERT INTO distillwatch.alerts (alert_id) VALUES ('x')",
    "insert into distillwatch.alerts select * from distillwatch.alerts",
    "INSERT INTO FUNCTION file('" + PROBE_DIR + "/a.csv', 'CSV', 'x UInt8') VALUES (1)",
    "INSERT INTO TABLE FUNCTION url('http://127.0.0.1:9/x', 'CSV', 'x UInt8') VALUES (1)",
    "DROP TABLE distillwatch.alerts",
    "DROP TABLE IF EXISTS distillwatch.shadow_evaluations SYNC",
    "DROP DATABASE distillwatch",
    "TRUNCATE TABLE distillwatch.window_metrics",
    "ALTER TABLE distillwatch.alerts DELETE WHERE 1",
    "ALTER TABLE distillwatch.alerts UPDATE status = 'resolved' WHERE 1",
    "ALTER TABLE distillwatch.alerts DROP COLUMN evidence",
    "ALTER TABLE distillwatch.alerts ADD COLUMN pwned UInt8",
    "ALTER TABLE distillwatch.alerts MODIFY TTL toDateTime(starts_at)",
    "DELETE FROM distillwatch.alerts WHERE 1",
    "UPDATE distillwatch.alerts SET status = 'x' WHERE 1",
    "CREATE TABLE distillwatch.pwned (x UInt8) ENGINE = Memory",
    "CREATE TABLE distillwatch.pwned ENGINE = Memory AS SELECT * FROM distillwatch.alerts",
    "CREATE VIEW distillwatch.pwned AS SELECT 1",
    "CREATE MATERIALIZED VIEW distillwatch.pwned ENGINE = Memory AS SELECT * FROM distillwatch.alerts",
    "CREATE DATABASE pwned",
    "CREATE USER pwned IDENTIFIED BY 'x'",
    "CREATE FUNCTION pwned AS x -> x",
    "RENAME TABLE distillwatch.alerts TO distillwatch.gone",
    "EXCHANGE TABLES distillwatch.alerts AND distillwatch.retrain_jobs",
    "OPTIMIZE TABLE distillwatch.shadow_evaluations FINAL",
    "DETACH TABLE distillwatch.alerts",
    "ATTACH TABLE distillwatch.alerts",
    "UNDROP TABLE distillwatch.alerts",
    "SYSTEM STOP MERGES distillwatch.shadow_evaluations",
    "SYSTEM DROP MARK CACHE",
    "SYSTEM SHUTDOWN",
    "KILL QUERY WHERE 1",
    "GRANT ALL ON *.* TO default",
    "REVOKE SELECT ON distillwatch.* FROM default",
    "SET readonly = 0",
    "SET allow_ddl = 1",
    "USE system",
    "BACKUP TABLE distillwatch.alerts TO File('" + PROBE_DIR + "/b')",
    "RESTORE TABLE distillwatch.alerts FROM File('" + PROBE_DIR + "/b')",
    "dRoP tAbLe distillwatch.alerts",
    "\u200bDROP TABLE distillwatch.alerts",
    # more than one statement
    "SELECT 1; DROP TABLE distillwatch.alerts",
    "SELECT 1;INSERT INTO distillwatch.alerts (alert_id) VALUES ('x')",
    "SELECT 1 ; ;",
    "WITH x AS (SELECT 1) SELECT * FROM x; TRUNCATE TABLE distillwatch.alerts",
    "SELECT ';'; DROP TABLE distillwatch.alerts",
    "SELECT 'it''s'; DROP TABLE distillwatch.alerts",
    "SELECT 'a\\';'; DROP TABLE distillwatch.alerts",
    "SELECT 1 /* ; */; DROP TABLE distillwatch.alerts",
    "SELECT 1 -- note\n; DROP TABLE distillwatch.alerts",
    "SELECT 1\n;\nALTER TABLE distillwatch.alerts DELETE WHERE 1",
    "SELECT \"a;b\" FROM distillwatch.alerts",
    # comments hiding the verb
    "/* SELECT */ DROP TABLE distillwatch.alerts",
    "-- SELECT\nDROP TABLE distillwatch.alerts",
    "/* SELECT 1; */ INSERT INTO distillwatch.alerts (alert_id) VALUES ('x')",
    # a read that writes a file
    "SELECT 1 INTO OUTFILE '" + PROBE_DIR + "/c.csv'",
    "SELECT * FROM distillwatch.alerts INTO OUTFILE '" + PROBE_DIR + "/d.csv' TRUNCATE",
    "WITH 1 AS x SELECT x INTO /* */ outfile '" + PROBE_DIR + "/e.csv'",
    "SHOW TABLES FROM distillwatch INTO OUTFILE '" + PROBE_DIR + "/f.csv'",
    "SELECT 1 INTO\nOUTFILE '" + PROBE_DIR + "/g.csv' AND STDOUT",
]
"""Refused before they reach ClickHouse: not a read verb, several statements, or INTO OUTFILE."""

ENGINE_REFUSED = [
    # reads that try to lift the guard or reach outside the store: ClickHouse refuses them (readonly=1)
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS readonly = 2",
    "SELECT count() FROM distillwatch.alerts SETTINGS readonly = 0, allow_ddl = 1",
    "SELECT * FROM distillwatch.shadow_evaluations SETTINGS max_result_rows = 0",
    "SELECT 1 SETTINGS max_execution_time = 0",
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')",
    "SELECT * FROM executable('ls', 'TSV', 'x String')",
    "SELECT * FROM remote('127.0.0.1:9000', system.one)",
    "SELECT * FROM s3('http://127.0.0.1:9/bucket/key.csv', 'CSV', 'x UInt8')",
    "WITH (SELECT 1) AS x SELECT * FROM file('" + PROBE_DIR + "/h.csv', 'CSV', 'x UInt8')",
]
"""Pass the text check (they are single reads); the engine's read-only profile refuses them."""


@pytest.mark.parametrize("sql", TEXT_REFUSED)
def test_writes_injections_and_outfile_are_refused_before_clickhouse(sql: str) -> None:
    with pytest.raises(NotAReadError):
        check_read_only(sql)


@pytest.mark.parametrize("sql", ENGINE_REFUSED)
def test_reads_that_lift_the_guard_are_left_to_the_readonly_profile(sql: str) -> None:
    assert check_read_only(sql)


def test_the_corpus_has_fifty_attempts_and_a_string_is_not_a_clause() -> None:
    assert len(TEXT_REFUSED) + len(ENGINE_REFUSED) >= 50
    assert check_read_only("SELECT 'INTO OUTFILE' AS s, 'DROP TABLE x; --' AS t")
