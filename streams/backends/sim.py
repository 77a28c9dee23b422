"""Simulated MangaAssist models (``worker teacher|student --backend sim``).

The worker answers with the simulator's own teacher or student: for a request the simulator
wrote, the answer is the one in the simulated log, byte for byte (the request id and event
time seed it), so live mode runs real workers on simulated models and still matches the
scenario's truth file. The simulation comes from truth files (``simulate`` writes one next to
each log) or from a scenario name and seed; a request id names its scenario and seed
(``<scenario>-s<seed>-<n>``), so one worker serves logs of several scenarios at once.

A request from elsewhere still gets a deterministic answer: its intent is read from the
prompt's words, its title from ``entities``, and the answer drawn from a generator seeded by
its request id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError
from schemas.labelsets import MANGAASSIST_INTENTS
from simulator import prompts, scenarios
from simulator.generate import Simulation
from simulator.models import respond
from simulator.truth import Truth
from simulator.world import ASKS_FACT, Context, rng_for
from streams.backends.base import Prediction, RequestLike

_ID = re.compile(r"^(?P<scenario>[a-z_]+)-s(?P<seed>\d+)-\d+$")
_KNOWN = ("request_id", "ts", "role", "model", "model_version", "latency_ms", "intent_probs",
          "claims", "answer", "cost_usd", "error")


class SimBackend:
    """Answers as the simulated teacher or student of one or more simulations."""

    def __init__(self, role: str, simulations: Sequence[Simulation]) -> None:
        if role not in ("teacher", "student"):
            raise ConfigError(f"the sim backend answers as teacher or student, not {role!r}")
        if not simulations:
            raise ConfigError("the sim backend needs at least one simulation")
        self.role = role
        self.simulations = list(simulations)
        self._by_prefix = {(s.scenario.name, s.seed): s for s in self.simulations}

    @classmethod
    def from_truth(cls, paths: Iterable[Path | str], role: str) -> SimBackend:
        """The simulations that wrote these truth files (same scenario, seed, start, timing)."""
        sims = []
        for path in paths:
            try:
                truth = Truth.load(path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"cannot read truth file {path}: {exc}") from None
            sims.append(simulation_of(truth))
        return cls(role, sims)

    @classmethod
    def from_scenario(cls, name: str, seed: int, role: str, minutes: float | None = None) -> SimBackend:
        """A scenario's default run (as ``simulate --scenario NAME --seed S`` writes it)."""
        try:
            scenario = scenarios.get(name)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
        return cls(role, [Simulation(scenario, seed, minutes=minutes)])

    def predict(self, batch: Sequence[RequestLike]) -> list[Prediction]:
        return [self._answer(request) for request in batch]

    def close(self) -> None:
        pass

    def _simulation(self, request_id: str) -> Simulation:
        m = _ID.match(request_id)
        if m is not None:
            sim = self._by_prefix.get((m["scenario"], int(m["seed"])))
            if sim is not None:
                return sim
        return self.simulations[0]

    def _answer(self, request: RequestLike) -> Prediction:
        sim = self._simulation(request.request_id)
        ts: datetime = getattr(request, "ts")
        offset = (ts - sim.world.start).total_seconds()
        ex = sim.exchange(request.request_id, offset)
        if ex.ctx.request["prompt"] == request.prompt:
            response = ex.teacher if self.role == "teacher" else ex.student
        else:
            response = _foreign(sim, request, ts, offset, self.role)
        return _prediction(response)


def simulation_of(truth: Truth) -> Simulation:
    """The simulation a truth file describes."""
    if truth.scenario == "regression":
        raise ConfigError("the legacy 'regression' scenario has no simulated models; "
                          "use --backend replay with its log")
    start = datetime.fromisoformat(truth.start.replace("Z", "+00:00"))
    return Simulation(scenarios.get(truth.scenario), truth.seed, truth.minutes, truth.rate_per_s, start)


def _foreign(sim: Simulation, request: RequestLike, ts: datetime, offset: float, role: str) -> dict[str, Any]:
    """An answer to a request the simulator did not write, from what the request says."""
    rng = rng_for(sim.seed, f"foreign|{request.request_id}")
    intent = prompts.guess_intent(request.prompt, MANGAASSIST_INTENTS) or rng.choice(MANGAASSIST_INTENTS[:4])
    entities = list(getattr(request, "entities", []) or [])
    title = sim.catalog.by_id.get(entities[0]) if entities else None
    covered = {getattr(e, "entity_id", None) for e in getattr(request, "evidence", []) or []}
    asks: tuple[str, ...] = ("format",) if title is not None and rng.random() < ASKS_FACT.get(intent, 0.1) else ()
    ctx = Context(request.request_id, offset, ts, intent, None,
                  dict(getattr(request, "slice", {}) or {}), title,
                  title is not None and title.entity_id in covered, asks,
                  title is not None and offset - title.introduced_s <= 60 * 86_400.0)
    teacher = respond(sim.teacher_behaviour(ctx), ctx, rng)
    if role == "teacher":
        return teacher
    return respond(sim.student_behaviour(ctx), ctx, rng, teacher.get("claims"))


def _prediction(r: dict[str, Any]) -> Prediction:
    return Prediction(
        r["request_id"], intent_probs=r.get("intent_probs"), error=r.get("error"),
        answer=r.get("answer"), claims=r.get("claims") or [], latency_ms=r["latency_ms"],
        cost_usd=r.get("cost_usd"), model=r["model"], model_version=r["model_version"],
        ts=r["ts"], extra={k: v for k, v in r.items() if k not in _KNOWN},
    )
