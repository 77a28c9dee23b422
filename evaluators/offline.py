"""Offline evaluation of a replay log: the same code path the stream uses, in one process.

Two passes over the log. The first gathers the labels (identical labels collapse to one).
The second applies catalog records in log order (the last record per entity wins,
``deleted`` removes it) and evaluates each request once (the first valid line with its id)
against the catalog as it stands at that line, with all of its labels, in event-time
windows. Labels therefore count however late they arrive, which is what the stream's final
(highest-version) windows converge to; a claim is judged by the catalog of its time, as the
stream judges it.

Memory: open windows × slices, plus the catalog, the labels and the set of request ids seen
(exact de-duplication needs the ids), never the requests themselves.

Pass 2 can be split across processes by line (:class:`Shard`, run by
evaluators/offline_parallel.py), each shard owning every n-th line: every shard reads every
line, applies every catalog record and tracks every id, but validates and evaluates only the
requests on its own lines (another shard's request lines are read for their id and time
only, and checked by their owner); the others only move its watermark, so each shard closes
the same windows at the same lines as one process would, and the shards' window states add
up to one process's.
"""

from __future__ import annotations

import gc
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


from evaluators.catalog import Catalog
from evaluators.config import EvalConfig
from evaluators.readout import MetricRow, window_rows
from evaluators.request import RequestEvaluation, evaluate_request
from evaluators.slicing import Slicer
from evaluators.window_state import Layout
from evaluators.windowing import ClosedWindow, TumblingWindows
from evaluators.inputs import LabelLike
from schemas.errors import ContractError
from schemas.fastpath import Label, Line, parse_line_fast, parse_line_strict, request_key

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


def label_key(label: Label) -> tuple[object, ...]:
    """Identity of a label: identical labels collapse to one (extra fields aside)."""
    correct = label.answer_correct
    return (label.ts, label.source, label.intent, label.preferred, label.reviewer_id,
            None if correct is None else (correct.teacher, correct.student))


class LabelBook:
    """Labels by request id, identical labels collapsed."""

    def __init__(self) -> None:
        self._by_request: dict[str, dict[tuple[object, ...], LabelLike]] = defaultdict(dict)

    def add(self, label: Label) -> bool:
        """False when an identical label was already recorded."""
        key = label_key(label)
        bucket = self._by_request[label.request_id]
        if key in bucket:
            return False
        bucket[key] = label
        return True

    def for_request(self, request_id: str) -> list[LabelLike]:
        bucket = self._by_request.get(request_id)
        return list(bucket.values()) if bucket else []

    def request_ids(self) -> set[str]:
        return set(self._by_request)


def _maybe_label_line(raw: bytes) -> bool:
    """Cheap pre-filter for pass 1: skip only lines that plainly carry a request.

    A key may be written with JSON escapes (``"\\u006cabel"``), so a label line need not
    contain the bytes ``"label"``; it never contains the key ``"request"``, and a line that
    opens with a request object is a request line (or invalid) whatever else it holds.
    (``find`` rather than ``in``: CPython's ``bytes.__contains__`` first tries the argument
    as an integer and formats a TypeError for it, ~2,000 instructions a call.)
    """
    if raw.startswith(b'{"request":{'):  # how replay logs are written: a request line, unread
        return False
    return raw.find(b'"label"') >= 0 or raw.find(b'"request"') < 0


def collect_labels(lines: Iterable[bytes], summary: LogSummary) -> LabelBook:
    """Pass 1: every valid label (invalid lines are reported by pass 2)."""
    labels = LabelBook()
    for raw in lines:
        # isspace() instead of strip(): no copy of the line; "" and all-blank lines skip
        if not raw or raw.isspace() or not _maybe_label_line(raw):
            continue
        try:
            line = parse_line_fast(raw)
        except ContractError:
            continue
        if line.label is not None:
            summary.labels += 1
            if not labels.add(line.label):
                summary.duplicate_labels += 1
    return labels


NOT_YET = float("-inf")
"""No time of another shard's request noted since the last one yielded."""


class SpeculationFailed(Exception):
    """A line read as a request by ``request_key`` is not that request when validated."""

    def __init__(self, line_no: int) -> None:
        super().__init__(f"line {line_no} reads as a request but is not a valid one")
        self.line_no = line_no


SHARD_BLOCK_LINES = 256
"""A shard owns blocks of this many consecutive lines: between its own, it only notes the
latest time of the others' requests and moves its watermark once per block."""


@dataclass(frozen=True)
class Shard:
    """The lines one of ``count`` processes evaluates: every ``count``-th block of
    SHARD_BLOCK_LINES, from block ``index``.

    By line, not by request id: every shard tracks every id, so the first valid line of an id
    is evaluated once, by that line's owner, and a shard knows what it owns before reading a
    line (see :func:`_first_requests`)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count}: expected 0 <= index < count")

    def owns(self, line_no: int) -> bool:
        return line_no // SHARD_BLOCK_LINES % self.count == self.index


def evaluated_requests(
    lines: Iterable[bytes], labels: LabelBook, config: EvalConfig, summary: LogSummary,
    catalog: Catalog | None = None,
) -> Iterator[RequestEvaluation]:
    """Pass 2: catalog records applied in log order; each valid, first-seen request
    evaluated once against the catalog as it stands at that line."""
    return _first_requests(lines, labels, config, summary, catalog, None)  # type: ignore[return-value]


def _first_requests(
    lines: Iterable[bytes], labels: LabelBook, config: EvalConfig, summary: LogSummary,
    catalog: Catalog | None, shard: Shard | None, speculate: bool = False,
) -> Iterator[RequestEvaluation | float]:
    """Pass 2 itself. With a ``shard``, a valid first-seen request on a line it does not own
    is not evaluated: the latest event time (epoch seconds, a float) of such requests is
    yielded instead, before the next request it evaluates and at the end (the watermark is the
    same then as if each had been yielded, and no window closes in between with other content).

    With ``speculate`` as well, a line of another shard that ``request_key`` reads as a
    request is taken to be that valid request without validating it. Its owner validates it,
    and raises :class:`SpeculationFailed` if it is not (then every shard's view of the lines
    before it was right, and the caller starts again without speculating).
    """
    catalog = catalog if catalog is not None else Catalog()
    seen: set[str] = set()
    labels_of = labels.for_request
    count, index = (shard.count, shard.index) if shard is not None else (1, 0)
    line_no = 0
    latest = NOT_YET  # the latest time of the others' requests, not yielded yet
    for line_no, raw in enumerate(lines, start=1):  # noqa: B007 (counted in summary below)
        if not raw or raw.isspace():  # no copy of the line, unlike strip()
            continue
        mine = line_no // SHARD_BLOCK_LINES % count == index  # Shard.owns, inline: runs per line
        line = None
        if speculate:
            if not mine:
                key = request_key(raw)
                if key is not None:  # taken to be valid; its owner checks
                    if key[0] in seen:
                        summary.duplicates += 1
                    else:
                        seen.add(key[0])
                        summary.requests += 1
                        if key[1] > latest:
                            latest = key[1]
                    continue
            else:
                line = parse_line_strict(raw)
                if line is None:  # pydantic decides; is it what the others read it as?
                    line = _checked_against_key(raw, line_no, summary)
                    if line is None:
                        continue
        if line is None:
            try:
                line = parse_line_fast(raw)
            except ContractError as exc:
                summary.reject(line_no, exc)
                continue
        request = line.request
        if request is None:
            if line.catalog is not None:
                summary.catalog_records += 1
                catalog.apply(line.catalog)
            continue  # a label: pass 1 took it
        rid = request.request_id
        if rid in seen:
            summary.duplicates += 1
            continue
        seen.add(rid)
        summary.requests += 1
        if not mine:
            ts = request.ts.timestamp()
            if ts > latest:
                latest = ts
            continue
        if latest != NOT_YET:
            yield latest
            latest = NOT_YET
        yield evaluate_request(request, line.teacher, line.student, catalog, config, labels_of(rid),
                               line.teacher_replica)
    if latest != NOT_YET:
        yield latest
    summary.lines += line_no
    summary.orphan_labels = len(labels.request_ids() - seen)


def _checked_against_key(raw: bytes, line_no: int, summary: LogSummary) -> Line | None:
    """A line msgspec does not accept whole, validated by pydantic (None: invalid, counted),
    raising SpeculationFailed where the other shards read it as a request it is not."""
    key = request_key(raw)
    try:
        line = parse_line_fast(raw)
    except ContractError as exc:
        if key is not None:
            raise SpeculationFailed(line_no) from exc
        summary.reject(line_no, exc)
        return None
    request = line.request
    if key is not None and (request is None or (request.request_id, request.ts.timestamp()) != key):
        raise SpeculationFailed(line_no)
    return line


def evaluate_log(
    source: LineSource,
    config: EvalConfig,
    window_s: int = 60,
    grace_s: float = 120.0,
    summary: LogSummary | None = None,
    workers: int = 1,
) -> Iterator[MetricRow]:
    """Metric rows of every closed window, in window order, for a replay log.

    ``workers`` > 1 splits pass 2 across that many processes by blocks of lines (same rows; float
    sums may differ in their last bits, being added in another order).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    summary = summary if summary is not None else LogSummary()
    layout = Layout(config)
    labels = collect_labels(source(), summary)
    if workers == 1:
        windows = closed_windows(source, labels, config, window_s, grace_s, summary)
    else:
        from evaluators.offline_parallel import sharded_closed_windows

        windows = sharded_closed_windows(source, labels, config, window_s, grace_s, summary, workers)
    for closed in windows:
        yield from window_rows(closed.start, closed.size, closed.states, layout)


def closed_windows(
    source: LineSource, labels: LabelBook, config: EvalConfig, window_s: int, grace_s: float,
    summary: LogSummary, shard: Shard | None = None, speculate: bool = False,
) -> Iterator[ClosedWindow]:
    """Pass 2 into windows: every window as it closes, in order (of the requests on
    ``shard``'s lines only, closed when one process would close it, when a shard is given;
    ``speculate``: see :func:`_first_requests`)."""
    windows = TumblingWindows(window_s, grace_s, Layout(config))
    slicer = Slicer(config)
    items = _first_requests(source(), labels, config, summary, None, shard, speculate and shard is not None)
    for item in items:
        if isinstance(item, float):
            windows.advance(item)
        else:
            windows.add(item.ts.timestamp(), slicer(item), item)
        yield from windows.pop_closed()
    yield from windows.pop_all()
    summary.late_events[window_s] = windows.late_events


@contextmanager
def collect_rarely() -> Iterator[None]:
    """Run the cyclic garbage collector rarely (for a process that only evaluates).

    Evaluating allocates ~20 short-lived container objects per request and keeps almost
    none, so the collector's young-generation passes (every 700 allocations) find nothing
    to free while costing ~8 % of ``evaluate``'s time. Objects alive before are frozen
    out of the collector's scans; both settings are restored afterwards.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
