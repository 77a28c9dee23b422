"""``evaluate --alerts``: which rules would have fired on a replay log, printed on stderr.

The deciding is :class:`evaluators.judge.Judge`; this module only loads the rules and prints.
"""

from __future__ import annotations

from pathlib import Path

from distillwatch.cli.context import console_err
from distillwatch.cli.evaluate import rfc3339
from evaluators.alert_tracker import Transition
from evaluators.config import EvalConfig
from evaluators.judge import Judge
from evaluators.readout import MetricRow
from evaluators.rules import RuleSet


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def firing_line(t: Transition, rules: RuleSet) -> str:
    """One alert: window, slice, rule, value against threshold, interval, support, actions."""
    b = t.breach
    assert b is not None
    rule = rules[t.rule]
    interval = f"  95% CI [{_num(b.ci_low)}, {_num(b.ci_high)}]" if b.ci_low is not None else ""
    actions = ", ".join(rule.actions) or "none"
    return (f"ALERT {rfc3339(t.window_start)}  {t.slice}  {t.rule}: {b.metric} = {_num(b.value)} "
            f"{b.op} {_num(b.threshold)}{interval}  support {b.support}  "
            f"[{rule.severity}; {actions}]")


def summary_line(n_firing: int) -> str:
    if n_firing == 0:
        return "no alert would fire"
    return f"{n_firing} alert{'s' if n_firing != 1 else ''} would fire"


class OfflineJudge:
    """Collects transitions while rows stream by; prints them at the end."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.judge = Judge(rules)
        self.transitions: list[Transition] = []

    def observe(self, row: MetricRow) -> None:
        self.transitions += self.judge.observe(row)

    def finish(self) -> list[Transition]:
        """Judge the last window, print one line per firing and a summary; return firings."""
        self.transitions += self.judge.finish()
        firing = [t for t in self.transitions if t.kind == "firing"]
        for t in firing:
            console_err.print(firing_line(t, self.rules), markup=False, highlight=False)
        console_err.print(summary_line(len(firing)), markup=False, highlight=False)
        return firing


def offline_judge(rules_file: Path | None, config: EvalConfig) -> OfflineJudge:
    """A judge over ``rules_file`` (built-in rules when None); bad rules raise ConfigError."""
    references = {"planned_fallback_rate": config.planned_fallback_rate}
    return OfflineJudge(RuleSet.load(rules_file, references))
