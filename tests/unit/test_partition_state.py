"""The streaming evaluator's per-partition state gives exactly what offline ``evaluate`` gives.

Messages of a synthetic log are delivered as Kafka would: split into co-partitioned
partitions by request id, each topic in order, topics interleaved at random, labels lagging
behind their requests. Window partials of all partitions are merged like the sink merges
them. Snapshots taken mid-stream and restored into fresh states change nothing.
"""

from __future__ import annotations

import random
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from evaluators.catalog import Catalog
from evaluators.config import EvalConfig
from evaluators.offline import LogSummary, evaluate_log
from evaluators.readout import window_rows
from evaluators.window_state import Layout, WindowState
from schemas.fastpath import parse_message
from simulator.traffic import TrafficConfig, World
from streams.evaluator import snapshot
from streams.evaluator.partition import Evaluated, PartitionState

CONFIG = EvalConfig()
LAYOUT = Layout(CONFIG)
SIZES = [60, 3600]
GRACE = 120.0
PARTS = 3
TOPIC_OF = {"request": "requests", "teacher": "teacher", "student": "student", "label": "labels"}


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    world = World(TrafficConfig(pairs=4000, rate_per_s=20, label_share=0.2, preference_share=0.2,
                                missing_response=0.03), seed=5)
    lines = list(world.lines())
    rng = random.Random(3)
    for i in sorted(rng.sample(range(len(lines)), 40), reverse=True):  # retried records
        if "request" in lines[i]:  # a copy a few lines later (an event-time jump past the grace
            lines.insert(i + rng.randint(1, 30), lines[i])  # would make lateness per partition)
    path = tmp_path_factory.mktemp("partition") / "log.jsonl"
    path.write_bytes(b"".join(orjson.dumps(ln) + b"\n" for ln in lines))
    return path, lines


def offline(path: Path, size: int) -> dict[tuple[int, str, str], float]:
    rows = evaluate_log(lambda: open(path, "rb"), CONFIG, size, GRACE, LogSummary())
    return {(r.window_start, r.slice, r.metric): r.value for r in rows}


def deliveries(lines: list[dict[str, Any]], seed: int | None) -> list[list[tuple[str, Any]]]:
    """``seed=None``: each partition's topics one after another (responses, requests, labels)."""
    """Per partition: messages in a Kafka-like order (each topic in order, topics interleaved)."""
    queues: dict[int, dict[str, list[tuple[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for line in lines:
        for key, kind in (("request", "request"), ("teacher", "response"), ("student", "response"),
                          ("label", "label")):
            if line.get(key) is None:
                continue
            rid = line[key]["request_id"]
            part = zlib.crc32(rid.encode()) % PARTS
            queues[part][TOPIC_OF[key]].append((kind, parse_message(kind, orjson.dumps(line[key]))))
    rng = random.Random(seed)
    out = []
    for part in range(PARTS):
        if seed is None:
            out.append([m for t in ("teacher", "student", "requests", "labels") for m in queues[part][t]])
            continue
        topics = {t: list(q) for t, q in queues[part].items()}
        order: list[tuple[str, Any]] = []
        while any(topics.values()):
            topic = rng.choice([t for t, q in topics.items() if q])
            take = rng.randint(1, 200)
            order += topics[topic][:take]
            del topics[topic][:take]
        out.append(order)
    return out


class Sink:
    """Keeps each partition's latest partial per window, as window_partials FINAL does."""

    def __init__(self) -> None:
        self.partials: dict[tuple[int, int], dict[int, dict[str, WindowState]]] = defaultdict(dict)

    def take(self, part: int, windows: list[Any]) -> None:
        for w in windows:  # serialise like the Kafka message, to include the round trip
            self.partials[(w.size, w.start)][part] = {
                k: WindowState.from_dict(orjson.loads(orjson.dumps(s.to_dict())), LAYOUT)
                for k, s in w.states.items()}

    def metrics(self, size: int) -> dict[tuple[int, str, str], float]:
        out = {}
        for (s, start), parts in self.partials.items():
            if s != size:
                continue
            merged: dict[str, WindowState] = {}
            for states in parts.values():
                for key, state in states.items():
                    merged.setdefault(key, WindowState.empty(LAYOUT)).merge(state)
            out.update({(r.window_start, r.slice, r.metric): r.value
                        for r in window_rows(start, size, merged, LAYOUT)})
        return out


def stream(lines: list[dict[str, Any]], seed: int | None, restore_every: int | None = None,
           advance_every: int = 97) -> Sink:
    catalog = Catalog()
    for line in lines:
        if "catalog" in line:
            catalog.apply(parse_message("catalog", orjson.dumps(line["catalog"])))
    sink = Sink()
    for part, messages in enumerate(deliveries(lines, seed)):
        state = PartitionState(CONFIG, LAYOUT, SIZES, GRACE, handle_horizon_s=100_000)
        for i, (kind, msg) in enumerate(messages, start=1):
            out: list[Evaluated] = []
            if kind == "request":
                state.on_request(msg, catalog, out)
            elif kind == "response":
                state.on_response(msg, catalog, out)
            else:
                state.on_label(msg, out)
            if i % advance_every == 0:
                sink.take(part, state.advance(catalog, out) + state.take_revised())
            if restore_every and i % restore_every == 0:
                fresh = PartitionState(CONFIG, LAYOUT, SIZES, GRACE, handle_horizon_s=100_000)
                snapshot.load(snapshot.dump(state, {}), fresh)
                state = fresh
        state.flush(catalog, [])
        sink.take(part, state.advance(catalog, []) + state.take_revised() + state.open_windows())
    return sink


def assert_same(got: dict[tuple[int, str, str], float], want: dict[tuple[int, str, str], float]) -> None:
    assert set(got) == set(want), (sorted(set(want) - set(got))[:5], sorted(set(got) - set(want))[:5])
    for key, value in want.items():
        tol = 1e-9 * max(1.0, abs(value))
        assert abs(got[key] - value) <= tol, (key, got[key], value)


@pytest.mark.parametrize("size", SIZES)
def test_stream_equals_offline(log: tuple[Path, list[dict[str, Any]]], size: int) -> None:
    path, lines = log
    assert_same(stream(lines, seed=1).metrics(size), offline(path, size))


def test_snapshots_restored_mid_stream_change_nothing(log: tuple[Path, list[dict[str, Any]]]) -> None:
    path, lines = log
    assert_same(stream(lines, seed=2, restore_every=1500).metrics(60), offline(path, 60))


@pytest.mark.parametrize("advance_every", [97, 1_000_000])
def test_labels_after_the_window_closed_revise_it(log: tuple[Path, list[dict[str, Any]]],
                                                  advance_every: int) -> None:
    """All labels delivered after everything else: windows close first, then get revised; or,
    with one big batch, the watermark passes them before they are emitted (still revised)."""
    path, lines = log
    assert_same(stream(lines, seed=None, advance_every=advance_every).metrics(60), offline(path, 60))
