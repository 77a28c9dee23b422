"""``distillwatch train``: retrain the student from shadow data (DESIGN §9).

    distillwatch train (--from-log LOG.jsonl | --dataset SNAPSHOT.parquet | --request REQ.json)
                       --out DIR [--device auto] [--epochs N] [--student tiny|PATH]
                       [--weights CE,KD,RARE]

Under ``torchrun`` (WORLD_SIZE > 1) every rank runs this command; rank 0 writes DIR.
torch and transformers are the ``training`` extra: they are imported only when the job runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from distillwatch.cli.context import console_err, fail, settings_of
from schemas.errors import DistillwatchError

INSTALL_HINT = "pip install 'distillwatch[training]'"


def train(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (model, metrics.json, report)."),
    from_log: Optional[Path] = typer.Option(None, "--from-log", help="Replay log (JSON lines) to train from."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Parquet snapshot of distill_examples."),
    request: Optional[Path] = typer.Option(None, "--request", help="RetrainRequest JSON (names its snapshot)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu, cuda, cuda:N."),
    epochs: int = typer.Option(8, "--epochs", min=1, help="Most epochs to run."),
    patience: int = typer.Option(2, "--patience", min=1, help="Stop after this many epochs without a better promotion score."),
    student: str = typer.Option("tiny", "--student", help="tiny, mini, small, or a local model directory."),
    dropout: Optional[float] = typer.Option(None, "--dropout", min=0.0, max=0.9, help="Dropout [default: the student's, 0.1]."),
    weights: Optional[str] = typer.Option(None, "--weights", help="CE,KD,RARE loss weights [default: request hints, else 0.45,0.55,0.30]."),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=0.01, help="KD temperature T [default: request hint, else 2]."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Global batch size (split across DDP ranks)."),
    lr: Optional[float] = typer.Option(None, "--lr", min=0.0, help="Peak learning rate (AdamW) [default: 3e-3 tiny, 1e-3 mini, 5e-4 small, 5e-5 pretrained]."),
    heldout: float = typer.Option(0.2, "--heldout", min=0.01, max=0.9, help="Held-out share (by request id)."),
    slice_: Optional[list[str]] = typer.Option(None, "--slice", help="Report this slice separately (repeatable), e.g. region=br."),
    model: str = typer.Option("student", "--model", help="Model name recorded in metrics.json."),
    seed: int = typer.Option(0, "--seed", help="Seed for init, dropout and batch order."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads per process [default: 1 on CPU]."),
) -> None:
    """Distil a student from shadow data: filtered teacher targets, CE + KD + rare-class loss,
    best epoch by held-out promotion score, temperature scaling; writes DIR."""
    settings = settings_of(ctx)
    if sum(x is not None for x in (from_log, dataset, request)) != 1:
        fail("give exactly one of --from-log LOG.jsonl, --dataset SNAPSHOT.parquet, --request REQ.json")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        fail(f"training needs torch and transformers ({exc.name or exc} is missing): {INSTALL_HINT}")
    from evaluators.privacy import Redactor
    from training.dataset import PrepareOptions
    from training.job import TrainingOptions, run_training
    from training.loss import LossWeights
    from training.trainer import LoopOptions

    try:
        loss = None
        if weights is not None or temperature is not None:
            t = 2.0 if temperature is None else temperature
            loss = LossWeights.parse(weights, t) if weights is not None else LossWeights(temperature=t)
        opts = TrainingOptions(
            out_dir=out, log=from_log, dataset=dataset, request=request,
            eval_config=settings.evaluation.eval_config(), weights=loss, student=student, dropout=dropout,
            device=device, slices=tuple(slice_ or ()), model=model, threads=threads,
            loop=LoopOptions(epochs=epochs, patience=patience, batch_size=batch_size, lr=lr, seed=seed),
            prepare=PrepareOptions(heldout_share=heldout),
            redactor=Redactor(settings.privacy.order_id_pattern),
        )
        result = run_training(opts)
    except DistillwatchError as exc:
        fail(str(exc))
    if result.is_main:
        console_err.print(f"model {result.model_version} written to {out}", markup=False, highlight=False)
