"""Offline evaluation of a replay log: the same code path the stream uses, in one process.

Two passes over the log. The first gathers the catalog (compacted: the last record per
entity wins, ``deleted`` removes it) and the labels (identical labels collapse to one); the
second evaluates each request once (the first valid line with its id) against that final
catalog and its labels, in event-time windows. Late labels therefore count however late they
arrive, which is what the stream's final (highest-version) windows converge to.

Memory: open windows × slices, plus the catalog, the labels and the set of request ids seen
(exact de-duplication needs the ids), never the requests themselves.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import orjson

from evaluators.catalog import Catalog
from evaluators.config import EvalConfig
from evaluators.readout import MetricRow, window_rows
from evaluators.request import RequestEvaluation, evaluate_request
from evaluators.sketch import QuantileSketch
from evaluators.slicing import slices_of
from evaluators.window_state import Layout, contribution
from evaluators.windowing import ClosedWindow, TumblingWindows
from schemas.errors import ContractError
from schemas.messages import Label
from schemas.replay import CatalogLine, LabelLine, RequestLine, validate_line
from schemas.validation import decode_json

LineSource = Callable[[], Iterable[bytes]]
"""Returns a fresh iterator over the log's lines each time it is called."""

MAX_REASONS = 1000


@dataclass
class LogSummary:
    """What happened to each line, for stderr and for tests."""

    lines: int = 0
    requests: int = 0
    duplicates: int = 0
    catalog_records: int = 0
    labels: int = 0
    duplicate_labels: int = 0
    orphan_labels: int = 0
    invalid: int = 0
    late_events: dict[int, int] = field(default_factory=dict)
    reasons: list[tuple[int, str]] = field(default_factory=list)
    reason_counts: Counter[str] = field(default_factory=Counter)

    def reject(self, line_no: int, error: ContractError) -> None:
        self.invalid += 1
        for p in error.problems:
            self.reason_counts[f"{p.field}: {p.rule}"] += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append((line_no, str(error)))


class LabelBook:
    """Labels by request id, identical labels collapsed."""

    def __init__(self) -> None:
        self._by_request: dict[str, dict[bytes, Label]] = defaultdict(dict)

    def add(self, label: Label) -> bool:
        """False when an identical label was already recorded."""
        key = orjson.dumps(label.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        bucket = self._by_request[label.request_id]
        if key in bucket:
            return False
        bucket[key] = label
        return True

    def for_request(self, request_id: str) -> list[Label]:
        bucket = self._by_request.get(request_id)
        return list(bucket.values()) if bucket else []

    def request_ids(self) -> set[str]:
        return set(self._by_request)


def _maybe_side_line(raw: bytes) -> bool:
    """Cheap pre-filter for pass 1: skip only lines that are plainly request lines.

    A key may be written with JSON escapes (``"\\u0063atalog"``), so a side line need not
    contain the bytes ``"catalog"``; pass 2 skips every side line, so pass 1 must not miss one.
    A line is decoded here when it shows a side key or does not show a request key.
    """
    return b'"catalog"' in raw or b'"label"' in raw or b'"request"' not in raw


def collect_side_data(lines: Iterable[bytes], summary: LogSummary) -> tuple[Catalog, LabelBook]:
    """Pass 1: the compacted catalog and the labels."""
    catalog, labels = Catalog(), LabelBook()
    for line_no, raw in enumerate(lines, start=1):
        if not raw.strip() or not _maybe_side_line(raw):
            continue
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # reported in pass 2
        if not is_side_line(data):
            continue
        try:
            line = validate_line(data)
        except ContractError as exc:
            summary.reject(line_no, exc)
            continue
        if isinstance(line, CatalogLine):
            summary.catalog_records += 1
            catalog.apply(line.catalog)
        elif isinstance(line, LabelLine):
            summary.labels += 1
            if not labels.add(line.label):
                summary.duplicate_labels += 1
    return catalog, labels


def evaluated_requests(
    lines: Iterable[bytes], catalog: Catalog, labels: LabelBook, config: EvalConfig,
    summary: LogSummary,
) -> Iterator[RequestEvaluation]:
    """Pass 2: each valid, first-seen request evaluated once, in log order."""
    seen: set[str] = set()
    for line_no, raw in enumerate(lines, start=1):
        summary.lines += 1
        if not raw.strip():
            continue
        try:
            data = decode_json(raw, "replay line")
            if is_side_line(data):
                continue  # pass 1 took it
            line = validate_line(data)
        except ContractError as exc:
            summary.reject(line_no, exc)
            continue
        assert isinstance(line, RequestLine)
        request = line.request
        if request.request_id in seen:
            summary.duplicates += 1
            continue
        seen.add(request.request_id)
        summary.requests += 1
        yield evaluate_request(
            request, line.teacher, line.student, catalog, config,
            labels.for_request(request.request_id), line.teacher_replica,
        )
    summary.orphan_labels = len(labels.request_ids() - seen)


def is_side_line(data: object) -> bool:
    """A decoded line that pass 1 owns: catalog or label, and no request."""
    return isinstance(data, dict) and "request" not in data and ("catalog" in data or "label" in data)


def evaluate_log(
    source: LineSource,
    config: EvalConfig,
    window_s: int = 60,
    grace_s: float = 120.0,
    summary: LogSummary | None = None,
) -> Iterator[MetricRow]:
    """Metric rows of every closed window, in window order, for a replay log."""
    summary = summary if summary is not None else LogSummary()
    layout = Layout(config)
    sketch = QuantileSketch()
    catalog, labels = collect_side_data(source(), summary)
    windows = TumblingWindows(window_s, grace_s, layout)
    for ev in evaluated_requests(source(), catalog, labels, config, summary):
        windows.add(ev.ts.timestamp(), slices_of(ev, config), contribution(ev, layout, sketch))
        for closed in windows.pop_closed():
            yield from _rows(closed, layout)
    for closed in windows.pop_all():
        yield from _rows(closed, layout)
    summary.late_events[window_s] = windows.late_events


def _rows(closed: ClosedWindow, layout: Layout) -> list[MetricRow]:
    return window_rows(closed.start, closed.size, closed.states, layout)
