"""Test-only fault injection for the reliability suite (tests/faults), off by default.

The embedded ClickHouse has no server to stop, so an outage is simulated where the sink
talks to the store: while the file named by ``DISTILLWATCH_FAULT_STORE_DOWN_FILE`` exists,
each of the sink's ClickHouse calls raises the error clickhouse-connect raises when a
server does not answer. Without the variable nothing here does anything.
"""

from __future__ import annotations

import os

STORE_DOWN_ENV = "DISTILLWATCH_FAULT_STORE_DOWN_FILE"
_store_down_file = os.environ.get(STORE_DOWN_ENV) or None


def check_store() -> None:
    """Raise clickhouse-connect's OperationalError while the outage file exists."""
    if _store_down_file is not None and os.path.exists(_store_down_file):
        from clickhouse_connect.driver.exceptions import OperationalError

        raise OperationalError(
            "Error HTTPConnectionPool(host='127.0.0.1', port=8123): Max retries exceeded with url: / "
            "(Caused by NewConnectionError('Failed to establish a new connection: [Errno 111] "
            f"Connection refused')) [injected: {_store_down_file} exists]")
