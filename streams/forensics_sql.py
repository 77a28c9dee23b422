"""The saved forensic queries themselves: names, descriptions and SQL, as data.

Every value in the SQL is a bound ClickHouse parameter (``{since:DateTime64(3, 'UTC')}``,
``{db:Identifier}``, …). ``$name`` placeholders are filled by :func:`streams.forensics.render`
from :data:`PLACEHOLDERS` (fixed text) and ``$slice_filter`` (a condition whose values are
bound too). Slices are those of DESIGN §5: ``all``, each attribute of the ``slice`` map, and
the derived ``intent=``, ``risk=``, ``freshness=``, ``multi_intent=``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SliceKind = Literal["request", "alert", "none"]
DERIVED = ("intent", "risk", "freshness", "multi_intent")
TITLE_AGE_EDGES_DAYS = (7.0, 30.0, 180.0, 365.0)
"""Title-age bucket upper edges (inclusive); the configured new-title age is added."""

_SLICE_PAIRS = "arrayMap(kv -> concat(kv.1, '=', kv.2), JSONExtractKeysAndValues(slice_json, 'String'))"

PLACEHOLDERS = {
    "table": "{db:Identifier}.shadow_evaluations",
    "payloads": "{db:Identifier}.shadow_payloads",
    "alerts": "{db:Identifier}.alerts",
    "period": "ts >= {since:DateTime64(3, 'UTC')} AND ts < {until:DateTime64(3, 'UTC')}",
    "slice_pairs": _SLICE_PAIRS,
    "slices": "arrayConcat(['all'], " + _SLICE_PAIRS + """,
        if(reference_intent = '', [],
           ['intent=' || reference_intent,
            if(has({high_risk:Array(String)}, reference_intent), 'risk=high', 'risk=normal')]),
        ['freshness=' || freshness, if(multi_intent = 1, 'multi_intent=true', 'multi_intent=false')])""",
}
"""Fixed text for ``$name`` in a saved query. ``$slice_pairs`` lists the ``key=value`` slices of a
row's attributes, read from ``slice_json`` (the slice map as dictionary-encoded JSON, migration
0005: grouping by it is ~20× cheaper than hashing the map); ``$slices`` lists all of a row's
slices."""


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
        SELECT slice_json, reference_intent, freshness, multi_intent,
            sum(copied_claims) AS c, sum(student_wrong_claims) AS w,
            countIf(teacher_fact_error = 1) AS te, countIf(copied_claims > 0) AS wc,
            groupArraySortedStateIf(5)((-toUnixTimestamp64Milli(ts), request_id), copied_claims > 0)
                AS recent
        FROM $table FINAL
        WHERE $period AND (student_wrong_claims > 0 OR teacher_wrong_claims > 0) AND $slice_filter
        GROUP BY slice_json, reference_intent, freshness, multi_intent
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
    # One scan, two grouping sets (each row's latencies sketched once per set): per combination
    # of slice attributes, keyed by slice_json alone (one dictionary-encoded column), and per
    # combination of freshness, multi_intent and reference intent, keyed by one UInt64 summed
    # from their hashes (hashed on each part's small dictionary; two combinations merge only if
    # the sums collide, ~2^-64 a pair). Grouping by the three columns themselves cost 17 % more
    # of the whole query over 10M rows (bench/bench_forensics.py). Then merged per slice name.
    """SELECT slice, requests, student_errors, teacher_errors,
    sq[1] AS student_p50_ms, sq[2] AS student_p95_ms, sq[3] AS student_p99_ms,
    tq[1] AS teacher_p50_ms, tq[2] AS teacher_p95_ms, tq[3] AS teacher_p99_ms
FROM (
    SELECT sl AS slice, sum(n) AS requests, sum(s_err) AS student_errors, sum(t_err) AS teacher_errors,
        quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(s_lat) AS sq, quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(t_lat) AS tq
    FROM (
        SELECT if(by_attrs, arrayConcat(['all'], $slice_pairs),
                  arrayConcat(['freshness=' || fresh, if(multi = 1, 'multi_intent=true', 'multi_intent=false')],
                              if(intent = '', [],
                                 ['intent=' || intent,
                                  if(has({high_risk:Array(String)}, intent), 'risk=high', 'risk=normal')])))
                   AS names, n, s_err, t_err, s_lat, t_lat
        FROM (
            SELECT grouping(slice_json) = 0 AS by_attrs, slice_json,
                any(freshness) AS fresh, any(multi_intent) AS multi, any(reference_intent) AS intent,
                count() AS n,
                countIf(student_present = 1 AND student_answered = 0) AS s_err,
                countIf(teacher_present = 1 AND teacher_answered = 0) AS t_err,
                quantilesDDState(0.01, 0.5, 0.95, 0.99)(student_latency_ms) AS s_lat,
                quantilesDDState(0.01, 0.5, 0.95, 0.99)(teacher_latency_ms) AS t_lat
            FROM $table FINAL
            WHERE $period AND $slice_filter
            GROUP BY GROUPING SETS (
                (slice_json),
                (3 * cityHash64(freshness) + 5 * cityHash64(reference_intent) + multi_intent))
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
