"""Each saved forensic query returns the expected rows on a small known dataset.

The dataset (tests/integration/forensics_support.py) is inserted into a fresh embedded store;
expected values are computed here in plain Python (and numpy for quantiles) from the same
row dicts, reading them as FINAL does (highest version per request) and filtering the period
and slice by hand.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.forensics_data import World, alert_rows
from evaluators.config import EvalConfig
from streams import forensics
from streams.clickhouse import Store, open_store
from streams.migrations import migrate
from streams.sql import check_read_only, read_settings
from tests.integration.forensics_support import (
    HIGH_RISK, PERIOD, T0, current, evaluation, f32, in_period, insert_evaluations,
    insert_payloads, naive, payload, random_evaluations, slices_of,
)

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = EvalConfig(high_risk=HIGH_RISK)


class Data:
    def __init__(self, store: Store, rows: list[dict[str, Any]], payloads: list[dict[str, Any]]) -> None:
        self.store, self.rows, self.payloads = store, rows, payloads

    def run(self, name: str, since: Any = PERIOD[0], until: Any = PERIOD[1],
            slices: tuple[tuple[str, str], ...] = (), limit: int = 100,
            config: EvalConfig = CONFIG) -> list[dict[str, Any]]:
        """Through the same guard as ``distillwatch sql``: one read, readonly=1, limits."""
        def runner(sql: str, params: dict[str, Any]) -> Any:
            result = self.store.query(check_read_only(sql), parameters=params, settings=read_settings(10_000))
            return type("R", (), {"columns": result.column_names, "rows": result.result_rows, "via": "store"})

        scope = forensics.Scope(since, until, slices, config, self.store.database, limit)
        return forensics.run(name, scope, runner).records()

    def visible(self, since: Any = PERIOD[0], until: Any = PERIOD[1]) -> list[dict[str, Any]]:
        return in_period(current(self.rows), since, until)


def _dataset() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows = random_evaluations(400, seed=11)
    # Late labels: a higher version with another reference (FINAL must pick it).
    for r in rows[5:300:30]:
        rows.append(r | {"version": 2, "reference_intent": "returns", "reference_source": "human",
                         "student_correct": int(r["student_intent"] == "returns") if r["student_answered"] else None,
                         "teacher_correct": int(r["teacher_intent"] == "returns") if r["teacher_answered"] else None})
    # Outside the period (just before, and exactly at its exclusive end): must never show up.
    for i, ts in enumerate([PERIOD[0] - timedelta(milliseconds=1), PERIOD[1]]):
        rows.append(evaluation(f"out{i}", ts, slice={"region": "br"}, reference_intent="faq",
                               student_intent="returns", student_top1=0.99, student_top2=0.001,
                               teacher_wrong_claims=1, student_wrong_claims=1, copied_claims=1,
                               teacher_checkable=1, student_checkable=1, student_latency_ms=99999.0))
    # The confident threshold is inclusive: 0.8 counts, 0.79 does not.
    rows.append(evaluation("edge80", T0 + timedelta(minutes=7), slice={"region": "br"},
                           student_intent="returns", student_top1=0.8, student_top2=0.1))
    rows.append(evaluation("edge79", T0 + timedelta(minutes=8), slice={"region": "br"},
                           student_intent="returns", student_top1=0.79, student_top2=0.1))
    # Confident errors that a late label creates (v2 wrong) or removes (v2 right).
    rows.append(evaluation("relab_new", T0 + timedelta(minutes=9), student_intent="faq", student_top1=0.95))
    rows.append(evaluation("relab_new", T0 + timedelta(minutes=9), student_intent="faq", student_top1=0.95,
                           reference_intent="returns", reference_source="human", version=2))
    rows.append(evaluation("relab_gone", T0 + timedelta(minutes=10), student_intent="faq", student_top1=0.96,
                           reference_intent="returns"))
    rows.append(evaluation("relab_gone", T0 + timedelta(minutes=10), student_intent="faq", student_top1=0.96,
                           reference_intent="faq", reference_source="human", version=2))
    # A threshold exactly representable in Float32 (0.75) tests that the comparison is inclusive.
    rows.append(evaluation("edge75", T0 + timedelta(minutes=11), student_intent="returns", student_top1=0.75,
                           student_top2=0.1))
    # A separate hour (after the period) with 50 student answers, 19 of them fallbacks: 38 %.
    for i in range(50):
        rows.append(evaluation(f"fb{i:02d}", PERIOD[1] + timedelta(hours=1, seconds=i), fallback=int(i < 19),
                               cost_usd=0.003 if i < 19 else 0.0002))
    wrong = [r for r in current(rows) if r["student_correct"] == 0 and r["request_id"].startswith("q")]
    payloads = [payload(r, "forensic") for r in wrong[::4]] + [payload(rows[0], "sample")]
    payloads.append(payload(rows[-60], "sample") | {"ts": PERIOD[0] - timedelta(days=1)})  # outside
    return rows, payloads


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Data]:
    path = tmp_path_factory.mktemp("forensics") / "ch"
    rows, payloads = _dataset()
    with open_store(f"chdb://{path}", owner="test_forensics") as store:
        migrate(store)
        insert_evaluations(store, rows[:200])  # two inserts: two parts for FINAL to merge
        insert_evaluations(store, rows[200:])
        insert_payloads(store, payloads)
        world = World(T0 - timedelta(hours=5), 12 * 3600, 1)
        alerts = alert_rows(world)
        alerts.append(dict(alerts[0]) | {"alert_id": "test-x", "fingerprint": "distillwatch_test/all",
                                        "rule": "distillwatch_test", "slice": "all",
                                        "evidence": json.dumps({"test": True})})
        columns = list(alerts[0])
        store.insert("alerts", [[a[c] for c in columns] for a in alerts], columns)
        yield Data(store, rows, payloads)


def _close(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


# --- copied teacher errors ---------------------------------------------------------------------

def _expected_copied(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    acc: dict[str, dict[str, Any]] = defaultdict(lambda: {"copied": 0, "wrong": 0, "teacher": 0, "with": 0, "ids": []})
    for r in rows:
        for sl in slices_of(r):
            a = acc[sl]
            a["copied"] += r["copied_claims"]
            a["wrong"] += r["student_wrong_claims"]
            a["teacher"] += r["teacher_fact_error"]
            if r["copied_claims"] > 0:
                a["with"] += 1
                a["ids"].append((r["ts"], r["request_id"]))
    out = []
    for sl, a in acc.items():
        if a["copied"] > 0:
            latest = [rid for _, rid in sorted(a["ids"], key=lambda t: (-t[0].timestamp(), t[1]))[:5]]
            out.append({"slice": sl, "copied_claims": a["copied"], "student_wrong_claims": a["wrong"],
                        "copied_error_overlap": a["copied"] / a["wrong"], "teacher_fact_errors": a["teacher"],
                        "requests_with_copies": a["with"], "example_request_ids": latest})
    return sorted(out, key=lambda d: (-d["copied_claims"], d["slice"]))


def test_copied_errors_by_slice_with_latest_examples(data: Data) -> None:
    got = data.run("copied-errors")
    expected = _expected_copied(data.visible())
    assert [g["slice"] for g in got] == [e["slice"] for e in expected]
    assert len(expected) > 10 and expected[0]["slice"] == "all"
    for g, e in zip(got, expected, strict=True):
        for key in ("copied_claims", "student_wrong_claims", "teacher_fact_errors", "requests_with_copies",
                    "example_request_ids"):
            assert g[key] == e[key], (e["slice"], key)
        assert _close(g["copied_error_overlap"], e["copied_error_overlap"])
    assert not any("out" in rid for g in got for rid in g["example_request_ids"])


@pytest.mark.parametrize("slices", [
    (("region", "br"),),
    (("region", "eu"), ("device", "ios")),
    (("intent", "faq"),),
    (("risk", "high"),),
    (("risk", "normal"),),
    (("freshness", "new"),),
    (("multi_intent", "true"),),
    (("device", "nosuch"),),
])
def test_slice_filter_keeps_only_that_slice(data: Data, slices: tuple[tuple[str, str], ...]) -> None:
    def member(r: dict[str, Any]) -> bool:
        return all(f"{k}={v}" in slices_of(r) for k, v in slices)

    got = data.run("copied-errors", slices=slices)
    assert got == [] or got[0]["slice"] == "all"
    expected = _expected_copied([r for r in data.visible() if member(r)])
    assert [(g["slice"], g["copied_claims"], g["student_wrong_claims"]) for g in got] == \
           [(e["slice"], e["copied_claims"], e["student_wrong_claims"]) for e in expected]


# --- confident errors with payloads ----------------------------------------------------------

def test_confident_errors_with_their_payload_samples(data: Data) -> None:
    got = data.run("confident-errors", limit=1000)
    sampled = {p["request_id"]: p for p in data.payloads if PERIOD[0] <= p["ts"] < PERIOD[1]}
    wrong = [r for r in data.visible() if r["student_correct"] == 0 and f32(r["student_top1"]) >= 0.8]
    expected = sorted(wrong, key=lambda r: (r["request_id"] not in sampled, -f32(r["student_top1"]),
                                            -r["ts"].timestamp(), r["request_id"]))
    assert [g["request_id"] for g in got] == [r["request_id"] for r in expected]
    assert "edge80" in [g["request_id"] for g in got] and "edge79" not in [g["request_id"] for g in got]
    with_payload = [g for g in got if g["sample_reason"]]
    assert len(with_payload) == sum(1 for r in wrong if r["request_id"] in sampled) > 0
    for g in got:
        p = sampled.get(g["request_id"])
        assert g["prompt_redacted"] == (p["prompt_redacted"] if p else "")
        assert g["student_answer_redacted"] == (p["student_answer_redacted"] if p else "")
    ids = [g["request_id"] for g in got]
    assert ids.count("relab_new") == 1 and "relab_gone" not in ids  # the latest label decides
    lower = data.run("confident-errors", limit=1000, config=EvalConfig(high_risk=HIGH_RISK, confident_threshold=0.75))
    assert "edge75" in [g["request_id"] for g in lower] and "edge75" not in ids
    limited = data.run("confident-errors", limit=3)
    assert [g["request_id"] for g in limited] == [r["request_id"] for r in expected[:3]]


# --- fallback cost against plan --------------------------------------------------------------

def test_fallback_cost_per_hour_against_plan(data: Data) -> None:
    got = data.run("fallback-cost")
    hours: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in data.visible():
        hours[r["ts"].replace(minute=0, second=0, microsecond=0)].append(r)
    assert [g["hour"] for g in got] == [naive(h) for h in sorted(hours)]
    planned_per_1k = 0.9 * 0.20 + 0.1 * 3.00  # $0.48 per 1,000 requests at 10 % fallback
    for g, hour in zip(got, sorted(hours), strict=True):
        rs = hours[hour]
        answers = [r for r in rs if r["student_answered"]]
        rate = sum(r["fallback"] for r in answers) / len(answers)
        assert g["requests"] == len(rs) and g["student_answers"] == len(answers)
        assert _close(g["fallback_rate"], rate)
        assert _close(g["spend_usd"], sum(r["cost_usd"] for r in rs))
        assert _close(g["planned_spend_usd"], len(rs) * planned_per_1k / 1000)
        assert _close(g["over_plan_usd"], sum(r["cost_usd"] for r in rs) - len(rs) * planned_per_1k / 1000)
        assert _close(g["projected_daily_cost_usd"], ((1 - rate) * 0.20 + rate * 3.00) * 10_000)
        assert _close(g["planned_daily_cost_usd"], 4800.0)  # the reference guide's plan


def test_fallback_cost_matches_the_guides_38_percent_example(data: Data) -> None:
    """Reference guide: at 38 % fallback the $4,800/day plan becomes $12,640/day."""
    start = PERIOD[1] + timedelta(hours=1)
    (got,) = data.run("fallback-cost", since=start, until=start + timedelta(hours=1))
    assert got["fallbacks"] == 19 and got["student_answers"] == 50
    assert _close(got["projected_daily_cost_usd"], 12_640.0)
    assert _close(got["planned_daily_cost_usd"], 4_800.0)


# --- freshness gap by title age --------------------------------------------------------------

def test_freshness_gap_by_title_age(data: Data) -> None:
    got = data.run("freshness-gap")
    edges = [7.0, 30.0, 60.0, 180.0, 365.0]
    labels = ["0-7 d", "7-30 d", "30-60 d", "60-180 d", "180-365 d", "> 365 d", "no catalog title"]

    def bucket(r: dict[str, Any]) -> str:
        age = f32(r["title_age_days"])
        if age is None:
            return labels[-1]
        return next((labels[i] for i, e in enumerate(edges) if age <= e), labels[5])

    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in data.visible():
        groups[bucket(r)].append(r)

    def rate(rs: list[dict[str, Any]], num: Any, den: Any) -> float | None:
        d = [r for r in rs if den(r)]
        return sum(1 for r in d if num(r)) / len(d) if d else None

    assert [g["title_age"] for g in got] == [lb for lb in labels if lb in groups]
    for g in got:
        rs = groups[g["title_age"]]
        t = rate(rs, lambda r: r["teacher_all_claims_correct"] and not r["retrieval_miss"], lambda r: r["teacher_answered"])
        s = rate(rs, lambda r: r["student_all_claims_correct"] and not r["retrieval_miss"], lambda r: r["student_answered"])
        assert g["requests"] == len(rs)
        assert _close(g["teacher_grounded_rate"], t) and _close(g["student_grounded_rate"], s)
        assert _close(g["grounded_gap"], None if t is None or s is None else t - s)
        assert _close(g["retrieval_miss_rate"], rate(rs, lambda r: r["retrieval_miss"], lambda r: r["names_entity"]))
        assert _close(g["student_fact_error_rate"],
                      rate(rs, lambda r: r["student_fact_error"], lambda r: r["student_checkable"]))
        assert _close(g["accuracy"], rate(rs, lambda r: r["student_correct"] == 1,
                                          lambda r: r["student_correct"] is not None))


# --- latency by slice --------------------------------------------------------------------------

def test_latency_by_slice_within_one_percent(data: Data) -> None:
    got = {g["slice"]: g for g in data.run("latency-by-slice")}
    by_slice: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in data.visible():
        for sl in slices_of(r):
            by_slice[sl].append(r)
    assert set(got) == set(by_slice)
    p95 = [got[s]["student_p95_ms"] for s in got]
    assert list(got) == [s for _, s in sorted(zip(p95, got), key=lambda t: (-t[0], t[1]))]
    for sl, rs in by_slice.items():
        g = got[sl]
        assert g["requests"] == len(rs)
        for m in ("student", "teacher"):
            assert g[f"{m}_errors"] == sum(1 for r in rs if r[f"{m}_present"] and not r[f"{m}_answered"])
            xs = np.array([r[f"{m}_latency_ms"] for r in rs if r[f"{m}_latency_ms"] is not None])
            for q in (50, 95, 99):
                # DDSketch returns the rank-floor(q·(n−1)) value within 1 % relative error.
                truth = float(np.quantile(xs, q / 100, method="lower"))
                assert abs(g[f"{m}_p{q}_ms"] - truth) <= 0.0101 * truth, (sl, m, q)


# --- alert timeline ----------------------------------------------------------------------------

def test_alert_timeline_with_evidence(data: Data) -> None:
    # The bench's four alerts start 2, 3, 5, 7 h after T0 − 5 h and resolve at 4 h, never, 6 h,
    # never: the first ended before the period, the second fired before it and still fires.
    got = data.run("alert-timeline")
    base = T0 - timedelta(hours=5)
    expected = [("copied_teacher_errors/region=br", 3, None), ("student_latency_over_budget/device=android-lowmem", 5, 6),
                ("fallback_over_plan/all", 7, None)]
    assert [(g["fingerprint"], g["starts_at"], g["ends_at"]) for g in got] == [
        (fp, naive(base + timedelta(hours=s)), None if e is None else naive(base + timedelta(hours=e)))
        for fp, s, e in expected]
    assert [g["status"] for g in got] == ["firing", "resolved", "firing"]
    first = got[0]
    assert first["value"] == 0.66 and first["threshold"] == 0.5 and first["metric"] == "copied_error_overlap"
    assert first["example_request_ids"] == ["r000000001", "r000000002"]
    assert first["forensics_sql"].startswith("SELECT") and first["replay_offsets"].startswith("shadow.requests")
    assert first["summary"] == "copied_error_overlap = 0.66 > 0.5 on region=br"
    assert got[1]["value"] == 510.0  # the firing value, not the resolved row's
    wide = data.run("alert-timeline", since=base, until=base + timedelta(hours=12))
    assert len(wide) == 4 and wide[0]["fingerprint"] == "safety_escalation_recall_low/region=br"
    assert all(g["rule"] != "distillwatch_test" for g in wide)  # test alerts are left out
    br = data.run("alert-timeline", since=base, until=base + timedelta(hours=12), slices=(("region", "br"),))
    assert [g["slice"] for g in br] == ["region=br", "region=br"]
    # Starting exactly at the end of the period is outside it; ending exactly at its start is inside.
    early = data.run("alert-timeline", since=base + timedelta(hours=4), until=base + timedelta(hours=7))
    assert [g["fingerprint"] for g in early] == ["safety_escalation_recall_low/region=br", "copied_teacher_errors/region=br",
                                                 "student_latency_over_budget/device=android-lowmem"]


# --- calibration -------------------------------------------------------------------------------

def test_calibration_bins_for_student_and_teacher(data: Data) -> None:
    got = data.run("calibration")
    acc: dict[tuple[str, int], list[tuple[float, int]]] = defaultdict(list)
    for r in data.visible():
        for m in ("student", "teacher"):
            if r[f"{m}_correct"] is not None:
                p = f32(r[f"{m}_top1"])
                acc[(m, min(int(math.floor(p * 15)), 14))].append((p, r[f"{m}_correct"]))
    assert [(g["model"], g["bin"]) for g in got] == sorted(acc)
    for g in got:
        pairs = acc[(g["model"], g["bin"])]
        assert g["answers"] == len(pairs)
        assert _close(g["mean_confidence"], sum(p for p, _ in pairs) / len(pairs))
        assert _close(g["accuracy"], sum(c for _, c in pairs) / len(pairs))
        assert _close(g["bin_low"], g["bin"] / 15) and _close(g["bin_high"], (g["bin"] + 1) / 15)


# --- the command line --------------------------------------------------------------------------

FILL_CLI_STORE = """
import sys
from datetime import timedelta
from streams.clickhouse import open_store
from streams.migrations import migrate
from tests.integration.forensics_support import T0, evaluation, insert_evaluations
rows = [evaluation(f"c{i}", T0 + timedelta(minutes=i), slice={"region": "br" if i % 2 else "eu"},
                   teacher_wrong_claims=1, student_wrong_claims=2, copied_claims=1 if i < 3 else 0,
                   teacher_checkable=1, student_checkable=1) for i in range(6)]
with open_store(sys.argv[1], owner="test_forensics cli") as store:
    migrate(store)
    insert_evaluations(store, rows)
"""


def test_cli_runs_a_saved_query_and_lists_them(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path}/ch"
    env = {"PYTHONPATH": str(REPO_ROOT), "DISTILLWATCH_CLICKHOUSE__DSN": dsn,
           "DISTILLWATCH_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    # Filled in a child process: this process already runs the module's embedded store.
    fill = subprocess.run([sys.executable, "-c", FILL_CLI_STORE, dsn], env=env, capture_output=True,
                          text=True, timeout=120)
    assert fill.returncode == 0, fill.stderr

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "distillwatch", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    out = cli("forensics", "copied-errors", "--since", "2026-11-20T07:00:00Z", "--until", "2026-11-20T09:00:00Z",
              "--slice", "region=br", "--format", "json")
    assert out.returncode == 0, out.stderr
    got = [json.loads(line) for line in out.stdout.splitlines()]
    by = {g["slice"]: g for g in got}
    # rows c1, c3, c5 are region=br; c1 is the only one of them with a copy
    assert by["all"]["copied_claims"] == 1 and by["all"]["student_wrong_claims"] == 6
    assert by["region=br"]["example_request_ids"] == ["c1"]
    listed = cli("forensics", "list", "--format", "csv")
    assert listed.returncode == 0
    assert [line.split(",")[0] for line in listed.stdout.splitlines()[1:]] == list(forensics.SAVED)
    bad = cli("forensics", "copied-errors", "--slice", "region")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "KEY=VALUE" in bad.stderr
    unknown = cli("forensics", "nope")
    assert unknown.returncode == 1 and "copied-errors" in unknown.stderr
