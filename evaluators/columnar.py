"""Counter rows of many request evaluations at once (the batch form of ``contribution``).

``window_state.contribution`` turns one evaluation into its counter increments with a
dozen scalar writes into a fresh vector: ~9 µs a request. A window folds its requests in
batches anyway, so this computes the same rows for a whole batch: one short Python loop
reads each evaluation's fields into a tuple, and numpy sets every counter column at once.
The rows are identical to ``contribution``'s, value for value (a property test compares
them), so either form may feed a window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain

import numpy as np

from evaluators.request import RequestEvaluation
from evaluators.sketch import QuantileSketch
from evaluators.window_state import NO_VALUE, PREFERENCE_SCORE, ZERO_BUCKET, Layout


class _Codes(dict[object, int]):
    """Class name → small integer; unseen names (not in the configured classes) get new ones."""

    def __missing__(self, key: object) -> int:
        code = self[key] = len(self)
        return code


_F = (
    "names_entity", "retrieval_miss", "new_title", "copied", "fallback", "fallback_naive",
    "ref", "pref_n", "pref_score",
    "t_answered", "t_checkable", "t_wrong", "t_correct_claims", "t_top1", "t_intent",
    "s_answered", "s_checkable", "s_wrong", "s_unknown", "s_correct_claims", "s_top1", "s_intent",
    "r_answered", "r_intent", "brier",
)
_COL = {name: i for i, name in enumerate(_F)}


class ColumnarCounts:
    """Computes counter rows and sketch keys for batches of evaluations under one layout."""

    def __init__(self, layout: Layout, sketch: QuantileSketch | None = None) -> None:
        self.layout = layout
        cfg = layout.config
        self._sketch = sketch if sketch is not None else QuantileSketch()
        self._codes = _Codes({None: -1})
        for name in cfg.intents:
            self._codes[name]  # configured classes first: codes 1..K  # noqa: B018
        self._risky = {self._codes[c]: c for c in cfg.high_risk}

    def _per_class(self, prefix: str) -> np.ndarray:
        """Column of ``prefix.<class>`` for each code (high-risk classes), else -1."""
        ix = self.layout.index
        out = np.full(len(self._codes) + 1, -1, dtype=np.int64)
        for code, name in self._risky.items():
            out[code] = ix[f"{prefix}.{name}"]
        return out

    def features(self, evs: Sequence[RequestEvaluation]) -> tuple[np.ndarray, np.ndarray]:
        """(n × len(_F)) float features and (n × 3) sketch keys: the only per-request loop."""
        codes = self._codes
        nan = math.nan
        rows = []
        for ev in evs:
            t, s, r = ev.teacher, ev.student, ev.replica
            prefs = ev.preferences
            ref = ev.reference_intent
            a, b, c = t.latency_ms, s.latency_ms, ev.dataset_age_days
            rows.append((
                ev.names_entity, ev.retrieval_miss, ev.new_title, ev.copied_claims,
                1.0 if ev.fallback else 0.0, 1.0 if ev.fallback_naive else 0.0, codes[ref],
                len(prefs), sum(PREFERENCE_SCORE[p] for p in prefs) if prefs else 0.0,
                t.answered, t.checkable, t.wrong_claims, t.all_claims_correct,
                t.top1 if t.answered else 0.0, codes[t.intent],
                s.answered, s.checkable, s.wrong_claims, s.unknown_entity_claims,
                s.all_claims_correct, s.top1 if s.answered else 0.0, codes[s.intent],
                r.answered, codes[r.intent],
                # Python's float power, as contribution() computes it (numpy's square of an
                # array can differ in the last bit)
                ((s.top1 or 0.0) - (s.intent == ref)) ** 2 if s.answered and ref is not None else 0.0,
                nan if a is None else a, nan if b is None else b, nan if c is None else c,
            ))
        n = len(rows)
        width = len(_F) + 3
        flat = np.fromiter(chain.from_iterable(rows), np.float64, n * width).reshape(n, width)
        return flat[:, : len(_F)], self._keys(flat[:, len(_F):])

    def _keys(self, values: np.ndarray) -> np.ndarray:
        """Sketch bucket codes of (n × 3) values (NaN: none), exactly as ``QuantileSketch.key``.

        ``ceil(log(v) / log_gamma)`` in numpy; numpy's log may differ from ``math.log`` in the
        last bit, which only matters where the quotient is within a hair of an integer, so
        those few are computed again with ``math.log``.
        """
        sketch = self._sketch
        keys = np.full(values.shape, NO_VALUE, dtype=np.int64)
        zero = values <= sketch.min_value  # False for NaN
        keys[zero] = ZERO_BUCKET
        positive = values > sketch.min_value
        v = values[positive]
        y = np.log(v) / sketch.log_gamma
        k = np.ceil(y)
        near = np.abs(y - np.rint(y)) < 1e-9
        if near.any():
            k[near] = [math.ceil(math.log(x) / sketch.log_gamma) for x in v[near].tolist()]
        keys[positive] = k.astype(np.int64)
        return keys

    def rows(self, evs: Sequence[RequestEvaluation], signs: Sequence[int] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """(n × layout.size) counter rows and (n × 3) sketch keys, as ``contribution`` makes them."""
        f, keys = self.features(evs)
        lay, cfg = self.layout, self.layout.config
        ix = lay.index
        n = len(f)
        c = np.zeros((n, lay.size))
        col = {name: f[:, i] for name, i in _COL.items()}
        ref = col["ref"].astype(np.int64)
        has_ref = ref >= 0
        names = col["names_entity"] > 0

        c[:, ix["support"]] = 1.0
        c[:, ix["entity_requests"]] = names
        c[:, ix["retrieval_miss"]] = names & (col["retrieval_miss"] > 0)
        c[:, ix["new_title"]] = col["new_title"]
        rows_all = np.arange(n)
        risky_cols = {p: self._per_class(p) for p in ("t_ref", "t_tp", "s_ref", "s_tp", "s_pred")}

        for m in ("t", "s"):
            ans = col[f"{m}_answered"] > 0
            c[:, ix[f"{m}_missing"]] = ~ans
            top1 = col[f"{m}_top1"]
            wrong = col[f"{m}_wrong"]
            c[:, ix[f"{m}_answers"]] = ans
            c[:, ix[f"{m}_checkable"]] = ans & (col[f"{m}_checkable"] > 0)
            c[:, ix[f"{m}_fact_err"]] = ans & (wrong > 0)
            c[:, ix[f"{m}_grounded"]] = ans & (col[f"{m}_correct_claims"] > 0) & ~(col["retrieval_miss"] > 0)
            scored = ans & has_ref
            intent = col[f"{m}_intent"].astype(np.int64)
            correct = scored & (intent == ref)
            c[:, ix[f"{m}_ref"]] = scored
            c[:, ix[f"{m}_correct"]] = correct
            b = np.minimum((top1 * cfg.ece_bins).astype(np.int64), cfg.ece_bins - 1)
            start_n, start_conf, start_ok = (ix[f"{m}_bin_n.0"], ix[f"{m}_bin_conf.0"],
                                             ix[f"{m}_bin_correct.0"])
            r = rows_all[scored]
            c[r, start_n + b[scored]] = 1.0
            c[r, start_conf + b[scored]] = top1[scored]
            c[r, start_ok + b[scored]] = correct[scored]
            for prefix, value in ((f"{m}_ref", 1.0), (f"{m}_tp", correct)):
                target = risky_cols[prefix][ref]
                hit = scored & (target >= 0)
                c[rows_all[hit], target[hit]] = value if isinstance(value, float) else value[hit]
            if m == "t":
                c[:, ix["t_conf_fact_err"]] = ans & (wrong > 0) & (top1 >= cfg.confident_threshold)
            else:
                unknown = col["s_unknown"]
                c[:, ix["s_wrong_claims"]] = np.where(ans, wrong, 0.0)
                c[:, ix["copied_claims"]] = np.where(ans, col["copied"], 0.0)
                c[:, ix["s_halluc"]] = ans & ((wrong > 0) | (unknown > 0))
                c[:, ix["fallback"]] = ans & (col["fallback"] > 0)
                c[:, ix["fallback_naive"]] = ans & (col["fallback_naive"] > 0)
                c[:, ix["brier_sum"]] = col["brier"]
                c[:, ix["s_conf_err"]] = scored & ~correct & (top1 >= cfg.confident_threshold)
                target = risky_cols["s_pred"][intent]
                hit = scored & (target >= 0)
                c[rows_all[hit], target[hit]] = 1.0

        t_ans, s_ans = col["t_answered"] > 0, col["s_answered"] > 0
        t_int = col["t_intent"]
        both = t_ans & s_ans
        c[:, ix["both_answered"]] = both
        c[:, ix["match"]] = both & (t_int == col["s_intent"])
        replica = t_ans & (col["r_answered"] > 0)
        c[:, ix["replica_both"]] = replica
        c[:, ix["replica_agree"]] = replica & (t_int == col["r_intent"])
        c[:, ix["pref_n"]] = col["pref_n"]
        c[:, ix["pref_score"]] = col["pref_score"]
        if signs is not None:
            c *= np.asarray(signs, dtype=np.float64)[:, None]
        return c, keys
