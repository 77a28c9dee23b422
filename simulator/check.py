"""Offline alerts of a simulated log: the monitor's own evaluation and judging code, in process.

``scenario_alerts(log)`` runs :func:`evaluators.offline.evaluate_log` and
:class:`evaluators.judge.Judge` (the code the monitor runs) over a log and returns the alert
transitions; :func:`simulator.truth.check_transitions` compares them with the log's truth.
The same check applies to the monitor's alerts table once its rows become transitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from evaluators.alert_tracker import Transition
from evaluators.breaches import Breach
from evaluators.config import EvalConfig
from evaluators.judge import Judge
from evaluators.offline import evaluate_log
from evaluators.readout import MetricRow
from evaluators.rules import RuleSet
from simulator.truth import WINDOW_S


@dataclass
class JudgedLog:
    """Alert transitions of a log, and every breach behind them."""

    transitions: list[Transition]
    breaches: list[Breach]
    rows: list[MetricRow] = field(default_factory=list)
    """The evaluated windows, when asked for (``keep_rows``)."""

    @property
    def firing(self) -> list[Transition]:
        return [t for t in self.transitions if t.kind == "firing"]


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        yield from handle


def judge_rows(rows: Iterable[MetricRow], rules: RuleSet | None = None,
               config: EvalConfig | None = None, keep_rows: bool = False) -> JudgedLog:
    """Judge metric rows (in window order, as evaluate_log yields them) with the rules."""
    config = config or EvalConfig()
    rules = rules or RuleSet.load(None, {"planned_fallback_rate": config.planned_fallback_rate})
    judge = Judge(rules)
    transitions: list[Transition] = []
    kept: list[MetricRow] = []
    for row in rows:
        transitions += judge.observe(row)
        if keep_rows:
            kept.append(row)
    transitions += judge.finish()
    return JudgedLog(transitions, list(judge.breaches), kept)


def judge_log(log_path: Path | str, config: EvalConfig | None = None,
              rules: RuleSet | None = None, window_s: int = WINDOW_S,
              keep_rows: bool = False) -> JudgedLog:
    """Evaluate a log window by window and judge every window with the rules."""
    path = Path(log_path)
    config = config or EvalConfig()
    return judge_rows(evaluate_log(lambda: _lines(path), config, window_s), rules, config, keep_rows)


def scenario_alerts(log_path: Path | str, config: EvalConfig | None = None,
                    rules: RuleSet | None = None, window_s: int = WINDOW_S) -> list[Transition]:
    """Every alert transition (firing and resolved) the default rules raise on a log."""
    return judge_log(log_path, config, rules, window_s).transitions
