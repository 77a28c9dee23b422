"""A 2-process DDP run on CPU (gloo, under torchrun) against the same job in one process.

Each rank trains on its half of every global batch and the loss is normalised by the global
batch's weight, so the two runs compute the same updates; with dropout off the only
difference left is the order of floating-point sums in the all-reduce. Stated tolerance:
every held-out metric of every epoch within 1e-3 (absolute), the epoch's train loss within
1e-3 (relative).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from training.dataset import PrepareOptions  # noqa: E402
from training.job import TrainingOptions, run_training  # noqa: E402
from training.sources import write_parquet  # noqa: E402
from training.synthetic import rare_collapse  # noqa: E402
from training.trainer import LoopOptions  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
METRIC_TOLERANCE = 1e-3
LOSS_RELATIVE_TOLERANCE = 1e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(600)
def test_two_process_gloo_run_matches_one_process(tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshot.parquet"
    write_parquet(rare_collapse(n_train=1200, n_heldout=400, seed=4), snapshot)
    args = ["--dataset", str(snapshot), "--epochs", "2", "--dropout", "0", "--heldout", "0.25",
            "--batch-size", "32"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(REPO)
    ddp_out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
         "-m", "distillwatch", "train", *args, "--out", str(ddp_out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((ddp_out / "metrics.json").read_text())
    assert ddp["options"]["world_size"] == 2

    single = run_training(TrainingOptions(
        out_dir=tmp_path / "single", dataset=snapshot, dropout=0.0, threads=1, log_fn=lambda _: None,
        loop=LoopOptions(epochs=2, batch_size=32), prepare=PrepareOptions(heldout_share=0.25))).metrics
    assert single["options"]["world_size"] == 1
    assert len(ddp["epochs"]) == len(single["epochs"]) == 2
    for d, s in zip(ddp["epochs"], single["epochs"]):
        assert d["examples"] == s["examples"] == ddp["dataset"]["train"]
        assert d["train"]["loss"] == pytest.approx(s["train"]["loss"], rel=LOSS_RELATIVE_TOLERANCE)
        assert set(d["heldout"]) == set(s["heldout"])
        for key, value in s["heldout"].items():
            assert d["heldout"][key] == pytest.approx(value, abs=METRIC_TOLERANCE), key
    assert ddp["choice"]["epoch"] == single["choice"]["epoch"]
    assert ddp["calibration"]["temperature"] == pytest.approx(single["calibration"]["temperature"], rel=1e-2)
