"""``distillwatch run``: the always-on monitor."""

from __future__ import annotations

import logging
import signal
import threading

import typer

from distillwatch.cli.context import console_err, fail, settings_of
from streams.evaluator.engine import quiet_collector
from streams.monitor import Monitor


def run(
    ctx: typer.Context,
    instance_id: str = typer.Option(None, "--instance-id", help="Evaluator instance id [default: setting]."),
    no_sink: bool = typer.Option(False, "--no-sink", help="Evaluate only; another process writes ClickHouse."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress."),
) -> None:
    """Run the evaluator, the ClickHouse sink and the HTTP API until SIGTERM/SIGINT."""
    settings = settings_of(ctx)
    if instance_id:
        settings.evaluator.instance_id = instance_id
    if no_sink:
        settings.evaluator.sink = False
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    monitor = Monitor(settings)
    quiet_collector()  # for the evaluator thread of `run --no-sink` (its own process does the same)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    monitor.start()
    console_err.print(
        f"distillwatch monitor running: Kafka {settings.kafka.bootstrap_servers}, "
        f"HTTP http://{settings.http.host}:{settings.http.port} (/healthz /metrics /sql)",
        markup=False)
    while not stop.wait(0.5):
        if monitor.failed() is not None:
            break
    monitor.stop()
    error = monitor.failed()
    if error is not None:
        fail(f"monitor stopped: {error}")
    stats = monitor.engine.stats
    console_err.print(f"distillwatch monitor stopped cleanly: {stats.records} records consumed, "
                      f"{stats.dead_letters} dead letters, {stats.checkpoints} checkpoints", markup=False)
