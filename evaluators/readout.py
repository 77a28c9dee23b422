"""Reading the metrics of DESIGN §5 out of a window state.

Each metric is a :class:`MetricValue` with numerator, denominator and, for proportions, a
95 % Wilson interval. A metric is present only where its denominator is > 0 (derived
metrics: where all their inputs are present).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.intervals import wilson
from evaluators.window_state import Layout, WindowState


@dataclass(frozen=True)
class MetricValue:
    metric: str
    value: float
    numerator: float | None = None
    denominator: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


def read_metrics(state: WindowState, layout: Layout) -> dict[str, MetricValue]:
    """Every metric that exists for this state, keyed by its contract name."""
    cfg = layout.config
    counts = state.counts
    n = {name: float(counts[i]) for name, i in layout.index.items()}
    out: dict[str, MetricValue] = {}

    def rate(metric: str, num: float, den: float) -> None:
        if den > 0:
            lo, hi = wilson(num, den)
            out[metric] = MetricValue(metric, num / den, num, den, lo, hi)

    def ratio(metric: str, num: float, den: float) -> None:
        if den > 0:
            out[metric] = MetricValue(metric, num / den, num, den)

    support = n["support"]
    if support > 0:
        out["support"] = MetricValue("support", support, support, None)

    rate("teacher_fact_error_rate", n["t_fact_err"], n["t_checkable"])
    rate("student_fact_error_rate", n["s_fact_err"], n["s_checkable"])
    rate("teacher_confident_error_rate", n["t_conf_fact_err"], support)
    rate("copied_error_overlap", n["copied_claims"], n["s_wrong_claims"])
    rate("hallucination_rate", n["s_halluc"], n["s_answers"])
    rate("retrieval_miss_rate", n["retrieval_miss"], n["entity_requests"])
    rate("teacher_match", n["match"], n["both_answered"])
    rate("student_win_rate", n["pref_score"], n["pref_n"])
    rate("accuracy", n["s_correct"], n["s_ref"])
    rate("teacher_accuracy", n["t_correct"], n["t_ref"])
    for c in cfg.high_risk:
        rate(f"recall.{c}", n[f"s_tp.{c}"], n[f"s_ref.{c}"])
        rate(f"teacher_recall.{c}", n[f"t_tp.{c}"], n[f"t_ref.{c}"])
        rate(f"precision.{c}", n[f"s_tp.{c}"], n[f"s_pred.{c}"])
    rate(
        "escalation_recall",
        sum(n[f"s_tp.{c}"] for c in cfg.high_risk),
        sum(n[f"s_ref.{c}"] for c in cfg.high_risk),
    )
    for prefix, metric, den in (("s", "ece", n["s_ref"]), ("t", "teacher_ece", n["t_ref"])):
        gap = counts[layout.bins(f"{prefix}_bin_correct")] - counts[layout.bins(f"{prefix}_bin_conf")]
        ratio(metric, float(np.abs(gap).sum()), den)
    ratio("brier", n["brier_sum"], n["s_ref"])
    rate("confident_error_rate", n["s_conf_err"], n["s_ref"])
    rate("fallback_rate", n["fallback"], n["s_answers"])
    rate("fallback_rate_naive", n["fallback_naive"], n["s_answers"])

    fallback = out.get("fallback_rate")
    if fallback is not None:
        lo, hi = fallback.ci_low, fallback.ci_high
        assert lo is not None and hi is not None
        per_1k = cfg.cost_per_1k
        low_first = cfg.teacher_cost_per_1k >= cfg.student_cost_per_1k
        a, b = (lo, hi) if low_first else (hi, lo)
        out["cost_per_1k_usd"] = MetricValue(
            "cost_per_1k_usd", per_1k(fallback.value), None, fallback.denominator, per_1k(a), per_1k(b)
        )
        daily = cfg.daily_cost
        out["projected_daily_cost_usd"] = MetricValue(
            "projected_daily_cost_usd", daily(fallback.value), None, fallback.denominator, daily(a),
            daily(b)
        )
        out["planned_daily_cost_usd"] = MetricValue(
            "planned_daily_cost_usd", daily(cfg.planned_fallback_rate), None, None
        )

    rate("new_title_share", n["new_title"], support)
    rate("teacher_grounded_rate", n["t_grounded"], n["t_answers"])
    rate("student_grounded_rate", n["s_grounded"], n["s_answers"])
    if "teacher_grounded_rate" in out and "student_grounded_rate" in out:
        gap_value = out["teacher_grounded_rate"].value - out["student_grounded_rate"].value
        out["grounded_gap"] = MetricValue("grounded_gap", gap_value)

    for metric, sketch, qs in (
        ("dataset_age_days", state.dataset_age, (50, 95)),
        ("teacher_latency", state.teacher_latency, (50, 95, 99)),
        ("student_latency", state.student_latency, (50, 95, 99)),
    ):
        if sketch.count > 0:
            for q in qs:
                value = sketch.quantile(q / 100)
                assert value is not None
                out[f"{metric}_p{q}"] = MetricValue(f"{metric}_p{q}", value, None, sketch.count)

    rate("missing_response_rate", n["s_missing"], support)
    rate("teacher_missing_response_rate", n["t_missing"], support)
    rate("teacher_self_agreement", n["replica_agree"], n["replica_both"])
    if "teacher_match" in out and "teacher_self_agreement" in out:
        excess = (1 - out["teacher_match"].value) - (1 - out["teacher_self_agreement"].value)
        out["excess_disagreement"] = MetricValue("excess_disagreement", excess)

    parts = ("teacher_match", "student_win_rate", "recall.safety_escalation", "hallucination_rate", "ece")
    if all(p in out for p in parts):
        v = {p: out[p].value for p in parts}
        score = (
            0.35 * v["teacher_match"] + 0.25 * v["student_win_rate"]
            + 0.20 * v["recall.safety_escalation"] - 0.10 * v["hallucination_rate"] - 0.10 * v["ece"]
        )
        out["promotion_score"] = MetricValue("promotion_score", score)
    return out


@dataclass(frozen=True)
class MetricRow:
    """One line of ``evaluate`` output and one row of ``window_metrics``."""

    window_start: int
    window_end: int
    window_s: int
    slice: str
    metric: str
    value: float
    numerator: float | None
    denominator: float | None
    support: int
    ci_low: float | None
    ci_high: float | None


def window_rows(start: int, size: int, states: dict[str, WindowState], layout: Layout) -> list[MetricRow]:
    """All metric rows of one closed window, slices and metrics in a stable order."""
    rows = []
    for slice_key in sorted(states):
        state = states[slice_key]
        support = int(state.counts[layout["support"]])
        for m in read_metrics(state, layout).values():
            rows.append(
                MetricRow(start, start + size, size, slice_key, m.metric, m.value,
                          m.numerator, m.denominator, support, m.ci_low, m.ci_high)
            )
    return rows
