"""The topics of DESIGN §1 and their creation through the Kafka admin API."""

from __future__ import annotations

from dataclasses import dataclass

from distillwatch.settings import Settings
from streams.errors import KafkaSetupError
from streams.kafka_io import client_config


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


REQUESTS = "shadow.requests"
TEACHER = "shadow.teacher"
STUDENT = "shadow.student"
TEACHER_REPLICA = "shadow.teacher_replica"
CATALOG = "shadow.catalog"
LABELS = "shadow.labels"
DLQ = "shadow.dlq"
RETRAIN = "distill.retrain"
MODELS = "distill.models"
ROWS = "distill.rows"
"""Evaluator → sink: table rows (JSONEachRow), written transactionally."""
PARTIALS = "distill.partials"
"""Evaluator → sink: one partition's window states, merged across partitions by the sink."""
CHECKPOINTS = "distill.checkpoints"
"""Evaluator state + input offsets per partition (compacted)."""
BIG_MESSAGE_BYTES = str(16 * 1024 * 1024)

CO_PARTITIONED = (REQUESTS, TEACHER, STUDENT, TEACHER_REPLICA, LABELS)
"""Keyed by request_id with one partition count, so one evaluator sees a request's parts."""


def topic_specs(settings: Settings) -> list[TopicSpec]:
    n = settings.topics.partitions
    specs = [TopicSpec(settings.topic(name), n, {}) for name in CO_PARTITIONED]
    specs += [
        TopicSpec(settings.topic(CATALOG), n, {"cleanup.policy": "compact"}),
        TopicSpec(settings.topic(DLQ), n, {}),
        TopicSpec(settings.topic(RETRAIN), 1, {}),
        TopicSpec(settings.topic(MODELS), 1, {}),
        TopicSpec(settings.topic(ROWS), n, {"max.message.bytes": BIG_MESSAGE_BYTES}),
        TopicSpec(settings.topic(PARTIALS), n, {"max.message.bytes": BIG_MESSAGE_BYTES}),
        TopicSpec(settings.topic(CHECKPOINTS), 1, {
            "cleanup.policy": "compact", "max.message.bytes": BIG_MESSAGE_BYTES,
            "segment.ms": "60000", "min.cleanable.dirty.ratio": "0.1",
        }),
    ]
    return specs


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> dict[str, str]:
    """Create missing topics; return {topic: "created" | "exists" | "exists (N partitions)"}."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    conf = client_config(settings.kafka.librdkafka_config(), tuning={"socket.connection.setup.timeout.ms": 5000})
    admin = AdminClient(conf)
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise KafkaSetupError(
            f"Kafka at {settings.kafka.bootstrap_servers} is unreachable ({exc.args[0]}); "
            "start the local broker with `distillwatch kafka start`"
        ) from None
    specs = topic_specs(settings)
    result: dict[str, str] = {}
    missing = []
    for spec in specs:
        if spec.name in existing:
            have = len(existing[spec.name].partitions)
            result[spec.name] = "exists" if have == spec.partitions else f"exists ({have} partitions)"
        else:
            missing.append(
                NewTopic(spec.name, num_partitions=spec.partitions,
                         replication_factor=settings.topics.replication_factor, config=spec.config)
            )
    futures = admin.create_topics(missing, operation_timeout=timeout_s) if missing else {}
    for name, future in futures.items():
        try:
            future.result()
            result[name] = "created"
        except KafkaException as exc:
            err = exc.args[0]
            if err.name() == "TOPIC_ALREADY_EXISTS":  # a concurrent init won the race
                result[name] = "exists"
            else:
                raise KafkaSetupError(f"cannot create topic {name}: {err.str()}") from None
    return result
