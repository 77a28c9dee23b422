"""Mergeable per-(window, slice) state: counters plus quantile sketches.

A request is turned into a *contribution* once (a vector of counter increments and three
sketch keys), then added to the state of every slice it belongs to. Every counter is a sum,
so states merge by addition: splitting a stream anywhere and merging gives the same state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluators.config import EvalConfig
from evaluators.request import RequestEvaluation
from evaluators.sketch import QuantileSketch

_SCALARS = (
    "support", "entity_requests", "retrieval_miss", "new_title", "t_missing", "s_missing",
    "t_answers", "t_checkable", "t_fact_err", "t_conf_fact_err", "t_grounded", "t_ref", "t_correct",
    "s_answers", "s_checkable", "s_fact_err", "s_wrong_claims", "copied_claims", "s_halluc",
    "s_grounded", "s_ref", "s_correct", "brier_sum", "s_conf_err", "fallback", "fallback_naive",
    "both_answered", "match", "pref_n", "pref_score", "replica_both", "replica_agree",
)
_PER_CLASS = ("s_ref", "s_tp", "s_pred", "t_ref", "t_tp")
_PER_BIN = ("s_bin_n", "s_bin_conf", "s_bin_correct", "t_bin_n", "t_bin_conf", "t_bin_correct")
NO_VALUE = -(1 << 62)
ZERO_BUCKET = NO_VALUE + 1
PREFERENCE_SCORE = {"student": 1.0, "tie": 0.5, "teacher": 0.0}


class Layout:
    """Index of every counter for one configuration (classes and bins vary)."""

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        names = list(_SCALARS)
        names += [f"{p}.{c}" for c in config.high_risk for p in _PER_CLASS]
        names += [f"{p}.{b}" for p in _PER_BIN for b in range(config.ece_bins)]
        self.names = tuple(names)
        self.index = {n: i for i, n in enumerate(names)}
        self.size = len(names)
        self._bin_slots = {
            m: [
                (self.index[f"{m}_bin_n.{b}"], self.index[f"{m}_bin_conf.{b}"],
                 self.index[f"{m}_bin_correct.{b}"])
                for b in range(config.ece_bins)
            ]
            for m in ("s", "t")
        }

    def __getitem__(self, name: str) -> int:
        return self.index[name]

    def bin_of(self, confidence: float) -> int:
        """Bins [k/B, (k+1)/B); 1.0 falls in the last."""
        return min(int(confidence * self.config.ece_bins), self.config.ece_bins - 1)

    def bin_slots(self, model: str, b: int) -> tuple[int, int, int]:
        """Indices of (count, confidence sum, correct sum) of bin ``b`` for "s" or "t"."""
        return self._bin_slots[model][b]

    def bins(self, prefix: str) -> slice:
        start = self.index[f"{prefix}.0"]
        return slice(start, start + self.config.ece_bins)


@dataclass(slots=True)
class Contribution:
    """One request's increments, computed once and added to each of its slices."""

    counts: np.ndarray
    keys: tuple[int, int, int]
    """Sketch bucket codes of (teacher latency, student latency, dataset age):
    NO_VALUE when there is none, ZERO_BUCKET for the sketch's zero bucket."""
    sign: int = 1
    """-1 takes a request back out (a label changed its evaluation)."""

    def negated(self) -> Contribution:
        return Contribution(-self.counts, self.keys, -self.sign)


def contribution(ev: RequestEvaluation, layout: Layout, sketch: QuantileSketch) -> Contribution:
    """Turn a request evaluation into counter increments (the only place that does)."""
    ix = layout.index
    cfg = layout.config
    t, s, ref = ev.teacher, ev.student, ev.reference_intent
    c = np.zeros(layout.size)

    def put(name: str, value: float | bool) -> None:
        c[ix[name]] = value

    put("support", 1)
    if ev.names_entity:
        put("entity_requests", 1)
        put("retrieval_miss", ev.retrieval_miss)
    put("new_title", ev.new_title)
    put("t_missing", not t.answered)
    put("s_missing", not s.answered)

    if t.answered:
        assert t.top1 is not None
        put("t_answers", 1)
        put("t_checkable", t.checkable)
        put("t_fact_err", t.fact_error)
        put("t_conf_fact_err", t.fact_error and t.top1 >= cfg.confident_threshold)
        put("t_grounded", bool(ev.grounded(t)))
        if ref is not None:
            correct = t.intent == ref
            put("t_ref", 1)
            put("t_correct", correct)
            b = layout.bin_of(t.top1)
            c[list(layout.bin_slots("t", b))] = (1.0, t.top1, float(correct))
            if ref in cfg.high_risk:
                put(f"t_ref.{ref}", 1)
                put(f"t_tp.{ref}", correct)

    if s.answered:
        assert s.top1 is not None
        put("s_answers", 1)
        put("s_checkable", s.checkable)
        put("s_fact_err", s.fact_error)
        put("s_wrong_claims", s.wrong_claims)
        put("copied_claims", ev.copied_claims)
        put("s_halluc", s.wrong_claims > 0 or s.unknown_entity_claims > 0)
        put("s_grounded", bool(ev.grounded(s)))
        put("fallback", bool(ev.fallback))
        put("fallback_naive", bool(ev.fallback_naive))
        if ref is not None:
            correct = s.intent == ref
            put("s_ref", 1)
            put("s_correct", correct)
            put("brier_sum", (s.top1 - correct) ** 2)
            put("s_conf_err", (not correct) and s.top1 >= cfg.confident_threshold)
            b = layout.bin_of(s.top1)
            c[list(layout.bin_slots("s", b))] = (1.0, s.top1, float(correct))
            if ref in cfg.high_risk:
                put(f"s_ref.{ref}", 1)
                put(f"s_tp.{ref}", correct)
            if s.intent in cfg.high_risk:
                put(f"s_pred.{s.intent}", 1)

    if t.answered and s.answered:
        put("both_answered", 1)
        put("match", t.intent == s.intent)
    if t.answered and ev.replica.answered:
        put("replica_both", 1)
        put("replica_agree", t.intent == ev.replica.intent)
    if ev.preferences:
        put("pref_n", len(ev.preferences))
        put("pref_score", sum(PREFERENCE_SCORE[p] for p in ev.preferences))

    def code(value: float | None) -> int:
        if value is None:
            return NO_VALUE
        key = sketch.key(max(value, 0.0))
        return ZERO_BUCKET if key is None else key

    keys = (code(t.latency_ms), code(s.latency_ms), code(ev.dataset_age_days))
    return Contribution(c, keys)


@dataclass
class WindowState:
    """Counters and sketches of one (window, slice); update, merge, serialize."""

    counts: np.ndarray
    teacher_latency: QuantileSketch = field(default_factory=QuantileSketch)
    student_latency: QuantileSketch = field(default_factory=QuantileSketch)
    dataset_age: QuantileSketch = field(default_factory=QuantileSketch)

    @classmethod
    def empty(cls, layout: Layout) -> WindowState:
        return cls(np.zeros(layout.size))

    def add(self, contrib: Contribution) -> WindowState:
        self.counts += contrib.counts
        for sketch, code in zip(self.sketches(), contrib.keys, strict=True):
            if code != NO_VALUE:
                sketch.add_key(None if code == ZERO_BUCKET else code, contrib.sign)
        return self

    def sketches(self) -> tuple[QuantileSketch, QuantileSketch, QuantileSketch]:
        """In the order of Contribution.keys."""
        return (self.teacher_latency, self.student_latency, self.dataset_age)

    def merge(self, other: WindowState) -> WindowState:
        self.counts += other.counts
        self.teacher_latency.merge(other.teacher_latency)
        self.student_latency.merge(other.student_latency)
        self.dataset_age.merge(other.dataset_age)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Compact: only non-zero counters, as parallel index/value lists."""
        nz = np.flatnonzero(self.counts)
        return {
            "i": nz.tolist(), "v": self.counts[nz].tolist(),
            "tl": self.teacher_latency.to_dict(), "sl": self.student_latency.to_dict(),
            "da": self.dataset_age.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], layout: Layout) -> WindowState:
        counts = np.zeros(layout.size)
        counts[np.asarray(data["i"], dtype=np.int64)] = data["v"]
        return cls(
            counts,
            QuantileSketch.from_dict(data["tl"]),
            QuantileSketch.from_dict(data["sl"]),
            QuantileSketch.from_dict(data["da"]),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WindowState):
            return NotImplemented
        return (
            np.array_equal(self.counts, other.counts)
            and self.teacher_latency.to_dict() == other.teacher_latency.to_dict()
            and self.student_latency.to_dict() == other.student_latency.to_dict()
            and self.dataset_age.to_dict() == other.dataset_age.to_dict()
        )
