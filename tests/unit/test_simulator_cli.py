"""``distillwatch simulate``: listing, the log and its truth file, the legacy ``regression`` run,
and the truth check that scenario tests (offline or against the monitor) rely on."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from distillwatch.cli import app
from evaluators.alert_tracker import Transition
from schemas.replay import validate_line
from simulator import scenarios
from simulator.traffic import Regression, World, healthy
from simulator.truth import Expected, Truth, check_transitions, truth_path

runner = CliRunner()


def run(*args: str) -> object:
    return runner.invoke(app, ["simulate", *args])


def test_list_names_every_scenario_with_a_line_each() -> None:
    done = run("--list")
    assert done.exit_code == 0, done.output
    lines = done.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == scenarios.names()
    assert "guide §6, scenario 4" in done.output


def test_a_scenario_log_and_its_truth(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "stale.jsonl"
    done = run("--scenario", "stale_student", "--minutes", "2", "--rate", "5", "--seed", "1", "--out", str(out))
    assert done.exit_code == 0, done.output
    lines = [orjson.loads(raw) for raw in out.read_bytes().splitlines()]
    for line in lines:
        validate_line(line)
    requests = [line["request"] for line in lines if "request" in line]
    assert len(requests) == 600 and requests[0]["ts"] == "2026-11-01T00:00:00.000Z"
    truth = json.loads((tmp_path / "runs" / "stale.truth.json").read_text())
    assert truth["scenario"] == "stale_student" and truth["seed"] == 1 and truth["requests"] == 600
    # a 2-minute run is too short for the default onset (300 s): it moves to mid-run
    assert truth["onset_s"] == 60 and truth["onset_ts"] == "2026-11-01T00:01:00Z"
    assert truth["onset_window_start"] == 1793491260 and truth["detect_by_window_start"] == 1793491380
    assert truth["expected"] == [{"rule": "new_titles_ungrounded", "slices": ["freshness=new"], "why": ""}]
    assert truth["target_slice"] == "freshness=new" and truth["window_s"] == 60


def test_start_option(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    assert run("--scenario", "clean", "--minutes", "0.5", "--rate", "2", "--start",
               "2027-01-02T03:04:00Z", "--out", str(out)).exit_code == 0
    first = next(orjson.loads(raw) for raw in out.read_bytes().splitlines() if b'"request"' in raw)
    assert first["request"]["ts"] == "2027-01-02T03:04:00.000Z"
    done = run("--start", "yesterday", "--out", str(out))
    assert done.exit_code != 0 and "--start 'yesterday'" in done.output


def test_bad_invocations_fail_with_one_line(tmp_path: Path) -> None:
    done = run("--scenario", "nope", "--out", str(tmp_path / "x.jsonl"))
    assert done.exit_code != 0 and "unknown scenario 'nope'; known: clean," in done.output
    done = run("--scenario", "clean")
    assert done.exit_code != 0 and "--out" in done.output


def test_legacy_regression_writes_the_same_log_as_before(tmp_path: Path) -> None:
    """scripts/demo.sh runs ``--scenario regression --minutes 10 --rate 50 --seed 7``."""
    out = tmp_path / "r.jsonl"
    assert run("--scenario", "regression", "--minutes", "1", "--rate", "50", "--seed", "7",
               "--out", str(out)).exit_code == 0
    config = healthy(3000, 50.0)
    config.regressions.append(Regression(slice="region=br", onset_s=30, accuracy=0.6, confidence=0.95))
    before = b"".join(orjson.dumps(line) + b"\n" for line in World(config, 7).lines())
    assert out.read_bytes() == before
    truth = Truth.load(truth_path(out))
    assert truth.expected == [Expected("confident_errors", ["region=br"])] and truth.onset_s == 30


def test_truth_path() -> None:
    assert truth_path("a/b.jsonl") == Path("a/b.truth.json")
    assert truth_path("a/b.log") == Path("a/b.log.truth.json")


T0 = 1793491200  # 2026-11-01T00:00:00Z, the default start


def truth(expected: list[Expected], side: list[Expected] | None = None, onset: int | None = 600) -> Truth:
    """A 20-minute run; ``onset`` in seconds from its start."""
    at = None if onset is None else T0 + onset
    return Truth(scenario="x", guide="", summary="", seed=0, start="2026-11-01T00:00:00Z", minutes=20,
                 rate_per_s=10, requests=12000, window_s=60, onset_s=onset, onset_ts=None,
                 onset_window_start=at, detect_by_window_start=None if at is None else at + 120,
                 target_slice="region=br", expected=expected, side_effects=side or [])


def fire(rule: str, slice_: str, at: int) -> Transition:
    """A firing transition ``at`` seconds into the run."""
    return Transition("firing", rule, slice_, T0 + at, 60)


@pytest.mark.parametrize(("transitions", "problems"), [
    ([fire("r", "region=br", 660), Transition("resolved", "r", "region=br", T0 + 900, 60)], []),
    ([fire("r", "region=br", 720)], []),
    ([fire("r", "region=br", 780)], [f"r fired on region=br first at {T0 + 780}, after {T0 + 720} (onset window + 2)"]),
    ([fire("r", "region=br", 540)], [f"r fired on region=br at {T0 + 540}, before the onset window {T0 + 600}"]),
    ([], ["r never fired on region=br"]),
    ([fire("r", "region=br", 660), fire("r", "all", 660)], [f"r fired on all at {T0 + 660}: not expected"]),
    ([fire("r", "region=br", 660), fire("side", "region=br", 900)], []),
    ([fire("r", "region=br", 660), fire("side", "region=us", 900)], [f"side fired on region=us at {T0 + 900}: not expected"]),
    # windows outside the run (another scenario's, before or after it) do not count
    ([fire("r", "region=br", 660), fire("x", "all", -60), fire("x", "all", 1200)], []),
])
def test_check_transitions(transitions: list[Transition], problems: list[str]) -> None:
    t = truth([Expected("r", ["region=br"])], [Expected("side", ["region=br"], "why")])
    assert check_transitions(t, transitions) == problems


def test_a_clean_truth_accepts_no_alert_at_all() -> None:
    t = truth([], onset=None)
    assert t.window_range() == (T0, T0 + 1200)
    assert check_transitions(t, []) == []
    assert check_transitions(t, [fire("r", "all", 60)]) == [f"r fired on all at {T0 + 60}: not expected"]


def test_truth_round_trips_through_json(tmp_path: Path) -> None:
    t = truth([Expected("r", ["region=br"])], [Expected("side", ["region=br"], "why")])
    t.write(tmp_path / "t.json")
    assert Truth.load(tmp_path / "t.json") == t
