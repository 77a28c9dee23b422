"""Helpers for integration tests: a clean environment, a Kafka admin client, the CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_distillwatch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come only from what each test sets, never from the caller's shell."""
    for key in list(os.environ):
        if key.startswith("DISTILLWATCH_"):
            monkeypatch.delenv(key)


@pytest.fixture
def unique_prefix() -> str:
    """A topic prefix no other test (or earlier run) uses."""
    return f"dwt{uuid.uuid4().hex[:12]}."


@pytest.fixture
def kafka_admin(kafka_bootstrap: str) -> Any:
    """An AdminClient for the test broker."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def drop_topics_with_prefix(kafka_admin: Any) -> Iterator[list[str]]:
    """Append a prefix (or a full name) to this list; matching topics are deleted after the test."""
    prefixes: list[str] = []
    yield prefixes
    names = [t for t in kafka_admin.list_topics(timeout=10).topics
             if any(t.startswith(p) for p in prefixes)]
    if names:
        for future in kafka_admin.delete_topics(names, operation_timeout=30).values():
            future.result()


def _child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: no DISTILLWATCH_* from outside, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLWATCH_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env


@pytest.fixture
def child_env() -> Callable[..., dict[str, str]]:
    """Build a child-process environment: ``child_env(DISTILLWATCH_X="1")``."""
    return _child_env


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m distillwatch ARGS`` in tmp_path with the given DISTILLWATCH_* vars."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "distillwatch", *args],
            cwd=tmp_path, env=_child_env(**(env or {})), capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL,
        )

    return run
