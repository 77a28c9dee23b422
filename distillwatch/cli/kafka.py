"""``distillwatch kafka fetch|start|stop|status``: the local single-node broker."""

from __future__ import annotations

import json

import typer

from distillwatch.cli.context import console, settings_of
from streams.local_kafka import LocalKafka, fetch as fetch_jars

app = typer.Typer(help="Run a local Apache Kafka (KRaft, single node) for development and tests.",
                  no_args_is_help=True)


def _broker(ctx: typer.Context) -> LocalKafka:
    settings = settings_of(ctx)
    return LocalKafka(settings.local_kafka, settings.data_path)


@app.command()
def fetch(ctx: typer.Context) -> None:
    """Resolve the broker jars from Maven Central into the cache (offline afterwards)."""
    libs = fetch_jars(settings_of(ctx).local_kafka, log=console.print)
    console.print(f"Kafka jars ready in {libs}")


@app.command()
def start(
    ctx: typer.Context,
    reuse_existing: bool = typer.Option(
        False, "--reuse-existing", help="Use a broker another process already serves at the address."),
) -> None:
    """Start the broker and wait until a produce and a consume succeed."""
    broker = _broker(ctx)
    pid = broker.start(log=console.print, reuse_existing=reuse_existing)
    if pid is not None:
        console.print(f"Kafka up at {broker.bootstrap} (pid {pid}); log: {broker.paths.log_file}")


@app.command()
def stop(ctx: typer.Context) -> None:
    """Stop the broker (SIGTERM, SIGKILL after 30 s)."""
    broker = _broker(ctx)
    if broker.stop():
        console.print("Kafka stopped")
    else:
        console.print("Kafka was not running")


@app.command()
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Report whether the broker runs and serves; exits 1 when it is down."""
    broker = _broker(ctx)
    pid = broker.pid()
    serving = broker.ready(timeout_s=5) if pid is not None else False
    report = {"bootstrap": broker.bootstrap, "pid": pid, "up": serving,
              "data": str(broker.paths.root), "log": str(broker.paths.log_file)}
    if as_json:
        print(json.dumps(report))
    elif serving:
        console.print(f"Kafka up at {broker.bootstrap} (pid {pid})")
    elif pid is not None:
        console.print(f"Kafka process {pid} runs but does not serve at {broker.bootstrap}; see {broker.paths.log_file}")
    else:
        console.print(f"Kafka down (no broker at {broker.bootstrap}); start it with `distillwatch kafka start`")
    if not serving:
        raise typer.Exit(1)
