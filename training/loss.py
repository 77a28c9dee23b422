"""The distillation loss (DESIGN §9): hard labels, the teacher's soft labels, a rare-class term.

    L = w_ce · CE(hard) + w_kd · T² · KL(teacher_T ‖ student_T) + w_rare · rare

* ``CE(hard)``: cross-entropy against the reference intent (human label, else production's
  reference, else the teacher's top-1).
* ``KL``: the teacher's *probabilities* come precomputed from the shadow data, so the teacher
  is softened in log space, ``teacher_T ∝ p^(1/T)`` (what ``softmax(logits / T)`` gives for
  the logits behind ``p``). ``T²`` keeps its gradients on the scale of the hard-label term
  (Hinton et al.). Examples whose teacher target was dropped (contradicts the catalog, lacks
  evidence support, overridden by a human label) carry ``kd_mask = 0`` and pay no KD term.
* ``rare``: the cross-entropy again, paid only by examples whose hard label is a high-risk
  class. Soft labels blur a rare class into a nearby common one (the guide's scenario 4);
  this term gives the hard decision on exactly those classes extra weight.

Every term is a per-example value multiplied by the example's weight (class and recency
weighting, see ``training.dataset``). The sum is divided by a *given* normaliser, the total
weight of the global batch, so that with DDP the ranks' gradients add up to the gradient of
the single-process batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from schemas.errors import ConfigError

MIN_PROB = 1e-8
"""Teacher probabilities are clamped here before the log (a class may be given exactly 0)."""


@dataclass(frozen=True)
class LossWeights:
    """w_ce, w_kd, w_rare and the temperature T."""

    ce: float = 0.45
    kd: float = 0.55
    rare: float = 0.30
    temperature: float = 2.0

    def __post_init__(self) -> None:
        for name in ("ce", "kd", "rare"):
            value = getattr(self, name)
            if not value >= 0:
                raise ConfigError(f"loss weight {name} is {value}; expected a number ≥ 0")
        if self.ce + self.kd + self.rare <= 0:
            raise ConfigError("loss weights are all 0; at least one of ce, kd, rare must be > 0")
        if not self.temperature > 0:
            raise ConfigError(f"temperature is {self.temperature}; expected > 0")

    @classmethod
    def parse(cls, text: str, temperature: float = 2.0) -> LossWeights:
        """``"0.45,0.55,0.30"`` → LossWeights; the CLI's ``--weights CE,KD,RARE``."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3:
            raise ConfigError(f"--weights {text!r}: expected three numbers CE,KD,RARE")
        try:
            ce, kd, rare = (float(p) for p in parts)
        except ValueError:
            raise ConfigError(f"--weights {text!r}: expected three numbers CE,KD,RARE") from None
        return cls(ce, kd, rare, temperature)


DEFAULT_BLEND = LossWeights(0.45, 0.55, 0.30)
"""The reference guide's safer blend for the escalation classifier."""
PURE_KD = LossWeights(0.15, 0.85, 0.0)
"""The guide's original setting, kept for comparison: soft labels dominate."""


@dataclass
class LossParts:
    """Weighted sums of each term over a batch (not yet normalised) and their total."""

    total: torch.Tensor
    ce: torch.Tensor
    kd: torch.Tensor
    rare: torch.Tensor


def distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_probs: torch.Tensor,
    kd_mask: torch.Tensor,
    weights: torch.Tensor,
    high_risk: torch.Tensor,
    w: LossWeights,
    normaliser: float | torch.Tensor,
) -> LossParts:
    """The loss of one (local) batch, divided by ``normaliser``.

    logits (N, C); labels (N,) class indices; teacher_probs (N, C) rows summing to 1;
    kd_mask (N,) 1.0 where the teacher target is kept; weights (N,) example weights;
    high_risk (C,) bool, the classes the rare term covers.
    """
    logits = logits.float()
    log_p = F.log_softmax(logits, dim=-1)
    ce = -log_p.gather(1, labels[:, None]).squeeze(1)
    t = w.temperature
    log_q_t = F.log_softmax(torch.log(teacher_probs.float().clamp_min(MIN_PROB)) / t, dim=-1)
    log_p_t = F.log_softmax(logits / t, dim=-1)
    kl = (log_q_t.exp() * (log_q_t - log_p_t)).sum(dim=-1) * (t * t)
    rare = ce * high_risk[labels].float()
    wk = weights.float()
    ce_sum = (wk * ce).sum()
    kd_sum = (wk * kd_mask.float() * kl).sum()
    rare_sum = (wk * rare).sum()
    total = (w.ce * ce_sum + w.kd * kd_sum + w.rare * rare_sum) / normaliser
    return LossParts(total, ce_sum / normaliser, kd_sum / normaliser, rare_sum / normaliser)
