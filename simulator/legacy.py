"""The first demo's run, kept as scenario ``regression``: the student regresses on region=br.

``scripts/demo.sh`` and older notes run ``simulate --scenario regression``; this writes the
same log as before (``simulator.traffic``) plus a truth file like the other scenarios'.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from simulator.traffic import Regression, TrafficConfig, World, healthy
from simulator.truth import DETECT_WINDOWS, WINDOW_S, Expected, Truth

SUMMARY = "legacy demo: from half-time the student is confidently wrong on region=br"
TARGET = "region=br"


def config(minutes: float, rate: float) -> TrafficConfig:
    cfg = healthy(int(minutes * 60 * rate), rate)
    cfg.regressions.append(Regression(slice=TARGET, onset_s=minutes * 30, accuracy=0.6, confidence=0.95))
    return cfg


def lines(minutes: float, rate: float, seed: int) -> Iterator[dict[str, Any]]:
    return World(config(minutes, rate), seed).lines()


def truth(minutes: float, rate: float, seed: int) -> Truth:
    cfg = config(minutes, rate)
    onset_s = minutes * 30
    onset_epoch = cfg.start.timestamp() + onset_s
    onset_window = int(onset_epoch // WINDOW_S * WINDOW_S)
    br = (TARGET,)
    why = "the regression makes the student wrong (on every class) and confident on that slice"
    return Truth(
        scenario="regression", guide="legacy demo", summary=SUMMARY, seed=seed,
        start=cfg.start.isoformat().replace("+00:00", "Z"), minutes=minutes, rate_per_s=rate,
        requests=cfg.pairs, window_s=WINDOW_S, onset_s=onset_s,
        onset_ts=datetime.fromtimestamp(onset_epoch, cfg.start.tzinfo).isoformat().replace("+00:00", "Z"),
        onset_window_start=onset_window, detect_by_window_start=onset_window + DETECT_WINDOWS * WINDOW_S,
        target_slice=TARGET,
        expected=[Expected("confident_errors", list(br))],
        side_effects=[Expected(rule, list(br), why) for rule in
                      ("confidence_miscalibrated", "teacher_agreement_low", "fallback_over_plan",
                       "safety_escalation_recall_low", "payment_dispute_recall_low")],
    )
