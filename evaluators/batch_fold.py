"""Folding many requests into their slices' states at once.

Adding one request to each of its ~10 slice states costs ~3 µs a slice in Python. A window
instead buffers its requests (their evaluations, or ready counter rows) and folds them
together: the counter rows of the batch are computed column by column
(``evaluators.columnar``), the counters of every slice are one product, ``incidence (slices ×
requests) @ counts (requests × counters)``, and the sketch keys of every (slice, key) pair are
counted with one ``np.bincount``. Counters are sums, so the result equals one-by-one addition
(integer counts exactly; float sums up to rounding in the order of addition).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evaluators.columnar import ColumnarCounts
from evaluators.request import RequestEvaluation
from evaluators.window_state import NO_VALUE, ZERO_BUCKET, Contribution, Layout, WindowState

MAX_COMBOS = 1 << 16
"""Distinct slice lists remembered by a SliceIndex before it starts over (bounds memory)."""


class SliceIndex:
    """Slice names and the distinct slice lists requests come with, as small integers.

    Requests of one window share few slice lists (a cached list per combination of slice
    attributes), so a batch maps each list to an id once and expands the ids to (slice,
    request) memberships with numpy instead of a Python loop over every membership.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.names: list[str] = []
        self._name_ids: dict[str, int] = {}
        self._combo_ids: dict[tuple[str, ...], int] = {}
        self._rows: list[list[int]] = []
        self._table = np.full((0, 1), -1, dtype=np.int64)
        self._table_rows = 0

    def combos(self, slice_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """Id of each slice list (registered on first sight)."""
        if len(self._combo_ids) > MAX_COMBOS:
            self._reset()
        ids = self._combo_ids
        out = []
        for slices in slice_lists:
            key = slices if type(slices) is tuple else tuple(slices)
            cid = ids.get(key)
            if cid is None:
                cid = ids[key] = len(self._rows)
                names = self._name_ids
                # a name listed twice (a one-key cross) is still one membership
                self._rows.append([names.setdefault(s, len(names)) for s in dict.fromkeys(key)])
            out.append(cid)
        if len(self.names) < len(self._name_ids):
            self.names = list(self._name_ids)
        return np.asarray(out, dtype=np.int64)

    def table(self) -> np.ndarray:
        """(combos × longest list) slice ids, padded with -1 (rows added since last call)."""
        done, rows = self._table_rows, self._rows
        if done < len(rows):
            new = rows[done:]
            width = max(self._table.shape[1], max(len(r) for r in new))
            if width > self._table.shape[1]:
                grown = np.full((done, width), -1, dtype=np.int64)
                grown[:, : self._table.shape[1]] = self._table
                self._table = grown
            block = np.full((len(new), width), -1, dtype=np.int64)
            for i, row in enumerate(new):
                block[i, : len(row)] = row
            self._table = np.concatenate([self._table, block])
            self._table_rows = len(rows)
        return self._table


class Batch:
    """Up to ``capacity`` requests of one window: evaluations or counter rows, with slices."""

    __slots__ = ("capacity", "evs", "ev_rows", "ev_signs", "fixed", "fixed_rows", "slices", "n")

    def __init__(self, capacity: int, layout: Layout | None = None) -> None:
        self.capacity = capacity
        self.evs: list[RequestEvaluation] = []
        self.ev_rows: list[int] = []
        self.ev_signs: list[int] = []
        self.fixed: list[Contribution] = []
        self.fixed_rows: list[int] = []
        self.slices: list[Sequence[str]] = []
        self.n = 0

    @property
    def full(self) -> bool:
        return self.n >= self.capacity

    def append(self, slices: Sequence[str], contrib: Contribution) -> None:
        """A request whose counter row is already computed."""
        self.fixed.append(contrib)
        self.fixed_rows.append(self.n)
        self.slices.append(slices)
        self.n += 1

    def append_evaluation(self, slices: Sequence[str], ev: RequestEvaluation, sign: int = 1) -> None:
        """A request whose counter row is computed when the batch is folded."""
        self.evs.append(ev)
        self.ev_rows.append(self.n)
        self.ev_signs.append(sign)
        self.slices.append(slices)
        self.n += 1

    def rows(self, columnar: ColumnarCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(counts n × size, sketch keys n × 3, signs n) of every request, in order."""
        if not self.fixed:
            counts, keys = columnar.rows(self.evs, self.ev_signs)
            return counts, keys, np.asarray(self.ev_signs, dtype=np.int64)
        n = self.n
        counts = np.empty((n, columnar.layout.size))
        keys = np.empty((n, 3), dtype=np.int64)
        signs = np.empty(n, dtype=np.int64)
        if self.evs:
            c, k = columnar.rows(self.evs, self.ev_signs)
            counts[self.ev_rows], keys[self.ev_rows], signs[self.ev_rows] = c, k, self.ev_signs
        for row, contrib in zip(self.fixed_rows, self.fixed, strict=True):
            counts[row], keys[row], signs[row] = contrib.counts, contrib.keys, contrib.sign
        return counts, keys, signs


def fold(states: dict[str, WindowState], batch: Batch, layout: Layout,
         columnar: ColumnarCounts | None = None, index: SliceIndex | None = None,
         pending: PendingKeys | None = None) -> None:
    """Add every request of ``batch`` to the state of each of its slices (creating states).

    With ``pending``, the sketch keys are collected there and reach the states' sketches when
    it is flushed (counters are added at once either way).
    """
    n = batch.n
    if n == 0:
        return
    columnar = columnar if columnar is not None else ColumnarCounts(layout)
    index = index if index is not None else SliceIndex()
    counts, keys, signs = batch.rows(columnar)

    # (slice, request) memberships: request rows in order, each request's slices in order
    combo_ids = index.combos(batch.slices)
    members = index.table()[combo_ids]
    present = members >= 0
    m_global = members[present]
    m_row = np.nonzero(present)[0]
    # local slice ids in order of first appearance (the order states are created in);
    # global ids are small, so first positions are found densely instead of by sorting
    names = index.names
    n_members = len(m_global)
    first = np.full(len(names), n_members, dtype=np.int64)
    np.minimum.at(first, m_global, np.arange(n_members))
    used = np.flatnonzero(first < n_members)
    order = used[np.argsort(first[used], kind="stable")]
    local = np.empty(len(names), dtype=np.int64)
    local[order] = np.arange(len(order))
    m_slice = local[m_global]

    incidence = np.zeros((len(order), n))
    incidence[m_slice, m_row] = 1.0
    sums = incidence @ counts

    targets = []
    for gid in order.tolist():
        name = names[gid]
        state = states.get(name)
        if state is None:
            state = states[name] = WindowState.empty(layout)
        targets.append(state)
    for state, row in zip(targets, sums, strict=True):
        state.counts += row

    all_added = bool((signs > 0).all())
    for col in range(3):
        column = keys[m_row, col]
        present_k = column != NO_VALUE
        if not present_k.any():
            continue
        weights = None if all_added else signs[m_row[present_k]]
        cells = _key_totals(m_slice[present_k], column[present_k], weights, len(order))
        if pending is None:
            _add_keys(targets, col, *cells)
        else:
            pending.add(targets, col, *cells)


class PendingKeys:
    """Sketch keys of one window's folded batches, not yet added to the sketches' dicts.

    Adding a (slice, key) total to a sketch is a few Python operations, ~5 per request when
    done per batch. A window's batches repeat most of their (slice, key) cells, so the cells
    of many batches are merged with numpy first and each distinct cell is added once.
    """

    MAX_CELLS = 200_000
    """Cells held before they are merged and added (bounds memory: ~5 MB)."""

    def __init__(self) -> None:
        self._parts: list[tuple[list[WindowState], int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.cells = 0

    def add(self, targets: list[WindowState], col: int, slots: np.ndarray, keys: np.ndarray,
            totals: np.ndarray) -> None:
        self._parts.append((targets, col, slots, keys, totals))
        self.cells += len(slots)
        if self.cells > self.MAX_CELLS:
            self.flush()

    def flush(self) -> None:
        """Add every held cell to its sketch."""
        if not self._parts:
            return
        slot_of: dict[int, int] = {}
        states: list[WindowState] = []
        columns: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[], [], []]
        for targets, col, slots, keys, totals in self._parts:
            lut = []
            for state in targets:
                slot = slot_of.get(id(state))
                if slot is None:
                    slot = slot_of[id(state)] = len(states)
                    states.append(state)
                lut.append(slot)
            columns[col].append((np.asarray(lut, dtype=np.int64)[slots], keys, totals))
        self._parts, self.cells = [], 0
        for col, parts in enumerate(columns):
            if parts:
                slots = np.concatenate([p[0] for p in parts])
                keys = np.concatenate([p[1] for p in parts])
                totals = np.concatenate([p[2] for p in parts]).astype(np.float64)
                _add_keys(states, col, *_key_totals(slots, keys, totals, len(states)))


DENSE_CELLS = 1 << 22
"""Largest (slices × key range) grid counted densely; wider spreads are sorted instead."""


def _key_totals(slots: np.ndarray, keys: np.ndarray, weights: np.ndarray | None, n_slots: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (slot, key) pairs with their total weight (zero totals dropped), by slot.

    Keys of one batch span a few hundred buckets, so a dense ``bincount`` over (slot, key)
    cells replaces a sort; ZERO_BUCKET is cell 0 of each slot.
    """
    zero = keys == ZERO_BUCKET
    real = keys[~zero]
    base = int(real.min()) - 1 if len(real) else 0
    width = (int(real.max()) - base + 1) if len(real) else 1
    pos = np.where(zero, 0, keys - base)
    if n_slots * width <= DENSE_CELLS:
        dense = np.bincount(slots * width + pos, weights=weights, minlength=n_slots * width)
        cells = np.flatnonzero(dense)
        totals = dense[cells]
    else:
        cells, inverse = np.unique(slots * width + pos, return_inverse=True)
        totals = np.bincount(inverse.reshape(-1), weights=weights)
        kept = totals != 0
        cells, totals = cells[kept], totals[kept]
    raw = cells % width
    return cells // width, np.where(raw == 0, ZERO_BUCKET, raw + base), totals.astype(np.int64)


def _add_keys(targets: list[WindowState], col: int, slots: np.ndarray, keys: np.ndarray,
              totals: np.ndarray) -> None:
    """Add each (slice, key) total to its slice's sketch: one tight loop, no per-key calls."""
    current = -1
    bins: dict[int, int] = {}
    sketch = None
    zero_key = ZERO_BUCKET
    for slot, key, total in zip(slots.tolist(), keys.tolist(), totals.tolist(), strict=True):
        if slot != current:
            current = slot
            sketch = targets[slot].sketches()[col]
            bins = sketch.bins
        assert sketch is not None
        sketch.count += total
        if key == zero_key:
            sketch.zeros += total
            continue
        new = bins.get(key, 0) + total
        if new:
            bins[key] = new
        else:
            del bins[key]
