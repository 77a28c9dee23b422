"""The simulated MangaAssist world: shares of the guide, catalog churn, prompts a model can learn.

Shares are checked against the configured tables with binomial tolerances (4 standard
deviations); the prompts are checked by training an independent bag-of-words classifier
(scikit-learn) on them, which is what "a student can be trained on them" means.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import datetime

import orjson
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from schemas.replay import validate_line
from simulator import prompts, scenarios
from simulator.generate import Simulation
from simulator.world import DEVICES, INTENT_SHARES, LANGUAGES, LIVE, REGIONS

N = 20_000


def within(count: int, n: int, share: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * share) <= sigmas * math.sqrt(n * share * (1 - share)) + 1


@pytest.fixture(scope="module")
def clean() -> Simulation:
    return Simulation(scenarios.get("clean"), seed=3, minutes=N / 50 / 60, rate=50)


@pytest.fixture(scope="module")
def lines(clean: Simulation) -> list[dict]:
    return list(clean.lines())


def test_every_line_keeps_the_wire_contract(lines: list[dict]) -> None:
    for line in lines[:3000]:
        validate_line(line)
    assert sum("request" in line for line in lines) == N


def test_same_seed_same_log_other_seed_other_log() -> None:
    def head(seed: int) -> list[bytes]:
        sim = Simulation(scenarios.get("clean"), seed=seed, minutes=1, rate=20)
        return [orjson.dumps(line) for line in sim.lines()]
    assert head(5) == head(5)
    assert head(5) != head(6)


def test_intent_and_slice_shares_follow_the_tables(clean: Simulation) -> None:
    contexts = [clean.exchange(clean.request_id(i), clean.offset_of(i)).ctx for i in range(N)]
    intents = Counter(c.intent for c in contexts)
    for intent, share in INTENT_SHARES.items():
        assert within(intents[intent], N, share), (intent, intents[intent])
    for key, table in (("region", REGIONS), ("device", DEVICES), ("language", LANGUAGES)):
        counts = Counter(c.slice[key] for c in contexts)
        for value, share in table.items():
            assert within(counts[value], N, share), (key, value, counts[value])
    assert within(sum(c.multi_intent for c in contexts), N, LIVE.multi_intent)
    assert within(sum(c.slice["typos"] == "true" for c in contexts), N, LIVE.typos)
    assert within(sum(c.slice["code_mixed"] == "true" for c in contexts), N, LIVE.code_mixed)


def test_catalog_churn_and_new_title_share(lines: list[dict], clean: Simulation) -> None:
    """New titles are released during the run, each before any request names it, and about
    30 % of the title mentions are of titles introduced in the last 60 days (guide §9)."""
    start = clean.world.start
    introduced: dict[str, datetime] = {}
    released_during_run = 0
    named = new = 0
    for line in lines:
        if "catalog" in line:
            rec = line["catalog"]
            at = datetime.fromisoformat(rec["introduced_at"].replace("Z", "+00:00"))
            introduced[rec["entity_id"]] = at
            released_during_run += at > start
        elif "request" in line:
            req = line["request"]
            ts = datetime.fromisoformat(req["ts"].replace("Z", "+00:00"))
            for entity in req["entities"]:
                assert entity in introduced and introduced[entity] <= ts, entity
                named += 1
                new += (ts - introduced[entity]).total_seconds() <= 60 * 86_400
    assert released_during_run == math.ceil(clean.duration_s / 240) - 1
    assert named > N / 2
    assert 0.25 < new / named < 0.35, new / named


def test_prompts_carry_the_intent_so_a_classifier_learns_them(clean: Simulation) -> None:
    """An independent bag-of-words model learns the intent from the prompt alone."""
    texts, labels = [], []
    for i in range(6000):
        ex = clean.exchange(clean.request_id(i), clean.offset_of(i))
        texts.append(ex.ctx.request["prompt"])
        labels.append(ex.ctx.intent)
    vec = CountVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2)
    x = vec.fit_transform(texts)
    model = LogisticRegression(max_iter=400).fit(x[:4000], labels[:4000])
    accuracy = (model.predict(x[4000:]) == labels[4000:]).mean()
    assert accuracy > 0.85, accuracy


def test_multi_intent_typos_and_mixing_show_in_the_prompt() -> None:
    rng = random.Random(1)
    plain = prompts.compose(random.Random(1), "faq", "en", "Iron Tide")
    joined = prompts.compose(random.Random(1), "faq", "en", "Iron Tide", secondary="returns")
    assert joined.startswith(plain) and " and also " in joined
    typo = prompts.add_typos(rng, "please recommend something similar")
    assert typo != "please recommend something similar"
    assert abs(len(typo) - len("please recommend something similar")) <= 2
    mixed = prompts.compose(random.Random(2), "order_tracking", "ja", "Iron Tide", mixed=True)
    assert any(word in mixed for word in prompts.MIXED_IN["ja"])


def test_some_prompts_carry_personal_data_to_redact(lines: list[dict]) -> None:
    texts = [line["request"]["prompt"] for line in lines if "request" in line]
    assert sum("@example.com" in t for t in texts) > 20
    assert sum("ORD-" in t for t in texts) > 200


def test_guess_intent_reads_clean_english_prompts() -> None:
    rng = random.Random(4)
    hits = 0
    for intent in INTENT_SHARES:
        for _ in range(20):
            hits += prompts.guess_intent(prompts.compose(rng, intent, "en", "Iron Tide"),
                                         tuple(INTENT_SHARES)) == intent
    assert hits >= 0.9 * 20 * len(INTENT_SHARES)
    assert prompts.guess_intent("zzz", tuple(INTENT_SHARES)) is None
