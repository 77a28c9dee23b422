"""``distillwatch simulate``: write a synthetic MangaAssist replay log."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import orjson
import typer

from distillwatch.cli.context import console_err
from simulator.traffic import Regression, World, healthy


class Scenario(str, Enum):
    clean = "clean"
    regression = "regression"


def simulate(
    scenario: Scenario = typer.Option(Scenario.clean, "--scenario", help="What the traffic shows."),
    minutes: float = typer.Option(10.0, "--minutes", min=0.1, help="Event-time span of the log."),
    rate: float = typer.Option(50.0, "--rate", min=0.1, help="Requests per second of event time."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same log)."),
    out: Path = typer.Option(..., "--out", "-o", help="Replay log to write (JSON lines)."),
) -> None:
    """Generate mirrored traffic with teacher and student answers, labels and a catalog."""
    pairs = int(minutes * 60 * rate)
    config = healthy(pairs, rate)
    if scenario is Scenario.regression:  # from half-time, the student fails in one region
        config.regressions.append(
            Regression(slice="region=br", onset_s=minutes * 30, accuracy=0.6, confidence=0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as handle:
        for line in World(config, seed).lines():
            handle.write(orjson.dumps(line) + b"\n")
    console_err.print(f"wrote {pairs} request pairs to {out} (scenario {scenario.value})", markup=False)
