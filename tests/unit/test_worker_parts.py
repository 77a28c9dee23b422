"""Worker pieces without a broker: decoding, response building, the replay backend, CLI checks."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

import schemas
from distillwatch.cli import app
from schemas import ContractError, ModelResponse
from streams.backends.base import Prediction, lookup
from streams.backends.replay import NO_RESPONSE, ReplayBackend
from streams.worker import _predict, build_response, decode_request

REQUEST = {"request_id": "r-1", "ts": "2025-03-01T12:00:00Z", "prompt": "hi", "slice": {}}


def response(rid: str, role: str, **fields: object) -> dict[str, object]:
    return {"request_id": rid, "ts": "2025-03-01T12:00:01.250000Z", "role": role,
            "model": f"{role}-m", "model_version": "3", "latency_ms": 12.5,
            "intent_probs": {"faq": 0.25, "returns": 0.75}, **fields}


def test_decode_request_fast_and_slow_paths() -> None:
    assert decode_request(orjson.dumps(REQUEST)).request_id == "r-1"
    coerced = decode_request(orjson.dumps(REQUEST | {"multi_intent": "true"}))  # pydantic accepts
    assert coerced.request_id == "r-1"
    for bad in (None, b"{", orjson.dumps(REQUEST | {"ts": 1700000000}), orjson.dumps({"x": 1})):
        with pytest.raises(ContractError):
            decode_request(bad)


def test_build_response_is_valid_and_stamped() -> None:
    answered = datetime(2025, 3, 1, 12, 0, 2, 500000, tzinfo=timezone.utc)
    msg = build_response("r-1", "student", Prediction(
        "ignored", intent_probs={"faq": 1.0}, latency_ms=3.5, model="s", model_version="1", ts=answered))
    assert msg["ts"] == "2025-03-01T12:00:02.500000Z" and msg["request_id"] == "r-1"
    assert schemas.validate(ModelResponse, msg).role == "student"
    assert "error" not in msg and "answer" not in msg


def test_build_response_turns_a_contract_breach_into_an_error_response() -> None:
    msg = build_response("r-1", "teacher", Prediction("r-1", intent_probs={"faq": 0.4},
                                                      latency_ms=float("nan")))
    parsed = schemas.validate(ModelResponse, msg)
    assert parsed.error is not None and parsed.error.startswith("bad_response: ")
    assert parsed.intent_probs is None and parsed.latency_ms == 0.0


def test_a_broken_backend_still_answers_every_request() -> None:
    class Broken:
        def predict(self, batch: object) -> list[Prediction]:
            raise RuntimeError("boom")

        def close(self) -> None:
            pass

    requests = [decode_request(orjson.dumps(REQUEST | {"request_id": f"r-{i}"})) for i in range(3)]
    out = _predict(Broken(), requests)
    assert [p.request_id for p in out] == ["r-0", "r-1", "r-2"]
    assert {p.error for p in out} == {"backend_error: RuntimeError: boom"}


def test_replay_backend_answers_as_recorded(tmp_path: Path) -> None:
    lines = [
        {"request": REQUEST | {"request_id": "a"}, "teacher": response("a", "teacher", trace="t1"),
         "student": response("a", "student")},
        {"request": REQUEST | {"request_id": "b"}, "teacher": None, "student": None},
        {"request": REQUEST | {"request_id": "c"},
         "teacher": response("c", "teacher", intent_probs=None, error="timeout")},
        {"request": REQUEST | {"request_id": "a"}, "teacher": response("a", "teacher", model="dup")},
        {"label": {"request_id": "a", "ts": "2025-03-01T13:00:00Z", "source": "human", "intent": "faq"}},
    ]
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines) + b"not json\n")
    backend = ReplayBackend.from_file(log, "teacher")
    assert backend.invalid_lines == 1
    requests = [decode_request(orjson.dumps(REQUEST | {"request_id": r})) for r in "abcz"]
    a, b, c, z = backend.predict(requests)
    assert schemas.validate(ModelResponse, build_response("a", "teacher", a)) == \
        schemas.validate(ModelResponse, lines[0]["teacher"])  # first line wins, extra field kept
    assert build_response("a", "teacher", a)["trace"] == "t1"
    assert b.error == NO_RESPONSE and z.error == NO_RESPONSE
    assert c.error == "timeout" and c.intent_probs is None


def test_lookup_dotted_paths() -> None:
    data = {"choices": [{"message": {"content": "x"}}], "a": {"b": None}}
    assert lookup(data, "choices.0.message.content") == "x"
    assert lookup(data, "a.b") is None
    for missing in ("choices.1", "a.c", "choices.x"):
        with pytest.raises(KeyError):
            lookup(data, missing)


@pytest.mark.parametrize("args, message", [
    (["student", "--backend", "http"], "--backend http needs --endpoint"),
    (["student", "--backend", "replay"], "--backend replay needs --replay-log"),
    (["teacher", "--backend", "transformers"], "--backend transformers needs --model-dir"),
    (["student", "--backend", "http", "--endpoint", "http://x", "--replay-log", "l"],
     "--replay-log applies to --backend replay"),
    (["student", "--backend", "replay", "--replay-log", "l", "--openai"], "apply to --backend http only"),
    (["student", "--backend", "http", "--endpoint", "http://x", "--openai"], "--openai needs --model"),
    (["student", "--backend", "http", "--endpoint", "http://x", "--map", "probs"], "expected FIELD=dotted.path"),
    (["student", "--backend", "replay", "--replay-log", "/no/such.jsonl"], "cannot read replay log"),
])
def test_bad_combinations_fail_with_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["worker", *args])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distillwatch: error: ") and message in lines[0]
