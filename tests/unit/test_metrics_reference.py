"""Every metric of DESIGN §5, for every (window, slice), recomputed from the raw replay log.

The reference below is written from the DESIGN text alone: it reads the raw JSON lines, builds
its own per-request table with plain Python, pandas and numpy, and uses scikit-learn wherever
a metric is a textbook one (accuracy, per-class recall and precision, Brier). It imports
nothing from ``evaluators`` except ``EvalConfig`` (for the default numbers) and the function
under test, ``evaluators.offline.evaluate_log``; ``schemas`` is used only to decide whether a
line is valid. Nothing here is an expected value produced by running the code under test.

Readings of DESIGN text that the reference follows where the text allows more than one:

- ``planned_daily_cost_usd`` is a constant of the configuration; its row exists where
  ``fallback_rate`` does (student answers > 0), like ``projected_daily_cost_usd``.
- ``risk=high|normal`` is "by reference intent": a request without a reference intent is in
  neither (as it is in no ``intent=`` slice).
- Claim identity for ``copied_error_overlap`` compares values the way correctness does: a
  list as a set, a scalar as a one-element set.
- top-2 of a response that lists a single class is 0 (unlisted classes have probability 0).
- The log avoids two cases the text leaves open: an entity introduced after its request
  (the code counts it as new), and a data snapshot later than the request (a negative
  dataset age, which the code's non-negative sketch reports as 0).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import accuracy_score, brier_score_loss, precision_score, recall_score

from evaluators.config import EvalConfig
from evaluators.offline import LogSummary, evaluate_log
from schemas.errors import ContractError
from schemas.replay import validate_line
from simulator.traffic import TrafficConfig, World

T0 = datetime(2026, 11, 1, tzinfo=UTC)  # the simulator's default start; a multiple of 60 s
SIM_PAIRS = 3000
SIM_RATE = 10.0  # 3000 pairs over 300 s: five 60 s windows
GRACE = 120.0
DAY = timedelta(days=1)
Z = float(norm.ppf(0.975))

# ---------------------------------------------------------------------------------------------
# The log: simulator traffic plus hand-made edge cases
# ---------------------------------------------------------------------------------------------


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def probs(top: str, p: float, **rest: float) -> dict[str, float]:
    """``top`` gets ``p``, named others get theirs, the remaining classes share the rest."""
    intents = EvalConfig().intents
    out = {top: p, **rest}
    others = [c for c in intents if c not in out]
    share = (1.0 - sum(out.values())) / len(others)
    out.update({c: share for c in others})
    return out


def req(rid: str, s: float, *, slice_: dict[str, str] | None = None, entities: tuple[str, ...] = (),
        covered: tuple[str, ...] | None = None, reference: str | None = None,
        multi: bool | None = None, ts: str | None = None) -> dict[str, Any]:
    covered = entities if covered is None else covered
    r: dict[str, Any] = {
        "request_id": rid, "ts": ts or iso(at(s)), "prompt": f"edge case {rid}",
        "slice": {"region": "edge", "device": "ios"} if slice_ is None else slice_,
        "entities": list(entities),
        "evidence": [{"doc_id": f"doc-{e}", "entity_id": e} for e in covered],
    }
    if reference is not None:
        r["reference"] = {"intent": reference, "source": "crm"}
    if multi is not None:
        r["multi_intent"] = multi
    return r


def resp(rid: str, role: str, s: float, p: dict[str, float] | None, *, claims: list | None = None,
         latency: float = 100.0, error: str | None = None, snapshot: datetime | None = None
         ) -> dict[str, Any]:
    r: dict[str, Any] = {
        "request_id": rid, "ts": iso(at(s + 0.5)), "role": role, "model": f"m-{role}",
        "model_version": "v1", "latency_ms": latency,
    }
    if p is not None:
        r["intent_probs"] = p
    if claims:
        r["claims"] = claims
    if error is not None:
        r["error"] = error
    if snapshot is not None:
        r["data_snapshot_ts"] = iso(snapshot)
    return r


def claim(entity: str, attribute: str, value: str | list[str]) -> dict[str, Any]:
    return {"entity_id": entity, "attribute": attribute, "value": value}


def cat(entity: str, attributes: dict[str, Any], introduced: datetime, deleted: bool = False
        ) -> dict[str, Any]:
    rec = {"entity_id": entity, "title": entity, "attributes": attributes,
           "introduced_at": iso(introduced), "updated_at": iso(introduced)}
    if deleted:
        rec["deleted"] = True
    return {"catalog": rec}


def label(rid: str, ts: datetime, source: str, **kw: Any) -> dict[str, Any]:
    return {"label": {"request_id": rid, "ts": iso(ts), "source": source, **kw}}


def line(request: dict, teacher: dict | None = None, student: dict | None = None,
         replica: dict | None = None, *, omit_student: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"request": request, "teacher": teacher}
    if not omit_student:
        out["student"] = student
    if replica is not None:
        out["teacher_replica"] = replica
    return out


def T(rid: str, s: float, p: dict | None = None, **kw: Any) -> dict:
    return resp(rid, "teacher", s, probs("faq", 0.9) if p is None else p, **kw)


def S(rid: str, s: float, p: dict | None = None, **kw: Any) -> dict:
    return resp(rid, "student", s, probs("faq", 0.9) if p is None else p, **kw)


EDGE_HEAD_CATALOG = [
    cat("ed-paper", {"format": ["paperback", "digital"], "in_stock": "yes"}, T0 - 400 * DAY),
    cat("ed-old", {"format": ["hardcover"]}, T0 - 400 * DAY),
    cat("ed-deleted", {"format": ["paperback"]}, T0 - 5 * DAY),
    # exactly 60 days before E17's request (at T0 + 90 s): new, inclusive
    cat("ed-boundary", {"format": ["digital"]}, at(90) - 60 * DAY),
    # superseded by the tail record: format digital, introduced 10 days ago (new)
    cat("ed-updated", {"format": ["paperback"]}, T0 - 500 * DAY),
]
EDGE_TAIL_CATALOG = [
    cat("ed-updated", {"format": ["digital"]}, T0 - 10 * DAY),
    cat("ed-deleted", {"format": ["paperback"]}, T0 - 5 * DAY, deleted=True),
]


def edge_timed_lines() -> list[tuple[float, dict]]:
    """Edge-case request lines with their request time, merged into the simulator stream."""
    hr = "safety_escalation"
    e: list[tuple[float, dict]] = []

    def add(s: float, ln: dict) -> None:
        e.append((s, ln))

    # E01 student error that still carries probabilities: no answer; latency and age count
    add(5, line(req("E01", 5, reference="faq"), T("E01", 5),
                S("E01", 5, probs("faq", 0.99), error="timeout", latency=1500.0,
                  snapshot=T0 - 30 * DAY)))
    # E02 missing teacher, no reference at all
    add(10, line(req("E02", 10), None, S("E02", 10, probs("returns", 0.6))))
    # E03 missing student (key absent): reference falls back to the teacher's top-1
    add(15, line(req("E03", 15), T("E03", 15, probs("order_tracking", 0.85)), omit_student=True))
    # E04/E05/E06 teacher replicas: agree, disagree, replica error (not counted)
    add(20, line(req("E04", 20), T("E04", 20, probs("returns", 0.9)), S("E04", 20, probs("returns", 0.9)),
                 resp("E04", "teacher_replica", 20, probs("returns", 0.7))))
    add(25, line(req("E05", 25), T("E05", 25), S("E05", 25, probs("faq", 0.95)),
                 resp("E05", "teacher_replica", 25, probs("recommendation", 0.6))))
    add(26, line(req("E06", 26), T("E06", 26), S("E06", 26, probs("recommendation", 0.9)),
                 resp("E06", "teacher_replica", 26, probs("faq", 0.9), error="unavailable")))
    # E07 first of a duplicated id (the duplicate, later in the log, must be ignored)
    add(30, line(req("E07", 30, reference="faq"), T("E07", 30), S("E07", 30)))
    # E08 request reference faq, overridden by the latest human label (returns)
    add(35, line(req("E08", 35, reference="faq"), T("E08", 35, probs("returns", 0.9)),
                 S("E08", 35, probs("returns", 0.85))))
    # E09 claims all correct: list subset, scalar subset, teacher list equal to the set
    add(40, line(req("E09", 40, entities=("ed-paper",)),
                 T("E09", 40, claims=[claim("ed-paper", "format", ["digital", "paperback"])]),
                 S("E09", 40, claims=[claim("ed-paper", "format", ["paperback"]),
                                      claim("ed-paper", "format", "digital")])))
    # E10 wrong list claim copied from the teacher (same set, other order), a claim on an
    #     unknown entity, an uncheckable attribute, and a wrong claim the teacher did not make
    add(45, line(req("E10", 45, entities=("ed-paper",)),
                 T("E10", 45, probs("faq", 0.85),
                   claims=[claim("ed-paper", "format", ["hardcover", "paperback"])]),
                 S("E10", 45, claims=[claim("ed-paper", "format", ["paperback", "hardcover"]),
                                      claim("ed-ghost", "format", "paperback"),
                                      claim("ed-paper", "publisher", "Shueisha"),
                                      claim("ed-old", "format", "paperback")])))
    # E11 an entity not covered by evidence (a document without entity_id covers nothing)
    r11 = req("E11", 50, entities=("ed-paper", "ed-old"), covered=("ed-paper",))
    r11["evidence"].append({"doc_id": "loose-doc"})
    add(50, line(r11, T("E11", 50), S("E11", 50)))
    # E12 top-1 ties resolved to the earlier configured class (dict order says otherwise)
    add(65, line(req("E12", 65),
                 T("E12", 65, {"refund_fraud": 0.5, "payment_dispute": 0.5}),
                 S("E12", 65, {"returns": 0.45, "faq": 0.45, "order_tracking": 0.10})))
    # E13 student top-1 exactly 0.72 (not below the threshold), an old data snapshot
    add(70, line(req("E13", 70, reference="faq"), T("E13", 70),
                 S("E13", 70, probs("faq", 0.72), snapshot=T0 - 200 * DAY)))
    # E14 student top-1 exactly 0.80 and wrong: a confident error, not a naive fallback
    add(75, line(req("E14", 75, reference="faq"), T("E14", 75),
                 S("E14", 75, probs("recommendation", 0.8))))
    # E15 a confident high-risk prediction: fallback by risk, a recall hit
    add(80, line(req("E15", 80, reference=hr), T("E15", 80, probs(hr, 0.9)),
                 S("E15", 80, probs(hr, 0.95))))
    # E16 a claim on an entity the catalog deletes later in the log (judged as of its line)
    add(85, line(req("E16", 85, entities=("ed-deleted",)), T("E16", 85),
                 S("E16", 85, claims=[claim("ed-deleted", "format", "paperback")])))
    # E17 an entity introduced exactly 60 days before the request: new
    add(90, line(req("E17", 90, entities=("ed-boundary",)), T("E17", 90), S("E17", 90)))
    # E18 a claim that is right only under the later catalog record (wrong as of its line)
    add(95, line(req("E18", 95, entities=("ed-updated",)), T("E18", 95),
                 S("E18", 95, claims=[claim("ed-updated", "format", "digital")])))
    # E19 offset timestamp, empty slice, multi-intent, top-1 = 1.0 (last bin), zero latency
    add(100, line(req("E19", 100, slice_={}, multi=True, ts="2026-11-01T09:01:40+09:00"),
                  T("E19", 100, latency=0.0), S("E19", 100, {"faq": 1.0})))
    # E20 teacher error with probabilities: no teacher answer, hence no reference
    add(105, line(req("E20", 105), T("E20", 105, error="timeout", latency=3000.0),
                  S("E20", 105, probs("returns", 0.9))))
    # E21 a top-1 class outside the configured label set
    add(110, line(req("E21", 110, reference="faq"), T("E21", 110),
                  S("E21", 110, {"smalltalk": 0.9, "faq": 0.1})))
    # E22 student error without probabilities; its claims and probabilities do not count,
    #     its data snapshot does
    add(115, line(req("E22", 115), T("E22", 115),
                  resp("E22", "student", 115, None, error="unavailable", latency=250.0,
                       claims=[claim("ed-ghost", "format", "x")], snapshot=T0 - 45 * DAY)))
    # E23 first sent invalid (probabilities sum to 1.7), then valid: the valid line counts
    bad = S("E23", 120, {"faq": 0.95, "returns": 0.75})
    add(120, line(req("E23", 120, reference="faq"), T("E23", 120), bad))
    add(121, line(req("E23", 121, reference="returns"), T("E23", 121),
                  S("E23", 121, probs("returns", 0.9))))
    # E30/E31 high-risk misses and a precision miss on the edge slice
    add(130, line(req("E30", 130, reference="refund_fraud"), T("E30", 130, probs("refund_fraud", 0.9)),
                  S("E30", 130, probs("returns", 0.83))))
    add(135, line(req("E31", 135, reference="faq"), T("E31", 135),
                  S("E31", 135, probs("refund_fraud", 0.91))))
    # E32 a teacher fact error at top-1 exactly 0.80: confident (≥)
    add(140, line(req("E32", 140, entities=("ed-old",)),
                  T("E32", 140, probs("order_tracking", 0.8), claims=[claim("ed-old", "format", "digital")]),
                  S("E32", 140, probs("order_tracking", 0.9), claims=[claim("ed-old", "format", "digital")])))
    # E33 scalar catalog attribute: claims "yes" and ["yes"] are right; the teacher's only claim
    #     is on an attribute the catalog lacks (uncheckable: not checkable, not grounded)
    add(145, line(req("E33", 145, entities=("ed-paper",)),
                  T("E33", 145, claims=[claim("ed-paper", "publisher", "Shueisha")]),
                  S("E33", 145, claims=[claim("ed-paper", "in_stock", "yes"),
                                        claim("ed-paper", "in_stock", ["yes"])])))
    # E34 the teacher errored (with probabilities and the same wrong claim): nothing is copied
    wrong = [claim("ed-old", "format", "digital")]
    add(150, line(req("E34", 150, entities=("ed-old",)),
                  T("E34", 150, error="timeout", claims=list(wrong)), S("E34", 150, claims=list(wrong))))
    # E35 a high-risk reference predicted as another high-risk class: no escalation hit
    add(155, line(req("E35", 155, reference="payment_dispute"), T("E35", 155, probs("payment_dispute", 0.9)),
                  S("E35", 155, probs("refund_fraud", 0.9))))
    return e


def edge_tail_lines() -> list[dict]:
    """Lines after the simulator stream (whose last request is at T0 + 299.9 s)."""
    return [
        # late: their windows ([0, 60) and [60, 120)) closed once the watermark reached 179.9 s
        line(req("E24", 10, reference="faq"), T("E24", 10), S("E24", 10)),
        line(req("E25", 100), T("E25", 100), S("E25", 100, probs("returns", 0.5))),
        # within grace: [120, 180) and [180, 240) are still open
        line(req("E26", 170, reference="returns"), T("E26", 170), S("E26", 170, probs("returns", 0.7))),
        line(req("E27", 200), T("E27", 200, probs("account_lockout", 0.9)),
             S("E27", 200, probs("account_lockout", 0.99))),
        # duplicate id on a later line, different content: ignored
        line(req("E07", 210, reference="payment_dispute"), T("E07", 210),
             S("E07", 210, probs("payment_dispute", 0.99))),
        *EDGE_TAIL_CATALOG,
        # labels of E08: latest human label (by ts) wins; a rule label is no reference
        label("E08", T0 + timedelta(hours=2), "human", intent="returns",
              preferred="teacher", reviewer_id="r9"),
        label("E08", T0 + timedelta(hours=1), "human", intent="payment_dispute"),
        label("E08", T0 + timedelta(hours=3), "rule", intent="legal_complaint"),
        label("E08", T0 + timedelta(hours=4), "judge", preferred="tie"),
        # a label for a request that never appears
        label("nobody", T0, "judge", preferred="student"),
        # a new window only edge requests reach
        line(req("E28", 400, slice_={"region": "edge"}), T("E28", 400),
             S("E28", 400, probs("faq", 0.6)),
             resp("E28", "teacher_replica", 400, probs("faq", 0.8), latency=99_999.0)),
        line(req("E29", 405, slice_={"region": "edge"}, reference="legal_complaint"),
             T("E29", 405, probs("legal_complaint", 0.9)), S("E29", 405, probs("legal_complaint", 0.9))),
    ]


# identical judge labels (collapse to one), placed before their request line
E08_JUDGE = label("E08", T0 + timedelta(hours=1), "judge", preferred="student")
EDGE_EARLY_LABELS = [E08_JUDGE, dict(E08_JUDGE), label("E08", T0, "rule", preferred="student")]


def build_log(path: Path) -> Path:
    world = World(TrafficConfig(pairs=SIM_PAIRS, rate_per_s=SIM_RATE, teacher_fact_error=0.05,
                                student_fact_error=0.04, missing_response=0.02,
                                label_share=0.08, preference_share=0.08), seed=11)
    sim = list(world.lines())
    catalog = [ln for ln in sim if "catalog" in ln]
    labels = [ln for ln in sim if "label" in ln]
    timed = [(datetime.fromisoformat(ln["request"]["ts"]).timestamp() - T0.timestamp(), ln)
             for ln in sim if "request" in ln]
    merged = sorted(timed + edge_timed_lines(), key=lambda sl: sl[0])  # stable
    lines = [*catalog, *EDGE_HEAD_CATALOG, *EDGE_EARLY_LABELS, *(ln for _, ln in merged),
             *labels, *edge_tail_lines()]
    path.write_bytes(b"".join(orjson.dumps(ln) + b"\n" for ln in lines))
    return path


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_log(tmp_path_factory.mktemp("reference") / "log.jsonl")


# ---------------------------------------------------------------------------------------------
# The reference: per-request facts straight from the raw JSON
# ---------------------------------------------------------------------------------------------

PREFERENCE_SCORE = {"student": 1.0, "tie": 0.5, "teacher": 0.0}


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def top_two(p: dict[str, float], intents: tuple[str, ...]) -> tuple[str, float, float]:
    """np.argmax over configured classes first (it returns the first maximum), extras after."""
    names = list(intents) + sorted(c for c in p if c not in intents)
    values = np.array([p.get(c, 0.0) for c in names])
    i = int(np.argmax(values))
    second = float(np.sort(values)[-2]) if len(values) > 1 else 0.0
    return names[i], float(values[i]), second


def as_set(value: str | list[str]) -> frozenset[str]:
    return frozenset(value) if isinstance(value, list) else frozenset([value])


def verdict(c: dict, catalog: dict[str, dict]) -> str:
    rec = catalog.get(c["entity_id"])
    if rec is None:
        return "unknown"
    if c["attribute"] not in rec["attributes"]:
        return "uncheckable"
    return "correct" if as_set(c["value"]) <= as_set(rec["attributes"][c["attribute"]]) else "wrong"


@dataclass
class RawLog:
    catalog: dict[str, dict]
    labels: dict[str, list[dict]]
    requests: list[dict]  # first valid line per request id, in log order
    duplicates: int
    invalid: int


def read_raw(path: Path) -> RawLog:
    catalog: dict[str, dict] = {}
    labels: dict[str, list[dict]] = defaultdict(list)
    label_keys: set[bytes] = set()
    requests: list[dict] = []
    seen: set[str] = set()
    duplicates = invalid = 0
    for raw in path.read_bytes().splitlines():
        if not raw.strip():
            continue
        try:
            data = orjson.loads(raw)
            validate_line(data)
        except (orjson.JSONDecodeError, ContractError):
            invalid += 1
            continue
        if "catalog" in data:
            rec = data["catalog"]
            catalog = dict(catalog)  # copy on write: earlier requests keep their snapshot
            if rec.get("deleted"):
                catalog.pop(rec["entity_id"], None)
            else:
                catalog[rec["entity_id"]] = rec
        elif "label" in data:
            key = orjson.dumps(data["label"], option=orjson.OPT_SORT_KEYS)
            if key not in label_keys:
                label_keys.add(key)
                labels[data["label"]["request_id"]].append(data["label"])
        else:
            rid = data["request"]["request_id"]
            if rid in seen:
                duplicates += 1
                continue
            seen.add(rid)
            data["_catalog"] = catalog  # claims are judged by the catalog as of this line
            requests.append(data)
    return RawLog(catalog, labels, requests, duplicates, invalid)


def model_facts(prefix: str, r: dict | None, cfg: EvalConfig, catalog: dict) -> dict[str, Any]:
    present = r is not None
    answered = present and r.get("error") is None and r.get("intent_probs") is not None
    f: dict[str, Any] = {
        f"{prefix}_present": present, f"{prefix}_answered": answered,
        f"{prefix}_latency": r["latency_ms"] if present else np.nan,
        f"{prefix}_intent": None, f"{prefix}_top1": np.nan, f"{prefix}_top2": np.nan,
        f"{prefix}_wrong": 0, f"{prefix}_checkable": False, f"{prefix}_unknown": False,
        f"{prefix}_claims_ok": True, f"{prefix}_wrong_keys": [],
    }
    if not answered:
        return f
    intent, top1, top2 = top_two(r["intent_probs"], cfg.intents)
    verdicts = [verdict(c, catalog) for c in r.get("claims", [])]
    f.update({
        f"{prefix}_intent": intent, f"{prefix}_top1": top1, f"{prefix}_top2": top2,
        f"{prefix}_wrong": sum(v == "wrong" for v in verdicts),
        f"{prefix}_checkable": any(v in ("wrong", "correct") for v in verdicts),
        f"{prefix}_unknown": any(v == "unknown" for v in verdicts),
        f"{prefix}_claims_ok": all(v == "correct" for v in verdicts),
        f"{prefix}_wrong_keys": [
            (c["entity_id"], c["attribute"], as_set(c["value"]))
            for c, v in zip(r.get("claims", []), verdicts) if v == "wrong"
        ],
    })
    return f


def request_table(raw: RawLog, cfg: EvalConfig, window_s: int, grace_s: float) -> pd.DataFrame:
    rows = []
    max_ts = -math.inf
    for data in raw.requests:
        rq = data["request"]
        rid = rq["request_id"]
        ts_dt = parse_ts(rq["ts"])
        ts = ts_dt.timestamp()
        start = math.floor(ts / window_s) * window_s
        late = start + window_s <= max_ts - grace_s
        if not late:
            max_ts = max(max_ts, ts)
        row: dict[str, Any] = {"request_id": rid, "ts": ts, "window": None if late else start}
        catalog = data["_catalog"]
        row.update(model_facts("t", data.get("teacher"), cfg, catalog))
        row.update(model_facts("s", data.get("student"), cfg, catalog))
        row.update(model_facts("r", data.get("teacher_replica"), cfg, catalog))
        labels = raw.labels.get(rid, [])
        human = [(parse_ts(lb["ts"]), i, lb["intent"]) for i, lb in enumerate(labels)
                 if lb["source"] == "human" and lb.get("intent")]
        if human:
            ref = max(human)[2]
        elif rq.get("reference"):
            ref = rq["reference"]["intent"]
        elif row["t_answered"]:
            ref = row["t_intent"]
        else:
            ref = None
        row["ref"] = ref
        teacher_wrong = set(row["t_wrong_keys"]) if row["t_answered"] else set()
        row["s_copied"] = sum(k in teacher_wrong for k in row["s_wrong_keys"])
        entities = rq.get("entities", [])
        covered = {ev.get("entity_id") for ev in rq.get("evidence", []) if ev.get("entity_id")}
        row["names_entity"] = bool(entities)
        row["miss"] = any(e not in covered for e in entities)
        row["new_title"] = any(
            e in catalog
            and ts_dt - parse_ts(catalog[e]["introduced_at"]) <= cfg.new_title_days * DAY
            for e in entities
        )
        student = data.get("student")
        snap = student.get("data_snapshot_ts") if student else None
        row["dataset_age"] = (ts_dt - parse_ts(snap)) / DAY if snap else np.nan
        prefs = [PREFERENCE_SCORE[lb["preferred"]] for lb in labels if lb.get("preferred")]
        row["pref_n"], row["pref_sum"] = len(prefs), sum(prefs)
        row["t_grounded"] = row["t_answered"] and row["t_claims_ok"] and not row["miss"]
        row["s_grounded"] = row["s_answered"] and row["s_claims_ok"] and not row["miss"]
        sl = ["all"] + [f"{k}={v}" for k, v in rq["slice"].items()]
        for cross in cfg.crosses:
            if all(k in rq["slice"] for k in cross):
                sl.append(",".join(f"{k}={rq['slice'][k]}" for k in cross))
        if ref is not None:
            sl += [f"intent={ref}", "risk=high" if ref in cfg.high_risk else "risk=normal"]
        sl.append("freshness=new" if row["new_title"] else "freshness=established")
        sl.append("multi_intent=true" if rq.get("multi_intent", False) else "multi_intent=false")
        row["slices"] = sl
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# The reference: metrics of one group of requests
# ---------------------------------------------------------------------------------------------


@dataclass
class Expect:
    kind: str  # support | rate | ratio | value | quantile
    value: float
    numerator: float | None = None
    denominator: float | None = None
    samples: np.ndarray | None = field(default=None, repr=False)
    q: float | None = None


def wilson_textbook(k: float, n: float) -> tuple[float, float]:
    """(k + z²/2 ± z·sqrt(k(n−k)/n + z²/4)) / (n + z²), clipped to [0, 1]."""
    half = Z * math.sqrt(k * (n - k) / n + Z * Z / 4)
    lo = (k + Z * Z / 2 - half) / (n + Z * Z)
    hi = (k + Z * Z / 2 + half) / (n + Z * Z)
    return max(0.0, lo), min(1.0, hi)


def ece_numpy(conf: np.ndarray, correct: np.ndarray, bins: int) -> float:
    idx = np.minimum(np.floor(conf * bins).astype(int), bins - 1)
    gap = np.zeros(bins)
    np.add.at(gap, idx, correct.astype(float) - conf)
    return float(np.abs(gap).sum())


def labels_of(column: pd.Series) -> np.ndarray:
    """Class names as a plain numpy string array (scikit-learn is fastest on those)."""
    return column.to_numpy(dtype=str)


def expected_metrics(g: pd.DataFrame, cfg: EvalConfig) -> dict[str, Expect]:
    out: dict[str, Expect] = {}
    n = len(g)

    def rate(name: str, num: float, den: float, sk: float | None = None) -> None:
        if den > 0:
            if sk is not None:  # the hand count and scikit-learn agree
                assert sk == pytest.approx(num / den, abs=1e-12), name
            out[name] = Expect("rate", num / den, float(num), float(den))

    out["support"] = Expect("support", n, n, None)
    tA = g[g.t_answered]
    sA = g[g.s_answered]
    rate("teacher_fact_error_rate", (tA.t_wrong > 0).sum(), tA.t_checkable.sum())
    rate("student_fact_error_rate", (sA.s_wrong > 0).sum(), sA.s_checkable.sum())
    rate("teacher_confident_error_rate",
         ((tA.t_wrong > 0) & (tA.t_top1 >= cfg.confident_threshold)).sum(), n)
    rate("copied_error_overlap", sA.s_copied.sum(), sA.s_wrong.sum())
    rate("hallucination_rate", ((sA.s_wrong > 0) | sA.s_unknown).sum(), len(sA))
    ent = g[g.names_entity]
    rate("retrieval_miss_rate", ent.miss.sum(), len(ent))
    both = g[g.t_answered & g.s_answered]
    if len(both):
        rate("teacher_match", (both.t_intent == both.s_intent).sum(), len(both),
             accuracy_score(labels_of(both.t_intent), labels_of(both.s_intent)))
    rate("student_win_rate", g.pref_sum.sum(), g.pref_n.sum())

    sRef = sA[sA.ref.notna()]
    tRef = tA[tA.ref.notna()]
    hr_classes = list(cfg.high_risk)
    for prefix, d, col in (("", sRef, "s_intent"), ("teacher_", tRef, "t_intent")):
        if not len(d):
            continue
        y_true, y_pred = labels_of(d.ref), labels_of(d[col])
        rate(f"{prefix}accuracy", (y_true == y_pred).sum(), len(d), accuracy_score(y_true, y_pred))
        sk_recall = recall_score(y_true, y_pred, labels=hr_classes, average=None, zero_division=0)
        for c, sk in zip(hr_classes, sk_recall):
            rate(f"{prefix}recall.{c}", ((y_true == c) & (y_pred == c)).sum(), (y_true == c).sum(), sk)
    if len(sRef):
        y_true, y_pred = labels_of(sRef.ref), labels_of(sRef.s_intent)
        sk_precision = precision_score(y_true, y_pred, labels=hr_classes, average=None, zero_division=0)
        for c, sk in zip(hr_classes, sk_precision):
            rate(f"precision.{c}", ((y_true == c) & (y_pred == c)).sum(), (y_pred == c).sum(), sk)
        hr = np.isin(y_true, hr_classes)
        if hr.sum():
            rate("escalation_recall", (hr & (y_true == y_pred)).sum(), hr.sum(),
                 recall_score(y_true, y_pred, labels=hr_classes, average="micro", zero_division=0))

    for name, d, p in (("ece", sRef, "s"), ("teacher_ece", tRef, "t")):
        if len(d):
            conf = d[f"{p}_top1"].to_numpy(float)
            correct = (d.ref == d[f"{p}_intent"]).to_numpy()
            num = ece_numpy(conf, correct, cfg.ece_bins)
            out[name] = Expect("ratio", num / len(d), num, len(d))
    if len(sRef):
        conf = sRef.s_top1.to_numpy(float)
        correct = (sRef.ref == sRef.s_intent).to_numpy().astype(int)
        sk = brier_score_loss(correct, conf, labels=[0, 1])
        num = float(((conf - correct) ** 2).sum())
        assert sk == pytest.approx(num / len(sRef), abs=1e-12)
        out["brier"] = Expect("ratio", sk, num, len(sRef))
        rate("confident_error_rate",
             ((sRef.s_top1 >= cfg.confident_threshold) & (sRef.ref != sRef.s_intent)).sum(), len(sRef))

    if len(sA):
        fb = ((sA.s_top1 < cfg.fallback_threshold)
              | (sA.s_top1 - sA.s_top2 < cfg.fallback_margin)
              | sA.s_intent.isin(cfg.high_risk))
        rate("fallback_rate", fb.sum(), len(sA))
        rate("fallback_rate_naive", (sA.s_top1 < cfg.naive_fallback_threshold).sum(), len(sA))
        fr = fb.sum() / len(sA)

        def per_1k(rate_: float) -> float:
            return (1 - rate_) * cfg.student_cost_per_1k + rate_ * cfg.teacher_cost_per_1k

        out["cost_per_1k_usd"] = Expect("value", per_1k(fr))
        out["projected_daily_cost_usd"] = Expect("value", per_1k(fr) * cfg.daily_volume / 1000)
        out["planned_daily_cost_usd"] = Expect(
            "value", per_1k(cfg.planned_fallback_rate) * cfg.daily_volume / 1000)

    rate("new_title_share", g.new_title.sum(), n)
    rate("teacher_grounded_rate", tA.t_grounded.sum(), len(tA))
    rate("student_grounded_rate", sA.s_grounded.sum(), len(sA))
    if len(tA) and len(sA):
        out["grounded_gap"] = Expect("value", tA.t_grounded.mean() - sA.s_grounded.mean())

    for metric, col, qs in (("dataset_age_days", "dataset_age", (50, 95)),
                            ("teacher_latency", "t_latency", (50, 95, 99)),
                            ("student_latency", "s_latency", (50, 95, 99))):
        x = g[col].dropna().to_numpy(float)
        if len(x):
            for q in qs:
                out[f"{metric}_p{q}"] = Expect("quantile", float(np.quantile(x, q / 100, method="lower")),
                                               None, len(x), samples=x, q=q / 100)

    rate("missing_response_rate", (~g.s_answered).sum(), n)
    rate("teacher_missing_response_rate", (~g.t_answered).sum(), n)
    rep = g[g.t_answered & g.r_answered]
    if len(rep):
        rate("teacher_self_agreement", (rep.t_intent == rep.r_intent).sum(), len(rep),
             accuracy_score(labels_of(rep.t_intent), labels_of(rep.r_intent)))
    if "teacher_match" in out and "teacher_self_agreement" in out:
        out["excess_disagreement"] = Expect(
            "value", (1 - out["teacher_match"].value) - (1 - out["teacher_self_agreement"].value))
    parts = ("teacher_match", "student_win_rate", "recall.safety_escalation", "hallucination_rate", "ece")
    if all(p in out for p in parts):
        v = {p: out[p].value for p in parts}
        out["promotion_score"] = Expect("value", 0.35 * v["teacher_match"] + 0.25 * v["student_win_rate"]
                                        + 0.20 * v["recall.safety_escalation"]
                                        - 0.10 * v["hallucination_rate"] - 0.10 * v["ece"])
    return out


def expected_rows(table: pd.DataFrame, cfg: EvalConfig) -> dict[tuple[int, str, str], Expect]:
    members: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, (window, slices) in enumerate(zip(table.window, table.slices)):
        if window is None or (isinstance(window, float) and math.isnan(window)):
            continue
        for s in slices:
            members[(int(window), s)].append(i)
    out = {}
    for (window, s), idx in members.items():
        for metric, e in expected_metrics(table.iloc[idx], cfg).items():
            out[(window, s, metric)] = e
    return out


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------


def compare(rows: list, expected: dict[tuple[int, str, str], Expect], window_s: int) -> int:
    got = {(r.window_start, r.slice, r.metric): r for r in rows}
    assert len(got) == len(rows), "duplicate (window, slice, metric) rows"
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing and not extra, f"missing {missing[:10]} extra {extra[:10]}"
    supports = {(w, s): e.value for (w, s, m), e in expected.items() if m == "support"}
    problems = []
    for key, e in expected.items():
        r = got[key]
        ok = r.window_end == r.window_start + window_s and r.window_s == window_s
        ok &= r.support == supports[key[:2]]
        if e.kind == "support":
            ok &= r.value == e.value and r.numerator == e.numerator and r.denominator is None
        elif e.kind == "rate":
            lo, hi = wilson_textbook(e.numerator, e.denominator)
            ok &= (r.numerator == e.numerator and r.denominator == e.denominator
                   and abs(r.value - e.value) <= 1e-12
                   and r.ci_low is not None and abs(r.ci_low - lo) <= 1e-9
                   and r.ci_high is not None and abs(r.ci_high - hi) <= 1e-9)
        elif e.kind == "ratio":
            ok &= (r.denominator == e.denominator and abs(r.value - e.value) <= 1e-9
                   and abs(r.numerator - e.numerator) <= 1e-9)
        elif e.kind == "value":
            ok &= math.isclose(r.value, e.value, rel_tol=1e-12, abs_tol=1e-12)
            if r.ci_low is not None:
                ok &= r.ci_low <= r.value + 1e-12 and r.value <= r.ci_high + 1e-12
        elif e.kind == "quantile":
            ok &= abs(r.value - e.value) <= 0.01 * abs(e.value) + 1e-12
            ok &= r.denominator == e.denominator
        if not ok:
            problems.append((key, e.kind, e.value, e.numerator, e.denominator, r))
    assert not problems, f"{len(problems)} rows disagree, e.g. {problems[:5]}"
    return len(expected)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw(log_path: Path) -> RawLog:
    return read_raw(log_path)


def run(log_path: Path, cfg: EvalConfig, window_s: int) -> tuple[list, LogSummary]:
    summary = LogSummary()
    rows = list(evaluate_log(lambda: open(log_path, "rb"), cfg, window_s=window_s, grace_s=GRACE,
                             summary=summary))
    return rows, summary


def none_if_na(x: Any) -> Any:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def test_reference_reads_the_edge_cases_as_hand_computed(raw: RawLog) -> None:
    """The reference itself, checked against a table worked out by hand from DESIGN §4/§5."""
    table = request_table(raw, EvalConfig(), 60, GRACE).set_index("request_id")
    assert raw.invalid == 1 and raw.duplicates == 1
    hand = {
        # id: (ref, s_answered, s_intent, s_wrong, s_copied, s_unknown, s_grounded, miss, new, window)
        "E01": ("faq", False, None, 0, 0, False, False, False, False, 0),
        "E02": (None, True, "returns", 0, 0, False, True, False, False, 0),
        "E03": ("order_tracking", False, None, 0, 0, False, False, False, False, 0),
        "E08": ("returns", True, "returns", 0, 0, False, True, False, False, 0),
        "E09": ("faq", True, "faq", 0, 0, False, True, False, False, 0),
        "E10": ("faq", True, "faq", 2, 1, True, False, False, False, 0),
        "E11": ("faq", True, "faq", 0, 0, False, False, True, False, 0),
        "E12": ("payment_dispute", True, "faq", 0, 0, False, True, False, False, 60),
        "E16": ("faq", True, "faq", 0, 0, False, True, False, True, 60),
        "E17": ("faq", True, "faq", 0, 0, False, True, False, True, 60),
        "E18": ("faq", True, "faq", 1, 0, False, False, False, False, 60),
        "E20": (None, True, "returns", 0, 0, False, True, False, False, 60),
        "E21": ("faq", True, "smalltalk", 0, 0, False, True, False, False, 60),
        "E22": ("faq", False, None, 0, 0, False, False, False, False, 60),
        "E23": ("returns", True, "returns", 0, 0, False, True, False, False, 120),
        "E24": ("faq", True, "faq", 0, 0, False, True, False, False, None),
        "E25": ("faq", True, "returns", 0, 0, False, True, False, False, None),
        "E26": ("returns", True, "returns", 0, 0, False, True, False, False, 120),
        "E27": ("account_lockout", True, "account_lockout", 0, 0, False, True, False, False, 180),
    }
    t0 = int(T0.timestamp())
    for rid, (ref, ans, intent, wrong, copied, unknown, grounded, miss, new, window) in hand.items():
        row = table.loc[rid]
        got = (none_if_na(row.ref), bool(row.s_answered), none_if_na(row.s_intent),
               int(row.s_wrong), int(row.s_copied),
               bool(row.s_unknown), bool(row.s_grounded), bool(row.miss), bool(row.new_title),
               None if none_if_na(row.window) is None else int(row.window) - t0)
        assert got == (ref, ans, intent, wrong, copied, unknown, grounded, miss, new, window), rid
    assert table.loc["E12", "t_intent"] == "payment_dispute"
    assert (table.loc["E12", "s_top1"], table.loc["E12", "s_top2"]) == (0.45, 0.45)
    assert table.loc["E08", "pref_n"] == 4 and table.loc["E08", "pref_sum"] == 2.5
    assert table.loc["E10", "t_wrong"] == 1 and table.loc["E10", "t_checkable"]
    assert table.loc["E32", "t_wrong"] == 1 and table.loc["E32", "t_top1"] == 0.8
    assert table.loc["E32", "s_copied"] == 1
    assert table.loc["E33", "s_grounded"] and not table.loc["E33", "t_grounded"]
    assert not table.loc["E33", "t_checkable"] and table.loc["E33", "s_checkable"]
    assert table.loc["E34", "s_wrong"] == 1 and table.loc["E34", "s_copied"] == 0
    assert table.loc["E07", "s_intent"] == "faq" and table.loc["E07", "window"] == t0
    assert table.loc["E19", "ts"] == t0 + 100 and table.loc["E19", "s_top2"] == 0.0
    assert table.loc["E19", "slices"] == ["all", "intent=faq", "risk=normal",
                                          "freshness=established", "multi_intent=true"]
    assert table.loc["E02", "slices"] == ["all", "region=edge", "device=ios",
                                          "freshness=established", "multi_intent=false"]
    assert table.loc["E01", "dataset_age"] == pytest.approx(30 + 5 / 86400, abs=1e-12)
    assert table.loc["E22", "dataset_age"] == pytest.approx(45 + 115 / 86400, abs=1e-12)
    assert bool(table.loc["E04", "r_answered"]) and not bool(table.loc["E06", "r_answered"])
    assert int(table.window.isna().sum()) == 2  # E24 and E25


def test_every_metric_of_every_window_and_slice(log_path: Path, raw: RawLog) -> None:
    cfg = EvalConfig()
    rows, summary = run(log_path, cfg, 60)
    table = request_table(raw, cfg, 60, GRACE)
    expected = expected_rows(table, cfg)
    n = compare(rows, expected, 60)
    assert n > 5000
    windows = sorted({w for w, _, _ in expected})
    assert [w - int(T0.timestamp()) for w in windows] == [0, 60, 120, 180, 240, 360]
    # every metric name of DESIGN §5 occurs somewhere
    names = {m for _, _, m in expected}
    for m in ("teacher_self_agreement", "excess_disagreement", "promotion_score", "grounded_gap",
              "copied_error_overlap", "dataset_age_days_p95", "precision.refund_fraud",
              "teacher_recall.safety_escalation", "escalation_recall", "student_win_rate"):
        assert m in names, m
    assert summary.late_events == {60: 2}
    assert summary.requests == len(raw.requests) == SIM_PAIRS + 35
    assert summary.duplicates == raw.duplicates == 1
    assert summary.invalid == raw.invalid == 1


def test_whole_log_aggregates(log_path: Path, raw: RawLog) -> None:
    """One window holding everything: every slice, and `all` against scikit-learn directly."""
    cfg = EvalConfig()
    rows, summary = run(log_path, cfg, 10**9)
    table = request_table(raw, cfg, 10**9, GRACE)
    compare(rows, expected_rows(table, cfg), 10**9)
    assert summary.late_events == {10**9: 0}

    got = {r.metric: r for r in rows if r.slice == "all"}
    assert len({r.window_start for r in rows}) == 1
    s = table[table.s_answered & table.ref.notna()]
    assert got["support"].value == len(raw.requests)
    assert got["accuracy"].value == pytest.approx(accuracy_score(s.ref, s.s_intent), abs=1e-12)
    correct = (s.ref == s.s_intent).to_numpy().astype(int)
    assert got["brier"].value == pytest.approx(brier_score_loss(correct, s.s_top1, labels=[0, 1]), abs=1e-9)
    for c in cfg.high_risk:
        assert got[f"recall.{c}"].value == pytest.approx(
            recall_score(s.ref, s.s_intent, labels=[c], average=None, zero_division=0)[0], abs=1e-12)
        assert got[f"precision.{c}"].value == pytest.approx(
            precision_score(s.ref, s.s_intent, labels=[c], average=None, zero_division=0)[0], abs=1e-12)
    lat = table.s_latency.dropna().to_numpy()
    for q in (50, 95, 99):
        ref = np.quantile(lat, q / 100, method="lower")
        assert abs(got[f"student_latency_p{q}"].value - ref) <= 0.01 * ref


def test_whole_log_with_margin_routing_and_crosses(log_path: Path, raw: RawLog) -> None:
    """A configured threshold below 0.54 makes the margin clause bite; a cross slice appears."""
    cfg = EvalConfig(fallback_threshold=0.40, crosses=(("region", "device"),))
    rows, _ = run(log_path, cfg, 10**9)
    table = request_table(raw, cfg, 10**9, GRACE)
    compare(rows, expected_rows(table, cfg), 10**9)
    assert any(r.slice == "region=edge,device=ios" for r in rows)
    sA = table[table.s_answered]
    margin_only = (sA.s_top1 >= 0.40) & (sA.s_top1 - sA.s_top2 < 0.08) & ~sA.s_intent.isin(cfg.high_risk)
    assert margin_only.sum() >= 1  # E12 (0.45 vs 0.45)


def test_side_lines_with_escaped_keys_are_applied(tmp_path: Path) -> None:
    """JSON lets a key be written with escapes; ``"\\u0063atalog"`` is the key ``catalog``.

    Hand-computed: the catalog record makes the student's claim right (hallucination 0/1)
    and the title new (10 days old: new_title_share 1/1); the judge label gives a win (1/1).
    """
    request = {"request": req("X1", 1, entities=("x",)), "teacher": None,
               "student": S("X1", 1, claims=[claim("x", "format", "paperback")])}
    catalog_line = cat("x", {"format": ["paperback"]}, T0 - 10 * DAY)
    label_line = label("X1", at(3600), "judge", preferred="student")
    raw_lines = [
        orjson.dumps(catalog_line).replace(b'"catalog"', b'"\\u0063atalog"', 1),
        orjson.dumps(label_line).replace(b'"label"', b'"l\\u0061bel"', 1),
        orjson.dumps(request),
    ]
    assert all(orjson.loads(r).keys() <= {"catalog", "label", "request", "teacher", "student"}
               for r in raw_lines)
    path = tmp_path / "escaped.jsonl"
    path.write_bytes(b"\n".join(raw_lines) + b"\n")
    summary = LogSummary()
    got = {(r.slice, r.metric): r for r in evaluate_log(lambda: open(path, "rb"), EvalConfig(),
                                                        window_s=60, grace_s=GRACE, summary=summary)}
    assert summary.catalog_records == 1 and summary.labels == 1 and summary.invalid == 0
    for metric, fraction in (("hallucination_rate", (0, 1)), ("new_title_share", (1, 1)),
                             ("student_win_rate", (1, 1))):
        assert (got["all", metric].numerator, got["all", metric].denominator) == fraction, metric
