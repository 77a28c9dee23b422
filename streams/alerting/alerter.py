"""Rules on every closed window, in the monitor: complete windows → transitions → ``alerts`` rows.

Which windows are complete: each evaluator partition ("part") sends its window states to the
sink, flagged ``final`` once its watermark has closed the window. A window is judged once
every *live* part has closed it, a live part being one that has sent a partial at least as
new as the newest closed window of any part (a partition that stopped receiving traffic does
not hold alerting back). A window is judged once, on the metrics merged at that moment;
a late label revises ``window_metrics`` but does not re-page.

Judging is :func:`evaluators.breaches.evaluate_window` and
:class:`evaluators.alert_tracker.RuleTracker`, the code ``evaluate --alerts`` uses. The
trackers, the firing alerts and the retrain cooldowns are persisted in ``alert_state`` after
the alert rows they produced, so a crash in between re-judges the same windows into the same
alert ids, which the store keeps once. Delivery is the outbox's job.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import orjson

from evaluators.alert_tracker import RuleTracker, Transition
from evaluators.breaches import evaluate_window
from evaluators.readout import MetricRow
from evaluators.rules import RuleSet
from streams.alerting.drift_watch import SERIES, DriftEvent, DriftWatch
from streams.alerting.evidence import EvidenceFinder
from streams.alerting.notification import Notification, alert_id_for
from streams.clickhouse import Store
from streams.evaluator.outputs import json_each_row

log = logging.getLogger(__name__)

STATE_KEY = "alerter"

OnFiring = Callable[[Notification], None]


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


class Alerter:
    """Judges complete windows; writes alert events; keeps its state in ``alert_state``."""

    def __init__(self, store: Store, lock: threading.Lock, rules: RuleSet, window_sizes: Sequence[int],
                 evidence: EvidenceFinder, model: str, on_firing: OnFiring | None = None,
                 min_interval_s: float = 0.5,
                 required_parts: Callable[[], set[str]] = set,
                 settled: Callable[[], bool] = lambda: True, settle_s: float = 10.0,
                 drift: bool = True, drift_hold_windows: int = 5) -> None:
        self.store = store
        self.lock = lock
        self.rules = rules
        self.sizes = sorted(window_sizes)
        self.evidence = evidence
        self.model = model
        self.on_firing = on_firing
        self.min_interval_s = min_interval_s
        self.required_parts = required_parts
        """Input partitions that hold data: each must report before any window is judged."""
        self.settled = settled
        """Whether all input read so far is evaluated and written (nothing in flight)."""
        self.settle_s = settle_s
        self._complete_since: dict[int, list[tuple[int, float]]] = {s: [] for s in self.sizes}
        self.drift = DriftWatch(drift_hold_windows) if drift else None
        """Drift detectors, fed on the smallest window size only."""
        self.trackers = {s: RuleTracker(rules, s) for s in self.sizes}
        self.firing: dict[str, dict[str, Any]] = {}
        """fingerprint → the firing notification (JSON-ready), for its resolution."""
        self.extra: dict[str, Any] = {}
        """State other components persist with the alerter's (the retrain cooldowns)."""
        self.judged_windows = 0
        self._last_step = 0.0
        self._version = 0

    # -- state -----------------------------------------------------------------------------

    def load(self) -> None:
        """Restore the persisted state (or start fresh): at start-up and after a failed step."""
        rows = self._query(
            f"SELECT state, version FROM {self.store.database}.alert_state FINAL WHERE key = {{k:String}}",
            {"k": STATE_KEY})
        state: dict[str, Any] = {}
        if rows:
            state, self._version = orjson.loads(rows[0][0]), int(rows[0][1])
        self.trackers = {s: RuleTracker(self.rules, s) for s in self.sizes}
        for item in state.get("trackers", []):
            size = int(item["window_s"])
            if size in self.trackers:
                self.trackers[size] = RuleTracker.from_dict(item, self.rules)
        self.firing = dict(state.get("firing", {}))
        if self.drift is not None:
            saved = state.get("drift")
            self.drift = DriftWatch.from_dict(saved) if saved else DriftWatch(self.drift.hold_windows)
        for key, value in state.get("extra", {}).items():  # in place: others hold references
            if isinstance(value, dict) and isinstance(self.extra.get(key), dict):
                self.extra[key].clear()
                self.extra[key].update(value)
            else:
                self.extra[key] = value
        log.info("alerter state restored: %d alerts firing", len(self.firing))

    def save(self) -> None:
        self._version = max(self._version + 1, time.time_ns())
        state = {"trackers": [t.to_dict() for t in self.trackers.values()],
                 "firing": self.firing, "extra": self.extra,
                 "drift": self.drift.to_dict() if self.drift is not None else None}
        row = {"key": STATE_KEY, "state": orjson.dumps(state).decode(), "version": self._version}
        self._insert("alert_state", [row], f"state:{self._version}")

    # -- judging ---------------------------------------------------------------------------

    def step(self, force: bool = False) -> list[Notification]:
        """Judge every window completed since the last step; return the new alert events."""
        now = time.monotonic()
        if not force and now - self._last_step < self.min_interval_s:
            return []
        self._last_step = now
        events: list[Notification] = []
        judged = self.judged_windows
        for size in self.sizes:
            tracker = self.trackers[size]
            through = self.ripe_through(size, self.complete_through(size), now)
            if through is None:
                continue
            after = tracker.last_window if tracker.last_window is not None else -1
            for start in self._windows(size, after, through):
                rows = self._metric_rows(size, start)
                breaches = evaluate_window(rows, self.rules)
                log.info("judged window %d/%ds: %d rows, %d breaches", start, size, len(rows), len(breaches))
                transitions = tracker.step(start, breaches)
                events += [self._notification(t, rows) for t in transitions]
                if self.drift is not None and size == self.sizes[0]:
                    events += [self._drift_notification(e) for e in
                               self.drift.step(start, size, self._requests(start, size))]
                self.judged_windows += 1
        if events:
            self._insert("alerts", [self._alert_row(n) for n in events],
                         "alerts:" + hashlib.sha256(",".join(n.alert_id for n in events).encode()).hexdigest())
            for n in events:
                if n.status == "firing" and self.on_firing is not None:
                    self.on_firing(n)
        if self.judged_windows > judged:
            self.save()
        for n in events:
            log.warning("alert %s %s: %s", n.status, n.fingerprint, n.summary)
        return events

    def ripe_through(self, size: int, complete: int | None, now: float) -> int | None:
        """The newest complete window that may be judged now.

        A window closes when the watermark passes it, but in a replay or under lag the
        responses and labels of its requests may still be on their way (read later, they
        revise the window). So a complete window is judged once the input is settled
        (everything read is evaluated and written) or it has been complete for ``settle_s``.
        """
        seen = self._complete_since[size]
        if complete is not None and (not seen or complete > seen[-1][0]):
            seen.append((complete, now))
        if not seen:
            return None
        if self.settled():
            return seen[-1][0]
        ripe = [w for w, t in seen if now - t >= self.settle_s]
        if not ripe:
            return None
        del seen[:len(ripe) - 1]  # keep the newest ripe mark and everything younger
        return ripe[-1]

    def complete_through(self, size: int) -> int | None:
        """The newest window start every live part has closed, or None.

        Until every input partition holding data has closed a window nothing is judged, so
        the first windows are not judged on the partials of the quickest partition alone.
        """
        rows = self._query(
            "SELECT part, toUnixTimestamp(maxIf(window_start, final = 1)), countIf(final = 1), "
            "toUnixTimestamp(max(window_start)) "
            f"FROM {self.store.database}.window_partials WHERE window_s = {{s:UInt32}} GROUP BY part",
            {"s": size})
        closed = {str(p): int(c) for p, c, n, _ in rows if n > 0}
        if not closed or any(p not in closed for p in self.required_parts()):
            return None  # a partition with input has not closed any window yet
        newest_closed = max(closed.values())
        live = [str(p) for p, _, _, newest in rows if int(newest) >= newest_closed]
        if any(p not in closed for p in live):
            return None
        return min(closed[p] for p in live)

    def _windows(self, size: int, after: int, through: int) -> list[int]:
        rows = self._query(
            f"SELECT DISTINCT toUnixTimestamp(window_start) AS w FROM {self.store.database}.window_metrics "
            "WHERE window_s = {s:UInt32} AND window_start > toDateTime({a:Int64}, 'UTC') "
            "AND window_start <= toDateTime({t:Int64}, 'UTC') ORDER BY w",
            {"s": size, "a": max(after, 0), "t": through})
        return [int(r[0]) for r in rows if int(r[0]) > after]

    def _metric_rows(self, size: int, start: int) -> list[MetricRow]:
        rows = self._query(
            "SELECT slice, metric, value, numerator, denominator, support, ci_low, ci_high "
            f"FROM {self.store.database}.window_metrics FINAL "
            "WHERE window_s = {s:UInt32} AND window_start = toDateTime({w:Int64}, 'UTC')",
            {"s": size, "w": start})
        return [MetricRow(start, start + size, size, sl, m, v, num, den, int(sup), lo, hi)
                for sl, m, v, num, den, sup, lo, hi in rows]

    # -- alert events ----------------------------------------------------------------------

    def _notification(self, t: Transition, rows: list[MetricRow]) -> Notification:
        rule = self.rules[t.rule]
        if t.kind == "resolved" and t.fingerprint in self.firing:
            fired = Notification.from_json(orjson.dumps(self.firing.pop(t.fingerprint)).decode())
            now_row = next((r for r in rows if r.slice == t.slice and r.metric == rule.metric), None)
            return replace(
                fired, alert_id=alert_id_for(t.fingerprint, "resolved", t.window_start, t.window_s),
                status="resolved", ends_at=float(t.window_start), window_start=t.window_start,
                value=now_row.value if now_row else None,
                summary=f"resolved: {rule.metric} on {t.slice} no longer {rule.condition.text}",
            )
        b = t.breach
        ev = self.evidence.find(rule.metric, t.slice, t.window_start, t.window_s)
        value = b.value if b else None
        threshold = b.threshold if b else None
        op = b.op if b else rule.condition.op
        desc = f" ({rule.description})" if rule.description else ""
        n = Notification(
            alert_id=alert_id_for(t.fingerprint, t.kind, t.window_start, t.window_s),
            fingerprint=t.fingerprint, status=t.kind, rule=t.rule, slice=t.slice,
            severity=rule.severity, metric=rule.metric, value=value, threshold=threshold, op=op,
            window_start=t.window_start, window_s=t.window_s,
            starts_at=float(t.window_start - (rule.for_windows - 1) * t.window_s), ends_at=None,
            model=self.model,
            summary=(f"{rule.metric} = {_fmt(value)} {op} {_fmt(threshold)} on {t.slice} "
                     f"for {rule.for_windows} windows of {t.window_s}s{desc}"),
            forensics_sql=ev.forensics_sql, example_request_ids=ev.example_request_ids,
            replay_offsets=ev.replay_offsets, support=b.support if b else None,
            ci_low=b.ci_low if b else None, ci_high=b.ci_high if b else None,
        )
        if t.kind == "firing":
            self.firing[t.fingerprint] = orjson.loads(n.to_json())
        return n

    def _requests(self, start: int, size: int) -> list[tuple[dict[str, str], int | None, int, float | None]]:
        """The window's answered requests in event-time order, for the drift detectors. Their
        slice is read as slice_json (one dictionary-encoded string; the map column costs more
        to read) and decoded once per distinct value, so equal slices share one dict."""
        rows = self._query(
            "SELECT slice_json, student_correct, fallback, student_top1 "
            f"FROM {self.store.database}.shadow_evaluations FINAL "
            "WHERE ts >= toDateTime64({w:Int64}, 3, 'UTC') AND ts < toDateTime64({e:Int64}, 3, 'UTC') "
            "AND student_answered = 1 ORDER BY ts, request_id", {"w": start, "e": start + size})
        slices: dict[str, dict[str, str]] = {}
        out = []
        for text, c, f, t in rows:
            sl = slices.get(text)
            if sl is None:
                sl = slices[text] = orjson.loads(text)
            out.append((sl, c, int(f), t))
        return out

    def _drift_notification(self, e: DriftEvent) -> Notification:
        fingerprint = f"{e.rule}/{e.slice}"
        if e.kind == "resolved" and fingerprint in self.firing:
            fired = Notification.from_json(orjson.dumps(self.firing.pop(fingerprint)).decode())
            return replace(fired, alert_id=alert_id_for(fingerprint, "resolved", e.window_start, e.window_s),
                           status="resolved", ends_at=float(e.window_start), window_start=e.window_start,
                           summary=f"resolved: no {e.detector} drift of {SERIES[e.detector]} on {e.slice} "
                                   f"for {self.drift.hold_windows if self.drift else 0} windows")
        ev = self.evidence.find("student_correct" if e.detector == "adwin" else
                                "fallback_rate" if e.detector == "page_hinkley" else "ece",
                                e.slice, e.window_start, e.window_s)
        n = Notification(
            alert_id=alert_id_for(fingerprint, e.kind, e.window_start, e.window_s),
            fingerprint=fingerprint, status=e.kind, rule=e.rule, slice=e.slice, severity="info",
            metric=SERIES[e.detector], value=None, threshold=None, op=">",
            window_start=e.window_start, window_s=e.window_s, starts_at=float(e.window_start),
            ends_at=float(e.window_start) if e.kind == "resolved" else None, model=self.model,
            summary=f"{e.detector} detected drift in {SERIES[e.detector]} on {e.slice}",
            forensics_sql=ev.forensics_sql, example_request_ids=ev.example_request_ids,
            replay_offsets=ev.replay_offsets)
        if e.kind == "firing":
            self.firing[fingerprint] = orjson.loads(n.to_json())
        return n

    @staticmethod
    def _alert_row(n: Notification) -> dict[str, Any]:
        return {
            "alert_id": n.alert_id, "fingerprint": n.fingerprint, "rule": n.rule, "slice": n.slice,
            "status": n.status, "severity": n.severity, "metric": n.metric, "value": n.value,
            "threshold": n.threshold, "window_start": n.window_start, "window_s": n.window_s,
            "starts_at": n.starts_at, "ends_at": n.ends_at, "evidence": n.to_json(),
        }

    # -- store access (the store is shared with the sink and the HTTP API) -------------------

    def _query(self, sql: str, parameters: dict[str, Any]) -> list[Any]:
        with self.lock:
            return list(self.store.query(sql, parameters=parameters).result_rows)

    def _insert(self, table: str, rows: list[dict[str, Any]], token: str) -> None:
        with self.lock:
            self.store.client.raw_insert(
                f"{self.store.database}.{table}", None, json_each_row(rows), fmt="JSONEachRow",
                settings={"insert_deduplication_token": token, "date_time_input_format": "best_effort"},
            )
