"""`distillwatch sql`: directly on the embedded store, and through the monitor that holds it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration.pipeline_support import Cluster, metric

pytestmark = pytest.mark.integration


def test_direct_query_with_bound_parameters_and_readonly(tmp_path: Path, kafka_bootstrap: str) -> None:
    cluster = Cluster(tmp_path, kafka_bootstrap)
    assert cluster.cli("init", "--skip-kafka").returncode == 0
    out = cluster.cli("sql", "SELECT count() AS n FROM system.tables WHERE database = {db:String}",
                      "--param", "db=distillwatch", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n"] >= 9
    refused = cluster.cli("sql", "DROP TABLE distillwatch.alerts")
    assert refused.returncode == 1 and "only read queries" in refused.stderr
    # A read that tries to lift the guard is refused by ClickHouse itself.
    sneaky = cluster.cli("sql", "SELECT 1 SETTINGS readonly = 0")
    assert sneaky.returncode == 1 and "readonly" in sneaky.stderr.lower()
    assert len(sneaky.stderr.strip().splitlines()) == 1


def test_query_goes_through_the_running_monitor(tmp_path: Path, kafka_bootstrap: str) -> None:
    cluster = Cluster(tmp_path, kafka_bootstrap)
    assert cluster.cli("init").returncode == 0
    proc, port = cluster.start_monitor()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if metric(port, "distillwatch_assigned_partitions"):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        cluster.env["DISTILLWATCH_HTTP__PORT"] = str(port)
        out = cluster.cli("sql", "SELECT name FROM system.tables WHERE database = 'distillwatch' "
                                 "AND name = 'window_metrics'", "--format", "csv")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ["name", "window_metrics"]
        refused = cluster.cli("sql", "SELECT 1 SETTINGS readonly = 0")
        assert refused.returncode == 1 and "refused" in refused.stderr
    finally:
        cluster.stop_all()
