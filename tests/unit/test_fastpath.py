"""The msgspec fast path accepts exactly what the pydantic contract accepts.

Every invalid message of the contract corpus, wrapped into a replay line, must be rejected
with the same ContractError fields; every valid line must come back with the same content.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

import schemas
from schemas import CatalogRecord, ContractError, Label, ModelResponse, RetrainRequest, ShadowRequest
from schemas.fastpath import FastLine, line_kind, parse_line_fast
from tests.unit.test_wire_contract import INVALID, LINE, LINES, REQ, w


def as_line(model: Any, message: Any) -> bytes:
    """Put one message where a replay line carries it."""
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    if model is LINE:
        return body
    if model is ShadowRequest:
        return b'{"request":' + body + b"}"
    if model is ModelResponse:
        return b'{"request":' + json.dumps(REQ).encode() + b',"student":' + body + b"}"
    if model is CatalogRecord:
        return b'{"catalog":' + body + b"}"
    if model is Label:
        return b'{"label":' + body + b"}"
    raise AssertionError(model)


CASES = [c for c in INVALID if c[1] is not RetrainRequest]


@pytest.mark.parametrize(("model", "message", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fast_path_rejects_what_the_contract_rejects(model: Any, message: Any, field: str) -> None:
    line = as_line(model, message)
    with pytest.raises(ContractError) as fast:
        parse_line_fast(line)
    with pytest.raises(ContractError) as slow:
        schemas.parse_line(line)
    assert fast.value.fields == slow.value.fields


@pytest.mark.parametrize(("line", "kind"), [v[1:] for v in LINES], ids=[v[0] for v in LINES])
def test_fast_path_accepts_valid_lines_with_the_same_content(line: dict[str, Any], kind: type) -> None:
    raw = json.dumps(w(line, extra_field=1)).encode()
    fast = parse_line_fast(raw)
    slow = schemas.parse_line(raw)
    assert isinstance(fast, FastLine), "a valid line should not need the slow path"
    assert line_kind(fast) == {"RequestLine": "request", "CatalogLine": "catalog",
                               "LabelLine": "label"}[type(slow).__name__]
    for part in ("request", "teacher", "student", "teacher_replica", "catalog", "label"):
        a, b = getattr(fast, part, None), getattr(slow, part, None)
        assert (a is None) == (b is None), part
        if a is None:
            continue
        for name in ("request_id", "ts", "slice", "entities", "intent_probs", "latency_ms", "error",
                     "attributes", "introduced_at", "intent", "preferred", "source"):
            if hasattr(b, name):
                assert getattr(a, name) == getattr(b, name), f"{part}.{name}"
        if hasattr(b, "claims"):
            assert [(c.entity_id, c.attribute, c.value) for c in a.claims] == [
                (c.entity_id, c.attribute, c.value) for c in b.claims
            ]


def test_coercions_pydantic_allows_fall_back_to_it() -> None:
    """msgspec is strict about "41.5" for a number; the contract (pydantic, lax) accepts it."""
    student = {**json.loads(json.dumps(LINES[0][1]["student"])), "latency_ms": "41.5"}
    raw = json.dumps({"request": REQ, "student": student}).encode()
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw, type=FastLine)
    parsed = parse_line_fast(raw)
    assert parsed.student is not None and parsed.student.latency_ms == 41.5
