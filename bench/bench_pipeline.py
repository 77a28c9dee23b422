"""Benchmark: the streaming monitor end to end on this machine.

    python -m bench.bench_pipeline --pairs 200000 [--json]

Writes a synthetic log (cached), publishes it with ``replay`` into fresh topics, then starts
``distillwatch run`` and measures how long the evaluator and the sink take to store every
request and settle: sustained pairs/s, and the monitor's peak RSS (VmHWM). The broker runs on
the same 2 cores, as it does in CI.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.bench_evaluate import make_log
from tests.integration.pipeline_support import Cluster, metric, sql


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(pairs: int, cache: Path, bootstrap: str) -> dict[str, float]:
    log = make_log(cache / f"evaluate-{pairs}.jsonl", pairs)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), bootstrap)
        assert cluster.cli("init").returncode == 0
        started = time.monotonic()
        assert cluster.cli("replay", "--quiet", str(log), timeout=3600).returncode == 0
        replay_s = time.monotonic() - started
        proc, port = cluster.start_monitor()
        started = time.monotonic()
        first = None
        while True:
            time.sleep(1)
            try:
                done = sql(port, "SELECT count() FROM distillwatch.shadow_evaluations FINAL")[0][0]
                idle = metric(port, "distillwatch_idle") == 1.0
            except OSError:
                continue
            if done and first is None:
                first = time.monotonic()
            if done >= pairs and idle:
                break
        elapsed = time.monotonic() - started
        rss = peak_rss_mb(proc.pid)
        cluster.stop_all()
    return {"pairs": pairs, "replay_s": round(replay_s, 1), "monitor_s": round(elapsed, 1),
            "pairs_per_s": round(pairs / elapsed), "monitor_peak_rss_mb": round(rss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "distillwatch" / "bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.pairs, args.cache, args.bootstrap)
    print(json.dumps(result) if args.json else "\n".join(f"{k:>20}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
