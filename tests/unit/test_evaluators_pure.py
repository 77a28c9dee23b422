"""evaluators/ is pure (DESIGN §3): importing every module of it loads no Kafka, Faust or
ClickHouse client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("confluent_kafka", "faust", "aiokafka", "clickhouse_connect", "chdb")

PROBE = """
import importlib, json, pkgutil, sys
import evaluators
names = sorted(m.name for m in pkgutil.walk_packages(evaluators.__path__, "evaluators."))
for name in names:
    importlib.import_module(name)
forbidden = set(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
print(json.dumps({"modules": names, "loaded": loaded}))
"""


def probe(forbidden: tuple[str, ...]) -> dict[str, Any]:
    """Import every evaluators module in a fresh interpreter; report which of ``forbidden`` loaded."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE, *forbidden], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_every_evaluators_module_loads_no_broker_or_store_client() -> None:
    result = probe(FORBIDDEN)
    for module in ("evaluators.offline", "evaluators.readout", "evaluators.request",
                   "evaluators.window_state", "evaluators.windowing", "evaluators.sketch",
                   "evaluators.catalog", "evaluators.config", "evaluators.intervals",
                   "evaluators.slicing"):
        assert module in result["modules"]
    assert result["loaded"] == []


def test_the_probe_sees_a_dependency_that_is_imported() -> None:
    """The same probe reports numpy, which the metric code does use: the check can fail."""
    assert "numpy" in probe(("numpy",))["loaded"]
