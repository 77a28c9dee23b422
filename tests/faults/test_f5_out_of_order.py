"""F5: out-of-order events. Within the grace they land in their own window; beyond it they
are late: counted exactly, kept in their per-request row, and left out of every window.

The rule (DESIGN §5): windows are ``[k·W, (k+1)·W)`` by request time; the watermark is the
largest request time seen minus the grace (120 s); an event whose window ends at or before
the watermark is late. The test moves requests of a regular, in-order log later in the log
by a known amount of event time, adds two events on the boundary (1 ms either side), and
computes the expected windows and late counts by walking the log with that rule alone.

One partition, so the evaluator's watermark is the log's (with six partitions each keeps its
own, which is the design, and the test would have to follow the partitioner).
"""

from __future__ import annotations

import bisect
import json
import math
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evaluators.config import EvalConfig
from evaluators.offline import LogSummary, evaluate_log
from simulator.traffic import TrafficConfig, World
from tests.faults.fault_support import event_counter, replay, report
from tests.integration.pipeline_support import Cluster, assert_metrics_equal, stored, wait_until_quiet

pytestmark = pytest.mark.integration

GRACE_S = 120
START = datetime(2026, 11, 1, 0, 45, tzinfo=UTC)
"""Crosses an hour boundary at 01:00, so some late events are late for the 3600 s windows too."""
PAIRS, RATE = 3600, 2.0


def ts_of(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["request"]["ts"].replace("Z", "+00:00")).timestamp()


def with_ts(line: dict[str, Any], ts: float, request_id: str) -> dict[str, Any]:
    out = json.loads(json.dumps(line))
    stamp = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    out["request"]["ts"] = stamp
    for part in ("request", "teacher", "student"):
        out[part]["request_id"] = request_id
    return out


def build_log(path: Path, seed: int) -> dict[str, int]:
    """An in-order log with moved requests and two boundary events; what moved, by kind."""
    world = World(TrafficConfig(start=START, pairs=PAIRS, rate_per_s=RATE, label_share=0,
                                preference_share=0, missing_response=0), seed=seed)
    catalog = list(world.catalog_lines())
    requests = list(world.request_lines())
    rng = random.Random(seed)
    last = ts_of(requests[-1])
    kept: list[dict[str, Any]] = []
    moved: list[tuple[float, int, dict[str, Any]]] = []  # (insert once the log reaches this ts)
    kinds: Counter[str] = Counter()
    for line in requests:
        ts = ts_of(line)
        roll, behind = rng.random(), rng.uniform(200, 1500)
        if roll < 0.05:  # within the grace: at most 110 s behind the newest event when it comes
            moved.append((ts + rng.uniform(1, 110), len(moved), line))
            kinds["within_grace"] += 1
        elif roll < 0.08 and ts + behind <= last:  # beyond it (and inside the log)
            moved.append((ts + behind, len(moved), line))
            kinds["beyond_grace"] += 1
        else:
            kept.append(line)
    times = [ts_of(line) for line in kept]
    for due, _, line in sorted(moved, key=lambda m: (m[0], m[1])):
        at = bisect.bisect_right(times, due)  # after every in-order event up to `due`
        kept.insert(at, line)
        times.insert(at, times[at - 1] if at else -math.inf)
    # The boundary: right after the in-order event at E + grace, one event 1 ms before E (its
    # window ends at E = the watermark: late) and one 1 ms after (within the grace).
    boundary_end = START.timestamp() + 20 * 60
    anchor = next(i for i, line in enumerate(kept) if ts_of(line) == boundary_end + GRACE_S)
    kept[anchor + 1:anchor + 1] = [with_ts(requests[0], boundary_end - 0.001, "boundary-late"),
                                   with_ts(requests[1], boundary_end + 0.001, "boundary-in-time")]
    kinds["boundary"] = 2
    path.write_bytes(b"".join(json.dumps(x).encode() + b"\n" for x in catalog + kept))
    return dict(kinds)


def expected(path: Path, size: int) -> tuple[Counter[int], set[str]]:
    """Requests per window and the late ids, by walking the log with the rule of DESIGN §5."""
    newest, per_window, late = -math.inf, Counter[int](), set()
    for raw in path.read_bytes().splitlines():
        line = json.loads(raw)
        if "request" not in line:
            continue
        ts = ts_of(line)
        start = math.floor(ts / size) * size
        if start + size <= newest - GRACE_S:
            late.add(line["request"]["request_id"])
            continue
        per_window[start] += 1
        newest = max(newest, ts)
    return per_window, late


def test_f5_out_of_order_within_grace_counts_beyond_grace_is_late_exactly(
        make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    cluster = make_cluster(DISTILLWATCH_TOPICS__PARTITIONS="1")
    log = tmp_path / "out-of-order.jsonl"
    kinds = build_log(log, seed=5)
    per_60, late_60 = expected(log, 60)
    per_3600, late_3600 = expected(log, 3600)
    assert "boundary-late" in late_60 and "boundary-in-time" not in late_60
    assert late_3600 < late_60 and late_3600  # some are late for both sizes, some for 60 s only
    replay(cluster, log)
    _, port = cluster.start_monitor()
    wait_until_quiet(port, PAIRS + 2)
    late_events = event_counter(port, "late_events")
    cluster.stop_all()
    data = tmp_path / "data"

    # Late: the evaluator's counter and the rows' flag, exactly (late for any window size).
    late_any = late_60 | late_3600
    assert late_events == len(late_any)
    flagged = {r[0] for r in stored(data, "SELECT request_id FROM distillwatch.shadow_evaluations "
                                          "FINAL WHERE late = 1")}
    assert flagged == late_any
    (rows,), = stored(data, "SELECT count() FROM distillwatch.shadow_evaluations FINAL")
    assert rows == PAIRS + 2  # late requests keep their row

    # The right window: every window's support is the count the rule gives.
    for size, want in ((60, per_60), (3600, per_3600)):
        got = dict(stored(data, "SELECT toUnixTimestamp(window_start), toUInt64(value) FROM "
                                "distillwatch.window_metrics FINAL WHERE window_s = "
                                f"{size} AND slice = 'all' AND metric = 'support'"))
        assert got == dict(want), size
    # Offline `evaluate` agrees on the late counts, and on every metric of every window.
    summary = LogSummary()
    for size in (60, 3600):
        for _ in evaluate_log(lambda: open(log, "rb"), EvalConfig(), size, GRACE_S, summary):
            pass
    assert summary.late_events == {60: len(late_60), 3600: len(late_3600)}
    windows = assert_metrics_equal(data, log, 60) + assert_metrics_equal(data, log, 3600)
    report("F5", requests=PAIRS + 2, moved=kinds, late_60s=len(late_60), late_3600s=len(late_3600),
           late_counted=late_events, windows_checked=len(per_60) + len(per_3600),
           metric_rows_equal_offline=windows)
