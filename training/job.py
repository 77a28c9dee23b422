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
from training.batches import tokenize
from training.calibration import fit_temperature, fold_temperature, nll
from training.dataset import Example, PrepareOptions, prepare
from training.evaluation import evaluate_candidate, probs_dicts
from training.loss import DEFAULT_BLEND, LossWeights
from training.report import metrics_document, worst_slice, write_outputs
from training.runtime import Runtime, start
from training.student import build_student, default_lr, parameter_count
from training.trainer import LoopOptions, heldout_data, run_loop, softmax_np


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
    weights = opts.weights
    if weights is None:
        hints = request.loss_hints if request is not None else None
        weights = (LossWeights(hints.w_ce, hints.w_kd, hints.w_rare, hints.temperature)
                   if hints is not None else DEFAULT_BLEND)
    data = prepare(examples, config, opts.prepare)
    if len(data.train) == 0:
        raise ConfigError(f"no training examples left after filtering ({data.counts}); the data "
                          "needs references or teacher answers that pass the catalog checks")
    if not data.heldout:
        raise ConfigError("the held-out split is empty; give more examples or a larger heldout share")
    main = rt.is_main
    if main:
        log(f"train: {len(data.train)} examples, held-out {len(data.heldout)}; teacher targets "
            f"dropped: {sum(v for k, v in data.counts.items() if k.startswith('teacher_target_') and not k.endswith(('_kept', '_no_teacher')))}; "
            f"device {rt.device}, {rt.world_size} process(es)")
    _seed(opts.loop.seed)
    out = opts.out_dir
    tokenizer = None
    if rt.distributed:  # rank 0 trains the tokenizer, the others load it
        tok_dir = out / ".tokenizer"
        if main:
            _, tokenizer, _ = build_student(opts.student, classes, data.train.prompts, opts.dropout,
                                            vocab_min_count=opts.vocab_min_count)
            out.mkdir(parents=True, exist_ok=True)
            tokenizer.save_pretrained(tok_dir)
        rt.barrier()
        if not main:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        _seed(opts.loop.seed)
    model, tokenizer, max_length = build_student(opts.student, classes, data.train.prompts,
                                                 opts.dropout, tokenizer, opts.vocab_min_count)
    model.to(rt.device)
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    train_ids = tokenize(tokenizer, data.train.prompts, max_length)
    held = heldout_data(data.heldout, tokenize(tokenizer, [ex.prompt for ex in data.heldout], max_length), classes)
    wrapped: Any = model
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[rt.device.index] if rt.cuda else None)
    loop_opts = opts.loop if opts.loop.lr is not None else replace(opts.loop, lr=default_lr(opts.student))
    loop = run_loop(wrapped, train_ids, data.train, held, classes, config, weights, loop_opts, rt,
                    pad_id, log, out / "checkpoint" if (main and opts.checkpoints) else None)
    if not main:
        return TrainingResult(out, "", {}, is_main=False)
    if loop.best_state is None:
        raise ConfigError("no epoch produced a promotion score: the held-out split has no "
                          "requests with both a teacher answer and a reference")
    model.load_state_dict(loop.best_state)

    # Temperature scaling on held-out NLL, then the final numbers.
    logits = _heldout_logits(model, held, pad_id, rt)
    has_ref = held.labels >= 0
    temperature = fit_temperature(logits[has_ref], held.labels[has_ref])
    focus = list(opts.slices) or (list(request.slices) if request is not None else [])
    baseline_probs = [ex.logged_student_probs for ex in held.examples]
    has_baseline = any(p is not None for p in baseline_probs)
    baseline = evaluate_candidate(held.examples, baseline_probs, config) if has_baseline else None
    if not focus and baseline is not None:
        worst = worst_slice(baseline.slices)
        focus = [worst] if worst else []
    before = evaluate_candidate(held.examples, probs_dicts(softmax_np(logits), classes), config)
    after = evaluate_candidate(held.examples, probs_dicts(softmax_np(logits, temperature), classes), config)
    calibration = {
        "temperature": temperature,
        "fitted_on": int(has_ref.sum()),
        "nll_before": nll(logits[has_ref], held.labels[has_ref]) if bool(has_ref.any()) else None,
        "nll_after": nll(logits[has_ref], held.labels[has_ref], temperature) if bool(has_ref.any()) else None,
        "ece_before": before.overall.get("ece"),
        "ece_after": after.overall.get("ece"),
        "folded_into_classifier": False,
    }
    if temperature != 1.0:
        calibration["folded_into_classifier"] = fold_temperature(model, len(classes), temperature)
    if not calibration["folded_into_classifier"]:
        model.config.distillwatch_temperature = temperature  # consumers must divide logits by it
    elapsed = time.time() - started
    doc = metrics_document(
        opts=opts, source=source, request=request, counts=data.counts, weights=weights, rt=rt,
        loop=loop, loop_opts=loop_opts, before=before, after=after, baseline=baseline, focus=focus,
        calibration=calibration, params=parameter_count(model), elapsed_s=elapsed)
    version = _write_model(model, tokenizer, out, opts) if opts.save_model else "unsaved"
    doc["model_version"] = version
    write_outputs(out, doc, before, after, loop)
    if (out / ".tokenizer").exists():
        shutil.rmtree(out / ".tokenizer", ignore_errors=True)
    log(f"chose epoch {doc['choice']['epoch']} (promotion score {doc['choice']['promotion_score']:.4f}); "
        f"temperature {temperature:.3f}: ece {_f(calibration['ece_before'])} -> {_f(calibration['ece_after'])}; "
        f"wrote {out}")
    return TrainingResult(out, version, doc)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _heldout_logits(model: Any, held: Any, pad_id: int, rt: Runtime) -> torch.Tensor:
    from training.batches import predict_logits

    return predict_logits(model, held.ids, pad_id, rt)


def _write_model(model: Any, tokenizer: Any, out: Path, opts: TrainingOptions) -> str:
    """Save model and tokenizer; the version is a digest of the weights file."""
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    digest = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()[:12]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{opts.model}-{stamp}-{digest}"
