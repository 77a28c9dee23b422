"""What the report shows, read from aggregates: ``window_metrics`` and grouped rows.

Everything here is numbers: the saved forensic queries (calibration bins, fallback cost per
hour, freshness gap, latency by slice, alert timeline) plus two reads of ``window_metrics``
(per-slice values over the period, and per-window timelines), each a bounded number of rows
however much traffic the period had. No drawing happens here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams import forensics
from streams.forensics import Runner, Scope

HEATMAP_METRICS: tuple[tuple[str, int], ...] = (
    # metric, direction (+1: higher is better, -1: lower is better)
    ("accuracy", 1), ("teacher_match", 1), ("escalation_recall", 1), ("confident_error_rate", -1),
    ("ece", -1), ("hallucination_rate", -1), ("student_fact_error_rate", -1),
    ("copied_error_overlap", -1), ("fallback_rate", -1), ("grounded_gap", -1),
    ("student_latency_p95", -1), ("missing_response_rate", -1),
)
TIMELINE_METRICS = ("accuracy", "teacher_match", "fallback_rate", "ece", "hallucination_rate",
                    "student_latency_p95")
MAX_SLICES = 40
MIN_POINTS = 12

HEATMAP_SQL = """SELECT slice, metric,
    sumIf(numerator, numerator IS NOT NULL AND denominator IS NOT NULL) AS num,
    sumIf(denominator, numerator IS NOT NULL AND denominator IS NOT NULL) AS den,
    sumIf(value * coalesce(denominator, toFloat64(support)), value IS NOT NULL)
        / nullIf(sumIf(coalesce(denominator, toFloat64(support)), value IS NOT NULL), 0) AS weighted,
    sum(value) AS total, count() AS windows
FROM {db:Identifier}.window_metrics FINAL
WHERE window_s = {window_s:UInt32} AND window_start >= {since:DateTime64(3, 'UTC')}
      AND window_start < {until:DateTime64(3, 'UTC')} AND metric IN {metrics:Array(String)}
GROUP BY slice, metric"""

TIMELINE_SQL = """SELECT metric, slice, window_start, value, ci_low, ci_high
FROM {db:Identifier}.window_metrics FINAL
WHERE window_s = {window_s:UInt32} AND window_start >= {since:DateTime64(3, 'UTC')}
      AND window_start < {until:DateTime64(3, 'UTC')} AND metric IN {metrics:Array(String)}
      AND slice IN {slices:Array(String)}
ORDER BY metric, slice, window_start"""


@dataclass
class Heatmap:
    slices: list[str]
    metrics: list[str]
    values: list[list[float | None]]
    """values[i][j]: metric j on slice i over the period."""
    deviation: list[list[float | None]]
    """How much worse (−1) or better (+1) than ``all``, scaled per metric; None where no value."""
    requests: list[float]


@dataclass
class Timeline:
    metric: str
    series: dict[str, list[tuple[datetime, float, float | None, float | None]]]
    """slice → [(window start, value, ci_low, ci_high)], ``all`` first."""
    alerts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ReportData:
    since: datetime
    until: datetime
    window_s: int
    generated_at: datetime
    summary: dict[str, float | None]
    calibration: dict[str, list[dict[str, Any]]]
    ece: dict[str, float | None]
    heatmap: Heatmap
    timelines: list[Timeline]
    fallback: list[dict[str, Any]]
    freshness: list[dict[str, Any]]
    latency: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    planned_fallback_rate: float
    alert_factor: float = 1.5


def choose_window(windows_s: list[int], since: datetime, until: datetime) -> int:
    """The largest configured window that still gives ``MIN_POINTS`` points, else the smallest."""
    span = (until - since).total_seconds()
    fitting = [w for w in sorted(windows_s) if span / w >= MIN_POINTS]
    return fitting[-1] if fitting else min(windows_s)


def ece_from_bins(bins: list[dict[str, Any]]) -> float | None:
    """Σ over bins of |Σ(correct − confidence)| / answers, from per-bin counts and means."""
    total = sum(b["answers"] for b in bins)
    if total == 0:
        return None
    return sum(b["answers"] * abs(b["accuracy"] - b["mean_confidence"]) for b in bins) / total


def heatmap_from(rows: list[dict[str, Any]], max_slices: int = MAX_SLICES) -> Heatmap:
    """Per slice × metric values over the period: Σ numerators / Σ denominators for rates,
    a weighted mean of window values otherwise; slices ordered ``all`` first, then by size."""
    metrics = [m for m, _ in HEATMAP_METRICS]
    direction = dict(HEATMAP_METRICS)
    value: dict[tuple[str, str], float] = {}
    support: dict[str, float] = {}
    for r in rows:
        if r["metric"] == "support":
            support[r["slice"]] = float(r["total"] or 0)
            continue
        v = r["num"] / r["den"] if r["den"] else r["weighted"]
        if v is not None:
            value[(r["slice"], r["metric"])] = float(v)
        support.setdefault(r["slice"], 0.0)
    ordered = sorted(support, key=lambda s: (s != "all", -support[s], s))[:max_slices]
    present = [m for m in metrics if any((s, m) in value for s in ordered)]
    values = [[value.get((s, m)) for m in present] for s in ordered]
    deviation: list[list[float | None]] = [[None] * len(present) for _ in ordered]
    for j, m in enumerate(present):
        base = value.get(("all", m))
        if base is None:
            continue
        column = [row[j] for row in values]
        spread = max((abs(v - base) for v in column if v is not None), default=0.0)
        scale = max(spread, abs(base) * 0.05, 1e-9)
        for i, v in enumerate(column):
            if v is not None:
                deviation[i][j] = max(-1.0, min(1.0, direction[m] * (v - base) / scale))
    return Heatmap(ordered, present, values, deviation, [support.get(s, 0.0) for s in ordered])


def timelines_from(rows: list[dict[str, Any]], alerts: list[dict[str, Any]], metrics: list[str]) -> list[Timeline]:
    """One timeline per metric: ``all`` plus every slice an alert on that metric names."""
    out = []
    for metric in metrics:
        series: dict[str, list[tuple[datetime, float, float | None, float | None]]] = {}
        for r in rows:
            if r["metric"] == metric and r["value"] is not None:
                series.setdefault(r["slice"], []).append(
                    (_utc(r["window_start"]), float(r["value"]), r["ci_low"], r["ci_high"]))
        ordered = dict(sorted(series.items(), key=lambda kv: (kv[0] != "all", kv[0])))
        out.append(Timeline(metric, ordered, [a for a in alerts if a["metric"] == metric]))
    return out


def summary_from(fallback: list[dict[str, Any]], calibration: dict[str, list[dict[str, Any]]],
                 heatmap: Heatmap, alerts: list[dict[str, Any]]) -> dict[str, float | None]:
    requests = sum(r["requests"] for r in fallback)
    answers = sum(r["student_answers"] for r in fallback)
    fallbacks = sum(r["fallbacks"] for r in fallback)
    spend = sum(r["spend_usd"] for r in fallback)
    planned = sum(r["planned_spend_usd"] for r in fallback)
    student = calibration.get("student", [])
    answered = sum(b["answers"] for b in student)
    teacher_match = None
    if "all" in heatmap.slices and "teacher_match" in heatmap.metrics:
        teacher_match = heatmap.values[heatmap.slices.index("all")][heatmap.metrics.index("teacher_match")]
    return {
        "requests": float(requests),
        "accuracy": sum(b["answers"] * b["accuracy"] for b in student) / answered if answered else None,
        "teacher_match": teacher_match,
        "fallback_rate": fallbacks / answers if answers else None,
        "spend_usd": spend, "planned_spend_usd": planned,
        "alerts": float(len(alerts)),
        "alerts_firing": float(sum(1 for a in alerts if a["status"] == "firing")),
    }


def collect(runner: Runner, scope: Scope, windows_s: list[int], window_s: int | None = None) -> ReportData:
    """Run every query the report needs (each bounded in rows) and shape the results."""
    window = window_s or choose_window(windows_s, scope.since, scope.until)
    big = Scope(scope.since, scope.until, scope.slices, scope.config, scope.database, limit=1000)

    def saved(name: str, times: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        records = forensics.run(name, big, runner).records()
        for r in records:  # through the monitor's API times arrive as text
            for key in times:
                r[key] = None if r[key] is None else _utc(r[key])
        return records

    alerts = saved("alert-timeline", ("starts_at", "ends_at"))
    bins = saved("calibration")
    calibration = {m: [b for b in bins if b["model"] == m] for m in ("student", "teacher")}
    base = {k: v for k, v in scope.parameters().items() if k in ("db", "since", "until")}
    heat_rows = _records(runner(HEATMAP_SQL, base | {
        "window_s": window, "metrics": [m for m, _ in HEATMAP_METRICS] + ["support"]}))
    heatmap = heatmap_from(heat_rows)
    metrics = list(TIMELINE_METRICS) + sorted({a["metric"] for a in alerts} - set(TIMELINE_METRICS))
    slices = ["all"] + sorted({a["slice"] for a in alerts} - {"all"})
    timeline_rows = _records(runner(TIMELINE_SQL, base | {"window_s": window, "metrics": metrics,
                                                          "slices": slices}))
    fallback = saved("fallback-cost", ("hour",))
    return ReportData(
        since=scope.since, until=scope.until, window_s=window, generated_at=datetime.now(UTC),
        summary=summary_from(fallback, calibration, heatmap, alerts),
        calibration=calibration, ece={m: ece_from_bins(b) for m, b in calibration.items()},
        heatmap=heatmap, timelines=timelines_from(timeline_rows, alerts, metrics),
        fallback=fallback, freshness=saved("freshness-gap"), latency=saved("latency-by-slice"),
        alerts=alerts, planned_fallback_rate=scope.config.planned_fallback_rate,
    )


def _records(result: Any) -> list[dict[str, Any]]:
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
