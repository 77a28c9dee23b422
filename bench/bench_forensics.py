"""Benchmark: each saved forensic query over 10M ``shadow_evaluations`` rows, embedded engine.

    python -m bench.bench_forensics --rows 10000000 [--repeat 5] [--json]

Generates the rows inside ClickHouse (``numbers()`` and hashed draws, see
bench/forensics_data.py) once into a cached store, then times every saved query through the
same read-only path as ``distillwatch forensics`` (text guard, ``readonly=1``, row and time
limits) over two periods: the whole span (every row in scope) and its last 6 hours, plus the
report's data collection. It does so twice: as inserted (13 parts, the 1 % re-emitted rows in
parts that overlap all others, so FINAL has to merge) and after ``OPTIMIZE … FINAL`` (one part
per day, as background merges leave older data; FINAL then costs nothing). Target: each
query ≤ 1 s. Wall times on a shared machine are noisy; CPU seconds (all engine threads of the
process) and the 1-minute load average when each query started are reported beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.forensics_data import World, fill
from schemas.errors import DistillwatchError
from streams import forensics
from streams.clickhouse import Store, open_store
from streams.migrations import available, migrate
from streams.report.queries import collect
from streams.sql import check_read_only, read_settings

TARGET_S = 1.0


class _Result:
    def __init__(self, result: Any) -> None:
        self.columns, self.rows, self.via = list(result.column_names), result.result_rows, "store"


def prepare(path: Path, rows: int, span_h: int) -> Store:
    """Open the cached store as inserted, generating it when missing, merged or of another size."""
    marker = path / "bench.json"
    want = {"rows": rows, "span_h": span_h, "merged": False, "schema": available()[-1].version}
    if not marker.exists() or json.loads(marker.read_text()) != want:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        store = open_store(f"chdb://{path / 'ch'}", owner="bench_forensics")
        migrate(store)
        start = datetime.fromtimestamp((int(time.time()) // 3600 - span_h) * 3600, UTC)
        began = time.perf_counter()
        fill(store, World(start, span_h * 3600, rows))
        print(f"generated {rows:,} rows in {time.perf_counter() - began:.1f} s", flush=True)
        marker.write_text(json.dumps(want))
        return store
    return open_store(f"chdb://{path / 'ch'}", owner="bench_forensics")


def timed(fn: Any, repeat: int) -> tuple[list[float], list[float], Any]:
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        c, t = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return walls, cpus, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--span-hours", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "distillwatch" / "bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    path = args.cache / f"forensics-{args.rows}-{args.span_hours}h"
    store = prepare(path, args.rows, args.span_hours)
    summary: dict[str, Any] = {"rows": args.rows, "states": []}
    try:
        for state in ("as inserted", "merged"):
            if state == "merged":
                began = time.perf_counter()
                store.command("OPTIMIZE TABLE distillwatch.shadow_evaluations FINAL")
                marker = json.loads((path / "bench.json").read_text())
                (path / "bench.json").write_text(json.dumps(marker | {"merged": True}))
                if not args.json:
                    print(f"OPTIMIZE FINAL took {time.perf_counter() - began:.1f} s", flush=True)
            summary["states"].append(run_state(store, state, args))
    finally:
        store.close()
    if args.json:
        print(json.dumps(summary, indent=2))


def run_state(store: Store, state: str, args: argparse.Namespace) -> dict[str, Any]:
    (lo, hi, n), = store.query(
        "SELECT min(ts), max(ts), count() FROM distillwatch.shadow_evaluations FINAL").result_rows
    lo, hi = lo.replace(tzinfo=UTC), hi.replace(tzinfo=UTC) + timedelta(milliseconds=1)
    parts = store.query("SELECT count() FROM system.parts WHERE active AND database = 'distillwatch' "
                        "AND table = 'shadow_evaluations'").result_rows[0][0]
    if not args.json:
        print(f"-- {state}: {n:,} requests (FINAL), {parts} active parts", flush=True)

    def runner(sql: str, params: dict[str, Any]) -> _Result:
        return _Result(store.query(check_read_only(sql), parameters=params, settings=read_settings(10_000)))

    results = []
    for period, since in (("all rows", lo), ("last 6 h", hi - timedelta(hours=6))):
        scope = forensics.Scope(since, hi, limit=100)
        for name in forensics.SAVED:
            load = os.getloadavg()[0]
            try:
                walls, cpus, out = timed(lambda n=name, s=scope: forensics.run(n, s, runner), args.repeat)
            except DistillwatchError as exc:  # e.g. the profile's 30 s limit on a saturated machine
                results.append({"query": name, "period": period, "error": str(exc)[:200], "load": load})
                if not args.json:
                    print(f"{period:9s} {name:17s} FAILED: {str(exc)[:120]}  (load {load:.1f})", flush=True)
                continue
            r = {"query": name, "period": period, "wall_median_s": round(statistics.median(walls), 3),
                 "wall_min_s": round(min(walls), 3), "cpu_median_s": round(statistics.median(cpus), 3),
                 "rows": len(out.rows), "target_met": statistics.median(walls) <= TARGET_S, "load": load}
            results.append(r)
            if not args.json:
                print(f"{period:9s} {name:17s} wall median {r['wall_median_s']:6.3f} s (min {r['wall_min_s']:.3f})"
                      f"  cpu {r['cpu_median_s']:6.3f} s  rows {r['rows']:5d}  load {load:4.1f}  "
                      f"{'ok' if r['target_met'] else 'OVER 1 s'}", flush=True)
    walls, cpus, _ = timed(lambda: collect(runner, forensics.Scope(lo, hi), [60, 3600]), max(1, args.repeat // 2))
    out = {"state": state, "requests": n, "active_parts": parts, "queries": results,
           "report_collect_wall_s": round(statistics.median(walls), 3),
           "report_collect_cpu_s": round(statistics.median(cpus), 3)}
    if not args.json:
        print(f"report data (all rows): wall {out['report_collect_wall_s']} s, cpu {out['report_collect_cpu_s']} s",
              flush=True)
    return out

if __name__ == "__main__":
    main()
