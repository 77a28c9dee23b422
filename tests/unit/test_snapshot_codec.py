"""Partition snapshots: a handle packed with the record its row was built from is the handle
packed from scratch, a snapshot restores the same state, and zlib snapshots written before
the switch to zstd still load."""

from __future__ import annotations

import zlib

import cramjam
import orjson

from evaluators.catalog import Catalog
from evaluators.config import EvalConfig
from evaluators.evaluation_codec import to_record
from evaluators.window_state import Layout
from schemas.fastpath import parse_message
from simulator.traffic import TrafficConfig, World
from streams.evaluator import snapshot
from streams.evaluator.outputs import RowBuilder, SamplingPolicy
from streams.evaluator.partition import Evaluated, PartitionState

CONFIG = EvalConfig()
LAYOUT = Layout(CONFIG)


def _fed_state(pack_with_rows: bool) -> PartitionState:
    """A partition fed 600 pairs with labels; emitted handles packed as the engine packs them
    (right after their rows) or left to the snapshot encoder."""
    state = PartitionState(CONFIG, LAYOUT, [60, 3600], 120.0, 1800.0)
    catalog = Catalog()
    rows = RowBuilder(CONFIG, b"k" * 32, SamplingPolicy(payload_share=0.5, example_share=0.5))
    world = World(TrafficConfig(pairs=600, rate_per_s=5, label_share=0.3, preference_share=0.3), seed=11)
    out: list[Evaluated] = []
    for line in world.lines():
        if "catalog" in line:
            catalog.apply(parse_message("catalog", orjson.dumps(line["catalog"])))
            continue
        if "label" in line:
            state.on_label(parse_message("label", orjson.dumps(line["label"])), out)
            continue
        state.on_request(parse_message("request", orjson.dumps(line["request"])), catalog, out)
        for role in ("teacher", "student"):
            state.on_response(parse_message("response", orjson.dumps(line[role])), catalog, out)
        state.advance(catalog, out)
        for item in out:
            rows.rows(item, 0)
            if pack_with_rows:
                snapshot.pack_handle(item.handle)
        out.clear()
    return state


def test_handles_packed_with_their_row_record_equal_handles_packed_from_scratch() -> None:
    eager, lazy = _fed_state(True), _fed_state(False)
    for h in lazy.handles.values():
        h.record = None  # the encoder must compute the record itself
    assert len(eager.handles) > 500
    assert all(h.record is None for h in eager.handles.values())  # nothing kept after packing
    assert snapshot._decompress(snapshot.dump(eager, {"x": 1})) == snapshot._decompress(snapshot.dump(lazy, {"x": 1}))


def test_snapshot_restores_the_state_and_old_zlib_snapshots_still_load() -> None:
    state = _fed_state(True)
    blob = snapshot.dump(state, {"shadow.requests": 42})
    assert blob[:4] == snapshot.ZSTD_MAGIC
    old_format = zlib.compress(bytes(cramjam.zstd.decompress(blob)), 1)
    for data in (blob, old_format):
        fresh = PartitionState(CONFIG, LAYOUT, [60, 3600], 120.0, 1800.0)
        assert snapshot.load(data, fresh) == {"shadow.requests": 42}
        assert fresh.handles.keys() == state.handles.keys()
        for rid, h in state.handles.items():
            assert to_record(fresh.handles[rid].evaluation) == to_record(h.evaluation)
            assert fresh.handles[rid].revision == h.revision
        assert fresh.seen == state.seen
        for size, windows in state.windows.items():
            assert fresh.windows[size].open == windows.open


def _same_state(a: PartitionState, b: PartitionState) -> None:
    assert list(a.handles) == list(b.handles)  # eviction order survives
    for rid, h in a.handles.items():
        other = b.handles[rid]
        assert to_record(other.evaluation) == to_record(h.evaluation)
        assert (other.revision, other.labels, other.meta) == (h.revision, h.labels, h.meta)
    assert list(a.seen.items()) == list(b.seen.items())
    for size, windows in a.windows.items():
        assert b.windows[size].open == windows.open
        assert b.retained[size] == a.retained[size]


def test_snapshots_that_reuse_unchanged_pieces_restore_the_state_at_each_checkpoint() -> None:
    """Checkpoints between which handles are added, labelled and evicted, and retained windows
    revised: each restores what a snapshot encoded from scratch restores."""
    state = PartitionState(CONFIG, LAYOUT, [60, 3600], 120.0, 1800.0, max_handles=600)
    catalog = Catalog()
    rows = RowBuilder(CONFIG, b"k" * 32, SamplingPolicy())
    world = World(TrafficConfig(pairs=1200, rate_per_s=2, label_share=0.3), seed=5)
    out: list[Evaluated] = []
    checkpoints = evicted = relabelled = revised_retained = 0
    held: list[bytes] = []  # labels applied ~230 s later, when their 60 s window is closed
    for i, line in enumerate(world.lines()):
        if len(held) > 150:
            state.on_label(parse_message("label", held.pop(0)), out)
            relabelled += len(out)
        if "catalog" in line:
            catalog.apply(parse_message("catalog", orjson.dumps(line["catalog"])))
        elif "label" in line:
            held.append(orjson.dumps(line["label"]))
        else:
            state.on_request(parse_message("request", orjson.dumps(line["request"])), catalog, out)
            for role in ("teacher", "student"):
                state.on_response(parse_message("response", orjson.dumps(line[role])), catalog, out)
            before = len(state.handles)
            state.advance(catalog, out)
            evicted += before > len(state.handles)
        for item in out:
            rows.rows(item, 0)
            snapshot.pack_handle(item.handle)
        out.clear()
        if i % 97 == 96:
            revised_retained += bool(state.retained_changed)
            reused = snapshot.load(snapshot.dump(state, {"t": i}), fresh := PartitionState(
                CONFIG, LAYOUT, [60, 3600], 120.0, 1800.0, max_handles=600))
            assert reused == {"t": i}
            _same_state(state, fresh)
            cache, state.snapshot_cache = state.snapshot_cache, None
            scratch = PartitionState(CONFIG, LAYOUT, [60, 3600], 120.0, 1800.0, max_handles=600)
            snapshot.load(snapshot.dump(state, {"t": i}), scratch)
            _same_state(scratch, fresh)
            state.snapshot_cache = cache
            checkpoints += 1
    assert checkpoints >= 10 and evicted > 100 and relabelled > 30 and revised_retained >= 3


def test_handles_packed_by_name_before_values_still_load() -> None:
    """Snapshots written before handles held to_values lists kept the record by field name."""
    import msgspec

    state = _fed_state(True)
    want = {rid: (to_record(h.evaluation), h.ts) for rid, h in state.handles.items()}
    for h in state.handles.values():  # re-pack every handle as the earlier code did
        ev = h.evaluation
        h.packed = msgspec.msgpack.encode({"record": to_record(ev), "labels": h.labels,
                                           "revision": h.revision, "meta": h.meta})
        h.release()
    state.snapshot_cache = None
    fresh = PartitionState(CONFIG, LAYOUT, [60, 3600], 120.0, 1800.0)
    snapshot.load(snapshot.dump(state, {"x": 1}), fresh)
    assert list(fresh.handles) == list(want)
    for rid, (record, ts) in want.items():
        assert (to_record(fresh.handles[rid].evaluation), fresh.handles[rid].ts) == (record, ts)
