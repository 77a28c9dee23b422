"""``distillwatch simulate``: a synthetic MangaAssist replay log and its truth file."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Optional

import orjson
import typer

from distillwatch.cli.context import console_err, fail
from simulator import legacy, scenarios
from simulator.truth import Truth, truth_path
from simulator.world import START


def simulate(
    scenario: str = typer.Option("clean", "--scenario", "-s", help="What the traffic shows (see --list)."),
    minutes: Optional[float] = typer.Option(None, "--minutes", min=0.1, help="Event-time span of the log (default: the scenario's)."),
    rate: Optional[float] = typer.Option(None, "--rate", min=0.1, help="Requests per second of event time (default: the scenario's)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same log)."),
    start: Optional[str] = typer.Option(None, "--start", help="Event time of the first request: RFC 3339, or 'now' (default 2026-11-01T00:00:00Z)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Replay log to write (JSON lines); the truth goes to LOG.truth.json."),
    list_: bool = typer.Option(False, "--list", help="List the scenarios and exit."),
) -> None:
    """Generate mirrored traffic with teacher and student answers, labels, a catalog, and a
    failure scenario of the reference guide; write the log and what must fire on it."""
    if list_:
        _print_list()
        return
    if out is None:
        fail("simulate needs --out LOG.jsonl (or --list)")
    if scenario not in scenarios.names():
        fail(f"unknown scenario {scenario!r}; known: {', '.join(scenarios.names())}")
    if scenario == "regression":
        if start is not None:
            fail("--start does not apply to the legacy 'regression' scenario")
        minutes, rate = minutes or 10.0, rate or 50.0
        lines: Iterable[dict[str, Any]] = legacy.lines(minutes, rate, seed)
        truth_of = lambda: legacy.truth(minutes, rate, seed)  # noqa: E731
    else:
        from simulator.generate import Simulation

        sim = Simulation(scenarios.get(scenario), seed, minutes, rate, _start(start))
        lines, truth_of = sim.lines(), sim.truth
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(out, "wb") as handle:
            for line in lines:
                handle.write(orjson.dumps(line) + b"\n")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")
    truth: Truth = truth_of()
    truth.write(truth_path(out))
    console_err.print(_done(truth, out), markup=False, highlight=False)


def _start(text: str | None) -> datetime:
    if text is None:
        return START
    if text == "now":
        now = datetime.now(UTC)
        return now.replace(second=0, microsecond=0)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--start {text!r}: expected an RFC 3339 time such as 2026-11-01T00:00:00Z, or 'now'")
    if value.tzinfo is None:
        fail(f"--start {text!r}: give a zone (e.g. Z)")
    return value.astimezone(UTC)


def _print_list() -> None:
    width = max(len(n) for n in scenarios.names())
    for name in scenarios.names():
        if name == "regression":
            line = f"{name:<{width}}  {legacy.SUMMARY}"
        else:
            sc = scenarios.get(name)
            line = f"{name:<{width}}  {sc.summary} ({sc.guide}; default {sc.minutes:g} min at {sc.rate:g}/s)"
        typer.echo(line)


def _done(truth: Truth, out: Path) -> str:
    text = (f"wrote {truth.requests} requests to {out} (scenario {truth.scenario}, seed {truth.seed}, "
            f"{truth.minutes:g} min at {truth.rate_per_s:g}/s); truth: {truth_path(out)}")
    if truth.onset_ts is not None:
        rules = ", ".join(f"{e.rule} on {'/'.join(e.slices)}" for e in truth.expected)
        text += f"\nonset {truth.onset_ts} on {truth.target_slice}; expected: {rules}"
    return text
