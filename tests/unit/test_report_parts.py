"""The report's computations (no store) and figures (no browser): checked against numpy and
hand-made tables, and each figure is well-formed SVG that is drawn, or says it has no data."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from streams.forensics import command_for_alert, parse_slice, query_for_metric
from streams.report import plots
from streams.report.queries import Heatmap, Timeline, choose_window, ece_from_bins, heatmap_from, timelines_from

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def test_window_choice_keeps_at_least_twelve_points() -> None:
    assert choose_window([60, 3600], T0, T0 + timedelta(hours=24)) == 3600
    assert choose_window([60, 3600], T0, T0 + timedelta(hours=6)) == 60
    assert choose_window([3600, 60], T0, T0 + timedelta(minutes=5)) == 60


def test_ece_from_bins_equals_ece_from_the_answers() -> None:
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.2, 1.0, 5000)
    correct = (rng.uniform(size=5000) < conf ** 1.5).astype(float)
    idx = np.minimum((conf * 15).astype(int), 14)
    direct = sum(abs((correct[idx == b] - conf[idx == b]).sum()) for b in range(15)) / len(conf)
    bins = [{"answers": int((idx == b).sum()), "mean_confidence": conf[idx == b].mean(),
             "accuracy": correct[idx == b].mean()} for b in range(15) if (idx == b).any()]
    assert ece_from_bins(bins) == pytest.approx(direct, rel=1e-12)
    assert ece_from_bins([]) is None


def _row(sl: str, metric: str, num: float | None, den: float | None, weighted: float | None = None,
         total: float | None = None) -> dict[str, object]:
    return {"slice": sl, "metric": metric, "num": num, "den": den, "weighted": weighted, "total": total}


def test_heatmap_orders_slices_and_scores_them_against_all() -> None:
    rows = [
        _row("all", "support", 0, 0, total=1000), _row("region=br", "support", 0, 0, total=100),
        _row("region=us", "support", 0, 0, total=600),
        _row("all", "accuracy", 900, 1000), _row("region=br", "accuracy", 70, 100), _row("region=us", "accuracy", 570, 600),
        _row("all", "fallback_rate", 100, 1000), _row("region=br", "fallback_rate", 40, 100),
        _row("region=us", "fallback_rate", 48, 600),
        _row("all", "student_latency_p95", None, None, weighted=400.0),
    ]
    heat = heatmap_from(rows)
    assert heat.slices == ["all", "region=us", "region=br"] and heat.requests == [1000, 600, 100]
    assert heat.metrics == ["accuracy", "fallback_rate", "student_latency_p95"]
    assert heat.values[2][:2] == [0.7, 0.4] and heat.values[0][2] == 400.0 and heat.values[1][2] is None
    # br is the worst slice on both metrics: accuracy lower (bad) and fallback higher (bad)
    assert heat.deviation[2][0] == -1.0 and heat.deviation[2][1] == -1.0
    assert heat.deviation[1][0] == pytest.approx((0.95 - 0.9) / 0.2)  # better, scaled by the widest gap
    assert heat.deviation[1][1] == pytest.approx((0.1 - 0.08) / 0.3)
    assert heat.deviation[0] == [0.0, 0.0, 0.0]


def test_timelines_put_all_first_and_attach_the_metrics_alerts() -> None:
    rows = [{"metric": "accuracy", "slice": s, "window_start": T0 + timedelta(hours=h), "value": v,
             "ci_low": None, "ci_high": None}
            for s, h, v in (("region=br", 0, 0.7), ("all", 0, 0.9), ("all", 1, 0.91))]
    alert = {"metric": "accuracy", "slice": "region=br", "rule": "r", "starts_at": T0, "ends_at": None}
    (t,) = timelines_from(rows, [alert, dict(alert, metric="ece")], ["accuracy"])
    assert list(t.series) == ["all", "region=br"] and len(t.series["all"]) == 2
    assert t.alerts == [alert]


def test_each_alert_metric_leads_to_a_saved_query_and_one_command() -> None:
    assert query_for_metric("copied_error_overlap") == "copied-errors"
    assert query_for_metric("student_latency_p95") == "latency-by-slice"
    assert query_for_metric("fallback_rate") == "fallback-cost"
    assert query_for_metric("recall.safety_escalation") == "confident-errors"
    alert = {"metric": "accuracy", "slice": "region=br,device=ios", "starts_at": T0,
             "ends_at": T0 + timedelta(hours=2)}
    cmd = command_for_alert(alert)
    assert cmd == ("distillwatch forensics confident-errors --since 2026-11-19T23:00:00Z "
                   "--until 2026-11-20T03:00:00Z --slice region=br,device=ios")
    assert parse_slice(cmd.rsplit(" ", 1)[1]) == [("region", "br"), ("device", "ios")]
    assert "--until" not in command_for_alert(dict(alert, ends_at=None, slice="all"))


def _svg(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag.endswith("svg") and root.get("role") == "img"
    return root


def _marks(root: ET.Element) -> int:
    return sum(1 for e in root.iter() if e.tag.split("}")[-1] in ("path", "use", "rect", "line", "polyline"))


def test_figures_are_svg_with_marks_and_a_name() -> None:
    bins = [{"bin_low": b / 15, "bin_high": (b + 1) / 15, "answers": 10 + b, "mean_confidence": (b + 0.5) / 15,
             "accuracy": min(1.0, (b + 0.3) / 15)} for b in range(5, 15)]
    svgs = {
        "reliability": plots.reliability({"student": bins, "teacher": bins}, {"student": 0.02, "teacher": 0.01}),
        "heatmap": plots.slice_heatmap(Heatmap(["all", "region=br"], ["accuracy"], [[0.9], [0.7]],
                                               [[0.0], [-1.0]], [100, 10])),
        "timelines": plots.metric_timelines([Timeline("accuracy", {"all": [(T0, 0.9, 0.85, 0.95),
                                                                           (T0 + timedelta(hours=1), 0.8, 0.7, 0.9)]},
                                                      [{"starts_at": T0, "ends_at": None, "rule": "r", "slice": "all"}])],
                                            T0 + timedelta(hours=2)),
        "fallback": plots.fallback_cost([{"hour": T0, "fallback_rate": 0.38, "projected_daily_cost_usd": 12640.0,
                                          "planned_daily_cost_usd": 4800.0, "spend_usd": 5.0,
                                          "planned_spend_usd": 2.0}], 0.1, 1.5),
        "freshness": plots.freshness_gap([{"title_age": "0-7 d", "requests": 10, "teacher_grounded_rate": 0.9,
                                           "student_grounded_rate": 0.7, "grounded_gap": 0.2}]),
        "latency": plots.latency_by_slice([{"slice": "all", **{f"{m}_p{q}_ms": float(q * (2 if m == "teacher" else 1))
                                                               for m in ("student", "teacher") for q in (50, 95, 99)}}]),
    }
    for name, svg in svgs.items():
        root = _svg(svg)
        assert _marks(root) > 20, name
        assert root.get("aria-label") and plots.NO_DATA not in root.get("aria-label", ""), name
    assert "$12,640" not in svgs["fallback"]  # dollar amounts are drawn, not left as mathtext
    assert "5.00 spent against $2.00 planned" in _svg(svgs["fallback"]).get("aria-label", "")


@pytest.mark.parametrize("draw", [
    lambda: plots.reliability({"student": [], "teacher": []}, {}),
    lambda: plots.slice_heatmap(Heatmap([], [], [], [], [])),
    lambda: plots.metric_timelines([Timeline("accuracy", {})], T0),
    lambda: plots.fallback_cost([], 0.1, 1.5),
    lambda: plots.freshness_gap([]),
    lambda: plots.latency_by_slice([]),
])
def test_figures_without_data_say_so(draw: object) -> None:
    root = _svg(draw())  # type: ignore[operator]
    assert root.get("aria-label") == plots.NO_DATA


def test_svg_ids_differ_between_figures() -> None:
    a = plots.freshness_gap([{"title_age": "x", "requests": 1, "teacher_grounded_rate": 1.0,
                              "student_grounded_rate": 1.0, "grounded_gap": 0.0}])
    b = plots.latency_by_slice([{"slice": "all", **{f"{m}_p{q}_ms": 1.0 for m in ("student", "teacher")
                                                    for q in (50, 95, 99)}}])
    ids = lambda s: {e.get("id") for e in _svg(s).iter() if e.get("id")}  # noqa: E731
    assert ids(a) and ids(b) and not (ids(a) & ids(b))
