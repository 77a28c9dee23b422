"""Settings: one model per component, read from a YAML file and ``DISTILLWATCH_*`` env vars.

Precedence: explicit arguments > environment > YAML file (``--config`` or
``DISTILLWATCH_CONFIG``) > defaults. Nested keys use ``__`` in the environment, e.g.
``DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092``. Invalid configuration is rejected
when loaded, naming the offending key, never at the first event.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from evaluators.config import EvalConfig
from schemas.errors import ConfigError
from schemas.labelsets import MANGAASSIST_HIGH_RISK, MANGAASSIST_INTENTS
from streams.alerting.policy import RetryPolicy
from streams.alerting.targets import TargetConfig, check_unique_names

ENV_PREFIX = "DISTILLWATCH_"
_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "distillwatch_config_file", default=None
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


GUARANTEED_KAFKA_KEYS: dict[str, str] = {
    "group.id": "each component names its own consumer group",
    "enable.auto.commit": "offsets are committed only after the work they cover is durable",
    "enable.auto.offset.store": "offsets are stored only after the work they cover is durable",
    "enable.idempotence": "a retried send must be written once",
    "acks": "a send counts only once every in-sync replica has it",
    "transactional.id": "the evaluator's transactions fence its previous incarnation",
    "isolation.level": "readers must not see aborted evaluator output",
    "auto.offset.reset": "a new group starts at the earliest record, so none is skipped",
    "partition.assignment.strategy": "the evaluator's per-partition state follows its assignment",
    "enable.partition.eof": "readers of the catalog and checkpoints stop at the end",
    "delivery.report.only.error": "the replayer counts acknowledged records from it",
}
"""librdkafka keys distillwatch sets itself because a delivery guarantee rests on them: a
``kafka.extra`` entry may tune anything else (batching, timeouts, queues) but not these."""


class KafkaSettings(_Section):
    """Connection to a Kafka cluster; fields map to librdkafka keys."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    client_id: str = "distillwatch"
    extra: dict[str, str] = Field(
        default_factory=dict,
        description="more librdkafka properties, passed through; they take precedence over "
        "distillwatch's tuning defaults (linger.ms, session.timeout.ms, ...), but may not set "
        "the keys its delivery guarantees rest on (GUARANTEED_KAFKA_KEYS)",
    )

    @field_validator("extra")
    @classmethod
    def _no_guaranteed_keys(cls, extra: dict[str, str]) -> dict[str, str]:
        taken = [key for key in extra if key in GUARANTEED_KAFKA_KEYS]
        if taken:
            reasons = "; ".join(f"{key}: {GUARANTEED_KAFKA_KEYS[key]}" for key in sorted(taken))
            raise ValueError(f"distillwatch sets these librdkafka keys itself and kafka.extra may not "
                             f"override them ({reasons})")
        return extra

    def librdkafka_config(self) -> dict[str, Any]:
        """The client configuration confluent-kafka expects."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = str(self.ssl_ca_location)
        conf.update(self.extra)
        return conf


class LocalKafkaSettings(_Section):
    """The single-node Apache Kafka that ``distillwatch kafka start`` runs (dev and CI)."""

    version: str = "4.1.1"
    host: str = "127.0.0.1"
    port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int = Field(default=9093, ge=1, le=65535)
    heap: str = Field(default="1g", pattern=r"^\d+[mg]$")
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "distillwatch" / "kafka",
        description="where resolved broker jars are kept (outside the repository)",
    )
    start_timeout_s: float = Field(default=90.0, gt=0)
    retention_hours: int = Field(
        default=24, ge=1,
        description="how long the local broker keeps records; a dev and CI broker need not keep a week",
    )
    retention_bytes: int = Field(
        default=1 << 30, ge=1 << 20,
        description="most bytes the local broker keeps per topic partition (oldest segments go first)",
    )


class TopicSettings(_Section):
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class ClickHouseSettings(_Section):
    """``chdb:///abs/path`` (embedded, default under the data dir) or ``http(s)://…``."""

    dsn: SecretStr | None = None
    database: str = Field(default="distillwatch", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    query_timeout_s: float = Field(default=30.0, gt=0)
    lock_timeout_s: float = Field(default=2.0, ge=0, le=5)

    @field_validator("dsn")
    @classmethod
    def _known_scheme(cls, dsn: SecretStr | None) -> SecretStr | None:
        if dsn is None:
            return None
        text = dsn.get_secret_value()
        if not text.startswith(("chdb://", "http://", "https://", "clickhouse://")):
            raise ValueError("must start with chdb://, http://, https:// or clickhouse://")
        if text.startswith("chdb://") and not text[len("chdb://") :].startswith("/"):
            raise ValueError("an embedded store needs an absolute path: chdb:///abs/path")
        return dsn


class EvaluatorSettings(_Section):
    """The streaming evaluator (``distillwatch run``)."""

    group_id: str = "distillwatch-evaluator"
    instance_id: str = Field(default="evaluator-1", description="unique per running instance; "
                             "a restarted instance must keep its id (it fences its predecessor)")
    checkpoint_s: float = Field(default=5.0, gt=0, description="how often state and offsets commit")
    caught_up_commit_s: float = Field(
        default=1.0, gt=0,
        description="once the evaluator has processed all the input it has read, it commits when this "
                    "long has passed since its last commit instead of waiting for checkpoint_s, so rows "
                    "become queryable sooner whenever it keeps up; a value >= checkpoint_s turns this off")
    idle_flush_s: float = Field(default=3.0, gt=0)
    handle_horizon_s: float = Field(
        default=1800.0, ge=0,
        description="event time after which a request no longer takes labels (within max_handles); "
                    "it also covers the consumer reading the labels topic behind the requests topic")
    max_handles: int = Field(default=20_000, ge=0,
                             description="recent requests kept open to labels, per partition")
    batch_size: int = Field(default=5000, ge=1)
    max_join_buffer: int = Field(
        default=5000, ge=0,
        description="requests and answers waiting for the rest of their join, per partition, above "
                    "which its input topics are processed in timestamp order to bound memory on a "
                    "backlog; also the records queued per input topic-partition before it is paused; "
                    "0: no bound")
    sink: bool = Field(default=True, description="run the ClickHouse sink in this process")
    own_process: bool = Field(
        default=True, description="with the sink in this process, run the evaluator in a child "
        "process of its own (its own interpreter lock and memory; it dies with the monitor)")


class PrivacySettings(_Section):
    """Keyed prompt hashing and payload sampling (DESIGN §8)."""

    hash_key: SecretStr | None = Field(
        default=None, description="HMAC key for prompt_hash; default: a random key kept in the data dir")
    payload_share: float = Field(default=0.004, ge=0, le=1)
    forensic_rate: float = Field(default=0.01, ge=0, le=1,
                                 description="chance that a risky request is kept as a forensic sample")
    example_share: float = Field(default=0.05, ge=0, le=1)
    order_id_pattern: str = r"\b(?:ORD|ord|order)[-_#]?\d{6,}\b"


class HttpSettings(_Section):
    """The monitor's own HTTP API (health, metrics, read-only SQL)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=1, le=65535)


class EvaluationSettings(_Section):
    """Label set and windowing."""

    intents: list[str] = Field(default_factory=lambda: list(MANGAASSIST_INTENTS), min_length=2)
    high_risk: list[str] = Field(
        default_factory=lambda: list(MANGAASSIST_HIGH_RISK), validate_default=True
    )
    windows_s: list[int] = Field(default_factory=lambda: [60, 3600], min_length=1)
    grace_s: int = Field(default=120, ge=0)
    crosses: list[list[str]] = Field(
        default_factory=list, description='slice crosses, e.g. [["region", "device"]]'
    )
    fallback_threshold: float = Field(default=0.72, ge=0, le=1)
    fallback_margin: float = Field(default=0.08, ge=0, le=1)
    naive_fallback_threshold: float = Field(default=0.80, ge=0, le=1)
    confident_threshold: float = Field(default=0.80, ge=0, le=1)
    student_cost_per_1k: float = Field(default=0.20, ge=0)
    teacher_cost_per_1k: float = Field(default=3.00, ge=0)
    daily_volume: int = Field(default=10_000_000, ge=0)
    planned_fallback_rate: float = Field(default=0.10, ge=0, le=1)
    new_title_days: float = Field(default=60.0, ge=0)

    def eval_config(self) -> EvalConfig:
        """The pure evaluation configuration these settings describe."""
        return EvalConfig(
            intents=tuple(self.intents),
            high_risk=tuple(self.high_risk),
            fallback_threshold=self.fallback_threshold,
            fallback_margin=self.fallback_margin,
            naive_fallback_threshold=self.naive_fallback_threshold,
            confident_threshold=self.confident_threshold,
            student_cost_per_1k=self.student_cost_per_1k,
            teacher_cost_per_1k=self.teacher_cost_per_1k,
            daily_volume=self.daily_volume,
            planned_fallback_rate=self.planned_fallback_rate,
            new_title_days=self.new_title_days,
            crosses=tuple(tuple(c) for c in self.crosses),
        )

    @field_validator("high_risk")
    @classmethod
    def _high_risk_known(cls, high_risk: list[str], info: Any) -> list[str]:
        unknown = set(high_risk) - set(info.data.get("intents", []))
        if unknown:
            raise ValueError(f"names classes that are not in intents: {sorted(unknown)}")
        return high_risk


class RetrainSettings(_Section):
    """What a firing rule with the ``retrain`` action starts (DESIGN §9)."""

    launcher: Literal["none", "subprocess", "template"] = Field(
        default="subprocess", description="none: only publish to distill.retrain; subprocess: "
        "`distillwatch train` on this machine; template: command_template")
    command_template: str = Field(
        default="", description="with {request}, {out}, {job_id}; e.g. torchrun --nproc-per-node 4 "
        "-m distillwatch train --request {request} --out {out}")
    train_args: list[str] = Field(default_factory=list, description="extra `train` arguments (subprocess)")
    cooldown_s: float = Field(default=21_600.0, ge=0, description="at most one job per model per cooldown")
    snapshot_s: float = Field(default=86_400.0, gt=0, description="distill_examples span in the snapshot")
    jobs_dir: Path | None = Field(default=None, description="default: DATA_DIR/retrain")


class DriftSettings(_Section):
    """River drift detectors on every judged alerting window (ADWIN, Page–Hinkley, KSWIN)."""

    enabled: bool = True
    deliver: bool = Field(default=False, description="send drift events to the targets (else only stored)")
    hold_windows: int = Field(default=5, ge=1, description="windows without detection before a drift resolves")


class AlertingSettings(_Section):
    """Where alerts are delivered and how delivery is retried (DESIGN §6)."""

    enabled: bool = Field(default=True, description="judge the rules on every closed window in `run`")
    rules_file: Path | None = Field(default=None, description="YAML rules; default: the built-in set")
    model: str = Field(default="student", min_length=1, description="the student model alerts name")
    targets: list[TargetConfig] = Field(
        default_factory=list, description="alertmanager, webhook, slack, pagerduty; any number of each")
    retry: RetryPolicy = Field(default_factory=lambda: RetryPolicy(max_attempts=16),
                               description="16 attempts: about 45 minutes of backoff before giving up")
    poll_s: float = Field(default=1.0, gt=0, description="how often the outbox looks for undelivered events")
    settle_s: float = Field(default=10.0, ge=0, description="a closed window is judged once the input is "
                            "settled, or this long after it closed (late responses and labels revise it)")
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: list[Any]) -> list[Any]:
        check_unique_names(targets)
        return targets


class Settings(BaseSettings):
    """Everything distillwatch reads from its configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Path(".distillwatch")
    topic_prefix: str = ""
    config: Path | None = Field(default=None, description="the YAML file that was read")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    local_kafka: LocalKafkaSettings = Field(default_factory=LocalKafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    evaluator: EvaluatorSettings = Field(default_factory=EvaluatorSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file.get()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def clickhouse_dsn(self) -> str:
        """The configured DSN, or the embedded store under the data dir."""
        if self.clickhouse.dsn is not None:
            return self.clickhouse.dsn.get_secret_value()
        return f"chdb://{self.data_path / 'clickhouse'}"

    def topic(self, name: str) -> str:
        """A topic name of DESIGN §1 with the configured prefix."""
        return f"{self.topic_prefix}{name}"


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Read settings, raising ConfigError that names the offending key."""
    path = config_file or os.environ.get(f"{ENV_PREFIX}CONFIG") or None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
    token = _config_file.set(path)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    finally:
        _config_file.reset(token)
    settings.config = path
    return settings


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        key = ".".join(str(p) for p in err["loc"])
        env = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{key} (env {env}): {msg}")
    return "invalid configuration: " + "; ".join(parts)


def hash_key(settings: Settings) -> bytes:
    """The configured prompt-hash key, or one generated once and kept in the data dir."""
    if settings.privacy.hash_key is not None:
        return settings.privacy.hash_key.get_secret_value().encode()
    path = settings.data_path / "prompt_hash.key"
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()
