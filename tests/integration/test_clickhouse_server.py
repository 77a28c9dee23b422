"""The same store code against a ClickHouse *server* (production), when one is given.

No ClickHouse server can be installed on the CI machine (Debian ships 18.16, too old for
Map columns), so these run only when ``DISTILLWATCH_TEST_CLICKHOUSE_DSN`` names one, e.g.
``http://default:@127.0.0.1:8123/`` (docker compose up clickhouse); each run uses a fresh
database and drops it afterwards. The monitor reaches a server by configuration alone
(``clickhouse.dsn``), through the same clickhouse-connect calls checked here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from streams.clickhouse import Store, open_store
from streams.migrations import available, migrate

SERVER_DSN = os.environ.get("DISTILLWATCH_TEST_CLICKHOUSE_DSN")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not SERVER_DSN, reason="set DISTILLWATCH_TEST_CLICKHOUSE_DSN to a ClickHouse server"),
]


@pytest.fixture
def server() -> Iterator[Store]:
    assert SERVER_DSN is not None
    store = open_store(SERVER_DSN, f"dwtest_{uuid.uuid4().hex[:10]}")
    try:
        yield store
    finally:
        store.command(f"DROP DATABASE IF EXISTS {store.database}")
        store.close()


def test_migrations_apply_on_a_server_and_are_idempotent(server: Store) -> None:
    assert [m.version for m in migrate(server)] == [m.version for m in available()]
    assert migrate(server) == []
    tables = {r[0] for r in server.query("SELECT name FROM system.tables WHERE database = {d:String}",
                                         parameters={"d": server.database}).result_rows}
    assert {"shadow_evaluations", "window_metrics", "alerts", "alert_deliveries", "window_partials",
            "alert_state", "retrain_jobs"} <= tables


def test_retried_insert_with_the_same_token_is_stored_once_on_a_server(server: Store) -> None:
    migrate(server)
    row = [["a1", "hook", 1, "delivered", 200, "", 0]]
    columns = ["alert_id", "target", "attempt", "status", "http_status", "error", "attempted_at"]
    for _ in range(3):
        server.insert("alert_deliveries", row, columns, dedup_token="tok-1")
    count = server.query(f"SELECT count() FROM {server.database}.alert_deliveries").result_rows[0][0]
    assert count == 1
