"""A request evaluation as a flat row (``shadow_evaluations``) and back.

The row is what SQL forensics reads; it also holds everything needed to rebuild the
evaluation, so a label that arrives later can be applied without the original messages
(which are never stored raw).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from evaluators.request import ModelView, RequestEvaluation


def _view_columns(prefix: str, v: ModelView) -> dict[str, Any]:
    return {
        f"{prefix}_model": v.model,
        f"{prefix}_version": v.version,
        f"{prefix}_present": int(v.present),
        f"{prefix}_answered": int(v.answered),
        f"{prefix}_error": v.error or "",
        f"{prefix}_intent": v.intent or "",
        f"{prefix}_top1": v.top1,
        f"{prefix}_top2": v.top2,
        f"{prefix}_latency_ms": v.latency_ms,
        f"{prefix}_checkable": int(v.checkable),
        f"{prefix}_wrong_claims": v.wrong_claims,
        f"{prefix}_unknown_entity": v.unknown_entity_claims,
        f"{prefix}_all_claims_correct": int(v.all_claims_correct),
    }


def _view_from(prefix: str, row: dict[str, Any]) -> ModelView:
    return ModelView(
        present=bool(row[f"{prefix}_present"]),
        answered=bool(row[f"{prefix}_answered"]),
        error=row[f"{prefix}_error"] or None,
        model=row[f"{prefix}_model"],
        version=row[f"{prefix}_version"],
        intent=row[f"{prefix}_intent"] or None,
        top1=row[f"{prefix}_top1"],
        top2=row[f"{prefix}_top2"],
        latency_ms=row[f"{prefix}_latency_ms"],
        checkable=bool(row[f"{prefix}_checkable"]),
        wrong_claims=int(row[f"{prefix}_wrong_claims"]),
        unknown_entity_claims=int(row[f"{prefix}_unknown_entity"]),
        all_claims_correct=bool(row[f"{prefix}_all_claims_correct"]),
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
    rec.update(_view_columns("teacher", ev.teacher))
    rec.update(_view_columns("student", ev.student))
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
