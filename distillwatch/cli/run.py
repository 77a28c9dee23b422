"""``distillwatch run``: the always-on monitor."""

from __future__ import annotations

import gc
import logging
import signal
import threading

import typer

from distillwatch.cli.context import console_err, fail, settings_of
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
    # The evaluator keeps ~10^5 long-lived objects (recent evaluations, join state) and
    # allocates short-lived ones per record; with the default thresholds the cyclic collector
    # rescans them so often that it took ~25 % of the evaluator's time (it finds almost no
    # cycles). Start-up objects are frozen out of its scans; young objects collected rarer.
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
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
