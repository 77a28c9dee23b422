"""Tumbling event-time windows (DESIGN §4, §5): epoch alignment, watermark, grace, late events.

Every timestamp below is hand-picked; the expected windows are worked out in the comments.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest

from evaluators.config import EvalConfig
from evaluators import offline
from evaluators.offline import LogSummary, Shard, evaluate_log
from evaluators.window_state import NO_VALUE, Contribution, Layout
from evaluators.windowing import TumblingWindows, window_start

LAYOUT = Layout(EvalConfig())


def one_request() -> Contribution:
    counts = np.zeros(LAYOUT.size)
    counts[LAYOUT["support"]] = 1
    return Contribution(counts, (NO_VALUE, NO_VALUE, NO_VALUE))


def support(windows: TumblingWindows) -> dict[int, float]:
    return {start: states["all"].counts[LAYOUT["support"]] for start, states in windows.open.items()}


@pytest.mark.parametrize(("ts", "size", "start"), [
    (0.0, 60, 0), (59.999, 60, 0), (60.0, 60, 60), (61.0, 60, 60),
    (1_793_491_259.9, 60, 1_793_491_200),  # 2026-11-01T00:00:59.9Z
    (1_793_491_260.0, 60, 1_793_491_260),
    (1_793_491_259.9, 3600, 1_793_491_200), (1_793_494_800.0, 3600, 1_793_494_800),
    (-0.5, 60, -60),  # aligned to the epoch, not to zero-towards
])
def test_windows_are_aligned_to_the_unix_epoch(ts: float, size: int, start: int) -> None:
    assert window_start(ts, size) == start


def test_watermark_is_max_event_time_minus_grace() -> None:
    w = TumblingWindows(60, 120, LAYOUT)
    for ts in (100.0, 250.0, 200.0):
        w.add(ts, ["all"], one_request())
    assert w.watermark == 250.0 - 120.0
    assert w.late_events == 0


def test_within_grace_lands_beyond_grace_is_counted_late() -> None:
    w = TumblingWindows(60, 120, LAYOUT)
    assert w.add(250.0, ["all"], one_request())  # watermark 130
    # 125 s: window [120, 180) ends at 180 > 130: still open, the event lands
    assert w.add(125.0, ["all"], one_request())
    # 70 s: window [60, 120) ends at 120 ≤ 130: closed, late
    assert not w.add(70.0, ["all"], one_request())
    # 10 s: window [0, 60): late
    assert not w.add(10.0, ["all"], one_request())
    assert w.late_events == 2
    assert support(w) == {120: 1, 240: 1}
    # late events do not move the watermark
    assert w.watermark == 130.0


def test_window_closes_when_the_watermark_reaches_its_end() -> None:
    w = TumblingWindows(60, 120, LAYOUT)
    w.add(130.0, ["all"], one_request())
    w.add(299.999, ["all"], one_request())  # watermark 179.999: [120, 180) still open
    assert w.pop_closed() == []
    assert w.add(179.0, ["all"], one_request())
    w.add(300.0, ["all"], one_request())  # watermark 180 = end of [120, 180)
    assert not w.add(179.999, ["all"], one_request())  # now late
    assert w.add(180.0, ["all"], one_request())  # [180, 240) is open
    closed = w.pop_closed()
    assert [(c.start, c.end) for c in closed] == [(120, 180)]
    assert closed[0].states["all"].counts[LAYOUT["support"]] == 2
    assert sorted(w.open) == [180, 240, 300]
    assert w.late_events == 1


def test_pop_closed_returns_only_windows_ended_by_the_watermark_oldest_first() -> None:
    w = TumblingWindows(60, 30, LAYOUT)
    for ts in (5.0, 65.0, 130.0, 190.0):
        w.add(ts, ["all", "region=eu"], one_request())
    # watermark 160: [0, 60) and [60, 120) ended; [120, 180) ends at 180 > 160
    closed = w.pop_closed()
    assert [c.start for c in closed] == [0, 60]
    assert all(c.end <= w.watermark for c in closed)
    assert set(closed[0].states) == {"all", "region=eu"}
    assert sorted(w.open) == [120, 180]
    assert w.pop_closed() == []  # popped windows leave the open set
    w.add(240.0, ["all"], one_request())  # watermark 210: [120, 180) ends
    assert [c.start for c in w.pop_closed()] == [120]
    assert [c.start for c in w.pop_all()] == [180, 240]
    assert w.open == {}


def test_zero_grace_and_bad_arguments() -> None:
    w = TumblingWindows(60, 0, LAYOUT)
    w.add(60.0, ["all"], one_request())  # watermark 60 = end of [0, 60)
    assert not w.add(59.0, ["all"], one_request())
    assert w.late_events == 1
    with pytest.raises(ValueError):
        TumblingWindows(0, 10, LAYOUT)
    with pytest.raises(ValueError):
        TumblingWindows(60, -1, LAYOUT)


@pytest.mark.parametrize("workers", [1, 2])
def test_offline_evaluation_counts_late_requests_exactly(tmp_path: Path, workers: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the whole offline path, at request times (s after an epoch-aligned T0):
    0, 130, 200, 61 (max 200, watermark 80: [60, 120) open), 10 ([0, 60) ended at 60 ≤ 80:
    late), 300, 179 (watermark 180 = end of [120, 180): late), 180 (lands in [180, 240)).
    Split across two processes (evaluate --workers 2) the same: a shard closes windows on the
    other shard's requests too, so the two late ones are late there as well."""
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    lines = []
    for i, s in enumerate((0, 130, 200, 61, 10, 300, 179, 180)):
        ts = (t0 + timedelta(seconds=s)).isoformat().replace("+00:00", "Z")
        lines.append({"request": {"request_id": f"w{i}", "ts": ts, "prompt": "p", "slice": {}},
                      "teacher": None, "student": None})
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"".join(orjson.dumps(ln) + b"\n" for ln in lines))
    if workers == 2:
        monkeypatch.setattr(offline, "SHARD_BLOCK_LINES", 1)  # the shards alternate line by line
        owners = {Shard(0, 2).owns(line_no) for line_no in range(1, 9)}
        assert owners == {True, False}, "both shards must own some of the request lines"
    summary = LogSummary()
    rows = list(evaluate_log(lambda: open(path, "rb"), EvalConfig(), window_s=60, grace_s=120,
                             summary=summary, workers=workers))
    base = int(t0.timestamp())
    got = {r.window_start - base: r.value for r in rows if r.slice == "all" and r.metric == "support"}
    assert got == {0: 1, 60: 1, 120: 1, 180: 2, 300: 1}
    assert summary.late_events == {60: 2}
    assert summary.requests == 8
