"""The knobs of evaluation: label set, routing rule, costs, thresholds (DESIGN §5 defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.labelsets import MANGAASSIST_HIGH_RISK, MANGAASSIST_INTENTS


@dataclass(frozen=True)
class EvalConfig:
    """Everything a per-request evaluation and a window readout depend on."""

    intents: tuple[str, ...] = MANGAASSIST_INTENTS
    high_risk: tuple[str, ...] = MANGAASSIST_HIGH_RISK
    fallback_threshold: float = 0.72
    """Route to the teacher when the student's top-1 is below this ..."""
    fallback_margin: float = 0.08
    """... or top-1 minus top-2 is below this, or top-1 is a high-risk class."""
    naive_fallback_threshold: float = 0.80
    confident_threshold: float = 0.80
    student_cost_per_1k: float = 0.20
    teacher_cost_per_1k: float = 3.00
    daily_volume: int = 10_000_000
    planned_fallback_rate: float = 0.10
    new_title_days: float = 60.0
    ece_bins: int = 15
    crosses: tuple[tuple[str, ...], ...] = field(default_factory=tuple)
    """Slice crosses, e.g. (("region", "device"),); none by default."""

    def __post_init__(self) -> None:
        unknown = set(self.high_risk) - set(self.intents)
        if unknown:
            raise ValueError(f"high_risk names classes not in intents: {sorted(unknown)}")
        if len(set(self.intents)) != len(self.intents):
            raise ValueError("intents has duplicates")
        object.__setattr__(self, "_order", {name: i for i, name in enumerate(self.intents)})

    @property
    def order(self) -> dict[str, int]:
        """Position of each configured class: top-1 ties go to the earlier one."""
        return self._order  # type: ignore[attr-defined]

    def cost_per_1k(self, fallback_rate: float) -> float:
        """Blended serving cost per 1,000 requests at a given teacher-fallback rate."""
        return (1.0 - fallback_rate) * self.student_cost_per_1k + fallback_rate * self.teacher_cost_per_1k

    def daily_cost(self, fallback_rate: float) -> float:
        return self.cost_per_1k(fallback_rate) * self.daily_volume / 1000.0
