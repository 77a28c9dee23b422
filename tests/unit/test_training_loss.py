"""The distillation loss against a numpy computation of its definition, and the DDP batch split."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from schemas.errors import ConfigError  # noqa: E402
from training.loss import DEFAULT_BLEND, PURE_KD, LossWeights, distillation_loss  # noqa: E402
from training.runtime import GlobalBatches  # noqa: E402


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _numpy_loss(logits, labels, teacher, kd_mask, weights, high_risk, w: LossWeights, norm):
    """L = Σ_i w_i (w_ce·CE_i + w_kd·m_i·T²·KL(q_T‖p_T) + w_rare·[y_i high-risk]·CE_i) / norm,
    with q_T ∝ q^(1/T): written out with numpy, term by term."""
    t = w.temperature
    p = _softmax(logits)
    ce = -np.log(p[np.arange(len(labels)), labels])
    q_t = teacher ** (1 / t)
    q_t /= q_t.sum(axis=1, keepdims=True)
    p_t = _softmax(logits / t)
    kl = (q_t * (np.log(q_t) - np.log(p_t))).sum(axis=1) * t * t
    rare = ce * high_risk[labels]
    return (weights * (w.ce * ce + w.kd * kd_mask * kl + w.rare * rare)).sum() / norm


@pytest.mark.parametrize("w", [DEFAULT_BLEND, PURE_KD, LossWeights(0.2, 0.3, 0.5, temperature=3.5)])
def test_loss_matches_its_definition(w: LossWeights) -> None:
    rng = np.random.default_rng(0)
    n, c = 12, 9
    logits = rng.normal(size=(n, c)) * 2
    labels = rng.integers(0, c, size=n)
    teacher = rng.dirichlet(np.ones(c), size=n)
    kd_mask = (rng.random(n) > 0.3).astype(float)
    weights = rng.uniform(0.25, 2.0, size=n)
    high_risk = np.array([False] * 4 + [True] * 5)
    got = distillation_loss(
        torch.tensor(logits), torch.tensor(labels), torch.tensor(teacher), torch.tensor(kd_mask),
        torch.tensor(weights), torch.tensor(high_risk), w, float(weights.sum() * 1.5))
    want = _numpy_loss(logits, labels, teacher, kd_mask, weights, high_risk.astype(float), w,
                       weights.sum() * 1.5)
    assert float(got.total) == pytest.approx(want, rel=1e-5)


def test_kd_term_is_zero_when_student_equals_teacher() -> None:
    # KL(q‖p) = 0 at p = q for any T: a student whose logits are the teacher's log-probs.
    teacher = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=torch.float64)
    parts = distillation_loss(teacher.log(), torch.tensor([0, 2]), teacher, torch.ones(2),
                              torch.ones(2), torch.tensor([False, False, True]),
                              LossWeights(0.0, 1.0, 0.0, temperature=2.0), 2.0)
    assert float(parts.kd) == pytest.approx(0.0, abs=1e-7)


def test_rare_term_is_paid_only_by_high_risk_labels() -> None:
    logits = torch.zeros(2, 3)
    teacher = torch.full((2, 3), 1 / 3)
    hr = torch.tensor([False, False, True])
    normal = distillation_loss(logits, torch.tensor([0, 1]), teacher, torch.ones(2), torch.ones(2), hr,
                               DEFAULT_BLEND, 2.0)
    risky = distillation_loss(logits, torch.tensor([2, 2]), teacher, torch.ones(2), torch.ones(2), hr,
                              DEFAULT_BLEND, 2.0)
    assert float(normal.rare) == 0.0
    assert float(risky.rare) == pytest.approx(np.log(3))  # uniform prediction: −log(1/3)


def test_ranks_split_of_a_batch_adds_up_to_the_whole_batch_gradient() -> None:
    """With the global batch's weight as normaliser, the gradients of the ranks' parts add up to
    the single-process gradient (DDP then averages, hence the × world size in the trainer)."""
    rng = np.random.default_rng(1)
    n, c = 10, 9
    logits = torch.tensor(rng.normal(size=(n, c)), requires_grad=True)
    labels = torch.tensor(rng.integers(0, c, size=n))
    teacher = torch.tensor(rng.dirichlet(np.ones(c), size=n))
    weights = torch.tensor(rng.uniform(0.5, 2.0, size=n))
    hr = torch.tensor([False] * 4 + [True] * 5)
    ones = torch.ones(n)
    whole = distillation_loss(logits, labels, teacher, ones, weights, hr, DEFAULT_BLEND, weights.sum())
    (g_whole,) = torch.autograd.grad(whole.total, logits)
    g_parts = torch.zeros_like(logits)
    for part in (slice(0, 4), slice(4, 10)):
        piece = distillation_loss(logits[part], labels[part], teacher[part], ones[part], weights[part],
                                  hr, DEFAULT_BLEND, weights.sum())
        (g,) = torch.autograd.grad(piece.total, logits)
        g_parts += g
    assert torch.allclose(g_whole, g_parts, atol=1e-12)


def test_global_batches_give_each_rank_a_disjoint_share() -> None:
    single = GlobalBatches(103, 10, seed=7)
    ranks = [GlobalBatches(103, 10, seed=7, rank=r, world_size=3) for r in range(3)]
    for epoch in (1, 2):
        for s in (single, *ranks):
            s.set_epoch(epoch)
        batches = single.global_batches()
        assert sorted(i for b in batches for i in b) == list(range(103))
        parts = [list(r) for r in ranks]
        for k, batch in enumerate(batches):
            shares = [p[k] for p in parts]
            assert sum(shares, []) == batch  # contiguous, in order, nothing lost or repeated
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
    single.set_epoch(1)
    first = single.global_batches()
    single.set_epoch(2)
    assert single.global_batches() != first  # a fresh permutation each epoch


def test_loss_weights_are_checked() -> None:
    assert LossWeights.parse("0.45,0.55,0.30") == DEFAULT_BLEND
    for bad in ("1,2", "a,b,c", "-1,0.5,0.5", "0,0,0"):
        with pytest.raises(ConfigError):
            LossWeights.parse(bad)
    with pytest.raises(ConfigError):
        LossWeights(temperature=0.0)
