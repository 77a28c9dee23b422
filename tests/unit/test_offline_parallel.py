"""``evaluate --workers N``: pass 2 split by request id across forked processes.

The split must not change a figure: every row, the late-event count, the duplicates and the
invalid lines equal those of one process on a log with everything that makes order matter
(late requests, duplicate ids, invalid lines, labels, catalog changes). The hand-checked
lateness case runs with two workers in tests/unit/test_windowing.py.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import orjson
import pytest

from evaluators import offline
from evaluators.config import EvalConfig
from evaluators.offline import LogSummary, Shard, evaluate_log
from evaluators.offline_parallel import WorkerFailed, default_workers
from simulator.traffic import TrafficConfig, World


def _awkward_log(path: Path, pairs: int = 3000, seed: int = 7) -> Path:
    """A simulated log (labels, catalog records), then: 2 % of request lines moved ~10
    minutes later (late beyond a 120 s grace), 1 % repeated (duplicate ids), 1 % broken."""
    rng = random.Random(seed)
    lines = [orjson.dumps(x) for x in World(TrafficConfig(pairs=pairs, rate_per_s=5.0), seed=seed).lines()]
    out: list[bytes] = []
    moved: list[tuple[int, bytes]] = []
    for i, raw in enumerate(lines):
        is_request = raw.startswith(b'{"request"')
        if is_request and rng.random() < 0.02:
            moved.append((i + 1500, raw))  # ~300 s of traffic later at 5 requests/s
            continue
        out.append(raw)
        if is_request and rng.random() < 0.01:
            out.append(raw)
        if rng.random() < 0.01:
            out.append(raw[: len(raw) // 2])
        while moved and moved[0][0] <= i:
            out.append(moved.pop(0)[1])
    out.extend(raw for _, raw in moved)
    path.write_bytes(b"\n".join(out) + b"\n")
    return path


def _run(path: Path, workers: int, window_s: int = 60) -> tuple[list, LogSummary]:
    summary = LogSummary()
    rows = list(evaluate_log(lambda: open(path, "rb"), EvalConfig(), window_s, 120.0, summary, workers=workers))
    return rows, summary


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@pytest.mark.parametrize(("workers", "block"), [(2, 256), (3, 256), (2, 1), (3, 7)])
def test_shards_give_one_process_rows_and_counts(tmp_path: Path, workers: int, block: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offline, "SHARD_BLOCK_LINES", block)  # read by the forked workers too
    log = _awkward_log(tmp_path / "log.jsonl")
    one_rows, one = _run(log, 1)
    many_rows, many = _run(log, workers)
    assert one.late_events[60] > 0 and one.duplicates > 0 and one.invalid > 0 and one.labels > 0
    assert one.catalog_records > 0
    assert len(many_rows) == len(one_rows)
    for r1, rn in zip(one_rows, many_rows, strict=True):
        for field in r1._fields if hasattr(r1, "_fields") else r1.__dataclass_fields__:
            assert _same(getattr(r1, field), getattr(rn, field)), (field, r1, rn)
    for field in ("lines", "requests", "duplicates", "catalog_records", "labels", "duplicate_labels",
                  "orphan_labels", "invalid", "late_events", "reason_counts"):
        assert getattr(many, field) == getattr(one, field), field
    assert [line for line, _ in many.reasons] == [line for line, _ in one.reasons]


def test_a_failing_worker_is_reported_with_its_error(tmp_path: Path) -> None:
    log = _awkward_log(tmp_path / "log.jsonl", pairs=200)
    parent = os.getpid()

    def source():  # pass 1 (the parent) reads the log; the workers find it broken
        if os.getpid() != parent:
            raise OSError("disk went away")
        return open(log, "rb")

    with pytest.raises(WorkerFailed, match="disk went away"):
        list(evaluate_log(source, EvalConfig(), 60, 120.0, LogSummary(), workers=2))


def test_shard_and_worker_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shard 2 of 2"):
        Shard(2, 2)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        list(evaluate_log(lambda: iter([]), EvalConfig(), 60, 120.0, LogSummary(), workers=0))
    small = tmp_path / "small.jsonl"
    small.write_bytes(b"\n")
    assert default_workers(small) == 1  # a small log is not worth a fork


def _with_a_bad_request_late(path: Path, out: Path) -> tuple[Path, int]:
    """The log with one request line, ~80 % of the way in, made invalid where only full
    validation sees it (a negative latency): its id and time still read fine."""
    lines = path.read_bytes().splitlines()
    at = next(i for i in range(len(lines) * 4 // 5, len(lines))
              if lines[i].startswith(b'{"request"') and b'"latency_ms":' in lines[i])
    line = orjson.loads(lines[at])
    for role in ("teacher", "student"):
        if line.get(role):
            line[role]["latency_ms"] = -5.0
            break
    lines[at] = orjson.dumps(line)
    out.write_bytes(b"\n".join(lines) + b"\n")
    return out, at + 1


def test_a_request_line_invalid_beyond_its_id_and_time_gives_one_process_rows(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Workers read other workers' request lines for id and time only; the owner of a line
    that reads as a request but is invalid makes pass 2 start over validating every line,
    and the rows and counts are still one process's."""
    from schemas.fastpath import request_key

    log, bad_line = _with_a_bad_request_late(_awkward_log(tmp_path / "log.jsonl"), tmp_path / "bad.jsonl")
    assert request_key(log.read_bytes().splitlines()[bad_line - 1]) is not None
    one_rows, one = _run(log, 1)
    assert bad_line in [line for line, _ in one.reasons]
    with caplog.at_level("INFO", logger="evaluators.offline_parallel"):
        many_rows, many = _run(log, 2)
    assert "reading every line in every worker" in caplog.text
    assert len(many_rows) == len(one_rows)
    for r1, rn in zip(one_rows, many_rows, strict=True):
        for field in r1.__dataclass_fields__:
            assert _same(getattr(r1, field), getattr(rn, field)), (field, r1, rn)
    for field in ("lines", "requests", "duplicates", "invalid", "late_events", "reason_counts"):
        assert getattr(many, field) == getattr(one, field), field
