"""Checkpoint choice and stop rule: the guide's epoch table (scenario 12), worked by hand."""

from __future__ import annotations

import pytest

from schemas.errors import ConfigError
from training.selection import CheckpointSelector, promotion_score

# The guide's table: epoch → (teacher match, hallucination, ECE). Win rate and safety recall
# are not in the table; they are held at 0.5 and 0.9, which adds 0.25·0.5 + 0.20·0.9 = 0.305.
GUIDE_TABLE = {1: (0.79, 0.050, 0.11), 2: (0.84, 0.039, 0.08), 3: (0.86, 0.034, 0.06),
               4: (0.865, 0.033, 0.06), 5: (0.861, 0.037, 0.08), 6: (0.852, 0.043, 0.10)}
# By hand, 0.35·match − 0.10·halluc − 0.10·ece + 0.305:
HAND_SCORES = {1: 0.5655, 2: 0.5871, 3: 0.5966, 4: 0.59845, 5: 0.59465, 6: 0.5889}


def _metrics(match: float, halluc: float, ece: float) -> dict[str, float]:
    return {"teacher_match": match, "hallucination_proxy": halluc, "ece": ece,
            "student_win_rate": 0.5, "recall.safety_escalation": 0.9}


def test_promotion_score_matches_the_hand_computed_table() -> None:
    for epoch, row in GUIDE_TABLE.items():
        assert promotion_score(_metrics(*row)) == pytest.approx(HAND_SCORES[epoch], abs=1e-9)


def test_guide_table_keeps_epoch_4_and_stops_after_epoch_6() -> None:
    sel = CheckpointSelector(patience=2)
    stopped_after = None
    for epoch, row in GUIDE_TABLE.items():
        sel.update(epoch, promotion_score(_metrics(*row)))
        if sel.should_stop:
            stopped_after = epoch
            break
    assert sel.best_epoch == 4
    assert stopped_after == 6


def test_more_patience_keeps_going_and_ties_keep_the_earlier_epoch() -> None:
    sel = CheckpointSelector(patience=3)
    for epoch, row in GUIDE_TABLE.items():
        sel.update(epoch, promotion_score(_metrics(*row)))
    assert not sel.should_stop and sel.best_epoch == 4
    tie = CheckpointSelector(patience=5)
    assert tie.update(1, 0.5) and not tie.update(2, 0.5) and tie.best_epoch == 1
    assert not tie.update(3, None)  # an epoch without a score never wins


def test_missing_parts() -> None:
    m = _metrics(0.8, 0.02, 0.05)
    del m["recall.safety_escalation"]
    assert promotion_score(m) is None
    m["escalation_recall"] = 0.9  # stands in when the split has no safety_escalation reference
    assert promotion_score(m) == pytest.approx(0.35 * 0.8 + 0.125 + 0.18 - 0.002 - 0.005)
    with pytest.raises(ConfigError):
        CheckpointSelector(patience=0)
