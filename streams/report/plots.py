"""The report's figures, drawn from numbers computed elsewhere (:mod:`streams.report.queries`).

Each function takes plain data and returns SVG text (glyphs as paths, so the page needs no
fonts). Figures are built on :class:`matplotlib.figure.Figure`, never pyplot, so nothing
global changes and no display is needed.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any

import matplotlib
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from streams.report.queries import Heatmap, Timeline

STUDENT, TEACHER, PLAN, ALERT, ALL = "#d95f02", "#1b9e77", "#7f7f7f", "#c0392b", "#222222"
SLICE_COLORS = ("#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#1f78b4")
BAD_GOOD = LinearSegmentedColormap.from_list("bad_good", ["#c0392b", "#f7f7f7", "#1a9850"])
STYLE: Any = {"svg.fonttype": "path", "font.size": 9, "axes.spines.top": False,  # matplotlib rc
         "axes.spines.right": False, "axes.titlesize": 10, "axes.titleweight": "bold"}


def to_svg(fig: Figure, name: str, label: str) -> str:
    """The figure as inline SVG: no XML prolog, ids unique to this figure, ``label`` as its
    accessible name (text is drawn as paths, so this is the text a reader or test can find)."""
    buf = io.StringIO()
    with matplotlib.rc_context(STYLE | {"svg.hashsalt": name}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'(<svg[^>]*?) width="([\d.]+)pt" height="([\d.]+)pt"',
                 r'\1 width="100%" style="max-width:\2pt" data-height="\3pt"', svg, count=1)
    svg = _ID_REF.sub(lambda m: f"{m[1]}{name}-{m[2]}", svg)  # unique within the page, glyphs too
    return svg.replace("<svg", f'<svg role="img" aria-label="{escape(label)}"', 1)


_ID_REF = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained")


NO_DATA = "no data in this period"


def _empty(fig: Figure, name: str) -> str:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, NO_DATA, ha="center", va="center", fontsize=11, color=PLAN)
    return to_svg(fig, name, NO_DATA)


def reliability(calibration: dict[str, list[dict[str, Any]]], ece: dict[str, float | None]) -> str:
    """Accuracy against confidence per bin, student and teacher, with answers per bin below."""
    fig = _figure(6.4, 5.6)
    if not any(calibration.values()):
        return _empty(fig, "reliability")
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], ls="--", color=PLAN, lw=1, label="perfect calibration")
    width = 1 / 15 / 2.4
    for k, (model, color) in enumerate((("student", STUDENT), ("teacher", TEACHER))):
        bins = calibration.get(model, [])
        if not bins:
            continue
        score = ece.get(model)
        label = f"{model} (ECE {score:.3f})" if score is not None else model
        top.plot([b["mean_confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color=color,
                 label=label, lw=1.6, ms=4)
        centers = [(b["bin_low"] + b["bin_high"]) / 2 + (k - 0.5) * width for b in bins]
        bottom.bar(centers, [b["answers"] for b in bins], width=width, color=color, alpha=0.8, label=model)
    top.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="accuracy", title="Reliability: student vs teacher")
    top.legend(loc="upper left", frameon=False)
    bottom.set(xlabel="top-1 confidence", ylabel="answers")
    scores = ", ".join(f"{m} ECE {v:.3f}" for m, v in ece.items() if v is not None)
    return to_svg(fig, "reliability", f"Reliability diagram, student vs teacher ({scores})")


def slice_heatmap(heat: Heatmap) -> str:
    """Slice × metric over the period; colour is better (green) or worse (red) than ``all``."""
    rows, cols = len(heat.slices), len(heat.metrics)
    fig = _figure(max(6.4, 0.82 * cols + 2.6), max(2.4, 0.3 * rows + 1.6))
    if rows == 0 or cols == 0:
        return _empty(fig, "heatmap")
    ax = fig.add_subplot()
    grid = [[math.nan if d is None else d for d in row] for row in heat.deviation]
    ax.imshow(grid, cmap=BAD_GOOD, vmin=-1, vmax=1, aspect="auto")
    for i, row in enumerate(heat.values):
        for j, v in enumerate(row):
            ax.text(j, i, "–" if v is None else _short(v), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(cols), [m.replace("_", " ") for m in heat.metrics], rotation=35, ha="right")
    ax.set_yticks(range(rows), [f"{s} ({_count(n)})" for s, n in zip(heat.slices, heat.requests, strict=True)])
    ax.tick_params(length=0)
    ax.set_title("Slices × metrics (green better, red worse than all)")
    return to_svg(fig, "heatmap", f"Heatmap of {cols} metrics over {rows} slices")


def metric_timelines(timelines: Sequence[Timeline], until: datetime) -> str:
    """Each metric per window: ``all`` with its interval, alerted slices, alert spans in red."""
    shown = [t for t in timelines if t.series]
    fig = _figure(10, 2.3 * max(1, math.ceil(len(shown) / 2)) + 0.3)
    if not shown:
        return _empty(fig, "timelines")
    axes = fig.subplots(math.ceil(len(shown) / 2), 2, squeeze=False, sharex=True).ravel()
    for ax, t in zip(axes, shown, strict=False):
        for k, (sl, points) in enumerate(t.series.items()):
            xs = [p[0] for p in points]
            color = ALL if sl == "all" else SLICE_COLORS[k % len(SLICE_COLORS)]
            ax.plot(xs, [p[1] for p in points], "-", marker="." if len(xs) < 60 else None, color=color,
                    lw=1.4 if sl == "all" else 1.1, label=sl)
            lo = [p[2] for p in points]
            if sl == "all" and all(v is not None for v in lo):
                ax.fill_between(xs, lo, [p[3] for p in points], color=color, alpha=0.12, lw=0)
        for a in t.alerts:
            end = a["ends_at"] or until
            ax.axvspan(a["starts_at"], end, color=ALERT, alpha=0.08, lw=0)
            ax.axvline(a["starts_at"], color=ALERT, lw=1, ls="--")
            ax.annotate(f"▲ {a['rule']} ({a['slice']})", (a["starts_at"], 1), xycoords=("data", "axes fraction"),
                        fontsize=7, color=ALERT, va="top", ha="left")
        ax.set_title(t.metric.replace("_", " "), loc="left")
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    for ax in axes[len(shown):]:
        ax.set_axis_off()
    alerts = sum(len(t.alerts) for t in shown)
    return to_svg(fig, "timelines", f"Timelines of {len(shown)} metrics with {alerts} alert markers")


def fallback_cost(rows: list[dict[str, Any]], planned_rate: float, alert_factor: float) -> str:
    """Fallback rate per hour against plan, and the daily cost it projects against the plan."""
    fig = _figure(10, 3.4)
    if not rows:
        return _empty(fig, "fallback")
    left, right = fig.subplots(1, 2)
    hours = [r["hour"] for r in rows]
    rates = [r["fallback_rate"] for r in rows]
    left.plot(hours, rates, "o-", color=STUDENT, ms=3, label="fallback rate")
    left.axhline(planned_rate, color=PLAN, ls="--", label=f"plan {planned_rate:.0%}")
    left.axhline(planned_rate * alert_factor, color=ALERT, ls=":", label=f"alert at {alert_factor}× plan")
    left.set(title="Teacher fallback per hour", ylabel="share of student answers", ylim=(0, None))
    left.legend(frameon=False, fontsize=7)
    width = 0.8 / 24
    right.bar(hours, [r["projected_daily_cost_usd"] for r in rows], width=width, color=STUDENT, alpha=0.85,
              label="projected \\$/day at this hour's rate")
    right.axhline(rows[0]["planned_daily_cost_usd"], color=PLAN, ls="--",
                  label=f"plan \\${rows[0]['planned_daily_cost_usd']:,.0f}/day")
    spend = sum(r["spend_usd"] for r in rows)
    planned = sum(r["planned_spend_usd"] for r in rows)
    right.set(title=f"Cost against plan (period: \\${spend:,.2f} spent, \\${planned:,.2f} planned)",
              ylabel="USD per day")
    right.legend(fontsize=7, loc="lower left", framealpha=0.9)
    for ax in (left, right):
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    return to_svg(fig, "fallback", f"Fallback per hour against a {planned_rate:.0%} plan; "
                                   f"${spend:,.2f} spent against ${planned:,.2f} planned")


def freshness_gap(rows: list[dict[str, Any]]) -> str:
    """Teacher and student grounded rates by title age, with the gap written over each pair."""
    fig = _figure(8, 3.4)
    rows = [r for r in rows if r["teacher_grounded_rate"] is not None or r["student_grounded_rate"] is not None]
    if not rows:
        return _empty(fig, "freshness")
    ax = fig.add_subplot()
    xs = range(len(rows))
    teacher = [r["teacher_grounded_rate"] or 0 for r in rows]
    student = [r["student_grounded_rate"] or 0 for r in rows]
    ax.bar([x - 0.2 for x in xs], teacher, width=0.4, color=TEACHER, label="teacher grounded")
    ax.bar([x + 0.2 for x in xs], student, width=0.4, color=STUDENT, label="student grounded")
    for x, r in zip(xs, rows, strict=True):
        gap = r["grounded_gap"]
        if gap is not None:
            ax.text(x, max(teacher[x], student[x]) + 0.02, f"gap {gap:+.3f}", ha="center", fontsize=7,
                    color=ALERT if gap > 0.10 else ALL)
    ax.set_xticks(list(xs), [f"{r['title_age']}\n{_count(r['requests'])} req" for r in rows])
    ax.set(ylim=(0, 1.12), ylabel="grounded answers", title="Freshness gap by title age")
    ax.legend(frameon=False, fontsize=7, loc="lower right")
    return to_svg(fig, "freshness", f"Grounded rates of teacher and student in {len(rows)} title-age buckets")


def latency_by_slice(rows: list[dict[str, Any]], top: int = 30) -> str:
    """p50, p95, p99 per slice for student and teacher, slowest student p95 first."""
    rows = [r for r in rows if r["student_p95_ms"] is not None or r["teacher_p95_ms"] is not None][:top]
    fig = _figure(10, max(2.4, 0.26 * len(rows) + 1.2))
    if not rows:
        return _empty(fig, "latency")
    axes = fig.subplots(1, 2, sharey=True)
    ys = list(range(len(rows)))[::-1]
    for ax, model, color in ((axes[0], "student", STUDENT), (axes[1], "teacher", TEACHER)):
        p50 = [r[f"{model}_p50_ms"] or 0 for r in rows]
        p95 = [r[f"{model}_p95_ms"] or 0 for r in rows]
        p99 = [r[f"{model}_p99_ms"] or 0 for r in rows]
        ax.barh(ys, p95, color=color, alpha=0.45, label="p95")
        ax.barh(ys, p50, color=color, alpha=0.9, height=0.4, label="p50")
        ax.plot(p99, ys, "|", color=ALL, ms=8, label="p99")
        ax.set(title=f"{model} latency (ms)", xlabel="ms")
        ax.legend(frameon=False, fontsize=7, loc="lower right")
    axes[0].set_yticks(ys, [r["slice"] for r in rows])
    return to_svg(fig, "latency", f"Latency p50, p95, p99 of student and teacher for {len(rows)} slices")


def _short(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3f}" if abs(v) < 1 else f"{v:.3g}"


def _count(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"
