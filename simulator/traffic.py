"""A small synthetic MangaAssist world: catalog, mirrored requests, teacher and student answers.

Deterministic for a seed. Each request carries a true intent; the teacher and student
predict it with tunable accuracy and confidence, may assert catalog facts (sometimes wrong,
and the student sometimes copies the teacher's wrong fact), and answer with a latency. A
:class:`Regression` degrades the student on one slice from an onset time, which is what the
rules and the scenario tests look for.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.labelsets import MANGAASSIST_INTENTS

INTENT_SHARES = {
    "faq": 0.30, "recommendation": 0.25, "order_tracking": 0.18, "returns": 0.12,
    "payment_dispute": 0.05, "safety_escalation": 0.03, "legal_complaint": 0.02,
    "account_lockout": 0.03, "refund_fraud": 0.02,
}
REGIONS = {"us": 0.45, "eu": 0.25, "jp": 0.20, "br": 0.10}
DEVICES = {"ios": 0.35, "android": 0.35, "web": 0.25, "android-lowmem": 0.05}
LANGUAGES = {"en": 0.6, "ja": 0.25, "es": 0.1, "pt": 0.05}
FORMATS = ("paperback", "hardcover", "digital")


@dataclass(frozen=True)
class Regression:
    """From ``onset_s`` after the start, the student on ``slice`` (key=value) degrades."""

    slice: str
    onset_s: float
    accuracy: float = 0.55
    confidence: float = 0.9


@dataclass
class TrafficConfig:
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    pairs: int = 10_000
    rate_per_s: float = 50.0
    titles: int = 200
    new_title_share: float = 0.15
    teacher_accuracy: float = 0.95
    student_accuracy: float = 0.90
    student_confidence: float = 0.85
    claim_share: float = 0.5
    teacher_fact_error: float = 0.01
    student_fact_error: float = 0.01
    copy_teacher_error: float = 0.7
    missing_response: float = 0.005
    label_share: float = 0.05
    preference_share: float = 0.05
    intent_shares: dict[str, float] = field(default_factory=lambda: dict(INTENT_SHARES))
    """True-intent mix; the default has 15 % high-risk traffic, which the router always
    sends to the teacher, so a fallback rate under 0.15 needs a smaller high-risk share."""
    reference_share: float = 0.0
    """Share of requests whose true intent production already knows (``request.reference``);
    the rest are judged against the teacher's top-1 unless a human label says otherwise."""
    regressions: list[Regression] = field(default_factory=list)


def _pick(rng: random.Random, shares: dict[str, float]) -> str:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def _ts(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _probs(rng: random.Random, predicted: str, confidence: float) -> dict[str, float]:
    top = min(0.999, max(1 / len(MANGAASSIST_INTENTS) + 0.01, rng.gauss(confidence, 0.08)))
    rest = [rng.random() + 1e-3 for _ in MANGAASSIST_INTENTS[1:]]
    scale = (1 - top) / sum(rest)
    others = iter(r * scale for r in rest)
    return {c: (top if c == predicted else next(others)) for c in MANGAASSIST_INTENTS}


class World:
    """Generates replay-log lines (as dicts) for one :class:`TrafficConfig`."""

    def __init__(self, config: TrafficConfig, seed: int = 0) -> None:
        self.cfg = config
        self.rng = random.Random(seed)
        self.catalog: dict[str, dict[str, Any]] = {}

    def catalog_lines(self) -> Iterator[dict[str, Any]]:
        rng, cfg = self.rng, self.cfg
        for i in range(cfg.titles):
            new = rng.random() < cfg.new_title_share
            age_days = rng.uniform(1, 59) if new else rng.uniform(90, 3000)
            introduced = cfg.start - timedelta(days=age_days)
            formats = sorted(rng.sample(FORMATS, rng.randint(1, 2)))
            record = {
                "entity_id": f"title-{i:05d}", "title": f"Manga {i}",
                "attributes": {"format": formats, "in_stock": rng.choice(["yes", "no"])},
                "introduced_at": _ts(introduced), "updated_at": _ts(introduced),
            }
            self.catalog[record["entity_id"]] = record
            yield {"catalog": record}

    def _student_quality(self, slices: dict[str, str], offset_s: float) -> tuple[float, float]:
        acc, conf = self.cfg.student_accuracy, self.cfg.student_confidence
        for reg in self.cfg.regressions:
            key, _, value = reg.slice.partition("=")
            if offset_s >= reg.onset_s and slices.get(key) == value:
                acc, conf = reg.accuracy, reg.confidence
        return acc, conf

    def _answer(self, role: str, rid: str, ts: datetime, truth: str, accuracy: float,
                confidence: float, claims: list[dict[str, Any]], latency: float,
                version: str) -> dict[str, Any]:
        rng = self.rng
        if rng.random() < self.cfg.missing_response:
            return {"request_id": rid, "ts": _ts(ts), "role": role, "model": f"mangaassist-{role}",
                    "model_version": version, "latency_ms": round(latency, 3), "error": "timeout"}
        predicted = truth if rng.random() < accuracy else rng.choice(
            [c for c in MANGAASSIST_INTENTS if c != truth])
        answer = {
            "request_id": rid, "ts": _ts(ts + timedelta(milliseconds=latency)), "role": role,
            "model": f"mangaassist-{role}", "model_version": version,
            "answer": f"({role} answer)", "intent_probs": _probs(rng, predicted, confidence),
            "claims": claims, "latency_ms": round(latency, 3),
        }
        if role == "student":
            answer["data_snapshot_ts"] = _ts(self.cfg.start - timedelta(days=30))
        return answer

    def request_lines(self) -> Iterator[dict[str, Any]]:
        rng, cfg = self.rng, self.cfg
        titles = list(self.catalog)
        for i in range(cfg.pairs):
            offset = i / cfg.rate_per_s
            ts = cfg.start + timedelta(seconds=offset)
            rid = f"req-{i:08d}"
            truth = _pick(rng, cfg.intent_shares)
            slices = {"region": _pick(rng, REGIONS), "device": _pick(rng, DEVICES),
                      "language": _pick(rng, LANGUAGES)}
            entity = rng.choice(titles)
            request = {
                "request_id": rid, "ts": _ts(ts), "prompt": f"about {entity}: {truth} please",
                "slice": slices, "entities": [entity],
                "evidence": [{"doc_id": f"doc-{entity}", "entity_id": entity}] if rng.random() < 0.97 else [],
                "multi_intent": rng.random() < 0.1,
            }
            if cfg.reference_share and rng.random() < cfg.reference_share:
                request["reference"] = {"intent": truth, "source": "production"}
            t_claims: list[dict[str, Any]] = []
            s_claims: list[dict[str, Any]] = []
            if rng.random() < cfg.claim_share:
                true_fmt = self.catalog[entity]["attributes"]["format"]
                wrong_fmt = [f for f in FORMATS if f not in true_fmt][0]
                t_wrong = rng.random() < cfg.teacher_fact_error
                t_claims = [{"entity_id": entity, "attribute": "format",
                             "value": wrong_fmt if t_wrong else true_fmt[0]}]
                if t_wrong and rng.random() < cfg.copy_teacher_error:
                    s_claims = list(t_claims)
                else:
                    s_wrong = rng.random() < cfg.student_fact_error
                    s_claims = [{"entity_id": entity, "attribute": "format",
                                 "value": wrong_fmt if s_wrong else true_fmt[0]}]
            s_acc, s_conf = self._student_quality(slices, offset)
            line = {
                "request": request,
                "teacher": self._answer("teacher", rid, ts, truth, cfg.teacher_accuracy, 0.9,
                                        t_claims, rng.lognormvariate(math.log(900), 0.3), "t-1"),
                "student": self._answer("student", rid, ts, truth, s_acc, s_conf, s_claims,
                                        rng.lognormvariate(math.log(90), 0.4), "s-1"),
            }
            yield line
            if rng.random() < cfg.label_share:
                yield {"label": {"request_id": rid, "ts": _ts(ts + timedelta(hours=2)),
                                 "source": "human", "intent": truth, "reviewer_id": "r1"}}
            if rng.random() < cfg.preference_share:
                yield {"label": {"request_id": rid, "ts": _ts(ts + timedelta(hours=3)),
                                 "source": "judge",
                                 "preferred": rng.choice(["teacher", "student", "tie"])}}

    def lines(self) -> Iterator[dict[str, Any]]:
        yield from self.catalog_lines()
        yield from self.request_lines()


HEALTHY_INTENTS = {
    "faq": 0.32, "recommendation": 0.27, "order_tracking": 0.19, "returns": 0.13,
    "payment_dispute": 0.03, "safety_escalation": 0.025, "legal_complaint": 0.01,
    "account_lockout": 0.015, "refund_fraud": 0.01,
}
"""A mix whose high-risk share (9 %) keeps the always-to-teacher routing under the plan."""


def healthy(pairs: int, rate_per_s: float, regressions: list[Regression] | None = None) -> TrafficConfig:
    """A student that is safe to serve: every default rule stays quiet on every slice."""
    return TrafficConfig(
        pairs=pairs, rate_per_s=rate_per_s, teacher_accuracy=0.99, student_accuracy=0.98,
        student_confidence=0.97, teacher_fact_error=0.005, student_fact_error=0.003,
        copy_teacher_error=0.1, missing_response=0.002, reference_share=1.0,
        intent_shares=dict(HEALTHY_INTENTS), regressions=list(regressions or []),
    )
