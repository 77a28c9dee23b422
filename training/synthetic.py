"""Small synthetic datasets with known structure, for the training tests and the benchmark.

:func:`rare_collapse` reproduces the guide's scenario 4 in miniature. Prompts are filler words
plus a cue word of their class. A few whole prompts (``AMBIGUOUS``) are used word for word by
both faq and safety_escalation requests, so a student cannot tell them apart and must pick one
decision per phrase. On those safety requests the teacher's soft label leans to the common
class (safety 0.3, faq 0.6), the way soft labels blur a rare class into a nearby common one.
A student trained mostly on soft labels gives the phrases to faq and misses those safety
requests (recall ≈ 0.85). Hard labels plus the rare-class term give them to
safety_escalation (recall ≈ 1.0), at the price of the phrases' faq requests. Those are about
as many (0.6 % of traffic against 0.75 %), so accuracy moves by less than half a point.

The held-out side has *exact* class and group counts (ids are assigned to the split first,
then groups are dealt out per side), so the expected metrics carry no sampling noise.

:func:`contaminated_log` writes a replay log whose teacher answers are contaminated in known
ways (a fact the catalog contradicts, a claim on an unknown entity, a request whose entity the
evidence does not cover, a human label that overrides the teacher), and returns which request
ids were contaminated.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.labelsets import MANGAASSIST_INTENTS
from training.dataset import Example, in_heldout

T0 = datetime(2026, 11, 1, tzinfo=UTC)
FILLERS = ("hi", "hello", "please", "i", "my", "the", "a", "manga", "volume", "help", "question",
           "about", "can", "you", "thanks", "need", "today", "this", "it", "is")
CUES = {
    "faq": ("shipping", "hours", "policy", "membership", "points", "delivery"),
    "recommendation": ("recommend", "similar", "suggest", "genre", "series", "like"),
    "order_tracking": ("tracking", "package", "arrive", "shipped", "where", "status"),
    "returns": ("exchange", "damaged", "torn", "wrong", "swap", "send"),
    "payment_dispute": ("charged", "twice", "dispute", "billing", "invoice", "overcharged"),
    "safety_escalation": ("unsafe", "threat", "danger", "emergency", "hurt", "police"),
}
AMBIGUOUS = ("i feel uncomfortable", "i am worried", "this is creepy")
"""Whole prompts used word for word by faq and safety_escalation requests alike: no student can
tell those requests apart, so each phrase gets exactly one decision."""

RARE_COLLAPSE_MIX = {
    "faq": 0.394, "recommendation": 0.25, "order_tracking": 0.20, "returns": 0.07,
    "payment_dispute": 0.03, "safety_escalation": 0.0425,
    "ambiguous_safety": 0.0075, "ambiguous_faq": 0.006,
}
"""Shares per group: safety_escalation is 5 % of traffic, 15 % of it in the ambiguous group,
which also holds 0.6 % of traffic in faq requests."""


def _probs(rng: random.Random, main: dict[str, float]) -> dict[str, float]:
    """``main`` classes get their probability (± 0.02); the rest share what is left."""
    probs = {c: max(0.01, p + rng.uniform(-0.02, 0.02)) for c, p in main.items()}
    rest = [c for c in MANGAASSIST_INTENTS if c not in probs]
    left = max(0.0, 1.0 - sum(probs.values()))
    raw = [rng.random() + 0.05 for _ in rest]
    probs |= {c: left * r / sum(raw) for c, r in zip(rest, raw)}
    total = sum(probs.values())
    return {c: probs[c] / total for c in MANGAASSIST_INTENTS}


def _prompt(rng: random.Random, cues: Sequence[str]) -> str:
    """Two to five filler words and one or two cue words, shuffled."""
    words = rng.sample(FILLERS, rng.randint(2, 5)) + rng.sample(list(cues), rng.choice((1, 1, 2)))
    rng.shuffle(words)
    return " ".join(words)


def _example(rng: random.Random, rid: str, i: int, group: str, nth: int) -> Example:
    """``nth``: the example's rank within its group (ambiguous phrases are dealt in turn)."""
    if group.startswith("ambiguous_"):
        prompt = AMBIGUOUS[nth % len(AMBIGUOUS)]
        if group == "ambiguous_safety":  # the teacher's soft label leans to the common class
            truth, teacher = "safety_escalation", {"safety_escalation": 0.3, "faq": 0.6}
        else:
            truth, teacher = "faq", {"faq": 0.85, "safety_escalation": 0.1}
    else:
        truth, prompt, teacher = group, _prompt(rng, CUES[group]), {group: rng.uniform(0.75, 0.92)}
    return Example(
        request_id=rid, ts=T0 + timedelta(seconds=i), prompt=prompt,
        teacher_probs=_probs(rng, teacher), reference_intent=truth, reference_source="request",
        slice={"region": rng.choice(("us", "eu", "jp", "br"))}, multi_intent=False, new_title=False,
    )


def _deal(rng: random.Random, n: int, mix: dict[str, float]) -> list[str]:
    """Exactly round(share · n) of each group (the largest absorbs rounding), shuffled."""
    counts = {g: round(share * n) for g, share in mix.items()}
    largest = max(mix, key=mix.__getitem__)
    counts[largest] += n - sum(counts.values())
    groups = [g for g, k in counts.items() for _ in range(k)]
    rng.shuffle(groups)
    return groups


def rare_collapse(n_train: int = 6000, n_heldout: int = 2000, seed: int = 0,
                  heldout_share: float = 0.25, salt: str = "heldout") -> list[Example]:
    """The scenario-4 dataset (see the module docstring); split with ``in_heldout``."""
    rng = random.Random(seed)
    held_ids: list[str] = []
    train_ids: list[str] = []
    i = 0
    while len(held_ids) < n_heldout or len(train_ids) < n_train:
        rid = f"rc-{seed}-{i:07d}"
        side = held_ids if in_heldout(rid, heldout_share, salt) else train_ids
        limit = n_heldout if side is held_ids else n_train
        if len(side) < limit:
            side.append(rid)
        i += 1
    out = []
    for ids in (train_ids, held_ids):
        nth: Counter[str] = Counter()
        for rid, group in zip(ids, _deal(rng, len(ids), RARE_COLLAPSE_MIX)):
            out.append(_example(rng, rid, int(rid.rsplit("-", 1)[1]), group, nth[group]))
            nth[group] += 1
    return out


def _ts(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


CONTAMINATION_KINDS = ("fact_error", "unknown_entity", "evidence_missing", "label_override", "silent")
"""``silent``: a wrong teacher intent with no claim, no missing evidence and no label: nothing
the catalog or evidence can see, so the filter is not expected to catch it."""


def contaminated_log(n: int = 2000, contaminated_share: float = 0.1, seed: int = 0,
                     uncovered_clean_share: float = 0.02, silent_share: float = 0.05
                     ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(replay-log lines, {request_id: contamination kind}) for ``n`` requests.

    Clean requests: the teacher answers with the right intent and a correct catalog claim
    (or none), the evidence covers the entity; ``uncovered_clean_share`` of them lack
    evidence (the filter drops those too, which is its false-positive cost).
    Contaminated ones (``contaminated_share``) are dealt round-robin over the four visible
    kinds, except ``silent_share`` of them which are ``silent``.
    """
    rng = random.Random(seed)
    classes = list(CUES)
    lines: list[dict[str, Any]] = []
    titles = [f"title-{k:04d}" for k in range(50)]
    formats = {}
    for e in titles:
        formats[e] = sorted(rng.sample(["paperback", "hardcover", "digital"], 2))
        lines.append({"catalog": {"entity_id": e, "title": e, "attributes": {"format": formats[e]},
                                  "introduced_at": _ts(T0 - timedelta(days=400)),
                                  "updated_at": _ts(T0 - timedelta(days=400))}})
    kinds: dict[str, str] = {}
    visible = [k for k in CONTAMINATION_KINDS if k != "silent"]
    n_bad = round(contaminated_share * n)
    bad_slots = set(rng.sample(range(n), n_bad))
    j = 0
    for i in range(n):
        rid = f"cl-{i:06d}"
        ts = T0 + timedelta(seconds=i)
        truth = rng.choice(classes)
        entity = rng.choice(titles)
        kind = None
        if i in bad_slots:
            kind = "silent" if rng.random() < silent_share else visible[j % len(visible)]
            j += 1
            kinds[rid] = kind
        covered = not (kind == "evidence_missing" or (kind is None and rng.random() < uncovered_clean_share))
        teacher_intent = truth if kind in (None, "fact_error", "unknown_entity", "evidence_missing") else \
            rng.choice([c for c in classes if c != truth])
        claims: list[dict[str, Any]] = []
        if kind == "fact_error":
            wrong = next(f for f in ("paperback", "hardcover", "digital") if f not in formats[entity])
            claims = [{"entity_id": entity, "attribute": "format", "value": wrong}]
        elif kind == "unknown_entity":
            claims = [{"entity_id": "title-9999", "attribute": "format", "value": "paperback"}]
        elif rng.random() < 0.5:
            claims = [{"entity_id": entity, "attribute": "format", "value": formats[entity][0]}]
        request = {"request_id": rid, "ts": _ts(ts), "prompt": f"{_prompt(rng, CUES[truth])} {entity}",
                   "slice": {"region": rng.choice(("us", "eu"))}, "entities": [entity],
                   "evidence": [{"doc_id": f"d-{entity}", "entity_id": entity}] if covered else []}
        teacher = {"request_id": rid, "ts": _ts(ts), "role": "teacher", "model": "teacher",
                   "model_version": "t1", "latency_ms": 500.0, "claims": claims,
                   "intent_probs": _probs(rng, {teacher_intent: 0.85})}
        lines.append({"request": request, "teacher": teacher, "student": None})
        if kind == "label_override":
            lines.append({"label": {"request_id": rid, "ts": _ts(ts + timedelta(hours=1)),
                                    "source": "human", "intent": truth}})
    return lines, kinds




OVERFIT_PAIR = ("faq", "recommendation")
OVERFIT_CUES = ("wondering", "curious", "maybe")
"""Cue words that say nothing about which of OVERFIT_PAIR the request is."""


def noisy_overfit(n_train: int = 600, n_heldout: int = 1000, ambiguous_share: float = 0.5,
                  seed: int = 0, heldout_share: float = 0.5, salt: str = "heldout") -> list[Example]:
    """A dataset a student *will* overfit (the guide's scenario 12).

    Half the requests (``ambiguous_share``) use a cue word that does not tell faq from
    recommendation, and are either, at random: no model can beat 50 % on them, and a
    calibrated one says so. Every ambiguous prompt also carries a nonsense word of its own, so
    a student whose vocabulary keeps one-off words (``vocab_min_count=1``) can memorise which
    ambiguous training prompt was which, and grows confident on the held-out ones too.
    Early epochs learn the clear cues and give the ambiguous group about 0.5 each; later ones
    memorise, become confident on the held-out ambiguous prompts too, and ECE and confident
    errors climb while the training loss keeps falling.
    """
    rng = random.Random(seed)
    classes = list(CUES)
    out: list[Example] = []
    held = train = 0
    i = 0
    while held < n_heldout or train < n_train:
        rid = f"of-{seed}-{i:07d}"
        i += 1
        is_held = in_heldout(rid, heldout_share, salt)
        if (is_held and held >= n_heldout) or (not is_held and train >= n_train):
            continue
        held, train = held + is_held, train + (not is_held)
        if rng.random() < ambiguous_share:
            truth = rng.choice(OVERFIT_PAIR)
            other = OVERFIT_PAIR[1] if truth == OVERFIT_PAIR[0] else OVERFIT_PAIR[0]
            nonce = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(5))
            prompt = f"{_prompt(rng, OVERFIT_CUES)} {nonce}"
            teacher = {truth: 0.5, other: 0.42}
        else:
            truth = rng.choice(classes)
            prompt, teacher = _prompt(rng, CUES[truth]), {truth: 0.9}
        out.append(Example(
            request_id=rid, ts=T0 + timedelta(seconds=i), prompt=prompt,
            teacher_probs=_probs(rng, teacher), reference_intent=truth, reference_source="request",
            slice={"region": "us"}, multi_intent=False, new_title=False,
        ))
    return out
