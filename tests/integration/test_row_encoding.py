"""shadow_evaluations rows travel to the sink as JSONCompactEachRow: the embedded ClickHouse
stores from them exactly what it stores from the same rows as named-key JSONEachRow."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from evaluators.config import EvalConfig
from evaluators.evaluation_codec import to_record
from evaluators.offline import LogSummary, collect_labels, evaluated_requests
from evaluators.request import RequestEvaluation
from evaluators.window_state import Layout
from simulator.traffic import TrafficConfig, World
from streams import topics
from streams.clickhouse import Store
from streams.evaluator.outputs import (
    EVALUATION_COLUMNS, SHADOW_EVALUATIONS, RowBuilder, SamplingPolicy, encode_rows, json_each_row, named_row,
    row_headers,
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


def evaluated_rows(pairs: int) -> list[tuple[RequestEvaluation, list[Any]]]:
    """Each evaluation of a simulated log (labels, fallbacks, nulls) with the row the
    evaluator's RowBuilder makes of it."""
    lines = [orjson.dumps(line) for line in
             World(TrafficConfig(pairs=pairs, rate_per_s=5, label_share=0.3), seed=5).lines()]
    summary = LogSummary()
    labels = collect_labels(lines, summary)
    builder = RowBuilder(CONFIG, b"k" * 32, SamplingPolicy())
    out = []
    for ev in evaluated_requests(lines, labels, CONFIG, summary):
        item = Evaluated(ev, Handle(ev, labels.for_request(ev.request_id)), None, None, None, False)
        (row,) = builder.rows(item, 0)[SHADOW_EVALUATIONS]
        out.append((ev, row))
    return out


def evaluation_rows(pairs: int) -> list[list[Any]]:
    return [row for _, row in evaluated_rows(pairs)]


def _opt(value: bool | None) -> int | None:
    return None if value is None else int(value)


def test_each_value_sits_under_its_column_name() -> None:
    """The compact row's positions against the evaluation read field by field (the record's
    names are checked against the evaluation by the codec's round-trip tests)."""
    checked = 0
    for ev, row in evaluated_rows(60):
        assert len(row) == len(EVALUATION_COLUMNS)
        named, record = named_row(SHADOW_EVALUATIONS, row), to_record(ev)
        for name in set(record) - NOT_STORED - {"fallback", "fallback_naive"}:
            assert named[name] == record[name], name
        s = ev.student
        assert named["fallback"] == int(bool(ev.fallback))
        assert named["fallback_naive"] == int(bool(ev.fallback_naive))
        assert named["student_margin"] == (None if s.top1 is None or s.top2 is None else s.top1 - s.top2)
        assert named["teacher_correct"] == _opt(ev.teacher_correct)
        assert named["student_correct"] == _opt(ev.student_correct)
        assert (named["teacher_fact_error"], named["student_fact_error"]) == (
            int(ev.teacher.fact_error), int(s.fact_error))
        assert named["freshness"] == ("new" if ev.new_title else "established")
        assert named["request_id"] == ev.request_id and named["ts"] == ev.ts.timestamp()
        assert (named["late"], named["kafka_partition"], named["version"]) == (0, 0, 0)
        assert len(named["prompt_hash"]) == 64
        checked += ev.student_correct is not None and ev.teacher_correct is not None
    assert checked > 10


def test_every_record_field_is_a_column_or_known_not_stored() -> None:
    ev, _ = evaluated_rows(5)[0]
    assert set(to_record(ev)) - set(EVALUATION_COLUMNS) == NOT_STORED


def test_every_column_without_a_default_is_filled(migrated_store: Store) -> None:
    columns = dict(migrated_store.query(
        "SELECT name, default_kind FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        parameters={"db": migrated_store.database, "t": SHADOW_EVALUATIONS}).result_rows)
    assert set(EVALUATION_COLUMNS) <= set(columns)
    assert {name for name, kind in columns.items() if kind == ""} == set(EVALUATION_COLUMNS)


def test_compact_rows_store_what_named_rows_store(migrated_store: Store) -> None:
    rows = evaluation_rows(400)
    named_rows = [named_row(SHADOW_EVALUATIONS, r) for r in rows]
    assert any(r["student_margin"] is None for r in named_rows) and any(r["labels"] != "[]" for r in named_rows)
    db = migrated_store.database
    migrated_store.command(f"CREATE TABLE {db}.named_rows AS {db}.{SHADOW_EVALUATIONS}")
    sink = Sink({}, lambda name: name, migrated_store, threading.Lock(), Layout(CONFIG), "test")
    sink.write([
        _Message(encode_rows(SHADOW_EVALUATIONS, rows), row_headers(SHADOW_EVALUATIONS), 1),
        _Message(json_each_row(named_rows), {"table": "named_rows"}, 2),  # a message without format headers
    ])
    select = f"SELECT {', '.join(EVALUATION_COLUMNS)} FROM {db}.{{table}} ORDER BY request_id"
    compact = migrated_store.query(select.format(table=SHADOW_EVALUATIONS)).result_rows
    named = migrated_store.query(select.format(table="named_rows")).result_rows
    assert len(compact) == len(rows) == len(named)
    assert compact == named
    by_id = {r["request_id"]: r for r in named_rows}
    ts = EVALUATION_COLUMNS.index("ts")
    for stored in compact:  # epoch seconds read by the basic parser, to the millisecond
        want = datetime.fromtimestamp(round(by_id[stored[0]]["ts"], 3), UTC).replace(tzinfo=None)
        assert abs((stored[ts] - want).total_seconds()) < 0.0011
