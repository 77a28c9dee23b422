"""CPU time of each process of the pipeline over a phase, per pair: the per-stage cost.

Throughput alone cannot say whether a run was slow because of the code or because of the
machine (the same code measured ~2× apart on two 2-core VMs of the same size). CPU time per
pair can: it says what each stage costs, and ``cores × 10^6 / total µs a pair`` is the most
pairs/s any schedule of that work could reach on this machine, with the evaluator's own
ceiling (``10^6 / its µs a pair``, one process on one core) beside it.

Read from ``/proc``: a process's user + system time (``/proc/PID/stat``, all its threads),
and the machine's busy time (``/proc/stat``: user, nice, system, irq, softirq; not idle,
iowait or time stolen by the hypervisor). ``other`` is the machine's busy time that none of
the named processes used (kernel threads, anything else running).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.machine_speed import cpu_ticks

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_BUSY_FIELDS = (0, 1, 2, 5, 6)  # user nice system irq softirq (guest time is inside user)


def process_cpu_s(pid: int, proc: Path = Path("/proc")) -> float | None:
    """User + system seconds of ``pid`` so far (all threads); None once it is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the
    # last ')'; utime and stime are fields 14 and 15 of the line, 12th and 13th after comm
    rest = text[text.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def machine_busy_s(proc: Path = Path("/proc")) -> float:
    """Seconds all CPUs together spent busy since boot (/proc/stat's ``cpu`` line)."""
    ticks = cpu_ticks(proc / "stat")
    if ticks is None:
        raise ValueError(f"no aggregate 'cpu' line in {proc / 'stat'}")
    return sum(ticks[i] for i in _BUSY_FIELDS if i < len(ticks)) / CLK_TCK


@dataclass(frozen=True)
class CpuSnapshot:
    at_s: float
    processes: dict[str, float | None]
    machine_busy: float


def snapshot(pids: dict[str, int | None], at_s: float, proc: Path = Path("/proc")) -> CpuSnapshot:
    """CPU seconds so far of each named process (None: not running or unknown)."""
    return CpuSnapshot(at_s, {name: None if pid is None else process_cpu_s(pid, proc)
                              for name, pid in pids.items()}, machine_busy_s(proc))


def cost(before: CpuSnapshot, after: CpuSnapshot, pairs: int, cores: int) -> dict[str, object]:
    """CPU seconds and µs a pair of each process between two snapshots, and the ceilings."""
    if pairs <= 0:
        raise ValueError(f"pairs must be > 0, got {pairs}")
    seconds: dict[str, float | None] = {}
    for name, start in before.processes.items():
        end = after.processes.get(name)
        # a process that started or ended in between was not watched all along: not guessed
        seconds[name] = None if start is None or end is None else max(0.0, end - start)
    busy = max(0.0, after.machine_busy - before.machine_busy)
    named = sum(s for s in seconds.values() if s is not None)
    seconds["other"] = max(0.0, busy - named)
    elapsed = after.at_s - before.at_s
    us = {name: None if s is None else round(s / pairs * 1e6, 1) for name, s in seconds.items()}
    total_us = busy / pairs * 1e6
    evaluator_us = us.get("evaluator")
    return {
        "elapsed_s": round(elapsed, 1),
        "cpu_s": {name: None if s is None else round(s, 2) for name, s in seconds.items()},
        "us_per_pair": us | {"total": round(total_us, 1)},
        "busy_share": round(busy / (elapsed * cores), 3) if elapsed > 0 else None,
        "ceiling_pairs_per_s": {
            "all_cores": round(cores * 1e6 / total_us) if total_us > 0 else None,
            "evaluator_core": round(1e6 / evaluator_us) if evaluator_us else None,
        },
    }
