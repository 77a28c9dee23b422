"""``distillwatch bench``: end to end, the ceilings, the peer and forensic queries in one run."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from distillwatch.cli.context import console, console_err, fail, settings_of


def bench(
    ctx: typer.Context,
    pairs: int = typer.Option(1_000_000, "--pairs", "-n", min=100, help="Pairs replayed end to end."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with every figure."),
    peer_pairs: int = typer.Option(100_000, "--peer-pairs", min=100, help="Pairs for the Evidently comparison."),
    no_peer: bool = typer.Option(False, "--no-peer", help="Skip the Evidently comparison."),
    forensics_rows: int = typer.Option(10_000_000, "--forensics-rows", min=1000,
                                       help="Rows for the forensic query benchmark."),
    no_forensics: bool = typer.Option(False, "--no-forensics", help="Skip the forensic query benchmark."),
    latency_pairs: int = typer.Option(None, "--latency-pairs", min=10,
                                      help="Pairs of the paced latency phase [default: pairs/20, 200..20,000]."),
    cache: Path = typer.Option(Path.home() / ".cache" / "distillwatch" / "bench", "--cache",
                               help="Where generated logs are kept between runs."),
    keep: bool = typer.Option(False, "--keep", help="Keep the run's data directory (ClickHouse, logs)."),
) -> None:
    """Measure the pipeline on this machine: pairs/s, latency, RSS, lag, ceilings, peer, forensics."""
    settings = settings_of(ctx)
    try:
        from bench.suite import run_all
    except ImportError as exc:  # bench/ ships with the repository, not with an installed package
        fail(f"the benchmark scripts (bench/) are not importable: {exc}; run from a clone with PYTHONPATH set")
    progress = (lambda msg: console_err.print(msg, markup=False, highlight=False))
    broker = _local_broker(settings, progress)
    try:
        result = run_all(pairs, settings, cache, peer_pairs=peer_pairs, peer=not no_peer,
                         forensics_rows=forensics_rows, forensics=not no_forensics,
                         latency_pairs=latency_pairs, keep=keep, progress=progress)
    except (RuntimeError, TimeoutError, OSError) as exc:
        fail(f"benchmark failed: {' '.join(str(exc).split())[:500]}")
    finally:
        if broker is not None:
            progress("stopping the Kafka broker the benchmark started")
            broker.stop()
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    _print(result)


def _local_broker(settings: Any, progress: Callable[[str], None]) -> Any:
    """Start the local broker when the configured one is the local address and nothing
    serves there (a fresh clone); return it so it is stopped afterwards, else None."""
    from streams.local_kafka import KafkaSetupError, configured_local_broker, produce_consume_ok

    broker = configured_local_broker(settings)
    if broker is None:
        return None  # a broker the user runs: never start one in its place
    if produce_consume_ok(settings.kafka.bootstrap_servers, timeout_s=5):
        return None
    progress("no Kafka broker at the local address: starting one (first run downloads the jars)")
    try:
        broker.start(log=progress, reuse_existing=True)
    except KafkaSetupError as exc:
        fail(f"could not start the local Kafka broker: {exc}")
    return broker


def _speed(m: dict[str, Any], key: str) -> str:
    speed = m.get(key) or {}
    py = speed.get("python_ms") or {}
    return (f"{py.get('best')}/{py.get('median')} ms, numpy sort {speed.get('numpy_sort_ms')} ms, "
            f"two processes {speed.get('two_process_speedup')}x")


def _cpu(phase: dict[str, Any]) -> str:
    cpu = phase.get("cpu")
    if not cpu:
        return "not measured"
    us = cpu["us_per_pair"]
    parts = ", ".join(f"{name} {value}" for name, value in us.items() if name != "total" and value is not None)
    ceiling = cpu["ceiling_pairs_per_s"]
    text = f"{us['total']} µs a pair ({parts})"
    if ceiling["all_cores"] and ceiling["evaluator_core"]:
        text += (f"; at most {ceiling['all_cores']:,} pairs/s on all cores, "
                 f"{ceiling['evaluator_core']:,} on the evaluator's one")
    return text


def _print(r: dict[str, Any]) -> None:
    e, c, p, f = r["end_to_end"], r["ceilings"], r["peer"], r["forensics"]
    m = r["machine"]
    lines = [
        f"machine: {m['cpus']} cores, {m['memory_mb']} MB, load {m['load_average_1m']} → {m['load_average_1m_end']}",
        f"machine speed, start → end: Python loop {_speed(m, 'speed_start')} → {_speed(m, 'speed_end')} "
        f"(fastest/median round; lower is faster), CPU steal {m.get('cpu_steal')}",
        f"end to end: {e['pairs']:,} pairs in {e['elapsed_s']} s = {e['pairs_per_s']:,} pairs/s "
        f"(replay {e['replay_s']} s); lag at end {e['lag_at_end_records']}; evaluator peak RSS "
        f"{e['evaluator_peak_rss_mb']} MB"
        + (f" (monitor: sink, ClickHouse, API {e['monitor_peak_rss_mb']} MB)" if "monitor_peak_rss_mb" in e else ""),
        f"backlog (published first, then worked off): {e['backlog']['pairs']:,} pairs in "
        f"{e['backlog']['elapsed_s']} s = {e['backlog']['pairs_per_s']:,} pairs/s; evaluator peak RSS "
        f"{e['backlog']['evaluator_peak_rss_mb']} MB",
        f"CPU, live: {_cpu(e)}",
        f"CPU, backlog: {_cpu(e['backlog'])}",
        f"latency, paced at {e['latency']['rate_pairs_per_s']} pairs/s: p50 {e['latency']['p50_s']} s, "
        f"p95 {e['latency']['p95_s']} s (full-speed backlog: p50 {e['latency_backlog']['p50_s']} s)",
        f"ceilings: plain consumer {c['plain_consumer']['pairs_per_s']:,} pairs/s, offline evaluate "
        f"{c['offline_evaluate']['pairs_per_s']:,} pairs/s; end to end = "
        f"{c['ratios']['end_to_end_over_consumer']:.2f}x consumer, {c['ratios']['end_to_end_over_offline']:.2f}x offline",
    ]
    if p.get("available"):
        lines.append(f"peer: Evidently {p['reports']} reports on {p['rows']:,} pairs {p['report_s']} s vs "
                     f"distillwatch evaluate {p['distillwatch_evaluate_s']} s: "
                     f"{p['time_ratio_peer_over_distillwatch']}x")
    else:
        lines.append(f"peer: not measured ({p.get('reason')})")
    if f.get("available"):
        lines.append(f"forensics: {f['rows']:,} rows, slowest saved query {f['max_query_wall_median_s']} s (median)")
    else:
        lines.append(f"forensics: not measured ({f.get('reason')})")
    for name, t in r["targets"].items():
        mark = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(f"target {name}: {t.get('value')} (target {t.get('target', 0)}) {mark}")
    for line in lines:
        console.print(line, markup=False, highlight=False)
