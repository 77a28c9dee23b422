"""Held-out evaluation of a candidate student through the metric library (DESIGN §5).

Each held-out request is evaluated by ``evaluators.request.evaluate_request`` with the
teacher's recorded answer and the candidate's probabilities as the student answer, folded
into a ``WindowState`` per slice and read out by ``evaluators.readout.read_metrics``: the
numbers mean what they mean on the monitor's dashboards (teacher_match, accuracy,
recall.C, escalation_recall, ece, brier, confident_error_rate, …).

Two promotion-score inputs cannot be measured for a candidate that has never served, and
get documented stand-ins (also written into ``metrics.json`` under ``definitions``):

* ``student_win_rate``: the log's ``preferred`` labels judged the *logged* student, not the
  candidate. Instead each held-out request with a reference is judged by it: candidate right
  and teacher wrong = student (1), both right or both wrong = tie (½), teacher right and
  candidate wrong = teacher (0). These verdicts go in as synthetic ``preferred`` labels, so
  the library's own formula computes the rate. Where the reference is the teacher's top-1,
  the candidate can at best tie.
* ``hallucination_rate``: an intent classifier asserts no catalog facts, so the library's
  rate would be 0 for every candidate. The stand-in is the library's
  ``confident_error_rate`` (top-1 ≥ 0.8 and wrong, over answers with a reference): a
  confidently wrong routing decision is the classifier's way of making things up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from evaluators.catalog import Catalog
from evaluators.config import EvalConfig
from evaluators.readout import read_metrics
from evaluators.request import RequestEvaluation, evaluate_request
from evaluators.sketch import QuantileSketch
from evaluators.slicing import slices_of
from evaluators.window_state import Layout, WindowState, contribution
from training.dataset import Example
from training.selection import promotion_score

REPORTED = (
    "support", "teacher_match", "accuracy", "teacher_accuracy", "escalation_recall", "ece",
    "teacher_ece", "brier", "confident_error_rate", "fallback_rate", "student_win_rate",
)
DEFINITIONS = {
    "student_win_rate": (
        "proxy: per held-out request with a reference, candidate right and teacher wrong = 1, "
        "both right or both wrong = 0.5, teacher right and candidate wrong = 0; computed by the "
        "metric library from these synthetic preference labels"),
    "hallucination_proxy": (
        "confident_error_rate of the metric library (top-1 >= 0.8 and wrong / answers with a "
        "reference): a classifier asserts no catalog facts, so hallucination_rate would be 0"),
    "promotion_score": (
        "0.35 teacher_match + 0.25 student_win_rate + 0.20 recall.safety_escalation "
        "- 0.10 hallucination_proxy - 0.10 ece (DESIGN §5 weights)"),
}
_UNKNOWN_DERIVED = ("freshness=", "multi_intent=")


@dataclass(frozen=True, slots=True)
class _Reference:
    intent: str


@dataclass(frozen=True, slots=True)
class _Request:
    request_id: str
    ts: datetime
    slice: Mapping[str, str]
    reference: _Reference | None
    multi_intent: bool
    entities: tuple[str, ...] = ()
    evidence: tuple[()] = ()


@dataclass(frozen=True, slots=True)
class _Response:
    intent_probs: Mapping[str, float] | None
    model: str = "candidate"
    model_version: str = "0"
    latency_ms: float = 0.0
    data_snapshot_ts: datetime | None = None
    error: str | None = None
    claims: tuple[()] = ()


@dataclass(frozen=True, slots=True)
class _Preference:
    request_id: str
    ts: datetime
    preferred: str
    source: str = "judge"
    intent: str | None = None


@dataclass
class HeldoutReport:
    """Metrics per slice, and the all-slice state's reliability bins."""

    slices: dict[str, dict[str, float]]
    reliability: list[tuple[float, float, int]] = field(default_factory=list)
    """(mean confidence, accuracy, count) per non-empty ECE bin of slice ``all``."""

    @property
    def overall(self) -> dict[str, float]:
        return self.slices.get("all", {})


def _reference_of(ex: Example) -> _Reference | None:
    # A human or production reference goes in as the request's reference; a teacher-derived
    # one is left for evaluate_request to re-derive from the teacher's answer.
    if ex.reference_intent and ex.reference_source in ("human", "request"):
        return _Reference(ex.reference_intent)
    return None


def _preference(ev: RequestEvaluation) -> str | None:
    if ev.reference_intent is None or not ev.student.answered:
        return None
    s_right = ev.student.intent == ev.reference_intent
    t_right = ev.teacher.answered and ev.teacher.intent == ev.reference_intent
    if s_right == t_right:
        return "tie"
    return "student" if s_right else "teacher"


def _slices(ev: RequestEvaluation, ex: Example, config: EvalConfig) -> list[str]:
    keys = slices_of(ev, config)
    if ex.new_title is None or ex.multi_intent is None:  # the source does not know these
        keys = [k for k in keys if not k.startswith(_UNKNOWN_DERIVED)]
    return keys


def evaluate_candidate(examples: Sequence[Example], probs: Sequence[Mapping[str, float] | None],
                       config: EvalConfig, slices: Sequence[str] | None = None) -> HeldoutReport:
    """Library metrics of a candidate whose answer to ``examples[i]`` is ``probs[i]``
    (None: no answer). ``slices``: keep only these slice keys (``all`` is always kept)."""
    if len(examples) != len(probs):
        raise ValueError(f"{len(examples)} examples but {len(probs)} predictions")
    layout = Layout(config)
    sketch = QuantileSketch()
    catalog = Catalog()
    states: dict[str, WindowState] = {}
    wanted = None if slices is None else {"all", *slices}
    for ex, p in zip(examples, probs):
        request = _Request(ex.request_id, ex.ts, ex.slice, _reference_of(ex), bool(ex.multi_intent))
        teacher = _Response(ex.teacher_probs) if ex.teacher_probs else None
        student = _Response(p) if p is not None else None
        ev = evaluate_request(request, teacher, student, catalog, config)
        verdict = _preference(ev)
        if verdict is not None:
            ev = evaluate_request(request, teacher, student, catalog, config,
                                  [_Preference(ex.request_id, ex.ts, verdict)])
        contrib = contribution(ev, layout, sketch)
        for key in _slices(ev, ex, config):
            if wanted is not None and key not in wanted:
                continue
            state = states.get(key)
            if state is None:
                state = states[key] = WindowState.empty(layout)
            state.add(contrib)
    out = {key: _metrics(state, layout, config) for key, state in sorted(states.items())}
    bins = _reliability(states["all"], layout) if "all" in states else []
    return HeldoutReport(out, bins)


def _metrics(state: WindowState, layout: Layout, config: EvalConfig) -> dict[str, float]:
    values = {name: mv.value for name, mv in read_metrics(state, layout).items()}
    out = {k: values[k] for k in REPORTED if k in values}
    if "support" in out:
        out["support"] = int(out["support"])
    for c in config.high_risk:
        for prefix in ("recall", "teacher_recall", "precision"):
            if f"{prefix}.{c}" in values:
                out[f"{prefix}.{c}"] = values[f"{prefix}.{c}"]
    if "confident_error_rate" in values:
        out["hallucination_proxy"] = values["confident_error_rate"]
    score = promotion_score(out)
    if score is not None:
        out["promotion_score"] = score
    return out


def _reliability(state: WindowState, layout: Layout) -> list[tuple[float, float, int]]:
    out = []
    for b in range(layout.config.ece_bins):
        n_i, conf_i, correct_i = layout.bin_slots("s", b)
        n = state.counts[n_i]
        if n > 0:
            out.append((float(state.counts[conf_i] / n), float(state.counts[correct_i] / n), int(n)))
    return out


def probs_dicts(matrix: np.ndarray, classes: Sequence[str]) -> list[dict[str, float]]:
    """Rows of class probabilities as the dicts the library reads."""
    return [dict(zip(classes, map(float, row))) for row in matrix]
