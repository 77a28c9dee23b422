"""A model behind an HTTP JSON endpoint: a request template, or OpenAI chat completions.

Requests of a batch run on a thread pool of ``concurrency`` threads sharing one httpx client,
which is the concurrency limit. Timeouts, connection failures, 5xx, 408 and 429 are retried
with exponential backoff and jitter (a ``Retry-After`` header is honoured); other 4xx and
replies that break the contract are not. Whatever happens, each request yields exactly one
Prediction: with intent_probs, or with ``error`` naming what went wrong ("timeout",
"http_503", "bad_response: …").

The template is JSON parsed once; placeholders are substituted into the parsed structure,
never into JSON text, so a prompt cannot inject fields: ``"{prompt}"`` and ``"{request_id}"``
anywhere inside a string, and a string that is exactly ``"{slice}"`` or ``"{entities}"``
becomes that object or list.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from schemas.errors import ConfigError
from streams.backends.base import (
    BadResponse, Prediction, RequestLike, check_claims, check_intent_probs, lookup,
)
from streams.backends.openai_chat import chat_body, chat_url, unwrap_chat

DEFAULT_TEMPLATE: dict[str, Any] = {"request_id": "{request_id}", "prompt": "{prompt}"}
RESPONSE_FIELDS = ("intent_probs", "answer", "claims", "cost_usd")
DEFAULT_RESPONSE_MAP = {name: name for name in RESPONSE_FIELDS}
_PLACEHOLDER = re.compile(r"\{(prompt|request_id)\}")
_WHOLE_VALUE = {"{slice}": "slice", "{entities}": "entities"}


@dataclass
class HttpBackendConfig:
    """How to call the endpoint; invalid values raise ConfigError at start-up."""

    endpoint: str
    openai: bool = False
    model: str | None = None
    model_version: str = "unknown"
    request_template: Any = field(default_factory=lambda: dict(DEFAULT_TEMPLATE))
    response_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RESPONSE_MAP))
    timeout_s: float = 10.0
    retries: int = 3
    concurrency: int = 8
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    retry_after_max_s: float = 60.0
    headers: dict[str, str] = field(default_factory=dict)
    intents: Sequence[str] = ()
    cost_per_1k_tokens: float | None = None

    def __post_init__(self) -> None:
        if not self.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint {self.endpoint!r} must start with http:// or https://")
        if self.timeout_s <= 0 or self.retries < 0 or self.concurrency < 1:
            raise ConfigError("need timeout_s > 0, retries >= 0 and concurrency >= 1")
        if self.openai and not self.model:
            raise ConfigError("OpenAI mode needs the model name the endpoint serves")
        unknown = set(self.response_map) - set(RESPONSE_FIELDS)
        if unknown:
            raise ConfigError(f"response map names unknown fields {sorted(unknown)}; "
                              f"known: {', '.join(RESPONSE_FIELDS)}")
        self.response_map = DEFAULT_RESPONSE_MAP | self.response_map
        if not self.openai and "{prompt}" not in orjson.dumps(self.request_template).decode():
            raise ConfigError("request template never uses {prompt}")


def fill_template(template: Any, request: RequestLike) -> Any:
    """The template with the request's values substituted into its parsed JSON structure."""
    text = {"prompt": request.prompt, "request_id": request.request_id}
    if isinstance(template, dict):
        return {key: fill_template(value, request) for key, value in template.items()}
    if isinstance(template, list):
        return [fill_template(value, request) for value in template]
    if isinstance(template, str):
        if template in _WHOLE_VALUE:
            value = getattr(request, _WHOLE_VALUE[template], None)
            return dict(value) if isinstance(value, dict) else list(value or [])
        return _PLACEHOLDER.sub(lambda m: text[m.group(1)], template)  # one pass: no re-expansion
    return template


class HttpBackend:
    """Calls an HTTP model for each request of a batch, ``concurrency`` at a time."""

    def __init__(self, config: HttpBackendConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        limits = httpx.Limits(max_connections=config.concurrency,
                              max_keepalive_connections=config.concurrency)
        headers = {"content-type": "application/json"} | config.headers
        self._client = httpx.Client(timeout=config.timeout_s, limits=limits, headers=headers,
                                    transport=transport)
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="dw-http")
        self._url = chat_url(config.endpoint) if config.openai else config.endpoint

    def predict(self, batch: Sequence[RequestLike]) -> list[Prediction]:
        """One Prediction per request, in order; never raises for a request's failure."""
        return list(self._pool.map(self._one, batch))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def _one(self, request: RequestLike) -> Prediction:
        started = time.monotonic()
        out = Prediction(request.request_id, model=self.config.model or "http",
                         model_version=self.config.model_version)
        try:
            self._call(request, out)
        except BadResponse as exc:
            out.error = f"bad_response: {exc}"[:300]
        except Exception as exc:  # a bug must not lose the request either
            out.error = f"backend_error: {type(exc).__name__}: {exc}"[:300]
        if out.error is not None:
            out.intent_probs, out.answer, out.claims, out.cost_usd = None, None, [], None
        out.latency_ms = (time.monotonic() - started) * 1000.0
        out.ts = datetime.now(timezone.utc)
        return out

    def _call(self, request: RequestLike, out: Prediction) -> None:
        config = self.config
        body = (chat_body(request, config.model, config.intents) if config.openai
                else fill_template(config.request_template, request))
        content = orjson.dumps(body)
        for attempt in range(self.config.retries + 1):
            retry_after: float | None = None
            try:
                response = self._client.post(self._url, content=content)
            except httpx.TimeoutException:
                out.error = "timeout"
            except httpx.ConnectError:
                out.error = "unavailable"
            except httpx.TransportError as exc:
                out.error = f"transport_error: {type(exc).__name__}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    out.error = None
                    self._parse(response.content, out)
                    return
                out.error = f"http_{status}"
                if status < 500 and status not in (408, 429):
                    return
                retry_after = _retry_after_s(response.headers.get("retry-after"))
            if attempt == self.config.retries:
                return
            delay = self._backoff(attempt)
            if retry_after is not None:
                if retry_after > self.config.retry_after_max_s:
                    return
                delay = max(delay, retry_after)
            time.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _parse(self, raw: bytes, out: Prediction) -> None:
        data = _json(raw, "reply is not JSON")
        if self.config.openai:
            data, model, out.cost_usd = unwrap_chat(data, self.config.cost_per_1k_tokens)
            out.model = model or out.model
        mapping = DEFAULT_RESPONSE_MAP if self.config.openai else self.config.response_map
        try:
            probs = lookup(data, mapping["intent_probs"])
        except KeyError:
            raise BadResponse(f"no intent_probs at {mapping['intent_probs']!r}") from None
        out.intent_probs = check_intent_probs(probs)
        answer = _optional(data, mapping["answer"])
        if answer is not None and not isinstance(answer, str):
            raise BadResponse("answer is not a string")
        out.answer = answer
        out.claims = check_claims(_optional(data, mapping["claims"]))
        cost = None if self.config.openai else _optional(data, mapping["cost_usd"])
        if cost is not None:
            if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not cost >= 0:
                raise BadResponse("cost_usd is not a number >= 0")
            out.cost_usd = float(cost)


def _json(raw: bytes, reason: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadResponse(reason) from None


def _optional(data: Any, path: str) -> Any:
    try:
        return lookup(data, path)
    except KeyError:
        return None


def _retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
