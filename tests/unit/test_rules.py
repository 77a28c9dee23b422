"""Alert rules (DESIGN §6): loading, the Wilson and Benjamini–Hochberg tests, and the tracker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from distillwatch.cli.alerting import firing_line, summary_line
from evaluators.alert_tracker import RuleTracker, Transition
from evaluators.breaches import Breach, benjamini_hochberg, evaluate_window
from evaluators.intervals import wilson
from evaluators.judge import judge_rows
from evaluators.readout import MetricRow
from evaluators.rule_syntax import METRICS, PER_CLASS
from evaluators.rules import RuleSet
from schemas.errors import ConfigError

W = 60
T0 = 1_793_491_200  # 2026-11-01T00:00:00Z, a multiple of 60


def rate_row(slice_key: str, metric: str, num: float, den: float, support: int = 1000,
             start: int = T0) -> MetricRow:
    lo, hi = wilson(num, den)
    return MetricRow(start, start + W, W, slice_key, metric, num / den, num, den, support, lo, hi)


def plain_row(slice_key: str, metric: str, value: float, support: int = 1000, start: int = T0) -> MetricRow:
    return MetricRow(start, start + W, W, slice_key, metric, value, None, None, support, None, None)


def one_rule(**fields: object) -> RuleSet:
    rule = {"name": "r", "metric": "confident_error_rate", "condition": "> 0.05"} | fields
    return RuleSet.from_data({"rules": [rule]})


# --- loading ------------------------------------------------------------------------------


def test_default_rules_cover_design_section_6() -> None:
    rules = RuleSet.load()
    by_metric = {r.metric: r for r in rules.rules}
    assert set(by_metric) == {
        "recall.safety_escalation", "recall.payment_dispute", "copied_error_overlap", "ece",
        "confident_error_rate", "fallback_rate", "grounded_gap", "student_latency_p95", "teacher_match",
    }
    expect = {"recall.safety_escalation": ("<", 0.90), "recall.payment_dispute": ("<", 0.85),
              "copied_error_overlap": (">", 0.5), "ece": (">", 0.10),
              "confident_error_rate": (">", 0.05), "fallback_rate": (">", 0.15),
              "grounded_gap": (">", 0.10), "student_latency_p95": (">", 300.0),
              "teacher_match": ("<", 0.77)}
    for metric, (op, threshold) in expect.items():
        assert by_metric[metric].condition.op == op
        assert by_metric[metric].condition.threshold == pytest.approx(threshold)
    copied = by_metric["copied_error_overlap"].also
    assert copied is not None and copied.metric == "student_fact_error_rate"
    assert copied.condition.threshold == pytest.approx(0.008)
    assert by_metric["grounded_gap"].selects("freshness=new")
    assert not by_metric["grounded_gap"].selects("freshness=established")
    assert all(r.min_support == 200 and r.for_windows == 2 for r in rules.rules)
    assert rules.fdr == 0.05
    for r in rules.rules:
        assert r.metric in METRICS or PER_CLASS.fullmatch(r.metric)


def test_planned_fallback_rate_comes_from_the_caller() -> None:
    rules = RuleSet.load(None, {"planned_fallback_rate": 0.12})
    fallback = next(r for r in rules.rules if r.metric == "fallback_rate")
    assert fallback.condition.threshold == pytest.approx(0.18)
    assert not fallback.selects("intent=payment_dispute") and not fallback.selects("risk=high")
    assert fallback.selects("risk=normal") and fallback.selects("region=eu")


def test_a_rules_file_with_references_and_slice_budgets(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "references: {budget: 250}\n"
        "rules:\n"
        "  - name: latency\n"
        "    metric: student_latency_p95\n"
        "    slices: ['region=*', all]\n"
        "    condition: '> budget'\n"
        "    slice_thresholds: {'region=br,*': 600, 'region=br': 500}\n"
        "    for: 1\n", encoding="utf-8")
    rule = RuleSet.load(path).rules[0]
    assert rule.condition_for("all").threshold == 250
    assert rule.condition_for("region=br").threshold == 500
    assert rule.condition_for("region=br,device=ios").threshold == 600
    assert rule.selects("all") and rule.selects("region=eu") and not rule.selects("device=ios")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"treshold": 0.1}, "treshold"),
        ({"condition": ">= 0.05"}, "condition"),
        ({"condition": "= 0.05"}, "condition"),
        ({"condition": "> nonsense_ref"}, "condition"),
        ({"for": -1}, "for"),
        ({"for": 0}, "for"),
        ({"min_support": 1.5}, "min_support"),
        ({"metric": "confident_eror_rate"}, "metric"),
        ({"severity": "urgent"}, "severity"),
        ({"actions": ["page", "email"]}, "actions"),
        ({"cooldown_s": -5}, "cooldown_s"),
        ({"also": {"metric": "ece"}}, "also"),
        ({"also": {"metric": "ece", "condition": "!= 1"}}, "also.condition"),
        ({"slices": 3}, "slices"),
    ],
)
def test_bad_rules_are_rejected_naming_rule_and_key(change: dict[str, object], key: str) -> None:
    rule = {"name": "bad_rule", "metric": "confident_error_rate", "condition": "> 0.05"} | change
    with pytest.raises(ConfigError) as info:
        RuleSet.from_data({"rules": [rule]})
    message = str(info.value)
    assert "'bad_rule'" in message and f"key {key!r}" in message


def test_bad_files_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read rules file"):
        RuleSet.load(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RuleSet.load(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="unknown top-level key 'rule'"):
        RuleSet.from_data({"rule": []})
    with pytest.raises(ConfigError, match="unique"):
        RuleSet.from_data({"rules": [{"name": "a", "metric": "ece", "condition": "> 1"}] * 2})
    with pytest.raises(ConfigError, match="'fdr'"):
        RuleSet.from_data({"rules": [], "fdr": 1.5})


# --- one window -----------------------------------------------------------------------------


def test_value_beyond_threshold_is_not_enough_the_interval_must_be() -> None:
    rules = one_rule()
    crossing = rate_row("region=eu", "confident_error_rate", 8, 100, support=300)  # 0.08, CI ~[0.04, 0.15]
    assert crossing.value > 0.05 and crossing.ci_low is not None and crossing.ci_low < 0.05
    assert evaluate_window([crossing], rules) == []
    clear = rate_row("region=eu", "confident_error_rate", 80, 1000, support=1000)  # CI ~[0.065, 0.098]
    (breach,) = evaluate_window([clear], rules)
    assert (breach.rule, breach.slice, breach.op, breach.threshold) == ("r", "region=eu", ">", 0.05)
    assert breach.p_value is not None and breach.p_value < 0.025


def test_below_direction_and_min_support() -> None:
    rules = one_rule(metric="recall.safety_escalation", condition="< 0.90")
    assert evaluate_window([rate_row("all", "recall.safety_escalation", 60, 100)], rules)
    assert not evaluate_window([rate_row("all", "recall.safety_escalation", 60, 100, support=199)], rules)
    assert not evaluate_window([rate_row("all", "recall.safety_escalation", 85, 100)], rules)


def test_metrics_without_interval_breach_on_value() -> None:
    rules = one_rule(metric="ece", condition="> 0.10")
    assert evaluate_window([plain_row("all", "ece", 0.11)], rules)
    assert not evaluate_window([plain_row("all", "ece", 0.10)], rules)  # strict
    assert not evaluate_window([plain_row("all", "ece", 0.5, support=100)], rules)


def test_also_condition_gates_on_the_same_slice() -> None:
    rules = RuleSet.load()
    copied = rate_row("region=jp", "copied_error_overlap", 30, 30)
    low_err = rate_row("region=jp", "student_fact_error_rate", 2, 1000)
    high_err = rate_row("region=jp", "student_fact_error_rate", 40, 1000)
    names = lambda rows: {b.rule for b in evaluate_window(rows, rules)}  # noqa: E731
    assert "copied_teacher_errors" not in names([copied])
    assert "copied_teacher_errors" not in names([copied, low_err])
    assert "copied_teacher_errors" in names([copied, high_err])


def test_rows_of_two_windows_are_refused() -> None:
    with pytest.raises(ValueError):
        evaluate_window([plain_row("all", "ece", 0.2), plain_row("all", "ece", 0.2, start=T0 + W)], one_rule())


def reference_bh(p: np.ndarray, q: float) -> np.ndarray:
    """Benjamini–Hochberg written independently: reject the k smallest, k = max{i: p_(i) ≤ iq/m}."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    below = np.nonzero(p[order] <= np.arange(1, m + 1) * q / m)[0]
    reject = np.zeros(m, dtype=bool)
    if len(below):
        reject[order[: below[-1] + 1]] = True
    return reject


def score_p(num: float, den: float, t: float) -> float:
    return float(norm.sf((num / den - t) / np.sqrt(t * (1 - t) / den)))


def check_against_reference(table: list[tuple[str, int, int]], threshold: float = 0.05) -> set[str]:
    rows = [rate_row(s, "confident_error_rate", k, n, support=n) for s, k, n in table]
    got = {b.slice for b in evaluate_window(rows, one_rule())}
    p = np.array([score_p(k, n, threshold) for _, k, n in table])
    bh = reference_bh(p, 0.05)
    interval = np.array([r.ci_low is not None and r.ci_low > threshold for r in rows])
    assert got == {s for (s, _, _), keep in zip(table, bh & interval) if keep}
    return got


def test_benjamini_hochberg_on_a_hand_built_table_of_45_slices() -> None:
    nulls = [(f"region=r{i:02d}", 20 + (i % 7), 500) for i in range(40)]  # 4–5.2 %: healthy
    strong = [("device=a", 60, 500), ("device=b", 70, 600), ("device=c", 50, 400)]  # p < 1e-4
    marginal = [("device=m1", 35, 500), ("device=m2", 36, 500)]  # interval clear, p ~ 0.01-0.02
    got = check_against_reference(nulls + strong + marginal)
    assert got == {"device=a", "device=b", "device=c"}
    margin_rows = [rate_row(s, "confident_error_rate", k, n) for s, k, n in marginal]
    assert all(r.ci_low is not None and r.ci_low > 0.05 for r in margin_rows)  # BH removed them


@pytest.mark.parametrize("seed", range(8))
def test_benjamini_hochberg_on_random_tables(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = rng.integers(200, 3000, size=48)
    rate = np.where(rng.random(48) < 0.3, rng.uniform(0.05, 0.12, 48), rng.uniform(0.0, 0.05, 48))
    check_against_reference([(f"s={i}", int(k), int(m)) for i, (k, m) in enumerate(zip(rng.binomial(n, rate), n))])


@given(st.lists(st.floats(0, 1), min_size=1, max_size=60), st.sampled_from([0.01, 0.05, 0.2]))
def test_benjamini_hochberg_matches_reference(p: list[float], q: float) -> None:
    assert benjamini_hochberg(p, q) == reference_bh(np.array(p), q).tolist()


# --- across windows -------------------------------------------------------------------------


def breach(rule: str, slice_key: str, start: int) -> Breach:
    return Breach(rule, slice_key, start, W, "confident_error_rate", 0.2, ">", 0.05, 1000, 0.15, 0.25, 1e-9)


def run(tracker: RuleTracker, plan: list[list[str]], offset: int = 0) -> list[tuple[int, str, str]]:
    """Step window offset+i with breaches on the slices plan[i]; (window index, kind, slice) out."""
    out = []
    for i, slices in enumerate(plan, start=offset):
        start = T0 + i * W
        out += [(i, t.kind, t.slice) for t in tracker.step(start, [breach("r", s, start) for s in slices])]
    return out


def test_for_two_needs_two_consecutive_windows() -> None:
    tracker = RuleTracker(one_rule(), W)
    assert run(tracker, [["a"], [], ["a"], [], ["a"], ["a"]]) == [(5, "firing", "a")]
    tracker = RuleTracker(one_rule(cooldown_s=0, **{"for": 1}), W)
    assert run(tracker, [["a"], [], ["a"]]) == [(0, "firing", "a"), (1, "resolved", "a"), (2, "firing", "a")]


def test_a_skipped_window_breaks_the_streak() -> None:
    tracker = RuleTracker(one_rule(), W)
    assert tracker.step(T0, [breach("r", "a", T0)]) == []
    assert tracker.step(T0 + 2 * W, [breach("r", "a", T0 + 2 * W)]) == []
    (fired,) = tracker.step(T0 + 3 * W, [breach("r", "a", T0 + 3 * W)])
    assert fired.kind == "firing" and fired.fingerprint == "r/a" and fired.breach is not None


def test_resolve_and_cooldown() -> None:
    tracker = RuleTracker(one_rule(cooldown_s=300), W)
    plan = [["a", "b"], ["a", "b"], ["b"], ["a"], ["a"], ["a"], ["a"], ["a"], [], []]
    assert run(tracker, plan) == [
        (1, "firing", "a"), (1, "firing", "b"),
        (2, "resolved", "a"),
        (3, "resolved", "b"),
        (7, "firing", "a"),  # resolved at window 2; 300 s later is window 7
        (8, "resolved", "a"),
    ]
    assert tracker.firing == []


def test_replayed_windows_are_ignored() -> None:
    tracker = RuleTracker(one_rule(), W)
    run(tracker, [["a"], ["a"]])
    assert tracker.firing == [("r", "a")]
    assert tracker.step(T0 + W, []) == []  # already judged: no resolve, no repeat
    assert tracker.firing == [("r", "a")]


plans = st.lists(st.lists(st.sampled_from(["a", "b", "c"]), unique=True), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(plans, st.integers(0, 25), st.sampled_from([0, 60, 200]), st.integers(1, 3))
def test_tracker_state_round_trips_through_json(plan: list[list[str]], cut: int, cooldown: int, n_for: int) -> None:
    rules = one_rule(cooldown_s=cooldown, **{"for": n_for})
    whole = RuleTracker(rules, W)
    expected = run(whole, plan)
    first = RuleTracker(rules, W)
    head = run(first, plan[:cut])
    state = json.loads(json.dumps(first.to_dict()))
    restored = RuleTracker.from_dict(state, rules)
    assert restored.to_dict() == first.to_dict()
    assert head + run(restored, plan[cut:], offset=cut) == expected
    assert restored.to_dict() == whole.to_dict()


def test_judge_groups_rows_by_window_and_prints_lines() -> None:
    rules = one_rule()
    rows = [rate_row(s, "confident_error_rate", k, 1000, start=T0 + i * W)
            for i in range(3) for s, k in (("region=br", 200), ("region=us", 30))]
    transitions = judge_rows(rows, rules)
    assert [(t.kind, t.slice, t.window_start) for t in transitions] == [("firing", "region=br", T0 + W)]
    line = firing_line(transitions[0], rules)
    assert "2026-11-01T00:01:00Z" in line and "region=br" in line and "r:" in line
    assert "0.2 > 0.05" in line and "95% CI [0.1" in line
    assert summary_line(0) == "no alert would fire" and summary_line(1) == "1 alert would fire"
    assert summary_line(3) == "3 alerts would fire"
    assert isinstance(transitions[0], Transition)
