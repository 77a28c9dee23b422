"""``distillwatch forensics NAME [--since 6h] [--slice K=V]``: the saved forensic queries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Optional

import typer

from distillwatch.cli.context import console, fail, settings_of
from distillwatch.cli.output import Format, print_rows
from distillwatch.settings import Settings
from schemas.errors import DistillwatchError
from streams import forensics
from streams.sql import DEFAULT_MAX_ROWS, run_sql


def runner_for(settings: Settings, max_rows: int = DEFAULT_MAX_ROWS) -> forensics.Runner:
    """Read-only SQL on the configured store, or through the running monitor that holds it."""
    api = f"http://{settings.http.host}:{settings.http.port}"

    def run(sql: str, params: dict[str, Any]) -> Any:
        return run_sql(sql, params, settings.clickhouse_dsn(), settings.clickhouse.database, api, max_rows)

    return run


def scope_of(settings: Settings, since: str, until: Optional[str], slices: list[str],
             limit: int = 100) -> forensics.Scope:
    now = datetime.now(UTC)
    pairs: list[tuple[str, str]] = []
    for text in slices:
        pairs += forensics.parse_slice(text)
    return forensics.Scope(
        since=forensics.parse_time(since, now),
        until=forensics.parse_time(until, now) if until else now,
        slices=tuple(pairs), config=settings.evaluation.eval_config(),
        database=settings.clickhouse.database, limit=limit)


def forensics_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A saved query (see `distillwatch forensics list`), or list."),
    since: str = typer.Option("6h", "--since", help="Start: a duration back from now (6h, 30m, 2d) or an RFC 3339 time."),
    until: Optional[str] = typer.Option(None, "--until", help="End (exclusive), same forms; default now."),
    slice_: list[str] = typer.Option([], "--slice", "-s", help="K=V (repeatable, or K=V,K2=V2): only this slice."),
    output: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000, help="Rows for queries that list requests or alerts."),
    max_rows: int = typer.Option(DEFAULT_MAX_ROWS, "--max-rows", min=1, max=1_000_000, help="Row limit of the query."),
    show_sql: bool = typer.Option(False, "--show-sql", help="Print the SQL and its parameters instead of running it."),
) -> None:
    """Run a saved forensic query: the way from an alert to the offending requests."""
    settings = settings_of(ctx)
    if name == "list":
        rows = [[q.name, q.description] for q in forensics.SAVED.values()]
        print_rows(["name", "description"], rows, output)
        return
    try:
        query = forensics.get(name)
        scope = scope_of(settings, since, until, slice_, limit)
        if show_sql:
            sql, params = forensics.render(query, scope)
            console.print(sql, markup=False, highlight=False)
            console.print(f"-- parameters: {params}", markup=False, highlight=False)
            return
        result = forensics.run(query.name, scope, runner_for(settings, max_rows))
    except DistillwatchError as exc:
        fail(str(exc))
    period = f"{scope.since:%Y-%m-%d %H:%M}–{scope.until:%Y-%m-%d %H:%M} UTC"
    print_rows(result.columns, result.rows, output,
               caption=f"{query.name}: {len(result.rows)} rows, {period}, via {result.via}")
