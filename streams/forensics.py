"""Saved forensic queries: the SQL on-call runs after a page, kept as data
(:mod:`streams.forensics_sql`), and what it takes to run one: a period, a slice, the settings.

Each :class:`SavedQuery` is a name, a description and ClickHouse SQL whose every value is a
bound parameter (``{since:DateTime64(3, 'UTC')}``, ``{db:Identifier}``, …), so the same text
runs through :func:`streams.sql.run_sql` under the read-only profile, directly on the store
or through the monitor that owns it. Two placeholders are filled in by :func:`render` from a
fixed vocabulary, never from user text: ``$slice_filter`` (a condition built from
``--slice K=V`` with the key and value bound as parameters) and ``$slices`` (the slices of a
request row, as ``evaluators.slicing`` names them).

Slices map onto ``shadow_evaluations`` columns as the alert evidence maps them: attributes
onto the ``slice`` map; ``intent=`` and ``risk=`` onto ``reference_intent``; ``freshness=``
and ``multi_intent=`` onto their columns. On ``alerts`` a slice filter keeps alerts whose
slice names every given ``K=V`` (``region=br`` matches ``region=br,device=ios``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from string import Template
from typing import Any

from evaluators.config import EvalConfig
from schemas.errors import ConfigError
from streams.forensics_sql import (
    ALERT_TIMELINE, CALIBRATION, CONFIDENT_ERRORS, COPIED_ERRORS, DERIVED, FALLBACK_COST, FRESHNESS_GAP,
    LATENCY_BY_SLICE, PLACEHOLDERS, SAVED, TITLE_AGE_EDGES_DAYS, SavedQuery, SliceKind,
)

__all__ = [
    "ALERT_TIMELINE", "CALIBRATION", "CONFIDENT_ERRORS", "COPIED_ERRORS", "DERIVED", "FALLBACK_COST",
    "FRESHNESS_GAP", "LATENCY_BY_SLICE", "SAVED", "Result", "Runner", "SavedQuery", "Scope", "SliceKind",
    "command_for_alert", "get", "parse_slice", "parse_time", "query_for_metric", "render", "run",
    "slice_filter",
]


def get(name: str) -> SavedQuery:
    """The saved query called ``name`` (``_`` and ``-`` are interchangeable)."""
    key = name.replace("_", "-")
    if key not in SAVED:
        raise ConfigError(f"no saved query {name!r}; known: {', '.join(SAVED)}")
    return SAVED[key]


# --- parameters -------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: datetime) -> datetime:
    """``6h``/``30m``/``2d``/``90s``/``1w`` before ``now``, or an RFC 3339 time (UTC if no zone)."""
    match = _DURATION.match(text)
    if match:
        return now - timedelta(seconds=float(match[1]) * _UNIT_S[match[2]])
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"time {text!r}: expected a duration like 6h, 30m, 2d, or an RFC 3339 "
                          "time like 2026-11-01T10:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_slice(text: str) -> list[tuple[str, str]]:
    """``region=br`` or ``region=br,device=ios`` as (key, value) pairs; ``all`` is no filter."""
    if text.strip() == "all":
        return []
    pairs = []
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"slice {text!r}: expected KEY=VALUE (e.g. region=br), or all")
        pairs.append((key.strip(), value.strip()))
    return pairs


def _sql_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@dataclass(frozen=True)
class Scope:
    """What a saved query runs over: a period, an optional slice, the evaluation settings."""

    since: datetime
    until: datetime
    slices: tuple[tuple[str, str], ...] = ()
    config: EvalConfig = EvalConfig()
    database: str = "distillwatch"
    limit: int = 100

    def __post_init__(self) -> None:
        if self.until <= self.since:
            raise ConfigError(f"empty period: since {self.since.isoformat()} is not before "
                              f"until {self.until.isoformat()}")

    def parameters(self) -> dict[str, Any]:
        c = self.config
        planned_per_1k = c.cost_per_1k(c.planned_fallback_rate)
        edges = sorted({*TITLE_AGE_EDGES_DAYS, float(c.new_title_days)})
        return {
            "db": self.database, "since": _sql_time(self.since), "until": _sql_time(self.until),
            "high_risk": list(c.high_risk), "limit": self.limit,
            "confident_threshold": c.confident_threshold,
            "student_cost_per_1k": c.student_cost_per_1k, "teacher_cost_per_1k": c.teacher_cost_per_1k,
            "daily_volume": float(c.daily_volume), "planned_fallback_rate": c.planned_fallback_rate,
            "planned_cost_per_1k": planned_per_1k, "edges": edges, "bins": c.ece_bins,
        }


def slice_filter(pairs: Sequence[tuple[str, str]], kind: SliceKind) -> tuple[str, dict[str, Any]]:
    """A WHERE condition for the slice, with its values as parameters (never pasted in)."""
    if not pairs or kind == "none":
        return "1", {}
    if kind == "alert":
        return ("hasAll(splitByChar(',', slice), {slice_parts:Array(String)})",
                {"slice_parts": [f"{k}={v}" for k, v in pairs]})
    parts, params = [], {}
    for i, (key, value) in enumerate(pairs):
        v = f"slice_value_{i}"
        params[v] = value
        if key == "intent":
            parts.append(f"reference_intent = {{{v}:String}}")
        elif key == "freshness":
            parts.append(f"freshness = {{{v}:String}}")
        elif key == "multi_intent":
            if value not in ("true", "false"):
                raise ConfigError(f"slice multi_intent={value}: expected true or false")
            parts.append(f"multi_intent = ({{{v}:String}} = 'true')")
        elif key == "risk":
            if value not in ("high", "normal"):
                raise ConfigError(f"slice risk={value}: expected high or normal")
            parts.append(f"reference_intent != '' AND has({{high_risk:Array(String)}}, reference_intent) "
                         f"= ({{{v}:String}} = 'high')")
        else:
            k = f"slice_key_{i}"
            params[k] = key
            parts.append(f"slice[{{{k}:String}}] = {{{v}:String}}")
    return "(" + " AND ".join(parts) + ")", params


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):")


def render(query: SavedQuery, scope: Scope) -> tuple[str, dict[str, Any]]:
    """The query's SQL and the parameters it binds (only those it names)."""
    condition, slice_params = slice_filter(scope.slices, query.slice_kind)
    sql = Template(query.sql).substitute(PLACEHOLDERS, slice_filter=condition)
    available = scope.parameters() | slice_params
    names = set(_PARAM.findall(sql))
    missing = names - set(available)
    if missing:  # a saved query naming a parameter nobody provides is a bug here, not user error
        raise ValueError(f"saved query {query.name} needs parameters {sorted(missing)}")
    return sql, {k: available[k] for k in sorted(names)}


Runner = Callable[[str, dict[str, Any]], Any]
"""Runs read-only SQL with bound parameters; returns an object with ``columns`` and ``rows``."""


@dataclass
class Result:
    name: str
    columns: list[str]
    rows: list[list[Any]]
    via: str

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def run(name: str, scope: Scope, runner: Runner) -> Result:
    """Run a saved query through ``runner`` (e.g. :func:`streams.sql.run_sql` bound to a store)."""
    query = get(name)
    sql, params = render(query, scope)
    out = runner(sql, params)
    return Result(query.name, list(out.columns), [list(r) for r in out.rows], str(out.via))


_QUERY_FOR_METRIC = {
    "copied_error_overlap": "copied-errors", "student_fact_error_rate": "copied-errors",
    "teacher_fact_error_rate": "copied-errors", "hallucination_rate": "copied-errors",
    "fallback_rate": "fallback-cost", "fallback_rate_naive": "fallback-cost",
    "cost_per_1k_usd": "fallback-cost", "projected_daily_cost_usd": "fallback-cost",
    "grounded_gap": "freshness-gap", "student_grounded_rate": "freshness-gap",
    "new_title_share": "freshness-gap", "retrieval_miss_rate": "freshness-gap",
    "ece": "calibration", "teacher_ece": "calibration", "brier": "calibration",
}


def query_for_metric(metric: str) -> str:
    """The saved query that shows the requests behind an alert on ``metric``."""
    if "latency" in metric:
        return LATENCY_BY_SLICE.name
    return _QUERY_FOR_METRIC.get(metric, CONFIDENT_ERRORS.name)


def command_for_alert(alert: dict[str, Any], margin: timedelta = timedelta(hours=1)) -> str:
    """One command from an alert to the requests behind it (its episode plus a margin)."""
    start = alert["starts_at"] - margin
    end = (alert["ends_at"] or alert["starts_at"]) + margin
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    parts = ["distillwatch forensics", query_for_metric(alert["metric"]),
             f"--since {start.astimezone(UTC).strftime(fmt)}",
             f"--until {end.astimezone(UTC).strftime(fmt)}" if alert["ends_at"] else ""]
    if alert["slice"] != "all":
        parts.append(f"--slice {shlex.quote(alert['slice'])}")
    return " ".join(p for p in parts if p)
