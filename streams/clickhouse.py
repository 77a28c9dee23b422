"""The one module that talks to ClickHouse, embedded (chdb) or server, via clickhouse-connect.

An embedded store (``chdb:///abs/path``) can be opened by one OS process only. chdb's own
refusal is an opaque "Cannot lock file"; we take an advisory lock on ``<path>.owner`` first
and, when another process holds it, fail fast with who holds it and what to do instead.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from streams.errors import StoreError, StoreLockedError

EMBEDDED_SCHEME = "chdb://"


def is_embedded(dsn: str) -> bool:
    return dsn.startswith(EMBEDDED_SCHEME)


def embedded_path(dsn: str) -> Path:
    return Path(dsn[len(EMBEDDED_SCHEME) :])


@dataclass
class EmbeddedLock:
    """An exclusive, advisory lock on an embedded store, with the owner's identity."""

    path: Path
    _handle: IO[str] | None = field(default=None, repr=False)

    @property
    def owner_file(self) -> Path:
        return self.path.with_name(self.path.name + ".owner")

    def acquire(self, owner: str, timeout_s: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.owner_file, "a+", encoding="utf-8")  # noqa: SIM115 (held open)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise StoreLockedError(self._held_message()) from None
                time.sleep(0.1)
        handle.seek(0)
        handle.truncate()
        json.dump({"pid": os.getpid(), "owner": owner, "since": time.time()}, handle)
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def _held_message(self) -> str:
        try:
            info = json.loads(self.owner_file.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            info = {}
        who = f"pid {info.get('pid', '?')} ({info.get('owner', 'unknown')})"
        return (
            f"the embedded ClickHouse store {self.path} is held by {who}; one process owns "
            "an embedded store: query it through that process (`distillwatch sql` uses the "
            "running monitor's HTTP API), or stop it first"
        )


class Store:
    """A clickhouse-connect client plus the database name; close() releases an embedded lock."""

    def __init__(self, client: Any, database: str, lock: EmbeddedLock | None = None) -> None:
        self.client = client
        self.database = database
        self._lock = lock

    @property
    def embedded(self) -> bool:
        return self._lock is not None

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        try:
            return self.client.command(sql, parameters=parameters)
        except Exception as exc:  # clickhouse-connect raises several unrelated types
            raise StoreError(f"ClickHouse refused: {exc}") from exc

    def query(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Any:
        try:
            return self.client.query(sql, parameters=parameters, settings=settings)
        except Exception as exc:
            raise StoreError(f"ClickHouse query failed: {exc}") from exc

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        dedup_token: str | None = None,
    ) -> None:
        """Insert rows; a retried insert with the same ``dedup_token`` is stored once."""
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        try:
            self.client.insert(
                f"{self.database}.{table}",
                rows,
                column_names=list(column_names),
                settings=settings,
            )
        except Exception as exc:
            raise StoreError(f"insert into {table} failed: {exc}") from exc

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(
    dsn: str,
    database: str = "distillwatch",
    *,
    owner: str | None = None,
    lock_timeout_s: float = 2.0,
) -> Store:
    """Connect to ClickHouse. An embedded store is locked to this process until close()."""
    import clickhouse_connect

    owner = owner or " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))
    lock = None
    if is_embedded(dsn):
        lock = EmbeddedLock(embedded_path(dsn))
        lock.acquire(owner, lock_timeout_s)
    try:
        client = clickhouse_connect.get_client(dsn=dsn)
    except Exception as exc:
        if lock is not None:
            lock.release()
        raise StoreError(f"cannot open ClickHouse at {_redact(dsn)}: {exc}") from exc
    return Store(client, database, lock)


def _redact(dsn: str) -> str:
    """A DSN without its password, for messages."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return dsn
