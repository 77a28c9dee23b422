"""``distillwatch evaluate LOG`` as a user runs it (DESIGN §4, §10): a subprocess per call."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 1, tzinfo=UTC)
KEYS = {"window_start", "window_end", "window_s", "slice", "metric", "value", "numerator",
        "denominator", "support", "ci_low", "ci_high"}


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def request_line(rid: str, seconds: float, *,
                 student_probs: dict[str, float] | None = None) -> dict[str, Any]:
    ts = iso(T0 + timedelta(seconds=seconds))

    def response(role: str, probs: dict[str, float]) -> dict[str, Any]:
        return {"request_id": rid, "ts": ts, "role": role, "model": role, "model_version": "1",
                "intent_probs": probs, "latency_ms": 40.0}

    return {"request": {"request_id": rid, "ts": ts, "prompt": "where is my order?",
                        "slice": {"region": "eu" if seconds % 2 else "jp"}},
            "teacher": response("teacher", {"order_tracking": 0.9, "faq": 0.1}),
            "student": response("student", student_probs or {"order_tracking": 0.8, "faq": 0.2})}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


@pytest.fixture()
def log(tmp_path: Path) -> tuple[Path, int, dict[int, str]]:
    """A log of valid lines over three windows, with malformed ones and repeated ids mixed in.

    Returns the path, the number of distinct valid request ids (counted here, from what was
    written), and the invalid lines by 1-based line number with the field each must name.
    """
    lines: list[bytes] = []
    invalid: dict[int, str] = {}
    valid_ids: set[str] = set()
    for i in range(30):
        rid = f"r{i % 25:03d}"  # ids r000..r004 come back on later lines
        lines.append(dumps(request_line(rid, 5 * i)))  # 0 s .. 145 s: windows 0, 60, 120
        valid_ids.add(rid)
        if i == 3:
            lines.append(b'{"request": {"request_id": "broken", "ts": ')
            invalid[len(lines)] = "<message>"
        if i == 7:
            lines.append(b'{"request": {"request_id": "bad-\xff\xfe-bytes"}}')
            invalid[len(lines)] = "<message>"
        if i == 11:
            bad = request_line("r999", 50, student_probs={"order_tracking": 0.9, "faq": 0.8})
            lines.append(dumps(bad))
            invalid[len(lines)] = "student.intent_probs"
        if i == 17:
            lines.append(dumps({"hello": "world"}))
            invalid[len(lines)] = "<line>"
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, len(valid_ids), invalid


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLWATCH_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "distillwatch", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


Log = tuple[Path, int, dict[int, str]]


def test_json_output_rows_and_invalid_line_report(log: Log, tmp_path: Path) -> None:
    path, distinct_ids, invalid = log
    done = run_cli("evaluate", str(path), "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows
    for row in rows:
        assert set(row) == KEYS
        assert row["window_s"] == 60
        start = datetime.fromisoformat(row["window_start"])
        end = datetime.fromisoformat(row["window_end"])
        assert start.timestamp() % 60 == 0 and (end - start).total_seconds() == 60
    support = [r for r in rows if r["slice"] == "all" and r["metric"] == "support"]
    assert [r["window_start"] for r in support] == [
        "2026-11-01T00:00:00Z", "2026-11-01T00:01:00Z", "2026-11-01T00:02:00Z"]
    # 0..55 s: 12 lines; 60..115 s: 12; 120..145 s: 6 of which r000..r004 are repeats → 1
    assert [r["value"] for r in support] == [12, 12, 1]
    assert sum(r["value"] for r in support) == distinct_ids == 25
    assert all(r["numerator"] == r["value"] and r["denominator"] is None for r in support)

    err = done.stderr.splitlines()
    reasons = [line for line in err if re.match(r"line \d+: ", line)]
    assert len(reasons) == len(invalid) == 4
    for line in reasons:
        number = int(line.split(":")[0].removeprefix("line "))
        assert number in invalid, line
        assert invalid[number] in line, line
    assert any("sums to 1.7" in line for line in reasons)
    assert any("JSON" in line for line in reasons)
    assert any("UTF-8" in line for line in reasons)
    summary = err[-1]
    assert f"evaluated {distinct_ids} requests" in summary
    assert "4 invalid lines skipped" in summary
    assert "5 duplicate request ids skipped" in summary


def test_table_output_is_one_readable_line_per_row(log: Log, tmp_path: Path) -> None:
    path, _, _ = log
    as_json = run_cli("evaluate", str(path), "--format", "json", cwd=tmp_path)
    as_table = run_cli("evaluate", str(path), "--format", "table", cwd=tmp_path)
    assert as_table.returncode == 0, as_table.stderr
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    table = as_table.stdout.splitlines()
    assert len(table) == len(rows)
    for row, line in zip(rows, table):
        assert not line.lstrip().startswith("{")
        fields = line.split()
        assert fields[0] == row["window_start"]
        assert fields[1] == row["slice"] and fields[2] == row["metric"]
    accuracy = next(line for line in table if line.split()[1:3] == ["all", "accuracy"])
    assert "12/12" in accuracy  # the student agrees with the teacher's top-1 reference


def test_missing_log_exits_1_with_one_line(tmp_path: Path) -> None:
    done = run_cli("evaluate", str(tmp_path / "nope.jsonl"), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "nope.jsonl" in lines[0]
