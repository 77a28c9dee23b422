"""``run_training(options) -> TrainingResult``: one retraining job from data to a saved student.

Steps: load examples (replay log, Parquet snapshot or RetrainRequest) → ``prepare`` (split,
filter, weight) → build the student and tokenizer → epoch loop (held-out evaluation, best
promotion score, patience) → temperature scaling on held-out NLL → outputs in ``out_dir``:

* the model (``model.safetensors``, ``config.json``) and tokenizer files, loadable with
  ``AutoModelForSequenceClassification`` / ``AutoTokenizer`` (the temperature is folded into
  the classifier, see ``training.calibration``);
* ``metrics.json`` (see ``training.report.metrics_document``): per-epoch table, the choice,
  calibration, the logged student's numbers on the same held-out requests, per slice;
* ``report.html`` (training curves and reliability before/after scaling, as PNGs beside it)
  and ``README.md``, a short model card.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank calls this; rank 0 alone evaluates and
writes, and only its result carries the metrics (``is_main``).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluators.config import EvalConfig
from evaluators.offline import LogSummary
from evaluators.privacy import Redactor
from schemas.errors import ConfigError
from schemas.messages import RetrainRequest
from training import sources
from training.batches import predict_logits, tokenize
from training.calibration import fit_temperature, fold_temperature, nll
from training.dataset import Example, PrepareOptions, dropped_target_reasons, prepare
from training.evaluation import HeldoutReport, evaluate_candidate, probs_dicts
from training.loss import DEFAULT_BLEND, LossWeights
from training.report import metrics_document, worst_slice, write_outputs
from training.runtime import Runtime, start
from training.student import build_student, default_lr, parameter_count
from training.trainer import HeldoutData, LoopOptions, heldout_data, run_loop, softmax_np


@dataclass
class TrainingOptions:
    """Everything one job needs. Exactly one of ``log``, ``dataset``, ``request`` (or, for
    callers that already hold them, ``examples``) names the data."""

    out_dir: Path
    log: Path | None = None
    dataset: Path | None = None
    request: Path | None = None
    examples: Sequence[Example] | None = None
    eval_config: EvalConfig = field(default_factory=EvalConfig)
    weights: LossWeights | None = None
    """None: the request's loss hints, else the default blend 0.45 / 0.55 / 0.30, T = 2."""
    student: str = "tiny"
    dropout: float | None = None
    vocab_min_count: int = 3
    """A word enters a new student's vocabulary once seen this often (see training.student)."""
    device: str = "auto"
    loop: LoopOptions = field(default_factory=LoopOptions)
    prepare: PrepareOptions = field(default_factory=PrepareOptions)
    slices: Sequence[str] = ()
    """Slices to report separately (e.g. ``region=br``); default: the request's slices, else
    the slice where the logged student is worst."""
    model: str = "student"
    job_id: str | None = None
    redactor: Redactor | None = None
    log_fn: Callable[[str], None] | None = None
    threads: int | None = None
    """torch CPU threads per process (None: 1 on CPU; see docs/training.md, Performance)."""
    save_model: bool = True
    checkpoints: bool = True


@dataclass
class TrainingResult:
    """What the job produced. ``metrics`` is the content of ``metrics.json``."""

    out_dir: Path
    model_version: str
    metrics: dict[str, Any]
    is_main: bool = True

    @property
    def chosen_epoch(self) -> int | None:
        return self.metrics.get("choice", {}).get("epoch")

    @property
    def promotion_score(self) -> float | None:
        return self.metrics.get("final", {}).get("promotion_score")

    @property
    def temperature(self) -> float | None:
        return self.metrics.get("calibration", {}).get("temperature")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_examples(opts: TrainingOptions) -> tuple[list[Example], dict[str, Any], RetrainRequest | None]:
    """(examples, a description of the source, the RetrainRequest if one was given)."""
    given = [n for n in ("log", "dataset", "request", "examples") if getattr(opts, n) is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one of --from-log, --dataset, --request "
                          f"(got {', '.join(given) or 'none'})")
    if opts.examples is not None:
        return list(opts.examples), {"kind": "examples"}, None
    if opts.log is not None:
        summary = LogSummary()
        examples = sources.examples_from_log(opts.log, opts.eval_config, opts.redactor, summary)
        return examples, {"kind": "replay_log", "path": str(opts.log), "lines": summary.lines,
                          "requests": summary.requests, "invalid_lines": summary.invalid,
                          "duplicate_requests": summary.duplicates,
                          "catalog_records": summary.catalog_records, "labels": summary.labels}, None
    if opts.dataset is not None:
        return sources.examples_from_parquet(opts.dataset), {"kind": "parquet", "path": str(opts.dataset)}, None
    assert opts.request is not None
    request, snapshot = sources.load_request(opts.request)
    return (sources.examples_from_parquet(snapshot),
            {"kind": "retrain_request", "path": str(opts.request), "snapshot": str(snapshot)}, request)


def _seed(seed: int) -> None:
    # CPU kernels are deterministic for a fixed thread count; seeds fix init, dropout and order.
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def run_training(opts: TrainingOptions) -> TrainingResult:
    """Run one retraining job; see the module docstring. Raises ConfigError on bad input."""
    log = opts.log_fn or _stderr
    started = time.time()
    torch.set_flush_denormal(True)  # denormals only slow CPU kernels down; they never matter here
    rt = start(opts.device)
    if opts.threads is not None:
        torch.set_num_threads(max(1, opts.threads))
    elif not rt.cuda:
        # One thread per process on CPU unless told otherwise: on cores that other processes
        # also use (the monitor, other ranks) torch's spinning worker threads made the tiny
        # student 5-10x slower, while on idle cores a second thread gained ~13 % (docs/training.md).
        torch.set_num_threads(1)
    try:
        return _run(opts, rt, log, started)
    finally:
        rt.close()


def _run(opts: TrainingOptions, rt: Runtime, log: Callable[[str], None], started: float) -> TrainingResult:
    examples, source, request = load_examples(opts)
    config = opts.eval_config
    classes = list(config.intents)
    weights = opts.weights or _weights_from(request)
    data = prepare(examples, config, opts.prepare)
    if len(data.train) == 0:
        raise ConfigError(f"no training examples left after filtering ({data.counts}); the data "
                          "needs references or teacher answers that pass the catalog checks")
    if not data.heldout:
        raise ConfigError("the held-out split is empty; give more examples or a larger heldout share")
    if rt.is_main:
        dropped = sum(v for k, v in dropped_target_reasons(data.counts).items() if k != "no_teacher")
        log(f"train: {len(data.train)} examples, held-out {len(data.heldout)}; teacher targets "
            f"dropped: {dropped}; device {rt.device}, {rt.world_size} process(es)")
    model, tokenizer, max_length = _student(opts, rt, classes, data.train.prompts)
    model.to(rt.device)
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    train_ids = tokenize(tokenizer, data.train.prompts, max_length)
    held = heldout_data(data.heldout, tokenize(tokenizer, [ex.prompt for ex in data.heldout], max_length),
                        classes)
    wrapped: Any = model
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[rt.device.index] if rt.cuda else None)
    loop_opts = opts.loop if opts.loop.lr is not None else replace(opts.loop, lr=default_lr(opts.student))
    out = opts.out_dir
    loop = run_loop(wrapped, train_ids, data.train, held, classes, config, weights, loop_opts, rt,
                    pad_id, log, out / "checkpoint" if (rt.is_main and opts.checkpoints) else None)
    if not rt.is_main:
        return TrainingResult(out, "", {}, is_main=False)
    if loop.best_state is None:
        raise ConfigError("no epoch produced a promotion score: the held-out split has no "
                          "requests with both a teacher answer and a reference")
    model.load_state_dict(loop.best_state)
    before, after, calibration = _calibrate(model, held, classes, config, pad_id, rt)
    baseline, focus = _baseline(held.examples, config, opts, request)
    doc = metrics_document(
        opts=opts, source=source, request=request, counts=data.counts, weights=weights, rt=rt,
        loop=loop, loop_opts=loop_opts, before=before, after=after, baseline=baseline, focus=focus,
        calibration=calibration, params=parameter_count(model), elapsed_s=time.time() - started)
    version = _write_model(model, tokenizer, out, opts) if opts.save_model else "unsaved"
    doc["model_version"] = version
    write_outputs(out, doc, before, after, loop)
    shutil.rmtree(out / ".tokenizer", ignore_errors=True)
    log(f"chose epoch {doc['choice']['epoch']} (promotion score {doc['choice']['promotion_score']:.4f}); "
        f"temperature {calibration['temperature']:.3f}: ece {_f(calibration['ece_before'])} -> "
        f"{_f(calibration['ece_after'])}; wrote {out}")
    return TrainingResult(out, version, doc)


def _weights_from(request: RetrainRequest | None) -> LossWeights:
    """The request's loss hints, else the default blend."""
    if request is None:
        return DEFAULT_BLEND
    h = request.loss_hints
    return LossWeights(h.w_ce, h.w_kd, h.w_rare, h.temperature)


def _student(opts: TrainingOptions, rt: Runtime, classes: list[str], prompts: list[str]) -> tuple[Any, Any, int]:
    """The seeded student; under DDP rank 0 builds the tokenizer and the others load it."""
    tokenizer = None
    if rt.distributed:
        tok_dir = opts.out_dir / ".tokenizer"
        if rt.is_main:
            _, tokenizer, _ = build_student(opts.student, classes, prompts, opts.dropout,
                                            vocab_min_count=opts.vocab_min_count)
            opts.out_dir.mkdir(parents=True, exist_ok=True)
            tokenizer.save_pretrained(tok_dir)
        rt.barrier()
        if not rt.is_main:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    _seed(opts.loop.seed)  # the same initial weights on every rank and in every run
    return build_student(opts.student, classes, prompts, opts.dropout, tokenizer, opts.vocab_min_count)


def _calibrate(model: Any, held: HeldoutData, classes: list[str], config: EvalConfig, pad_id: int,
               rt: Runtime) -> tuple[HeldoutReport, HeldoutReport, dict[str, Any]]:
    """Fit T on held-out NLL, fold it into the model; library metrics before and after."""
    logits = predict_logits(model, held.ids, pad_id, rt)
    ref = held.labels >= 0
    temperature = fit_temperature(logits[ref], held.labels[ref])
    before = evaluate_candidate(held.examples, probs_dicts(softmax_np(logits), classes), config)
    after = evaluate_candidate(held.examples, probs_dicts(softmax_np(logits, temperature), classes), config)
    any_ref = bool(ref.any())
    calibration: dict[str, Any] = {
        "temperature": temperature,
        "fitted_on": int(ref.sum()),
        "nll_before": nll(logits[ref], held.labels[ref]) if any_ref else None,
        "nll_after": nll(logits[ref], held.labels[ref], temperature) if any_ref else None,
        "ece_before": before.overall.get("ece"),
        "ece_after": after.overall.get("ece"),
        "folded_into_classifier": temperature == 1.0 or fold_temperature(model, len(classes), temperature),
    }
    if not calibration["folded_into_classifier"]:
        model.config.distillwatch_temperature = temperature  # consumers must divide logits by it
    return before, after, calibration


def _baseline(examples: list[Example], config: EvalConfig, opts: TrainingOptions,
              request: RetrainRequest | None) -> tuple[HeldoutReport | None, list[str]]:
    """The logged student on the same held-out requests (replay logs), and the focus slices:
    as asked, else the slice where the logged student is worst."""
    probs = [ex.logged_student_probs for ex in examples]
    baseline = evaluate_candidate(examples, probs, config) if any(p is not None for p in probs) else None
    focus = list(opts.slices) or (list(request.slices) if request is not None else [])
    if not focus and baseline is not None:
        worst = worst_slice(baseline.slices)
        focus = [worst] if worst else []
    return baseline, focus


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _write_model(model: Any, tokenizer: Any, out: Path, opts: TrainingOptions) -> str:
    """Save model and tokenizer; the version is a digest of the weights file."""
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    digest = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()[:12]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{opts.model}-{stamp}-{digest}"
