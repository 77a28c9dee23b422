"""Live mode on simulated models: ``simulate`` writes a log, its requests go to the real broker,
``worker teacher|student --backend sim --sim-truth`` answers them, and every published
response equals the one in the simulated log (so the log's truth file holds for live runs)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from distillwatch.settings import Settings, load_settings
from streams.topics import ensure_topics
from tests.integration.test_workers import env_of, publish, read_all

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(kafka_bootstrap: str, unique_prefix: str, drop_topics_with_prefix: list[str]) -> Settings:
    drop_topics_with_prefix.append(unique_prefix)
    s = load_settings(topic_prefix=unique_prefix, kafka={"bootstrap_servers": kafka_bootstrap},
                      topics={"partitions": 3})
    ensure_topics(s)
    return s


def test_sim_workers_publish_the_simulated_answers(
        settings: Settings, run_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    log = tmp_path / "stale.jsonl"
    done = run_cli("simulate", "--scenario", "stale_student", "--minutes", "2", "--rate", "3",
                   "--seed", "5", "--out", str(log), timeout=120)
    assert done.returncode == 0, done.stderr
    pairs = [line for line in map(orjson.loads, log.read_bytes().splitlines()) if "request" in line]
    assert len(pairs) == 360
    publish(settings, [(p["request"]["request_id"].encode(), orjson.dumps(p["request"])) for p in pairs])
    truth = tmp_path / "stale.truth.json"
    for role in ("teacher", "student"):
        proc = run_cli("worker", role, "--backend", "sim", "--sim-truth", str(truth),
                       "--idle-exit-s", "3", env=env_of(settings), timeout=180)
        assert proc.returncode == 0, proc.stderr
        records = read_all(settings, f"shadow.{role}", at_least=len(pairs))
        published = {}
        for m in records:
            msg = orjson.loads(m.value())
            msg.pop("schema_version")
            published[msg["request_id"]] = msg
        assert published == {p["request"]["request_id"]: p[role] for p in pairs}
