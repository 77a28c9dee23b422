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
