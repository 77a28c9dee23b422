"""Worked examples from the MangaAssist distillation failure guide, computed by hand.

Each test builds a small replay log whose answers reproduce one of the guide's figures, runs
the offline evaluation (``evaluators.offline.evaluate_log``) and checks the metric against the
number worked out by hand in the comments: never against a value produced by the code.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from evaluators.config import EvalConfig
from evaluators.offline import evaluate_log
from evaluators.readout import MetricRow

T0 = datetime(2026, 11, 2, tzinfo=UTC)
INTENTS = EvalConfig().intents


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def probs(top: str, p: float) -> dict[str, float]:
    """``top`` gets ``p``; the other eight classes share ``1 - p`` equally (each below ``p``)."""
    rest = (1.0 - p) / (len(INTENTS) - 1)
    assert rest < p
    return {c: (p if c == top else rest) for c in INTENTS}


def request_line(i: int, *, reference: str | None = None, student: tuple[str, float] | None = ("faq", 0.9),
                 teacher: tuple[str, float] | None = ("faq", 0.9), slice_: dict[str, str] | None = None,
                 entities: list[str] | None = None, covered: list[str] | None = None,
                 t_claims: list[dict] | None = None, s_claims: list[dict] | None = None,
                 t_latency: float = 800.0, s_latency: float = 80.0, multi: bool = False,
                 snapshot: datetime | None = None) -> dict[str, Any]:
    """One request (at T0 + i·10 ms: a thousand fit in one 60 s window) with its answers."""
    rid = f"g-{i:05d}"
    ts = T0 + timedelta(milliseconds=10 * i)
    entities = entities or []
    covered = entities if covered is None else covered
    req: dict[str, Any] = {
        "request_id": rid, "ts": iso(ts), "prompt": "…", "slice": slice_ or {},
        "entities": entities, "evidence": [{"doc_id": f"d-{e}", "entity_id": e} for e in covered],
        "multi_intent": multi,
    }
    if reference is not None:
        req["reference"] = {"intent": reference, "source": "crm"}

    def response(role: str, answer: tuple[str, float] | None, claims: list[dict] | None,
                 latency: float) -> dict[str, Any] | None:
        if answer is None:
            return None
        r: dict[str, Any] = {"request_id": rid, "ts": iso(ts + timedelta(milliseconds=5)), "role": role,
                             "model": role, "model_version": "1", "intent_probs": probs(*answer),
                             "claims": claims or [], "latency_ms": latency}
        if role == "student" and snapshot is not None:
            r["data_snapshot_ts"] = iso(snapshot)
        return r

    return {"request": req, "teacher": response("teacher", teacher, t_claims, t_latency),
            "student": response("student", student, s_claims, s_latency)}


def catalog_line(entity: str, fmt: list[str], introduced: datetime) -> dict[str, Any]:
    return {"catalog": {"entity_id": entity, "title": entity, "attributes": {"format": fmt},
                        "introduced_at": iso(introduced), "updated_at": iso(introduced)}}


def preference(i: int, preferred: str, n: int) -> dict[str, Any]:
    return {"label": {"request_id": f"g-{i:05d}", "ts": iso(T0 + timedelta(hours=3, seconds=n)),
                      "source": "judge", "preferred": preferred}}


def claim(entity: str, value: str) -> dict[str, Any]:
    return {"entity_id": entity, "attribute": "format", "value": value}


def evaluate(tmp_path: Path, lines: list[dict], config: EvalConfig | None = None
             ) -> dict[tuple[str, str], MetricRow]:
    path = tmp_path / "guide.jsonl"
    path.write_bytes(b"".join(orjson.dumps(ln) + b"\n" for ln in lines))
    rows = list(evaluate_log(lambda: open(path, "rb"), config or EvalConfig(), window_s=60, grace_s=120))
    assert len({r.window_start for r in rows}) == 1
    return {(r.slice, r.metric): r for r in rows}


def fraction(row: MetricRow) -> tuple[float | None, float | None]:
    return row.numerator, row.denominator


# --- Scenario 5: fallback traffic explosion ----------------------------------------------------


def test_fallback_explosion_costs_2_63_times_the_plan(tmp_path: Path) -> None:
    """10M/day, $3.00 teacher / $0.20 student per 1K: planned $4,800 at 10 % fallback; at 38 %
    the student keeps 6.2M (= $1,240) and the teacher takes 3.8M (= $11,400): $12,640, 2.63×."""
    lines = [request_line(i, student=("faq", 0.60) if i < 38 else ("faq", 0.90)) for i in range(100)]
    m = evaluate(tmp_path, lines)
    assert fraction(m["all", "fallback_rate"]) == (38, 100)
    assert m["all", "fallback_rate"].value == pytest.approx(0.38, abs=1e-12)
    # (1 − 0.38) × 0.20 + 0.38 × 3.00 = 0.124 + 1.14 = 1.264 $ per 1K
    assert m["all", "cost_per_1k_usd"].value == pytest.approx(1.264, rel=1e-12)
    assert m["all", "projected_daily_cost_usd"].value == pytest.approx(12_640.0, rel=1e-12)
    assert m["all", "planned_daily_cost_usd"].value == pytest.approx(4_800.0, rel=1e-12)
    ratio = m["all", "projected_daily_cost_usd"].value / m["all", "planned_daily_cost_usd"].value
    assert round(ratio, 2) == 2.63
    # the guide's router used "student if confidence ≥ 0.80": same 38 % here
    assert fraction(m["all", "fallback_rate_naive"]) == (38, 100)


def test_margin_routing_removes_unnecessary_fallback(tmp_path: Path) -> None:
    """The guide's better rule (top-1 < 0.72, margin < 0.08, or risky) instead of top-1 < 0.80:
    20 of the 38 low-confidence answers sit at 0.75, which only the naive rule sends away."""
    lines = [request_line(i, student=("faq", 0.60) if i < 18 else ("faq", 0.75) if i < 38 else ("faq", 0.90))
             for i in range(100)]
    m = evaluate(tmp_path, lines)
    assert fraction(m["all", "fallback_rate_naive"]) == (38, 100)
    assert fraction(m["all", "fallback_rate"]) == (18, 100)
    # (0.82 × 0.20 + 0.18 × 3.00) × 10,000 = (0.164 + 0.54) × 10,000 = $7,040/day
    assert m["all", "projected_daily_cost_usd"].value == pytest.approx(7_040.0, rel=1e-12)


# --- Scenario 6: calibration breaks ------------------------------------------------------------


def calibration_lines() -> list[dict]:
    """Two students, both 90 % accurate, as slices ``student=A`` and ``student=B``.

    A: 80 answers at 0.95 (2 wrong) and 20 at 0.50 (8 wrong).
       bins 14 and 7: |78 − 76| + |12 − 10| = 4 → ECE 0.04; confident wrong 2/100;
       Brier (78·0.05² + 2·0.95² + 12·0.5² + 8·0.5²)/100 = (0.195 + 1.805 + 5)/100 = 0.07.
    B: 76 answers at 0.89 (8 wrong), 20 at 0.14 (2 wrong), 4 at 0.39 (none wrong).
       bins 13, 2, 5: |68 − 67.64| + |18 − 2.8| + |4 − 1.56| = 0.36 + 15.2 + 2.44 = 18 → ECE 0.18;
       confident wrong 8/100; Brier (68·0.11² + 8·0.89² + 18·0.86² + 2·0.14² + 4·0.61²)/100
       = (0.8228 + 6.3368 + 13.3128 + 0.0392 + 1.4884)/100 = 0.22: the guide's signal exactly.
    """
    groups = {
        "A": [(80, 0.95, 2), (20, 0.50, 8)],
        "B": [(76, 0.89, 8), (20, 0.14, 2), (4, 0.39, 0)],
    }
    lines, i = [], 0
    for name, parts in groups.items():
        for n, conf, wrong in parts:
            for k in range(n):
                predicted = "recommendation" if k < wrong else "faq"
                lines.append(request_line(i, reference="faq", student=(predicted, conf),
                                          slice_={"student": name}))
                i += 1
    return lines


def test_two_students_with_equal_accuracy_and_different_calibration(tmp_path: Path) -> None:
    m = evaluate(tmp_path, calibration_lines())
    for name, ece, confident_wrong, brier in (("A", 0.04, 2, 0.07), ("B", 0.18, 8, 0.22)):
        s = f"student={name}"
        assert fraction(m[s, "accuracy"]) == (90, 100)
        assert m[s, "ece"].value == pytest.approx(ece, abs=1e-12)
        assert m[s, "ece"].denominator == 100
        assert fraction(m[s, "confident_error_rate"]) == (confident_wrong, 100)
        assert m[s, "brier"].value == pytest.approx(brier, abs=1e-12)
    # pooled: every bin keeps its own gap (A's bins 14 and 7, B's 13, 2, 5): (4 + 18)/200
    assert m["all", "ece"].value == pytest.approx(0.11, abs=1e-12)


# --- Scenario 1: the student copies the teacher's wrong facts ----------------------------------


def test_copied_teacher_error_overlap_reproduces_the_guide_signal(tmp_path: Path) -> None:
    """Teacher fact error 0.006, student 0.011, teacher confident error 0.004, overlap 0.73.

    1,000 requests, every answer makes ≥ 1 checkable claim about a paperback-only title.
    Six requests: the teacher asserts wrong formats and the student repeats them all,
    13 + 12·5 = 73 claims (teacher top-1 0.9 on four, 0.7 on two). Five more requests: the
    student alone is wrong, 5 + 5 + 5 + 6 + 6 = 27 claims. Student wrong claims: 100.
    """
    catalog = [catalog_line(f"ent-{k:04d}", ["paperback"], T0 - timedelta(days=400)) for k in range(200)]
    lines: list[dict] = list(catalog)
    copied = [13, 12, 12, 12, 12, 12]
    own = [5, 5, 5, 6, 6]
    entity = iter(range(200))
    for i in range(1000):
        if i < 6:
            wrong = [claim(f"ent-{next(entity):04d}", "hardcover") for _ in range(copied[i])]
            lines.append(request_line(i, teacher=("faq", 0.9 if i < 4 else 0.7), t_claims=wrong,
                                      s_claims=list(wrong)))
        elif i < 11:
            ids = [f"ent-{next(entity):04d}" for _ in range(own[i - 6])]
            lines.append(request_line(i, t_claims=[claim(e, "paperback") for e in ids],
                                      s_claims=[claim(e, "digital") for e in ids]))
        else:
            ok = [claim("ent-0199", "paperback")]
            lines.append(request_line(i, t_claims=ok, s_claims=list(ok)))
    m = evaluate(tmp_path, lines)
    assert fraction(m["all", "teacher_fact_error_rate"]) == (6, 1000)
    assert fraction(m["all", "student_fact_error_rate"]) == (11, 1000)
    assert fraction(m["all", "teacher_confident_error_rate"]) == (4, 1000)
    assert fraction(m["all", "copied_error_overlap"]) == (73, 100)
    assert m["all", "copied_error_overlap"].value == pytest.approx(0.73, abs=1e-12)
    assert m["all", "student_fact_error_rate"].value == pytest.approx(0.011, abs=1e-12)
    # every wrong claim is a hallucination too: 11 student answers of 1,000
    assert fraction(m["all", "hallucination_rate"]) == (11, 1000)


# --- Scenario 4: rare, high-cost classes collapse -----------------------------------------------


def test_rare_class_recall_and_precision(tmp_path: Path) -> None:
    """safety_escalation, support 842: teacher recall 0.96, student recall 0.82, precision 0.88.

    Student predicts safety on 690 of the 842 (690/842 = 0.8195) and on 94 faq requests
    (690/784 = 0.8801); the teacher on 808 of the 842 (808/842 = 0.9596).
    """
    hr = "safety_escalation"
    lines = []
    for i in range(842):
        lines.append(request_line(i, reference=hr, student=(hr, 0.9) if i < 690 else ("faq", 0.9),
                                  teacher=(hr, 0.9) if i < 808 else ("faq", 0.9)))
    for i in range(842, 842 + 94):
        lines.append(request_line(i, reference="faq", student=(hr, 0.9)))
    m = evaluate(tmp_path, lines)
    assert fraction(m["all", f"recall.{hr}"]) == (690, 842)
    assert fraction(m["all", f"teacher_recall.{hr}"]) == (808, 842)
    assert fraction(m["all", f"precision.{hr}"]) == (690, 784)
    assert round(m["all", f"recall.{hr}"].value, 2) == 0.82
    assert round(m["all", f"teacher_recall.{hr}"].value, 2) == 0.96
    assert round(m["all", f"precision.{hr}"].value, 2) == 0.88
    assert m[f"intent={hr}", "support"].value == 842
    # safety is the only high-risk reference here
    assert fraction(m["all", "escalation_recall"]) == (690, 842)


# --- Scenario 2: live traffic is harder than the offline set ------------------------------------


def test_multi_intent_slice_signal(tmp_path: Path) -> None:
    """On the multi-intent slice: teacher preference match 0.78, student win rate 0.44,
    escalation recall 0.81. 100 multi-intent requests, 20 per high-risk class; the student is
    right on 81, the teacher always, except on 3 of the 81 (so the two agree on 78). 50 judge
    labels: 18 student, 8 tie, 24 teacher: (18 + 8/2)/50 = 0.44. 100 more requests, not
    multi-intent, where everything agrees, stay out of the slice."""
    high_risk = EvalConfig().high_risk
    lines, labels = [], []
    for i in range(100):
        ref = high_risk[i // 20]
        student_ok = i % 100 < 81
        teacher_ok = not (student_ok and i < 3)
        lines.append(request_line(i, reference=ref, multi=True,
                                  student=(ref, 0.9) if student_ok else ("faq", 0.9),
                                  teacher=(ref, 0.9) if teacher_ok else ("returns", 0.9)))
    for i in range(100, 200):
        lines.append(request_line(i, reference="faq"))
    prefs = ["student"] * 18 + ["tie"] * 8 + ["teacher"] * 24
    labels = [preference(i, p, i) for i, p in enumerate(prefs)]
    m = evaluate(tmp_path, lines + labels)
    s = "multi_intent=true"
    assert fraction(m[s, "teacher_match"]) == (78, 100)
    assert fraction(m[s, "student_win_rate"]) == (22, 50)
    assert m[s, "student_win_rate"].value == pytest.approx(0.44, abs=1e-12)
    assert fraction(m[s, "escalation_recall"]) == (81, 100)
    assert fraction(m["multi_intent=false", "teacher_match"]) == (100, 100)
    assert fraction(m["all", "teacher_match"]) == (178, 200)


# --- Scenario 7: stale distillation data on fresh titles ----------------------------------------


def test_fresh_title_slice_grounding_and_dataset_age(tmp_path: Path) -> None:
    """30 % of requests name titles introduced in the last 60 days. On that slice: retrieval
    hit 93 % (miss 21/300), teacher grounded 0.90 (270/300), student 0.72 (216/300), gap 0.18;
    the student's data snapshot is 97 days old."""
    lines: list[dict] = [catalog_line("fresh", ["paperback"], T0 - timedelta(days=10)),
                         catalog_line("old", ["paperback"], T0 - timedelta(days=400))]
    for i in range(1000):
        ts = T0 + timedelta(milliseconds=10 * i)
        snapshot = ts - timedelta(days=97)
        if i < 300:
            miss = i < 21
            t_wrong = 21 <= i < 30  # 9 covered teacher answers with a wrong fact
            s_wrong = 21 <= i < 84  # 63 covered student answers with a wrong fact
            lines.append(request_line(
                i, entities=["fresh"], covered=[] if miss else ["fresh"], snapshot=snapshot,
                t_claims=[claim("fresh", "hardcover" if t_wrong else "paperback")],
                s_claims=[claim("fresh", "hardcover" if s_wrong else "paperback")]))
        else:
            right = [claim("old", "paperback")]
            lines.append(request_line(i, entities=["old"], snapshot=snapshot, t_claims=right,
                                      s_claims=list(right)))
    m = evaluate(tmp_path, lines)
    assert fraction(m["all", "new_title_share"]) == (300, 1000)
    s = "freshness=new"
    assert fraction(m[s, "retrieval_miss_rate"]) == (21, 300)
    assert fraction(m[s, "teacher_grounded_rate"]) == (270, 300)
    assert fraction(m[s, "student_grounded_rate"]) == (216, 300)
    assert m[s, "grounded_gap"].value == pytest.approx(0.18, abs=1e-12)
    assert m[s, "dataset_age_days_p50"].value == pytest.approx(97, rel=0.01)
    assert fraction(m["freshness=established", "student_grounded_rate"]) == (700, 700)


# --- Scenario 11: fine globally, broken on a device slice --------------------------------------


def test_low_memory_slice_latency_and_language_factuality(tmp_path: Path) -> None:
    """Global student p95 150 ms, low-memory mobile p95 330 ms; factuality 88 % (en) vs 76 % (ja).

    Low-memory (100 requests): 90 at 120 ms, 10 at 330 ms; rank floor(0.95·99) = 94 is 330.
    Others (900): 850 at 100 ms, 50 at 150 ms. All 1,000 sorted: 100 ms ×850, 120 ×90,
    150 ×50 (ranks 940–989), 330 ×10; rank floor(0.95·999) = 949 is 150 ms.
    Every answer makes one checkable claim; wrong on 60 of 500 English, 120 of 500 Japanese.
    """
    lines = [catalog_line("t", ["paperback"], T0 - timedelta(days=400))]
    for i in range(1000):
        lowmem = i < 100
        latency = (330.0 if i < 10 else 120.0) if lowmem else (150.0 if i < 150 else 100.0)
        lang = "en" if i % 2 == 0 else "ja"
        rank_in_lang = i // 2
        wrong = rank_in_lang < (60 if lang == "en" else 120)
        lines.append(request_line(
            i, s_latency=latency, slice_={"device": "android-lowmem" if lowmem else "ios", "language": lang},
            s_claims=[claim("t", "hardcover" if wrong else "paperback")]))
    m = evaluate(tmp_path, lines)
    assert m["all", "student_latency_p95"].value == pytest.approx(150.0, rel=0.01)
    assert m["device=android-lowmem", "student_latency_p95"].value == pytest.approx(330.0, rel=0.01)
    assert m["device=ios", "student_latency_p95"].value == pytest.approx(150.0, rel=0.01)
    assert 1 - m["language=en", "student_fact_error_rate"].value == pytest.approx(0.88, abs=1e-12)
    assert 1 - m["language=ja", "student_fact_error_rate"].value == pytest.approx(0.76, abs=1e-12)


# --- Scenario 12: stop on a promotion score ------------------------------------------------------


def test_promotion_score_of_the_best_epoch(tmp_path: Path) -> None:
    """Epoch 4 of the guide's table: teacher match 0.865, hallucination 0.033, ECE 0.06; with
    human win 0.5 and safety recall 0.9:
    0.35·0.865 + 0.25·0.5 + 0.20·0.9 − 0.10·0.033 − 0.10·0.06 = 0.59845.

    1,000 requests, all students at confidence 0.96 (bin 14) and 900 right: ECE |900 − 960|/1000.
    10 safety requests (student right on 9), 99 faq requests the student calls returns, 35 faq
    requests where only the teacher is wrong: agreement 9 + (1000 − 144) = 865. 33 answers
    claim facts about a title the catalog does not know."""
    hr = "safety_escalation"
    lines = []
    for i in range(1000):
        if i < 10:
            ref, s, t = hr, (hr if i < 9 else "faq"), hr
        elif i < 109:
            ref, s, t = "faq", "returns", "faq"
        elif i < 144:
            ref, s, t = "faq", "faq", "recommendation"
        else:
            ref, s, t = "faq", "faq", "faq"
        claims = [claim("ghost-title", "paperback")] if 500 <= i < 533 else None
        lines.append(request_line(i, reference=ref, student=(s, 0.96), teacher=(t, 0.9), s_claims=claims))
    lines += [preference(0, "student", 0), preference(1, "teacher", 1)]
    m = evaluate(tmp_path, lines)
    assert fraction(m["all", "teacher_match"]) == (865, 1000)
    assert fraction(m["all", "hallucination_rate"]) == (33, 1000)
    assert m["all", "ece"].value == pytest.approx(0.06, abs=1e-12)
    assert fraction(m["all", f"recall.{hr}"]) == (9, 10)
    assert fraction(m["all", "student_win_rate"]) == (1, 2)
    assert m["all", "promotion_score"].value == pytest.approx(0.59845, abs=1e-12)
