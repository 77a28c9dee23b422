"""``distillwatch sql "SELECT …"``: read-only SQL for forensics."""

from __future__ import annotations

import csv
import json
import sys
from enum import Enum

import typer
from rich.table import Table

from distillwatch.cli.context import console, fail, settings_of
from streams.sql import DEFAULT_MAX_ROWS, run_sql


class SqlFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def sql(
    ctx: typer.Context,
    query: str = typer.Argument(..., help='A read query, e.g. "SELECT count() FROM distillwatch.window_metrics".'),
    param: list[str] = typer.Option([], "--param", "-p", help="k=v, bound to {k:Type} in the query."),
    output: SqlFormat = typer.Option(SqlFormat.table, "--format", "-f", help="Output format."),
    max_rows: int = typer.Option(DEFAULT_MAX_ROWS, "--max-rows", min=1, max=1_000_000, help="Row limit."),
) -> None:
    """Run a read-only query against the store (through the running monitor if it holds it)."""
    settings = settings_of(ctx)
    params = {}
    for item in param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param {item!r}: expected NAME=VALUE")
        params[key] = value
    api = f"http://{settings.http.host}:{settings.http.port}"
    result = run_sql(query, params, settings.clickhouse_dsn(), settings.clickhouse.database, api, max_rows)
    if output is SqlFormat.json:
        for row in result.rows:
            print(json.dumps(dict(zip(result.columns, row, strict=True)), default=str))
    elif output is SqlFormat.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        table = Table(*result.columns, caption=f"{len(result.rows)} rows via {result.via}")
        for row in result.rows:
            table.add_row(*("NULL" if v is None else str(v) for v in row))
        console.print(table)
