"""Numbered ClickHouse migrations (``schemas/migrations/NNNN_name.sql``), applied once each.

Applied versions are recorded in ``schema_migrations``; every statement is also written to be
idempotent (``IF NOT EXISTS``), so a run interrupted half-way is finished by the next one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from streams.clickhouse import Store

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, database: str) -> list[str]:
        text = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        return [s.strip().replace("{db}", database) for s in text.split(";") if s.strip()]


def available() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    found = []
    for entry in resources.files("schemas").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def applied(store: Store) -> set[int]:
    db = store.database
    store.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    store.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    rows = store.query(f"SELECT version FROM {db}.schema_migrations").result_rows
    return {int(r[0]) for r in rows}


def migrate(store: Store) -> list[Migration]:
    """Apply every migration not yet applied; return those applied now."""
    done = applied(store)
    newly = []
    for migration in available():
        if migration.version in done:
            continue
        for statement in migration.statements(store.database):
            store.command(statement)
        store.insert("schema_migrations", [[migration.version, migration.name]], ["version", "name"])
        newly.append(migration)
    return newly
