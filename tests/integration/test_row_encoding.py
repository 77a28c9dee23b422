"""shadow_evaluations rows travel to the sink as JSONCompactEachRow: the embedded ClickHouse
stores from them exactly what it stores from the same rows as named-key JSONEachRow."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from evaluators.config import EvalConfig
from evaluators.offline import LogSummary, collect_labels, evaluated_requests
from evaluators.window_state import Layout
from simulator.traffic import TrafficConfig, World
from streams import topics
from streams.clickhouse import Store
from streams.evaluator.outputs import (
    EVALUATION_COLUMNS, SHADOW_EVALUATIONS, RowBuilder, SamplingPolicy, encode_rows, json_each_row, row_headers,
)
from streams.evaluator.partition import Evaluated, Handle
from streams.sink import Sink

pytestmark = pytest.mark.integration

CONFIG = EvalConfig()
NOT_STORED = {"tz_offset_s", "preferences"}
"""Fields of the evaluation record that shadow_evaluations has no column for."""


class _Message:
    """What the sink reads of a consumed Kafka message."""

    def __init__(self, value: bytes, headers: dict[str, str], offset: int) -> None:
        self._value, self._headers, self._offset = value, list(headers.items()), offset

    def topic(self) -> str:
        return topics.ROWS

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return dict(self._headers)["table"].encode()

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return [(k, v.encode()) for k, v in self._headers]


def evaluation_rows(pairs: int) -> list[dict[str, Any]]:
    """Rows the evaluator's RowBuilder makes for a simulated log (labels, fallbacks, nulls)."""
    lines = [orjson.dumps(line) for line in
             World(TrafficConfig(pairs=pairs, rate_per_s=5, label_share=0.3), seed=5).lines()]
    summary = LogSummary()
    labels = collect_labels(lines, summary)
    builder = RowBuilder(CONFIG, b"k" * 32, SamplingPolicy())
    rows: list[dict[str, Any]] = []
    for ev in evaluated_requests(lines, labels, CONFIG, summary):
        item = Evaluated(ev, Handle(ev, labels.for_request(ev.request_id)), None, None, None, False)
        rows.extend(builder.rows(item, 0)[SHADOW_EVALUATIONS])
    return rows


def test_every_row_field_is_a_column_or_known_not_stored() -> None:
    row = evaluation_rows(5)[0]
    assert set(row) - set(EVALUATION_COLUMNS) == NOT_STORED
    assert set(EVALUATION_COLUMNS) <= set(row)


def test_every_column_without_a_default_is_filled(migrated_store: Store) -> None:
    columns = dict(migrated_store.query(
        "SELECT name, default_kind FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        parameters={"db": migrated_store.database, "t": SHADOW_EVALUATIONS}).result_rows)
    assert set(EVALUATION_COLUMNS) <= set(columns)
    assert {name for name, kind in columns.items() if kind == ""} == set(EVALUATION_COLUMNS)


def test_compact_rows_store_what_named_rows_store(migrated_store: Store) -> None:
    rows = evaluation_rows(400)
    assert any(r["student_margin"] is None for r in rows) and any(r["labels"] != "[]" for r in rows)
    db = migrated_store.database
    migrated_store.command(f"CREATE TABLE {db}.named_rows AS {db}.{SHADOW_EVALUATIONS}")
    sink = Sink({}, lambda name: name, migrated_store, threading.Lock(), Layout(CONFIG), "test")
    sink.write([
        _Message(encode_rows(SHADOW_EVALUATIONS, rows), row_headers(SHADOW_EVALUATIONS), 1),
        _Message(json_each_row(rows), {"table": "named_rows"}, 2),  # a message without format headers
    ])
    select = f"SELECT {', '.join(EVALUATION_COLUMNS)} FROM {db}.{{table}} ORDER BY request_id"
    compact = migrated_store.query(select.format(table=SHADOW_EVALUATIONS)).result_rows
    named = migrated_store.query(select.format(table="named_rows")).result_rows
    assert len(compact) == len(rows) == len(named)
    assert compact == named
    by_id = {r["request_id"]: r for r in rows}
    ts = EVALUATION_COLUMNS.index("ts")
    for stored in compact:  # epoch seconds read by the basic parser, to the millisecond
        want = datetime.fromtimestamp(round(by_id[stored[0]]["ts"], 3), UTC).replace(tzinfo=None)
        assert abs((stored[ts] - want).total_seconds()) < 0.0011
