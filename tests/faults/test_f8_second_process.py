"""F8: a second process opens the embedded store while the monitor owns it.

chdb lets one OS process own a data directory. Every distillwatch command that would open
the store (a second ``run``, ``init``, a script calling ``open_store``) must give up within
5 s with an error that names the owner and says what to do, and must write nothing: the
tables keep every row and checksum, Kafka offsets do not move, and the owner keeps serving.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.fault_support import committed, health, replay, report, wait_for
from tests.integration.pipeline_support import Cluster, free_port, make_log, sql, wait_until_quiet

pytestmark = pytest.mark.integration

OPEN_DIRECTLY = """
import sys, time
from streams.clickhouse import open_store
from streams.errors import StoreLockedError
started = time.monotonic()
try:
    open_store(sys.argv[1], lock_timeout_s=float(sys.argv[2]))
except StoreLockedError as exc:
    print(f"{time.monotonic() - started:.3f} {exc}")
    sys.exit(3)
print("opened")
"""


def checksums(port: int) -> dict[str, tuple[int, int]]:
    """(rows, checksum of every column) of every table of the database."""
    tables = [r[0] for r in sql(port, "SELECT name FROM system.tables WHERE database = 'distillwatch'")]
    return {t: tuple(sql(port, f"SELECT count(), sum(cityHash64(*)) FROM distillwatch.{t}")[0]) for t in tables}


def test_f8_a_second_process_is_refused_within_5s_and_writes_nothing(cluster: Cluster, tmp_path: Path) -> None:
    log = tmp_path / "replay.jsonl"
    make_log(log, 500, seed=8)
    replay(cluster, log)
    owner, port = cluster.start_monitor()
    wait_until_quiet(port, 500)
    before = checksums(port)
    group = cluster.env["DISTILLWATCH_EVALUATOR__GROUP_ID"]
    offsets = committed(cluster, group, ["shadow.requests", "shadow.teacher", "shadow.student"])
    store = tmp_path / "data" / "clickhouse"

    # A script opening the store: refused after the lock wait (2 s by default, at most 5 s).
    direct = subprocess.run([sys.executable, "-c", OPEN_DIRECTLY, f"chdb://{store}", "2"],
                            env=cluster.env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert direct.returncode == 3, direct.stdout + direct.stderr
    waited_s, message = direct.stdout.split(" ", 1)
    assert float(waited_s) <= 5
    assert f"pid {owner.pid} (distillwatch run)" in message and "stop it first" in message

    # A second monitor on the same data dir, and `init`: one-line refusals naming the owner.
    elapsed = {}
    for name, args, env in [
        ("run", ["run"], {"DISTILLWATCH_HTTP__PORT": str(free_port())}),
        ("init", ["init"], {}),
    ]:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "distillwatch", *args], env=cluster.env | env,
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
        elapsed[name] = round(time.monotonic() - started, 2)
        assert done.returncode != 0, (name, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {owner.pid}" in lines[0], (name, done.stderr)
        assert "Traceback" not in done.stderr

    # The owner still serves, and nothing changed.
    assert owner.poll() is None and health(port)[0] == 200
    wait_for(lambda: checksums(port) == before, "the tables are as before", 30)
    assert committed(cluster, group, ["shadow.requests", "shadow.teacher", "shadow.student"]) == offsets
    # What a second process should do instead: read through the owner's API.
    cluster.env["DISTILLWATCH_HTTP__PORT"] = str(port)
    read = cluster.cli("sql", "SELECT count() FROM distillwatch.shadow_evaluations FINAL", "--format", "csv")
    assert read.returncode == 0 and read.stdout.split() == ["count()", "500"], read.stdout + read.stderr
    report("F8", lock_wait_s=float(waited_s), second_run_exit_s=elapsed["run"],
           init_exit_s=elapsed["init"], tables_unchanged=len(before),
           physical_rows=sum(rows for rows, _ in before.values()))
