"""Building the training set: contamination filter, hard labels, weights, split, sources."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest

from evaluators.config import EvalConfig
from schemas.errors import ConfigError
from training.dataset import Example, PrepareOptions, in_heldout, prepare
from training.sources import examples_from_log, examples_from_parquet, load_request, write_parquet
from training.synthetic import contaminated_log

CONFIG = EvalConfig()
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _write_log(lines: list[dict], path: Path) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def test_filter_drops_contaminated_teacher_targets_and_keeps_clean_ones(tmp_path: Path) -> None:
    """2,000 requests, 10 % with a contaminated teacher target of a known kind (5 % of those
    'silent': a wrong intent with nothing the catalog or evidence can see)."""
    lines, kinds = contaminated_log(n=2000, contaminated_share=0.1, seed=3)
    examples = examples_from_log(_write_log(lines, tmp_path / "log.jsonl"), CONFIG)
    assert len(examples) == 2000
    data = prepare(examples, CONFIG, PrepareOptions(heldout_share=0.01))
    train_ids = {ex.request_id for ex in examples} - {ex.request_id for ex in data.heldout}
    bad = {rid for rid in train_ids if rid in kinds}
    clean = train_ids - bad
    assert len(bad) >= 150 and len(clean) >= 1500
    dropped_bad = len(bad - data.kept_target_ids) / len(bad)
    kept_clean = len(clean & data.kept_target_ids) / len(clean)
    assert dropped_bad >= 0.90, dropped_bad
    assert kept_clean >= 0.95, kept_clean
    # Every visible kind is caught; the counts name the reasons.
    visible = {rid for rid in bad if kinds[rid] != "silent"}
    assert visible.isdisjoint(data.kept_target_ids)
    assert data.counts["teacher_target_fact_error"] == sum(kinds[r] == "fact_error" for r in bad)
    assert data.counts["teacher_target_unsupported"] == sum(kinds[r] == "unknown_entity" for r in bad)
    assert data.counts["teacher_target_label_override"] == sum(kinds[r] == "label_override" for r in bad)


def _example(rid: str, **kw: object) -> Example:
    base: dict = dict(request_id=rid, ts=T0, prompt="p", teacher_probs={"faq": 0.8, "returns": 0.2})
    base.update(kw)
    return Example(**base)  # type: ignore[arg-type]


def _train_side(prefix: str, n: int) -> list[str]:
    """Request ids that land in the training split (share 0.2)."""
    ids = (f"{prefix}-{i}" for i in range(10_000))
    return [rid for rid in ids if not in_heldout(rid, 0.2)][:n]


def test_hard_label_precedence_and_what_a_dropped_target_leaves() -> None:
    a, b, c, d, e = _train_side("lab", 5)
    data = prepare([
        _example(a, reference_intent="returns", reference_source="human"),   # human overrides teacher
        _example(b, reference_intent="faq", reference_source="request"),    # production reference
        _example(c, reference_intent="faq", reference_source="teacher"),    # teacher's own top-1
        _example(d, teacher_fact_error=True, reference_intent="returns", reference_source="request"),
        _example(e, teacher_fact_error=True, reference_intent="faq", reference_source="teacher"),
    ], CONFIG)
    index = {rid: i for i, rid in enumerate(data.train.request_ids)}
    faq, returns = CONFIG.intents.index("faq"), CONFIG.intents.index("returns")
    assert data.train.labels[index[a]] == returns and data.train.kd_mask[index[a]] == 0.0  # override
    assert data.train.labels[index[b]] == faq and data.train.kd_mask[index[b]] == 1.0
    assert data.train.labels[index[c]] == faq and data.train.kd_mask[index[c]] == 1.0
    # A contaminated target with an independent label still trains on the label, without KD ...
    assert data.train.labels[index[d]] == returns and data.train.kd_mask[index[d]] == 0.0
    # ... and without one the example has nothing trustworthy left.
    assert e not in index
    assert data.counts["dropped_no_trusted_label"] == 1
    assert data.counts["teacher_target_label_override"] == 1


def test_weights_favour_high_risk_classes_and_recent_traffic() -> None:
    ids = _train_side("w", 3)
    data = prepare([
        _example(ids[0], ts=T0 + timedelta(days=28), reference_intent="faq", reference_source="request"),
        _example(ids[1], ts=T0, reference_intent="faq", reference_source="request"),
        _example(ids[2], ts=T0 + timedelta(days=28), reference_intent="safety_escalation",
                 reference_source="request"),
    ], CONFIG, PrepareOptions(high_risk_weight=2.0, half_life_days=14.0, min_recency_weight=0.1))
    w = dict(zip(data.train.request_ids, data.train.weights))
    assert w[ids[0]] == pytest.approx(1.0)
    assert w[ids[1]] == pytest.approx(0.25)  # two half-lives older than the newest
    assert w[ids[2]] == pytest.approx(2.0)


def test_rarer_high_risk_classes_weigh_more_up_to_a_cap() -> None:
    ids = _train_side("cw", 163)
    labels = ["faq"] * 128 + ["recommendation"] * 20 + ["legal_complaint"] * 8 + ["refund_fraud"] * 1 \
        + ["safety_escalation"] * 6
    data = prepare([_example(r, reference_intent=c, reference_source="request") for r, c in zip(ids, labels)],
                   CONFIG, PrepareOptions(high_risk_weight=2.0, max_class_weight=8.0))
    w = {CONFIG.intents[int(k)]: float(v) for k, v in zip(data.train.labels, data.train.weights)}
    assert w["faq"] == 1.0 and w["recommendation"] == 1.0  # ordinary classes are not balanced
    assert w["legal_complaint"] == pytest.approx(4.0)  # sqrt(128 / 8)
    assert w["safety_escalation"] == pytest.approx((128 / 6) ** 0.5)
    assert w["refund_fraud"] == 8.0  # sqrt(128) = 11.3, capped


def test_heldout_split_is_by_request_id_and_stable() -> None:
    ids = [f"req-{i}" for i in range(20_000)]
    side = [in_heldout(r, 0.2) for r in ids]
    assert side == [in_heldout(r, 0.2) for r in ids]
    assert abs(np.mean(side) - 0.2) < 0.01
    examples = [_example(r, reference_intent="faq", reference_source="request") for r in ids[:2000]]
    data = prepare(examples + examples[:10], CONFIG)  # a repeated id counts once
    assert data.counts["duplicate_request_ids"] == 10
    assert {e.request_id for e in data.heldout} == {r for r in ids[:2000] if in_heldout(r, 0.2)}
    assert len(data.train) + len(data.heldout) == 2000


def test_log_prompts_are_redacted(tmp_path: Path) -> None:
    lines, _ = contaminated_log(n=5, contaminated_share=0.0)
    lines[-1]["request"]["prompt"] = "mail me at jane@example.com about order ORD1234567"
    examples = examples_from_log(_write_log(lines, tmp_path / "log.jsonl"), CONFIG)
    assert examples[-1].prompt == "mail me at [EMAIL] about order [ORDER_ID]"


def test_parquet_snapshot_and_retrain_request_round_trip(tmp_path: Path) -> None:
    lines, _ = contaminated_log(n=50, contaminated_share=0.2, seed=1)
    examples = examples_from_log(_write_log(lines, tmp_path / "log.jsonl"), CONFIG)
    write_parquet(examples, tmp_path / "snap.parquet")
    back = examples_from_parquet(tmp_path / "snap.parquet")
    assert [e.request_id for e in back] == [e.request_id for e in examples]
    for a, b in zip(examples, back):
        assert (a.reference_intent, a.reference_source, a.teacher_fact_error, a.teacher_supported,
                a.evidence_covered, dict(a.slice), a.prompt, a.ts) == (
                b.reference_intent, b.reference_source, b.teacher_fact_error, b.teacher_supported,
                b.evidence_covered, dict(b.slice), b.prompt, b.ts)
        assert b.teacher_probs is not None and a.teacher_probs is not None
        assert max(abs(a.teacher_probs[k] - b.teacher_probs[k]) for k in a.teacher_probs) < 1e-6
    request = {"job_id": "j1", "model": "student", "created_at": "2026-11-01T00:00:00Z",
               "time_range": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T01:00:00Z"},
               "dataset_snapshot": "snap.parquet", "slices": ["region=us"],
               "loss_hints": {"w_ce": 0.5, "w_kd": 0.5, "w_rare": 0.1, "temperature": 3.0}}
    (tmp_path / "req.json").write_text(json.dumps(request))
    parsed, snapshot = load_request(tmp_path / "req.json")
    assert snapshot == tmp_path / "snap.parquet"  # relative to the request file
    assert parsed.loss_hints.temperature == 3.0 and parsed.slices == ["region=us"]


def test_bad_inputs_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        examples_from_parquet(tmp_path / "missing.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(ConfigError, match="not a readable Parquet file"):
        examples_from_parquet(tmp_path / "junk.parquet")
    (tmp_path / "req.json").write_text(json.dumps({
        "job_id": "j", "model": "m", "created_at": "2026-11-01T00:00:00Z",
        "time_range": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T01:00:00Z"}}))
    with pytest.raises(ConfigError, match="no dataset_snapshot"):
        load_request(tmp_path / "req.json")
    with pytest.raises(ConfigError, match="heldout_share"):
        PrepareOptions(heldout_share=1.0)
