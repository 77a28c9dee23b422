"""Temperature scaling, and held-out metrics through the metric library checked against
scikit-learn and numpy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score

torch = pytest.importorskip("torch")

from evaluators.config import EvalConfig  # noqa: E402
from training.calibration import fit_temperature, fold_temperature, nll  # noqa: E402
from training.dataset import Example  # noqa: E402
from training.evaluation import evaluate_candidate, probs_dicts  # noqa: E402

CONFIG = EvalConfig()
CLASSES = list(CONFIG.intents)


def ece_numpy(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """DESIGN §5: bins [k/15, (k+1)/15), 1.0 in the last; Σ |Σ (correct − top-1)| / n."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    return sum(abs((correct[idx == b] - conf[idx == b]).sum()) for b in range(bins)) / len(labels)


def _overconfident(n: int, seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from softmax(z); the model reports scale·z (overconfident for scale > 1)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 9, generator=g) * 1.5
    labels = torch.multinomial(torch.softmax(z, dim=-1), 1, generator=g).squeeze(1)
    return z * scale, labels


def test_temperature_scaling_lowers_ece_of_an_overconfident_model() -> None:
    fit_logits, fit_labels = _overconfident(4000, seed=1, scale=3.0)
    test_logits, test_labels = _overconfident(4000, seed=2, scale=3.0)
    t = fit_temperature(fit_logits, fit_labels)
    assert 2.5 < t < 3.5  # the truth is 3
    before = ece_numpy(torch.softmax(test_logits, -1).numpy(), test_labels.numpy())
    after = ece_numpy(torch.softmax(test_logits / t, -1).numpy(), test_labels.numpy())
    assert before > 0.15 and after < before / 3
    assert nll(test_logits, test_labels, t) < nll(test_logits, test_labels)
    # Top-1 never changes, so accuracy does not either.
    assert torch.equal(test_logits.argmax(-1), (test_logits / t).argmax(-1))


def test_a_calibrated_model_keeps_temperature_near_one() -> None:
    logits, labels = _overconfident(4000, seed=3, scale=1.0)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.1)
    assert fit_temperature(torch.zeros(0, 9), torch.zeros(0, dtype=torch.long)) == 1.0


def test_folding_divides_the_logits_by_t() -> None:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=9)).eval()
    ids = torch.randint(5, 50, (4, 7))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        assert fold_temperature(model, 9, 2.5)
        after = model(input_ids=ids).logits
    assert torch.allclose(after, before / 2.5, atol=1e-6)


def _heldout(n: int, seed: int) -> tuple[list[Example], np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.choice(len(CLASSES), size=n, p=[0.3, 0.2, 0.15, 0.1, 0.05, 0.08, 0.04, 0.04, 0.04])
    teacher = rng.dirichlet(np.ones(9) * 0.3, size=n)
    teacher[np.arange(n), truth] += rng.uniform(0, 1.5, size=n)  # teacher often right
    teacher /= teacher.sum(axis=1, keepdims=True)
    student = rng.dirichlet(np.ones(9) * 0.3, size=n)
    student[np.arange(n), truth] += rng.uniform(0, 1.2, size=n)
    student /= student.sum(axis=1, keepdims=True)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    examples = [Example(request_id=f"r{i}", ts=t0 + timedelta(seconds=i), prompt="",
                        teacher_probs=dict(zip(CLASSES, map(float, teacher[i]))),
                        reference_intent=CLASSES[truth[i]], reference_source="request",
                        slice={"region": "eu" if i % 3 else "br"}, multi_intent=False, new_title=False)
                for i in range(n)]
    return examples, truth, teacher, student


def test_heldout_metrics_agree_with_sklearn_and_numpy() -> None:
    examples, truth, teacher, student = _heldout(3000, seed=5)
    report = evaluate_candidate(examples, probs_dicts(student, CLASSES), CONFIG)
    for key, mask in (("all", np.ones(len(truth), bool)),
                      ("region=br", np.array([i % 3 == 0 for i in range(len(truth))]))):
        m = report.slices[key]
        s_pred, t_pred, y = student[mask].argmax(1), teacher[mask].argmax(1), truth[mask]
        assert m["support"] == mask.sum()
        assert m["accuracy"] == pytest.approx(accuracy_score(y, s_pred))
        assert m["teacher_match"] == pytest.approx(np.mean(s_pred == t_pred))
        for c in CONFIG.high_risk:
            k = CLASSES.index(c)
            want = recall_score(y, s_pred, labels=[k], average=None, zero_division=0)[0]
            assert m[f"recall.{c}"] == pytest.approx(want)
        assert m["ece"] == pytest.approx(ece_numpy(student[mask], y))
        conf_err = np.mean((student[mask].max(1) >= 0.8) & (s_pred != y))
        assert m["hallucination_proxy"] == pytest.approx(conf_err)
        s_ok, t_ok = s_pred == y, t_pred == y
        win = np.mean(np.where(s_ok == t_ok, 0.5, np.where(s_ok, 1.0, 0.0)))
        assert m["student_win_rate"] == pytest.approx(win)
        want_score = (0.35 * m["teacher_match"] + 0.25 * win + 0.20 * m["recall.safety_escalation"]
                      - 0.10 * conf_err - 0.10 * m["ece"])
        assert m["promotion_score"] == pytest.approx(want_score)
    # The reliability bins are the library's ECE bins of slice "all".
    n_binned = sum(n for _, _, n in report.reliability)
    assert n_binned == len(truth)
