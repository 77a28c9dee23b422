"""The forensics bundle of an alert: ready SQL for its window and slice, example request ids,
and the Kafka offsets to replay (DESIGN §6).

The SQL is text an engineer pastes into ``distillwatch sql``, so values are written as
escaped literals rather than bound parameters. Slices map onto ``shadow_evaluations``
columns: attributes onto the ``slice`` map, the derived slices onto the columns they come
from (``intent=`` and ``risk=`` onto ``reference_intent``, ``freshness=`` onto
``freshness``, ``multi_intent=`` onto ``multi_intent``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from streams.clickhouse import Store

EXAMPLES = 5


def literal(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def slice_condition(slice_key: str, high_risk: Collection[str]) -> str:
    """A WHERE fragment selecting the requests of one slice (``all`` selects every request)."""
    if slice_key == "all":
        return "1"
    parts = []
    for pair in slice_key.split(","):
        key, _, value = pair.partition("=")
        if key == "intent":
            parts.append(f"reference_intent = {literal(value)}")
        elif key == "risk":
            op = "IN" if value == "high" else "NOT IN"
            classes = ", ".join(literal(c) for c in sorted(high_risk))
            parts.append(f"reference_intent != '' AND reference_intent {op} ({classes})")
        elif key == "freshness":
            parts.append(f"freshness = {literal(value)}")
        elif key == "multi_intent":
            parts.append(f"multi_intent = {1 if value == 'true' else 0}")
        else:
            parts.append(f"slice[{literal(key)}] = {literal(value)}")
    return " AND ".join(parts)


def suspect_condition(metric: str) -> str:
    """Which requests of the slice show the failure the metric measures."""
    base = metric.split(".", 1)
    if base[0] in ("recall", "teacher_recall") and len(base) == 2:
        cls = literal(base[1])
        model = "student" if base[0] == "recall" else "teacher"
        return f"reference_intent = {cls} AND {model}_intent != {cls}"
    if metric.startswith("precision.") or metric == "escalation_recall":
        return "student_correct = 0"
    return {
        "copied_error_overlap": "copied_claims > 0",
        "student_fact_error_rate": "student_fact_error = 1",
        "teacher_fact_error_rate": "teacher_fact_error = 1",
        "hallucination_rate": "(student_fact_error = 1 OR student_unknown_entity = 1)",
        "confident_error_rate": "student_correct = 0 AND student_top1 >= 0.8",
        "ece": "student_correct = 0 AND student_top1 >= 0.8",
        "brier": "student_correct = 0",
        "fallback_rate": "fallback = 1",
        "fallback_rate_naive": "fallback_naive = 1",
        "cost_per_1k_usd": "fallback = 1",
        "projected_daily_cost_usd": "fallback = 1",
        "grounded_gap": "(student_fact_error = 1 OR student_unknown_entity = 1 OR retrieval_miss = 1)",
        "student_grounded_rate": "(student_fact_error = 1 OR student_unknown_entity = 1 OR retrieval_miss = 1)",
        "teacher_match": "teacher_intent != student_intent AND teacher_answered AND student_answered",
        "missing_response_rate": "student_answered = 0",
        "teacher_missing_response_rate": "teacher_answered = 0",
        "retrieval_miss_rate": "retrieval_miss = 1",
    }.get(metric, "student_correct = 0" if "latency" not in metric else "1")


@dataclass(frozen=True)
class Evidence:
    forensics_sql: str
    example_request_ids: tuple[str, ...]
    replay_offsets: str


class EvidenceFinder:
    """Builds the bundle for (metric, slice, window) from ``shadow_evaluations``."""

    def __init__(self, store: Store, high_risk: Collection[str], requests_topic: str) -> None:
        self.store = store
        self.high_risk = tuple(high_risk)
        self.requests_topic = requests_topic

    def where(self, metric: str, slice_key: str, window_start: int, window_s: int) -> str:
        return (f"ts >= toDateTime64({window_start}, 3, 'UTC') "
                f"AND ts < toDateTime64({window_start + window_s}, 3, 'UTC') "
                f"AND {slice_condition(slice_key, self.high_risk)}")

    def forensics_sql(self, metric: str, slice_key: str, window_start: int, window_s: int) -> str:
        order = "student_latency_ms DESC" if "latency" in metric else "ts"
        return (
            "SELECT request_id, ts, slice, reference_intent, teacher_intent, student_intent, "
            "student_top1, student_fact_error, copied_claims, fallback, student_latency_ms, "
            "kafka_partition, kafka_offset "
            f"FROM {self.store.database}.shadow_evaluations FINAL "
            f"WHERE {self.where(metric, slice_key, window_start, window_s)} "
            f"AND {suspect_condition(metric)} ORDER BY {order} LIMIT 100"
        )

    def find(self, metric: str, slice_key: str, window_start: int, window_s: int) -> Evidence:
        sql = self.forensics_sql(metric, slice_key, window_start, window_s)
        where = self.where(metric, slice_key, window_start, window_s)
        db = self.store.database
        examples = self.store.query(
            f"SELECT request_id FROM {db}.shadow_evaluations FINAL WHERE {where} "
            f"AND {suspect_condition(metric)} ORDER BY ts, request_id LIMIT {EXAMPLES}"
        ).result_rows
        offsets = self.store.query(
            f"SELECT kafka_partition, min(kafka_offset), max(kafka_offset) "
            f"FROM {db}.shadow_evaluations WHERE {where} AND kafka_offset >= 0 "
            "GROUP BY kafka_partition ORDER BY kafka_partition"
        ).result_rows
        return Evidence(sql, tuple(str(r[0]) for r in examples), replay_text(self.requests_topic, offsets))


def replay_text(topic: str, offsets: list[Any]) -> str:
    """``shadow.requests[3]=1200..1450, …``: the input range of the window, per partition."""
    return ", ".join(f"{topic}[{p}]={lo}..{hi}" for p, lo, hi in offsets)
