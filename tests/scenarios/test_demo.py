"""`distillwatch demo` end to end, non-interactively, from a fresh data directory: it must
catch the failure its scenario injects, page the on-call receiver, request a retrain, write
the report and stop every process it started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_demo_catches_its_scenario_and_exits_zero(tmp_path: Path, kafka_bootstrap: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLWATCH_")}
    env |= {"PYTHONPATH": str(REPO), "DISTILLWATCH_DATA_DIR": str(tmp_path / "dw"),
            "DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap}
    done = subprocess.run([sys.executable, "-m", "distillwatch", "demo", "--no-live", "--no-retrain",
                           "--timeout", "300"], env=env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    demo = tmp_path / "dw" / "demo"
    truth = (demo / "rare_class_collapse.truth.json").read_text()
    assert "safety_escalation_recall_low" in truth
    fired = [line for line in out.splitlines() if line.startswith("alerts fired:")]
    assert fired and int(fired[0].split(":")[1].split(",")[0]) >= 1, out
    pages = int(fired[0].split("pages received:")[1].split(",")[0])
    assert pages >= 1
    report = demo / "report.html"
    assert report.exists() and report.stat().st_size > 10_000
    # Every process the demo started is gone: nothing holds the embedded store any more.
    from streams.clickhouse import open_store

    with open_store(f"chdb://{demo / 'data' / 'clickhouse'}", lock_timeout_s=5) as store:
        rows = store.query("SELECT status, rule, slice FROM distillwatch.alerts FINAL "
                           "WHERE rule NOT LIKE 'drift:%'").result_rows
        jobs = store.query("SELECT count() FROM distillwatch.retrain_jobs FINAL").result_rows[0][0]
    assert ("firing", "safety_escalation_recall_low", "language=es") in rows
    assert all(r[2] == "language=es" for r in rows), rows
    assert jobs == 1  # requested (the launcher is off in this run)
