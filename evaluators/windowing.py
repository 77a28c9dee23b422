"""Tumbling event-time windows with a watermark and a grace period (DESIGN §5).

Windows are aligned to the Unix epoch, ``[k·W, (k+1)·W)``, by request time. The watermark is
the largest event time seen minus the grace; a window closes once the watermark reaches its
end. An event whose window has already closed is *late*: it is counted, and never folded
into the closed window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from evaluators.batch_fold import Batch, PendingKeys, SliceIndex, fold
from evaluators.columnar import ColumnarCounts
from evaluators.request import RequestEvaluation
from evaluators.window_state import Contribution, Layout, WindowState

FOLD_EVERY = 1024
"""Contributions buffered per window before they are folded into slice states."""


@dataclass(frozen=True)
class ClosedWindow:
    start: int
    size: int
    states: dict[str, WindowState]

    @property
    def end(self) -> int:
        return self.start + self.size


def window_start(ts: float, size_s: int) -> int:
    return math.floor(ts / size_s) * size_s


class TumblingWindows:
    """Open windows of one size, each holding a state per slice."""

    def __init__(self, size_s: int, grace_s: float, layout: Layout) -> None:
        if size_s <= 0:
            raise ValueError("window size must be > 0 seconds")
        if grace_s < 0:
            raise ValueError("grace must be ≥ 0 seconds")
        self.size = size_s
        self.grace = grace_s
        self.layout = layout
        self.max_event_ts = -math.inf
        self._states: dict[int, dict[str, WindowState]] = {}
        self._pending: dict[int, Batch] = {}
        self.late_events = 0
        self._earliest = math.inf
        """Start of the oldest open window (a cheap test for pop_closed)."""
        self._columnar = ColumnarCounts(layout)
        self._index = SliceIndex()
        self._keys: dict[int, PendingKeys] = {}
        """Sketch keys folded but not yet in the sketches, per window start."""

    @property
    def open(self) -> dict[int, dict[str, WindowState]]:
        """Open windows' slice states (buffered contributions folded in first)."""
        for start in list(self._pending):
            self._fold(start)
        for keys in self._keys.values():
            keys.flush()
        return self._states

    def _fold(self, start: int) -> None:
        batch = self._pending.pop(start, None)
        states = self._states.setdefault(start, {})
        if batch is not None:
            keys = self._keys.get(start)
            if keys is None:
                keys = self._keys[start] = PendingKeys()
            fold(states, batch, self.layout, self._columnar, self._index, keys)

    @property
    def watermark(self) -> float:
        return self.max_event_ts - self.grace

    def is_late(self, ts: float) -> bool:
        return window_start(ts, self.size) + self.size <= self.watermark

    def add(self, ts: float, slices: Sequence[str], contrib: Contribution | RequestEvaluation,
            sign: int = 1) -> bool:
        """Fold a request into its window; False (and counted) when that window has closed.

        ``contrib`` is a request's evaluation (its counters are computed with the rest of its
        batch; ``sign`` -1 takes it back out) or its ready Contribution (``sign`` unused).
        """
        size = self.size
        start = math.floor(ts / size) * size  # window_start, inline: this runs per request
        if start + size <= self.max_event_ts - self.grace:  # is_late
            self.late_events += 1
            return False
        if start < self._earliest:
            self._earliest = start
        self._append(start, slices, contrib, sign)
        if ts > self.max_event_ts:
            self.max_event_ts = ts
        return True

    def advance(self, ts: float) -> None:
        """Move the watermark as a request at ``ts`` would, without adding it (a request
        another shard evaluates; see evaluators/offline.py)."""
        if ts > self.max_event_ts:
            self.max_event_ts = ts

    def revise(self, ts: float, slices: Sequence[str], contrib: Contribution | RequestEvaluation,
               sign: int = 1) -> bool:
        """Add to the window of ``ts`` if it is still held (not yet popped), late or not.

        A label changes a request already counted: its correction belongs in the window even
        when the watermark has passed the window's end, as long as the window is not emitted.
        """
        start = window_start(ts, self.size)
        if start not in self._states and start not in self._pending:
            return False
        self._append(start, slices, contrib, sign)
        return True

    def _append(self, start: int, slices: Sequence[str], contrib: Contribution | RequestEvaluation,
                sign: int) -> None:
        batch = self._pending.get(start)
        if batch is None:
            batch = self._pending[start] = Batch(FOLD_EVERY)
        if isinstance(contrib, Contribution):
            batch.append(slices, contrib)
        else:
            batch.append_evaluation(slices, contrib, sign)
        if batch.full:
            self._fold(start)

    def pop_closed(self) -> list[ClosedWindow]:
        """Windows the watermark has passed, oldest first; they leave the open set."""
        if self._earliest + self.size > self.watermark:  # the common case, per event
            return []
        starts = set(self._states) | set(self._pending)
        ready = sorted(s for s in starts if s + self.size <= self.watermark)
        closed = [self._close(s) for s in ready]
        self._earliest = min(starts - set(ready), default=math.inf)
        return closed

    def pop_all(self) -> list[ClosedWindow]:
        """Every open window (end of input), oldest first."""
        ready = sorted(set(self._states) | set(self._pending))
        self._earliest = math.inf
        return [self._close(s) for s in ready]

    def _close(self, start: int) -> ClosedWindow:
        self._fold(start)
        keys = self._keys.pop(start, None)
        if keys is not None:
            keys.flush()
        return ClosedWindow(start, self.size, self._states.pop(start))

    def restore(self, max_event_ts: float, late_events: int,
                states: dict[int, dict[str, WindowState]]) -> None:
        """Reinstate a snapshot (see ``open``, ``max_event_ts``, ``late_events``)."""
        self.max_event_ts = max_event_ts
        self.late_events = late_events
        self._states = states
        self._pending = {}
        self._keys = {}
        self._earliest = min(states, default=math.inf)
