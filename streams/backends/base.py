"""What every model backend gives the worker: one :class:`Prediction` per request, always.

A backend never raises for a single request's failure: a timeout, an HTTP error or a reply
that breaks the contract becomes a Prediction with ``error`` set, so no mirrored request is
lost between ``shadow.requests`` and the response topics (DESIGN §1, §4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from schemas.messages import PROB_SUM_TOLERANCE


class RequestLike(Protocol):
    """The parts of a ShadowRequest a backend reads (pydantic model or msgspec struct)."""

    request_id: str
    prompt: str


@dataclass
class Prediction:
    """A model's answer to one request, or the reason it gave none (``error``)."""

    request_id: str
    intent_probs: dict[str, float] | None = None
    error: str | None = None
    answer: str | None = None
    claims: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float = 0.0
    cost_usd: float | None = None
    model: str = ""
    model_version: str = ""
    ts: datetime | str | None = None
    """When the model answered; None lets the worker stamp the current time."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further response fields to publish as they are (replay keeps unknown fields)."""


@runtime_checkable
class Backend(Protocol):
    """A model behind the worker. ``predict`` returns one Prediction per request, in order."""

    def predict(self, batch: Sequence[RequestLike]) -> list[Prediction]: ...

    def close(self) -> None: ...


class BadResponse(ValueError):
    """A model reply that cannot become a ModelResponse; the message says why."""


def check_intent_probs(value: Any) -> dict[str, float]:
    """The contract's rule for intent_probs (DESIGN §4), raising BadResponse with the reason."""
    if not isinstance(value, Mapping) or not value:
        raise BadResponse(f"intent_probs is {_kind(value)}; expected a non-empty object")
    probs: dict[str, float] = {}
    for name, p in value.items():
        if isinstance(p, bool) or not isinstance(p, (int, float)):
            raise BadResponse(f"intent_probs[{name!r}] is {_kind(p)}; expected a number")
        p = float(p)
        if not math.isfinite(p) or p < 0.0 or p > 1.0:
            raise BadResponse(f"intent_probs[{name!r}] is {p}; expected a number in [0, 1]")
        probs[str(name)] = p
    total = math.fsum(probs.values())
    if abs(total - 1.0) > PROB_SUM_TOLERANCE:
        raise BadResponse(f"intent_probs sums to {total:.6g}; expected 1 ± {PROB_SUM_TOLERANCE}")
    return probs


def check_claims(value: Any) -> list[dict[str, Any]]:
    """Claims as a list of {entity_id, attribute, value} objects (None: no claims)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadResponse(f"claims is {_kind(value)}; expected a list")
    for i, claim in enumerate(value):
        if not isinstance(claim, dict) or not {"entity_id", "attribute", "value"} <= claim.keys():
            raise BadResponse(f"claims[{i}] is not an object with entity_id, attribute, value")
    return value


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted path (``output.probs``, ``choices.0.text``); KeyError if absent."""
    node = data
    if not path:
        return node
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(path)
    return node


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
