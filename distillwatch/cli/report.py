"""``distillwatch report [--since 24h] --out report.html``: one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from distillwatch.cli.context import console, fail, settings_of
from distillwatch.cli.forensics import runner_for, scope_of
from schemas.errors import DistillwatchError


def report(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the HTML file."),
    since: str = typer.Option("24h", "--since", help="Start: a duration back from now (24h, 7d) or an RFC 3339 time."),
    until: Optional[str] = typer.Option(None, "--until", help="End (exclusive), same forms; default now."),
    window_s: Optional[int] = typer.Option(None, "--window", min=1, help="Window size of the timelines and heatmap "
                                           "(default: the largest configured one giving 12 points)."),
) -> None:
    """Write the state of the student (calibration, slices, timelines, cost, freshness,
    latency, alerts) as one HTML file that opens without network access."""
    from streams.report.queries import collect
    from streams.report.render import render_html

    settings = settings_of(ctx)
    try:
        scope = scope_of(settings, since, until, [])
        data = collect(runner_for(settings, max_rows=100_000), scope, list(settings.evaluation.windows_s),
                       window_s)
    except DistillwatchError as exc:
        fail(str(exc))
    html = render_html(data)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")
    console.print(f"report {out} ({len(html.encode()) / 1e6:.2f} MB, {data.summary['requests']:.0f} requests, "
                  f"{len(data.alerts)} alerts, {data.window_s} s windows)", markup=False, highlight=False)
