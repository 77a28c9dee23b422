"""``distillwatch replay LOG.jsonl``: publish a replay log to the shadow topics."""

from __future__ import annotations

from pathlib import Path

import typer

from distillwatch.cli.context import console_err, fail, settings_of
from schemas.replay import open_log
from streams.replay import ROLE_TOPICS, ReplayReport, replay as publish


def replay(
    ctx: typer.Context,
    log: Path = typer.Argument(..., help="Replay log (JSON lines, DESIGN §4)."),
    rate: float = typer.Option(None, "--rate", min=0.001, help="Pairs per second [default: as fast as possible]."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
    requests_only: bool = typer.Option(
        False, "--requests-only", help="Leave out the recorded answers: live workers give them."),
) -> None:
    """Publish every line to its topic; exit 1 unless the broker acknowledged every record."""
    settings = settings_of(ctx)
    if not log.is_file():
        fail(f"replay log {log} does not exist")

    def progress(r: ReplayReport) -> None:
        if not quiet:
            console_err.print(
                f"{r.lines} lines, {r.pairs} pairs, {r.produced} records sent, "
                f"{r.delivered} acknowledged, {r.failed} failed", markup=False)

    with open_log(log) as handle:
        skip = frozenset(ROLE_TOPICS.values()) if requests_only else frozenset()
        report = publish(handle, settings, rate=rate, progress=progress, skip_topics=skip)
    console_err.print(
        f"replayed {log}: {report.pairs} pairs, {report.invalid_lines} invalid lines sent raw "
        f"to {settings.topic('shadow.requests')}, {report.delivered}/{report.produced} records "
        "acknowledged", markup=False)
    if not report.ok:
        fail(f"{report.produced - report.delivered} records not acknowledged by "
             f"{settings.kafka.bootstrap_servers}: " + "; ".join(report.errors[:3]))
