"""Acceptance tests for settings (DESIGN §10): defaults, env, YAML, precedence, rejection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from distillwatch.settings import load_settings
from schemas.errors import ConfigError

MANGAASSIST = ["faq", "recommendation", "order_tracking", "returns", "payment_dispute",
               "safety_escalation", "legal_complaint", "account_lockout", "refund_fraud"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DISTILLWATCH_* variable from the caller leaks in; cwd is an empty tmp dir."""
    for key in list(os.environ):
        if key.startswith("DISTILLWATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults(tmp_path: Path) -> None:
    """Without config the documented defaults apply (local broker, no prefix, embedded store)."""
    s = load_settings()
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.topic_prefix == ""
    assert s.topic("shadow.requests") == "shadow.requests"
    assert s.topics.partitions >= 1
    assert s.clickhouse.dsn is None
    assert s.clickhouse.database == "distillwatch"
    assert s.data_path == (tmp_path / ".distillwatch").resolve()
    assert s.clickhouse_dsn() == f"chdb://{(tmp_path / '.distillwatch').resolve()}/clickhouse"
    assert s.evaluation.intents == MANGAASSIST
    assert s.evaluation.high_risk == MANGAASSIST[-5:]
    assert s.config is None


def test_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    """DISTILLWATCH_* variables with __ nesting set the matching keys."""
    monkeypatch.setenv("DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("DISTILLWATCH_TOPIC_PREFIX", "staging.")
    monkeypatch.setenv("DISTILLWATCH_TOPICS__PARTITIONS", "12")
    monkeypatch.setenv("DISTILLWATCH_CLICKHOUSE__DSN", "http://ch.internal:8123")
    s = load_settings()
    assert s.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert s.kafka.librdkafka_config()["bootstrap.servers"] == "kafka-1:9092,kafka-2:9092"
    assert s.topic("shadow.labels") == "staging.shadow.labels"
    assert s.topics.partitions == 12
    assert s.clickhouse_dsn() == "http://ch.internal:8123"


def test_data_dir_env_moves_embedded_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """DISTILLWATCH_DATA_DIR decides where the default embedded store lives."""
    monkeypatch.setenv("DISTILLWATCH_DATA_DIR", str(tmp_path / "dw"))
    assert load_settings().clickhouse_dsn() == f"chdb://{(tmp_path / 'dw').resolve()}/clickhouse"


YAML = """
topic_prefix: "yaml."
kafka:
  bootstrap_servers: "yaml-broker:9092"
topics:
  partitions: 4
clickhouse:
  dsn: "chdb:///var/lib/dw/ch"
evaluation:
  intents: [faq, returns, refund_fraud]
  high_risk: [refund_fraud]
"""


def _assert_yaml_applied(s, path: Path) -> None:  # type: ignore[no-untyped-def]
    assert s.topic_prefix == "yaml."
    assert s.kafka.bootstrap_servers == "yaml-broker:9092"
    assert s.topics.partitions == 4
    assert s.clickhouse_dsn() == "chdb:///var/lib/dw/ch"
    assert s.evaluation.intents == ["faq", "returns", "refund_fraud"]
    assert s.evaluation.high_risk == ["refund_fraud"]
    assert Path(s.config) == path


def test_yaml_file_by_path(tmp_path: Path) -> None:
    """load_settings(path) reads a YAML file."""
    path = write_yaml(tmp_path / "dw.yaml", YAML)
    _assert_yaml_applied(load_settings(path), path)
    _assert_yaml_applied(load_settings(str(path)), path)


def test_yaml_file_by_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """DISTILLWATCH_CONFIG names the YAML file when no path is passed."""
    path = write_yaml(tmp_path / "dw.yaml", YAML)
    monkeypatch.setenv("DISTILLWATCH_CONFIG", str(path))
    _assert_yaml_applied(load_settings(), path)


def test_env_overrides_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment variable beats the YAML value; untouched YAML keys still apply."""
    path = write_yaml(tmp_path / "dw.yaml", YAML)
    monkeypatch.setenv("DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS", "env-broker:9092")
    monkeypatch.setenv("DISTILLWATCH_TOPICS__PARTITIONS", "9")
    s = load_settings(path)
    assert s.kafka.bootstrap_servers == "env-broker:9092"
    assert s.topics.partitions == 9
    assert s.topic_prefix == "yaml."


def test_explicit_override_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyword overrides to load_settings take precedence over the environment."""
    monkeypatch.setenv("DISTILLWATCH_TOPIC_PREFIX", "env.")
    assert load_settings(topic_prefix="arg.").topic_prefix == "arg."


def test_secrets_not_shown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Passwords (Kafka SASL, ClickHouse DSN) never appear in repr/str of the settings."""
    path = write_yaml(tmp_path / "dw.yaml", 'kafka:\n  sasl_username: "svc"\n'
                                           '  sasl_password: "hunter2-kafka"\n')
    monkeypatch.setenv("DISTILLWATCH_CLICKHOUSE__DSN", "https://svc:hunter2-ch@ch.example:8443")
    s = load_settings(path)
    for text in (repr(s), str(s), repr(s.kafka), repr(s.clickhouse)):
        assert "hunter2" not in text
    assert s.kafka.sasl_password is not None
    assert s.kafka.sasl_password.get_secret_value() == "hunter2-kafka"
    assert s.kafka.librdkafka_config()["sasl.password"] == "hunter2-kafka"
    assert s.clickhouse_dsn() == "https://svc:hunter2-ch@ch.example:8443"


@pytest.mark.parametrize(("env", "key"), [
    ({"DISTILLWATCH_TOPICS__PARTITIONS": "0"}, "topics.partitions"),
    ({"DISTILLWATCH_TOPICS__PARTITIONS": "many"}, "topics.partitions"),
    ({"DISTILLWATCH_CLICKHOUSE__DSN": "chdb://relative/ch"}, "clickhouse.dsn"),
    ({"DISTILLWATCH_CLICKHOUSE__DSN": "mysql://db:3306/x"}, "clickhouse.dsn"),
    ({"DISTILLWATCH_LOCAL_KAFKA__PORT": "70000"}, "local_kafka.port"),
    ({"DISTILLWATCH_KAFKA__SECURITY_PROTOCOL": "TLS"}, "kafka.security_protocol"),
])
def test_bad_env_values_rejected(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], key: str) -> None:
    """An invalid environment value raises ConfigError naming the key."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert key in str(info.value)


@pytest.mark.parametrize(("text", "key"), [
    ("topics:\n  partitions: 0\n", "topics.partitions"),
    ("kafka:\n  bootstrap: x:9092\n", "kafka.bootstrap"),
    ("frobnicate: 1\n", "frobnicate"),
    ('clickhouse:\n  dsn: "chdb://data/ch"\n', "clickhouse.dsn"),
    ('clickhouse:\n  dsn: "postgres://db/x"\n', "clickhouse.dsn"),
    ("evaluation:\n  high_risk: [faq, teleportation]\n", "evaluation.high_risk"),
    ("evaluation:\n  intents: [a, b]\n", "evaluation.high_risk"),
])
def test_bad_yaml_values_rejected(tmp_path: Path, text: str, key: str) -> None:
    """An invalid or unknown YAML key raises ConfigError naming the key."""
    path = write_yaml(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert key in str(info.value)


def test_high_risk_error_names_class(tmp_path: Path) -> None:
    """The high_risk error names the class that is not an intent."""
    path = write_yaml(tmp_path / "bad.yaml", "evaluation:\n  high_risk: [faq, teleportation]\n")
    with pytest.raises(ConfigError, match="teleportation"):
        load_settings(path)


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A config file that does not exist is an error naming the file, by arg or by env."""
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_settings(missing)
    monkeypatch.setenv("DISTILLWATCH_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_settings()
