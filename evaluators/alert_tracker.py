"""From per-window breaches to alert transitions: ``for``, resolution and cooldown (DESIGN §6).

The fingerprint of an alert is rule + slice. A fingerprint fires once it has breached in
``for`` consecutive windows (window starts exactly ``window_s`` apart) and resolves in the
first window where it no longer breaches (a window in which the slice has too little
support, or no rows at all, counts as not breaching). After resolving it may not fire again
until ``cooldown_s`` of event time (window starts) has passed; a streak built up during the
cooldown fires as soon as the cooldown ends. Times are window starts, never a clock.

The state is a plain dict (``to_dict``/``from_dict``) so the streaming monitor can persist it
and a restart neither loses nor repeats a page; windows at or before the last one stepped are
ignored, which makes replaying an already-judged window harmless.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from evaluators.breaches import Breach
from evaluators.rules import RuleSet

STATE_VERSION = 1


@dataclass(frozen=True)
class Transition:
    """An alert starting (``firing``, with the breach that completed the streak) or ending."""

    kind: Literal["firing", "resolved"]
    rule: str
    slice: str
    window_start: int
    window_s: int
    breach: Breach | None = None

    @property
    def fingerprint(self) -> str:
        return f"{self.rule}/{self.slice}"


@dataclass
class _Track:
    streak: int = 0
    last_breach: int | None = None
    firing: bool = False
    fired_at: int | None = None
    resolved_at: int | None = None


class RuleTracker:
    """Consecutive-breach counts and firing state per (rule, slice), for one window size."""

    def __init__(self, rules: RuleSet, window_s: int) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.rules = rules
        self.window_s = window_s
        self.last_window: int | None = None
        self._tracks: dict[tuple[str, str], _Track] = {}

    @property
    def firing(self) -> list[tuple[str, str]]:
        """(rule, slice) of every alert firing now."""
        return sorted(k for k, t in self._tracks.items() if t.firing)

    def step(self, window_start: int, breaches: Iterable[Breach]) -> list[Transition]:
        """Advance by one closed window given all its breaches; return what changed."""
        if self.last_window is not None and window_start <= self.last_window:
            return []
        self.last_window = window_start
        out: list[Transition] = []
        breached: dict[tuple[str, str], Breach] = {}
        for b in breaches:
            if b.window_s != self.window_s or b.window_start != window_start:
                raise ValueError(f"breach of window {b.window_start}/{b.window_s}s stepped as {window_start}/{self.window_s}s")
            breached[(b.rule, b.slice)] = b
        for key, b in sorted(breached.items()):
            rule = self.rules[key[0]]
            track = self._tracks.setdefault(key, _Track())
            consecutive = track.last_breach == window_start - self.window_s
            track.streak = track.streak + 1 if consecutive else 1
            track.last_breach = window_start
            cooled = track.resolved_at is None or window_start - track.resolved_at >= rule.cooldown_s
            if not track.firing and track.streak >= rule.for_windows and cooled:
                track.firing, track.fired_at = True, window_start
                out.append(Transition("firing", key[0], key[1], window_start, self.window_s, b))
        for key, track in sorted(self._tracks.items()):
            if key in breached:
                continue
            track.streak = 0
            if track.firing:
                track.firing, track.resolved_at = False, window_start
                out.append(Transition("resolved", key[0], key[1], window_start, self.window_s))
        self._forget_idle(window_start)
        return out

    def _forget_idle(self, now: int) -> None:
        """Drop tracks that can no longer matter, so state stays bounded by live alerts."""
        for key in list(self._tracks):
            t = self._tracks[key]
            cooled = t.resolved_at is None or now - t.resolved_at >= self.rules[key[0]].cooldown_s
            if t.streak == 0 and not t.firing and cooled:
                del self._tracks[key]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {
            "version": STATE_VERSION, "window_s": self.window_s, "last_window": self.last_window,
            "tracks": [{"rule": r, "slice": s, **asdict(t)} for (r, s), t in sorted(self._tracks.items())],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], rules: RuleSet) -> RuleTracker:
        """Restore a persisted state; tracks of rules no longer configured are dropped."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"tracker state version {data.get('version')!r}; expected {STATE_VERSION}")
        tracker = cls(rules, int(data["window_s"]))
        tracker.last_window = data["last_window"]
        for item in data["tracks"]:
            if item["rule"] in rules:
                fields = {k: item[k] for k in ("streak", "last_breach", "firing", "fired_at", "resolved_at")}
                tracker._tracks[(item["rule"], item["slice"])] = _Track(**fields)
        return tracker
