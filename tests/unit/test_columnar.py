"""The batch (columnar) counter rows and the batch fold equal their one-request definitions.

``contribution`` (one request, one counter vector) defines what a request adds to a window;
``ColumnarCounts.rows`` computes the same rows for a batch with numpy, and ``fold`` adds a
batch to its slices' states with one matrix product. Both must agree with the definitions
value for value, on random requests (errors, missing responses, claims the catalog cannot
check, ties between classes, labels naming classes outside the configured set, preferences).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluators import batch_fold
from evaluators.batch_fold import Batch, SliceIndex, fold
from evaluators.catalog import Catalog
from evaluators.columnar import ColumnarCounts
from evaluators.config import EvalConfig
from evaluators.request import RequestEvaluation, evaluate_request, top_two
from evaluators.sketch import QuantileSketch
from evaluators.window_state import Layout, WindowState, contribution
from schemas.messages import CatalogRecord, Label, ModelResponse, ShadowRequest

CONFIGS = [EvalConfig(), EvalConfig(high_risk=("faq", "returns"), ece_bins=7, confident_threshold=0.5)]
T0 = datetime(2026, 11, 1, tzinfo=UTC)
CATALOG = Catalog([
    CatalogRecord(entity_id="e1", title="e1", attributes={"format": ["paperback", "digital"]},
                  introduced_at=T0 - timedelta(days=20), updated_at=T0),
    CatalogRecord(entity_id="e2", title="e2", attributes={"format": "hardcover"},
                  introduced_at=T0 - timedelta(days=400), updated_at=T0),
])
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INTENTS = EvalConfig().intents


@st.composite
def responses(draw: st.DrawFn, role: str) -> ModelResponse | None:
    kind = draw(st.sampled_from(["answer", "answer", "answer", "tie", "error", "absent"]))
    if kind == "absent":
        return None
    top = draw(st.sampled_from(INTENTS))
    conf = draw(st.floats(0.12, 1.0))
    rest = (1.0 - conf) / (len(INTENTS) - 1)
    probs = {c: (conf if c == top else rest) for c in INTENTS}
    if kind == "tie":
        probs = {c: 1.0 / len(INTENTS) for c in INTENTS}
    claims = draw(st.lists(st.fixed_dictionaries({
        "entity_id": st.sampled_from(["e1", "e2", "ghost"]),
        "attribute": st.sampled_from(["format", "publisher"]),
        "value": st.sampled_from(["paperback", "hardcover", ["digital", "paperback"], ["hardcover"]]),
    }), max_size=3))
    return ModelResponse(
        request_id="r", ts=T0, role=role, model=role, model_version="1", intent_probs=probs,
        claims=claims, latency_ms=draw(st.sampled_from([0.0, 1e-12, 0.5, 3.0, 900.0, 1e5])),
        error="timeout" if kind == "error" else None,
        data_snapshot_ts=T0 - timedelta(days=draw(st.floats(0, 900))) if draw(st.booleans()) else None,
    )


@st.composite
def evaluations(draw: st.DrawFn, config: EvalConfig) -> RequestEvaluation:
    entities = draw(st.lists(st.sampled_from(["e1", "e2", "ghost"]), max_size=2))
    request = ShadowRequest(
        request_id="r", ts=T0 + timedelta(seconds=draw(st.integers(0, 3600))), prompt="p",
        slice=draw(st.dictionaries(st.sampled_from(["region", "device"]), st.sampled_from(["eu", "us"]))),
        entities=entities,
        evidence=[{"doc_id": "d", "entity_id": e} for e in entities if draw(st.booleans())],
        reference={"intent": draw(st.sampled_from(INTENTS)), "source": "crm"} if draw(st.booleans()) else None,
        multi_intent=draw(st.booleans()),
    )
    labels = [Label(request_id="r", ts=T0, source="judge", preferred=p)
              for p in draw(st.lists(st.sampled_from(["student", "teacher", "tie"]), max_size=2))]
    if draw(st.booleans()):  # a human label may name a class the configuration does not know
        labels.append(Label(request_id="r", ts=T0, source="human",
                            intent=draw(st.sampled_from([*INTENTS, "not_configured"]))))
    return evaluate_request(request, draw(responses("teacher")), draw(responses("student")), CATALOG,
                            config, labels, draw(responses("teacher_replica")))


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "other-classes"])
@SETTINGS
@given(data=st.data())
def test_columnar_rows_equal_contribution_rows(config: EvalConfig, data: st.DataObject) -> None:
    layout = Layout(config)
    evs = data.draw(st.lists(evaluations(config), min_size=1, max_size=12))
    signs = data.draw(st.lists(st.sampled_from([1, -1]), min_size=len(evs), max_size=len(evs)))
    counts, keys = ColumnarCounts(layout).rows(evs, signs)
    sketch = QuantileSketch()
    for i, (ev, sign) in enumerate(zip(evs, signs, strict=True)):
        one = contribution(ev, layout, sketch)
        assert np.array_equal(counts[i], sign * one.counts), [
            layout.names[j] for j in np.flatnonzero(counts[i] != sign * one.counts)]
        assert tuple(keys[i]) == one.keys


SLICE_LISTS = [["all"], ["all", "region=eu"], ("all", "region=eu", "device=us"), ["region=eu", "all"],
               ["all", "all"]]


@pytest.mark.parametrize(("max_combos", "dense_cells", "held_cells"), [
    (batch_fold.MAX_COMBOS, batch_fold.DENSE_CELLS, None),  # sketch keys added per batch
    (batch_fold.MAX_COMBOS, batch_fold.DENSE_CELLS, 10**9),  # ... merged over all batches first
    (1, 1, 3),  # index starting over every batch; keys sorted, not counted densely; merged often
])
@SETTINGS
@given(data=st.data())
def test_batch_fold_equals_adding_one_by_one(max_combos: int, dense_cells: int, held_cells: int | None,
                                             data: st.DataObject) -> None:
    """Evaluations and ready contributions, added and taken back, to repeated slice lists."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_fold, "MAX_COMBOS", max_combos)
        patch.setattr(batch_fold, "DENSE_CELLS", dense_cells)
        pending = None
        if held_cells is not None:
            patch.setattr(batch_fold.PendingKeys, "MAX_CELLS", held_cells)
            pending = batch_fold.PendingKeys()
        _fold_and_compare(data, pending)


def _fold_and_compare(data: st.DataObject, pending: batch_fold.PendingKeys | None) -> None:
    config = CONFIGS[0]
    layout = Layout(config)
    sketch = QuantileSketch()
    index = SliceIndex()
    folded: dict[str, WindowState] = {}
    expected: dict[str, WindowState] = {}
    for _ in range(data.draw(st.integers(1, 3))):  # several batches into the same states
        batch = Batch(64)
        for ev in data.draw(st.lists(evaluations(config), min_size=1, max_size=10)):
            slices = data.draw(st.sampled_from(SLICE_LISTS))
            sign = data.draw(st.sampled_from([1, 1, -1]))
            one = contribution(ev, layout, sketch)
            one = one if sign == 1 else one.negated()
            if data.draw(st.booleans()):
                batch.append_evaluation(slices, ev, sign)
            else:
                batch.append(slices, one)
            for name in dict.fromkeys(slices):  # a slice listed twice counts once
                expected.setdefault(name, WindowState.empty(layout)).add(one)
        fold(folded, batch, layout, ColumnarCounts(layout), index, pending)
    if pending is not None:
        pending.flush()
    assert folded.keys() == expected.keys()
    for name, state in expected.items():
        got = folded[name]
        assert np.allclose(got.counts, state.counts, rtol=1e-12, atol=1e-12), name
        for a, b in zip(got.sketches(), state.sketches(), strict=True):
            assert a.to_dict() == b.to_dict() and a.count == b.count, name


def _top_two_by_sorting(probs: dict[str, float], order: dict[str, int]) -> tuple[str, float, float]:
    """Independent definition: highest probability, ties to the earlier configured class
    (unconfigured names after every configured one, by name); second = next value down."""
    ranked = sorted(probs, key=lambda c: (-probs[c], order.get(c, 1 << 30), c))
    values = sorted(probs.values(), reverse=True)
    return ranked[0], values[0], values[1] if len(values) > 1 else 0.0


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([*INTENTS, "zzz", "aaa"]), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9]),
                       min_size=1))
def test_top_two_with_and_without_ties(probs: dict[str, float]) -> None:
    order = EvalConfig().order
    assert top_two(probs, order) == _top_two_by_sorting(probs, order)


def test_sketch_keys_equal_the_sketch_even_on_bucket_boundaries() -> None:
    """numpy's log may differ from math.log in the last bit: values at (and next to) bucket
    boundaries gamma^k must still get QuantileSketch.key's bucket."""
    sketch = QuantileSketch()
    gamma = math.exp(sketch.log_gamma)
    values = [0.0, 1e-12, sketch.min_value, 0.5, 1.0, 3.0, 900.0, 1e9]
    for k in range(-300, 3000, 7):
        edge = gamma**k
        values += [edge, math.nextafter(edge, 0.0), math.nextafter(edge, math.inf)]
    got = ColumnarCounts(Layout(CONFIGS[0]))._keys(np.array(values).reshape(-1, 1))
    for value, key in zip(values, got[:, 0].tolist(), strict=True):
        want = sketch.key(value)
        assert key == (batch_fold.ZERO_BUCKET if want is None else want), value
    nothing = ColumnarCounts(Layout(CONFIGS[0]))._keys(np.array([[math.nan]]))
    assert nothing[0, 0] == batch_fold.NO_VALUE
