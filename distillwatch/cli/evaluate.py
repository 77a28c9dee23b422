"""``distillwatch evaluate LOG.jsonl``: every metric, per slice and window, offline."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from fnmatch import fnmatchcase
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

import orjson
import typer
from threadpoolctl import threadpool_limits

from distillwatch.cli.context import console_err, fail, settings_of
from evaluators.offline import LogSummary, collect_rarely, evaluate_log
from evaluators.offline_parallel import WorkerFailed, default_workers
from evaluators.readout import MetricRow
from schemas.messages import utc_timestamp
from schemas.replay import open_log

SHOWN_REASONS = 20


class OutputFormat(str, Enum):
    json = "json"
    table = "table"


def rfc3339(epoch_s: int) -> str:
    return utc_timestamp(datetime.fromtimestamp(epoch_s, UTC))


def row_json(row: MetricRow) -> bytes:
    return orjson.dumps(
        {
            "window_start": rfc3339(row.window_start),
            "window_end": rfc3339(row.window_end),
            "window_s": row.window_s,
            "slice": row.slice,
            "metric": row.metric,
            "value": row.value,
            "numerator": row.numerator,
            "denominator": row.denominator,
            "support": row.support,
            "ci_low": row.ci_low,
            "ci_high": row.ci_high,
        }
    )


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if float(x).is_integer() and abs(x) < 1e12:
        return str(int(x))
    return f"{x:.4g}"


def row_text(row: MetricRow) -> str:
    ci = f"[{_fmt(row.ci_low)}, {_fmt(row.ci_high)}]" if row.ci_low is not None else ""
    frac = f"{_fmt(row.numerator)}/{_fmt(row.denominator)}" if row.denominator is not None else ""
    return (f"{rfc3339(row.window_start)}  {row.slice:<32} {row.metric:<34} "
            f"{_fmt(row.value):>10}  {frac:<15} {ci}")


def read_lines(path: Path) -> Iterator[bytes]:
    with open_log(path) as handle:
        yield from handle


def report_summary(summary: LogSummary) -> None:
    for line_no, reason in summary.reasons[:SHOWN_REASONS]:
        console_err.print(f"line {line_no}: {reason}", markup=False, highlight=False)
    if summary.invalid > SHOWN_REASONS:
        console_err.print(f"... and {summary.invalid - SHOWN_REASONS} more invalid lines; by rule:",
                          markup=False)
        for reason, n in summary.reason_counts.most_common(10):
            console_err.print(f"  {n:>8}  {reason}", markup=False, highlight=False)
    late = sum(summary.late_events.values())
    console_err.print(
        f"evaluated {summary.requests} requests from {summary.lines} lines: "
        f"{summary.invalid} invalid lines skipped, {summary.duplicates} duplicate request ids "
        f"skipped, {summary.catalog_records} catalog records, {summary.labels} labels "
        f"({summary.duplicate_labels} duplicates, {summary.orphan_labels} for unknown requests), "
        f"{late} late events",
        markup=False, highlight=False,
    )


@contextmanager
def _worker_failure_is_fatal() -> Iterator[None]:
    try:
        yield
    except WorkerFailed as exc:
        fail(str(exc))


def evaluate(
    ctx: typer.Context,
    log: Path = typer.Argument(..., help="Replay log (JSON lines, DESIGN §4).", exists=False),
    window: int = typer.Option(60, "--window", "-w", min=1, help="Window size in seconds."),
    grace: float = typer.Option(None, "--grace", min=0, help="Grace in seconds [default: setting, 120]."),
    output: OutputFormat = typer.Option(OutputFormat.json, "--format", "-f", help="Output format."),
    alerts: bool = typer.Option(False, "--alerts", help="Also print which rules would fire."),
    rules_file: Path = typer.Option(None, "--rules", help="Alert rules YAML [default: built-in rules]."),
    slice_glob: str = typer.Option("*", "--slice", help="Print only slices matching this glob."),
    metric_glob: str = typer.Option("*", "--metric", help="Print only metrics matching this glob."),
    workers: int = typer.Option(
        None, "--workers", "-j", min=1,
        help="Processes that share the evaluation, split by blocks of lines (same output) "
             "[default: one per core, 1 for a log under 32 MB]."),
) -> None:
    """Evaluate a replay log offline: one JSON line per window × slice × metric."""
    settings = settings_of(ctx)
    if not log.is_file():
        fail(f"replay log {log} does not exist")
    config = settings.evaluation.eval_config()
    grace_s = settings.evaluation.grace_s if grace is None else grace
    summary = LogSummary()
    workers = workers if workers is not None else default_workers(log)
    rows = evaluate_log(lambda: read_lines(log), config, window, grace_s, summary, workers=workers)
    judge = None
    if alerts:
        from distillwatch.cli.alerting import offline_judge

        judge = offline_judge(rules_file, config)
    out = sys.stdout.buffer
    # One BLAS thread a process: the per-window matrix products are small, threads only contend.
    limits = threadpool_limits(1)
    with collect_rarely(), _worker_failure_is_fatal():
        for row in rows:
            if judge is not None:
                judge.observe(row)
            if not (fnmatchcase(row.slice, slice_glob) and fnmatchcase(row.metric, metric_glob)):
                continue
            if output is OutputFormat.json:
                out.write(row_json(row) + b"\n")
            else:
                out.write(row_text(row).encode() + b"\n")
    out.flush()
    limits.restore_original_limits()
    if judge is not None:
        judge.finish()
    report_summary(summary)
