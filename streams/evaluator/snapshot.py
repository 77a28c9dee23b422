"""A partition's evaluator state as bytes (msgpack + zstd), and back.

Written with every checkpoint, in the same Kafka transaction as the input offsets it
covers, so a restarted evaluator resumes exactly where the state says it was. zstd at
level 1 compresses a snapshot ~3x faster than zlib did, and smaller; snapshots written
with zlib (before) still load.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from typing import Any

import cramjam
import msgspec

from evaluators.evaluation_codec import from_record, to_record
from evaluators.window_state import WindowState
from schemas.fastpath import Label, ModelResponse, ShadowRequest
from streams.evaluator.partition import Handle, PartitionState, Pending


class PendingSnap(msgspec.Struct):
    request: ShadowRequest | None
    teacher: ModelResponse | None
    student: ModelResponse | None
    teacher_replica: ModelResponse | None
    labels: list[Label]
    due: float | None = None
    offset: int = -1


class HandleSnap(msgspec.Struct):
    record: dict[str, Any]
    labels: list[Label]
    revision: int
    meta: dict[str, Any]


class WindowsSnap(msgspec.Struct):
    size: int
    max_event_ts: float
    late_events: int
    open: dict[int, dict[str, dict[str, Any]]]
    retained: dict[int, dict[str, dict[str, Any]]]


class PartitionSnap(msgspec.Struct):
    offsets: dict[str, int]
    pending: dict[str, PendingSnap]
    handles: dict[str, msgspec.Raw]
    """Each a packed HandleSnap, cached on the handle between checkpoints."""
    seen: dict[str, float]
    windows: list[WindowsSnap]
    counters: dict[str, int]


_decoder = msgspec.msgpack.Decoder(PartitionSnap)
_handle_decoder = msgspec.msgpack.Decoder(HandleSnap)


def pack_handle(h: Handle) -> None:
    """Encode a changed handle now, with the row record its evaluation was just emitted with
    (``Handle.record``, if it is still the current evaluation's) instead of a second one."""
    if h.packed is None:
        cached = h.record
        record = cached[1] if cached is not None and cached[0] is h.evaluation else to_record(h.evaluation)
        h.packed = msgspec.msgpack.encode(HandleSnap(record, h.labels, h.revision, h.meta))
    h.record = None


def _packed(h: Handle) -> msgspec.Raw:
    if h.packed is None:
        pack_handle(h)
    return msgspec.Raw(h.packed)


def dump(state: PartitionState, offsets: dict[str, int]) -> bytes:
    snap = PartitionSnap(
        offsets=dict(offsets),
        pending={rid: PendingSnap(p.request, p.teacher, p.student, p.teacher_replica, p.labels, p.due, p.offset)
                 for rid, p in state.pending.items()},
        handles={rid: _packed(h) for rid, h in state.handles.items()},
        seen=dict(state.seen),
        windows=[
            WindowsSnap(size, w.max_event_ts, w.late_events, _dump_windows(w.open),
                        _dump_windows(state.retained[size]))
            for size, w in state.windows.items()
        ],
        counters=dict(state.counters),
    )
    return bytes(cramjam.zstd.compress(msgspec.msgpack.encode(snap), 1))


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _decompress(blob: bytes) -> bytes:
    if blob[:4] == ZSTD_MAGIC:
        return bytes(cramjam.zstd.decompress(blob))
    return zlib.decompress(blob)  # a snapshot from before zstd


def load(blob: bytes, state: PartitionState) -> dict[str, int]:
    """Fill a fresh PartitionState from a snapshot; return the input offsets it covers."""
    snap = _decoder.decode(_decompress(blob))
    layout = state.layout
    state.pending = {rid: Pending(p.request, p.teacher, p.student, p.teacher_replica, list(p.labels), p.due, p.offset)
                     for rid, p in snap.pending.items()}
    state.handles = OrderedDict()  # evicted oldest first (see PartitionState)
    for rid, raw in snap.handles.items():
        h = _handle_decoder.decode(raw)
        ev = from_record(h.record)
        state.handles[rid] = Handle(ev, list(h.labels), h.revision, dict(h.meta), bytes(raw))
    state.seen = OrderedDict(snap.seen)
    for w in snap.windows:
        windows = state.windows.get(w.size)
        if windows is None:
            continue  # window sizes changed by configuration: start that size afresh
        windows.restore(w.max_event_ts, w.late_events, _load_windows(w.open, layout))
        state.retained[w.size] = _load_windows(w.retained, layout)
    state.counters.update(snap.counters)
    return dict(snap.offsets)


def _dump_windows(windows: dict[int, dict[str, WindowState]]) -> dict[int, dict[str, dict[str, Any]]]:
    return {start: {k: s.to_dict() for k, s in states.items()} for start, states in windows.items()}


def _load_windows(data: dict[int, dict[str, dict[str, Any]]], layout: Any) -> dict[int, dict[str, WindowState]]:
    return {int(start): {k: WindowState.from_dict(d, layout) for k, d in states.items()}
            for start, states in data.items()}
