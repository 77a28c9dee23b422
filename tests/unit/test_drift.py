"""Drift detectors (DESIGN §6): quiet on stationary streams, quick on real changes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from evaluators.drift import Adwin, DriftBank, Kswin, PageHinkley


def bernoulli(rng: np.random.Generator, p: float, n: int) -> list[float]:
    return (rng.random(n) < p).astype(float).tolist()


def first_alarm(detector: Adwin | PageHinkley, stream: list[float]) -> int | None:
    for i, x in enumerate(stream):
        if detector.update(x):
            return i
    return None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adwin_catches_an_error_jump_and_is_quiet_when_stationary(seed: int) -> None:
    rng = np.random.default_rng(seed)
    assert first_alarm(Adwin(), bernoulli(rng, 0.02, 20_000)) is None
    stream = bernoulli(rng, 0.02, 3_000) + bernoulli(rng, 0.30, 2_000)
    alarm = first_alarm(Adwin(), stream)
    assert alarm is not None and 3_000 <= alarm <= 3_000 + 300


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_page_hinkley_catches_fallback_going_up(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    assert first_alarm(PageHinkley(), bernoulli(rng, 0.10, 20_000)) is None
    stream = bernoulli(rng, 0.10, 3_000) + bernoulli(rng, 0.25, 3_000)  # over 1.5 × plan
    alarm = first_alarm(PageHinkley(), stream)
    assert alarm is not None and 3_000 <= alarm <= 3_000 + 1_000


def test_page_hinkley_ignores_fallback_going_down() -> None:
    rng = np.random.default_rng(7)
    stream = bernoulli(rng, 0.30, 3_000) + bernoulli(rng, 0.05, 3_000)
    assert first_alarm(PageHinkley(), stream) is None


def confidences(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    return np.clip(rng.normal(mean, 0.05, n), 0.0, 0.999)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kswin_on_window_samples(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    kswin = Kswin(seed=seed)
    quiet = [kswin.update(confidences(rng, 0.93, int(rng.integers(200, 3000)))) for _ in range(30)]
    assert not any(quiet)
    shifted = [kswin.update(confidences(rng, 0.86, 500)) for _ in range(3)]
    assert shifted[0] or shifted[1]  # within two windows of the shift
    assert kswin.update([]) is False


def test_kswin_costs_a_bounded_number_of_calls_per_window() -> None:
    kswin = Kswin(stat_size=60)
    kswin.update(np.linspace(0, 1, 100_000))
    assert kswin._d.n == 60  # one call per quantile, whatever the sample size


def test_drift_bank_is_bounded_to_its_slices() -> None:
    bank = DriftBank(["all", "region=br"])
    rng = np.random.default_rng(3)
    for x in bernoulli(rng, 0.02, 1_000):
        assert bank.update_slices("adwin", ["all", "region=br", "region=us", "device=ios"], x) == []
    assert len(bank) == 2
    assert bank.update("adwin", "region=us", 1.0) is False
    with pytest.raises(KeyError, match="unknown detector"):
        bank.update("cusum", "all", 1.0)
    drifting = []
    for x in bernoulli(rng, 0.4, 400):
        drifting += bank.update_slices("adwin", ["all", "region=br"], x)
    assert set(drifting) == {"all", "region=br"}


def test_drift_bank_state_round_trips() -> None:
    rng = np.random.default_rng(4)
    bank = DriftBank(["all"])
    for x in bernoulli(rng, 0.05, 2_000):
        bank.update("page_hinkley", "all", x)
    bank.update("kswin", "all", confidences(rng, 0.9, 400))
    copy = DriftBank.from_bytes(bank.to_bytes())
    tail = bernoulli(rng, 0.5, 500)
    assert [bank.update("page_hinkley", "all", x) for x in tail] == [
        copy.update("page_hinkley", "all", x) for x in tail
    ]
    with pytest.raises(TypeError):
        DriftBank.from_bytes(pickle.dumps({"not": "a bank"}))
