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
