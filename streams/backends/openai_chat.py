"""The OpenAI chat-completions format for the HTTP backend (any compatible server: vLLM,
llama.cpp, Ollama, a hosted API): the request asks for a JSON object with intent_probs,
answer and claims; the reply's assistant message is that object."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from streams.backends.base import BadResponse, RequestLike, lookup

SYSTEM_PROMPT = (
    "You are the assistant of an online store. Classify the customer's message and answer it. "
    "Reply with one JSON object only, with keys: \"intent_probs\": an object giving the "
    "probability of each of these intents, summing to 1: {intents}; \"answer\": your reply to "
    "the customer; \"claims\": a list of {{\"entity_id\", \"attribute\", \"value\"}} facts your "
    "answer asserts about catalog items ([] if none)."
)


def chat_url(endpoint: str) -> str:
    """``…/v1/chat/completions`` from a base URL (with or without ``/v1``) or the full URL."""
    base = endpoint.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


def chat_body(request: RequestLike, model: str | None, intents: Sequence[str]) -> dict[str, Any]:
    """A deterministic chat request: system instructions, then the prompt and its evidence."""
    user = request.prompt
    evidence = getattr(request, "evidence", None) or []
    if evidence:
        docs = "\n".join(f"- [{e.doc_id}] {e.text or ''}".rstrip() for e in evidence)
        user = f"{user}\n\nEvidence:\n{docs}"
    system = SYSTEM_PROMPT.format(intents=", ".join(intents) or "the intents you recognise")
    return {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "temperature": 0,
        "response_format": {"type": "json_object"},
    }


def unwrap_chat(reply: Any, cost_per_1k_tokens: float | None) -> tuple[Any, str | None, float | None]:
    """(the assistant's JSON object, the model that answered, cost in dollars or None)."""
    try:
        content = lookup(reply, "choices.0.message.content")
    except KeyError:
        raise BadResponse("no choices.0.message.content") from None
    if not isinstance(content, str):
        raise BadResponse("assistant message content is not text")
    model = reply.get("model") if isinstance(reply.get("model"), str) else None
    cost = None
    tokens = reply.get("usage", {}).get("total_tokens") if isinstance(reply.get("usage"), dict) else None
    if cost_per_1k_tokens is not None and isinstance(tokens, (int, float)):
        cost = tokens / 1000 * cost_per_1k_tokens
    try:
        return orjson.loads(strip_fence(content)), model, cost
    except orjson.JSONDecodeError:
        raise BadResponse("assistant message is not a JSON object") from None


def strip_fence(text: str) -> str:
    """Chat models sometimes wrap JSON in a ```json fence despite being asked not to."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[-1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    return stripped
