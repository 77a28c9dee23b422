"""Benchmark: training throughput of the retraining job and how long it waits for data.

    python -m bench.bench_train [--train 20000] [--epochs 3] [--student tiny] [--device auto]
                                [--batch-size 64] [--workers N] [--threads N] [--json]

Trains on the synthetic scenario-4 dataset (``training.synthetic.rare_collapse``) through
``run_training`` itself, so the figures include batching, the loss and the optimiser step.
Reports examples/s over the training loops, the share of loop time spent waiting for the next
batch (``input_wait_fraction``; goal < 10 %), and the held-out evaluation's share of the job.
GPU: run with ``--device cuda`` where one is present (bf16 autocast, pinned-memory workers).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from training.dataset import PrepareOptions
from training.job import TrainingOptions, run_training
from training.synthetic import rare_collapse
from training.trainer import LoopOptions


def run(train: int, heldout: int, epochs: int, student: str, device: str, batch_size: int,
        workers: int | None, threads: int | None) -> dict[str, object]:
    examples = rare_collapse(n_train=train, n_heldout=heldout, seed=0, heldout_share=heldout / (train + heldout))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = run_training(TrainingOptions(
            out_dir=Path(tmp), examples=examples, student=student, device=device, threads=threads,
            log_fn=lambda _: None, save_model=False, checkpoints=False,
            loop=LoopOptions(epochs=epochs, patience=epochs, batch_size=batch_size, workers=workers),
            prepare=PrepareOptions(heldout_share=heldout / (train + heldout))))
        job_s = time.perf_counter() - started
    m = result.metrics
    perf = m["performance"]
    rows = m["epochs"]
    return {
        "device": m["options"]["device"], "precision": m["options"]["precision"],
        "student": student, "parameters": m["options"]["parameters"], "train_examples": m["dataset"]["train"],
        "heldout_examples": m["dataset"]["heldout"], "epochs": len(rows), "batch_size": batch_size,
        "examples_per_s": round(perf["examples_per_s"]),
        "examples_per_s_by_epoch": [r["examples_per_s"] for r in rows],
        "cpu_threads": m["options"]["cpu_threads"],
        "input_wait_fraction": round(perf["input_wait_fraction"], 4),
        "train_s": round(perf["train_seconds"], 2),
        "heldout_eval_s": round(perf["eval_seconds"], 2),
        "job_s": round(job_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=20_000)
    parser.add_argument("--heldout", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--student", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers [default: 0 on CPU, 4 on CUDA]")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads [default: 1 on CPU]")
    parser.add_argument("--json", action="store_true")
    a = parser.parse_args()
    out = run(a.train, a.heldout, a.epochs, a.student, a.device, a.batch_size, a.workers, a.threads)
    if a.json:
        print(json.dumps(out))
        return
    for key, value in out.items():
        print(f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
