"""The teacher/student worker: ``shadow.requests`` → a model backend → ``shadow.<role>``.

At least once, never lost: a batch (up to ``batch_size`` records or ``batch_wait_ms``) is
decoded, answered by the backend (one Prediction per request, failures as ``error``), and
published as ModelResponses with the idempotent acks=all producer; the consumer offsets of
the batch are committed only after the broker confirmed every response. A crash before the
commit answers the batch again (at least once: readers keep one response per request_id).
Records that are not valid ShadowRequests are skipped and counted; the evaluator, which reads
the same topic, dead-letters them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import msgspec
import orjson

import schemas
from distillwatch.settings import Settings
from schemas import fastpath
from schemas.errors import ContractError, DistillwatchError
from schemas.messages import ModelResponse, ShadowRequest, utc_timestamp
from streams import topics
from streams.backends.base import Backend, Prediction, RequestLike
from streams.errors import KafkaSetupError
from streams.kafka_io import consumer_config, producer_config
from streams.stopping import IdleClock

MAX_BATCH_S = 900
ROLE_TOPICS = {"teacher": topics.TEACHER, "student": topics.STUDENT}
_fast_request = msgspec.json.Decoder(fastpath.ShadowRequest)


class WorkerError(DistillwatchError):
    """The worker cannot go on without losing or duplicating work (e.g. deliveries failed)."""


@dataclass
class WorkerOptions:
    role: str
    batch_size: int = 32
    batch_wait_ms: int = 200
    max_messages: int | None = None
    idle_exit_s: float | None = None
    flush_timeout_s: float = 120.0


@dataclass
class WorkerStats:
    consumed: int = 0
    invalid: int = 0
    delivered: int = 0
    errors: int = 0
    batches: int = 0
    commit_failures: int = 0
    invalid_reasons: list[str] = field(default_factory=list)


def group_id(settings: Settings, role: str) -> str:
    """``distillwatch-worker-<role>``, behind the topic prefix so deployments stay apart."""
    return f"{settings.topic_prefix}distillwatch-worker-{role}"


def decode_request(raw: bytes | None) -> RequestLike:
    """A ShadowRequest from a record value: msgspec fast path, pydantic for the verdict."""
    if raw is None:
        raise ContractError("ShadowRequest", [schemas.Problem("<message>", "null", "empty value")])
    try:
        return _fast_request.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return schemas.parse(ShadowRequest, raw)


def build_response(request_id: str, role: str, p: Prediction) -> dict[str, Any]:
    """A valid ModelResponse object for a prediction; one that breaks the contract becomes
    an error response saying why, so the request still gets its one answer."""
    ts = p.ts if isinstance(p.ts, str) else utc_timestamp((p.ts or _now()).astimezone(timezone.utc))
    msg: dict[str, Any] = {
        "schema_version": 1, "request_id": request_id, "ts": ts, "role": role,
        "model": p.model or "unknown", "model_version": p.model_version or "unknown",
        "latency_ms": p.latency_ms, "intent_probs": p.intent_probs, "error": p.error,
        "answer": p.answer, "claims": p.claims, "cost_usd": p.cost_usd,
    }
    msg = {k: v for k, v in msg.items() if v is not None}
    for key, value in p.extra.items():
        msg.setdefault(key, value)
    try:
        schemas.validate(ModelResponse, msg)
        return msg
    except ContractError as exc:
        latency = p.latency_ms if isinstance(p.latency_ms, (int, float)) else 0.0
        return {"schema_version": 1, "request_id": request_id, "ts": utc_timestamp(_now()),
                "role": role, "model": str(msg["model"]), "model_version": str(msg["model_version"]),
                "latency_ms": latency if math.isfinite(latency) and latency >= 0 else 0.0,
                "error": f"bad_response: {exc}"[:300]}


def run_worker(settings: Settings, backend: Backend, options: WorkerOptions,
               stop: threading.Event | None = None,
               log: Callable[[str], None] | None = None) -> WorkerStats:
    """Answer requests until ``stop``, ``max_messages`` or ``idle_exit_s``; return the counts."""
    from confluent_kafka import Consumer, Producer

    if options.role not in ROLE_TOPICS:
        raise WorkerError(f"role must be one of {sorted(ROLE_TOPICS)}, not {options.role!r}")
    stop = stop or threading.Event()
    source, sink = settings.topic(topics.REQUESTS), settings.topic(ROLE_TOPICS[options.role])
    # A batch against a slow endpoint (timeouts × retries, Retry-After) can outlast the default
    # 5-minute poll interval; leaving the group then would hand the batch to another worker.
    consumer = Consumer(consumer_config(settings, group_id(settings, options.role),
                                        **{"max.poll.interval.ms": MAX_BATCH_S * 1000}))
    producer = Producer(producer_config(settings))
    stats = WorkerStats()
    try:
        _check_topics(consumer, settings, (source, sink))
        idle = IdleClock(options.idle_exit_s)
        consumer.subscribe([source], on_assign=lambda _c, _parts: idle.assigned())
        while not stop.is_set():
            want = options.batch_size
            if options.max_messages is not None:
                want = min(want, options.max_messages - stats.consumed)
                if want <= 0:
                    break
            records = consumer.consume(want, options.batch_wait_ms / 1000)
            if not records:
                if idle.expired():
                    break
                continue
            idle.reset()
            _answer_batch(records, consumer, producer, backend, sink, options, stats, log)
            if log is not None and stats.batches % 50 == 0:
                log(summary(stats, options.role))
    finally:
        consumer.close()
        producer.flush(5)
    return stats


def _answer_batch(records: list[Any], consumer: Any, producer: Any, backend: Backend, sink: str,
                  options: WorkerOptions, stats: WorkerStats,
                  log: Callable[[str], None] | None) -> None:
    from confluent_kafka import TopicPartition

    requests: list[RequestLike] = []
    offsets: dict[tuple[str, int], int] = {}
    for record in records:
        if record.error() is not None:
            if record.error().fatal():
                raise WorkerError(f"consumer failed: {record.error().str()}")
            if log is not None:
                log(f"consumer: {record.error().str()}")
            continue
        stats.consumed += 1
        offsets[(record.topic(), record.partition())] = record.offset()
        try:
            requests.append(decode_request(record.value()))
        except ContractError as exc:
            stats.invalid += 1
            if len(stats.invalid_reasons) < 20:
                stats.invalid_reasons.append(str(exc)[:200])
    predictions = _predict(backend, requests)
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is None:
            stats.delivered += 1
        else:
            failures.append(str(err))

    for request, prediction in zip(requests, predictions):
        response = build_response(request.request_id, options.role, prediction)
        stats.errors += "error" in response
        _produce(producer, sink, request.request_id.encode(), orjson.dumps(response), on_delivery)
    unconfirmed = producer.flush(options.flush_timeout_s)
    if unconfirmed or failures:
        raise WorkerError(
            f"{unconfirmed + len(failures)} responses were not acknowledged by the broker "
            f"({'; '.join(failures[:2]) or 'flush timed out'}); offsets not committed, "
            "the batch is answered again on restart")
    stats.batches += 1
    if offsets:
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()],
                            asynchronous=False)
        except Exception as exc:  # e.g. partitions revoked: the new owner answers them again
            stats.commit_failures += 1
            if log is not None:
                log(f"commit failed ({exc}); those requests will be answered again")


def _predict(backend: Backend, requests: Sequence[RequestLike]) -> list[Prediction]:
    """The backend's predictions, or one error per request if the backend itself broke."""
    if not requests:
        return []
    try:
        predictions = backend.predict(requests)
        if len(predictions) == len(requests):
            return predictions
        reason = f"backend_error: {len(predictions)} predictions for {len(requests)} requests"
    except Exception as exc:
        reason = f"backend_error: {type(exc).__name__}: {exc}"[:300]
    return [Prediction(r.request_id, error=reason) for r in requests]


def _produce(producer: Any, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
    while True:
        try:
            producer.produce(topic, value, key, on_delivery=on_delivery)
            return
        except BufferError:  # local queue full: let deliveries drain
            producer.poll(0.5)


def _check_topics(consumer: Any, settings: Settings, names: Sequence[str]) -> None:
    """Fail at start-up, with what to do, when Kafka or a topic is missing."""
    from confluent_kafka import KafkaException

    try:
        existing = consumer.list_topics(timeout=10).topics
    except KafkaException as exc:
        raise KafkaSetupError(f"Kafka at {settings.kafka.bootstrap_servers} is unreachable "
                              f"({exc.args[0]}); start it with `distillwatch kafka start`") from None
    missing = [name for name in names if name not in existing]
    if missing:
        raise KafkaSetupError(f"topic {', '.join(missing)} does not exist; run `distillwatch init`")


def summary(stats: WorkerStats, role: str) -> str:
    """One line for the operator."""
    return (f"{role} worker: {stats.consumed} records, {stats.invalid} invalid (skipped), "
            f"{stats.delivered} responses acknowledged ({stats.errors} with error), "
            f"{stats.batches} batches")


def _now() -> datetime:
    return datetime.now(timezone.utc)
