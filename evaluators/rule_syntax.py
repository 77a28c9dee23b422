"""Parsing one alert rule's YAML mapping: keys, values and threshold expressions.

Kept apart from :mod:`evaluators.rules` so the rule model stays readable. Every problem is a
:class:`RuleSyntaxError` naming the offending key; the loader adds the rule's name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS = ("<", ">")
SEVERITIES = ("critical", "warning", "info")
ACTIONS = ("page", "ticket", "retrain")
KEYS = frozenset({
    "name", "description", "metric", "slices", "exclude", "condition", "also",
    "slice_thresholds", "min_support", "for", "severity", "actions", "cooldown_s",
})
METRICS = frozenset({
    "support", "teacher_fact_error_rate", "student_fact_error_rate",
    "teacher_confident_error_rate", "copied_error_overlap", "hallucination_rate",
    "retrieval_miss_rate", "teacher_match", "student_win_rate", "accuracy", "teacher_accuracy",
    "escalation_recall", "ece", "teacher_ece", "brier", "confident_error_rate", "fallback_rate",
    "fallback_rate_naive", "cost_per_1k_usd", "projected_daily_cost_usd",
    "planned_daily_cost_usd", "new_title_share", "teacher_grounded_rate",
    "student_grounded_rate", "grounded_gap", "dataset_age_days_p50", "dataset_age_days_p95",
    "teacher_latency_p50", "teacher_latency_p95", "teacher_latency_p99", "student_latency_p50",
    "student_latency_p95", "student_latency_p99", "missing_response_rate",
    "teacher_missing_response_rate", "teacher_self_agreement", "excess_disagreement",
    "promotion_score",
})
"""DESIGN §5 names; ``recall.C``, ``teacher_recall.C`` and ``precision.C`` take any class C."""
PER_CLASS = re.compile(r"(recall|teacher_recall|precision)\.[A-Za-z0-9_\-]+")
NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)|([A-Za-z_]\w*)|([*×+\-−]))")


class RuleSyntaxError(ValueError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


@dataclass(frozen=True)
class Condition:
    """``value <op> threshold``, strict; ``text`` is the condition as written."""

    op: str
    threshold: float
    text: str = ""

    def holds(self, value: float) -> bool:
        return value > self.threshold if self.op == ">" else value < self.threshold


@dataclass(frozen=True)
class Also:
    """A second condition on another metric of the same window and slice."""

    metric: str
    condition: Condition


def parse_expression(text: str, refs: Mapping[str, float]) -> float:
    """``N``, ``-N``, ``name``, or ``A op B`` with op in ``* + -`` (``×``, ``−`` accepted)."""
    tokens: list[float | str] = []
    text, pos = text.strip(), 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read {text!r} at {text[pos:]!r}")
        num, name, op = m.groups()
        if name is not None and name not in refs:
            raise ValueError(f"unknown reference {name!r}; known: {sorted(refs)}")
        tokens.append(float(num) if num else float(refs[name]) if name else op.replace("×", "*").replace("−", "-"))
        pos = m.end()
    match tokens:
        case [float() as a]:
            return a
        case ["-", float() as a]:
            return -a
        case [float() as a, "*", float() as b]:
            return a * b
        case [float() as a, "+", float() as b]:
            return a + b
        case [float() as a, "-", float() as b]:
            return a - b
    raise ValueError(f"expected a number, a reference, or 'A * B', 'A + B', 'A - B'; got {text!r}")


def parse_condition(raw: object, refs: Mapping[str, float], key: str) -> Condition:
    if not isinstance(raw, str):
        raise RuleSyntaxError(key, f"expected a string such as '> 0.05', got {raw!r}")
    text = raw.strip()
    if text[:2] in ("<=", ">=", "=<", "=>", "==", "!="):
        raise RuleSyntaxError(key, f"operator {text[:2]!r} not allowed: comparisons are strict, use < or >")
    if text[:1] not in OPERATORS:
        raise RuleSyntaxError(key, f"must start with an operator < or >, got {raw!r}")
    try:
        return Condition(text[0], parse_expression(text[1:], refs), text)
    except ValueError as exc:
        raise RuleSyntaxError(key, str(exc)) from exc


def parse_metric(raw: object, key: str) -> str:
    if not isinstance(raw, str) or not (raw in METRICS or PER_CLASS.fullmatch(raw)):
        raise RuleSyntaxError(key, f"unknown metric {raw!r}; see DESIGN §5 for the names")
    return raw


def _globs(raw: object, key: str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(g, str) and g for g in items):
        raise RuleSyntaxError(key, f"expected a glob or a list of globs, got {raw!r}")
    return tuple(items)


def _int(raw: object, key: str, least: int) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < least:
        raise RuleSyntaxError(key, f"expected an integer ≥ {least}, got {raw!r}")
    return raw


def parse_rule(raw: object, refs: Mapping[str, float]) -> dict[str, Any]:
    """Keyword arguments of :class:`evaluators.rules.Rule` for one YAML rule mapping."""
    if not isinstance(raw, dict):
        raise RuleSyntaxError("rule", f"expected a mapping, got {raw!r}")
    for key in raw:
        if key not in KEYS:
            raise RuleSyntaxError(str(key), f"unknown key; allowed keys are {sorted(KEYS)}")
    for key in ("name", "metric", "condition"):
        if key not in raw:
            raise RuleSyntaxError(key, "required")
    name = raw["name"]
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise RuleSyntaxError("name", f"expected letters, digits, '_', '.', '-', got {name!r}")
    out: dict[str, Any] = {
        "name": name, "metric": parse_metric(raw["metric"], "metric"),
        "condition": parse_condition(raw["condition"], refs, "condition"),
        "slices": _globs(raw.get("slices", "*"), "slices"),
        "exclude": _globs(raw.get("exclude", []), "exclude"),
        "min_support": _int(raw.get("min_support", 200), "min_support", 0),
        "for_windows": _int(raw.get("for", 2), "for", 1),
    }
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise RuleSyntaxError("description", "expected a string")
    out["description"] = description
    if "also" in raw:
        also = raw["also"]
        if not isinstance(also, dict) or set(also) != {"metric", "condition"}:
            raise RuleSyntaxError("also", f"expected {{metric: ..., condition: ...}}, got {also!r}")
        out["also"] = Also(parse_metric(also["metric"], "also.metric"),
                           parse_condition(also["condition"], refs, "also.condition"))
    per_slice = raw.get("slice_thresholds", {})
    if not isinstance(per_slice, dict):
        raise RuleSyntaxError("slice_thresholds", f"expected a mapping of glob to threshold, got {per_slice!r}")
    try:
        out["slice_thresholds"] = tuple((str(g), parse_expression(str(t), refs)) for g, t in per_slice.items())
    except ValueError as exc:
        raise RuleSyntaxError("slice_thresholds", str(exc)) from exc
    severity = raw.get("severity", "warning")
    if severity not in SEVERITIES:
        raise RuleSyntaxError("severity", f"expected one of {list(SEVERITIES)}, got {severity!r}")
    out["severity"] = severity
    actions = raw.get("actions", [])
    if not isinstance(actions, list) or any(a not in ACTIONS for a in actions) or len(set(actions)) < len(actions):
        raise RuleSyntaxError("actions", f"expected a list of distinct {list(ACTIONS)}, got {actions!r}")
    out["actions"] = tuple(actions)
    cooldown = raw.get("cooldown_s", 900)
    if not isinstance(cooldown, (int, float)) or isinstance(cooldown, bool) or cooldown < 0:
        raise RuleSyntaxError("cooldown_s", f"expected a number of seconds ≥ 0, got {cooldown!r}")
    out["cooldown_s"] = float(cooldown)
    return out
