"""``distillwatch init``: topics and ClickHouse tables, idempotent."""

from __future__ import annotations

import typer

from distillwatch.cli.context import console, settings_of
from streams.clickhouse import open_store
from streams.migrations import migrate
from streams.topics import ensure_topics


def init(
    ctx: typer.Context,
    skip_kafka: bool = typer.Option(False, "--skip-kafka", help="Do not create topics."),
    skip_store: bool = typer.Option(False, "--skip-store", help="Do not migrate ClickHouse."),
) -> None:
    """Create the Kafka topics and apply ClickHouse migrations (safe to run again)."""
    settings = settings_of(ctx)
    if not skip_kafka:
        for topic, state in ensure_topics(settings).items():
            console.print(f"topic {topic}: {state}")
    if not skip_store:
        with open_store(settings.clickhouse_dsn(), settings.clickhouse.database,
                        owner="distillwatch init",
                        lock_timeout_s=settings.clickhouse.lock_timeout_s) as store:
            applied = migrate(store)
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "none (up to date)"
        console.print(f"ClickHouse {store.database}: migrations applied: {names}")
