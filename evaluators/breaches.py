"""Which (rule, slice) pairs breach in one closed window (DESIGN §6).

A rate (a metric row with numerator, denominator and a Wilson interval) breaches only when
its whole 95 % interval lies beyond the threshold, and across the slices one rule tests in
the window the false-discovery rate is held at ``RuleSet.fdr`` with Benjamini–Hochberg. The
p-value is the one-sided score test of "the true rate is beyond the threshold" against the
null "it equals the threshold"; the Wilson interval is that same test inverted, so "interval
beyond" is "p < 0.025" and BH only removes slices. A metric with an interval but no counts
(cost) uses the interval test alone; one without an interval (ece, latency quantiles,
grounded_gap) breaches on its value. Every test needs ``support ≥ min_support``. A rule's
``also`` condition is a gate on the same slice and window: the interval-or-value test, no BH.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from evaluators.readout import MetricRow
from evaluators.rules import Condition, Rule, RuleSet


@dataclass(frozen=True)
class Breach:
    """One rule beyond its threshold on one slice in one window."""

    rule: str
    slice: str
    window_start: int
    window_s: int
    metric: str
    value: float
    op: str
    threshold: float
    support: int
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None


def one_sided_p(row: MetricRow, condition: Condition) -> float:
    """Score-test p-value of "the rate is beyond the threshold" (null: it equals it)."""
    assert row.numerator is not None and row.denominator
    t, n = condition.threshold, row.denominator
    p_hat = row.numerator / n
    if not 0 < t < 1:  # a degenerate null: beyond it is certain or impossible
        return 0.0 if condition.holds(p_hat) else 1.0
    z = (p_hat - t) / math.sqrt(t * (1 - t) / n)
    if condition.op == "<":
        z = -z
    return 0.5 * math.erfc(z / math.sqrt(2))


def benjamini_hochberg(p_values: Sequence[float], q: float) -> list[bool]:
    """Discoveries at FDR ``q``: all p_(i) with i ≤ the largest k where p_(k) ≤ k·q/m.

    >>> benjamini_hochberg([0.001, 0.04, 0.03, 0.5], 0.05)
    [True, False, False, False]
    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.02], 0.05)
    [True, True, True, True]
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    cut = 0
    for rank, i in enumerate(order, start=1):
        if p_values[i] <= rank * q / m:
            cut = rank
    keep = [False] * m
    for i in order[:cut]:
        keep[i] = True
    return keep


def _has_counts(row: MetricRow) -> bool:
    return row.numerator is not None and bool(row.denominator) and row.ci_low is not None


def row_beyond(row: MetricRow, condition: Condition) -> bool:
    """Whole interval beyond the threshold where there is one, else the value itself."""
    if row.ci_low is not None and row.ci_high is not None:
        t = condition.threshold
        return row.ci_low > t if condition.op == ">" else row.ci_high < t
    return condition.holds(row.value)


def _window_of(rows: list[MetricRow]) -> tuple[int, int]:
    keys = {(r.window_s, r.window_start) for r in rows}
    if len(keys) != 1:
        raise ValueError(f"rows of one window expected, got windows {sorted(keys)[:3]}")
    (size, start), = keys
    return size, start


def rule_breaches(rule: Rule, table: dict[tuple[str, str], MetricRow], fdr: float) -> list[Breach]:
    """Breaches of one rule in a window given as {(slice, metric): row}."""
    tested = [row for (slice_key, metric), row in sorted(table.items())
              if metric == rule.metric and rule.selects(slice_key) and row.support >= rule.min_support]
    conditions = [rule.condition_for(row.slice) for row in tested]
    counted = [i for i, row in enumerate(tested) if _has_counts(row)]
    p_values = {i: one_sided_p(tested[i], conditions[i]) for i in counted}
    discovered = dict(zip(counted, benjamini_hochberg([p_values[i] for i in counted], fdr)))
    out = []
    for i, (row, cond) in enumerate(zip(tested, conditions)):
        if not row_beyond(row, cond) or not discovered.get(i, True):
            continue
        if rule.also is not None:
            other = table.get((row.slice, rule.also.metric))
            if other is None or not row_beyond(other, rule.also.condition):
                continue
        out.append(Breach(rule.name, row.slice, row.window_start, row.window_s, row.metric,
                          row.value, cond.op, cond.threshold, row.support, row.ci_low,
                          row.ci_high, p_values.get(i)))
    return out


def evaluate_window(rows: Iterable[MetricRow], rules: RuleSet) -> list[Breach]:
    """Every breach of every rule in one closed window, by rule order then slice."""
    rows = list(rows)
    if not rows:
        return []
    _window_of(rows)
    table = {(r.slice, r.metric): r for r in rows}
    return [b for rule in rules.rules for b in rule_breaches(rule, table, rules.fdr)]
