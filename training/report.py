"""What a job writes besides the model: ``metrics.json``, ``report.html``, ``README.md``.

``metrics.json`` (``schema: distillwatch.training/1``) is meant to be stored as is (the
``metrics`` column of ``retrain_jobs`` / ``model_versions``):

* ``epochs``: one row per epoch: train loss parts, held-out library metrics, ``improved``,
  timing;
* ``choice``: the kept epoch, its promotion score, why the loop stopped;
* ``calibration``: temperature, NLL and ECE before/after scaling;
* ``final``: held-out metrics of the saved (calibrated) model, all slices;
* ``baseline``: the logged student's metrics on the same held-out requests (replay logs);
* ``comparison``: trained vs logged student on ``all`` and the focus slices, with deltas;
* ``dataset``: counts of what the filter kept and dropped; ``definitions``: the proxies.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from schemas.messages import RetrainRequest, utc_timestamp
from training.evaluation import DEFINITIONS, HeldoutReport
from training.loss import LossWeights
from training.runtime import Runtime
from training.trainer import LoopResult

SCHEMA = "distillwatch.training/1"
COMPARED = ("accuracy", "teacher_match", "recall.safety_escalation", "escalation_recall", "ece",
            "hallucination_proxy", "promotion_score")
MIN_SLICE_SUPPORT = 20
"""A slice needs this many held-out requests to be named the failing one."""


def worst_slice(slices: dict[str, dict[str, float]], metric: str = "promotion_score") -> str | None:
    """The single-key slice (``region=br``, ``freshness=new``; not ``intent=`` or ``risk=``,
    which are about the answer, not the traffic) where ``metric`` is lowest, with enough support."""
    candidates = [
        (m[metric], key) for key, m in slices.items()
        if "=" in key and "," not in key and not key.startswith(("intent=", "risk="))
        and m.get("support", 0) >= MIN_SLICE_SUPPORT and metric in m
    ]
    return min(candidates)[1] if candidates else None


def _compare(trained: HeldoutReport, baseline: HeldoutReport | None, keys: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ["all", *keys]:
        t = trained.slices.get(key, {})
        row: dict[str, Any] = {"support": t.get("support"), "trained": {k: t[k] for k in COMPARED if k in t}}
        if baseline is not None:
            b = baseline.slices.get(key, {})
            row["logged_student"] = {k: b[k] for k in COMPARED if k in b}
            row["delta"] = {k: t[k] - b[k] for k in COMPARED if k in t and k in b}
        out[key] = row
    return out


def metrics_document(*, opts: Any, source: dict[str, Any], request: RetrainRequest | None,
                     counts: dict[str, int], weights: LossWeights, rt: Runtime, loop: LoopResult,
                     loop_opts: Any,
                     before: HeldoutReport, after: HeldoutReport, baseline: HeldoutReport | None,
                     focus: list[str], calibration: dict[str, Any], params: int,
                     elapsed_s: float) -> dict[str, Any]:
    """The ``metrics.json`` content (see the module docstring)."""
    sel = loop.selector
    last = loop.records[-1].epoch if loop.records else 0
    if loop.stopped_early:
        reason = (f"stopped after epoch {last}: {sel.patience} epochs without a better promotion "
                  f"score than epoch {sel.best_epoch}")
    else:
        reason = f"ran all {last} epochs; epoch {sel.best_epoch} had the best promotion score"
    return {
        "schema": SCHEMA,
        "model": opts.model,
        "job_id": opts.job_id or (request.job_id if request is not None else None),
        "created_at": utc_timestamp(datetime.now(UTC)),
        "source": source,
        "options": {
            "student": opts.student, "parameters": params, "vocab_min_count": opts.vocab_min_count,
            "device": str(rt.device),
            "world_size": rt.world_size, "precision": "bf16-autocast" if rt.cuda else "fp32",
            "cpu_threads": torch.get_num_threads(),
            "loss_weights": asdict(weights), "loop": asdict(loop_opts),
            "prepare": asdict(opts.prepare), "intents": list(opts.eval_config.intents),
            "high_risk": list(opts.eval_config.high_risk),
        },
        "dataset": counts,
        "epochs": [r.as_dict() for r in loop.records],
        "choice": {
            "epoch": sel.best_epoch, "promotion_score": sel.best_score,
            "last_epoch": last, "stopped_early": loop.stopped_early, "reason": reason,
        },
        "calibration": calibration,
        "final": after.overall,
        "final_slices": after.slices,
        "baseline": baseline.overall if baseline is not None else None,
        "focus_slices": focus,
        "comparison": _compare(after, baseline, focus),
        "performance": {k: round(v, 4) for k, v in loop.timing.items()} | {"elapsed_s": round(elapsed_s, 2)},
        "definitions": DEFINITIONS,
    }


def write_outputs(out: Path, doc: dict[str, Any], before: HeldoutReport, after: HeldoutReport,
                  loop: LoopResult) -> None:
    """metrics.json, the plots and report.html, and the model card README.md."""
    from training.plots import write_report

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(doc, indent=2, sort_keys=False, default=_json_default) + "\n")
    write_report(out, doc, before.reliability, after.reliability)
    (out / "README.md").write_text(model_card(doc))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4f}"
    return str(x)


def model_card(doc: dict[str, Any]) -> str:
    """A short Markdown model card: what, trained on what, how good, how to use, limits."""
    o, c, cal, ds = doc["options"], doc["choice"], doc["calibration"], doc["dataset"]
    w = o["loss_weights"]
    lines = [
        f"# {doc['model']} {doc.get('model_version', '')}".rstrip(),
        "",
        f"Intent classifier distilled by distillwatch from shadow traffic ({doc['source']['kind']}), "
        f"{o['student']} student ({o['parameters']:,} parameters), created {doc['created_at']}.",
        "",
        "## Training",
        f"- Loss: {w['ce']} CE + {w['kd']} T²·KL (T = {w['temperature']}) + {w['rare']} rare-class penalty.",
        f"- Examples: {ds.get('train', 0)} for training, {ds.get('heldout', 0)} held out by request id; "
        f"teacher targets kept {ds.get('teacher_target_kept', 0)}, dropped for fact errors "
        f"{ds.get('teacher_target_fact_error', 0)}, unsupported claims {ds.get('teacher_target_unsupported', 0)}, "
        f"missing evidence {ds.get('teacher_target_evidence_missing', 0)}, human-label override "
        f"{ds.get('teacher_target_label_override', 0)}.",
        f"- Kept epoch {c['epoch']} of {c['last_epoch']} by held-out promotion score: {c['reason']}.",
        f"- Temperature {_fmt(cal['temperature'])} fitted on held-out NLL (folded into the classifier: "
        f"{cal['folded_into_classifier']}); ECE {_fmt(cal['ece_before'])} → {_fmt(cal['ece_after'])}.",
        "",
        "## Held-out results (metric library, DESIGN §5)",
        "",
        "| slice | support | model | accuracy | teacher_match | recall.safety_escalation | ece | promotion_score |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, row in doc["comparison"].items():
        for who in ("trained", "logged_student"):
            m = row.get(who)
            if m is None:
                continue
            lines.append(f"| {key} | {_fmt(row.get('support'))} | {who.replace('_', ' ')} | "
                         f"{_fmt(m.get('accuracy'))} | {_fmt(m.get('teacher_match'))} | "
                         f"{_fmt(m.get('recall.safety_escalation'))} | {_fmt(m.get('ece'))} | "
                         f"{_fmt(m.get('promotion_score'))} |")
    lines += [
        "",
        "## Use",
        "Load with `AutoModelForSequenceClassification.from_pretrained(DIR)` and "
        "`AutoTokenizer.from_pretrained(DIR)`, or serve with "
        "`distillwatch worker student --backend transformers --model-dir DIR`. Class names are in "
        "`config.json` (`id2label`); softmax of the logits is already temperature-scaled.",
        "",
        "## Limits",
        "- Win rate and hallucination are proxies for a model that has not served yet "
        "(see `definitions` in metrics.json); shadow-evaluate it before promotion.",
        "- Numbers are on the held-out split of the same traffic; a new catalog or intent mix needs "
        "a fresh evaluation.",
        "",
    ]
    return "\n".join(lines)
