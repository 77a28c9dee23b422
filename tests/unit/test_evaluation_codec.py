"""A request evaluation survives its row form: the counters rebuilt from the row are equal."""

from __future__ import annotations

import numpy as np
import orjson

from evaluators.catalog import Catalog
from evaluators.config import EvalConfig
from evaluators.evaluation_codec import from_record, to_record
from evaluators.request import evaluate_request, relabel
from evaluators.sketch import QuantileSketch
from evaluators.slicing import slices_of
from evaluators.window_state import Layout, contribution
from schemas.fastpath import parse_line_fast
from simulator.traffic import TrafficConfig, World

CONFIG = EvalConfig()
LAYOUT = Layout(CONFIG)


def evaluations() -> list:
    catalog = Catalog()
    out = []
    for line in World(TrafficConfig(pairs=600, label_share=0.3, preference_share=0.3,
                                    missing_response=0.05), seed=4).lines():
        parsed = parse_line_fast(orjson.dumps(line))
        if parsed.catalog is not None:
            catalog.apply(parsed.catalog)
        elif parsed.request is not None:
            out.append(evaluate_request(parsed.request, parsed.teacher, parsed.student, catalog, CONFIG))
    return out


def test_row_round_trip_gives_the_same_counters_and_slices() -> None:
    sketch = QuantileSketch()
    for ev in evaluations():
        back = from_record(orjson.loads(orjson.dumps(to_record(ev))))
        a, b = contribution(ev, LAYOUT, sketch), contribution(back, LAYOUT, sketch)
        assert np.array_equal(a.counts, b.counts) and a.keys == b.keys, ev.request_id
        assert slices_of(ev, CONFIG) == slices_of(back, CONFIG)
        assert back.ts == ev.ts


def test_relabel_after_the_round_trip_equals_relabel_before() -> None:
    """What a restarted evaluator does with a late label matches what it would have done."""
    from schemas.fastpath import Label
    import msgspec

    label = msgspec.json.decode(
        b'{"request_id":"x","ts":"2026-11-02T00:00:00Z","source":"human","intent":"refund_fraud"}',
        type=Label)
    sketch = QuantileSketch()
    for ev in evaluations()[:200]:
        back = from_record(orjson.loads(orjson.dumps(to_record(ev))))
        a = contribution(relabel(ev, [label]), LAYOUT, sketch)
        b = contribution(relabel(back, [label]), LAYOUT, sketch)
        assert np.array_equal(a.counts, b.counts)
        assert relabel(back, [label]).reference_intent == "refund_fraud"
