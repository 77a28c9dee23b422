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


def _window_of_requests(rng: np.random.Generator, n: int, error_rate: float, fallback_rate: float
                        ) -> list[tuple[dict[str, str], int | None, int, float | None]]:
    regions, devices = ("eu", "us", "jp"), ("ios", "web")
    out: list[tuple[dict[str, str], int | None, int, float | None]] = []
    for _ in range(n):
        slice_map = {"region": str(rng.choice(regions)), "device": str(rng.choice(devices))}
        correct = None if rng.random() < 0.05 else int(rng.random() >= error_rate)
        out.append((slice_map, correct, int(rng.random() < fallback_rate), float(rng.random())))
    return out


def test_drift_watch_feeds_each_slice_in_request_order_whether_or_not_maps_are_shared() -> None:
    """The watch looks detectors up once per slice map: requests sharing one map object (as
    the alerter reads them) and requests with equal maps of their own give the same events,
    and both match detectors fed directly, request by request, per slice."""
    from streams.alerting.drift_watch import DriftWatch

    rng = np.random.default_rng(5)
    windows = [_window_of_requests(rng, 3000, 0.1 if w < 4 else 0.4, 0.1 if w < 4 else 0.3)
               for w in range(8)]
    shared_maps: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    shared = [[(shared_maps.setdefault(tuple(m.items()), m), c, f, t) for m, c, f, t in w] for w in windows]
    own = [[(dict(m), c, f, t) for m, c, f, t in w] for w in windows]
    a, b = DriftWatch(hold_windows=3), DriftWatch(hold_windows=3)
    events_a = [a.step(i * 60, 60, w) for i, w in enumerate(shared)]
    events_b = [b.step(i * 60, 60, w) for i, w in enumerate(own)]
    assert events_a == events_b

    # Reference: one ADWIN and one Page-Hinkley per slice, fed directly; the windows in which
    # each first detects must be where the watch opened its alerts.
    adwin: dict[str, Adwin] = {}
    ph: dict[str, PageHinkley] = {}
    first: dict[tuple[str, str], int] = {}
    for i, w in enumerate(windows):
        for slice_map, correct, fallback, _ in w:
            for s in ["all"] + [f"{k}={v}" for k, v in sorted(slice_map.items())]:
                if correct is not None and adwin.setdefault(s, Adwin()).update(1 - correct):
                    first.setdefault(("adwin", s), i)
                if ph.setdefault(s, PageHinkley()).update(fallback):
                    first.setdefault(("page_hinkley", s), i)
    opened = {}
    for i, evs in enumerate(events_a):
        for e in evs:
            if e.kind == "firing" and e.detector != "kswin":
                opened.setdefault((e.detector, e.slice), i)
    assert opened == first
    assert any(d == "page_hinkley" for d, _ in first)  # the jump is caught at all
