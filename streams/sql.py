"""Read-only SQL for on-call forensics: against the store, or through the monitor that owns it.

Three guards, cheapest first: the text must be one read statement (SELECT, WITH, SHOW,
DESCRIBE, EXPLAIN); ClickHouse runs it with ``readonly=1``; and with a row limit and a time
limit. Parameters are bound by ClickHouse (``{name:Type}`` in the text), never pasted in.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from schemas.errors import DistillwatchError
from streams.clickhouse import StoreLockedError, is_embedded, open_store

READ_VERBS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
DEFAULT_MAX_ROWS = 10_000
MAX_EXECUTION_S = 30


class NotAReadError(DistillwatchError):
    """The statement would change something, or is not one statement."""


def check_read_only(sql: str) -> str:
    """The statement to run (comments removed, literals as written); NotAReadError unless it is
    a single read that writes nothing.

    The text is split the way ClickHouse's lexer splits it (strings, quoted identifiers,
    nested comments), so a quote inside an identifier or a comment marker inside a string
    cannot hide a clause from the checks; constructs it does not model (``#`` comments,
    ``$$`` strings) are refused rather than guessed at.
    """
    run, checked = _lex(sql)
    run, checked = run.rstrip().rstrip(";").rstrip(), checked.rstrip().rstrip(";").rstrip()
    if not checked:
        raise NotAReadError("empty query")
    if ";" in checked:
        raise NotAReadError("one statement at a time (found ';' inside the query)")
    verb = checked.split(None, 1)[0].upper()
    if verb not in READ_VERBS:
        raise NotAReadError(f"only read queries are allowed ({', '.join(READ_VERBS)}); got {verb}")
    if _OUTFILE.search(checked):  # the embedded engine writes the file even readonly
        raise NotAReadError("INTO OUTFILE writes a file; only read queries are allowed")
    if _INSERT.search(checked):  # WITH ... INSERT: refused by readonly=1, but clickhouse-connect
        # applies an insert's settings to the session and cannot take readonly back: every later
        # write of the monitor (the sink) would fail
        raise NotAReadError("only read queries are allowed; found INSERT")
    return run


_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)
_INSERT = re.compile(r"\bINSERT\b", re.IGNORECASE)


def _lex(sql: str) -> tuple[str, str]:
    """(text to run: comments as spaces; text to check: strings as '' too)."""
    run: list[str] = []
    checked: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch, two = sql[i], sql[i:i + 2]
        if ch in "'\"`":
            end = i + 1
            while end < n and sql[end] != ch:
                end += 2 if sql[end] == "\\" else 1
            if end >= n:
                raise NotAReadError(f"unterminated {ch} at character {i}")
            run.append(sql[i:end + 1])
            checked.append("''" if ch == "'" else sql[i:end + 1])
            i = end + 1
        elif two == "--":
            end = sql.find("\n", i)
            i = n if end < 0 else end
            run.append(" ")
            checked.append(" ")
        elif two == "/*":
            end = sql.find("*/", i + 2)
            if end < 0:
                raise NotAReadError(f"unterminated comment at character {i}")
            if "/*" in sql[i + 2:end]:
                raise NotAReadError("nested comments are not accepted")
            i = end + 2
            run.append(" ")
            checked.append(" ")
        elif ch in "#$":
            raise NotAReadError(f"'{ch}' outside a string ({'comment' if ch == '#' else 'heredoc'} syntax)"
                                " is not accepted; use -- comments and '...' strings")
        else:
            run.append(ch)
            checked.append(ch)
            i += 1
    return "".join(run), "".join(checked)


def read_settings(max_rows: int) -> dict[str, Any]:
    return {"readonly": 1, "max_result_rows": max_rows, "result_overflow_mode": "break",
            "max_execution_time": MAX_EXECUTION_S}


@dataclass
class SqlResult:
    columns: list[str]
    rows: list[list[Any]]
    via: str
    """"store" (queried directly) or the monitor's URL."""


def run_sql(sql: str, params: dict[str, str], dsn: str, database: str, api_url: str,
            max_rows: int = DEFAULT_MAX_ROWS) -> SqlResult:
    """Run a read query directly, or through the running monitor when it owns the store."""
    body = check_read_only(sql)
    try:
        with open_store(dsn, database, owner="distillwatch sql", lock_timeout_s=0.5) as store:
            result = store.query(body, parameters=params or None, settings=read_settings(max_rows))
            return SqlResult(list(result.column_names), [list(r) for r in result.result_rows], "store")
    except StoreLockedError:
        if not is_embedded(dsn):
            raise
    return _via_api(body, params, api_url, max_rows)


def _via_api(sql: str, params: dict[str, str], api_url: str, max_rows: int) -> SqlResult:
    payload = json.dumps({"sql": sql, "params": params, "max_rows": max_rows}).encode()
    request = urllib.request.Request(f"{api_url}/sql", data=payload, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=MAX_EXECUTION_S + 5) as resp:
            data = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
        raise DistillwatchError(f"query refused: {detail}") from None
    except OSError as exc:
        raise DistillwatchError(
            f"the embedded store is held by another process and its HTTP API at {api_url} "
            f"does not answer ({exc}); is `distillwatch run` up?") from None
    return SqlResult(data["columns"], data["rows"], api_url)
