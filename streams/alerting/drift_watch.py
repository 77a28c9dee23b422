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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from evaluators.drift import DriftBank, DriftDetector

_Feed = tuple[str, DriftDetector, DriftDetector, list[float]]

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

    def watched(self, slice_map: Mapping[str, str]) -> list[str]:
        return ["all"] + [f"{k}={v}" for k, v in sorted(slice_map.items())]

    def _feeds(self, slice_map: Mapping[str, str], samples: dict[str, list[float]]) -> list[_Feed]:
        """Per watched slice of a request: the slice, its ADWIN and Page-Hinkley detectors, and
        the window's confidence sample (for KSWIN)."""
        if self.bank is None:
            self.bank = DriftBank(())
        slices = self.watched(slice_map)
        self.bank.watch(slices)
        out = []
        for s in slices:
            adwin, page_hinkley = self.bank.detector("adwin", s), self.bank.detector("page_hinkley", s)
            assert adwin is not None and page_hinkley is not None  # watched just now
            out.append((s, adwin, page_hinkley, samples.setdefault(s, [])))
        return out

    def step(self, window_start: int, window_s: int,
             requests: Iterable[tuple[Mapping[str, str], int | None, int, float | None]],
             ) -> list[DriftEvent]:
        """Feed one window's requests (slice map, student_correct, fallback, student_top1).

        Requests with equal slice maps share their watched slices and detectors, looked up
        once (fastest when they share one map object, as ``Alerter._requests`` gives them; a
        map must not change while this runs): a window of a replay holds tens of thousands of
        requests, each feeding two detectors on ~5 slices.
        """
        detected: set[tuple[str, str]] = set()
        samples: dict[str, list[float]] = {}
        # id(slice map) -> (the map, kept so that its id is not reused; its slices' feeds)
        by_id: dict[int, tuple[Mapping[str, str], list[_Feed]]] = {}
        by_items: dict[tuple[tuple[str, str], ...], list[_Feed]] = {}  # equal maps, other objects
        for slice_map, correct, fallback, top1 in requests:
            known = by_id.get(id(slice_map))
            if known is None or known[0] is not slice_map:
                items = tuple(slice_map.items())
                feeds = by_items.get(items)
                if feeds is None:
                    feeds = by_items[items] = self._feeds(slice_map, samples)
                known = by_id[id(slice_map)] = (slice_map, feeds)
            for s, adwin, page_hinkley, sample in known[1]:
                if correct is not None and adwin.update(1 - int(correct)):
                    detected.add(("adwin", s))
                if page_hinkley.update(int(fallback)):
                    detected.add(("page_hinkley", s))
                if top1 is not None:
                    sample.append(float(top1))
        for s, sample in samples.items():
            if sample and self.bank is not None and self.bank.update("kswin", s, sample):
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
