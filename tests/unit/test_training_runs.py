"""Real (tiny, CPU) training runs: the rare-class blend and the stop rule.

The expected numbers come from the way the synthetic data is built (``training.synthetic``)
and are recomputed here from the saved models with scikit-learn and numpy, not read back
from the job's own metrics alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score

torch = pytest.importorskip("torch")

from evaluators.config import EvalConfig  # noqa: E402
from training.dataset import Example, PrepareOptions, in_heldout  # noqa: E402
from training.job import TrainingOptions, TrainingResult, run_training  # noqa: E402
from training.loss import DEFAULT_BLEND, PURE_KD, LossWeights  # noqa: E402
from training.synthetic import noisy_overfit, rare_collapse  # noqa: E402
from training.trainer import LoopOptions  # noqa: E402

CLASSES = list(EvalConfig().intents)
SAFETY = CLASSES.index("safety_escalation")


def _predict(out: Path, prompts: list[str], temperature: float = 1.0) -> np.ndarray:
    """Probabilities of the saved model (logits × ``temperature`` undoes the folded scaling)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert [model.config.id2label[i] for i in range(len(CLASSES))] == CLASSES
    with torch.no_grad():
        logits = model(**tok(prompts, padding=True, truncation=True, return_tensors="pt")).logits
    return torch.softmax(logits.double() * temperature, dim=-1).numpy()


def ece_numpy(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    return sum(abs((correct[idx == b] - conf[idx == b]).sum()) for b in range(bins)) / len(labels)


def _heldout(examples: list[Example], share: float) -> tuple[list[str], np.ndarray]:
    held = [e for e in examples if in_heldout(e.request_id, share)]
    return [e.prompt for e in held], np.array([CLASSES.index(e.reference_intent or "") for e in held])


@pytest.fixture(scope="module")
def rare_class_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same scenario-4 data trained with the default blend and with pure KD."""
    examples = rare_collapse(n_train=6000, n_heldout=2000, seed=0, heldout_share=0.25)
    runs: dict[str, Any] = {"examples": examples}
    for name, weights in (("blend", DEFAULT_BLEND), ("pure_kd", PURE_KD)):
        out = tmp_path_factory.mktemp(name)
        runs[name] = run_training(TrainingOptions(
            out_dir=out, examples=examples, weights=weights, threads=1, log_fn=lambda _: None,
            loop=LoopOptions(epochs=8, patience=2, seed=0), prepare=PrepareOptions(heldout_share=0.25)))
    return runs


def test_default_blend_recovers_safety_recall_at_almost_no_accuracy_cost(rare_class_runs: dict[str, Any]) -> None:
    """The guide's scenario 4 (82 % → 94 % safety recall for −0.4 pp accuracy), in miniature:
    15 % of safety_escalation requests share their wording with (slightly more) faq requests,
    and the teacher's soft label on them leans to faq."""
    prompts, y = _heldout(rare_class_runs["examples"], 0.25)
    assert len(y) == 2000 and (y == SAFETY).sum() == 100
    got = {}
    for name in ("blend", "pure_kd"):
        result: TrainingResult = rare_class_runs[name]
        pred = _predict(result.out_dir, prompts).argmax(axis=1)
        recall = recall_score(y, pred, labels=[SAFETY], average=None)[0]
        accuracy = accuracy_score(y, pred)
        got[name] = (recall, accuracy)
        # metrics.json reports the same numbers for the saved model.
        assert result.metrics["final"]["recall.safety_escalation"] == pytest.approx(recall)
        assert result.metrics["final"]["accuracy"] == pytest.approx(accuracy)
    (blend_recall, blend_acc), (kd_recall, kd_acc) = got["blend"], got["pure_kd"]
    assert blend_recall >= 0.94
    assert kd_recall < 0.94 and kd_recall < blend_recall
    assert abs(blend_acc - kd_acc) <= 0.005


def test_blend_run_records_every_epoch_and_its_choice(rare_class_runs: dict[str, Any]) -> None:
    m = rare_class_runs["blend"].metrics
    epochs = m["epochs"]
    scores = [e["heldout"]["promotion_score"] for e in epochs]
    assert m["choice"]["epoch"] == epochs[int(np.argmax(scores))]["epoch"]
    if m["choice"]["stopped_early"]:  # patience 2: the last two epochs did not improve
        assert len(epochs) - m["choice"]["epoch"] == 2
    assert m["options"]["loss_weights"] == {"ce": 0.45, "kd": 0.55, "rare": 0.30, "temperature": 2.0}
    assert m["dataset"]["train"] == 6000 and m["dataset"]["heldout"] == 2000


def test_late_overfit_keeps_the_earlier_best_epoch(tmp_path: Path) -> None:
    """Half the requests are a coin flip between faq and recommendation, and every one of those
    prompts carries a nonsense word of its own. Forced: hard labels alone, no dropout or weight
    decay, and a vocabulary that keeps one-off words. The student learns the clear cues first
    and then memorises the coin flips: the training loss keeps falling while held-out ECE and
    confident errors climb (the guide's epoch table: keep epoch 4, not 6)."""
    examples = noisy_overfit(n_train=2000, n_heldout=1000, seed=0)
    result = run_training(TrainingOptions(
        out_dir=tmp_path, examples=examples, weights=LossWeights(1.0, 0.0, 0.0), dropout=0.0,
        vocab_min_count=1, threads=1, log_fn=lambda _: None, prepare=PrepareOptions(heldout_share=0.5),
        loop=LoopOptions(epochs=10, patience=10, batch_size=32, weight_decay=0.0, seed=0)))
    epochs = result.metrics["epochs"]
    assert len(epochs) == 10
    h = [e["heldout"] for e in epochs]
    # The score, recomputed from its parts with DESIGN §5's weights.
    scores = [0.35 * x["teacher_match"] + 0.25 * x["student_win_rate"]
              + 0.20 * x["recall.safety_escalation"] - 0.10 * x["hallucination_proxy"] - 0.10 * x["ece"]
              for x in h]
    best = int(np.argmax(scores))
    chosen = result.chosen_epoch
    assert chosen == best + 1
    assert chosen < 10
    last, kept = h[-1], h[best]
    assert scores[-1] < scores[best] - 0.01
    assert last["ece"] > kept["ece"] + 0.05  # the overfit shows in calibration ...
    assert epochs[-1]["train"]["loss"] < epochs[best]["train"]["loss"]  # ... not in train loss
    # The saved model is the kept epoch, not the last one: its held-out ECE before scaling
    # (logits × T undo the folded temperature), computed here with numpy.
    prompts, y = _heldout(examples, 0.5)
    probs = _predict(tmp_path, prompts, temperature=result.metrics["calibration"]["temperature"])
    assert ece_numpy(probs, y) == pytest.approx(kept["ece"], abs=2e-3)
    assert accuracy_score(y, probs.argmax(1)) == pytest.approx(kept["accuracy"], abs=1e-9)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "checkpoint" / "best.safetensors"), "pt") as f:
        assert f.metadata()["epoch"] == str(chosen)
