"""``distillwatch alerts test``: send a labelled test alert to every configured target."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from distillwatch.cli.context import console, fail, settings_of
from streams.alerting.delivery import DeliveryAttempt, deliver, http_client
from streams.alerting.notification import make_test_notification

app = typer.Typer(help="Alerts to on-call and their delivery targets.", no_args_is_help=True)


def result_line(target_name: str, target_type: str, last: DeliveryAttempt) -> str:
    """One target's outcome: ok/FAILED, name (type), HTTP status, attempts, error."""
    mark = "ok    " if last.status == "delivered" else "FAILED"
    http = f"HTTP {last.http_status}" if last.http_status is not None else "no response"
    tries = f"{last.attempt} attempt{'s' if last.attempt != 1 else ''}"
    tail = f"  {last.error}" if last.error and last.error != http else ""
    return f"{mark} {target_name} ({target_type})  {last.status}  {http}  {tries}{tail}"


@app.command("test")
def test_targets(
    ctx: typer.Context,
    only: Annotated[Optional[list[str]], typer.Option("--target", "-t", help="Only this target (by name); repeatable.")] = None,
    attempts: Annotated[int, typer.Option(min=1, help="Attempts per target; retries follow alerting.retry.")] = 1,
) -> None:
    """Send a test alert (labelled test=true, info severity) to each target; exit 1 if any failed."""
    settings = settings_of(ctx)
    targets = list(settings.alerting.targets)
    if not targets:
        fail("no alert targets configured: add alerting.targets to the YAML file (see docs/alerting.md)")
    if only:
        unknown = sorted(set(only) - {t.name for t in targets})
        if unknown:
            fail(f"no target named {', '.join(unknown)}; configured: {', '.join(t.name for t in targets)}")
        targets = [t for t in targets if t.name in only]
    notification = make_test_notification(settings.alerting.model, time.time())
    policy = settings.alerting.retry.model_copy(update={"max_attempts": attempts})
    failed = []
    with http_client() as client:
        for target in targets:
            last = deliver(target, notification, client, lambda _attempt: None, policy=policy)
            console.print(result_line(target.name, target.type, last), markup=False, highlight=False)
            if last.status != "delivered":
                failed.append(target.name)
    if failed:
        fail(f"test alert {notification.alert_id} not delivered to {len(failed)} of {len(targets)} "
             f"target(s): {', '.join(failed)}")
    console.print(f"test alert {notification.alert_id} delivered to {len(targets)} target(s)",
                  markup=False, highlight=False)


LIST_SQL = """
SELECT a.alert_id, a.status, a.rule, a.slice, a.severity, a.metric, a.value, a.threshold,
       toUnixTimestamp(a.window_start) AS window_start, a.window_s, a.created_at, a.evidence,
       d.deliveries
FROM {db:Identifier}.alerts AS a FINAL
LEFT JOIN (
    SELECT alert_id, arrayStringConcat(groupArray(concat(target, ':', status, '×', toString(attempts))), ' ') AS deliveries
    FROM (SELECT alert_id, target, argMax(status, attempt) AS status, max(attempt) AS attempts
          FROM {db:Identifier}.alert_deliveries GROUP BY alert_id, target)
    GROUP BY alert_id
) AS d ON d.alert_id = a.alert_id
WHERE a.created_at >= now64(3) - toIntervalSecond({within:UInt64})
ORDER BY a.window_start, a.status = 'resolved', a.rule, a.slice
"""


@app.command("list")
def list_alerts(
    ctx: typer.Context,
    within: Annotated[str, typer.Option("--within", help="Alert events written in the last D (30m, 6h, 7d).")] = "7d",
    output: Annotated[str, typer.Option("--format", "-f", help="table or json (json carries the whole evidence).")] = "table",
) -> None:
    """Alerts firing now, then every recent alert event with its value, deliveries and evidence."""
    import json as _json

    from rich.table import Table

    from streams.alerting.notification import Notification, fmt, iso_time
    from streams.sql import run_sql

    settings = settings_of(ctx)
    if output not in ("table", "json"):
        fail(f"--format {output!r}: expected table or json")
    seconds = _duration_s(within)
    api = f"http://{settings.http.host}:{settings.http.port}"
    result = run_sql(LIST_SQL, {"db": settings.clickhouse.database, "within": str(seconds)},
                     settings.clickhouse_dsn(), settings.clickhouse.database, api, 100_000)
    events = [dict(zip(result.columns, row)) for row in result.rows]
    latest: dict[str, dict[str, object]] = {}
    for e in events:
        latest[f"{e['rule']}/{e['slice']}"] = e
    firing = [e for e in latest.values() if e["status"] == "firing"]
    if output == "json":
        for e in events:
            e["evidence"] = _json.loads(str(e["evidence"]))
            print(_json.dumps(e, default=str))
        return
    console.print(f"{len(firing)} alert(s) firing now; {len(events)} event(s) in the last {within}",
                  markup=False, highlight=False)
    table = Table("window (UTC)", "status", "rule", "slice", "value", "threshold", "deliveries", "examples")
    for e in events:
        n = Notification.from_json(str(e["evidence"]))
        table.add_row(f"{iso_time(int(e['window_start']))}/{e['window_s']}s", str(e["status"]), str(e["rule"]),
                      str(e["slice"]), fmt(n.value), f"{n.op} {fmt(n.threshold)}",
                      str(e["deliveries"] or "none yet"), ", ".join(n.example_request_ids[:3]))
    console.print(table)
    for e in firing:
        n = Notification.from_json(str(e["evidence"]))
        console.print(f"\n{n.fingerprint}: {n.headline}\n  replay: {n.replay_offsets or '-'}\n  SQL: {n.forensics_sql}",
                      markup=False, highlight=False, soft_wrap=True)


def _duration_s(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value, unit = float(text[:-1]), text[-1]
        if unit not in units or value <= 0:
            raise ValueError
    except (ValueError, IndexError):
        fail(f"--within {text!r}: expected a duration such as 30m, 6h or 7d")
    return int(value * units[unit])
