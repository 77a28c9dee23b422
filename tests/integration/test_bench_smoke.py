"""``distillwatch bench`` on a tiny log: one JSON object with every figure, each sane.

No timing thresholds (a shared machine): the checks are that every key is there, counts add
up (every record consumed by the ceiling consumer, every request stored, lag back to zero),
rates and latencies are positive and ordered, and the targets are judged on those figures.
The peer needs a virtualenv with Evidently (network); here it is skipped and says why, and
the table it would be given is checked against the log instead.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.bench_evaluate import make_log
from bench.peer import export_pairs
from bench.suite import count_records
from evaluators.config import EvalConfig

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
PAIRS = 400


@pytest.fixture(scope="module")
def result(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("bench-cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLWATCH_")}
    env.update({"PYTHONPATH": str(REPO), "DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap})
    done = subprocess.run(
        [sys.executable, "-m", "distillwatch", "bench", "--pairs", str(PAIRS), "--latency-pairs", "60",
         "--no-peer", "--forensics-rows", "5000", "--cache", str(cache), "--json"],
        env=env, cwd=tmp_path_factory.mktemp("bench-cwd"), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "--json prints exactly one line"
    out = json.loads(lines[0])
    out["_cache"] = str(cache)
    return out


def test_every_figure_is_there(result: dict) -> None:
    assert set(result) >= {"machine", "pairs", "end_to_end", "ceilings", "peer", "forensics", "targets"}
    e2e = result["end_to_end"]
    assert set(e2e) >= {"pairs", "records", "replay_s", "elapsed_s", "pairs_per_s", "latency", "latency_backlog",
                        "evaluator_peak_rss_mb", "lag_at_end_records", "lag_curve"}
    assert set(e2e["latency"]) >= {"pairs", "rate_pairs_per_s", "p50_s", "p95_s", "n"}
    assert set(e2e["backlog"]) >= {"pairs", "records", "replay_s", "start_to_first_record_s", "elapsed_s",
                                   "pairs_per_s", "evaluator_peak_rss_mb", "lag_at_end_records", "lag_curve"}
    assert set(result["ceilings"]) == {"plain_consumer", "offline_evaluate", "offline_evaluate_one_process",
                                       "ratios"}
    assert set(result["ceilings"]["ratios"]) == {"end_to_end_over_consumer", "end_to_end_over_offline"}
    assert set(result["targets"]) == {"end_to_end_pairs_per_s", "end_to_end_backlog_pairs_per_s",
                                      "lag_back_to_zero", "offline_pairs_per_s", "peer_ratio",
                                      "forensic_query_s", "evaluator_rss_mb"}
    assert result["machine"]["cpus"] == os.cpu_count()
    for end in ("speed_start", "speed_end"):
        speed = result["machine"][end]
        assert set(speed) == {"cpu_model", "python_ms", "numpy_sort_ms", "two_process_speedup"}
        assert 0 < speed["python_ms"]["best"] <= speed["python_ms"]["median"]


def test_counts_add_up(result: dict) -> None:
    log = make_log(Path(result["_cache"]) / f"evaluate-{PAIRS}.jsonl", PAIRS)
    pairs, records = count_records(log)
    assert result["pairs"] == pairs == PAIRS
    e2e = result["end_to_end"]
    assert e2e["pairs"] == pairs and e2e["records"] == records
    assert e2e["lag_at_end_records"] == 0
    assert e2e["lag_curve"][-1]["stored_rows"] >= pairs
    assert e2e["lag_curve"][-1]["consumed_records"] >= records
    assert e2e["latency"]["n"] == e2e["latency"]["pairs"] == 60  # every paced request stored
    assert e2e["latency_backlog"]["n"] > 0
    latency_log = next(Path(result["_cache"]).glob("latency-60-*.jsonl"))
    backlog_log = next(Path(result["_cache"]).glob(f"backlog-{PAIRS}-*.jsonl"))
    backlog = e2e["backlog"]
    assert (backlog["pairs"], backlog["records"]) == count_records(backlog_log) == (pairs, backlog["records"])
    assert backlog["lag_at_end_records"] == 0
    assert backlog["lag_curve"][-1]["consumed_records"] >= backlog["records"]
    consumer = result["ceilings"]["plain_consumer"]
    assert consumer["records"] == records + count_records(latency_log)[1] + backlog["records"]  # all, once
    assert result["ceilings"]["offline_evaluate"]["pairs"] == pairs
    assert result["ceilings"]["offline_evaluate_one_process"]["pairs"] == pairs
    assert result["ceilings"]["offline_evaluate_one_process"]["workers"] == 1


def test_values_are_sane(result: dict) -> None:
    e2e, ceilings = result["end_to_end"], result["ceilings"]
    for rate in (e2e["pairs_per_s"], ceilings["plain_consumer"]["pairs_per_s"],
                 ceilings["offline_evaluate"]["pairs_per_s"]):
        assert rate > 0
    for lat in (e2e["latency"], e2e["latency_backlog"]):
        assert 0 < lat["p50_s"] <= lat["p95_s"]
    assert 0 < e2e["evaluator_peak_rss_mb"] < 64 * 1024
    ratios = ceilings["ratios"]
    assert ratios["end_to_end_over_offline"] == pytest.approx(
        e2e["pairs_per_s"] / ceilings["offline_evaluate"]["pairs_per_s"], rel=0.01)
    assert ratios["end_to_end_over_consumer"] == pytest.approx(
        e2e["pairs_per_s"] / ceilings["plain_consumer"]["pairs_per_s"], rel=0.01)
    times = [c["t_s"] for c in e2e["lag_curve"]]
    assert times == sorted(times)
    targets = result["targets"]
    assert targets["end_to_end_pairs_per_s"]["met"] == (e2e["pairs_per_s"] >= 10_000)
    assert targets["end_to_end_backlog_pairs_per_s"]["met"] == (e2e["backlog"]["pairs_per_s"] >= 10_000)
    assert targets["evaluator_rss_mb"]["value"] == max(e2e["evaluator_peak_rss_mb"],
                                                       e2e["backlog"]["evaluator_peak_rss_mb"])
    # the evaluator runs in its own process: both processes' peaks are reported
    assert 0 < e2e["monitor_peak_rss_mb"] < 64 * 1024
    assert result["peer"] == {"available": False, "reason": "--no-peer"}
    assert targets["peer_ratio"]["met"] is None


def test_cpu_cost_of_each_stage(result: dict) -> None:
    """Both pipeline processes did work in both phases; the per-pair figures and the ceilings
    follow from the CPU seconds (checked here by hand, not by the module's own formulas)."""
    cores = os.cpu_count()
    for phase in (result["end_to_end"], result["end_to_end"]["backlog"]):
        cpu = phase["cpu"]
        assert cpu["cpu_s"]["evaluator"] > 0 and cpu["cpu_s"]["monitor"] > 0 and cpu["cpu_s"]["bench"] >= 0
        named = [v for k, v in cpu["us_per_pair"].items() if k != "total" and v is not None]
        assert cpu["us_per_pair"]["total"] >= sum(named) - 1.0  # the machine's busy time holds them all
        assert cpu["us_per_pair"]["evaluator"] == pytest.approx(
            cpu["cpu_s"]["evaluator"] / phase["pairs"] * 1e6, abs=0.006e6 / phase["pairs"])  # cpu_s: to 0.01 s
        assert cpu["ceiling_pairs_per_s"]["all_cores"] == pytest.approx(
            cores * 1e6 / cpu["us_per_pair"]["total"], rel=0.01)
        assert 0 < cpu["busy_share"] <= 1.05


def test_forensic_queries_are_reported(result: dict) -> None:
    forensics = result["forensics"]
    assert forensics["available"] is True and forensics["rows"] == 5000
    assert forensics["states"] and all(s["queries"] > 0 for s in forensics["states"])
    assert forensics["max_query_wall_median_s"] > 0


def test_peer_table_is_the_joined_pairs(tmp_path: Path) -> None:
    """What Evidently would be given, checked against the log read independently: one row per
    pair with a student answer, target = latest human label, else the request's reference, else
    the teacher's top-1; prediction = the student's top-1; probabilities as sent."""
    log = make_log(tmp_path / "log.jsonl", 300)
    table = tmp_path / "pairs.csv"
    config = EvalConfig()
    rows = export_pairs(log, table, config)
    human: dict[str, tuple[str, str]] = {}
    expected = {}
    for raw in log.read_bytes().splitlines():
        line = orjson.loads(raw)
        if "label" in line and line["label"]["source"] == "human" and line["label"].get("intent"):
            lb = line["label"]
            if lb["request_id"] not in human or lb["ts"] >= human[lb["request_id"]][0]:
                human[lb["request_id"]] = (lb["ts"], lb["intent"])
    for raw in log.read_bytes().splitlines():
        line = orjson.loads(raw)
        if "request" not in line:
            continue
        student, teacher = line.get("student") or {}, line.get("teacher") or {}
        if not student.get("intent_probs"):
            continue
        rid = line["request"]["request_id"]
        target = human.get(rid, (None, None))[1] or (line["request"].get("reference") or {}).get("intent")
        if target is None and teacher.get("intent_probs"):
            target = max(teacher["intent_probs"], key=teacher["intent_probs"].get)
        if target is None:
            continue
        probs = student["intent_probs"]
        expected[rid] = (line["request"]["slice"]["region"], target, max(probs, key=probs.get),
                         [probs[c] for c in config.intents])
    with open(table) as handle:
        got = list(csv.DictReader(handle))
    assert rows == len(got) == len(expected) > 250
    for row, (rid, (region, target, prediction, probs)) in zip(got, expected.items(), strict=True):
        assert (row["region"], row["target"], row["prediction"]) == (region, target, prediction), rid
        assert [float(row[c]) for c in config.intents] == pytest.approx(probs)
