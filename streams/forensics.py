"""Saved forensic queries: the SQL on-call runs after a page, kept as data.

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
from typing import Any, Literal

from evaluators.config import EvalConfig
from schemas.errors import ConfigError

SliceKind = Literal["request", "alert", "none"]
DERIVED = ("intent", "risk", "freshness", "multi_intent")
TITLE_AGE_EDGES_DAYS = (7.0, 30.0, 180.0, 365.0)
"""Title-age bucket upper edges (inclusive); the configured new-title age is added."""

_PLACEHOLDERS = {
    "table": "{db:Identifier}.shadow_evaluations",
    "payloads": "{db:Identifier}.shadow_payloads",
    "alerts": "{db:Identifier}.alerts",
    "period": "ts >= {since:DateTime64(3, 'UTC')} AND ts < {until:DateTime64(3, 'UTC')}",
    "slices": """arrayConcat(['all'],
        arrayMap((k, v) -> concat(k, '=', v), mapKeys(slice), mapValues(slice)),
        if(reference_intent = '', [],
           ['intent=' || reference_intent,
            if(has({high_risk:Array(String)}, reference_intent), 'risk=high', 'risk=normal')]),
        ['freshness=' || freshness, if(multi_intent = 1, 'multi_intent=true', 'multi_intent=false')])""",
}
"""Fixed text for ``$name`` in a saved query; ``$slices`` lists a request row's slices."""


@dataclass(frozen=True)
class SavedQuery:
    name: str
    description: str
    sql: str
    slice_kind: SliceKind = "request"


COPIED_ERRORS = SavedQuery(
    "copied-errors",
    "Student fact errors that copy a wrong claim of the teacher, by slice, with the most "
    "recent example request ids (copied_error_overlap = copied / student wrong claims).",
    # Rows with a fact error are summed per combination of slice keys first, then per slice.
    """SELECT sl AS slice, copied AS copied_claims, wrong AS student_wrong_claims,
    if(wrong > 0, copied / wrong, NULL) AS copied_error_overlap,
    teacher_errors AS teacher_fact_errors, with_copies AS requests_with_copies,
    arrayMap(x -> x.2, latest) AS example_request_ids
FROM (
    SELECT sl, sum(c) AS copied, sum(w) AS wrong, sum(te) AS teacher_errors, sum(wc) AS with_copies,
        groupArraySortedMerge(5)(recent) AS latest
    FROM (
        SELECT attrs AS slice, reference_intent, freshness, multi_intent, c, w, te, wc, recent
        FROM (
            SELECT any(slice) AS attrs, reference_intent, freshness, multi_intent,
                sum(copied_claims) AS c, sum(student_wrong_claims) AS w,
                countIf(teacher_fact_error = 1) AS te, countIf(copied_claims > 0) AS wc,
                groupArraySortedStateIf(5)((-toUnixTimestamp64Milli(ts), request_id), copied_claims > 0)
                    AS recent
            FROM $table FINAL
            WHERE $period AND (student_wrong_claims > 0 OR teacher_wrong_claims > 0) AND $slice_filter
            GROUP BY cityHash64(slice.keys, slice.values), reference_intent, freshness, multi_intent
        )
    )
    ARRAY JOIN $slices AS sl
    GROUP BY sl
    HAVING copied > 0
)
ORDER BY copied_claims DESC, slice""",
)

CONFIDENT_ERRORS = SavedQuery(
    "confident-errors",
    "Requests the student got wrong with top-1 at or above the confident threshold, with the "
    "redacted payload where one was sampled (sampled first, then most confident).",
    # The candidates are ranked on light columns; the wide ones (the slice map, intents) are
    # read only for the rows shown, found through the primary key.
    """SELECT e.request_id AS request_id, e.ts AS ts, e.slice AS slice,
    e.reference_intent AS reference_intent, e.reference_source AS reference_source,
    e.student_intent AS student_intent, e.student_top1 AS student_top1,
    e.teacher_intent AS teacher_intent, e.teacher_top1 AS teacher_top1,
    p.sample_reason AS sample_reason, p.prompt_redacted AS prompt_redacted,
    p.student_answer_redacted AS student_answer_redacted,
    p.teacher_answer_redacted AS teacher_answer_redacted
FROM (
    SELECT request_id, ts, slice, reference_intent, reference_source, student_intent,
           student_top1, teacher_intent, teacher_top1
    FROM $table FINAL
    WHERE $period AND (toStartOfHour(ts), request_id) IN (
        SELECT toStartOfHour(c.ts), c.request_id
        FROM (
            SELECT request_id, ts, student_top1
            FROM $table FINAL
            WHERE $period AND student_correct = 0 AND student_top1 >= {confident_threshold:Float64}
                  AND $slice_filter
        ) AS c
        LEFT JOIN (SELECT request_id, sample_reason FROM $payloads FINAL WHERE $period) AS s
            ON s.request_id = c.request_id
        ORDER BY s.sample_reason != '' DESC, c.student_top1 DESC, c.ts DESC, c.request_id
        LIMIT {limit:UInt32}
    )
) AS e
LEFT JOIN (
    SELECT request_id, sample_reason, prompt_redacted, student_answer_redacted, teacher_answer_redacted
    FROM $payloads FINAL
    WHERE $period
) AS p ON p.request_id = e.request_id
ORDER BY p.sample_reason != '' DESC, e.student_top1 DESC, e.ts DESC, e.request_id""",
)

FALLBACK_COST = SavedQuery(
    "fallback-cost",
    "Per hour: teacher-fallback rate against the planned rate, what the mirrored requests "
    "cost against the plan, and the daily cost at the configured volume.",
    """SELECT hour, requests, student_answers, fallbacks, fallback_rate,
    {planned_fallback_rate:Float64} AS planned_fallback_rate,
    spend AS spend_usd, planned_spend AS planned_spend_usd, spend - planned_spend AS over_plan_usd,
    ((1 - fallback_rate) * {student_cost_per_1k:Float64} + fallback_rate * {teacher_cost_per_1k:Float64})
        * {daily_volume:Float64} / 1000 AS projected_daily_cost_usd,
    {planned_cost_per_1k:Float64} * {daily_volume:Float64} / 1000 AS planned_daily_cost_usd
FROM (
    SELECT toStartOfHour(ts) AS hour, count() AS requests,
        countIf(student_answered = 1) AS student_answers,
        countIf(student_answered = 1 AND fallback = 1) AS fallbacks,
        if(student_answers > 0, fallbacks / student_answers, NULL) AS fallback_rate,
        sum(cost_usd) AS spend,
        requests * {planned_cost_per_1k:Float64} / 1000 AS planned_spend
    FROM $table FINAL
    WHERE $period AND $slice_filter
    GROUP BY hour
)
ORDER BY hour""",
)

FRESHNESS_GAP = SavedQuery(
    "freshness-gap",
    "Grounding by age of the newest catalog title a request names (buckets include their "
    "upper edge): teacher and student grounded rates and their gap, retrieval misses, student "
    "fact errors and accuracy.",
    """SELECT
    multiIf(bucket = -1, 'no catalog title', bucket = 0, concat('> ', toString(lo), ' d'),
            concat(toString(lo), '-', toString(hi), ' d')) AS title_age,
    if(bucket = -1, NULL, lo) AS age_from_days,
    if(bucket <= 0, NULL, hi) AS age_to_days,
    requests,
    if(teacher_answers > 0, teacher_grounded / teacher_answers, NULL) AS teacher_grounded_rate,
    if(student_answers > 0, student_grounded / student_answers, NULL) AS student_grounded_rate,
    teacher_grounded_rate - student_grounded_rate AS grounded_gap,
    if(naming > 0, misses / naming, NULL) AS retrieval_miss_rate,
    if(checkable > 0, fact_errors / checkable, NULL) AS student_fact_error_rate,
    if(referenced > 0, correct / referenced, NULL) AS accuracy
FROM (
    SELECT
        if(title_age_days IS NULL, -1, arrayFirstIndex(e -> title_age_days <= e, {edges:Array(Float64)}))
            AS bucket,
        multiIf(bucket = 0, arrayElement({edges:Array(Float64)}, -1), bucket <= 1, 0,
                {edges:Array(Float64)}[bucket - 1]) AS lo,
        if(bucket <= 0, 0, {edges:Array(Float64)}[bucket]) AS hi,
        count() AS requests,
        countIf(teacher_answered = 1) AS teacher_answers,
        countIf(teacher_answered = 1 AND teacher_all_claims_correct = 1 AND retrieval_miss = 0)
            AS teacher_grounded,
        countIf(student_answered = 1) AS student_answers,
        countIf(student_answered = 1 AND student_all_claims_correct = 1 AND retrieval_miss = 0)
            AS student_grounded,
        countIf(names_entity = 1) AS naming,
        countIf(retrieval_miss = 1) AS misses,
        countIf(student_checkable = 1) AS checkable,
        countIf(student_fact_error = 1) AS fact_errors,
        countIf(student_correct IS NOT NULL) AS referenced,
        countIf(student_correct = 1) AS correct
    FROM $table FINAL
    WHERE $period AND $slice_filter
    GROUP BY bucket
)
ORDER BY bucket = -1, bucket = 0, bucket""",
)

LATENCY_BY_SLICE = SavedQuery(
    "latency-by-slice",
    "Per slice: requests, error responses and p50/p95/p99 latency in ms for student and "
    "teacher (DDSketch, within 1 % relative error; error responses count, absent ones not).",
    # One scan, two grouping sets: sketches per combination of slice attributes (with
    # freshness and multi_intent), and per reference intent; then merged per slice name.
    """SELECT slice, requests, student_errors, teacher_errors,
    sq[1] AS student_p50_ms, sq[2] AS student_p95_ms, sq[3] AS student_p99_ms,
    tq[1] AS teacher_p50_ms, tq[2] AS teacher_p95_ms, tq[3] AS teacher_p99_ms
FROM (
    SELECT sl AS slice, sum(n) AS requests, sum(s_err) AS student_errors, sum(t_err) AS teacher_errors,
        quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(s_lat) AS sq, quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(t_lat) AS tq
    FROM (
        SELECT if(by_attrs,
                  arrayConcat(['all'], arrayMap((k, v) -> concat(k, '=', v), mapKeys(attrs), mapValues(attrs)),
                              ['freshness=' || freshness,
                               if(multi_intent = 1, 'multi_intent=true', 'multi_intent=false')]),
                  if(reference_intent = '', [],
                     ['intent=' || reference_intent,
                      if(has({high_risk:Array(String)}, reference_intent), 'risk=high', 'risk=normal')]))
                   AS names, n, s_err, t_err, s_lat, t_lat
        FROM (
            SELECT grouping(combo) = 0 AS by_attrs, any(slice) AS attrs, freshness, multi_intent,
                reference_intent, count() AS n,
                countIf(student_present = 1 AND student_answered = 0) AS s_err,
                countIf(teacher_present = 1 AND teacher_answered = 0) AS t_err,
                quantilesDDState(0.01, 0.5, 0.95, 0.99)(student_latency_ms) AS s_lat,
                quantilesDDState(0.01, 0.5, 0.95, 0.99)(teacher_latency_ms) AS t_lat
            FROM (
                SELECT cityHash64(slice.keys, slice.values) AS combo, slice, freshness, multi_intent,
                    reference_intent, student_present, student_answered, teacher_present,
                    teacher_answered, student_latency_ms, teacher_latency_ms
                FROM $table FINAL
                WHERE $period AND $slice_filter
            )
            GROUP BY GROUPING SETS ((combo, freshness, multi_intent), (reference_intent))
        )
    )
    ARRAY JOIN names AS sl
    GROUP BY sl
)
ORDER BY student_p95_ms DESC, slice""",
)

ALERT_TIMELINE = SavedQuery(
    "alert-timeline",
    "Alerts active in the period, oldest first, one row per episode (fingerprint and start), "
    "with each alert's evidence: summary, example request ids, ready SQL, replay offsets.",
    """SELECT started AS starts_at, ended AS ends_at, state AS status, sev AS severity, rule_ AS rule,
    slice_ AS slice, metric_ AS metric, firing_value AS value, threshold_ AS threshold,
    JSONExtractString(ev, 'summary') AS summary,
    JSONExtract(ev, 'example_request_ids', 'Array(String)') AS example_request_ids,
    JSONExtractString(ev, 'forensics_sql') AS forensics_sql,
    JSONExtractString(ev, 'replay_offsets') AS replay_offsets,
    fingerprint
FROM (
    SELECT fingerprint, starts_at AS started, any(rule) AS rule_, any(slice) AS slice_,
        any(severity) AS sev, any(metric) AS metric_, maxOrNull(ends_at) AS ended,
        if(countIf(status = 'resolved') > 0, 'resolved', 'firing') AS state,
        if(countIf(status = 'firing') > 0, anyIf(value, status = 'firing'), any(value)) AS firing_value,
        any(threshold) AS threshold_,
        if(countIf(status = 'firing') > 0, anyIf(evidence, status = 'firing'), any(evidence)) AS ev
    FROM $alerts FINAL
    WHERE starts_at < {until:DateTime64(3, 'UTC')} AND NOT JSONExtractBool(evidence, 'test')
          AND $slice_filter
    GROUP BY fingerprint, starts_at
    HAVING ended IS NULL OR ended >= {since:DateTime64(3, 'UTC')}
)
ORDER BY starts_at, fingerprint
LIMIT {limit:UInt32}""",
    slice_kind="alert",
)

CALIBRATION = SavedQuery(
    "calibration",
    "Reliability bins of top-1 confidence for student and teacher: answers with a reference "
    "per bin [k/B, (k+1)/B) (1.0 in the last), their mean confidence and accuracy.",
    # One scan: per-bin aggregates of both models as arrays (-Resample), then one row per bin.
    """SELECT model, bin, bin / {bins:UInt8} AS bin_low, (bin + 1) / {bins:UInt8} AS bin_high,
    answers, mean_confidence, accuracy
FROM (
    SELECT m.1 AS model, b.1 AS bin, b.2 AS answers, b.3 AS mean_confidence, b.4 AS accuracy
    FROM (
        SELECT [('student', arrayZip(range({bins:UInt8}), countResample(0, {bins:UInt8}, 1)(s_bin),
                                     avgResample(0, {bins:UInt8}, 1)(s_p, s_bin),
                                     avgResample(0, {bins:UInt8}, 1)(s_ok, s_bin))),
                ('teacher', arrayZip(range({bins:UInt8}), countResample(0, {bins:UInt8}, 1)(t_bin),
                                     avgResample(0, {bins:UInt8}, 1)(t_p, t_bin),
                                     avgResample(0, {bins:UInt8}, 1)(t_ok, t_bin)))] AS models
        FROM (
            SELECT toFloat64(student_top1) AS s_p, toFloat64(teacher_top1) AS t_p,
                ifNull(student_correct, 0) AS s_ok, ifNull(teacher_correct, 0) AS t_ok,
                if(student_correct IS NULL, 65535, least(toUInt16(floor(s_p * {bins:UInt8})), {bins:UInt8} - 1))
                    AS s_bin,
                if(teacher_correct IS NULL, 65535, least(toUInt16(floor(t_p * {bins:UInt8})), {bins:UInt8} - 1))
                    AS t_bin
            FROM $table FINAL
            WHERE $period AND $slice_filter
        )
    )
    ARRAY JOIN models AS m
    ARRAY JOIN m.2 AS b
)
WHERE answers > 0
ORDER BY model, bin""",
)

SAVED: dict[str, SavedQuery] = {q.name: q for q in (
    COPIED_ERRORS, CONFIDENT_ERRORS, FALLBACK_COST, FRESHNESS_GAP, LATENCY_BY_SLICE,
    ALERT_TIMELINE, CALIBRATION)}


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
    sql = Template(query.sql).substitute(_PLACEHOLDERS, slice_filter=condition)
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
