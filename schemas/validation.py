"""Turning raw input into contract messages, with errors that name field and rule."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from schemas.errors import ContractError, Problem

M = TypeVar("M", bound=BaseModel)


def problems_from(error: ValidationError) -> list[Problem]:
    """One :class:`Problem` per pydantic error: dotted field path, rule id, message."""
    problems = []
    for err in error.errors(include_url=False):
        loc = [str(part) for part in err["loc"]]
        ctx = err.get("ctx") or {}
        if "field" in ctx:  # model-level rules say which field they are about
            loc.append(str(ctx["field"]))
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        problems.append(Problem(".".join(loc) or "<message>", err["type"], message))
    return problems


def validate(model: type[M], data: Any) -> M:
    """Validate a decoded object as ``model``; raise ContractError naming every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ContractError(model.__name__, problems_from(exc)) from None


def decode_json(raw: bytes | str, kind: str) -> Any:
    """Decode one JSON document, rejecting invalid UTF-8 and lone surrogates.

    orjson refuses both, where the standard library would accept a lone ``\\ud800``
    escape and fail later when the text is written out.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if isinstance(raw, bytes) and not _is_utf8(raw):
            problem = Problem("<message>", "utf8", f"not valid UTF-8: {exc}")
        else:
            problem = Problem("<message>", "json", f"not valid JSON: {exc}")
        raise ContractError(kind, [problem]) from None


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def parse(model: type[M], raw: bytes | str) -> M:
    """Decode and validate one Kafka record value."""
    return validate(model, decode_json(raw, model.__name__))
