"""The read-only guard reads SQL the way ClickHouse's lexer does (found by fault test S3).

The guard used to blank out '...' strings with a regex after removing comments with another.
ClickHouse also has quoted identifiers ("..." and `...`), nested comments, ``#`` comments and
``$$`` strings, so a quote inside an identifier or a heredoc hid an INTO OUTFILE from the
check and the embedded engine wrote the file; and ``WITH ... INSERT`` passed as a read: readonly
refused it, but clickhouse-connect applies an insert's settings to the session and could not
take readonly back, so every later write of the monitor failed.
"""

from __future__ import annotations

import pytest

from streams.sql import NotAReadError, check_read_only


@pytest.mark.parametrize("sql, why", [
    ("SELECT 1 AS \"a'b\" INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
    ("SELECT 1 AS `a'b` INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
    ("SELECT $$'$$ INTO OUTFILE '/tmp/x'", "heredoc"),
    ("SELECT 1 /* /* */ INTO OUTFILE '/tmp/x' */", "nested"),
    ("SELECT 1 # '\nINTO OUTFILE '/tmp/x' --'", "comment syntax"),
    ("WITH 1 AS x INSERT INTO distillwatch.alerts (alert_id) VALUES ('x')", "INSERT"),
    ("with 1 as x\n insert into distillwatch.alerts select * from distillwatch.alerts", "INSERT"),
    ("SELECT 1 AS \"x;y\"; DROP TABLE t", "one statement"),
    ("SELECT 'unterminated", "unterminated"),
    ("SELECT 1 /* unterminated", "unterminated"),
])
def test_clauses_hidden_from_a_naive_reader_are_refused(sql: str, why: str) -> None:
    with pytest.raises(NotAReadError, match=why):
        check_read_only(sql)


def test_comment_markers_inside_strings_are_text_and_kept() -> None:
    sql = "SELECT '--' AS a, 'x/*y' AS b, \"c--d\" -- note\nFROM t /* c */;"
    assert check_read_only(sql) == "SELECT '--' AS a, 'x/*y' AS b, \"c--d\"  \nFROM t"


def test_quotes_escaped_both_ways_stay_inside_the_string() -> None:
    assert check_read_only("SELECT 'it''s; INTO OUTFILE', 'a\\'b; INSERT'") == \
        "SELECT 'it''s; INTO OUTFILE', 'a\\'b; INSERT'"
