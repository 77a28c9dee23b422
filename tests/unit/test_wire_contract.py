"""Acceptance tests for wire contract v1 (DESIGN §4): rejection, round trip, JSON Schema."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from schemas import (
    CatalogRecord,
    Label,
    ModelResponse,
    RetrainRequest,
    ShadowRequest,
)
from schemas.jsonschema import schemas as json_schemas

REQ: dict[str, Any] = {
    "schema_version": 1,
    "request_id": "r-0001",
    "ts": "2025-03-01T12:00:00Z",
    "prompt": "Where is my order of One Piece vol. 1?",
    "slice": {"region": "jp", "device": "ios", "language": "ja"},
    "entities": ["ent-op-1"],
    "evidence": [{"doc_id": "d1", "entity_id": "ent-op-1", "text": "Shipped on 28 Feb."}],
    "reference": {"intent": "order_tracking", "source": "crm"},
    "multi_intent": False,
}
STUDENT: dict[str, Any] = {
    "request_id": "r-0001",
    "ts": "2025-03-01T21:00:01.250+09:00",
    "role": "student",
    "model": "manga-mini",
    "model_version": "v3",
    "answer": "It shipped on 28 February.",
    "intent_probs": {"faq": 0.1, "order_tracking": 0.85, "returns": 0.05},
    "claims": [{"entity_id": "ent-op-1", "attribute": "format", "value": ["paperback"]}],
    "latency_ms": 41.5,
    "cost_usd": 0.0002,
    "data_snapshot_ts": "2025-01-15T00:00:00Z",
}
TEACHER: dict[str, Any] = {**STUDENT, "role": "teacher", "model": "manga-large", "cost_usd": 0.004}
ERROR_RESP: dict[str, Any] = {
    "request_id": "r-0001",
    "ts": "2025-03-01T12:00:30Z",
    "role": "teacher",
    "model": "manga-large",
    "model_version": "2025-02",
    "latency_ms": 30000,
    "error": "timeout",
}
CATALOG: dict[str, Any] = {
    "entity_id": "ent-op-1",
    "title": "One Piece vol. 1",
    "attributes": {"format": ["paperback", "kindle"], "author": "Oda"},
    "introduced_at": "1997-12-24T00:00:00+09:00",
    "updated_at": "2025-02-01T00:00:00Z",
    "deleted": False,
}
LABEL: dict[str, Any] = {
    "request_id": "r-0001",
    "ts": "2025-03-01T18:00:00Z",
    "source": "human",
    "intent": "order_tracking",
    "preferred": "tie",
    "answer_correct": {"teacher": True, "student": False},
    "reviewer_id": "rev-7",
}
RETRAIN: dict[str, Any] = {
    "job_id": "job-42",
    "model": "manga-mini",
    "created_at": "2025-03-02T00:05:00Z",
    "alerts": [{"fingerprint": "fp1", "rule": "accuracy_drop", "slice": "region=jp",
                "window_start": "2025-03-01T12:00:00Z", "value": 0.71}],
    "slices": ["region=jp"],
    "time_range": {"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z"},
    "dataset_snapshot": "snap-2025-03-02",
    "loss_hints": {"w_ce": 0.45, "w_kd": 0.55, "w_rare": 0.3, "temperature": 2.0},
}
LINE = "replay line"  # marker: use schemas.parse_line


def w(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of base with top-level keys replaced."""
    out = copy.deepcopy(base)
    out.update(changes)
    return out


def wo(base: dict[str, Any], *keys: str) -> dict[str, Any]:
    """A deep copy of base without the given top-level keys."""
    out = copy.deepcopy(base)
    for key in keys:
        del out[key]
    return out


def raw(obj: Any) -> bytes:
    return json.dumps(obj).encode()


INVALID = [
    ("sum_1_7", ModelResponse, w(STUDENT, intent_probs={"faq": 0.9, "returns": 0.8}), "intent_probs"),
    ("prob_1_2", ModelResponse, w(STUDENT, intent_probs={"faq": 1.2}), "intent_probs"),
    ("negative_prob", ModelResponse, w(STUDENT, intent_probs={"faq": 0.6, "returns": 0.6, "x": -0.2}), "intent_probs"),
    ("nan_json_text", ModelResponse,
     raw(w(STUDENT, intent_probs={"faq": 0.5})).replace(b"0.5", b"NaN"), "<message>"),
    ("nan_python", ModelResponse, w(STUDENT, intent_probs={"faq": float("nan"), "returns": 1.0}), "intent_probs"),
    ("empty_probs", ModelResponse, w(STUDENT, intent_probs={}), "intent_probs"),
    ("missing_probs_no_error", ModelResponse, wo(STUDENT, "intent_probs"), "intent_probs"),
    ("latency_negative", ModelResponse, w(STUDENT, latency_ms=-1), "latency_ms"),
    ("latency_infinite", ModelResponse, w(STUDENT, latency_ms=float("inf")), "latency_ms"),
    ("latency_missing", ModelResponse, wo(STUDENT, "latency_ms"), "latency_ms"),
    ("latency_string", ModelResponse, w(STUDENT, latency_ms="abc"), "latency_ms"),
    ("cost_negative", ModelResponse, w(STUDENT, cost_usd=-0.01), "cost_usd"),
    ("request_id_empty", ShadowRequest, w(REQ, request_id=""), "request_id"),
    ("request_id_129", ShadowRequest, w(REQ, request_id="x" * 129), "request_id"),
    ("request_id_missing", ShadowRequest, wo(REQ, "request_id"), "request_id"),
    ("request_id_int", ShadowRequest, w(REQ, request_id=12345), "request_id"),
    ("ts_no_zone", ShadowRequest, w(REQ, ts="2025-03-01T12:00:00"), "ts"),
    ("ts_number", ShadowRequest, w(REQ, ts=1740830400), "ts"),
    ("ts_garbage", ShadowRequest, w(REQ, ts="yesterday at noon"), "ts"),
    ("role_not_allowed", ModelResponse, w(STUDENT, role="judge"), "role"),
    ("slice_missing", ShadowRequest, wo(REQ, "slice"), "slice"),
    ("slice_value_int", ShadowRequest, w(REQ, slice={"region": 5}), "slice.region"),
    ("schema_version_2", ShadowRequest, w(REQ, schema_version=2), "schema_version"),
    ("claim_no_attribute", ModelResponse,
     w(STUDENT, claims=[{"entity_id": "ent-op-1", "value": "x"}]), "claims.0.attribute"),
    ("evidence_no_doc_id", ShadowRequest, w(REQ, evidence=[{"text": "t"}]), "evidence.0.doc_id"),
    ("snapshot_no_zone", ModelResponse, w(STUDENT, data_snapshot_ts="2025-01-15T00:00:00"), "data_snapshot_ts"),
    ("catalog_no_introduced_at", CatalogRecord, wo(CATALOG, "introduced_at"), "introduced_at"),
    ("label_bad_source", Label, w(LABEL, source="crowd"), "source"),
    ("label_says_nothing", Label, wo(LABEL, "intent", "preferred", "answer_correct"), "intent"),
    ("label_preferred_both", Label, w(LABEL, preferred="both"), "preferred"),
    ("retrain_end_before_start", RetrainRequest,
     w(RETRAIN, time_range={"start": "2025-03-02T00:00:00Z", "end": "2025-03-01T00:00:00Z"}),
     "time_range.end"),
    ("line_two_kinds", LINE, raw({"catalog": CATALOG, "label": LABEL}), "<line>"),
    ("line_no_kind", LINE, raw({"something": 1}), "<line>"),
    ("line_array", LINE, raw([{"label": LABEL}]), "<line>"),
    ("line_student_role_teacher", LINE,
     raw({"request": REQ, "teacher": None, "student": TEACHER}), "student.role"),
    ("line_other_request_id", LINE,
     raw({"request": REQ, "teacher": None, "student": w(STUDENT, request_id="r-other")}),
     "student.request_id"),
    ("line_student_bad_probs", LINE,
     raw({"request": REQ, "student": w(STUDENT, intent_probs={"faq": 0.2})}), "student.intent_probs"),
    ("line_student_missing_probs", LINE,
     raw({"request": REQ, "student": wo(STUDENT, "intent_probs")}), "student.intent_probs"),
    ("line_invalid_utf8", LINE, raw({"label": LABEL}).replace(b"rev-7", b"rev-\xff\xfe"), "<message>"),
    ("invalid_utf8", ShadowRequest, raw(REQ).replace(b"Where", b"\xc3\x28here"), "<message>"),
    ("lone_surrogate", ShadowRequest, raw(REQ).replace(b"Where", b"\\ud800here"), "<message>"),
    ("broken_json", ShadowRequest, raw(REQ)[:-7], "<message>"),
]


def _check(model: Any, message: Any) -> Any:
    if model == LINE:
        return schemas.parse_line(message)
    if isinstance(message, (bytes, str)):
        return schemas.parse(model, message)
    return schemas.validate(model, message)


@pytest.mark.parametrize(("model", "message", "field"),
                         [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_message_names_field(model: Any, message: Any, field: str) -> None:
    """Each contract violation raises ContractError naming the offending dotted field."""
    with pytest.raises(schemas.ContractError) as info:
        _check(model, message)
    assert field in info.value.fields, info.value.fields
    assert field in str(info.value)


def test_invalid_table_is_large_and_distinct() -> None:
    """The rejection table covers at least 30 distinct invalid messages."""
    assert len(INVALID) >= 30
    assert len({c[0] for c in INVALID}) == len(INVALID)


def test_sum_error_says_what_it_sums_to() -> None:
    """A probability-sum error reports the actual sum (1.7)."""
    with pytest.raises(schemas.ContractError) as info:
        schemas.validate(ModelResponse, w(STUDENT, intent_probs={"faq": 0.9, "returns": 0.8}))
    assert "sums to 1.7" in str(info.value)


def test_error_response_without_probs_is_valid() -> None:
    """intent_probs may be absent when the response carries an error."""
    resp = schemas.validate(ModelResponse, ERROR_RESP)
    assert resp.intent_probs is None and resp.error == "timeout" and not resp.answered


VALID = [
    ("request", ShadowRequest, REQ),
    ("student", ModelResponse, STUDENT),
    ("error_response", ModelResponse, ERROR_RESP),
    ("catalog", CatalogRecord, CATALOG),
    ("label", Label, LABEL),
    ("retrain", RetrainRequest, RETRAIN),
]


@pytest.mark.parametrize(("model", "data"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_valid_message_round_trips_with_extras(model: Any, data: dict[str, Any]) -> None:
    """model -> JSON -> model is lossless, and unknown extra fields survive it."""
    data = w(data, trace_id="abc", producer={"host": "web-3", "attempt": 2})
    if model is ShadowRequest:
        data["evidence"][0]["score"] = 0.93
        data["evidence"][0]["meta"] = {"retriever": "bm25"}
    first = schemas.parse(model, raw(data))
    again = model.model_validate_json(first.model_dump_json())
    assert again == first
    assert again.model_extra["trace_id"] == "abc"
    assert again.model_extra["producer"] == {"host": "web-3", "attempt": 2}
    dumped = json.loads(again.model_dump_json())
    assert dumped["trace_id"] == "abc"
    if model is ShadowRequest:
        assert again.evidence[0].model_extra == {"score": 0.93, "meta": {"retriever": "bm25"}}
        assert dumped["evidence"][0]["meta"] == {"retriever": "bm25"}
        assert again.reference is not None and again.reference.intent == "order_tracking"
    if model is ModelResponse and data.get("intent_probs"):
        assert again.intent_probs == data["intent_probs"]
        assert again.claims[0].value == ["paperback"]
        assert again.data_snapshot_ts is not None


REPLICA = w(TEACHER, role="teacher_replica")
LINES = [
    ("full_request", {"request": REQ, "teacher": TEACHER, "student": STUDENT, "teacher_replica": REPLICA},
     schemas.RequestLine),
    ("null_responses", {"request": REQ, "teacher": None, "student": None}, schemas.RequestLine),
    ("error_teacher", {"request": REQ, "teacher": ERROR_RESP, "student": STUDENT}, schemas.RequestLine),
    ("catalog", {"catalog": CATALOG}, schemas.CatalogLine),
    ("label", {"label": LABEL}, schemas.LabelLine),
]


@pytest.mark.parametrize(("line", "kind"), [v[1:] for v in LINES], ids=[v[0] for v in LINES])
def test_replay_line_round_trips(line: dict[str, Any], kind: type) -> None:
    """Each replay-line kind parses to its model and survives a JSON round trip."""
    line = w(line, batch="b-9")
    parsed = schemas.parse_line(raw(line))
    assert type(parsed) is kind
    assert kind.model_validate_json(parsed.model_dump_json()) == parsed
    assert schemas.parse_line(parsed.model_dump_json()) == parsed
    assert json.loads(parsed.model_dump_json())["batch"] == "b-9"


class_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=16)
weights = st.dictionaries(class_names, st.floats(min_value=1e-3, max_value=1e3), min_size=2, max_size=9)
bad_factor = st.one_of(st.floats(min_value=0.2, max_value=0.9979), st.floats(min_value=1.0021, max_value=5.0))


@settings(max_examples=200, deadline=None)
@given(weights=weights, factor=bad_factor)
def test_normalised_probabilities_accepted_scaled_rejected(weights: dict[str, float], factor: float) -> None:
    """Normalised positive weights are valid intent_probs; scaled off 1 ± 0.002 they are not."""
    total = math.fsum(weights.values())
    probs = {k: v / total for k, v in weights.items()}
    ok = schemas.validate(ModelResponse, w(STUDENT, intent_probs=probs))
    assert ok.intent_probs == probs
    with pytest.raises(schemas.ContractError) as info:
        schemas.validate(ModelResponse, w(STUDENT, intent_probs={k: v * factor for k, v in probs.items()}))
    assert "intent_probs" in info.value.fields


def test_json_schemas_are_valid_draft_2020_12() -> None:
    """Every exported schema is itself a valid draft 2020-12 JSON Schema."""
    out = json_schemas()
    assert set(out) == {"ShadowRequest", "ModelResponse", "CatalogRecord", "Label",
                        "RetrainRequest", "ReplayLine"}
    for schema in out.values():
        jsonschema.Draft202012Validator.check_schema(schema)


SCHEMA_EXAMPLES = [("ShadowRequest", REQ), ("ModelResponse", STUDENT), ("ModelResponse", ERROR_RESP),
                   ("CatalogRecord", CATALOG), ("Label", LABEL), ("RetrainRequest", RETRAIN)]
SCHEMA_EXAMPLES += [("ReplayLine", line) for _, line, _ in LINES]


@pytest.mark.parametrize(("name", "data"), SCHEMA_EXAMPLES)
def test_valid_examples_pass_json_schema(name: str, data: dict[str, Any]) -> None:
    """The valid wire examples also validate against the exported JSON Schema."""
    jsonschema.Draft202012Validator(json_schemas()[name]).validate(w(data, trace_id="abc"))


@pytest.mark.parametrize(("name", "data", "missing"), [
    ("ShadowRequest", REQ, "request_id"),
    ("ShadowRequest", REQ, "slice"),
    ("ModelResponse", STUDENT, "latency_ms"),
    ("CatalogRecord", CATALOG, "introduced_at"),
    ("Label", LABEL, "source"),
    ("RetrainRequest", RETRAIN, "time_range"),
])
def test_missing_required_field_fails_json_schema(name: str, data: dict[str, Any], missing: str) -> None:
    """A message without a required field is rejected by the JSON Schema too."""
    validator = jsonschema.Draft202012Validator(json_schemas()[name])
    errors = list(validator.iter_errors(wo(data, missing)))
    assert errors and any(missing in e.message for e in errors)
