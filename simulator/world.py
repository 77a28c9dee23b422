"""The MangaAssist world: catalog with churn, slices, intent mix, and one request at a time.

Shares follow the reference guide where it gives them: the intent mix of its scenario 4
(FAQ 40 %, recommendations 25 %, order tracking 20 %, returns 10 %, payment disputes 3 %,
safety escalations 2 %; the other three escalation classes of the label set take 2 % from
FAQ), 8 % multi-intent live traffic (scenario 2), 30 % of catalog prompts about titles
introduced in the last 60 days (scenario 7), about 10 % low-memory mobile devices
(scenario 11). Region, device and language are drawn independently, so a failure injected on
one of them shows on that slice and is diluted everywhere else.

Every request is a pure function of (seed, request id, event time): it draws from a generator
seeded by a hash of the seed and the id (the models' answers continue on the same generator),
so the simulated model backend can rebuild the request a worker receives and answer exactly
as the simulator did.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.labelsets import MANGAASSIST_HIGH_RISK, MANGAASSIST_INTENTS
from simulator import prompts

START = datetime(2026, 11, 1, tzinfo=UTC)
DAY_S = 86_400.0
NEW_TITLE_DAYS = 60.0

INTENT_SHARES: dict[str, float] = {
    "faq": 0.38, "recommendation": 0.25, "order_tracking": 0.20, "returns": 0.10,
    "payment_dispute": 0.03, "safety_escalation": 0.02, "legal_complaint": 0.005,
    "account_lockout": 0.01, "refund_fraud": 0.005,
}
HIGH_RISK = frozenset(MANGAASSIST_HIGH_RISK)
REGIONS = {"us": 0.45, "eu": 0.25, "jp": 0.20, "br": 0.10}
DEVICES = {"ios": 0.35, "android": 0.30, "web": 0.25, "android-lowmem": 0.10}
LANGUAGES = {"en": 0.55, "ja": 0.25, "es": 0.12, "pt": 0.08}
NAMES_ENTITY = {  # chance that a prompt of this intent is about a catalog title
    "faq": 0.95, "recommendation": 0.9, "order_tracking": 0.5, "returns": 0.6,
    "payment_dispute": 0.3, "safety_escalation": 0.0, "legal_complaint": 0.2,
    "account_lockout": 0.0, "refund_fraud": 0.2,
}
ASKS_FACT = {  # chance that the answer asserts a catalog fact, given a named title
    "faq": 0.9, "recommendation": 0.6, "order_tracking": 0.3, "returns": 0.4,
}
NEIGHBOURS = {  # where a confused model's top-1 lands: the nearby, more common class
    "faq": "recommendation", "recommendation": "faq", "order_tracking": "returns",
    "returns": "order_tracking", "payment_dispute": "returns", "safety_escalation": "faq",
    "legal_complaint": "returns", "account_lockout": "order_tracking", "refund_fraud": "returns",
}
ASKED = (("format",), ("format",), ("in_stock",), ("format", "in_stock"), ("format", "in_stock"))
"""What an answer about a title asserts ("yes, the hardcover edition is in stock": two facts)."""
FORMATS = ("paperback", "hardcover", "digital")
_ADJ = ("Crimson", "Silent", "Moonlit", "Iron", "Paper", "Hidden", "Starlit", "Wandering",
        "Golden", "Frozen", "Burning", "Last", "Little", "Violet", "Thunder", "Sleepy")
_NOUN = ("Ronin", "Garden", "Academy", "Dragon", "Bakery", "Detective", "Orchestra", "Tide",
         "Shrine", "Courier", "Witch", "Circuit", "Harbor", "Lantern", "Samurai", "Idol")


@dataclass(frozen=True)
class Noise:
    """How noisy the traffic is: shares of multi-intent, typo and language-mixed prompts."""

    multi_intent: float = 0.08
    typos: float = 0.12
    code_mixed: float = 0.05


LIVE = Noise()
OFFLINE_LIKE = Noise(multi_intent=0.01, typos=0.02, code_mixed=0.01)
"""What a curated offline evaluation set looks like (guide, scenario 2)."""


@dataclass(frozen=True)
class Title:
    entity_id: str
    title: str
    introduced_s: float
    """Seconds from the start of the run (negative: before it)."""
    formats: tuple[str, ...]
    in_stock: str

    def record(self, start: datetime) -> dict[str, Any]:
        """The CatalogRecord of DESIGN §4."""
        at = ts_text(start + timedelta(seconds=self.introduced_s))
        return {"entity_id": self.entity_id, "title": self.title,
                "attributes": {"format": list(self.formats), "in_stock": self.in_stock},
                "introduced_at": at, "updated_at": at}


@dataclass(frozen=True)
class WorldConfig:
    """The knobs of the world that do not depend on a scenario."""

    seed: int = 0
    start: datetime = START
    titles: int = 400
    recent_share: float = 0.15
    """Share of the initial catalog introduced ≤ 60 days before the start."""
    churn_every_s: float = 240.0
    """A new title is released this often during the run (catalog churn)."""
    new_mention_share: float = 0.30
    reference_share: float = 0.8
    """Share of requests whose intent production already knows (request.reference)."""
    retrieval_miss: float = 0.02
    retrieval_miss_new: float = 0.08
    """The retrieval index lags behind brand-new titles."""


class Catalog:
    """Every title of a run: the initial catalog plus one release every ``churn_every_s``."""

    def __init__(self, cfg: WorldConfig, duration_s: float) -> None:
        rng = random.Random(f"catalog:{cfg.seed}")
        titles = []
        n_recent = round(cfg.titles * cfg.recent_share)
        for i in range(cfg.titles):
            age_days = rng.uniform(1, NEW_TITLE_DAYS - 1) if i < n_recent else rng.uniform(120, 3000)
            titles.append(self._title(rng, i, -age_days * DAY_S))
        k = 0
        while (k + 1) * cfg.churn_every_s < duration_s:
            k += 1
            titles.append(self._title(rng, cfg.titles + k - 1, k * cfg.churn_every_s))
        self.titles = titles
        self.by_id = {t.entity_id: t for t in titles}
        self.established = [t for t in titles if t.introduced_s < -NEW_TITLE_DAYS * DAY_S]
        self._est_cum = _cumulative([1.0 / (r + 5) for r in range(len(self.established))])
        self.fresh = sorted((t for t in titles if t.introduced_s >= -NEW_TITLE_DAYS * DAY_S),
                            key=lambda t: t.introduced_s)
        self._fresh_at = [t.introduced_s for t in self.fresh]

    @staticmethod
    def _title(rng: random.Random, i: int, introduced_s: float) -> Title:
        name = f"{_ADJ[i % len(_ADJ)]} {_NOUN[(i // len(_ADJ)) % len(_NOUN)]}"
        if i >= len(_ADJ) * len(_NOUN):
            name += f" {i // (len(_ADJ) * len(_NOUN)) + 1}"
        formats = tuple(sorted(rng.sample(FORMATS, rng.choice((1, 1, 2)))))
        return Title(f"title-{i:05d}", name, introduced_s, formats, rng.choice(("yes", "yes", "no")))

    def initial(self) -> list[Title]:
        return [t for t in self.titles if t.introduced_s <= 0]

    def releases(self) -> list[Title]:
        return [t for t in self.titles if t.introduced_s > 0]

    def pick(self, rng: random.Random, offset_s: float, new_share: float) -> Title:
        """A title a customer asks about at ``offset_s``: recent releases are popular."""
        n_fresh = bisect.bisect_right(self._fresh_at, offset_s)
        lo = bisect.bisect_left(self._fresh_at, offset_s - NEW_TITLE_DAYS * DAY_S)
        if n_fresh > lo and rng.random() < new_share:
            if rng.random() < 0.5:  # half of the new-title interest goes to the latest releases
                return self.fresh[rng.randrange(max(lo, n_fresh - 8), n_fresh)]
            return self.fresh[rng.randrange(lo, n_fresh)]
        return rng.choices(self.established, cum_weights=self._est_cum)[0]


@dataclass
class Context:
    """One request with what only the simulator knows (the true intent), for the models."""

    request_id: str
    offset_s: float
    ts: datetime
    intent: str
    secondary: str | None
    slice: dict[str, str]
    title: Title | None
    evidence_covered: bool
    asks_fact: tuple[str, ...]
    """The catalog attributes the answer asserts (``format``, ``in_stock``), if any."""
    new_title: bool = False
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def multi_intent(self) -> bool:
        return self.secondary is not None

    def in_slice(self, key: str) -> bool:
        """Whether the request belongs to a slice ``k=v`` of the kinds the world injects on."""
        name, _, value = key.partition("=")
        if name == "multi_intent":
            return self.multi_intent == (value == "true")
        if name == "freshness":
            return self.new_title == (value == "new")
        if name == "intent":
            return self.intent == value
        return self.slice.get(name) == value


def rng_for(seed: int, request_id: str) -> random.Random:
    """The generator of one request (request, then teacher, student and labels, in order)."""
    digest = hashlib.blake2b(f"{seed}|{request_id}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def ts_text(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cumulative(weights: list[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


_INTENTS = list(INTENT_SHARES)
_INTENT_CUM = _cumulative(list(INTENT_SHARES.values()))
_PICKS = {name: (list(d), _cumulative(list(d.values())))
          for name, d in (("region", REGIONS), ("device", DEVICES), ("language", LANGUAGES))}


def true_intents(rng: random.Random) -> tuple[str, str]:
    """The request's intent and the second intent a multi-intent prompt would add."""
    intent = rng.choices(_INTENTS, cum_weights=_INTENT_CUM)[0]
    others = [c for c in MANGAASSIST_INTENTS[:4] if c != intent]
    return intent, rng.choice(others)


def draw_request(cfg: WorldConfig, catalog: Catalog, request_id: str, offset_s: float,
                 noise: Noise, rng: random.Random) -> Context:
    """Build request ``request_id`` at ``offset_s`` seconds into the run."""
    intent, second = true_intents(rng)
    attrs = {k: rng.choices(names, cum_weights=cum)[0] for k, (names, cum) in _PICKS.items()}
    multi = rng.random() < noise.multi_intent
    typos = rng.random() < noise.typos
    mixed = rng.random() < noise.code_mixed
    attrs["typos"] = "true" if typos else "false"
    attrs["code_mixed"] = "true" if mixed else "false"
    title = catalog.pick(rng, offset_s, cfg.new_mention_share) if rng.random() < NAMES_ENTITY[intent] else None
    new_title = title is not None and offset_s - title.introduced_s <= NEW_TITLE_DAYS * DAY_S
    miss = title is not None and rng.random() < (cfg.retrieval_miss_new if new_title else cfg.retrieval_miss)
    asks: tuple[str, ...] = ()
    if title is not None and rng.random() < ASKS_FACT.get(intent, 0.1):
        asks = ASKED[rng.randrange(len(ASKED))]
    prompt = prompts.compose(rng, intent, attrs["language"], title.title if title else "this manga",
                             second if multi else None, typos, mixed)
    ts = cfg.start + timedelta(seconds=offset_s)
    request: dict[str, Any] = {
        "request_id": request_id, "ts": ts_text(ts), "prompt": prompt, "slice": attrs,
        "entities": [title.entity_id] if title else [],
        "evidence": [{"doc_id": f"doc-{title.entity_id}", "entity_id": title.entity_id}]
        if title is not None and not miss else [],
        "multi_intent": multi,
    }
    if rng.random() < cfg.reference_share:
        request["reference"] = {"intent": intent, "source": "production"}
    return Context(request_id, offset_s, ts, intent, second if multi else None, attrs, title,
                   title is not None and not miss, asks, new_title, request)
