"""The ``distillwatch`` command line as a user runs it: a subprocess with DISTILLWATCH_* variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest

from streams.clickhouse import open_store

pytestmark = pytest.mark.integration

DESIGN_TOPICS = ["shadow.requests", "shadow.teacher", "shadow.student", "shadow.teacher_replica",
                 "shadow.catalog", "shadow.labels", "shadow.dlq", "distill.retrain", "distill.models"]
DESIGN_TABLES = {"shadow_evaluations", "shadow_payloads", "window_metrics", "alerts",
                 "alert_deliveries", "retrain_jobs", "model_versions", "dead_letters",
                 "distill_examples"}
MESSAGES = {"ShadowRequest", "ModelResponse", "CatalogRecord", "Label", "RetrainRequest", "ReplayLine"}

Run = Callable[..., Any]


def test_init_twice(run_cli: Run, tmp_path: Path, kafka_bootstrap: str, kafka_admin: Any,
                    unique_prefix: str, drop_topics_with_prefix: list[str]) -> None:
    """`init` creates topics and tables under DISTILLWATCH_DATA_DIR; run again it is a no-op."""
    drop_topics_with_prefix.append(unique_prefix)
    env = {"DISTILLWATCH_DATA_DIR": str(tmp_path / "data"), "DISTILLWATCH_TOPIC_PREFIX": unique_prefix,
           "DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap}
    first = run_cli("init", env=env)
    assert first.returncode == 0, first.stderr
    assert "none (up to date)" not in first.stdout
    second = run_cli("init", env=env)
    assert second.returncode == 0, second.stderr
    assert "none (up to date)" in second.stdout

    topics = set(kafka_admin.list_topics(timeout=10).topics)
    assert {unique_prefix + t for t in DESIGN_TOPICS} <= topics
    store_path = (tmp_path / "data" / "clickhouse").resolve()
    with open_store(f"chdb://{store_path}") as store:
        rows = store.query("SELECT name FROM system.tables WHERE database = 'distillwatch'").result_rows
    assert DESIGN_TABLES <= {r[0] for r in rows}


def test_schema_export(run_cli: Run, tmp_path: Path) -> None:
    """`schema export DIR` writes one valid JSON Schema file per message (6)."""
    out = tmp_path / "out" / "schemas"
    proc = run_cli("schema", "export", str(out))
    assert proc.returncode == 0, proc.stderr
    files = sorted(out.iterdir())
    assert len(files) == 6
    names = set()
    for path in files:
        schema = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        names.add(schema["title"])
    assert names == MESSAGES
    printed = {line.strip() for line in proc.stdout.splitlines()}
    assert {str(p) for p in files} <= printed  # each written path on its own, unbroken line


def test_kafka_status_down(run_cli: Run, tmp_path: Path) -> None:
    """`kafka status` with no broker of ours and nothing on the port exits 1 and says down."""
    env = {"DISTILLWATCH_DATA_DIR": str(tmp_path / "empty"), "DISTILLWATCH_LOCAL_KAFKA__PORT": "19999"}
    proc = run_cli("kafka", "status", env=env, timeout=60)
    assert proc.returncode == 1
    assert "down" in proc.stdout.lower()
    as_json = run_cli("kafka", "status", "--json", env=env, timeout=60)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["up"] is False and report["pid"] is None
    assert report["bootstrap"].endswith(":19999")


@pytest.mark.parametrize("args", [["init"], ["schema", "export", "out"], ["kafka", "status"]],
                         ids=["init", "schema-export", "kafka-status"])
def test_bad_setting_fails_every_command_with_one_line(run_cli: Run, tmp_path: Path,
                                                       args: list[str]) -> None:
    """An invalid env value makes any command exit 1 with one stderr line naming the key."""
    proc = run_cli(*args, env={"DISTILLWATCH_TOPICS__PARTITIONS": "0",
                               "DISTILLWATCH_DATA_DIR": str(tmp_path / "data")}, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "topics.partitions" in lines[0]
    assert not (tmp_path / "out").exists()


def test_missing_config_file_fails_with_one_line(run_cli: Run, tmp_path: Path) -> None:
    """--config naming a missing file exits 1 with one stderr line naming the file."""
    missing = tmp_path / "some" / "deeply" / "nested" / "directory" / "distillwatch-config.yaml"
    proc = run_cli("--config", str(missing), "schema", "export", "out", timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(missing) in lines[0]
