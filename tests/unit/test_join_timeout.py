"""A request that arrives behind the watermark still joins the answers sent right after it.

Found by the fault suite (F5): the join timed out at the first batch boundary after such a
request came (its time was already behind the watermark), so its teacher and student
answers, one poll later, were dropped as late and the request counted as unanswered in the
windows still open to it (here the hour window; the minute window had closed).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from evaluators.catalog import Catalog
from evaluators.config import EvalConfig
from evaluators.window_state import Layout
from schemas.fastpath import parse_message
from streams.evaluator import snapshot
from streams.evaluator.partition import Evaluated, PartitionState

CONFIG = EvalConfig()
T0 = datetime(2026, 11, 1, 0, 10, tzinfo=UTC)
PROBS = {c: (0.92 if c == "faq" else 0.01) for c in CONFIG.intents}


def msg(kind: str, role: str | None, rid: str, at: datetime) -> object:
    ts = at.isoformat().replace("+00:00", "Z")
    if kind == "request":
        body: dict[str, object] = {"request_id": rid, "ts": ts, "prompt": "p", "slice": {}}
    else:
        body = {"request_id": rid, "ts": ts, "role": role, "model": "m", "model_version": "1",
                "intent_probs": PROBS, "latency_ms": 10.0}
    return parse_message(kind, orjson.dumps(body))


def feed(state: PartitionState, rid: str, at: datetime, out: list[Evaluated], split: bool) -> None:
    """A request and its answers; with ``split`` a batch boundary (advance) falls between."""
    catalog = Catalog()
    state.on_request(msg("request", None, rid, at), catalog, out)
    if split:
        state.advance(catalog, out)
    for role in ("teacher", "student"):
        state.on_response(msg("response", role, rid, at), catalog, out)
    state.advance(catalog, out)


def new_state() -> PartitionState:
    return PartitionState(CONFIG, Layout(CONFIG), [60, 3600], 120.0, 1800.0)


def test_out_of_order_request_joins_answers_that_follow_it() -> None:
    state, out = new_state(), []
    for i in range(0, 601, 10):  # in order up to T0 + 600 s: the watermark is T0 + 480 s
        feed(state, f"r{i}", T0 + timedelta(seconds=i), out, split=False)
    # 300 s behind the newest event: late for the minute windows, inside the hour window.
    feed(state, "behind", T0 + timedelta(seconds=300), out, split=True)
    evaluated = [e for e in out if e.evaluation.request_id == "behind"]
    assert len(evaluated) == 1 and evaluated[0].late
    ev = evaluated[0].evaluation
    assert ev.teacher.present and ev.student.present
    assert state.counters["late_responses"] == 0


def test_its_join_deadline_survives_a_snapshot() -> None:
    state, out = new_state(), []
    for i in range(0, 601, 10):
        feed(state, f"r{i}", T0 + timedelta(seconds=i), out, split=False)
    state.on_request(msg("request", None, "behind", T0 + timedelta(seconds=300)), Catalog(), out)
    restored = new_state()
    snapshot.load(snapshot.dump(state, {}), restored)
    restored.advance(Catalog(), out)
    assert "behind" in restored.pending  # still waiting for its answers
