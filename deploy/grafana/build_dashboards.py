"""Writes the Grafana dashboards of the reference guide's five health groups.

    python deploy/grafana/build_dashboards.py        # rewrites deploy/grafana/dashboards/*.json

Traffic, quality, safety, data and training, each a dashboard over the distillwatch
ClickHouse tables (``window_metrics`` mostly: per window × slice × metric, so a panel reads a
few hundred rows whatever the traffic). Every query names its table as ``distillwatch.<t>``
and reads the newest version of a window (``FINAL``). Variables: ``window_s`` (60 or 3600)
and ``slice`` (``all`` by default). The JSON files are generated, not edited:
tests/integration/test_compose.py checks they match this script and that every query runs
against the real schema under the read-only profile.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DS = {"type": "grafana-clickhouse-datasource", "uid": "distillwatch-clickhouse"}
OUT = Path(__file__).resolve().parent / "dashboards"
HIGH_RISK = ("payment_dispute", "safety_escalation", "legal_complaint", "account_lockout", "refund_fraud")

WM = "distillwatch.window_metrics FINAL"
IN_RANGE = "window_s = ${window_s} AND $__timeFilter(window_start)"


def series(metrics: list[str], per_second: bool = False) -> str:
    """Long format (time, metric, value) for the selected slice: one line per metric."""
    value = "value / window_s" if per_second else "value"
    names = ", ".join(f"'{m}'" for m in metrics)
    return (f"SELECT window_start AS time, metric, {value} AS value FROM {WM} "
            f"WHERE {IN_RANGE} AND slice = '${{slice}}' AND metric IN ({names}) ORDER BY time, metric")


def by_slice(metric: str, prefix: str = "%", limit: int = 25) -> str:
    """One value per slice over the time range: Σ numerators / Σ denominators."""
    return (f"SELECT slice, sum(numerator) / sum(denominator) AS {metric.replace('.', '_')} FROM {WM} "
            f"WHERE {IN_RANGE} AND metric = '{metric}' AND slice LIKE '{prefix}' AND denominator > 0 "
            f"GROUP BY slice ORDER BY {metric.replace('.', '_')} DESC LIMIT {limit}")


def target(sql: str, table: bool) -> dict[str, Any]:
    return {"refId": "A", "datasource": DS, "editorType": "sql", "rawSql": sql,
            "format": 1 if table else 0, "queryType": "table" if table else "timeseries"}


class Board:
    def __init__(self, uid: str, title: str, description: str) -> None:
        self.uid, self.title, self.description = uid, title, description
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = 0

    def _place(self, w: int, h: int) -> dict[str, int]:
        if self.x + w > 24:
            self.x, self.y = 0, self.y + h
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        return pos

    def add(self, kind: str, title: str, sql: str, unit: str = "short", w: int = 12, h: int = 8,
            description: str = "", table: bool = False, **options: Any) -> None:
        panel: dict[str, Any] = {
            "id": len(self.panels) + 1, "type": kind, "title": title, "description": description,
            "datasource": DS, "gridPos": self._place(w, h), "targets": [target(sql, table or kind != "timeseries")],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        }
        if options:
            panel["options"] = options
        self.panels.append(panel)

    def json(self) -> dict[str, Any]:
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": ["distillwatch"], "timezone": "utc", "schemaVersion": 39, "version": 1,
            "editable": False, "refresh": "1m", "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": [
                {"name": "window_s", "label": "window (s)", "type": "custom", "query": "60,3600",
                 "current": {"text": "60", "value": "60"},
                 "options": [{"text": v, "value": v, "selected": v == "60"} for v in ("60", "3600")]},
                {"name": "slice", "label": "slice", "type": "query", "datasource": DS, "refresh": 2,
                 "query": f"SELECT DISTINCT slice FROM {WM} WHERE {IN_RANGE} ORDER BY slice = 'all' DESC, slice",
                 "current": {"text": "all", "value": "all"}},
            ]},
            "panels": self.panels,
        }


def traffic() -> Board:
    b = Board("distillwatch-traffic", "distillwatch · traffic health",
              "QPS, latency and teacher fallback (with its cost against plan) per window.")
    b.add("timeseries", "Requests per second", series(["support"], per_second=True), "reqps")
    b.add("timeseries", "Latency", series(["student_latency_p50", "student_latency_p95", "student_latency_p99",
                                           "teacher_latency_p95"]), "ms",
          description="Milliseconds over every present response, error responses included.")
    b.add("timeseries", "Teacher fallback rate", series(["fallback_rate", "fallback_rate_naive"]), "percentunit",
          description="Share of student answers routed to the teacher (plan: 10 %; the rule fires at 1.5× plan).")
    b.add("timeseries", "Daily cost: projected against plan",
          series(["projected_daily_cost_usd", "planned_daily_cost_usd"]), "currencyUSD")
    b.add("timeseries", "Missing responses", series(["missing_response_rate", "teacher_missing_response_rate"]),
          "percentunit")
    b.add("bargauge", "Student p95 latency by slice",
          f"SELECT slice, avg(value) AS student_latency_p95 FROM {WM} WHERE {IN_RANGE} "
          "AND metric = 'student_latency_p95' GROUP BY slice ORDER BY student_latency_p95 DESC LIMIT 25", "ms",
          description="Mean of the windows' p95 over the time range.", orientation="horizontal")
    return b


def quality() -> Board:
    b = Board("distillwatch-quality", "distillwatch · quality health",
              "Is the student still the teacher's equal, and is it making things up?")
    b.add("timeseries", "Teacher match, win rate, accuracy",
          series(["teacher_match", "student_win_rate", "accuracy", "teacher_accuracy"]), "percentunit")
    b.add("timeseries", "Hallucination and fact errors",
          series(["hallucination_rate", "student_fact_error_rate", "teacher_fact_error_rate"]), "percentunit")
    b.add("timeseries", "Copied teacher errors", series(["copied_error_overlap"]), "percentunit",
          description="Student wrong claims that repeat the teacher's wrong claim on the same request.")
    b.add("bargauge", "Factuality by slice: student fact error rate", by_slice("student_fact_error_rate"),
          "percentunit", orientation="horizontal")
    b.add("bargauge", "Accuracy by slice (lowest last)", by_slice("accuracy"), "percentunit",
          orientation="horizontal")
    b.add("timeseries", "Promotion score", series(["promotion_score"]), "short")
    return b


def safety() -> Board:
    b = Board("distillwatch-safety", "distillwatch · safety health",
              "Rare, costly classes: escalation recall, confident errors, and the alerts they raise.")
    b.add("timeseries", "Escalation recall by class",
          series(["escalation_recall"] + [f"recall.{c}" for c in HIGH_RISK]), "percentunit",
          description="Rules page below 0.90 (safety escalation) and 0.85 (payment dispute).")
    b.add("timeseries", "Confident errors", series(["confident_error_rate", "teacher_confident_error_rate"]),
          "percentunit", description="Student answers with top-1 ≥ 0.8 that are wrong.")
    b.add("timeseries", "Precision by class", series([f"precision.{c}" for c in HIGH_RISK]), "percentunit")
    b.add("stat", "Alerts firing now",
          "SELECT count() AS firing FROM (SELECT fingerprint, starts_at FROM distillwatch.alerts FINAL "
          "GROUP BY fingerprint, starts_at HAVING countIf(status = 'resolved') = 0)", "short", w=6)
    b.add("table", "Alert timeline",
          "SELECT starts_at, maxOrNull(ends_at) AS ended, any(rule) AS rule, any(slice) AS slice_, "
          "any(severity) AS severity, anyIf(value, status = 'firing') AS value, any(threshold) AS threshold, "
          "anyIf(JSONExtractString(evidence, 'summary'), status = 'firing') AS summary, "
          "anyIf(JSONExtractString(evidence, 'forensics_sql'), status = 'firing') AS forensics_sql "
          "FROM distillwatch.alerts FINAL WHERE $__timeFilter(starts_at) "
          "GROUP BY fingerprint, starts_at ORDER BY starts_at DESC LIMIT 200", "short", w=18, h=10,
          description="One row per episode; run `distillwatch forensics alert-timeline` for the evidence.")
    return b


def data() -> Board:
    b = Board("distillwatch-data", "distillwatch · data health",
              "Is the world drifting away from the student's training data?")
    b.add("timeseries", "Dataset age (days)", series(["dataset_age_days_p50", "dataset_age_days_p95"]), "d")
    b.add("timeseries", "New titles and retrieval misses", series(["new_title_share", "retrieval_miss_rate"]),
          "percentunit")
    b.add("timeseries", "Grounding: teacher, student and the gap",
          series(["teacher_grounded_rate", "student_grounded_rate", "grounded_gap"]), "percentunit",
          description="The new-titles rule fires when the gap on freshness=new exceeds 0.10.")
    b.add("table", "Slice coverage",
          f"SELECT slice, sum(value) AS requests, count() AS windows FROM {WM} WHERE {IN_RANGE} "
          "AND metric = 'support' GROUP BY slice ORDER BY requests DESC LIMIT 100", "short")
    b.add("timeseries", "Human-labelled share (review coverage)",
          "SELECT $__timeInterval(ts) AS time, countIf(reference_source = 'human') / count() AS human_labelled "
          "FROM distillwatch.shadow_evaluations FINAL WHERE $__timeFilter(ts) GROUP BY time ORDER BY time",
          "percentunit")
    b.add("timeseries", "Dead letters",
          "SELECT $__timeInterval(received_at) AS time, count() AS dead_letters FROM distillwatch.dead_letters "
          "FINAL WHERE $__timeFilter(received_at) GROUP BY time ORDER BY time", "short")
    return b


def training() -> Board:
    b = Board("distillwatch-training", "distillwatch · training health",
              "Calibration and rare-class recall in production, and what retraining produced.")
    b.add("timeseries", "Calibration", series(["ece", "teacher_ece", "brier"]), "short")
    b.add("timeseries", "Rare-class recall (student vs teacher)",
          series(["recall.safety_escalation", "teacher_recall.safety_escalation", "recall.payment_dispute",
                  "teacher_recall.payment_dispute"]), "percentunit")
    b.add("table", "Retrain jobs",
          "SELECT updated_at, job_id, model, status, launcher, output_dir FROM distillwatch.retrain_jobs FINAL "
          "WHERE $__timeFilter(updated_at) ORDER BY updated_at DESC LIMIT 50", "short")
    b.add("table", "Model versions",
          "SELECT created_at, model, model_version, job_id, promotion_score, "
          "JSONExtractFloat(metrics, 'calibration', 'ece_after') AS ece_after_scaling, "
          "JSONExtractFloat(metrics, 'final', 'recall.safety_escalation') AS safety_recall "
          "FROM distillwatch.model_versions FINAL ORDER BY created_at DESC LIMIT 20", "short")
    b.add("table", "KD and hard loss per epoch (latest model)",
          "SELECT JSONExtractInt(e, 'epoch') AS epoch, JSONExtractFloat(e, 'train', 'kd') AS kd_loss, "
          "JSONExtractFloat(e, 'train', 'ce') AS hard_loss, JSONExtractFloat(e, 'train', 'rare') AS rare_penalty, "
          "JSONExtractBool(e, 'improved') AS improved "
          "FROM (SELECT argMax(metrics, created_at) AS m FROM distillwatch.model_versions FINAL) "
          "ARRAY JOIN JSONExtractArrayRaw(m, 'epochs') AS e ORDER BY epoch", "short", w=24)
    return b


BOARDS = {"traffic": traffic, "quality": quality, "safety": safety, "data": data, "training": training}


def render_all() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {f"{name}.json": json.dumps(make().json(), indent=2, ensure_ascii=False) + "\n"
            for name, make in BOARDS.items()}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
