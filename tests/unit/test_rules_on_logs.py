"""The default rules on synthetic replay logs: a clean day pages nobody, a regression pages fast.

DESIGN §6: "a clean day pages nobody, a real regression pages within two windows". The clean
world is a healthy student (accuracy 0.98, calibrated confidence, few fact errors, a 9 %
high-risk intent mix so planned fallback holds) over 44 slices (region × device crossed) and
12 one-minute windows; the regression degrades the student on region=br only, mildly enough
that its 10 % share of traffic does not push any aggregate slice over a threshold.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from evaluators.alert_tracker import Transition
from evaluators.config import EvalConfig
from evaluators.judge import Judge
from evaluators.offline import evaluate_log
from evaluators.readout import MetricRow
from evaluators.rule_syntax import METRICS, PER_CLASS
from evaluators.rules import RuleSet
from simulator.traffic import Regression, TrafficConfig, World

REPO = Path(__file__).resolve().parents[2]
RATE = 50.0
W = 60
ONSET_S = 300  # window 5 of the run; the run starts on a minute boundary
HEALTHY_INTENTS = {
    "faq": 0.32, "recommendation": 0.27, "order_tracking": 0.19, "returns": 0.13,
    "payment_dispute": 0.03, "safety_escalation": 0.025, "legal_complaint": 0.01,
    "account_lockout": 0.015, "refund_fraud": 0.01,
}
CONFIG = EvalConfig(crosses=(("region", "device"),))


def healthy(pairs: int, regressions: list[Regression] | None = None) -> TrafficConfig:
    return TrafficConfig(
        pairs=pairs, rate_per_s=RATE, teacher_accuracy=0.99, student_accuracy=0.98,
        student_confidence=0.97, teacher_fact_error=0.005, student_fact_error=0.003,
        copy_teacher_error=0.1, missing_response=0.002, reference_share=1.0,
        intent_shares=HEALTHY_INTENTS, regressions=regressions or [],
    )


def br_regression(onset_s: float) -> Regression:
    return Regression(slice="region=br", onset_s=onset_s, accuracy=0.80, confidence=0.93)


def log_lines(config: TrafficConfig, seed: int = 11) -> list[bytes]:
    return [orjson.dumps(line) for line in World(config, seed).lines()]


@dataclass
class Judged:
    rows: list[MetricRow]
    judge: Judge
    transitions: list[Transition]

    @property
    def firing(self) -> list[Transition]:
        return [t for t in self.transitions if t.kind == "firing"]


def judged(lines: list[bytes]) -> Judged:
    judge = Judge(RuleSet.load(None, {"planned_fallback_rate": CONFIG.planned_fallback_rate}))
    rows, transitions = [], []
    for row in evaluate_log(lambda: iter(lines), CONFIG, W):
        rows.append(row)
        transitions += judge.observe(row)
    return Judged(rows, judge, transitions + judge.finish())


@pytest.fixture(scope="module")
def clean() -> Judged:
    return judged(log_lines(healthy(30_000)))


@pytest.fixture(scope="module")
def regressed() -> Judged:
    return judged(log_lines(healthy(30_000, [br_regression(ONSET_S)])))


def test_clean_world_is_wide_and_long_enough(clean: Judged) -> None:
    assert len({r.slice for r in clean.rows}) >= 40
    starts = sorted({r.window_start for r in clean.rows})
    assert len(starts) >= 10 and starts[0] % W == 0
    rules = clean.judge.rules
    for rule in rules.rules:  # every default rule had slices with enough support to judge
        judged_rows = [r for r in clean.rows if r.metric == rule.metric and rule.selects(r.slice)
                       and r.support >= rule.min_support]
        assert len(judged_rows) >= 10, rule.name
    for metric in {r.metric for r in clean.rows}:
        assert metric in METRICS or PER_CLASS.fullmatch(metric), metric


def test_a_clean_day_pages_nobody(clean: Judged) -> None:
    assert clean.transitions == []
    assert clean.judge.breaches == []  # not a single window breaches, let alone twice in a row


def test_a_regression_on_one_region_fires_there_within_two_windows(regressed: Judged) -> None:
    t0 = min(r.window_start for r in regressed.rows)
    onset_window = t0 + ONSET_S // W * W
    firing = regressed.firing
    assert firing, "the regression on region=br should fire"
    for t in firing:
        parts = t.slice.split(",")
        assert "region=br" in parts, f"{t.rule} fired on {t.slice}"
    assert min(t.window_start for t in firing) <= onset_window + 2 * W
    assert all(b.window_start >= onset_window for b in regressed.judge.breaches)
    assert {t.rule for t in firing} >= {"confident_errors"}


def run_cli(log: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLWATCH_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "distillwatch", "evaluate", str(log), "--alerts"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


def write_log(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="module")
def small_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("logs")
    clean = write_log(folder / "clean.jsonl", log_lines(healthy(9_000), seed=3))
    bad = write_log(folder / "br.jsonl", log_lines(healthy(9_000, [br_regression(0)]), seed=3))
    yield clean, bad


def test_cli_prints_the_firing_slice(small_logs: tuple[Path, Path], tmp_path: Path) -> None:
    done = run_cli(small_logs[1], tmp_path)
    assert done.returncode == 0, done.stderr
    alerts = [line for line in done.stderr.splitlines() if line.startswith("ALERT ")]
    assert alerts and all("  region=br  " in line for line in alerts), done.stderr
    assert any("confident_errors" in line and "95% CI [" in line for line in alerts)
    assert f"{len(alerts)} alert{'s' if len(alerts) > 1 else ''} would fire" in done.stderr
    assert done.stdout.count("\n") > 100  # the metric rows still go to stdout


def test_cli_on_a_clean_log_says_no_alert(small_logs: tuple[Path, Path], tmp_path: Path) -> None:
    done = run_cli(small_logs[0], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no alert would fire" in done.stderr
    assert "ALERT " not in done.stderr


def test_cli_rejects_a_bad_rules_file(small_logs: tuple[Path, Path], tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: x, metric: ece, condition: '>= 0.1'}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLWATCH_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "distillwatch", "evaluate", str(small_logs[0]), "--alerts",
         "--rules", str(rules)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    assert "rule 'x': key 'condition'" in done.stderr and "Traceback" not in done.stderr
