"""Wire contract v1 (DESIGN §4): the messages on the shadow topics.

Unknown extra fields are kept (``extra="allow"``) so producers can add context without a
schema bump; renaming a field needs a new ``schema_version``. Use :func:`schemas.validate`
to get a :class:`~schemas.errors.ContractError` that names each field and rule.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

PROB_SUM_TOLERANCE = 1e-3
"""intent_probs must sum to 1 within this tolerance."""


def _timestamp_not_number(value: Any) -> Any:
    # RFC 3339 strings (or datetime objects from Python callers) only: a bare number is
    # ambiguous (seconds? milliseconds?) and is what a broken producer sends.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("must be an RFC 3339 timestamp string with a zone, not a number")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_timestamp_not_number)]
"""An RFC 3339 timestamp that carries a zone (``Z`` or ``+09:00``)."""

RequestId = Annotated[str, Field(min_length=1, max_length=128)]
FiniteNonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=False, populate_by_name=True)

    schema_version: Literal[1] = 1


class Evidence(BaseModel):
    """A retrieval document handed to the models."""

    model_config = ConfigDict(extra="allow")

    doc_id: str
    entity_id: str | None = None
    text: str | None = None


class Reference(BaseModel):
    """Ground truth production already knows for a request."""

    model_config = ConfigDict(extra="allow")

    intent: str = Field(min_length=1)
    source: str = Field(min_length=1)


class ShadowRequest(_Message):
    """A mirrored production request (topic ``shadow.requests``, key ``request_id``)."""

    request_id: RequestId
    ts: Timestamp
    prompt: str
    slice: dict[str, str]
    entities: list[str] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    reference: Reference | None = None
    multi_intent: bool = False


class Claim(BaseModel):
    """A fact an answer asserts about a catalog entity."""

    model_config = ConfigDict(extra="allow")

    entity_id: str = Field(min_length=1)
    attribute: str = Field(min_length=1)
    value: str | list[str]


class ModelResponse(_Message):
    """A teacher, student or teacher-replica answer (topics ``shadow.teacher`` etc.)."""

    request_id: RequestId
    ts: Timestamp
    role: Literal["teacher", "student", "teacher_replica"]
    model: str
    model_version: str
    answer: str | None = None
    intent_probs: dict[str, float] | None = None
    claims: list[Claim] = Field(default_factory=list)
    latency_ms: FiniteNonNegative
    cost_usd: FiniteNonNegative | None = None
    data_snapshot_ts: Timestamp | None = None
    error: str | None = None

    @field_validator("intent_probs")
    @classmethod
    def _probabilities(cls, probs: dict[str, float] | None) -> dict[str, float] | None:
        if probs is None:
            return None
        if not probs:
            raise ValueError("is empty; expected at least one class probability")
        for name, p in probs.items():
            if not math.isfinite(p) or p < 0.0 or p > 1.0:
                raise ValueError(f"probability of {name!r} is {p}; expected a number in [0, 1]")
        total = math.fsum(probs.values())
        if abs(total - 1.0) > PROB_SUM_TOLERANCE:
            raise ValueError(f"sums to {total:.6g}; expected 1 ± {PROB_SUM_TOLERANCE}")
        return probs

    @model_validator(mode="after")
    def _probs_unless_error(self) -> ModelResponse:
        if self.intent_probs is None and self.error is None:
            raise PydanticCustomError(
                "required_unless_error",
                "is required unless error is set",
                {"field": "intent_probs"},
            )
        return self

    @property
    def answered(self) -> bool:
        """An answer is a response without ``error`` (DESIGN §5)."""
        return self.error is None


class CatalogRecord(_Message):
    """An authoritative catalog entry (topic ``shadow.catalog``, compacted by entity_id)."""

    entity_id: RequestId
    title: str
    attributes: dict[str, str | list[str]] = Field(default_factory=dict)
    introduced_at: Timestamp
    updated_at: Timestamp
    deleted: bool = False


class AnswerCorrect(BaseModel):
    """A reviewer's verdict on each answer."""

    model_config = ConfigDict(extra="allow")

    teacher: bool | None = None
    student: bool | None = None


class Label(_Message):
    """Late ground truth for a request (topic ``shadow.labels``); may arrive hours late."""

    request_id: RequestId
    ts: Timestamp
    source: Literal["human", "rule", "judge"]
    intent: str | None = Field(default=None, min_length=1)
    preferred: Literal["teacher", "student", "tie"] | None = None
    answer_correct: AnswerCorrect | None = None
    reviewer_id: str | None = None

    @model_validator(mode="after")
    def _says_something(self) -> Label:
        if self.intent is None and self.preferred is None and self.answer_correct is None:
            raise PydanticCustomError(
                "label_empty",
                "a label must carry at least one of intent, preferred, answer_correct",
                {"field": "intent"},
            )
        return self


class TimeRange(BaseModel):
    start: Timestamp
    end: Timestamp

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end < self.start:
            raise PydanticCustomError("end_before_start", "end is before start", {"field": "end"})
        return self


class AlertRef(BaseModel):
    """The alert that asked for a retrain."""

    model_config = ConfigDict(extra="allow")

    fingerprint: str
    rule: str
    slice: str
    window_start: Timestamp
    value: float | None = None


class LossHints(BaseModel):
    """Loss weights and temperature for the distillation job (DESIGN §9 defaults)."""

    w_ce: FiniteNonNegative = 0.45
    w_kd: FiniteNonNegative = 0.55
    w_rare: FiniteNonNegative = 0.30
    temperature: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 2.0


class RetrainRequest(_Message):
    """Asks the training job to retrain a student (topic ``distill.retrain``)."""

    job_id: Annotated[str, Field(min_length=1, max_length=128)]
    model: str
    created_at: Timestamp
    alerts: list[AlertRef] = Field(default_factory=list)
    slices: list[str] = Field(default_factory=list)
    time_range: TimeRange
    dataset_snapshot: str | None = None
    loss_hints: LossHints = Field(default_factory=LossHints)


def utc_timestamp(dt: datetime) -> str:
    """RFC 3339 text for an aware datetime, as it goes on the wire."""
    return dt.isoformat().replace("+00:00", "Z")
