"""River drift detectors in the monitor, fed once per judged window (DESIGN §6).

For each judged window the requests of that window are read back from
``shadow_evaluations`` in event-time order and fed, per watched slice (``all`` and every
single slice attribute such as ``region=eu``), to:

- ADWIN on the student's per-request error (1 when its top-1 differs from the reference);
- Page–Hinkley on the per-request fallback flag (upward changes);
- KSWIN on the window's sample of student top-1 confidence (one update per window).

A detection opens a drift alert ``drift:<detector>:<series>`` on that slice; it resolves after
``hold_windows`` judged windows without a new detection. Drift is a leading indicator, not a
page: its events are stored like any alert and shown by ``alerts list`` and the report, and
are delivered only when ``alerting.drift.deliver`` is set. The detectors' state is pickled
into the alerter's persisted state (trusted local storage).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from evaluators.drift import DriftBank

SERIES = {"adwin": "student_error", "page_hinkley": "fallback", "kswin": "student_confidence"}


@dataclass(frozen=True)
class DriftEvent:
    kind: str  # "firing" | "resolved"
    detector: str
    slice: str
    window_start: int
    window_s: int

    @property
    def rule(self) -> str:
        return f"drift:{self.detector}:{SERIES[self.detector]}"


class DriftWatch:
    def __init__(self, hold_windows: int = 5, bank: DriftBank | None = None,
                 open_alerts: dict[str, int] | None = None) -> None:
        self.hold_windows = hold_windows
        self.bank = bank
        self.open: dict[str, int] = dict(open_alerts or {})
        """"detector|slice" → judged windows since its last detection."""

    def watched(self, slice_map: dict[str, str]) -> list[str]:
        return ["all"] + [f"{k}={v}" for k, v in sorted(slice_map.items())]

    def step(self, window_start: int, window_s: int,
             requests: Iterable[tuple[dict[str, str], int | None, int, float | None]],
             ) -> list[DriftEvent]:
        """Feed one window's requests (slice map, student_correct, fallback, student_top1)."""
        detected: set[tuple[str, str]] = set()
        samples: dict[str, list[float]] = {}
        for slice_map, correct, fallback, top1 in requests:
            slices = self.watched(slice_map)
            if self.bank is None:
                self.bank = DriftBank(())
            self.bank.slices = self.bank.slices | frozenset(slices)
            for s in slices:
                if correct is not None and self.bank.update("adwin", s, 1 - int(correct)):
                    detected.add(("adwin", s))
                if self.bank.update("page_hinkley", s, int(fallback)):
                    detected.add(("page_hinkley", s))
                if top1 is not None:
                    samples.setdefault(s, []).append(float(top1))
        for s, sample in samples.items():
            assert self.bank is not None
            if self.bank.update("kswin", s, sample):
                detected.add(("kswin", s))
        events = []
        for key in list(self.open):
            self.open[key] += 1
            det, s = key.split("|", 1)
            if (det, s) not in detected and self.open[key] >= self.hold_windows:
                del self.open[key]
                events.append(DriftEvent("resolved", det, s, window_start, window_s))
        for det, s in sorted(detected):
            key = f"{det}|{s}"
            if key not in self.open:
                events.append(DriftEvent("firing", det, s, window_start, window_s))
            self.open[key] = 0
        return events

    def to_dict(self) -> dict[str, Any]:
        bank = base64.b64encode(self.bank.to_bytes()).decode() if self.bank is not None else None
        return {"hold_windows": self.hold_windows, "bank": bank, "open": self.open}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftWatch:
        bank = DriftBank.from_bytes(base64.b64decode(data["bank"])) if data.get("bank") else None
        return cls(int(data.get("hold_windows", 5)), bank, data.get("open", {}))


RequestsOf = Callable[[int, int], list[tuple[dict[str, str], int | None, int, float | None]]]
