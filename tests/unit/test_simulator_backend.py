"""``worker --backend sim``: workers answer exactly as the simulated log did.

The requests of a simulated log go through the worker's own decoding and response building
(streams.worker) into the sim backend; the published responses must equal the log's teacher
and student answers field for field, so live mode on real workers meets the same truth file.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

import schemas
from distillwatch.cli import app
from schemas import ModelResponse
from schemas.errors import ConfigError
from simulator import scenarios
from simulator.generate import Simulation
from simulator.truth import truth_path
from streams.backends.sim import SimBackend
from streams.worker import build_response, decode_request


def write_log(folder: Path, name: str, seed: int, minutes: float, rate: float) -> tuple[Path, list[dict]]:
    sim = Simulation(scenarios.get(name), seed, minutes, rate)
    lines = list(sim.lines())
    log = folder / f"{name}.jsonl"
    log.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    sim.truth().write(truth_path(log))
    return log, [line for line in lines if "request" in line]


def published(backend: SimBackend, role: str, pairs: list[dict]) -> list[dict]:
    requests = [decode_request(orjson.dumps(p["request"])) for p in pairs]
    out = []
    for request, prediction in zip(requests, backend.predict(requests)):
        msg = build_response(request.request_id, role, prediction)
        msg.pop("schema_version")
        out.append(msg)
    return out


@pytest.mark.parametrize("name", ["copied_teacher_errors", "stale_student", "offline_vs_live"])
def test_workers_answer_as_the_log_did(name: str, tmp_path: Path) -> None:
    """Onset, target slice, copied claims and model swaps included (the onset is at 60 s)."""
    log, pairs = write_log(tmp_path, name, seed=4, minutes=2, rate=15)
    for role in ("teacher", "student"):
        backend = SimBackend.from_truth([truth_path(log)], role)
        assert published(backend, role, pairs) == [p[role] for p in pairs]


def test_one_worker_serves_several_scenarios(tmp_path: Path) -> None:
    a, pairs_a = write_log(tmp_path, "canary_slice", seed=1, minutes=1.5, rate=10)
    b, pairs_b = write_log(tmp_path, "calibration_break", seed=2, minutes=1.5, rate=10)
    backend = SimBackend.from_truth([truth_path(a), truth_path(b)], "student")
    mixed = [p for pair in zip(pairs_a, pairs_b) for p in pair]
    assert published(backend, "student", mixed) == [p["student"] for p in mixed]


def test_a_scenario_name_and_seed_give_the_default_run(tmp_path: Path) -> None:
    sim = Simulation(scenarios.get("fallback_explosion"), 3)
    pairs = [{"request": ex.ctx.request, "teacher": ex.teacher, "student": ex.student}
             for ex in (sim.exchange(sim.request_id(i), sim.offset_of(i)) for i in range(0, sim.requests, 97))]
    backend = SimBackend.from_scenario("fallback_explosion", 3, "teacher")
    assert published(backend, "teacher", pairs) == [p["teacher"] for p in pairs]


def test_a_foreign_request_gets_a_valid_deterministic_answer() -> None:
    backend = SimBackend.from_scenario("clean", 0, "student")
    raw = orjson.dumps({"request_id": "prod-77", "ts": "2026-11-01T00:03:00Z", "prompt":
                        "where is my order ORD-12345678", "slice": {"region": "eu"},
                        "entities": ["title-00003"], "evidence": [{"doc_id": "d", "entity_id": "title-00003"}]})
    first = published(backend, "student", [{"request": orjson.loads(raw)}])
    again = published(backend, "student", [{"request": orjson.loads(raw)}])
    assert first == again
    parsed = schemas.validate(ModelResponse, first[0])
    assert parsed.request_id == "prod-77" and parsed.role == "student"


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown scenario 'nope'"):
        SimBackend.from_scenario("nope", 0, "teacher")
    with pytest.raises(ConfigError, match="cannot read truth file"):
        SimBackend.from_truth([tmp_path / "missing.truth.json"], "teacher")
    with pytest.raises(ConfigError, match="teacher or student"):
        SimBackend.from_scenario("clean", 0, "teacher_replica")


def test_worker_cli_checks_sim_options_before_connecting(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["worker", "teacher", "--backend", "http", "--endpoint", "http://x", "--scenario", "clean"])
    assert done.exit_code != 0 and "apply to --backend sim only" in done.output
    done = runner.invoke(app, ["worker", "student", "--backend", "sim", "--scenario", "nope"])
    assert done.exit_code != 0 and "unknown scenario 'nope'" in done.output
    done = runner.invoke(app, ["worker", "student", "--backend", "sim", "--scenario", "clean",
                               "--sim-truth", str(tmp_path / "t.json")])
    assert done.exit_code != 0 and "drop --scenario" in done.output
