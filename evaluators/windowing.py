"""Tumbling event-time windows with a watermark and a grace period (DESIGN §5).

Windows are aligned to the Unix epoch, ``[k·W, (k+1)·W)``, by request time. The watermark is
the largest event time seen minus the grace; a window closes once the watermark reaches its
end. An event whose window has already closed is *late*: it is counted, and never folded
into the closed window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from evaluators.window_state import Contribution, Layout, WindowState


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
        self.open: dict[int, dict[str, WindowState]] = {}
        self.late_events = 0

    @property
    def watermark(self) -> float:
        return self.max_event_ts - self.grace

    def is_late(self, ts: float) -> bool:
        return window_start(ts, self.size) + self.size <= self.watermark

    def add(self, ts: float, slices: Iterable[str], contrib: Contribution) -> bool:
        """Fold a request into its window; False (and counted) when that window has closed."""
        if self.is_late(ts):
            self.late_events += 1
            return False
        states = self.open.setdefault(window_start(ts, self.size), {})
        for key in slices:
            state = states.get(key)
            if state is None:
                state = states[key] = WindowState.empty(self.layout)
            state.add(contrib)
        if ts > self.max_event_ts:
            self.max_event_ts = ts
        return True

    def pop_closed(self) -> list[ClosedWindow]:
        """Windows the watermark has passed, oldest first; they leave the open set."""
        ready = sorted(s for s in self.open if s + self.size <= self.watermark)
        return [ClosedWindow(s, self.size, self.open.pop(s)) for s in ready]

    def pop_all(self) -> list[ClosedWindow]:
        """Every open window (end of input), oldest first."""
        ready = sorted(self.open)
        return [ClosedWindow(s, self.size, self.open.pop(s)) for s in ready]
