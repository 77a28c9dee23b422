"""Judging a stream of metric rows: group by window, find breaches, track alerts.

Rows arrive window by window (as :func:`evaluators.offline.evaluate_log` yields them); a
window is judged when the first row of another window arrives, or at :meth:`Judge.finish`.
One :class:`RuleTracker` per window size, since ``for`` counts windows of one size.
"""

from __future__ import annotations

from collections.abc import Iterable

from evaluators.alert_tracker import RuleTracker, Transition
from evaluators.breaches import Breach, evaluate_window
from evaluators.readout import MetricRow
from evaluators.rules import RuleSet


class Judge:
    """Pure deciding logic shared by ``evaluate --alerts`` and the tests."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.trackers: dict[int, RuleTracker] = {}
        self.breaches: list[Breach] = []
        """Every breach seen, for reports and tests."""
        self._key: tuple[int, int] | None = None
        self._rows: list[MetricRow] = []

    def observe(self, row: MetricRow) -> list[Transition]:
        """Buffer a row; return the transitions of the window it closes, if any."""
        key = (row.window_s, row.window_start)
        out = self._flush() if self._key is not None and key != self._key else []
        self._key = key
        self._rows.append(row)
        return out

    def finish(self) -> list[Transition]:
        """Judge the last buffered window."""
        return self._flush()

    def _flush(self) -> list[Transition]:
        if self._key is None:
            return []
        size, start = self._key
        rows, self._rows, self._key = self._rows, [], None
        breaches = evaluate_window(rows, self.rules)
        self.breaches += breaches
        tracker = self.trackers.setdefault(size, RuleTracker(self.rules, size))
        return tracker.step(start, breaches)


def judge_rows(rows: Iterable[MetricRow], rules: RuleSet) -> list[Transition]:
    """Every transition for a whole sequence of rows."""
    judge = Judge(rules)
    out = [t for row in rows for t in judge.observe(row)]
    return out + judge.finish()
