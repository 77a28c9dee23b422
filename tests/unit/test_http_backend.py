"""The HTTP backend against a local flaky server: one Prediction per request, retries only
where they help, the concurrency limit held, templates substituted without injection."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator

import pytest

import schemas
from schemas import ShadowRequest
from streams.backends.http import HttpBackend, HttpBackendConfig, fill_template
from tests.fake_model_server import PROBS, FakeModelServer

RETRIES = 2


def req(request_id: str, prompt: str | None = None, **extra: object) -> ShadowRequest:
    return schemas.validate(ShadowRequest, {
        "request_id": request_id, "ts": "2025-03-01T12:00:00Z",
        "prompt": prompt if prompt is not None else f"{request_id} where is my order?",
        "slice": {"region": "jp"}, **extra})


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer(slow_s=1.0) as s:
        yield s


def backend_for(url: str, **overrides: object) -> HttpBackend:
    config = HttpBackendConfig(endpoint=url, model="student-http", model_version="v7",
                               timeout_s=0.3, retries=RETRIES, concurrency=4,
                               backoff_base_s=0.01, backoff_max_s=0.05)
    for name, value in overrides.items():
        setattr(config, name, value)
    config.__post_init__()
    return HttpBackend(config)


# kind → (expected error or None for an answer, expected server hits)
OUTCOMES = {
    "ok": (None, 1),
    "flaky": (None, 2),
    "limited": (None, 2),
    "slow": ("timeout", RETRIES + 1),
    "down": ("http_503", RETRIES + 1),
    "bad": ("http_400", 1),
    "toolong": ("http_429", 1),
    "garbage": ("bad_response", 1),
    "sum17": ("bad_response", 1),
}


def test_every_request_gets_one_prediction_and_retries_only_where_they_help(server: FakeModelServer) -> None:
    batch = [req(f"{kind}-{i}") for i in range(2) for kind in OUTCOMES]
    backend = backend_for(server.url)
    try:
        predictions = backend.predict(batch)
    finally:
        backend.close()

    assert [p.request_id for p in predictions] == [r.request_id for r in batch]
    for p in predictions:
        kind = p.request_id.split("-")[0]
        error, hits = OUTCOMES[kind]
        assert server.hit_count(p.request_id) == hits, p.request_id
        if error is None:
            assert p.error is None, (p.request_id, p.error)
            assert p.intent_probs == PROBS
            assert p.answer == f"answer ({kind})"
            assert p.claims[0]["entity_id"] == "ent-1"
        else:
            assert p.error is not None and p.error.split(":")[0] == error, (p.request_id, p.error)
            assert p.intent_probs is None and p.answer is None
        assert p.model == "student-http" and p.model_version == "v7"
        assert p.latency_ms >= 0 and p.ts is not None
    sum17 = next(p for p in predictions if p.request_id.startswith("sum17"))
    assert "sums to 1.7" in (sum17.error or "")


def test_retry_after_is_honoured(server: FakeModelServer) -> None:
    backend = backend_for(server.url)
    try:
        [p] = backend.predict([req("limited-x")])
    finally:
        backend.close()
    assert p.error is None
    first, second = server.hits["limited-x"]
    assert second - first >= 0.95
    assert p.latency_ms >= 950


def test_concurrency_limit_is_respected(server: FakeModelServer) -> None:
    backend = backend_for(server.url, concurrency=3)
    try:
        predictions = backend.predict([req(f"work-{i}") for i in range(30)])
    finally:
        backend.close()
    assert all(p.error is None for p in predictions)
    assert 2 <= server.max_in_flight <= 3


def test_unreachable_endpoint_is_an_error_not_an_exception() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = backend_for(f"http://127.0.0.1:{port}/predict", retries=1)
    try:
        [p] = backend.predict([req("ok-1")])
    finally:
        backend.close()
    assert p.error == "unavailable"


def test_template_is_filled_into_the_structure_so_prompts_cannot_inject() -> None:
    sneaky = 'x", "evil": "{request_id}"} {prompt} \\u0000'
    template = {"input": {"id": "{request_id}", "text": "Q: {prompt}", "where": "{slice}",
                          "about": "{entities}"}, "k": 5, "tags": ["id={request_id}", None]}
    filled = fill_template(template, req("ok-7", prompt=sneaky, entities=["ent-3"]))
    assert filled == {"input": {"id": "ok-7", "text": "Q: " + sneaky, "where": {"region": "jp"},
                                "about": ["ent-3"]}, "k": 5, "tags": ["id=ok-7", None]}


def test_custom_template_and_response_map() -> None:
    with FakeModelServer(id_of=lambda body: body["input"]["id"], nest=True) as server:
        backend = backend_for(server.url + "/score",
                              request_template={"input": {"id": "{request_id}", "text": "{prompt}"}},
                              response_map={"intent_probs": "output.probs", "answer": "output.text"})
        sneaky = 'ok", "request_id": "other'
        try:
            [p] = backend.predict([req("ok-5", prompt=sneaky)])
        finally:
            backend.close()
        assert p.error is None and p.intent_probs == PROBS and p.answer == "answer (ok)"
        assert server.bodies["ok-5"] == {"input": {"id": "ok-5", "text": sneaky}}
        assert server.paths == ["/score"]


def test_missing_mapped_field_is_a_bad_response(server: FakeModelServer) -> None:
    backend = backend_for(server.url, response_map={"intent_probs": "output.probs"})
    try:
        [p] = backend.predict([req("ok-1")])
    finally:
        backend.close()
    assert p.error == "bad_response: no intent_probs at 'output.probs'"


def test_openai_chat_completions(server: FakeModelServer) -> None:
    backend = backend_for(server.url, openai=True, model="fake-gpt", cost_per_1k_tokens=0.5,
                          intents=("faq", "order_tracking", "returns"), retries=1)
    batch = [req("ok-1", evidence=[{"doc_id": "d1", "text": "Ships in 2 days"}]), req("fenced-1"),
             req("garbage-1"), req("sum17-1"), req("flaky-1"), req("bad-1")]
    try:
        predictions = backend.predict(batch)
    finally:
        backend.close()
    by_id = {p.request_id: p for p in predictions}
    for rid in ("ok-1", "fenced-1", "flaky-1"):
        p = by_id[rid]
        assert p.error is None and p.intent_probs == PROBS, (rid, p.error)
        assert p.model == "fake-gpt-1"  # the model the endpoint says answered
        assert p.cost_usd is not None and math.isclose(p.cost_usd, 0.06)
        assert p.claims[0]["attribute"] == "format"
    assert by_id["garbage-1"].error == "bad_response: assistant message is not a JSON object"
    assert (by_id["sum17-1"].error or "").startswith("bad_response: intent_probs sums to 1.7")
    assert by_id["bad-1"].error == "http_400"
    assert server.hit_count("flaky-1") == 2 and server.hit_count("garbage-1") == 1
    assert set(server.paths) == {"/v1/chat/completions"}
    body = server.bodies["ok-1"]
    assert body["model"] == "fake-gpt" and body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system" and "faq, order_tracking, returns" in system["content"]
    assert "intent_probs" in system["content"]
    assert user == {"role": "user", "content": "ok-1 where is my order?\n\nEvidence:\n- [d1] Ships in 2 days"}


@pytest.mark.parametrize("kwargs, message", [
    ({"endpoint": "localhost:8000"}, "must start with http"),
    ({"endpoint": "http://x", "openai": True}, "needs the model name"),
    ({"endpoint": "http://x", "response_map": {"probs": "a"}}, "unknown fields ['probs']"),
    ({"endpoint": "http://x", "request_template": {"text": "hello"}}, "never uses {prompt}"),
    ({"endpoint": "http://x", "concurrency": 0}, "concurrency >= 1"),
])
def test_bad_configuration_is_rejected_at_start(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(schemas.ConfigError, match=message.replace("[", r"\[").replace("{", r"\{")):
        HttpBackendConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("endpoint", ["http://h:8000", "http://h:8000/", "http://h:8000/v1",
                                      "http://h:8000/v1/chat/completions"])
def test_chat_url_from_base_or_full_url(endpoint: str) -> None:
    from streams.backends.openai_chat import chat_url

    assert chat_url(endpoint) == "http://h:8000/v1/chat/completions"
