"""``distillwatch demo``: the whole loop on simulated MangaAssist traffic, with a live view."""

from __future__ import annotations

import signal
import threading
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from distillwatch.cli.context import console, console_err, fail, settings_of
from streams.demo.run import Demo, DemoOptions, DemoState


def demo(
    ctx: typer.Context,
    scenario: list[str] = typer.Option(["rare_class_collapse"], "--scenario", "-s",
                                       help="Scenario(s) to inject (see `simulate --list`); repeatable."),
    minutes: float = typer.Option(10.0, "--minutes", min=5.0, help="Simulated minutes of traffic."),
    speed: float = typer.Option(10.0, "--speed", min=0.1, help="Simulated seconds per real second."),
    seed: int = typer.Option(0, "--seed"),
    no_retrain: bool = typer.Option(False, "--no-retrain", help="Do not run the CPU retraining job."),
    no_live: bool = typer.Option(False, "--no-live", help="Plain progress lines instead of the live view."),
    timeout_s: float = typer.Option(420.0, "--timeout", min=30.0, help="Give up waiting after this many seconds."),
) -> None:
    """Start Kafka, the store, the monitor, simulated teacher and student workers, an on-call
    receiver and Alertmanager; inject a failure scenario; watch it get caught, paged and
    retrained; write report.html. Ctrl-C stops everything the demo started."""
    settings = settings_of(ctx)
    options = DemoOptions(scenarios=scenario, minutes=minutes, speed=speed, seed=seed,
                          retrain=not no_retrain, timeout_s=timeout_s)
    printed = [0]

    def plain(state: DemoState) -> None:
        for line in state.log[printed[0]:]:
            console_err.print(line, markup=False, highlight=False)
        printed[0] = len(state.log)

    live = None if no_live else Live(console=console, refresh_per_second=2, transient=False)
    runner = Demo(settings, options, (lambda s: live.update(view(s))) if live else plain)  # type: ignore[union-attr]
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: runner.halt.set())
    error: list[BaseException] = []

    def work() -> None:
        try:
            runner.run()
        except BaseException as exc:  # reported below, after the live view closes
            error.append(exc)

    thread = threading.Thread(target=work, name="demo", daemon=True)
    try:
        if live:
            live.start()
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        runner.halt.set()
        console_err.print("stopping everything the demo started ...", markup=False)
        runner.stop()
        thread.join(60)
    finally:
        if live:
            live.stop()
        signal.signal(signal.SIGTERM, previous)
    if error:
        fail(f"demo failed: {error[0]}")
    state = runner.state
    if no_live:
        plain(state)
    summary(runner, state)
    fired = {(a[1], a[2]) for a in state.alerts if a[0] == "firing"}
    missing = [e for e in state.expected if e not in fired]
    if missing and not runner.halt.is_set():
        fail("the demo's scenario did not fire " + ", ".join(f"{r} on {s}" for r, s in missing))


def view(state: DemoState) -> Any:
    """The live terminal view: throughput, lag, key metrics per slice, alerts, pages, jobs."""
    m = state.metrics
    head = (f"[b]{state.phase}[/b]  published {state.published:,}/{state.total:,} requests   "
            f"evaluated {m.get('records_total', m.get('records', 0)):,.0f} records   "
            f"{m.get('events_per_second', 0):,.0f} events/s   lag {m.get('lag', 0):,.0f}   "
            f"dead letters {m.get('dead_letters_total', m.get('dead_letters', 0)):,.0f}")
    slices = Table("slice", "safety recall", "accuracy", "ece", "fallback", "support",
                   title="last closed 60 s window", expand=True)
    for row in state.slices:
        slices.add_row(*[("-" if v is None else str(v)) for v in row])
    alerts = Table("status", "rule", "slice", "window", "severity", title="alerts", expand=True)
    for row in state.alerts[-8:]:
        style = "red" if row[0] == "firing" else "green"
        alerts.add_row(*[str(v) for v in row], style=style)
    pages = Table("via", "status", "rule", "slice", title="pages received by on-call", expand=True)
    for p in state.pages[-6:]:
        pages.add_row(p.via, p.status, p.rule, p.slice)
    jobs = Table("retrain job", "status", "output", title="retraining", expand=True)
    for j in state.jobs:
        jobs.add_row(*[str(v) for v in j])
    return Group(Panel(head, title="distillwatch demo"), slices, alerts, pages, jobs,
                 Panel("\n".join(state.log[-6:]), title="log"))


def summary(runner: Demo, state: DemoState) -> None:
    root = runner.root
    lines = [
        "",
        f"alerts fired: {sum(1 for a in state.alerts if a[0] == 'firing')}, "
        f"pages received: {len(state.pages)}, retrain jobs: "
        + (", ".join(f"{j[0]} {j[1]}" for j in state.jobs) or "none"),
        f"data:    {root / 'data'}  (embedded ClickHouse; config {runner.config})",
        f"report:  {state.report or 'not written'}",
        f"SQL:     distillwatch -c {runner.config} sql \"SELECT rule, slice, status, window_start "
        "FROM distillwatch.alerts FINAL\"",
        f"forensics: distillwatch -c {runner.config} forensics list",
        f"logs:    {root}/*.log",
    ]
    for line in lines:
        console.print(line, markup=False, highlight=False)
