"""Simulated teacher and student: confidence profiles, answers, facts and latency.

Calibration is measured with an independent numpy ECE (15 equal bins) over many draws; the
hand-computed figures come from the profiles' definitions.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import replace

import numpy as np
import pytest

import schemas
from schemas import ModelResponse
from simulator import scenarios
from simulator.generate import Simulation
from simulator.models import Calibrated, Decoupled, Shifted, respond, wrong_value
from simulator.scenarios import STUDENT, TEACHER

DRAWS = 40_000


def ece(correct: np.ndarray, conf: np.ndarray, bins: int = 15) -> float:
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    gap = np.bincount(idx, weights=correct - conf, minlength=bins)
    return float(np.abs(gap).sum() / len(conf))


def draws(profile: object, accuracy: float) -> tuple[np.ndarray, np.ndarray]:
    rng = random.Random(7)
    out = [profile.draw(rng, accuracy) for _ in range(DRAWS)]  # type: ignore[attr-defined]
    return np.array([c for c, _ in out], float), np.array([p for _, p in out])


@pytest.mark.parametrize("accuracy", [0.6, 0.9, 0.975])
def test_calibrated_confidence_matches_accuracy(accuracy: float) -> None:
    correct, conf = draws(Calibrated(10), accuracy)
    assert abs(correct.mean() - accuracy) < 0.01
    assert abs(conf.mean() - correct.mean()) < 0.01
    assert ece(correct, conf) < 0.02


def test_shifted_is_underconfident_by_the_mean_shift() -> None:
    correct, conf = draws(Shifted(0.0, 0.4), 0.975)
    assert abs(correct.mean() - conf.mean() - 0.2) < 0.02
    assert ece(correct, conf) > 0.15


def test_decoupled_keeps_accuracy_but_breaks_calibration() -> None:
    """Hand computation: 10 % wrong at ~0.945, 45 % right at ~0.76, 45 % right at ~0.96:
    bin [0.733, 0.8) holds 0.45 × (1 − 0.76) = 0.108; the two top bins hold
    |0.45 × 0.04 − 0.067 × 0.955| + 0.033 × 0.915 ≈ 0.094."""
    correct, conf = draws(Decoupled(), 0.90)
    assert abs(correct.mean() - 0.90) < 0.01
    assert abs(((correct == 0) & (conf >= 0.8)).mean() - 0.10) < 0.01
    assert 0.17 < ece(correct, conf) < 0.23
    assert (conf < 0.72).sum() == 0  # it never falls back to the teacher


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation(scenarios.get("clean"), seed=9, minutes=5, rate=20)


def test_responses_keep_the_contract_and_their_probabilities(sim: Simulation) -> None:
    for i in range(2000):
        ex = sim.exchange(sim.request_id(i), sim.offset_of(i))
        for msg in (ex.teacher, ex.student):
            parsed = schemas.validate(ModelResponse, msg)
            if parsed.error is None:
                assert parsed.intent_probs is not None
                assert math.isclose(sum(parsed.intent_probs.values()), 1.0, abs_tol=1e-4)
                top = max(parsed.intent_probs.values())
                assert sorted(parsed.intent_probs.values())[-2] < top


def test_wrong_facts_contradict_the_catalog_and_copies_match_exactly(sim: Simulation) -> None:
    teacher = replace(TEACHER, fact_error=1.0)
    copier = replace(STUDENT, copy_teacher_error=1.0)
    seen = 0
    for i in range(3000):
        ctx = sim.exchange(sim.request_id(i), sim.offset_of(i)).ctx
        if ctx.title is None or not ctx.asks_fact:
            continue
        rng = random.Random(i)
        t = respond(teacher, ctx, rng)
        if "error" in t:
            continue
        s = respond(copier, ctx, rng, t["claims"])
        for claim in t["claims"]:
            value = claim["value"]
            if claim["attribute"] == "format":
                assert not set(value) <= set(ctx.title.formats)
            else:
                assert value != ctx.title.in_stock
            assert value == wrong_value(ctx.title, claim["attribute"])
        if "error" not in s:
            assert s["claims"] == t["claims"]
            seen += 1
    assert seen > 300


def test_latency_median_follows_the_device_factor(sim: Simulation) -> None:
    by_device: dict[str, list[float]] = {}
    for i in range(6000):
        ex = sim.exchange(sim.request_id(i), sim.offset_of(i))
        by_device.setdefault(ex.ctx.slice["device"], []).append(ex.student["latency_ms"])
    assert abs(statistics.median(by_device["ios"]) / STUDENT.latency_ms - 1) < 0.05
    lowmem = statistics.median(by_device["android-lowmem"]) / STUDENT.latency_ms
    assert abs(lowmem - STUDENT.device_factor["android-lowmem"]) < 0.12


def test_student_carries_its_data_snapshot(sim: Simulation) -> None:
    ex = sim.exchange(sim.request_id(0), 0.0)
    snapshot = ex.student["data_snapshot_ts"]
    assert snapshot == "2026-10-18T00:00:00.000Z"  # 14 days before the run start
    assert "data_snapshot_ts" not in ex.teacher
