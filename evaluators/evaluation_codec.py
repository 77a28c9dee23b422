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


def _view_values(v: ModelView) -> tuple[Any, ...]:
    """A view's column values, in the order of ``_VIEW_FIELDS``."""
    return (v.model, v.version, int(v.present), int(v.answered), v.error or "", v.intent or "",
            v.top1, v.top2, v.latency_ms, int(v.checkable), v.wrong_claims,
            v.unknown_entity_claims, int(v.all_claims_correct))


def _view_columns(prefix: str, v: ModelView) -> dict[str, Any]:
    return dict(zip(_VIEW_KEYS[prefix], _view_values(v), strict=True))


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


def _opt_bool(value: bool | None) -> int | None:
    return None if value is None else int(value)


def to_record(ev: RequestEvaluation) -> dict[str, Any]:
    """Every field of the evaluation, JSON-friendly (timestamps as epoch seconds)."""
    offset = ev.ts.utcoffset()
    rec: dict[str, Any] = {
        "request_id": ev.request_id,
        "ts": ev.ts.timestamp(),
        "tz_offset_s": offset.total_seconds() if offset is not None else 0.0,
        "slice": dict(ev.slice),
        "multi_intent": int(ev.multi_intent),
        "reference_intent": ev.reference_intent or "",
        "reference_source": ev.reference_source or "",
        "production_reference": ev.production_reference or "",
        "copied_claims": ev.copied_claims,
        "names_entity": int(ev.names_entity),
        "retrieval_miss": int(ev.retrieval_miss),
        "title_age_days": ev.title_age_days,
        "new_title": int(ev.new_title),
        "dataset_age_days": ev.dataset_age_days,
        "preferences": list(ev.preferences),
        "fallback": _opt_bool(ev.fallback),
        "fallback_naive": _opt_bool(ev.fallback_naive),
        "cost_usd": ev.cost_usd,
        "replica_answered": int(ev.replica.answered),
        "replica_intent": ev.replica.intent or "",
    }
    rec.update(zip(_VIEW_KEYS["teacher"], _view_values(ev.teacher), strict=True))
    rec.update(zip(_VIEW_KEYS["student"], _view_values(ev.student), strict=True))
    return rec


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
