"""Printing query results: a rich table for people, JSON lines or CSV for programs."""

from __future__ import annotations

import csv
import json
import math
import sys
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from rich.table import Table

from distillwatch.cli.context import console


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def plain(value: Any) -> Any:
    """A JSON-ready value: times as RFC 3339 UTC, NaN as null, maps and arrays kept."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def cell(value: Any) -> str:
    """A value as one table cell: 4 significant digits for floats, compact lists and maps."""
    value = plain(value)
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def print_rows(columns: list[str], rows: list[list[Any]], fmt: Format, caption: str = "") -> None:
    if fmt is Format.json:
        for row in rows:
            print(json.dumps({c: plain(v) for c, v in zip(columns, row, strict=True)}, ensure_ascii=False))
    elif fmt is Format.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([cell(v) if isinstance(plain(v), (dict, list)) else plain(v) for v in row]
                         for row in rows)
    else:
        table = Table(caption=caption or None)
        for column in columns:  # fold long cells (ids, SQL) instead of cutting them off
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(cell(v) for v in row))
        console.print(table)
