"""Simulated teacher and student: tunable accuracy, confidence, latency, facts and failures.

A :class:`Behaviour` says how a model answers; :func:`respond` turns one request
:class:`~simulator.world.Context` and a generator into a ModelResponse (DESIGN §4).
Confidence comes from a profile: :class:`Calibrated` draws the top-1 probability first and
makes the answer right with exactly that chance (so accuracy equals mean confidence), and
:class:`Shifted` and :class:`Decoupled` break that on purpose (scenarios 5 and 6 of the
guide). A wrong top-1 lands on the request's second intent (multi-intent prompts) or on the
nearby common class, which is how soft labels blur rare classes into common ones.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from schemas.labelsets import MANGAASSIST_INTENTS
from simulator.world import DAY_S, FORMATS, HIGH_RISK, NEIGHBOURS, Context, Title, ts_text

TOP1_MIN, TOP1_MAX = 0.25, 0.999
COMMON = MANGAASSIST_INTENTS[:4]


class Confidence(Protocol):
    """Whether an answer is right, and the top-1 probability the model reports for it."""

    def draw(self, rng: random.Random, accuracy: float) -> tuple[bool, float]: ...


@dataclass(frozen=True)
class Calibrated:
    """top-1 ~ Beta(mean = accuracy, concentration k); right with probability top-1."""

    k: float = 10.0

    def draw(self, rng: random.Random, accuracy: float) -> tuple[bool, float]:
        a = min(max(accuracy, 0.02), 0.995)
        p = rng.betavariate(a * self.k, (1 - a) * self.k)
        p = min(max(p, TOP1_MIN), TOP1_MAX)
        return rng.random() < p, p


@dataclass(frozen=True)
class Shifted:
    """A calibrated draw whose reported top-1 is then lowered by U(lo, hi): underconfidence."""

    lo: float
    hi: float
    base: Calibrated = Calibrated()

    def draw(self, rng: random.Random, accuracy: float) -> tuple[bool, float]:
        correct, p = self.base.draw(rng, accuracy)
        return correct, min(max(p - rng.uniform(self.lo, self.hi), TOP1_MIN), TOP1_MAX)


@dataclass(frozen=True)
class Decoupled:
    """Confidence that no longer ranks correctness: wrong answers as confident as the best
    right ones, a share of right answers hesitant (training looks stable, ECE breaks)."""

    wrong: tuple[float, float] = (0.90, 0.99)
    right_high: tuple[float, float] = (0.93, 0.99)
    right_low: tuple[float, float] = (0.73, 0.79)
    right_low_share: float = 0.5

    def draw(self, rng: random.Random, accuracy: float) -> tuple[bool, float]:
        if rng.random() >= accuracy:
            return False, rng.uniform(*self.wrong)
        band = self.right_low if rng.random() < self.right_low_share else self.right_high
        return True, rng.uniform(*band)


@dataclass(frozen=True)
class Behaviour:
    """How one model version answers."""

    role: str
    version: str
    accuracy: float
    confidence: Confidence = Calibrated()
    class_accuracy: Mapping[str, float] = field(default_factory=dict)
    """Per true intent, replacing ``accuracy``."""
    multi_intent_accuracy: float | None = None
    """On multi-intent prompts whose first intent is a common class."""
    multi_intent_escalation_accuracy: float | None = None
    """On multi-intent prompts whose first intent is a high-risk class."""
    typo_penalty: float = 0.0
    latency_ms: float = 90.0
    latency_sigma: float = 0.35
    device_factor: Mapping[str, float] = field(default_factory=dict)
    """Median latency multiplier per device (the student runs on the device)."""
    device_sigma: Mapping[str, float] = field(default_factory=dict)
    """Log-normal spread per device, replacing ``latency_sigma`` (a heavy tail)."""
    fact_error: float = 0.002
    """Chance that an asserted catalog fact is wrong."""
    ungrounded_error: float = 0.0
    """Chance of a wrong fact when retrieval returned no evidence for the title."""
    copy_teacher_error: float = 0.0
    """Student: chance of repeating the teacher's wrong fact on the same request."""
    unknown_title_error: float = 0.02
    """Chance of a wrong fact about a title released after the model's data snapshot."""
    snapshot_age_days: float | None = None
    """Data snapshot this many days before the run start (student: ``data_snapshot_ts``)."""
    missing: float = 0.002
    cost_usd: float = 0.0002

    @property
    def model(self) -> str:
        return f"mangaassist-{self.role}"

    def accuracy_for(self, ctx: Context) -> float:
        acc = self.class_accuracy.get(ctx.intent, self.accuracy)
        if ctx.multi_intent:
            cap = self.multi_intent_escalation_accuracy if ctx.intent in HIGH_RISK else self.multi_intent_accuracy
            if cap is not None:
                acc = min(acc, cap)
        if ctx.slice.get("typos") == "true":
            acc -= self.typo_penalty
        return acc


def respond(b: Behaviour, ctx: Context, rng: random.Random,
            teacher_claims: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ModelResponse of model ``b`` to one request."""
    device = ctx.slice.get("device", "")
    latency = b.latency_ms * b.device_factor.get(device, 1.0)
    latency *= math.exp(rng.gauss(0.0, b.device_sigma.get(device, b.latency_sigma)))
    msg: dict[str, Any] = {"request_id": ctx.request_id, "ts": ts_text(ctx.ts + timedelta(milliseconds=latency)),
                           "role": b.role, "model": b.model, "model_version": b.version,
                           "latency_ms": round(latency, 3), "cost_usd": b.cost_usd}
    if b.snapshot_age_days is not None:
        snapshot = ctx.ts - timedelta(seconds=ctx.offset_s + b.snapshot_age_days * DAY_S)
        msg["data_snapshot_ts"] = ts_text(snapshot)
    if rng.random() < b.missing:
        msg["error"], msg["claims"] = "timeout", []  # as a worker publishes a failed call
        return msg
    correct, top1 = b.confidence.draw(rng, b.accuracy_for(ctx))
    predicted, runner_up = _intents(rng, ctx, correct)
    msg["intent_probs"] = _probs(rng, predicted, runner_up, top1)
    msg["claims"] = _claims(b, ctx, rng, teacher_claims)
    msg["answer"] = _answer(ctx, predicted, msg["claims"])
    return msg


def _intents(rng: random.Random, ctx: Context, correct: bool) -> tuple[str, str]:
    """(top-1, runner-up): a wrong top-1 is the second intent, the neighbouring class or
    another common class; models do not invent escalations (a spurious high-risk top-1 would
    make the teacher's answer the reference of a high-risk class nobody asked about)."""
    truth, near = ctx.intent, NEIGHBOURS[ctx.intent]
    if correct:
        return truth, ctx.secondary or near
    if ctx.secondary is not None and rng.random() < 0.8:
        return ctx.secondary, truth
    if rng.random() < 0.7:
        return near, truth
    return rng.choice([c for c in COMMON if c != truth]), truth


def _probs(rng: random.Random, top: str, runner: str, top1: float) -> dict[str, float]:
    rest = 1.0 - top1
    second = min(rest * rng.uniform(0.45, 0.85), top1 * 0.95)
    others = [c for c in MANGAASSIST_INTENTS if c not in (top, runner)]
    weights = [rng.random() + 0.05 for _ in others]
    scale = (rest - second) / sum(weights)
    probs = {c: w * scale for c, w in zip(others, weights)}
    probs[top], probs[runner] = top1, second
    return {c: round(probs[c], 6) for c in MANGAASSIST_INTENTS}


def wrong_value(title: Title, attribute: str) -> str | list[str]:
    """The one wrong value a model asserts about a title (fixed, so copies match exactly)."""
    if attribute == "in_stock":
        return "no" if title.in_stock == "yes" else "yes"
    return [next(f for f in FORMATS if f not in title.formats)]


def _claims(b: Behaviour, ctx: Context, rng: random.Random,
            teacher_claims: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The facts the answer asserts; a wrong answer gets all of them wrong (it read the
    wrong edition), and a student may repeat a wrong teacher answer claim for claim."""
    title = ctx.title
    if title is None or not ctx.asks_fact:
        return []
    if teacher_claims and rng.random() < b.copy_teacher_error and any(
            c["value"] == wrong_value(title, c["attribute"]) for c in teacher_claims):
        return [dict(c) for c in teacher_claims]
    error = b.fact_error
    if b.snapshot_age_days is not None and title.introduced_s > -b.snapshot_age_days * DAY_S:
        error = max(error, b.unknown_title_error)
    if not ctx.evidence_covered:
        error = max(error, b.ungrounded_error)
    wrong = rng.random() < error
    return [{"entity_id": title.entity_id, "attribute": a,
             "value": wrong_value(title, a) if wrong else right_value(title, a)} for a in ctx.asks_fact]


def right_value(title: Title, attribute: str) -> str | list[str]:
    return title.in_stock if attribute == "in_stock" else [title.formats[0]]


def _answer(ctx: Context, predicted: str, claims: list[dict[str, Any]]) -> str:
    text = f"({predicted.replace('_', ' ')})"
    for c in claims:
        value = ", ".join(c["value"]) if isinstance(c["value"], list) else c["value"]
        text += f" {ctx.title.title if ctx.title else c['entity_id']}: {c['attribute']} = {value}."
    return text
