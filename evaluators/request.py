"""Per-request evaluation: one request, its responses, its labels, against the catalog.

This is the only place that interprets a request; window states only count what it says.
The result classes use slots and are not frozen (a frozen dataclass's ``__init__`` costs
several microseconds, and this runs for every request); treat them as read-only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from evaluators.catalog import Catalog, Verdict, claim_key
from evaluators.config import EvalConfig
from evaluators.inputs import LabelLike, RequestLike, ResponseLike

SECONDS_PER_DAY = 86_400.0
_UNRANKED = 1 << 30


@dataclass(slots=True)
class ModelView:
    """What one model's response amounts to for the metrics."""

    present: bool = False
    answered: bool = False
    error: str | None = None
    model: str = ""
    version: str = ""
    intent: str | None = None
    top1: float | None = None
    top2: float | None = None
    latency_ms: float | None = None
    checkable: bool = False
    wrong_claims: int = 0
    unknown_entity_claims: int = 0
    all_claims_correct: bool = True
    wrong_keys: frozenset[tuple[str, str, frozenset[str]]] = frozenset()

    @property
    def fact_error(self) -> bool:
        return self.wrong_claims > 0


ABSENT = ModelView()
_NO_KEYS: frozenset[tuple[str, str, frozenset[str]]] = frozenset()


def top_two(probs: Mapping[str, float], order: dict[str, int]) -> tuple[str, float, float]:
    """(top-1 class, top-1 prob, top-2 prob); ties go to the earlier configured class."""
    if len(probs) >= 2:  # the usual case: sort the values (in C), then name the unique maximum
        ranked = sorted(probs.values())
        best, second = ranked[-1], ranked[-2]
        if best != second:
            for name in probs:
                if probs[name] == best:
                    return name, best, max(second, 0.0)
    return _top_two_ties(probs, order)


def _top_two_ties(probs: Mapping[str, float], order: dict[str, int]) -> tuple[str, float, float]:
    """top_two when the top-1 probability is shared (or there are fewer than two classes)."""
    best = second = -1.0
    best_name = ""
    best_rank: tuple[int, str] = (_UNRANKED, "")
    for name, p in probs.items():
        if p > best:
            second, best, best_name, best_rank = best, p, name, (order.get(name, _UNRANKED), name)
        elif p == best:
            second = p
            rank = (order.get(name, _UNRANKED), name)
            if rank < best_rank:
                best_name, best_rank = name, rank
        elif p > second:
            second = p
    return best_name, best, max(second, 0.0)


def view_of(response: ResponseLike | None, catalog: Catalog, order: dict[str, int]) -> ModelView:
    if response is None:
        return ABSENT
    probs = response.intent_probs
    if response.error is not None or probs is None:
        return ModelView(present=True, error=response.error or "no intent_probs",
                         model=response.model, version=response.model_version,
                         latency_ms=response.latency_ms)
    intent, top1, top2 = top_two(probs, order)
    checkable = False
    wrong = unknown = 0
    all_correct = True
    wrong_keys: frozenset[tuple[str, str, frozenset[str]]] = _NO_KEYS
    claims = response.claims
    if claims:
        found = set()
        for claim in claims:
            verdict = catalog.check(claim)
            if verdict is Verdict.CORRECT:
                checkable = True
                continue
            all_correct = False
            if verdict is Verdict.WRONG:
                checkable = True
                wrong += 1
                found.add(claim_key(claim))
            elif verdict is Verdict.UNKNOWN_ENTITY:
                unknown += 1
        if found:
            wrong_keys = frozenset(found)
    # positional, in field order: this runs for every response
    return ModelView(True, True, None, response.model, response.model_version, intent, top1, top2,
                     response.latency_ms, checkable, wrong, unknown, all_correct, wrong_keys)


@dataclass(slots=True)
class RequestEvaluation:
    """Everything the metrics, the per-request row and the payload sampler need."""

    request_id: str
    ts: datetime
    slice: Mapping[str, str]
    multi_intent: bool
    teacher: ModelView
    student: ModelView
    replica: ModelView
    reference_intent: str | None
    reference_source: str | None
    production_reference: str | None
    """``request.reference.intent``, kept so a later label can re-derive the reference."""
    copied_claims: int
    names_entity: bool
    retrieval_miss: bool
    title_age_days: float | None
    new_title: bool
    dataset_age_days: float | None
    preferences: tuple[str, ...]
    fallback: bool | None
    fallback_naive: bool | None
    cost_usd: float

    @property
    def teacher_correct(self) -> bool | None:
        return _correct(self.teacher, self.reference_intent)

    @property
    def student_correct(self) -> bool | None:
        return _correct(self.student, self.reference_intent)

    @property
    def evidence_covered(self) -> bool:
        return not self.retrieval_miss

    def grounded(self, view: ModelView) -> bool | None:
        """Every claim checkable and correct, and every named entity covered by evidence."""
        if not view.answered:
            return None
        return view.all_claims_correct and not self.retrieval_miss


def _correct(view: ModelView, reference: str | None) -> bool | None:
    if not view.answered or reference is None:
        return None
    return view.intent == reference


def reference_of(
    production: str | None, teacher: ModelView, labels: Sequence[LabelLike]
) -> tuple[str | None, str | None]:
    """Latest human label's intent, else the request's reference, else the teacher's top-1."""
    if labels:
        human = [lb for lb in labels if lb.source == "human" and lb.intent is not None]
        if human:
            latest = max(enumerate(human), key=lambda il: (il[1].ts, il[0]))[1]
            return latest.intent, "human"
    if production is not None:
        return production, "request"
    if teacher.answered:
        return teacher.intent, "teacher"
    return None, None


def evaluate_request(
    request: RequestLike,
    teacher: ResponseLike | None,
    student: ResponseLike | None,
    catalog: Catalog,
    config: EvalConfig,
    labels: Sequence[LabelLike] = (),
    replica: ResponseLike | None = None,
) -> RequestEvaluation:
    """Evaluate one request with whatever responses and labels it has."""
    order = config.order
    t = view_of(teacher, catalog, order)
    s = view_of(student, catalog, order)
    r = view_of(replica, catalog, order) if replica is not None else ABSENT
    production = request.reference.intent if request.reference is not None else None
    reference, source = reference_of(production, t, labels)

    copied = 0
    if s.wrong_keys and t.answered:
        copied = _count_copied(student, t.wrong_keys, catalog) if student else 0

    ts = request.ts
    entities = request.entities
    names_entity = bool(entities)
    miss = False
    title_age = None
    if entities:
        covered = {ev.entity_id for ev in request.evidence if ev.entity_id}
        introduced_at = catalog.introduced_at
        for e in entities:
            if e not in covered:
                miss = True
            introduced = introduced_at(e)
            if introduced is not None:
                age = (ts - introduced).total_seconds() / SECONDS_PER_DAY
                if title_age is None or age < title_age:
                    title_age = age
    new_title = title_age is not None and title_age <= config.new_title_days

    dataset_age = None
    if student is not None and student.data_snapshot_ts is not None:
        dataset_age = (ts - student.data_snapshot_ts).total_seconds() / SECONDS_PER_DAY

    fallback = naive = None
    if s.answered:
        assert s.top1 is not None and s.top2 is not None
        fallback = (
            s.top1 < config.fallback_threshold
            or s.top1 - s.top2 < config.fallback_margin
            or s.intent in config.high_risk
        )
        naive = s.top1 < config.naive_fallback_threshold
    served_by_teacher = fallback is not False
    cost = (config.teacher_cost_per_1k if served_by_teacher else config.student_cost_per_1k) / 1000.0

    preferences = tuple(lb.preferred for lb in labels if lb.preferred is not None) if labels else ()
    # positional, in field order: this runs for every request
    return RequestEvaluation(
        request.request_id, ts, request.slice, request.multi_intent, t, s, r,
        reference, source, production, copied, names_entity, miss, title_age, new_title,
        dataset_age, preferences, fallback, naive, cost,
    )


def _count_copied(student: ResponseLike, teacher_wrong: frozenset, catalog: Catalog) -> int:
    """Student wrong claims (counted per claim) equal to a wrong claim of the teacher's."""
    return sum(
        1
        for claim in student.claims
        if catalog.check(claim) is Verdict.WRONG and claim_key(claim) in teacher_wrong
    )


def relabel(ev: RequestEvaluation, labels: Sequence[LabelLike]) -> RequestEvaluation:
    """The same evaluation with a new set of labels (they change reference and preferences)."""
    reference, source = reference_of(ev.production_reference, ev.teacher, labels)
    preferences = tuple(lb.preferred for lb in labels if lb.preferred is not None)
    return replace(ev, reference_intent=reference, reference_source=source, preferences=preferences)
