"""Answers recorded in a replay log (DESIGN §4), for re-running history through the stream.

The worker's role picks the column (``teacher`` or ``student``); responses are indexed by
request_id, the first valid line winning as in ``evaluate``. A recorded response is published
as recorded (its ts, latency and extra fields included). A request the log has no response
for becomes error ``no_recorded_response``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from schemas.errors import ConfigError, ContractError
from schemas.fastpath import line_kind, parse_line_fast
from schemas.replay import open_log
from streams.backends.base import Prediction, RequestLike

NO_RESPONSE = "no_recorded_response"
_KNOWN = ("request_id", "role", "intent_probs", "error", "answer", "claims", "latency_ms",
          "cost_usd", "model", "model_version", "ts")


class ReplayBackend:
    """Looks each request up in the responses recorded for ``role``."""

    def __init__(self, lines: Iterable[bytes], role: str) -> None:
        self.role = role
        self.responses: dict[str, dict[str, Any]] = {}
        self.requests_seen: set[str] = set()
        self.invalid_lines = 0
        for raw in lines:
            if raw.strip():
                self._index(raw)

    @classmethod
    def from_file(cls, path: Path | str, role: str) -> ReplayBackend:
        """Read and index a replay log; ConfigError if it cannot be read."""
        try:
            with open_log(path) as handle:
                return cls(handle, role)
        except OSError as exc:
            raise ConfigError(f"cannot read replay log {path}: {exc.strerror}") from None

    def _index(self, raw: bytes) -> None:
        try:
            line = parse_line_fast(raw)
        except ContractError:
            self.invalid_lines += 1
            return
        if line_kind(line) != "request":
            return
        request_id = line.request.request_id  # type: ignore[union-attr]
        if request_id in self.requests_seen:  # a request id seen twice counts once: the first
            return
        self.requests_seen.add(request_id)
        if getattr(line, self.role, None) is not None:
            self.responses[request_id] = orjson.loads(raw)[self.role]

    def predict(self, batch: Sequence[RequestLike]) -> list[Prediction]:
        """The recorded responses, or ``no_recorded_response`` errors."""
        return [self._answer(request.request_id) for request in batch]

    def close(self) -> None:
        pass

    def _answer(self, request_id: str) -> Prediction:
        recorded = self.responses.get(request_id)
        if recorded is None:
            return Prediction(request_id, error=NO_RESPONSE, model="replay", model_version="none")
        return Prediction(
            request_id,
            intent_probs=recorded.get("intent_probs"),
            error=recorded.get("error"),
            answer=recorded.get("answer"),
            claims=recorded.get("claims") or [],
            latency_ms=recorded["latency_ms"],
            cost_usd=recorded.get("cost_usd"),
            model=recorded["model"],
            model_version=recorded["model_version"],
            ts=recorded["ts"],
            extra={k: v for k, v in recorded.items() if k not in _KNOWN},
        )
