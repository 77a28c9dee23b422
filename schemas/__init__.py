"""Wire contract v1: pydantic models, JSON Schema export, ClickHouse DDL, label sets."""

from schemas.errors import ConfigError, ContractError, DistillwatchError, Problem
from schemas.messages import (
    CatalogRecord,
    Claim,
    Evidence,
    Label,
    ModelResponse,
    Reference,
    RetrainRequest,
    ShadowRequest,
)
from schemas.replay import CatalogLine, LabelLine, ReplayLine, RequestLine, parse_line
from schemas.validation import decode_json, parse, validate

__all__ = [
    "CatalogLine",
    "CatalogRecord",
    "Claim",
    "ConfigError",
    "ContractError",
    "DistillwatchError",
    "Evidence",
    "Label",
    "LabelLine",
    "ModelResponse",
    "Problem",
    "Reference",
    "ReplayLine",
    "RequestLine",
    "RetrainRequest",
    "ShadowRequest",
    "decode_json",
    "parse",
    "parse_line",
    "validate",
]
