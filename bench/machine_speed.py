"""How fast this machine is today, by workloads that do not depend on distillwatch's code.

The absolute figures of a run (pairs/s, seconds a query) move with the machine: the same code
measured ~2× slower on one 2-core VM than on another of the same size (docs/performance.md).
A figure recorded beside them says whether a change between two runs came from the code or
from the machine. Three are measured, each the best of a few rounds:

- ``python_ms``: one round of a fixed interpreter-bound loop (dict and attribute access,
  calls, string formatting, ``json`` of a small document), the kind of work ``evaluate`` does,
  as the fastest and the median of 15 rounds (a shared host's speed changes from one round
  to the next: on 2026-11-29 rounds took 17 ms in one second and 30 ms in the next);
- ``numpy_sort_ms``: sorting 1,000,000 float64 (vectorised C, the kind of work the peer,
  Evidently over pandas, does);
- ``two_process_speedup``: the Python loop's throughput in two processes at once over one
  alone (~2 where the two CPUs are separate cores, less where they share one or the host is
  busy), which bounds what ``evaluate``'s two workers can gain.

``cpu_steal`` is the share of CPU time the hypervisor gave to others (``/proc/stat``), taken
between two calls of :func:`steal_counters`.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np

ROUNDS = 15
_DOC = {"request_id": "r-000001", "slice": {"region": "jp", "device": "ios", "language": "ja"},
        "intent_probs": {"order_status": 0.7, "recommendation": 0.2, "refund": 0.1}}


class _Item:
    __slots__ = ("key", "value")

    def __init__(self, key: str, value: float) -> None:
        self.key, self.value = key, value


def _python_round(n: int = 20_000) -> float:
    """Seconds for one round of the interpreter-bound loop."""
    started = time.perf_counter()
    counts: dict[str, float] = {}
    text = json.dumps(_DOC)
    for i in range(n):
        item = _Item(f"k{i % 97}", i * 0.5)
        counts[item.key] = counts.get(item.key, 0.0) + item.value
        if i % 10 == 0:
            json.loads(text)
    return time.perf_counter() - started


def python_ms(rounds: int = ROUNDS) -> dict[str, float]:
    """Fastest and median round of the Python loop, in milliseconds."""
    times = sorted(_python_round() * 1e3 for _ in range(rounds))
    return {"best": round(times[0], 1), "median": round(times[len(times) // 2], 1)}


def numpy_sort_ms(rounds: int = 5) -> float:
    values = np.random.default_rng(7).random(1_000_000)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        np.sort(values)
        best = min(best, time.perf_counter() - started)
    return best * 1e3


def _rounds_for(seconds: float, queue: Any) -> None:
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        _python_round()
        done += 1
    queue.put(done)


def two_process_speedup(seconds: float = 1.0) -> float:
    """Rounds done in ``seconds`` by two processes at once, over one process alone."""
    context = multiprocessing.get_context("fork")
    results = []
    for procs in (1, 2):
        queue = context.Queue()
        workers = [context.Process(target=_rounds_for, args=(seconds, queue)) for _ in range(procs)]
        for w in workers:
            w.start()
        results.append(sum(queue.get(timeout=seconds + 60) for _ in workers))
        for w in workers:
            w.join()
    return results[1] / max(1, results[0])


def cpu_ticks(stat: Path = Path("/proc/stat")) -> list[int] | None:
    """The machine's CPU ticks so far, all CPUs together (/proc/stat's ``cpu`` line: user nice
    system idle iowait irq softirq steal ...); None where the file or the line is absent."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("cpu "):
            return [int(x) for x in line.split()[1:]]
    return None


def steal_counters(stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """(steal ticks, all ticks) of the machine's CPUs so far; None where /proc/stat is absent."""
    ticks = cpu_ticks(stat)
    if ticks is None:
        return None
    steal = ticks[7] if len(ticks) > 7 else 0
    return steal, sum(ticks[:8])


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of CPU time stolen between two :func:`steal_counters` readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def measure() -> dict[str, Any]:
    """Every figure above but the steal (~3 s)."""
    return {"cpu_model": cpu_model(), "python_ms": python_ms(), "numpy_sort_ms": round(numpy_sort_ms(), 1),
            "two_process_speedup": round(two_process_speedup(), 2)}


if __name__ == "__main__":
    print(json.dumps(measure()))
