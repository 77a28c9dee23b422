"""Benchmark: feeding the drift detectors, as the alerter does once per judged window.

    python -m bench.bench_drift [--windows 16] [--requests 30000] [--json]

Each window's requests (slice map, student_correct, fallback, student top-1) go through
``DriftWatch.step``: ADWIN and Page-Hinkley per request on every watched slice ("all" and
each of 4 attributes), KSWIN once per window. Reported: µs a request, with the slice maps
shared per distinct slice (as ``Alerter._requests`` reads them) and with a dict of their own
per request. Seeded: the same requests every run; the drift events are counted as a check.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from streams.alerting.drift_watch import DriftWatch

REGIONS, DEVICES, LANGUAGES, TIERS = ("eu", "us", "jp", "br"), ("ios", "android", "web"), \
    ("en", "ja", "pt", "es"), ("free", "pro")


def windows(count: int, size: int, seed: int = 7) -> list[list[tuple[dict[str, str], int | None, int, float]]]:
    """Requests of ``count`` windows; errors and fallbacks rise by 10 points after window 10."""
    rng = random.Random(seed)
    maps = [{"region": r, "device": d, "language": la, "tier": t}
            for r in REGIONS for d in DEVICES for la in LANGUAGES for t in TIERS]
    out = []
    for i in range(count):
        shift = 0.1 if i > 10 else 0.0
        window = []
        for _ in range(size):
            m = rng.choice(maps)
            p = rng.random()
            window.append((m, None if p < 0.05 else int(p > 0.2 + shift), int(rng.random() < 0.1 + shift),
                           rng.random()))
        out.append(window)
    return out


def run(data: list[list[Any]], shared: bool) -> dict[str, float]:
    feeds = data if shared else [[(dict(m), c, f, t) for m, c, f, t in w] for w in data]
    watch = DriftWatch(5)
    started = time.perf_counter()
    events = sum(len(watch.step(i * 60, 60, w)) for i, w in enumerate(feeds))
    elapsed = time.perf_counter() - started
    requests = sum(len(w) for w in feeds)
    return {"requests": requests, "seconds": round(elapsed, 3),
            "us_per_request": round(1e6 * elapsed / requests, 2), "events": events}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--requests", type=int, default=30_000, help="requests a window")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = windows(args.windows, args.requests)
    result = {"shared_maps": run(data, True), "own_maps": run(data, False)}
    if args.json:
        print(json.dumps(result))
    else:
        for name, r in result.items():
            print(f"{name:>12}: {r['us_per_request']:6.2f} µs a request ({r['requests']:,} requests, "
                  f"{r['seconds']} s, {r['events']} drift events)")


if __name__ == "__main__":
    main()
