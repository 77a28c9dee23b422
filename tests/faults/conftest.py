"""Fixtures of the fault suite: one monitor environment (topics, store) per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.pipeline_support import Cluster


@pytest.fixture
def make_cluster(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Callable[..., Cluster]]:
    """``make_cluster(DISTILLWATCH_X="1", bootstrap=...)``: a Cluster with those extra
    variables whose topics and tables exist; its monitors are stopped afterwards."""
    made: list[Cluster] = []

    def make(bootstrap: str | None = None, **env: str) -> Cluster:
        c = Cluster(tmp_path, bootstrap or kafka_bootstrap)
        c.env.update(env)
        made.append(c)
        init = c.cli("init")
        assert init.returncode == 0, init.stderr
        return c

    yield make
    for c in made:
        c.stop_all()


@pytest.fixture
def cluster(make_cluster: Callable[..., Cluster]) -> Cluster:
    return make_cluster()
