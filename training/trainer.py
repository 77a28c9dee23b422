"""The epoch loop: train, evaluate on the held-out split, keep the best epoch, stop on patience.

Checkpoints are taken at epoch ends only: the best epoch's weights are kept in memory (a CPU
copy) and, when ``checkpoint_dir`` is given, written there as safetensors, so a long job that
dies keeps its best epoch. Only rank 0 evaluates; its improve/stop decisions are broadcast so
every rank leaves the loop after the same epoch.

Timing per epoch: examples per second, and the share of the epoch the loop spent waiting for
the next batch (``input_wait_fraction``, the guide's scenario 9 signal; the goal is < 10 %).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from evaluators.config import EvalConfig
from schemas.errors import ConfigError
from training.batches import epoch_loader, predict_logits, to_device
from training.dataset import Example, TrainSet
from training.evaluation import evaluate_candidate, probs_dicts
from training.loss import LossWeights, distillation_loss
from training.runtime import GlobalBatches, Runtime
from training.selection import CheckpointSelector


@dataclass(frozen=True)
class LoopOptions:
    epochs: int = 8
    patience: int = 2
    batch_size: int = 64
    lr: float | None = None
    """Peak learning rate; None: the student's default (``training.student.default_lr``)."""
    weight_decay: float = 0.01
    warmup_steps: int = 50
    max_grad_norm: float = 1.0
    seed: int = 0
    workers: int | None = None
    """DataLoader workers; None: 4 on CUDA, 0 (main process) on CPU."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs is {self.epochs}; expected ≥ 1")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size is {self.batch_size}; expected ≥ 1")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr is {self.lr}; expected > 0")


@dataclass
class EpochRecord:
    epoch: int
    train: dict[str, float]
    heldout: dict[str, float]
    improved: bool = False
    seconds: float = 0.0
    examples: int = 0
    input_wait_fraction: float = 0.0
    eval_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "train": self.train, "heldout": self.heldout,
            "improved": self.improved, "seconds": round(self.seconds, 3),
            "eval_seconds": round(self.eval_seconds, 3), "examples": self.examples,
            "examples_per_s": round(self.examples / self.seconds, 1) if self.seconds > 0 else None,
            "input_wait_fraction": round(self.input_wait_fraction, 4),
        }


@dataclass
class LoopResult:
    records: list[EpochRecord]
    selector: CheckpointSelector
    best_state: dict[str, torch.Tensor] | None
    stopped_early: bool
    timing: dict[str, float] = field(default_factory=dict)


@dataclass
class HeldoutData:
    examples: list[Example]
    ids: list[torch.Tensor]
    labels: torch.Tensor
    """(N,) class index of each example's reference intent, -1 where there is none."""


def heldout_data(examples: list[Example], ids: list[torch.Tensor], classes: Sequence[str]) -> HeldoutData:
    index = {c: i for i, c in enumerate(classes)}
    labels = [index.get(ex.reference_intent or "", -1) for ex in examples]
    return HeldoutData(examples, ids, torch.tensor(labels, dtype=torch.long))


def heldout_eval(model: Any, data: HeldoutData, classes: Sequence[str], config: EvalConfig,
                 pad_id: int, rt: Runtime) -> tuple[dict[str, float], torch.Tensor]:
    """Library metrics plus held-out NLL against the reference (the guide's eval hard loss)."""
    logits = predict_logits(model, data.ids, pad_id, rt)
    probs = torch.softmax(logits, dim=-1).numpy()
    metrics = evaluate_candidate(data.examples, probs_dicts(probs, classes), config).overall
    has_ref = data.labels >= 0
    if bool(has_ref.any()):
        metrics["nll"] = float(F.cross_entropy(logits[has_ref], data.labels[has_ref]))
    return metrics, logits


def _unwrap(model: Any) -> Any:
    return getattr(model, "module", model)


def run_loop(model: Any, train_ids: list[torch.Tensor], train: TrainSet, heldout: HeldoutData,
             classes: Sequence[str], config: EvalConfig, weights: LossWeights, opts: LoopOptions,
             rt: Runtime, pad_id: int, log: Callable[[str], None] = lambda _: None,
             checkpoint_dir: Path | None = None) -> LoopResult:
    """Train up to ``opts.epochs`` epochs; see the module docstring."""
    high_risk = torch.tensor([c in config.high_risk for c in classes], device=rt.device)
    sampler = GlobalBatches(len(train), opts.batch_size, opts.seed, rt.rank, rt.world_size)
    assert opts.lr is not None, "resolve the learning rate before the loop"
    optimizer = torch.optim.AdamW(_unwrap(model).parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    total = max(2, opts.epochs * len(sampler))
    warmup = max(1, min(opts.warmup_steps, total // 10))

    def lr_factor(step: int) -> float:  # linear warm-up, then linear decay to 10 %
        if step < warmup:
            return (step + 1) / warmup
        return max(0.1, 1.0 - 0.9 * (step - warmup) / (total - warmup))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    selector = CheckpointSelector(patience=opts.patience)
    records: list[EpochRecord] = []
    best_state: dict[str, torch.Tensor] | None = None
    stopped_early = False
    total_wait = total_time = total_eval = 0.0
    total_examples = 0
    for epoch in range(1, opts.epochs + 1):
        model.train()
        loader = epoch_loader(train_ids, train, sampler, epoch, pad_id, rt, opts.workers)
        sums = torch.zeros(4, dtype=torch.float64, device=rt.device)  # no host sync per step
        steps = seen = 0
        wait = 0.0
        started = time.perf_counter()
        iterator = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            wait += time.perf_counter() - t0
            b = to_device(batch, rt)
            with rt.autocast():
                logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            # × world size: DDP averages the ranks' gradients, the normaliser already covers
            # the whole global batch.
            parts = distillation_loss(logits, b["labels"], b["teacher"], b["kd_mask"], b["weights"],
                                      high_risk, weights, b["normaliser"] / rt.world_size)
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            if opts.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), opts.max_grad_norm)
            optimizer.step()
            schedule.step()
            # parts are this rank's share × world size; summed over ranks / world size = global
            sums += torch.stack([parts.total, parts.ce, parts.kd, parts.rare]).detach().double() / rt.world_size
            steps += 1
            seen += int(b["labels"].shape[0])
        if rt.cuda:
            torch.cuda.synchronize(rt.device)
        seconds = time.perf_counter() - started
        sums, seen = rt.sum_across(sums.cpu(), seen)
        total_wait, total_time, total_examples = total_wait + wait, total_time + seconds, total_examples + seen
        means = (sums / max(steps, 1)).tolist()
        train_metrics = {"loss": means[0], "ce": means[1], "kd": means[2], "rare": means[3]}
        heldout_metrics: dict[str, float] = {}
        improved = False
        eval_started = time.perf_counter()
        if rt.is_main:
            heldout_metrics, _ = heldout_eval(_unwrap(model), heldout, classes, config, pad_id, rt)
            improved = selector.update(epoch, heldout_metrics.get("promotion_score"))
        eval_seconds = time.perf_counter() - eval_started
        total_eval += eval_seconds
        improved = rt.broadcast_flag(improved)
        stop = rt.broadcast_flag(selector.should_stop if rt.is_main else False)
        if improved and rt.is_main:
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in _unwrap(model).state_dict().items()}
            if checkpoint_dir is not None:
                _write_checkpoint(_unwrap(model), checkpoint_dir, epoch)
        record = EpochRecord(epoch, train_metrics, heldout_metrics, improved, seconds, seen,
                             wait / seconds if seconds > 0 else 0.0, eval_seconds)
        records.append(record)
        if rt.is_main:
            log(_epoch_line(record))
        if stop and epoch < opts.epochs:
            stopped_early = True
            break
    timing = {
        "train_seconds": total_time,
        "examples_per_s": total_examples / total_time if total_time > 0 else 0.0,
        "input_wait_fraction": total_wait / total_time if total_time > 0 else 0.0,
        "eval_seconds": total_eval,
    }
    return LoopResult(records, selector, best_state, stopped_early, timing)


def _write_checkpoint(model: Any, directory: Path, epoch: int) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = directory / "best.safetensors.tmp"
    save_file(state, str(tmp), metadata={"epoch": str(epoch)})
    tmp.replace(directory / "best.safetensors")


def _epoch_line(r: EpochRecord) -> str:
    h = r.heldout

    def fmt(key: str) -> str:
        v = h.get(key)
        return "-" if v is None else f"{v:.4f}"

    return (f"epoch {r.epoch}: loss {r.train['loss']:.4f}  promotion {fmt('promotion_score')}  "
            f"teacher_match {fmt('teacher_match')}  accuracy {fmt('accuracy')}  "
            f"recall.safety_escalation {fmt('recall.safety_escalation')}  ece {fmt('ece')}"
            f"{'  *best' if r.improved else ''}")


def softmax_np(logits: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    return torch.softmax(logits.float() / temperature, dim=-1).numpy()
