"""Which epoch to keep, and when to stop (the guide's scenario 12).

Train loss keeps falling long after the production metrics turn; the job keeps the epoch with
the best *promotion score* on the held-out split and stops after ``patience`` epochs without
an improvement. The score is DESIGN §5's:

    0.35 teacher_match + 0.25 student_win_rate + 0.20 recall.safety_escalation
    − 0.10 hallucination − 0.10 ece

The guide's own epoch table picks epoch 4, not the last epoch 6:

>>> table = {1: (0.79, 0.050, 0.11), 2: (0.84, 0.039, 0.08), 3: (0.86, 0.034, 0.06),
...          4: (0.865, 0.033, 0.06), 5: (0.861, 0.037, 0.08), 6: (0.852, 0.043, 0.10)}
>>> sel = CheckpointSelector(patience=2)
>>> for epoch, (match, halluc, ece) in table.items():
...     _ = sel.update(epoch, promotion_score({"teacher_match": match, "hallucination_proxy": halluc,
...         "ece": ece, "student_win_rate": 0.5, "recall.safety_escalation": 0.9}))
>>> sel.best_epoch, sel.should_stop
(4, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.errors import ConfigError

WEIGHTS = {
    "teacher_match": 0.35,
    "student_win_rate": 0.25,
    "recall.safety_escalation": 0.20,
    "hallucination_proxy": -0.10,
    "ece": -0.10,
}
"""DESIGN §5's promotion-score weights; ``hallucination_proxy`` stands in for
hallucination_rate (see ``training.evaluation``)."""
RECALL_FALLBACK = "escalation_recall"


def promotion_score(metrics: Mapping[str, float]) -> float | None:
    """The weighted sum, or None when a part is missing.

    A held-out split without a single safety_escalation reference has no
    ``recall.safety_escalation``; ``escalation_recall`` (all high-risk classes) stands in.
    """
    total = 0.0
    for name, weight in WEIGHTS.items():
        value = metrics.get(name)
        if value is None and name == "recall.safety_escalation":
            value = metrics.get(RECALL_FALLBACK)
        if value is None:
            return None
        total += weight * value
    return total


@dataclass
class CheckpointSelector:
    """Best score so far, and whether ``patience`` epochs passed without beating it.

    An epoch improves only when its score is higher by more than ``min_delta``; a missing
    score (None) never improves. Ties keep the earlier epoch (cheaper, and less fitted).
    """

    patience: int = 2
    min_delta: float = 0.0
    best_epoch: int | None = None
    best_score: float | None = None
    since_best: int = 0
    history: list[tuple[int, float | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ConfigError(f"patience is {self.patience}; expected ≥ 1")

    def update(self, epoch: int, score: float | None) -> bool:
        """Record an epoch's score; True when it is the new best."""
        self.history.append((epoch, score))
        better = score is not None and (
            self.best_score is None or score > self.best_score + self.min_delta)
        if better:
            self.best_epoch, self.best_score, self.since_best = epoch, score, 0
        else:
            self.since_best += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.since_best >= self.patience
