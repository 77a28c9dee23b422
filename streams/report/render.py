"""The report as one HTML file: inline SVG figures, inline CSS, no scripts, no external links.

Opening it needs no network and no other file; every value is escaped.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from streams.forensics import command_for_alert
from streams.report import plots
from streams.report.queries import ReportData

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f2d3d;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c8d3de}
main{padding:12px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;margin:16px 0;padding:14px 18px}
h2{font-size:17px;margin:0 0 6px}
p.note{color:#555;margin:4px 0 10px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:4px}
.card{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}
.card span{color:#666;font-size:12px}
.card.bad b{color:#c0392b}
figure.plot{margin:8px 0;overflow-x:auto}
figure.plot svg{height:auto;display:block}
figcaption{color:#666;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:12.5px}
th,td{border-bottom:1px solid #eee;padding:5px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.firing{color:#c0392b;font-weight:bold}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f3f3f3;padding:1px 4px;border-radius:3px;word-break:break-all}
details summary{cursor:pointer;color:#1f5fa0}
"""


def _fmt(v: float | None, pct: bool = False, money: bool = False) -> str:
    if v is None:
        return "–"
    if money:
        return f"${v:,.2f}"
    return f"{v:.1%}" if pct else f"{v:,.0f}"


def _time(t: datetime | None) -> str:
    return "–" if t is None else t.strftime("%Y-%m-%d %H:%M UTC")


def _figure(name: str, svg: str, caption: str) -> str:
    return (f'<figure class="plot" id="plot-{name}" data-plot="{name}">{svg}'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _cards(data: ReportData) -> str:
    s = data.summary
    over = (s["spend_usd"] or 0) > (s["planned_spend_usd"] or 0) * 1.0001
    firing = s["alerts_firing"] or 0
    items = [
        ("requests", _fmt(s["requests"]), False),
        ("student accuracy", _fmt(s["accuracy"], pct=True), False),
        ("teacher match", _fmt(s["teacher_match"], pct=True), False),
        ("teacher fallback", _fmt(s["fallback_rate"], pct=True),
         s["fallback_rate"] is not None and s["fallback_rate"] > data.planned_fallback_rate * data.alert_factor),
        ("spend vs plan", f"{_fmt(s['spend_usd'], money=True)} / {_fmt(s['planned_spend_usd'], money=True)}", over),
        ("alerts (firing)", f"{_fmt(s['alerts'])} ({firing:.0f})", firing > 0),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card{" bad" if bad else ""}"><b>{escape(v)}</b><span>{escape(k)}</span></div>'
        for k, v, bad in items) + "</div>"


def _alerts_table(alerts: list[dict[str, Any]]) -> str:
    if not alerts:
        return '<p class="note" id="alerts-empty">No alert was active in this period.</p>'
    head = ("<tr><th>start</th><th>end</th><th>status</th><th>rule</th><th>slice</th><th>metric</th>"
            "<th>value</th><th>threshold</th><th>evidence</th></tr>")
    body = []
    for a in alerts:
        ids = ", ".join(a["example_request_ids"] or []) or "–"
        evidence = (f"{escape(a['summary'] or '')}<details><summary>examples, SQL, replay</summary>"
                    f"<p>requests: <code>{escape(ids)}</code></p>"
                    f"<p>next: <code>{escape(command_for_alert(a))}</code></p>"
                    f"<p>SQL: <code>{escape(a['forensics_sql'] or '–')}</code></p>"
                    f"<p>replay: <code>{escape(a['replay_offsets'] or '–')}</code></p></details>")
        value = "–" if a["value"] is None else f"{a['value']:.4g}"
        threshold = "–" if a["threshold"] is None else f"{a['threshold']:.4g}"
        body.append(
            f'<tr><td>{_time(a["starts_at"])}</td><td>{_time(a["ends_at"])}</td>'
            f'<td class="{escape(a["status"])}">{escape(a["status"])}</td><td>{escape(a["rule"])}</td>'
            f'<td>{escape(a["slice"])}</td><td>{escape(a["metric"])}</td><td>{value}</td>'
            f"<td>{threshold}</td><td>{evidence}</td></tr>")
    return f'<table id="alerts-table">{head}{"".join(body)}</table>'


def render_html(data: ReportData) -> str:
    """The whole page. Figures are drawn here from the collected numbers."""
    period = f"{_time(data.since)} – {_time(data.until)}"
    sections = [
        ("Calibration", "reliability", plots.reliability(data.calibration, data.ece),
         "Accuracy against top-1 confidence in 15 bins; points on the diagonal are calibrated. "
         "Confidence-based routing needs the student's curve close to it."),
        ("Slices", "heatmap", plots.slice_heatmap(data.heatmap),
         f"Each metric over the period per slice ({data.window_s} s windows: rates as summed "
         "numerators over summed denominators, other values as weighted means of windows)."),
        ("Timelines", "timelines", plots.metric_timelines(data.timelines, data.until),
         "Per window; the band is the 95 % Wilson interval on all traffic; red spans are alerts."),
        ("Fallback cost", "fallback", plots.fallback_cost(data.fallback, data.planned_fallback_rate,
                                                          data.alert_factor),
         "Teacher fallback per hour and the daily cost it implies at the configured volume, against plan."),
        ("Freshness", "freshness", plots.freshness_gap(data.freshness),
         "Grounded answers by age of the newest catalog title named (buckets include their upper edge)."),
        ("Latency", "latency", plots.latency_by_slice(data.latency),
         "Latency per slice, slowest student p95 first (DDSketch, 1 % relative error)."),
    ]
    body = "".join(
        f'<section id="{name}-section"><h2>{escape(title)}</h2>{_figure(name, svg, caption)}</section>'
        for title, name, svg, caption in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>distillwatch report {escape(period)}</title>
<style>{CSS}</style></head>
<body><header><h1>distillwatch: state of the student</h1>
<p>{escape(period)} · generated {escape(_time(data.generated_at))}</p></header>
<main><section id="summary-section"><h2>Summary</h2>{_cards(data)}</section>
{body}
<section id="alerts-section"><h2>Alerts</h2>
<p class="note">Each alert's evidence: example requests, the command that lists the requests behind it,
ready SQL and the Kafka offsets to replay.</p>{_alerts_table(data.alerts)}</section>
</main></body></html>
"""
