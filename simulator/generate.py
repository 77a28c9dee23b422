"""One simulated run: a scenario, a seed, a duration and a rate → replay-log lines and truth.

Lines come in event-time order: the initial catalog, then requests (one every 1/rate s) with
catalog releases and labels merged in at their own times. Labels: a judge's preference on 5 %
of requests, and a human label (the true intent) for every request the review queue finished
before the end of the run; the queue takes the requests production or the teacher marks as
high-risk. Each request, teacher answer and student answer depends only on (seed, request id,
event time), which is what :class:`streams.backends.sim.SimBackend` relies on.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schemas.labelsets import MANGAASSIST_INTENTS
from simulator import truth as truth_mod
from simulator.models import Behaviour, respond, wrong_value
from simulator.review import ReviewQueue
from simulator.scenarios import Scenario
from simulator.world import HIGH_RISK, INTENT_SHARES, START, Catalog, Context, Noise, WorldConfig, draw_request, rng_for, ts_text

PREFERENCE_SHARE = 0.05


@dataclass
class Exchange:
    """One mirrored request and the two answers to it."""

    ctx: Context
    teacher: dict[str, Any]
    student: dict[str, Any]
    rng: random.Random


class Simulation:
    """The world of one scenario run; also answers single requests for the sim backend."""

    def __init__(self, scenario: Scenario, seed: int = 0, minutes: float | None = None,
                 rate: float | None = None, start: datetime = START) -> None:
        self.scenario = scenario
        self.seed = seed
        self.minutes = float(minutes if minutes is not None else scenario.minutes)
        self.rate = float(rate if rate is not None else scenario.rate)
        if self.minutes <= 0 or self.rate <= 0:
            raise ValueError("minutes and rate must be > 0")
        self.duration_s = self.minutes * 60.0
        onset = scenario.onset_for(self.duration_s)
        self.onset_s = None if onset is None else float(onset)
        self.world = WorldConfig(seed=seed, start=start)
        self.catalog = Catalog(self.world, self.duration_s)
        self.plan = scenario.plan
        self.requests = int(self.duration_s * self.rate)
        self._reset()

    def _reset(self) -> None:
        """Counters and review queue of one pass over the log."""
        self.stats: dict[str, int] = {"requests": 0, "risky": 0, "human_labels": 0,
                                      "preference_labels": 0, "review_incoming": 0}
        self.queue = self._queue()

    # -- one request -------------------------------------------------------------------
    def request_id(self, i: int) -> str:
        return f"{self.scenario.name}-s{self.seed}-{i:08d}"

    def offset_of(self, i: int) -> float:
        """Event time of request ``i`` in seconds, at the log's millisecond resolution."""
        return timedelta(milliseconds=round(i * 1000 / self.rate)).total_seconds()

    def after_onset(self, offset_s: float) -> bool:
        return self.onset_s is not None and offset_s >= self.onset_s

    def noise_at(self, offset_s: float) -> Noise:
        if self.plan.noise_after is not None and self.after_onset(offset_s):
            return self.plan.noise_after
        return self.plan.noise

    def exchange(self, request_id: str, offset_s: float) -> Exchange:
        """The request at ``offset_s`` and both answers; ``rng`` continues for its labels."""
        rng = rng_for(self.seed, request_id)
        ctx = draw_request(self.world, self.catalog, request_id, offset_s, self.noise_at(offset_s), rng)
        teacher = respond(self.teacher_behaviour(ctx), ctx, rng)
        student = respond(self.student_behaviour(ctx), ctx, rng, teacher.get("claims"))
        return Exchange(ctx, teacher, student, rng)

    def teacher_behaviour(self, ctx: Context) -> Behaviour:
        if self.plan.teacher_target is not None and self._in_target(ctx):
            return self.plan.teacher_target
        return self.plan.teacher

    def student_behaviour(self, ctx: Context) -> Behaviour:
        if self.plan.student_target is not None and self._in_target(ctx):
            return self.plan.student_target
        if self.plan.student_after is not None and self.after_onset(ctx.offset_s):
            return self.plan.student_after
        return self.plan.student

    def _in_target(self, ctx: Context) -> bool:
        target = self.scenario.target
        return target is not None and self.after_onset(ctx.offset_s) and ctx.in_slice(target)

    # -- the whole run -----------------------------------------------------------------
    def _queue(self) -> ReviewQueue:
        share = self.plan.review_capacity_share
        if share is None:
            return ReviewQueue()
        inflow_per_hour = self.rate * 3600.0 * sum(
            p for c, p in INTENT_SHARES.items() if c in HIGH_RISK)
        return ReviewQueue(capacity_per_hour=share * inflow_per_hour, delay_s=(60.0, 120.0))

    def lines(self) -> Iterator[dict[str, Any]]:
        """Replay-log lines (DESIGN §4) in event-time order (each call starts a fresh pass)."""
        self._reset()
        start = self.world.start
        pending: list[tuple[float, int, dict[str, Any]]] = []
        seq = 0
        for title in self.catalog.initial():
            yield {"catalog": title.record(start)}
        for title in self.catalog.releases():
            heapq.heappush(pending, (title.introduced_s, seq, {"catalog": title.record(start)}))
            seq += 1
        for i in range(self.requests):
            offset = self.offset_of(i)
            while pending and pending[0][0] <= offset:
                yield heapq.heappop(pending)[2]
            ex = self.exchange(self.request_id(i), offset)
            yield {"request": ex.ctx.request, "teacher": ex.teacher, "student": ex.student}
            for at, label in self._labels(ex):
                heapq.heappush(pending, (at, seq, {"label": label}))
                seq += 1
        while pending:
            yield heapq.heappop(pending)[2]

    def _labels(self, ex: Exchange) -> list[tuple[float, dict[str, Any]]]:
        ctx, teacher, student, rng = ex.ctx, ex.teacher, ex.student, ex.rng
        out = []
        t_top, s_top = top1(teacher), top1(student)
        reference = ctx.request["reference"]["intent"] if "reference" in ctx.request else t_top
        human = False
        if reference in HIGH_RISK:
            self.stats["review_incoming"] += 1
            done = self.queue.submit(ctx.offset_s, rng)
            if done < self.duration_s:
                human = True
                self.stats["human_labels"] += 1
                out.append((done, {"request_id": ctx.request_id, "ts": self._ts(done), "source": "human",
                                   "intent": ctx.intent, "reviewer_id": f"reviewer-{rng.randrange(1, 9)}"}))
        if rng.random() < PREFERENCE_SHARE:
            at = ctx.offset_s + rng.uniform(30.0, 300.0)
            if at < self.duration_s:
                self.stats["preference_labels"] += 1
                out.append((at, {"request_id": ctx.request_id, "ts": self._ts(at), "source": "judge",
                                 "preferred": _preferred(ctx.intent, t_top, s_top)}))
        self._count(ctx, ctx.intent if human else reference, s_top, student)
        return out

    def _count(self, ctx: Context, reference: str | None, s_top: str | None,
               student: dict[str, Any]) -> None:
        """What the payload sampler will call risky: high-risk reference, wrong, or a fact error.

        The same before and after a human label arrives (the stream samples at a request's
        first evaluation): only requests whose reference is already high-risk are reviewed,
        and models never put a high-risk class on top by mistake, so the label keeps it so."""
        self.stats["requests"] += 1
        wrong_fact = ctx.title is not None and any(
            c["value"] == wrong_value(ctx.title, c["attribute"]) for c in student.get("claims", ()))
        wrong = s_top is not None and reference is not None and s_top != reference
        if reference in HIGH_RISK or wrong or wrong_fact:
            self.stats["risky"] += 1

    def _ts(self, offset_s: float) -> str:
        return ts_text(self.world.start + timedelta(seconds=offset_s))

    def truth(self) -> truth_mod.Truth:
        """What the run contains and what must fire; call after :meth:`lines` is exhausted."""
        return truth_mod.build(self)


def top1(response: dict[str, Any]) -> str | None:
    """Top-1 intent as the evaluators see it (ties to the earlier configured class)."""
    probs = response.get("intent_probs")
    if response.get("error") is not None or not probs:
        return None
    best, best_p = None, -1.0
    for c in MANGAASSIST_INTENTS:  # strict >: ties stay with the earlier class
        p = probs.get(c, 0.0)
        if p > best_p:
            best, best_p = c, p
    return best


def _preferred(truth: str, teacher: str | None, student: str | None) -> str:
    t_ok, s_ok = teacher == truth, student == truth
    if t_ok == s_ok:
        return "tie"
    return "teacher" if t_ok else "student"



def expected_share_bounds(n: int, share: float, sigmas: float = 4.0) -> tuple[int, int]:
    """A count of ``n`` Bernoulli(share) draws lies within these bounds but rarely."""
    sd = math.sqrt(n * share * (1.0 - share))
    return max(0, math.floor(n * share - sigmas * sd)), math.ceil(n * share + sigmas * sd)
