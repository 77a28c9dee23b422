"""From shadow examples to a training set: filter teacher targets, pick hard labels, weight, split.

The unit is an :class:`Example`, one shadow request as the ``distill_examples`` table holds it
(a replay log and a Parquet snapshot both become Examples, see ``training.sources``).
:func:`prepare` turns a list of them into what the trainer needs, and says what it dropped:

* **Held-out split by request id**: a keyed hash of the id, so a request is on the same side
  in every run and in every process (DDP ranks agree without talking).
* **Teacher targets that cannot be trusted are dropped** (the guide's scenario 1): the
  teacher's answer asserted a fact the catalog contradicts (``teacher_fact_error``), made a
  claim the catalog cannot back (``teacher_supported`` false: unknown entity or attribute),
  or the request names an entity no retrieval evidence covers (``evidence_covered`` false).
  A human label that disagrees with the teacher's top-1 overrides the teacher target too.
  Dropping a *target* drops the KD term only: the example still trains on its hard label when
  it has one from a human or production; without one it is dropped.
* **Hard label**: the latest human label, else production's reference, else the teacher's
  top-1 (only when the teacher target was kept): DESIGN §4's reference intent.
* **Weights**: an example of a high-risk class counts sqrt(n_commonest / n_class) times, at
  least ``high_risk_weight`` (2) and at most ``max_class_weight`` (8); recent traffic counts
  more, halving every ``half_life_days`` back from the newest example (floor
  ``min_recency_weight``).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from evaluators.config import EvalConfig
from schemas.errors import ConfigError

PROB_TOLERANCE = 1e-3
INDEPENDENT_SOURCES = ("human", "request")
"""Reference sources that do not come from the teacher."""


@dataclass(slots=True)
class Example:
    """One shadow request with what training needs (a row of ``distill_examples``)."""

    request_id: str
    ts: datetime
    prompt: str
    """Redacted prompt text (customer text is never stored raw)."""
    teacher_probs: Mapping[str, float] | None
    reference_intent: str | None = None
    reference_source: str | None = None
    """``human``, ``request`` or ``teacher`` (DESIGN §4), None when there is no reference."""
    teacher_supported: bool = True
    teacher_fact_error: bool = False
    evidence_covered: bool = True
    slice: Mapping[str, str] = field(default_factory=dict)
    multi_intent: bool | None = None
    new_title: bool | None = None
    """None when the source does not know (a Parquet snapshot)."""
    logged_student_probs: Mapping[str, float] | None = None
    """The student answer recorded with the request (replay logs only): the baseline."""


@dataclass(frozen=True)
class PrepareOptions:
    heldout_share: float = 0.2
    split_salt: str = "heldout"
    high_risk_weight: float = 2.0
    """Least weight of a high-risk class; rarer ones get up to ``max_class_weight``."""
    max_class_weight: float = 8.0
    half_life_days: float = 14.0
    min_recency_weight: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 < self.heldout_share < 1.0:
            raise ConfigError(f"heldout_share is {self.heldout_share}; expected 0 < share < 1")
        if not self.high_risk_weight > 0:
            raise ConfigError(f"high_risk_weight is {self.high_risk_weight}; expected > 0")
        if not self.half_life_days > 0:
            raise ConfigError(f"half_life_days is {self.half_life_days}; expected > 0")


@dataclass
class TrainSet:
    """Parallel arrays over the kept training examples."""

    prompts: list[str]
    labels: np.ndarray
    """(N,) class index of the hard label."""
    teacher: np.ndarray
    """(N, C) teacher probabilities; uniform where the target was dropped."""
    kd_mask: np.ndarray
    """(N,) 1.0 where the teacher target is kept."""
    weights: np.ndarray
    request_ids: list[str]

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass
class Prepared:
    train: TrainSet
    heldout: list[Example]
    counts: dict[str, int]
    """What happened to the examples and the teacher targets (for metrics.json)."""
    kept_target_ids: set[str]
    """Request ids (train split) whose teacher target survived the filter."""


def in_heldout(request_id: str, share: float, salt: str = "heldout") -> bool:
    """True for the held-out side: a keyed hash of the id, stable across runs and ranks."""
    digest = hashlib.blake2b(f"{salt}:{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def probs_vector(probs: Mapping[str, float] | None, classes: Sequence[str]) -> np.ndarray | None:
    """Probabilities in the configured class order; None when they name another label set
    or do not sum to 1 (a missing class counts as 0)."""
    if not probs:
        return None
    index = {c: i for i, c in enumerate(classes)}
    v = np.zeros(len(classes))
    for name, p in probs.items():
        i = index.get(name)
        if i is None:
            if p > PROB_TOLERANCE:
                return None
            continue
        v[i] = p
    if abs(v.sum() - 1.0) > PROB_TOLERANCE or (v < 0).any():
        return None
    return v / v.sum()


def target_verdict(ex: Example, teacher: np.ndarray | None, classes: Sequence[str]) -> str:
    """``kept`` or why the teacher target is dropped (one reason, in this order)."""
    if teacher is None:
        return "no_teacher" if not ex.teacher_probs else "malformed"
    if ex.teacher_fact_error:
        return "fact_error"
    if not ex.teacher_supported:
        return "unsupported"
    if not ex.evidence_covered:
        return "evidence_missing"
    if ex.reference_source == "human" and ex.reference_intent != classes[int(teacher.argmax())]:
        return "label_override"
    return "kept"


def class_weights(labels: Sequence[int], classes: Sequence[str], high_risk: set[str],
                  options: PrepareOptions) -> dict[int, float]:
    """1 for an ordinary class; for a high-risk class sqrt(n_commonest / n_class), at least
    ``high_risk_weight`` and at most ``max_class_weight``: the rarer the class, the more each
    of its examples counts, without letting a handful of examples dominate."""
    counts = Counter(labels)
    most = max(counts.values(), default=1)
    out = {}
    for i, c in enumerate(classes):
        if c in high_risk and counts.get(i):
            balance = math.sqrt(most / counts[i])
            out[i] = min(options.max_class_weight, max(options.high_risk_weight, balance))
        else:
            out[i] = 1.0
    return out


def recency_weights(ts: Sequence[datetime], half_life_days: float, floor: float) -> np.ndarray:
    """Halves every ``half_life_days`` back from the newest timestamp, never below ``floor``."""
    if not ts:
        return np.zeros(0)
    seconds = np.array([t.timestamp() for t in ts])
    age_days = (seconds.max() - seconds) / 86_400.0
    return np.maximum(np.power(0.5, age_days / half_life_days), floor)


def prepare(examples: Sequence[Example], config: EvalConfig,
            options: PrepareOptions = PrepareOptions()) -> Prepared:
    """Split, filter and weight; see the module docstring for the rules."""
    classes = config.intents
    index = {c: i for i, c in enumerate(classes)}
    high_risk = set(config.high_risk)
    counts: Counter[str] = Counter()
    heldout: list[Example] = []
    rows: list[tuple[Example, int, np.ndarray, bool]] = []
    kept_ids: set[str] = set()
    seen: set[str] = set()
    for ex in examples:
        if ex.request_id in seen:
            counts["duplicate_request_ids"] += 1
            continue
        seen.add(ex.request_id)
        counts["examples"] += 1
        if in_heldout(ex.request_id, options.heldout_share, options.split_salt):
            heldout.append(ex)
            continue
        counts["train_candidates"] += 1
        teacher = probs_vector(ex.teacher_probs, classes)
        verdict = target_verdict(ex, teacher, classes)
        counts[f"teacher_target_{verdict}"] += 1
        keep_target = verdict == "kept"
        label: str | None = None
        if ex.reference_source in INDEPENDENT_SOURCES and ex.reference_intent:
            label = ex.reference_intent
            counts[f"label_from_{ex.reference_source}"] += 1
        elif keep_target:
            assert teacher is not None
            label = classes[int(teacher.argmax())]
            counts["label_from_teacher"] += 1
        if label is None:
            counts["dropped_no_trusted_label"] += 1
            continue
        if label not in index:
            counts["dropped_unknown_class"] += 1
            continue
        if keep_target:
            kept_ids.add(ex.request_id)
        target = teacher if keep_target and teacher is not None else np.full(len(classes), 1 / len(classes))
        rows.append((ex, index[label], target, keep_target))
    counts["heldout"] = len(heldout)
    counts["train"] = len(rows)
    recency = recency_weights([r[0].ts for r in rows], options.half_life_days, options.min_recency_weight)
    per_class = class_weights([r[1] for r in rows], classes, high_risk, options)
    class_w = np.array([per_class[r[1]] for r in rows])
    train = TrainSet(
        prompts=[r[0].prompt for r in rows],
        labels=np.array([r[1] for r in rows], dtype=np.int64),
        teacher=np.stack([r[2] for r in rows]) if rows else np.zeros((0, len(classes))),
        kd_mask=np.array([1.0 if r[3] else 0.0 for r in rows]),
        weights=recency * class_w,
        request_ids=[r[0].request_id for r in rows],
    )
    for r in rows:
        counts[f"train_label.{classes[r[1]]}"] += 1
    return Prepared(train, heldout, dict(sorted(counts.items())), kept_ids)


def dropped_target_reasons(counts: Mapping[str, int]) -> dict[str, int]:
    """The teacher-target verdicts other than ``kept`` (for reports)."""
    prefix = "teacher_target_"
    return {k[len(prefix):]: v for k, v in counts.items()
            if k.startswith(prefix) and k != prefix + "kept" and v}


def finite(x: float) -> float | None:
    """JSON-safe float (None for NaN/inf)."""
    return x if math.isfinite(x) else None
