"""librdkafka configuration: the user's ``kafka.extra`` tunes, distillwatch's guarantees stay.

Pure: no client is created, only the dictionaries they would be given."""

from __future__ import annotations

import threading

import pytest

from distillwatch.settings import GUARANTEED_KAFKA_KEYS, load_settings
from evaluators.config import EvalConfig
from schemas.errors import ConfigError
from streams.evaluator.engine import EngineOptions, EvaluatorEngine
from streams.evaluator.outputs import RowBuilder, SamplingPolicy
from streams.kafka_io import client_config, consumer_config, producer_config
from streams.sink import Sink

EXTRA = {"linger.ms": "5", "compression.type": "zstd", "session.timeout.ms": "45000",
         "queued.min.messages": "20000", "max.poll.interval.ms": "900000", "socket.keepalive.enable": "true"}


def test_extra_overrides_tuning_and_required_overrides_everything() -> None:
    conf = {"bootstrap.servers": "b:9092", "linger.ms": "5"}
    out = client_config(conf, tuning={"linger.ms": 20, "batch.num.messages": 10}, required={"acks": "all"})
    assert out == {"linger.ms": "5", "batch.num.messages": 10, "bootstrap.servers": "b:9092", "acks": "all"}


def test_workers_and_replayer_take_the_users_tuning() -> None:
    s = load_settings(kafka={"extra": EXTRA})
    producer = producer_config(s, **{"delivery.report.only.error": True})
    assert (producer["linger.ms"], producer["compression.type"]) == ("5", "zstd")
    assert producer["batch.num.messages"] == 10_000  # a default the user left alone
    assert (producer["enable.idempotence"], producer["acks"], producer["delivery.report.only.error"]) == \
        (True, "all", True)
    consumer = consumer_config(s, "g-1", **{"max.poll.interval.ms": 600_000})
    assert consumer["max.poll.interval.ms"] == "900000"
    assert consumer["socket.keepalive.enable"] == "true"
    assert (consumer["group.id"], consumer["enable.auto.commit"], consumer["enable.auto.offset.store"]) == \
        ("g-1", False, False)


def test_evaluator_and_sink_take_the_users_tuning() -> None:
    s = load_settings(kafka={"extra": EXTRA})
    conf = s.kafka.librdkafka_config()
    engine = EvaluatorEngine(conf, lambda name: name, EvalConfig(), RowBuilder(EvalConfig(), b"k" * 32,
                             SamplingPolicy()), EngineOptions(group_id="ev", instance_id="ev-1"))
    producer, consumer = engine.producer_config(), engine.consumer_config()
    assert (producer["linger.ms"], producer["compression.type"]) == ("5", "zstd")
    assert producer["transactional.id"] == "ev-ev-1" and producer["acks"] == "all"
    assert (consumer["session.timeout.ms"], consumer["queued.min.messages"]) == ("45000", "20000")
    assert consumer["fetch.queue.backoff.ms"] == 10  # a default the user left alone
    assert (consumer["group.id"], consumer["isolation.level"], consumer["enable.auto.commit"]) == \
        ("ev", "read_committed", False)
    sink = Sink(conf, lambda name: name, None, threading.Lock(), None, "sink-g")  # type: ignore[arg-type]
    assert sink.consumer_config()["session.timeout.ms"] == "45000"
    assert sink.consumer_config()["isolation.level"] == "read_committed"


@pytest.mark.parametrize("key", sorted(GUARANTEED_KAFKA_KEYS))
def test_extra_may_not_set_a_guaranteed_key(key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(kafka={"extra": {key: "x", "linger.ms": "5"}})
    message = str(err.value)
    assert "kafka.extra" in message and key in message and "linger.ms" not in message


def test_extra_from_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILLWATCH_KAFKA__EXTRA", '{"enable.auto.commit": "true"}')
    with pytest.raises(ConfigError, match="enable.auto.commit"):
        load_settings()


@pytest.mark.parametrize(("extra", "evaluator", "others"), [
    ("33554432", 33554432, "33554432"),  # raised: every producer takes it
    ("1000", 16 * 1024 * 1024, "1000"),  # lowered: not below what the evaluator's messages need
])
def test_message_max_bytes_is_never_below_the_evaluators_need(extra: str, evaluator: int, others: str) -> None:
    s = load_settings(kafka={"extra": {"message.max.bytes": extra}})
    engine = EvaluatorEngine(s.kafka.librdkafka_config(), lambda name: name, EvalConfig(),
                             RowBuilder(EvalConfig(), b"k" * 32, SamplingPolicy()), EngineOptions())
    assert engine.producer_config()["message.max.bytes"] == evaluator
    assert producer_config(s)["message.max.bytes"] == others
