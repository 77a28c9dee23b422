"""The bench's per-stage CPU cost: /proc parsing and the arithmetic, against hand-made files
and hand-computed figures (no services)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import cpu_cost

TCK = cpu_cost.CLK_TCK


def _proc(tmp_path: Path, busy: dict[str, int], pids: dict[int, tuple[int, int]]) -> Path:
    """A fake /proc: the aggregate cpu line and, per pid, a stat line with utime and stime."""
    root = tmp_path / "proc"
    root.mkdir(exist_ok=True)
    # user nice system idle iowait irq softirq steal guest guest_nice
    (root / "stat").write_text(
        f"cpu  {busy['user']} {busy['nice']} {busy['system']} 99999 777 {busy['irq']} {busy['softirq']} 555 0 0\n"
        "cpu0 1 2 3 4 5 6 7 8 0 0\n")
    for pid, (utime, stime) in pids.items():
        (root / str(pid)).mkdir(exist_ok=True)
        # a command name with a space and a parenthesis, as /proc allows
        fields = ["S", "1", "1", "1", "0", "-1", "4194560", "10", "0", "0", "0", str(utime), str(stime),
                  "7", "8", "20", "0", "4"]
        (root / str(pid) / "stat").write_text(f"{pid} (python3 -m x) ) {' '.join(fields)}\n")
    return root


def test_process_cpu_is_utime_plus_stime(tmp_path: Path) -> None:
    proc = _proc(tmp_path, dict(user=0, nice=0, system=0, irq=0, softirq=0), {42: (300, 50)})
    assert cpu_cost.process_cpu_s(42, proc) == pytest.approx(350 / TCK)
    assert cpu_cost.process_cpu_s(43, proc) is None  # gone


def test_process_cpu_of_this_process_grows() -> None:
    before = cpu_cost.process_cpu_s(os.getpid())
    sum(i * i for i in range(2_000_000))
    after = cpu_cost.process_cpu_s(os.getpid())
    assert before is not None and after is not None and after > before


def test_machine_busy_leaves_out_idle_iowait_and_steal(tmp_path: Path) -> None:
    proc = _proc(tmp_path, dict(user=100, nice=2, system=30, irq=4, softirq=6), {})
    assert cpu_cost.machine_busy_s(proc) == pytest.approx((100 + 2 + 30 + 4 + 6) / TCK)


def test_cost_per_pair_and_ceilings(tmp_path: Path) -> None:
    pids: dict[str, int | None] = {"evaluator": 10, "monitor": 11, "broker": None, "bench": 12}
    before = cpu_cost.snapshot(pids, 1000.0, _proc(
        tmp_path, dict(user=1000, nice=0, system=0, irq=0, softirq=0), {10: (100, 0), 11: (50, 0), 12: (0, 0)}))
    # over 10 s: evaluator 8 s, monitor 6 s, bench 2 s; the machine busy 18 s in all
    after = cpu_cost.snapshot(pids, 1010.0, _proc(
        tmp_path, dict(user=1000 + 18 * TCK, nice=0, system=0, irq=0, softirq=0),
        {10: (100 + 7 * TCK, TCK), 11: (50 + 6 * TCK, 0), 12: (2 * TCK, 0)}))
    out = cpu_cost.cost(before, after, pairs=100_000, cores=2)
    assert out["cpu_s"] == {"evaluator": 8.0, "monitor": 6.0, "broker": None, "bench": 2.0, "other": 2.0}
    assert out["us_per_pair"] == {"evaluator": 80.0, "monitor": 60.0, "broker": None, "bench": 20.0,
                                  "other": 20.0, "total": 180.0}
    assert out["busy_share"] == 0.9  # 18 of 2 × 10 CPU seconds
    assert out["ceiling_pairs_per_s"] == {"all_cores": round(2e6 / 180), "evaluator_core": 12_500}


def test_a_process_not_watched_all_along_is_not_guessed(tmp_path: Path) -> None:
    proc = _proc(tmp_path, dict(user=0, nice=0, system=0, irq=0, softirq=0), {10: (5, 5)})
    before = cpu_cost.snapshot({"evaluator": 10}, 0.0, proc)
    (proc / "10" / "stat").unlink()
    after = cpu_cost.snapshot({"evaluator": 10}, 1.0, proc)
    out = cpu_cost.cost(before, after, pairs=10, cores=2)
    assert out["cpu_s"]["evaluator"] is None and out["ceiling_pairs_per_s"]["evaluator_core"] is None


def test_no_pairs_is_an_error() -> None:
    empty = cpu_cost.CpuSnapshot(0.0, {}, 0.0)
    with pytest.raises(ValueError, match="pairs must be > 0"):
        cpu_cost.cost(empty, empty, pairs=0, cores=2)
