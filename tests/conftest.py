"""Shared fixtures: the real local Kafka broker, reused by integration, scenario and fault tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from streams.clickhouse import Store

TEST_BROKER_DATA_DIR = Path.home() / ".cache" / "distillwatch" / "test-broker"
"""Fixed, outside the repository; the broker's records are removed when a session starts it."""


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """bootstrap.servers of a serving local Kafka broker.

    A broker that already serves at the configured host:port (e.g. one started with
    ``distillwatch kafka start``) is used as is and left running; otherwise one is started
    under TEST_BROKER_DATA_DIR and stopped at the end of the session.
    """
    from distillwatch.settings import load_settings
    from streams.local_kafka import LocalKafka, produce_consume_ok

    broker = LocalKafka(load_settings().local_kafka, TEST_BROKER_DATA_DIR)
    if produce_consume_ok(broker.bootstrap, timeout_s=10):
        yield broker.bootstrap
        return
    # Every test makes its own topics: a session that starts the broker starts it empty, so
    # earlier sessions' records do not pile up on disk.
    shutil.rmtree(broker.paths.logs, ignore_errors=True)
    TEST_BROKER_DATA_DIR.mkdir(parents=True, exist_ok=True)
    broker.start(log=lambda line: print(f"[kafka_bootstrap] {line}"))
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def migrated_store(tmp_path: Path) -> Iterator[Store]:
    """A fresh embedded ClickHouse store with every migration applied."""
    from streams.clickhouse import open_store
    from streams.migrations import migrate

    with open_store(f"chdb://{tmp_path}/ch") as store:
        migrate(store)
        yield store
