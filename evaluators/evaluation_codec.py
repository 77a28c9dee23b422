"""A request evaluation as a flat row (``shadow_evaluations``) and back.

The row is what SQL forensics reads; it also holds everything needed to rebuild the
evaluation, so a label that arrives later can be applied without the original messages
(which are never stored raw).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from evaluators.request import ModelView, RequestEvaluation


_VIEW_FIELDS = ("model", "version", "present", "answered", "error", "intent", "top1", "top2",
                "latency_ms", "checkable", "wrong_claims", "unknown_entity", "all_claims_correct")
_VIEW_KEYS = {prefix: tuple(f"{prefix}_{name}" for name in _VIEW_FIELDS)
              for prefix in ("teacher", "student")}
"""Column names per model, built once: formatting them per call cost ~3 µs a view."""


def _view_from(prefix: str, row: dict[str, Any]) -> ModelView:
    (model, version, present, answered, error, intent, top1, top2, latency_ms, checkable,
     wrong_claims, unknown_entity, all_claims_correct) = (row[k] for k in _VIEW_KEYS[prefix])
    return ModelView(
        present=bool(present),
        answered=bool(answered),
        error=error or None,
        model=model,
        version=version,
        intent=intent or None,
        top1=top1,
        top2=top2,
        latency_ms=latency_ms,
        checkable=bool(checkable),
        wrong_claims=int(wrong_claims),
        unknown_entity_claims=int(unknown_entity),
        all_claims_correct=bool(all_claims_correct),
    )


RECORD_FIELDS: tuple[str, ...] = (
    "request_id", "ts", "slice", "multi_intent", "reference_intent", "reference_source",
    "production_reference", "copied_claims", "names_entity", "retrieval_miss", "title_age_days",
    "new_title", "dataset_age_days", "cost_usd", "replica_answered", "replica_intent",
    *_VIEW_KEYS["teacher"], *_VIEW_KEYS["student"],
    "fallback", "fallback_naive", "tz_offset_s", "preferences",
)
"""The fields of :func:`to_values`, in order. All but the last RECORD_TAIL are
``shadow_evaluations`` columns as they are; the row writes fallback and fallback_naive as 0/1
(never null) and stores neither tz_offset_s nor preferences."""

RECORD_TAIL = 4


def to_values(ev: RequestEvaluation) -> list[Any]:
    """Every field of the evaluation, JSON-friendly (timestamps as epoch seconds), in the order
    of RECORD_FIELDS: the form rows and snapshots are made from (one list display, ~3 µs,
    where the same as a dict cost ~6 µs a request)."""
    ts = ev.ts
    offset = ts.utcoffset()
    t, s = ev.teacher, ev.student
    fallback, naive = ev.fallback, ev.fallback_naive
    return [
        ev.request_id, ts.timestamp(), dict(ev.slice), int(ev.multi_intent),
        ev.reference_intent or "", ev.reference_source or "", ev.production_reference or "",
        ev.copied_claims, int(ev.names_entity), int(ev.retrieval_miss), ev.title_age_days,
        int(ev.new_title), ev.dataset_age_days, ev.cost_usd, int(ev.replica.answered),
        ev.replica.intent or "",
        t.model, t.version, int(t.present), int(t.answered), t.error or "", t.intent or "",
        t.top1, t.top2, t.latency_ms, int(t.checkable), t.wrong_claims, t.unknown_entity_claims,
        int(t.all_claims_correct),
        s.model, s.version, int(s.present), int(s.answered), s.error or "", s.intent or "",
        s.top1, s.top2, s.latency_ms, int(s.checkable), s.wrong_claims, s.unknown_entity_claims,
        int(s.all_claims_correct),
        None if fallback is None else int(fallback), None if naive is None else int(naive),
        offset.total_seconds() if offset is not None else 0.0, list(ev.preferences),
    ]


def to_record(ev: RequestEvaluation) -> dict[str, Any]:
    """:func:`to_values` by field name."""
    return dict(zip(RECORD_FIELDS, to_values(ev), strict=True))


def from_values(values: list[Any]) -> RequestEvaluation:
    """The evaluation :func:`to_values` described."""
    return from_record(dict(zip(RECORD_FIELDS, values, strict=True)))


def from_record(rec: dict[str, Any]) -> RequestEvaluation:
    """The evaluation :func:`to_record` described (claim keys are not kept: copies are counted)."""
    from datetime import UTC, timedelta, timezone

    zone = timezone(timedelta(seconds=rec.get("tz_offset_s", 0.0))) if rec.get("tz_offset_s") else UTC
    replica = ModelView(present=bool(rec["replica_answered"]), answered=bool(rec["replica_answered"]),
                        intent=rec["replica_intent"] or None)
    fallback, naive = rec["fallback"], rec["fallback_naive"]
    return RequestEvaluation(
        request_id=rec["request_id"],
        ts=datetime.fromtimestamp(rec["ts"], zone),
        slice=dict(rec["slice"]),
        multi_intent=bool(rec["multi_intent"]),
        teacher=_view_from("teacher", rec),
        student=_view_from("student", rec),
        replica=replica,
        reference_intent=rec["reference_intent"] or None,
        reference_source=rec["reference_source"] or None,
        production_reference=rec["production_reference"] or None,
        copied_claims=int(rec["copied_claims"]),
        names_entity=bool(rec["names_entity"]),
        retrieval_miss=bool(rec["retrieval_miss"]),
        title_age_days=rec["title_age_days"],
        new_title=bool(rec["new_title"]),
        dataset_age_days=rec["dataset_age_days"],
        preferences=tuple(rec["preferences"]),
        fallback=None if fallback is None else bool(fallback),
        fallback_naive=None if naive is None else bool(naive),
        cost_usd=float(rec["cost_usd"]),
    )
