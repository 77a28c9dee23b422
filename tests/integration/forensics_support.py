"""A small, known forensics dataset: ``shadow_evaluations`` rows built by hand and at random,
payload samples and alerts, plus an independent Python reading of each row.

Rows are written in the shape the sink writes (every column of migrations 0001 and 0002);
the derived flags (correctness, fact errors, grounding inputs) are filled in here from the
intents and claim counts, so the expected values in the tests come from plain Python over
these dicts, not from the SQL under test.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from streams.clickhouse import Store

HIGH_RISK = ("payment_dispute", "safety_escalation", "legal_complaint", "account_lockout", "refund_fraud")
INTENTS = ("faq", "recommendation", "order_tracking", "returns") + HIGH_RISK
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
"""Start of the period the tests query: [T0, T0 + 6 h)."""
PERIOD = (T0, T0 + timedelta(hours=6))


def f32(x: float | None) -> float | None:
    """What a Float32 column gives back for ``x``."""
    return None if x is None else float(np.float32(x))


def evaluation(request_id: str, ts: datetime, **kw: Any) -> dict[str, Any]:
    """One ``shadow_evaluations`` row; derived columns follow from the given ones."""
    r: dict[str, Any] = {
        "request_id": request_id, "ts": ts, "slice": {"region": "eu", "device": "ios"},
        "prompt_hash": "0" * 64, "teacher_model": "teacher", "teacher_version": "t1",
        "student_model": "student", "student_version": "s1",
        "teacher_present": 1, "student_present": 1, "teacher_answered": 1, "student_answered": 1,
        "teacher_error": "", "student_error": "", "reference_intent": "faq",
        "reference_source": "request", "production_reference": "faq",
        "teacher_intent": "faq", "student_intent": "faq",
        "teacher_top1": 0.9, "teacher_top2": 0.05, "student_top1": 0.9, "student_top2": 0.05,
        "teacher_checkable": 0, "student_checkable": 0,
        "teacher_wrong_claims": 0, "student_wrong_claims": 0, "copied_claims": 0,
        "teacher_unknown_entity": 0, "student_unknown_entity": 0,
        "replica_answered": 0, "replica_intent": "", "names_entity": 0, "title_age_days": None,
        "retrieval_miss": 0, "fallback": 0, "fallback_naive": 0, "cost_usd": 0.0002,
        "teacher_latency_ms": 800.0, "student_latency_ms": 100.0, "dataset_age_days": None,
        "multi_intent": 0, "labels": "[]", "late": 0, "kafka_partition": 0, "kafka_offset": 0,
        "version": 1,
    }
    r.update(kw)
    for m in ("teacher", "student"):
        answered = r[f"{m}_answered"]
        if not answered:
            r[f"{m}_intent"], r[f"{m}_top1"], r[f"{m}_top2"] = "", None, None
            r[f"{m}_checkable"] = r[f"{m}_wrong_claims"] = 0
            if not r[f"{m}_error"] and r[f"{m}_present"]:
                r[f"{m}_error"] = "timeout"
        if not r[f"{m}_present"]:
            r[f"{m}_latency_ms"] = None
        r[f"{m}_correct"] = (None if not answered or not r["reference_intent"]
                             else int(r[f"{m}_intent"] == r["reference_intent"]))
        r[f"{m}_fact_error"] = int(r[f"{m}_wrong_claims"] > 0)
        r[f"{m}_all_claims_correct"] = int(r[f"{m}_wrong_claims"] == 0 and r[f"{m}_unknown_entity"] == 0)
    r["student_margin"] = (None if r["student_top1"] is None
                           else r["student_top1"] - r["student_top2"])
    r["new_title"] = int(r["title_age_days"] is not None and r["title_age_days"] <= 60)
    r["freshness"] = "new" if r["new_title"] else "established"
    return r


def random_evaluations(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` varied requests spread over the period (one every 6 h / n), reproducible."""
    rng = random.Random(seed)
    rows = []
    step = (PERIOD[1] - PERIOD[0]) / n
    for i in range(n):
        ref = rng.choice(INTENTS)
        sl = {"region": rng.choice(["eu", "us", "br"])}
        if rng.random() < 0.8:
            sl["device"] = rng.choice(["ios", "android"])
        s_ans, t_ans = rng.random() > 0.05, rng.random() > 0.03
        s_int = ref if rng.random() < 0.7 else rng.choice(INTENTS)
        t_int = ref if rng.random() < 0.9 else rng.choice(INTENTS)
        s_top1 = round(rng.uniform(0.3, 0.999), 3)
        t_wrong = int(rng.random() < 0.2) * rng.randint(1, 2)
        s_wrong = int(rng.random() < 0.25) * rng.randint(1, 3)
        copied = min(s_wrong, t_wrong) if rng.random() < 0.6 else 0
        names = rng.random() < 0.7
        fallback = int(s_ans and (s_top1 < 0.72 or s_int in HIGH_RISK))
        rows.append(evaluation(
            f"q{i:04d}", PERIOD[0] + step * i + timedelta(milliseconds=rng.randint(0, 999)),
            slice=sl, reference_intent=ref, production_reference=ref,
            reference_source=rng.choice(["request", "human", "teacher"]),
            teacher_answered=int(t_ans), student_answered=int(s_ans),
            teacher_present=int(t_ans or rng.random() < 0.5), student_present=int(s_ans or rng.random() < 0.5),
            teacher_intent=t_int, student_intent=s_int,
            teacher_top1=round(rng.uniform(0.5, 0.999), 3), student_top1=s_top1,
            student_top2=round((1 - s_top1) * rng.uniform(0.2, 0.9), 3),
            teacher_checkable=int(t_wrong > 0 or rng.random() < 0.3),
            student_checkable=int(s_wrong > 0 or rng.random() < 0.3),
            teacher_wrong_claims=t_wrong, student_wrong_claims=s_wrong,
            copied_claims=copied if t_ans and s_ans else 0,
            student_unknown_entity=int(rng.random() < 0.05),
            names_entity=int(names), title_age_days=round(rng.uniform(0, 500), 2) if names else None,
            retrieval_miss=int(names and rng.random() < 0.2),
            fallback=fallback, fallback_naive=int(s_ans and s_top1 < 0.8),
            cost_usd=0.0002 if s_ans and not fallback else 0.003,
            teacher_latency_ms=float(rng.randint(300, 3000)), student_latency_ms=float(rng.randint(20, 900)),
            multi_intent=int(rng.random() < 0.1), kafka_offset=i,
        ))
    return rows


def insert_evaluations(store: Store, rows: Iterable[dict[str, Any]]) -> None:
    rows = list(rows)
    columns = list(rows[0])
    store.insert("shadow_evaluations", [[r[c] for c in columns] for r in rows], columns)


def insert_payloads(store: Store, rows: Iterable[dict[str, Any]]) -> None:
    rows = list(rows)
    columns = list(rows[0])
    store.insert("shadow_payloads", [[r[c] for c in columns] for r in rows], columns)


def payload(row: dict[str, Any], reason: str) -> dict[str, Any]:
    rid = row["request_id"]
    return {"request_id": rid, "ts": row["ts"], "sample_reason": reason, "slice": row["slice"],
            "prompt_redacted": f"prompt of {rid} [EMAIL]", "teacher_answer_redacted": f"teacher on {rid}",
            "student_answer_redacted": f"student on {rid}", "teacher_probs": {}, "student_probs": {}}


def current(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What FINAL reads: the highest version of each request."""
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["request_id"] not in best or r["version"] > best[r["request_id"]]["version"]:
            best[r["request_id"]] = r
    return list(best.values())


def in_period(rows: Iterable[dict[str, Any]], since: datetime, until: datetime) -> list[dict[str, Any]]:
    return [r for r in rows if since <= r["ts"] < until]


def slices_of(r: dict[str, Any]) -> list[str]:
    """DESIGN §5 slice names of a row (no crosses)."""
    out = ["all"] + [f"{k}={v}" for k, v in r["slice"].items()]
    if r["reference_intent"]:
        out += [f"intent={r['reference_intent']}",
                "risk=high" if r["reference_intent"] in HIGH_RISK else "risk=normal"]
    out.append(f"freshness={r['freshness']}")
    out.append("multi_intent=true" if r["multi_intent"] else "multi_intent=false")
    return out


def naive(dt: datetime) -> datetime:
    """ClickHouse gives UTC times back without a zone."""
    return dt.astimezone(UTC).replace(tzinfo=None)
