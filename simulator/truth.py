"""The truth file next to a simulated log, and the check of alerts against it.

``LOG.truth.json`` says what was injected (scenario, onset, target slice), which rules must
fire on which slices and by when, which side effects may fire, and scenario-specific figures
(payload rows the sampling policy allows, the review backlog). :func:`check_transitions` takes
alert transitions from anywhere (the offline judge, or the monitor's alerts table) and lists
every way they disagree with the truth; an empty list is a pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from simulator.generate import Simulation

WINDOW_S = 60
DETECT_WINDOWS = 2
"""An expected rule must fire in a window starting at most this many windows after the
onset window (with ``for: 2``: the first two windows after the onset both breach, or the
second and third)."""
PAYLOAD_SHARE = 0.004
FORENSIC_RATE = 0.01


@dataclass(frozen=True)
class Expected:
    rule: str
    slices: list[str]
    why: str = ""


@dataclass
class Truth:
    scenario: str
    guide: str
    summary: str
    seed: int
    start: str
    minutes: float
    rate_per_s: float
    requests: int
    window_s: int
    onset_s: float | None
    onset_ts: str | None
    onset_window_start: int | None
    """Unix seconds of the window that holds the onset."""
    detect_by_window_start: int | None
    target_slice: str | None
    expected: list[Expected]
    side_effects: list[Expected]
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Truth:
        data = dict(data)
        data["expected"] = [Expected(**e) for e in data["expected"]]
        data["side_effects"] = [Expected(**e) for e in data["side_effects"]]
        return cls(**data)

    @classmethod
    def load(cls, path: Path | str) -> Truth:
        return cls.from_dict(json.loads(Path(path).read_text("utf-8")))

    def write(self, path: Path | str) -> None:
        Path(path).write_text(self.to_json(), "utf-8")

    def window_range(self) -> tuple[int, int]:
        """[first, end) window starts of the run, in Unix seconds."""
        start = datetime.fromisoformat(self.start.replace("Z", "+00:00")).timestamp()
        first = int(start // self.window_s * self.window_s)
        return first, int(start + self.minutes * 60.0)

    def allowed(self) -> set[tuple[str, str]]:
        """Every (rule, slice) that may fire."""
        return {(e.rule, s) for e in (*self.expected, *self.side_effects) for s in e.slices}


def truth_path(log_path: Path | str) -> Path:
    """``x/LOG.jsonl`` → ``x/LOG.truth.json``."""
    path = Path(log_path)
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    return path.with_name(f"{stem}.truth.json")


class TransitionLike(Protocol):
    kind: str
    rule: str
    slice: str
    window_start: int


def check_transitions(truth: Truth, transitions: Iterable[TransitionLike]) -> list[str]:
    """Every disagreement between alert transitions and the truth (empty: they agree).

    Only windows of the run count (from its start for ``minutes``), so logs of several
    scenarios run one after another (``simulate --start``) can be checked one by one
    against the alerts of the whole stream.
    """
    first, end = truth.window_range()
    firing = [t for t in transitions if t.kind == "firing" and first <= t.window_start < end]
    problems = []
    allowed = truth.allowed()
    for t in firing:
        if (t.rule, t.slice) not in allowed:
            problems.append(f"{t.rule} fired on {t.slice} at {t.window_start}: not expected")
        elif truth.onset_window_start is not None and t.window_start < truth.onset_window_start:
            problems.append(f"{t.rule} fired on {t.slice} at {t.window_start}, before the onset "
                            f"window {truth.onset_window_start}")
    for e in truth.expected:
        for s in e.slices:
            times = [t.window_start for t in firing if t.rule == e.rule and t.slice == s]
            if not times:
                problems.append(f"{e.rule} never fired on {s}")
            elif truth.detect_by_window_start is not None and min(times) > truth.detect_by_window_start:
                problems.append(f"{e.rule} fired on {s} first at {min(times)}, after "
                                f"{truth.detect_by_window_start} (onset window + {DETECT_WINDOWS})")
    return problems


def build(sim: Simulation) -> Truth:
    """The truth of a finished run (its counters are filled by iterating its lines)."""
    from simulator.generate import expected_share_bounds

    sc = sim.scenario
    start = sim.world.start
    onset_ts = onset_window = detect_by = None
    if sim.onset_s is not None:
        onset_epoch = start.timestamp() + sim.onset_s
        onset_ts = datetime.fromtimestamp(onset_epoch, start.tzinfo).isoformat().replace("+00:00", "Z")
        onset_window = int(onset_epoch // WINDOW_S * WINDOW_S)
        detect_by = onset_window + DETECT_WINDOWS * WINDOW_S
    stats = dict(sim.stats)
    extra: dict[str, Any] = {"counts": stats}
    n, risky = stats["requests"], stats["risky"]
    if n:  # what the default payload sampling policy keeps (DESIGN §7, §8)
        share = PAYLOAD_SHARE + (1 - PAYLOAD_SHARE) * FORENSIC_RATE * risky / n
        low, high = expected_share_bounds(n, share)
        extra["payload_sampling"] = {
            "payload_share": PAYLOAD_SHARE, "forensic_rate": FORENSIC_RATE,
            "requests": n, "risky_requests": risky, "expected_share": round(share, 6),
            "expected_rows": round(n * share, 1), "rows_low": low, "rows_high": high,
            "guide_share": 0.005,
        }
    queue = sim.queue
    if queue.capacity_per_hour is not None:
        checkpoints = [float(t) for t in range(600, int(sim.duration_s) + 1, 600)]
        reviewed = sum(1 for c in queue.completions if c < sim.duration_s)
        extra["review"] = {
            "selection": "requests whose reference (production's, else the teacher's top-1) is high-risk",
            "capacity_per_hour": round(queue.capacity_per_hour, 3),
            "incoming": len(queue.arrivals), "reviewed": reviewed,
            "backlog_end": len(queue.arrivals) - reviewed,
            "backlog_by_offset_s": {str(int(t)): queue.backlog_at(t) for t in checkpoints},
            "guide_weekly": {"incoming": 80_000, "reviewed": 18_000, "backlog_growth": 62_000},
        }
    return Truth(
        scenario=sc.name, guide=sc.guide, summary=sc.summary, seed=sim.seed,
        start=start.isoformat().replace("+00:00", "Z"), minutes=sim.minutes, rate_per_s=sim.rate,
        requests=sim.requests, window_s=WINDOW_S, onset_s=sim.onset_s, onset_ts=onset_ts,
        onset_window_start=onset_window, detect_by_window_start=detect_by, target_slice=sc.target,
        expected=[Expected(e.rule, list(e.slices), e.why) for e in sc.expected],
        side_effects=[Expected(e.rule, list(e.slices), e.why) for e in sc.side_effects],
        notes=sc.notes, extra=extra,
    )
