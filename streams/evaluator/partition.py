"""One input partition's evaluator state: the join, the open windows, recent evaluations.

Requests, teacher/student/replica answers and labels of one request share a partition
(co-partitioned by request_id), so each partition is evaluated on its own and its state
moves with it when partitions are reassigned. Pure: no Kafka, no clock (event time only).

A request is evaluated when its request, teacher and student messages are all in, or when
the partition's watermark passes its time (join timeout = grace; what is missing counts as
missing); a request that comes behind the watermark gets the same grace, counted from the
newest event time seen when it came, so its answers, sent right after it, still join. Its
evaluation is kept for ``handle_horizon_s`` of event time so that a later
label (or a teacher replica) can be applied exactly: its old contribution is taken out of
the windows and the new one put in. Closed windows are kept for the same horizon so that
such a change re-emits them (with a higher version). Labels that come later than that are
counted in ``late_labels`` and do not change any window.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgspec

from evaluators.catalog import Catalog
from evaluators.config import EvalConfig
from evaluators.evaluation_codec import from_record, from_values
from evaluators.offline import label_key
from evaluators.request import RequestEvaluation, evaluate_request, relabel, view_of
from evaluators.sketch import QuantileSketch
from evaluators.slicing import Slicer
from evaluators.window_state import Layout, WindowState, contribution
from evaluators.windowing import ClosedWindow, TumblingWindows, window_start
from schemas.fastpath import Label, ModelResponse, ShadowRequest

ROLES = ("teacher", "student", "teacher_replica")


@dataclass
class Pending:
    """Parts of a request seen so far."""

    request: ShadowRequest | None = None
    teacher: ModelResponse | None = None
    student: ModelResponse | None = None
    teacher_replica: ModelResponse | None = None
    labels: list[Label] = field(default_factory=list)
    due: float | None = None
    """Event time at which the join times out: the request's time, or the newest event time
    seen when the request came if that is later (an out-of-order request); None until the
    request came."""
    offset: int = -1
    """The request message's offset in its partition (the replay coordinates of an alert)."""

    @property
    def complete(self) -> bool:
        return self.request is not None and self.teacher is not None and self.student is not None


class Handle:
    """An evaluated request still open to labels.

    Once packed (its snapshot bytes, made right after its row is emitted) a handle lets go of
    its evaluation object and keeps the bytes, which hold all of it: ~1.3 KB less per handle,
    ~150 MB at the default 120,000. A label or a late replica answer (rare) decodes it again.
    """

    __slots__ = ("_evaluation", "labels", "revision", "meta", "packed", "record", "ts")

    def __init__(self, evaluation: RequestEvaluation | None, labels: list[Label], revision: int = 0,
                 meta: dict[str, Any] | None = None, packed: bytes | None = None,
                 ts: float | None = None) -> None:
        if evaluation is None and (packed is None or ts is None):
            raise ValueError("a handle without its evaluation needs its packed bytes and time")
        self._evaluation = evaluation
        self.labels = labels
        self.revision = revision
        self.meta: dict[str, Any] = {} if meta is None else meta
        """Set by the caller at first evaluation (prompt hash, Kafka offset), kept for re-emits."""
        self.packed = packed
        """The handle as snapshot bytes (streams.evaluator.snapshot); None: changed since."""
        self.record: tuple[RequestEvaluation, list[Any]] | None = None
        """The record (evaluation_codec.to_values) of an evaluation just emitted, handed to the
        snapshot encoder so it is not computed twice (dropped once the handle is packed)."""
        self.ts: float = evaluation.ts.timestamp() if evaluation is not None else ts  # type: ignore[assignment]
        """The request's event time (eviction order)."""

    @property
    def evaluation(self) -> RequestEvaluation:
        ev = self._evaluation
        if ev is None:
            assert self.packed is not None
            snap = msgspec.msgpack.decode(self.packed)
            values = snap.get("values")
            ev = self._evaluation = from_values(values) if values is not None else from_record(snap["record"])
        return ev

    @evaluation.setter
    def evaluation(self, ev: RequestEvaluation) -> None:
        self._evaluation = ev

    def release(self) -> None:
        """Drop the evaluation object when the packed bytes hold it."""
        if self.packed is not None:
            self._evaluation = None


@dataclass
class Evaluated:
    """Output: a request was evaluated (or re-evaluated after a label)."""

    evaluation: RequestEvaluation
    handle: Handle
    request: ShadowRequest | None
    """The raw request when first evaluated (for payload sampling); None on re-evaluation."""
    teacher: ModelResponse | None
    student: ModelResponse | None
    late: bool


class PartitionState:
    """Join buffer, windows and recent evaluations of one partition."""

    def __init__(self, config: EvalConfig, layout: Layout, window_sizes: list[int],
                 grace_s: float, handle_horizon_s: float, max_handles: int = 20_000) -> None:
        self.config = config
        self.layout = layout
        self.grace_s = grace_s
        self.handle_horizon_s = handle_horizon_s
        self.max_handles = max_handles
        self._advances = 0
        self.windows = {size: TumblingWindows(size, grace_s, layout) for size in window_sizes}
        self.pending: dict[str, Pending] = {}
        # OrderedDicts, evicted oldest first: a plain dict keeps deleted slots at its front
        # until it resizes, so finding its first key after many deletions scanned them all
        # (6-13 µs per eviction at 20-40k entries; the evaluator slowed 3x once handles were
        # capped, from ~120k pairs on).
        self.handles: OrderedDict[str, Handle] = OrderedDict()
        self.seen: OrderedDict[str, float] = OrderedDict()
        """request_id → event time, for de-duplication within the horizon."""
        self.retained: dict[int, dict[int, dict[str, WindowState]]] = {s: {} for s in window_sizes}
        """Closed windows still open to label changes: size → start → slice states."""
        self.revised: set[tuple[int, int]] = set()
        """Retained windows changed since last taken (size, start)."""
        self.retained_changed: set[tuple[int, int]] = set()
        """Retained windows changed since the last snapshot (size, start)."""
        self.snapshot_cache: Any = None
        """Encoded pieces the last snapshot can lend the next (streams.evaluator.snapshot)."""
        self.counters: dict[str, int] = {
            "requests": 0, "duplicates": 0, "late_events": 0, "late_labels": 0,
            "late_responses": 0, "orphans_dropped": 0,
        }
        self._sketch = QuantileSketch()
        self._slices = Slicer(config)

    @property
    def watermark(self) -> float:
        return min(w.watermark for w in self.windows.values())

    @property
    def max_event_ts(self) -> float:
        newest = -math.inf  # a loop, not max(generator): this runs for every request
        for w in self.windows.values():
            if w.max_event_ts > newest:
                newest = w.max_event_ts
        return newest

    # -- input -------------------------------------------------------------------------------

    def on_request(self, request: ShadowRequest, catalog: Catalog, out: list[Evaluated]) -> None:
        rid = request.request_id
        pending = self.pending.get(rid)
        if rid in self.seen or (pending is not None and pending.request is not None):
            self.counters["duplicates"] += 1
            return
        if pending is None:
            pending = self.pending[rid] = Pending()
        pending.request = request
        self.seen[rid] = ts = request.ts.timestamp()
        pending.due = max(ts, self.max_event_ts)
        if pending.complete:
            self._evaluate(rid, catalog, out)

    def on_response(self, response: ModelResponse, catalog: Catalog, out: list[Evaluated]) -> None:
        rid, role = response.request_id, response.role
        handle = self.handles.get(rid)
        if handle is not None:
            if role == "teacher_replica" and not handle.evaluation.replica.present:
                ev = handle.evaluation
                ev2 = relabel(ev, handle.labels)
                ev2.replica = view_of(response, catalog, self.config.order)
                self._replace(handle, ev2, out)
            else:
                self.counters["late_responses"] += 1
            return
        if rid in self.seen and rid not in self.pending:
            self.counters["late_responses"] += 1
            return
        pending = self.pending.setdefault(rid, Pending())
        if getattr(pending, role) is None:
            setattr(pending, role, response)
        if pending.complete:
            self._evaluate(rid, catalog, out)

    def on_label(self, label: Label, out: list[Evaluated]) -> None:
        rid = label.request_id
        handle = self.handles.get(rid)
        if handle is not None:
            if any(label_key(label) == label_key(lb) for lb in handle.labels):
                return
            ev = handle.evaluation  # before the handle is marked changed: it may be in its bytes
            handle.labels.append(label)
            handle.packed = None
            self._replace(handle, relabel(ev, handle.labels), out)
            return
        if rid in self.seen and rid not in self.pending:
            self.counters["late_labels"] += 1
            return
        pending = self.pending.setdefault(rid, Pending())
        if all(label_key(label) != label_key(lb) for lb in pending.labels):
            pending.labels.append(label)

    # -- time --------------------------------------------------------------------------------

    def advance(self, catalog: Catalog, out: list[Evaluated]) -> list[ClosedWindow]:
        """Time out joins the watermark has passed, evict old handles, close windows."""
        mark = self.watermark
        if mark == -math.inf:
            return []
        self._time_out(mark, catalog, out)
        horizon = self.max_event_ts - self.handle_horizon_s
        # Oldest first (dicts keep insertion order, which follows event time closely): the cost
        # is what is evicted, not what is kept.
        handles = self.handles
        while handles:
            rid = next(iter(handles))
            if handles[rid].ts >= horizon and len(handles) <= self.max_handles:
                break
            del handles[rid]
        seen = self.seen
        while seen:
            rid = next(iter(seen))
            if seen[rid] >= horizon and len(seen) <= 2 * self.max_handles:
                break
            del seen[rid]
        self._advances += 1
        if self._advances % 64 == 0:  # requests that never came: rare, so scanned rarely
            for rid in [r for r, p in self.pending.items()
                        if p.request is None and _oldest(p) < horizon]:
                del self.pending[rid]
                self.counters["orphans_dropped"] += 1
        closed: list[ClosedWindow] = []
        for size, windows in self.windows.items():
            for window in windows.pop_closed():
                closed.append(window)
                self.retained[size][window.start] = window.states
            kept = self.retained[size]
            for start in [s for s in kept if s + size < horizon]:
                del kept[start]
        return closed

    def take_revised(self) -> list[ClosedWindow]:
        """Closed windows a label or replica changed since the last call."""
        out = [ClosedWindow(start, size, self.retained[size][start])
               for size, start in sorted(self.revised) if start in self.retained[size]]
        self.revised.clear()
        return out

    def flush(self, catalog: Catalog, out: list[Evaluated]) -> None:
        """Idle input: evaluate every request still waiting for a response."""
        self._time_out(math.inf, catalog, out)

    def open_windows(self) -> list[ClosedWindow]:
        """Snapshots of the open windows (provisional results; they stay open)."""
        return [ClosedWindow(start, w.size, states) for w in self.windows.values()
                for start, states in w.open.items()]

    # -- internals ---------------------------------------------------------------------------

    def _time_out(self, mark: float, catalog: Catalog, out: list[Evaluated]) -> None:
        """Evaluate the waiting requests due at or before ``mark``, in arrival order. (A scan
        with no call per entry: it runs per partition for every batch, over up to
        ``max_join_buffer`` entries.)"""
        ready = [rid for rid, p in self.pending.items() if p.due is not None and p.due <= mark]
        for rid in ready:
            self._evaluate(rid, catalog, out)

    def _evaluate(self, rid: str, catalog: Catalog, out: list[Evaluated]) -> None:
        p = self.pending.pop(rid)
        assert p.request is not None
        ev = evaluate_request(p.request, p.teacher, p.student, catalog, self.config, p.labels,
                              p.teacher_replica)
        self.counters["requests"] += 1
        slices = self._slices(ev)
        ts = ev.ts.timestamp()
        late = False
        for windows in self.windows.values():
            # the evaluation itself: its counters are computed with the rest of its batch
            if not windows.add(ts, slices, ev):
                late = True
        if late:
            self.counters["late_events"] += 1
        # Slices and counters are not kept: a label (rare) recomputes them from the evaluation.
        handle = self.handles[rid] = Handle(ev, list(p.labels))
        if p.offset >= 0:
            handle.meta["offset"] = p.offset
        out.append(Evaluated(ev, handle, p.request, p.teacher, p.student, late))

    def _replace(self, handle: Handle, new: RequestEvaluation, out: list[Evaluated]) -> None:
        ts = new.ts.timestamp()
        old_slices = self._slices(handle.evaluation)
        slices = self._slices(new)
        for size, windows in self.windows.items():
            if windows.revise(ts, old_slices, handle.evaluation, -1):
                windows.revise(ts, slices, new)
                continue
            start = window_start(ts, size)
            states = self.retained[size].get(start)
            if states is None:
                continue
            old = contribution(handle.evaluation, self.layout, self._sketch).negated()
            contrib = contribution(new, self.layout, self._sketch)
            for key in dict.fromkeys(old_slices):  # a slice listed twice is one membership
                states.setdefault(key, WindowState.empty(self.layout)).add(old)
            for key in dict.fromkeys(slices):
                states.setdefault(key, WindowState.empty(self.layout)).add(contrib)
            self.revised.add((size, start))
            self.retained_changed.add((size, start))
        handle.evaluation = new
        handle.revision += 1
        handle.packed = None
        out.append(Evaluated(new, handle, None, None, None, False))


def _oldest(p: Pending) -> float:
    times = [r.ts.timestamp() for r in (p.teacher, p.student, p.teacher_replica) if r is not None]
    times += [lb.ts.timestamp() for lb in p.labels]
    return min(times, default=math.inf)
