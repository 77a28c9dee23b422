"""Which slices a request belongs to (DESIGN §5).

``all``; each slice attribute alone (``region=eu``); configured crosses
(``region=eu,device=android-lowmem``, only when every key is present); and the derived
slices ``intent=…`` and ``risk=high|normal`` (by reference intent, only when there is one),
``freshness=new|established``, ``multi_intent=true|false``.
"""

from __future__ import annotations

from evaluators.config import EvalConfig
from evaluators.request import RequestEvaluation

ALL = "all"


def slices_of(ev: RequestEvaluation, config: EvalConfig) -> list[str]:
    out = [ALL]
    attrs = ev.slice
    out += [f"{k}={v}" for k, v in sorted(attrs.items())]
    for cross in config.crosses:
        if all(k in attrs for k in cross):
            out.append(",".join(f"{k}={attrs[k]}" for k in cross))
    if ev.reference_intent is not None:
        out.append(f"intent={ev.reference_intent}")
        out.append("risk=high" if ev.reference_intent in config.high_risk else "risk=normal")
    out.append("freshness=new" if ev.new_title else "freshness=established")
    out.append("multi_intent=true" if ev.multi_intent else "multi_intent=false")
    return out


class Slicer:
    """``slices_of`` with the answer cached per combination of what it depends on.

    Requests repeat a few combinations of slice attributes, reference intent, freshness and
    multi-intent, so the names are built once per combination and shared (as one tuple,
    which also lets a window batch map each combination to its slices once). The cache
    starts over when it holds ``max_entries`` combinations, so memory stays bounded.
    """

    def __init__(self, config: EvalConfig, max_entries: int = 100_000) -> None:
        self.config = config
        self.max_entries = max_entries
        self._cache: dict[tuple[object, ...], tuple[str, ...]] = {}

    def __call__(self, ev: RequestEvaluation) -> tuple[str, ...]:
        key = (tuple(ev.slice.items()), ev.reference_intent, ev.new_title, ev.multi_intent)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            hit = self._cache[key] = tuple(slices_of(ev, self.config))
        return hit
