"""Synthetic MangaAssist rows generated inside ClickHouse, for the forensics benchmark and the
report tests: ``shadow_evaluations`` from ``numbers()``, then payload samples, window metrics
aggregated from those rows, and a few alerts.

Every random draw is ``cityHash64(number, seed, k)`` scaled to [0, 1): the same seed gives the
same rows, and ClickHouse generates 10M rows in seconds without Python in the loop. The world
is plausible rather than exact: the student is worse on ``region=br`` (the slice the alerts
name), teacher fact errors are copied by the student 70 % of the time, and about 1 % of the
requests are re-emitted with a higher version (a late human label), so readers must use FINAL.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from schemas.labelsets import MANGAASSIST_HIGH_RISK, MANGAASSIST_INTENTS
from streams.alerting.notification import Notification, alert_id_for
from streams.clickhouse import Store

INTENT_SHARES = (0.30, 0.25, 0.18, 0.12, 0.05, 0.03, 0.02, 0.03, 0.02)
RELABELLED_PERCENT = 1


@dataclass(frozen=True)
class World:
    start: datetime
    span_s: int
    rows: int
    seed: int = 7


def _u(k: int, seed: int) -> str:
    return f"(cityHash64(number, {seed}, {k}) % 1000000) / 1000000.0"


def _pick(u: str, names: tuple[str, ...], shares: tuple[float, ...]) -> str:
    parts, acc = [], 0.0
    for name, share in zip(names[:-1], shares[:-1], strict=True):
        acc += share
        parts.append(f"{u} < {acc:.6f}, '{name}'")
    return f"multiIf({', '.join(parts)}, '{names[-1]}')"


def _array(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


def _select(world: World, version: int, where: str) -> str:
    s, n = world.seed, world.rows
    start_ms = int(world.start.timestamp() * 1000)
    span_ms = world.span_s * 1000
    intents = _array(MANGAASSIST_INTENTS)
    high = _array(MANGAASSIST_HIGH_RISK)
    u = {k: _u(k, s) for k in range(1, 25)}
    region = _pick(u[1], ("us", "eu", "jp", "br"), (0.45, 0.25, 0.20, 0.10))
    device = _pick(u[2], ("ios", "android", "web", "android-lowmem"), (0.35, 0.35, 0.25, 0.05))
    language = _pick(u[3], ("en", "ja", "es", "pt"), (0.6, 0.25, 0.1, 0.05))
    reference = _pick(u[4], MANGAASSIST_INTENTS, INTENT_SHARES)
    # Wrong answers pick another class: the reference's position shifted by 1..8.
    other = f"{intents}[((indexOf({intents}, reference_intent) - 1 + 1 + toUInt32({u[7]} * 8)) % 9) + 1]"
    return f"""
SELECT
    concat('r', leftPad(toString(number), 9, '0')) AS request_id,
    fromUnixTimestamp64Milli(toInt64({start_ms} + intDiv(number * {span_ms}, {n})), 'UTC') AS ts,
    map('region', {region}, 'device', {device}, 'language', {language}) AS slice,
    lower(hex(SHA256(request_id))) AS prompt_hash,
    'manga-teacher-xl' AS teacher_model, 't-2026.10' AS teacher_version,
    'manga-student-s' AS student_model, 's-2026.10' AS student_version,
    1 AS teacher_present, toUInt8({u[5]} >= 0.003) AS teacher_answered,
    1 AS student_present, toUInt8({u[6]} >= 0.005) AS student_answered,
    if(teacher_answered, '', 'timeout') AS teacher_error,
    if(student_answered, '', 'timeout') AS student_error,
    {reference} AS reference_intent,
    {"'human'" if version > 1 else "'request'"} AS reference_source,
    reference_intent AS production_reference,
    if(teacher_answered, if({u[8]} < 0.95, reference_intent, {other}), '') AS teacher_intent,
    if(student_answered,
       if({u[9]} < if(slice['region'] = 'br', 0.70, 0.91), reference_intent, {other}), '')
       AS student_intent,
    if(teacher_answered, toFloat32(0.5 + 0.5 * {u[10]}), NULL) AS teacher_top1,
    if(teacher_answered, toFloat32((1 - teacher_top1) * 0.8 * {u[11]}), NULL) AS teacher_top2,
    if(student_answered,
       toFloat32(if(student_intent = reference_intent, 0.45 + 0.55 * sqrt({u[12]}),
                    0.3 + 0.69 * {u[12]})), NULL) AS student_top1,
    if(student_answered, toFloat32(least(student_top1, (1 - student_top1) * (0.3 + 0.7 * {u[13]}))),
       NULL) AS student_top2,
    if(student_answered, student_top1 - student_top2, NULL) AS student_margin,
    if(teacher_answered, toUInt8(teacher_intent = reference_intent), NULL) AS teacher_correct,
    if(student_answered, toUInt8(student_intent = reference_intent), NULL) AS student_correct,
    toUInt8(teacher_answered AND {u[14]} < 0.5) AS teacher_checkable,
    toUInt8(student_answered AND {u[14]} < 0.5) AS student_checkable,
    toUInt16(teacher_checkable AND {u[15]} < 0.02) AS teacher_wrong_claims,
    toUInt16(student_checkable AND (({u[15]} < 0.02 AND {u[16]} < 0.7) OR {u[17]} < 0.008))
        AS student_wrong_claims,
    toUInt8(teacher_wrong_claims > 0) AS teacher_fact_error,
    toUInt8(student_wrong_claims > 0) AS student_fact_error,
    toUInt16(if(teacher_wrong_claims > 0 AND student_wrong_claims > 0 AND {u[16]} < 0.7, 1, 0))
        AS copied_claims,
    0 AS teacher_unknown_entity,
    toUInt8(student_answered AND {u[18]} < 0.003) AS student_unknown_entity,
    toUInt8(teacher_wrong_claims = 0) AS teacher_all_claims_correct,
    toUInt8(student_wrong_claims = 0 AND student_unknown_entity = 0) AS student_all_claims_correct,
    0 AS replica_answered, '' AS replica_intent,
    toUInt8({u[19]} < 0.6) AS names_entity,
    if(names_entity, toFloat32(500 * {u[20]} * {u[20]}), NULL) AS title_age_days,
    toUInt8(names_entity AND title_age_days <= 60) AS new_title,
    toUInt8(names_entity AND {u[21]} < if(new_title, 0.25, 0.04)) AS retrieval_miss,
    toUInt8(student_answered AND (student_top1 < 0.72 OR student_margin < 0.08
        OR has({high}, student_intent))) AS fallback,
    toUInt8(student_answered AND student_top1 < 0.80) AS fallback_naive,
    if(student_answered AND NOT fallback, 0.0002, 0.003) AS cost_usd,
    toFloat32(300 + 2500 * {u[22]} * {u[22]}) AS teacher_latency_ms,
    toFloat32(if(slice['device'] = 'android-lowmem', 120, 40) + 400 * pow({u[23]}, 3))
        AS student_latency_ms,
    if(new_title, 'new', 'established') AS freshness,
    toFloat32(30 + (toUnixTimestamp(ts) - {start_ms // 1000}) / 86400) AS dataset_age_days,
    toUInt8({u[24]} < 0.07) AS multi_intent,
    '[]' AS labels,
    0 AS late,
    toInt32(cityHash64(request_id) % 6) AS kafka_partition,
    toInt64(number) AS kafka_offset,
    {version} AS version
FROM numbers({n})
{where}
"""


COLUMNS = (
    "request_id, ts, slice, prompt_hash, teacher_model, teacher_version, student_model, "
    "student_version, teacher_present, teacher_answered, student_present, student_answered, "
    "teacher_error, student_error, reference_intent, reference_source, production_reference, "
    "teacher_intent, student_intent, teacher_top1, teacher_top2, student_top1, student_top2, "
    "student_margin, teacher_correct, student_correct, teacher_checkable, student_checkable, "
    "teacher_wrong_claims, student_wrong_claims, teacher_fact_error, student_fact_error, "
    "copied_claims, teacher_unknown_entity, student_unknown_entity, teacher_all_claims_correct, "
    "student_all_claims_correct, replica_answered, replica_intent, names_entity, title_age_days, "
    "new_title, retrieval_miss, fallback, fallback_naive, cost_usd, teacher_latency_ms, "
    "student_latency_ms, freshness, dataset_age_days, multi_intent, labels, late, "
    "kafka_partition, kafka_offset, version"
)


def fill_evaluations(store: Store, world: World) -> None:
    """``world.rows`` requests, plus a higher version of about 1 % of them."""
    db = store.database
    store.command(f"INSERT INTO {db}.shadow_evaluations ({COLUMNS}) {_select(world, 1, '')}")
    relabel = f"WHERE cityHash64(number, {world.seed}, 99) % 100 < {RELABELLED_PERCENT}"
    store.command(f"INSERT INTO {db}.shadow_evaluations ({COLUMNS}) {_select(world, 2, relabel)}")


def fill_payloads(store: Store) -> None:
    """Redacted-payload samples: 0.4 % of requests, plus 1 % of the wrong ones."""
    db = store.database
    store.command(f"""
INSERT INTO {db}.shadow_payloads (request_id, ts, sample_reason, slice, prompt_redacted,
    teacher_answer_redacted, student_answer_redacted, teacher_probs, student_probs)
SELECT request_id, ts, if(cityHash64(request_id, 1) % 1000 < 4, 'sample', 'forensic'), slice,
    concat('where is my order [ORDER_ID] for ', reference_intent),
    concat('teacher says ', teacher_intent), concat('student says ', student_intent),
    if(teacher_answered, map(teacher_intent, assumeNotNull(teacher_top1)), map()),
    if(student_answered, map(student_intent, assumeNotNull(student_top1)), map())
FROM {db}.shadow_evaluations FINAL
WHERE cityHash64(request_id, 1) % 1000 < 4 OR (student_correct = 0 AND cityHash64(request_id, 2) % 100 = 0)
""")


_RATES = {
    # metric: (numerator, denominator) over the rows of one window × slice
    "accuracy": ("countIf(student_correct = 1)", "countIf(student_correct IS NOT NULL)"),
    "teacher_accuracy": ("countIf(teacher_correct = 1)", "countIf(teacher_correct IS NOT NULL)"),
    "teacher_match": ("countIf(teacher_answered AND student_answered AND teacher_intent = student_intent)",
                      "countIf(teacher_answered AND student_answered)"),
    "fallback_rate": ("countIf(student_answered AND fallback = 1)", "countIf(student_answered = 1)"),
    "hallucination_rate": ("countIf(student_answered AND (student_wrong_claims > 0 OR student_unknown_entity > 0))",
                           "countIf(student_answered = 1)"),
    "student_fact_error_rate": ("countIf(student_fact_error = 1)", "countIf(student_checkable = 1)"),
    "teacher_fact_error_rate": ("countIf(teacher_fact_error = 1)", "countIf(teacher_checkable = 1)"),
    "copied_error_overlap": ("sum(copied_claims)", "sum(student_wrong_claims)"),
    "confident_error_rate": ("countIf(student_top1 >= 0.8 AND student_correct = 0)",
                             "countIf(student_correct IS NOT NULL)"),
    "retrieval_miss_rate": ("countIf(retrieval_miss = 1)", "countIf(names_entity = 1)"),
    "missing_response_rate": ("countIf(student_answered = 0)", "count()"),
}
_VALUES = {
    "student_latency_p95": "quantile(0.95)(student_latency_ms)",
    "teacher_latency_p95": "quantile(0.95)(teacher_latency_ms)",
    "ece": "sum(abs(toFloat64(student_correct) - student_top1)) / greatest(countIf(student_correct IS NOT NULL), 1) / 4",
}


def fill_window_metrics(store: Store, window_s: int = 3600) -> None:
    """Per window × slice rates aggregated from the rows, in the window_metrics shape."""
    db = store.database
    tuples = [f"('{m}', toFloat64({num}), toFloat64({den}))" for m, (num, den) in _RATES.items()]
    tuples += [f"('{m}', toFloat64({expr}), CAST(NULL, 'Nullable(Float64)'))" for m, expr in _VALUES.items()]
    tuples.append("('support', toFloat64(count()), CAST(NULL, 'Nullable(Float64)'))")
    store.command(f"""
INSERT INTO {db}.window_metrics (window_start, window_end, window_s, slice, metric, value,
    numerator, denominator, support, ci_low, ci_high, version)
SELECT w, w + {window_s}, {window_s}, sl, metric,
    if(den IS NULL, num, num / den), if(den IS NULL, NULL, num), den, n,
    if(den IS NULL, NULL, (p + z * z / (2 * den) - z * sqrt(p * (1 - p) / den + z * z / (4 * den * den)))
                          / (1 + z * z / den)) AS ci_low,
    if(den IS NULL, NULL, (p + z * z / (2 * den) + z * sqrt(p * (1 - p) / den + z * z / (4 * den * den)))
                          / (1 + z * z / den)) AS ci_high,
    1
FROM (
    SELECT w, sl, n, m.1 AS metric, m.2 AS num, m.3 AS den, num / den AS p, 1.959964 AS z
    FROM (
        SELECT toStartOfInterval(ts, INTERVAL {window_s} SECOND) AS w, sl, count() AS n,
            [{', '.join(tuples)}] AS ms
        FROM {db}.shadow_evaluations FINAL
        ARRAY JOIN arrayConcat(['all'], arrayMap((k, v) -> concat(k, '=', v), mapKeys(slice), mapValues(slice)),
                               ['freshness=' || freshness]) AS sl
        GROUP BY w, sl
    )
    ARRAY JOIN ms AS m
)
WHERE den IS NULL OR den > 0
""")


ALERTS = (
    # rule (as in evaluators/default_rules.yaml), slice, metric, value, threshold, op, severity,
    # start hour, end hour (None: still firing)
    ("safety_escalation_recall_low", "region=br", "recall.safety_escalation", 0.78, 0.90, "<", "critical", 2, 4),
    ("copied_teacher_errors", "region=br", "copied_error_overlap", 0.66, 0.5, ">", "warning", 3, None),
    ("student_latency_over_budget", "device=android-lowmem", "student_latency_p95", 510.0, 400.0, ">", "warning",
     5, 6),
    ("fallback_over_plan", "all", "fallback_rate", 0.31, 0.15, ">", "warning", 7, None),
)


def alert_rows(world: World) -> list[dict[str, Any]]:
    """Rows as the alerter writes them: a firing row, and a resolved row once resolved."""
    start, hour, end = int(world.start.timestamp()), 3600, int(world.start.timestamp()) + world.span_s
    rows = []
    for rule, sl, metric, value, threshold, op, severity, begin_h, end_h in ALERTS:
        begins = start + begin_h * hour
        if begins >= end:
            continue
        fired = Notification(
            alert_id=alert_id_for(f"{rule}/{sl}", "firing", begins, hour), fingerprint=f"{rule}/{sl}",
            status="firing", rule=rule, slice=sl, severity=severity, metric=metric, value=value,
            threshold=threshold, op=op, window_start=begins, window_s=hour, starts_at=float(begins),
            summary=f"{metric} = {value} {op} {threshold} on {sl}",
            forensics_sql=f"SELECT request_id FROM distillwatch.shadow_evaluations WHERE ts >= {begins}",
            example_request_ids=("r000000001", "r000000002"), replay_offsets="shadow.requests[0]=0..10")
        events = [fired]
        if end_h is not None and start + end_h * hour < end:
            at = start + end_h * hour
            events.append(replace(fired, alert_id=alert_id_for(fired.fingerprint, "resolved", at, hour),
                                  status="resolved", ends_at=float(at), value=None, window_start=at,
                                  summary=f"resolved: {metric} on {sl}"))
        for n in events:
            created = n.ends_at if n.ends_at is not None else n.starts_at
            rows.append({
                "alert_id": n.alert_id, "fingerprint": n.fingerprint, "rule": n.rule, "slice": n.slice,
                "status": n.status, "severity": n.severity, "metric": n.metric, "value": n.value,
                "threshold": n.threshold, "window_start": datetime.fromtimestamp(n.window_start, UTC),
                "window_s": n.window_s, "starts_at": datetime.fromtimestamp(n.starts_at, UTC),
                "ends_at": None if n.ends_at is None else datetime.fromtimestamp(n.ends_at, UTC),
                "evidence": n.to_json(), "created_at": datetime.fromtimestamp(created, UTC),
            })
    return rows


def fill_alerts(store: Store, world: World) -> list[dict[str, Any]]:
    """The alerts of :data:`ALERTS` that start within the world's span; returns the rows."""
    rows = alert_rows(world)
    if rows:
        columns = list(rows[0])
        store.insert("alerts", [[r[c] for c in columns] for r in rows], columns)
    return rows


def fill(store: Store, world: World) -> None:
    """Every table the forensics queries and the report read."""
    fill_evaluations(store, world)
    fill_payloads(store)
    fill_window_metrics(store)
    fill_alerts(store, world)
