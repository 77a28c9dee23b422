"""The bench's machine-speed figures: /proc parsing checked against hand-made files, the
timed figures for shape only (a shared machine: no thresholds)."""

from __future__ import annotations

from pathlib import Path

from bench import machine_speed

STAT = """cpu  20119 7 3418 39094 995 3 181 85 0 0
cpu0 10000 3 1700 19500 500 1 90 40 0 0
intr 12345
"""


def test_steal_counters_read_the_cpu_line(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(STAT)
    # user nice system idle iowait irq softirq steal: steal is the 8th, the total their sum
    assert machine_speed.steal_counters(stat) == (85, 20119 + 7 + 3418 + 39094 + 995 + 3 + 181 + 85)


def test_steal_share_between_two_readings() -> None:
    assert machine_speed.steal_share((85, 1000), (135, 1200)) == 50 / 200
    assert machine_speed.steal_share(None, (1, 2)) is None
    assert machine_speed.steal_share((5, 100), (5, 100)) is None  # no time passed


def test_missing_proc_files_give_none(tmp_path: Path) -> None:
    assert machine_speed.steal_counters(tmp_path / "absent") is None
    assert machine_speed.cpu_model(tmp_path / "absent") is None


def test_cpu_model_is_the_first_model_name(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nprocessor\t: 1\n"
                    "model name\t: Other\n")
    assert machine_speed.cpu_model(info) == "Intel(R) Xeon(R) Processor"


def test_python_rounds_report_fastest_and_median() -> None:
    speed = machine_speed.python_ms(rounds=3)
    assert 0 < speed["best"] <= speed["median"]


def test_two_processes_do_work_in_both() -> None:
    # each process finishes at least one round; two at once do more than zero rounds
    assert machine_speed.two_process_speedup(seconds=0.2) > 0
