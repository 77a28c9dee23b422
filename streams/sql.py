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


def _strip_comments(sql: str) -> str:
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.S)
    return re.sub(r"--[^\n]*", " ", sql).strip()


def check_read_only(sql: str) -> str:
    """The statement without comments; NotAReadError unless it is a single read."""
    text = _strip_comments(sql)
    body = text.rstrip().rstrip(";").rstrip()
    if not body:
        raise NotAReadError("empty query")
    if ";" in _without_strings(body):
        raise NotAReadError("one statement at a time (found ';' inside the query)")
    verb = body.split(None, 1)[0].upper()
    if verb not in READ_VERBS:
        raise NotAReadError(f"only read queries are allowed ({', '.join(READ_VERBS)}); got {verb}")
    if _OUTFILE.search(_without_strings(body)):  # the embedded engine writes the file even readonly
        raise NotAReadError("INTO OUTFILE writes a file; only read queries are allowed")
    return body


_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)


def _without_strings(sql: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'", "''", sql)


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
