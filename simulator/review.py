"""Human review of risky requests: a first-in-first-out queue with an hourly capacity.

The guide's scenario 10: 80,000 risky examples a week need review and reviewers clear
18,000, so the backlog grows by 62,000 a week. Each reviewed request gets a human label
(the true intent) at the time its review finishes; requests still waiting at the end of the
run are the backlog.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class ReviewQueue:
    """Review completion times for arrivals in time order."""

    capacity_per_hour: float | None = None
    """None: ample reviewers, each review done ``delay_s`` after it arrives."""
    delay_s: tuple[float, float] = (300.0, 1200.0)
    arrivals: list[float] = field(default_factory=list)
    completions: list[float] = field(default_factory=list)
    _last: float = float("-inf")

    def submit(self, offset_s: float, rng: random.Random) -> float:
        """Queue a request that arrived at ``offset_s``; return when its review finishes."""
        earliest = offset_s + rng.uniform(*self.delay_s)
        if self.capacity_per_hour is None:
            done = earliest
        else:
            done = max(earliest, self._last + 3600.0 / self.capacity_per_hour)
            self._last = done
        self.arrivals.append(offset_s)
        self.completions.append(done)
        return done

    def backlog_at(self, offset_s: float) -> int:
        """Arrived by ``offset_s`` and not yet reviewed."""
        arrived = sum(1 for a in self.arrivals if a <= offset_s)
        return arrived - sum(1 for c in self.completions if c <= offset_s)
