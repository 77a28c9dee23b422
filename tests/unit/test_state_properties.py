"""Property tests of the mergeable window state, the quantile sketch and the Wilson interval.

States must merge like sums (associative, commutative, split anywhere and merge = one pass),
survive serialization, and the sketch must stay within 1 % of numpy's exact quantile.
"""

from __future__ import annotations

import math
import pickle
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from evaluators.catalog import Catalog
from evaluators.config import EvalConfig
from evaluators.intervals import wilson
from evaluators.readout import read_metrics
from evaluators.request import evaluate_request
from evaluators.sketch import QuantileSketch
from evaluators.window_state import Contribution, Layout, WindowState, contribution
from schemas.messages import CatalogRecord, Label, ModelResponse, ShadowRequest

CONFIG = EvalConfig()
LAYOUT = Layout(CONFIG)
KEYS = QuantileSketch()
T0 = datetime(2026, 11, 1, tzinfo=UTC)
CATALOG = Catalog([CatalogRecord(entity_id="e1", title="e1", attributes={"format": ["paperback", "digital"]},
                                 introduced_at=T0 - timedelta(days=20), updated_at=T0)])
FLOAT_COUNTERS = np.array([n == "brier_sum" or "_bin_conf." in n for n in LAYOUT.names])
"""Counters that sum non-integers (confidences, squared errors); all others count events."""

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- contributions from random requests --------------------------------------------------------

intents = st.sampled_from(CONFIG.intents)


@st.composite
def responses(draw: st.DrawFn, role: str) -> ModelResponse | None:
    kind = draw(st.sampled_from(["answer", "answer", "answer", "error", "absent"]))
    if kind == "absent":
        return None
    top = draw(intents)
    conf = draw(st.floats(0.12, 1.0))
    rest = (1.0 - conf) / (len(CONFIG.intents) - 1)
    claims = draw(st.lists(st.fixed_dictionaries({
        "entity_id": st.sampled_from(["e1", "ghost"]),
        "attribute": st.sampled_from(["format", "publisher"]),
        "value": st.sampled_from(["paperback", "hardcover", ["digital", "paperback"], ["hardcover"]]),
    }), max_size=3))
    return ModelResponse(
        request_id="r", ts=T0, role=role, model=role, model_version="1",
        intent_probs={c: (conf if c == top else rest) for c in CONFIG.intents},
        claims=claims,
        latency_ms=draw(st.floats(0.0, 1e5, allow_nan=False)),
        error="timeout" if kind == "error" else None,
        data_snapshot_ts=T0 - timedelta(days=draw(st.floats(0, 900))) if draw(st.booleans()) else None,
    )


@st.composite
def contributions(draw: st.DrawFn) -> Contribution:
    entities = draw(st.lists(st.sampled_from(["e1", "ghost"]), max_size=2))
    request = ShadowRequest(
        request_id="r", ts=T0 + timedelta(seconds=draw(st.integers(0, 3600))), prompt="p", slice={},
        entities=entities,
        evidence=[{"doc_id": "d", "entity_id": e} for e in entities if draw(st.booleans())],
        reference={"intent": draw(intents), "source": "crm"} if draw(st.booleans()) else None,
        multi_intent=draw(st.booleans()),
    )
    labels = [Label(request_id="r", ts=T0, source="judge", preferred=p)
              for p in draw(st.lists(st.sampled_from(["student", "teacher", "tie"]), max_size=2))]
    ev = evaluate_request(request, draw(responses("teacher")), draw(responses("student")), CATALOG, CONFIG,
                          labels, draw(responses("teacher_replica")))
    return contribution(ev, LAYOUT, KEYS)


def fold(parts: list[Contribution]) -> WindowState:
    state = WindowState.empty(LAYOUT)
    for c in parts:
        state.add(c)
    return state


def assert_same(a: WindowState, b: WindowState, exact_floats: bool = False) -> None:
    """Integer counters exactly equal, float sums allclose (or exact), sketches equal."""
    assert np.array_equal(a.counts[~FLOAT_COUNTERS], b.counts[~FLOAT_COUNTERS])
    if exact_floats:
        assert np.array_equal(a.counts[FLOAT_COUNTERS], b.counts[FLOAT_COUNTERS])
    else:
        assert np.allclose(a.counts[FLOAT_COUNTERS], b.counts[FLOAT_COUNTERS], rtol=1e-12, atol=1e-12)
    for name in ("teacher_latency", "student_latency", "dataset_age"):
        assert getattr(a, name).to_dict() == getattr(b, name).to_dict(), name


def test_float_counter_mask_names_real_counters() -> None:
    """brier_sum plus the teacher's and the student's per-bin confidence sums."""
    assert FLOAT_COUNTERS.sum() == 1 + 2 * CONFIG.ece_bins


@SETTINGS
@given(st.lists(contributions(), max_size=8), st.lists(contributions(), max_size=8),
       st.lists(contributions(), max_size=8))
def test_merge_is_associative(a: list, b: list, c: list) -> None:
    left = fold(a).merge(fold(b)).merge(fold(c))
    right = fold(a).merge(fold(b).merge(fold(c)))
    assert_same(left, right)


@SETTINGS
@given(st.lists(contributions(), max_size=10), st.lists(contributions(), max_size=10))
def test_merge_is_commutative(a: list, b: list) -> None:
    assert_same(fold(a).merge(fold(b)), fold(b).merge(fold(a)), exact_floats=True)


@SETTINGS
@given(st.lists(contributions(), max_size=20), st.data())
def test_split_anywhere_then_merge_equals_one_pass(stream: list, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, len(stream)))
    one_pass = fold(stream)
    merged = fold(stream[:k]).merge(fold(stream[k:]))
    assert_same(one_pass, merged)
    assert one_pass.counts[LAYOUT["support"]] == len(stream)
    # and the metrics read from either agree
    m1, m2 = read_metrics(one_pass, LAYOUT), read_metrics(merged, LAYOUT)
    assert m1.keys() == m2.keys()
    for name in m1:
        assert math.isclose(m1[name].value, m2[name].value, rel_tol=1e-9, abs_tol=1e-12), name


@SETTINGS
@given(st.lists(contributions(), max_size=12))
def test_dict_and_pickle_round_trip(stream: list) -> None:
    state = fold(stream)
    again = WindowState.from_dict(state.to_dict(), LAYOUT)
    assert again == state
    assert_same(again, state, exact_floats=True)
    via_json = WindowState.from_dict(orjson.loads(orjson.dumps(state.to_dict())), LAYOUT)
    assert via_json == state
    unpickled = pickle.loads(pickle.dumps(state))
    assert unpickled == state
    for name in ("teacher_latency", "student_latency", "dataset_age"):
        for q in (0.5, 0.95, 0.99):
            assert getattr(unpickled, name).quantile(q) == getattr(state, name).quantile(q)
            assert getattr(via_json, name).quantile(q) == getattr(state, name).quantile(q)


# --- the quantile sketch -----------------------------------------------------------------------


def draw_sample(kind: str, seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "lognormal":
        return rng.lognormal(mean=math.log(90), sigma=0.8, size=n)
    if kind == "uniform":
        return rng.uniform(1e-3, 5_000.0, size=n)
    return (rng.pareto(1.1, size=n) + 1.0) * 10.0  # heavy tail


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["lognormal", "uniform", "heavy"]), st.integers(0, 2**32 - 1), st.integers(1, 3000))
def test_sketch_quantiles_within_one_percent_of_numpy(kind: str, seed: int, n: int) -> None:
    x = draw_sample(kind, seed, n)
    sketch = QuantileSketch().extend(x.tolist())
    assert sketch.count == n
    for q in (0.5, 0.95, 0.99):
        exact = float(np.quantile(x, q, method="lower"))
        assert abs(sketch.quantile(q) - exact) <= 0.01 * exact, (q, exact)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-3, 1e9), min_size=1, max_size=300))
def test_sketch_quantiles_on_arbitrary_positive_values(values: list[float]) -> None:
    sketch = QuantileSketch().extend(values)
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        exact = float(np.quantile(np.array(values), q, method="lower"))
        assert abs(sketch.quantile(q) - exact) <= 0.01 * exact


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1e7), max_size=300), st.data())
def test_sketch_merge_of_split_equals_whole(values: list[float], data: st.DataObject) -> None:
    k = data.draw(st.integers(0, len(values)))
    whole = QuantileSketch().extend(values)
    merged = QuantileSketch().extend(values[:k]).merge(QuantileSketch().extend(values[k:]))
    assert merged.to_dict() == whole.to_dict()
    assert merged.count == whole.count == len(values)
    back = QuantileSketch.from_dict(orjson.loads(orjson.dumps(whole.to_dict())))
    assert back.to_dict() == whole.to_dict()
    assert pickle.loads(pickle.dumps(whole)).to_dict() == whole.to_dict()
    if values:
        assert back.quantile(0.5) == whole.quantile(0.5)


def test_sketch_empty_and_zero_values() -> None:
    empty = QuantileSketch()
    assert empty.count == 0 and empty.quantile(0.5) is None
    zeros = QuantileSketch().extend([0.0, 0.0, 0.0, 5.0])
    assert zeros.quantile(0.5) == 0.0  # rank floor(0.5·3) = 1 → 0
    assert abs(zeros.quantile(1.0) - 5.0) <= 0.05


# --- Wilson interval ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**6), st.data())
def test_wilson_matches_scipy(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, n))
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson(k, n)
    assert abs(lo - max(0.0, ci.low)) <= 1e-9
    assert abs(hi - min(1.0, ci.high)) <= 1e-9
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_hand_values() -> None:
    # n = 10, k = 0: (0 + z²/2 ± z·sqrt(z²/4)) / (10 + z²) → [0, z²/(10 + z²)] = [0, 0.27754]
    z2 = 1.959963984540054**2
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and math.isclose(hi, z2 / (10 + z2), rel_tol=1e-12)
    lo, hi = wilson(10, 10)
    assert hi == 1.0 and math.isclose(lo, 10 / (10 + z2), rel_tol=1e-12)
