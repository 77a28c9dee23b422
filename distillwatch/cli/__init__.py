"""The ``distillwatch`` command line. Each command group lives in its own module."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from distillwatch.cli import evaluate, kafka, replay, run, schema, simulate, sql, store
from distillwatch.cli import demo, worker
from distillwatch.cli import alerts
from distillwatch.cli import forensics
from distillwatch.cli import report
from distillwatch.cli import train
from distillwatch.cli import bench
from distillwatch.cli.context import console_err, fail
from distillwatch.settings import load_settings
from schemas.errors import DistillwatchError

app = typer.Typer(
    name="distillwatch",
    help="Shadow-evaluation and drift monitor for a distilled student model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Optional[Path],
        typer.Option("--config", "-c", help="YAML settings file (or DISTILLWATCH_CONFIG).",
                     envvar="DISTILLWATCH_CONFIG", show_envvar=True),
    ] = None,
) -> None:
    """Shadow-evaluation and drift monitor for a distilled student model."""
    try:
        ctx.obj = load_settings(config)
    except DistillwatchError as exc:
        fail(str(exc))


app.add_typer(kafka.app, name="kafka")
app.add_typer(schema.app, name="schema")
app.add_typer(alerts.app, name="alerts")
app.command("init")(store.init)
app.command("evaluate")(evaluate.evaluate)
app.command("simulate")(simulate.simulate)
app.command("replay")(replay.replay)
app.command("run")(run.run)
app.command("sql")(sql.sql)
app.command("worker")(worker.worker)
app.command("forensics")(forensics.forensics_command)
app.command("report")(report.report)
app.command("train")(train.train)
app.command("demo")(demo.demo)
app.command("bench")(bench.bench)


def main() -> None:
    """Console-script entry point: one-line errors, non-zero exit when a job cannot be done."""
    try:
        app()
    except DistillwatchError as exc:
        one_line = " ".join(str(exc).split())  # ClickHouse's messages span several lines
        console_err.print(f"distillwatch: error: {one_line}", markup=False, highlight=False)
        sys.exit(1)
