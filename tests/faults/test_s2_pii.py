"""S2: personal data planted in prompts never lands raw in ClickHouse, dead letters or logs.

1,000 planted items (e-mail addresses, phone numbers in several national formats, and
Luhn-valid card numbers with and without separators), one per request prompt, some also in
the models' answers, and 30 in malformed lines that are dead-lettered. Every sampling knob
is at 100 % (every request's redacted payload and distillation example is stored), and the
monitor logs at INFO. Then every column of every table in the database, the monitor's
stdout and stderr are searched for each item, as written and as bare digits.

The dead-letter *topic* keeps the raw bytes by design (DESIGN §1: it is input, kept for
replay, like shadow.requests itself); its ClickHouse table, which forensics reads, must not.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from simulator.traffic import TrafficConfig, World
from tests.faults.fault_support import monitor_output, replay, report
from tests.integration.pipeline_support import Cluster, stored, wait_until_quiet

pytestmark = pytest.mark.integration

PAIRS = 1000
DOMAINS = ["example.com", "mail.example.co.jp", "example.com.br", "shop.example.eu"]
NAMES = ["yuki.tanaka", "Ana.Souza", "li_wei", "o'brien", "jean-luc", "MARIA+orders"]


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("37", 15), ("6011", 16), ("35", 16)])
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    digits = body + luhn_digit(body)
    groups = [digits[i:i + 4] for i in range(0, len(digits), 4)] if length == 16 else \
        [digits[:4], digits[4:10], digits[10:]]
    return rng.choice([" ", "-", ""]).join(groups)


def phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    return rng.choice([
        f"+81 90-{d(4)}-{d(4)}", f"090{d(8)}", f"({d(3)}) {d(3)}-{d(4)}", f"+1 {d(3)} {d(3)} {d(4)}",
        f"+44 20 {d(4)} {d(4)}", f"+55 11 9{d(4)}-{d(4)}", f"+49.30.{d(7)}", f"{d(3)}-{d(3)}-{d(4)}",
    ])


def email(rng: random.Random, i: int) -> str:
    return f"{rng.choice(NAMES)}{i}@{rng.choice(DOMAINS)}"


def planted_items(seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    items = []
    for i in range(PAIRS):
        kind = ("email", "phone", "card")[i % 3]
        value = email(rng, i) if kind == "email" else phone(rng) if kind == "phone" else card(rng)
        items.append((kind, value))
    return items


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def leaks_in(text: str, items: list[tuple[str, str]]) -> list[str]:
    """Planted items found in the text as written, or as bare digits: a card's digits inside
    any number, a phone's as a whole number (ten digits occur by chance in long floats)."""
    lowered = text.lower()
    found = [value for _, value in items if value in text or value.lower() in lowered]
    numbers = {digits(m) for m in re.findall(r"\+?\d[\d \-().]*\d", text)}
    for kind, value in items:
        bare = digits(value)
        if kind == "card" and any(bare in n for n in numbers) or kind == "phone" and bare in numbers:
            found.append(value)
    return sorted(set(found))


def build_log(path: Path, items: list[tuple[str, str]], seed: int) -> int:
    # Recent event times: shadow_payloads keeps rows for 14 days (TTL) after their event time.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    world = World(TrafficConfig(start=start, pairs=PAIRS, rate_per_s=10), seed=seed)
    rng = random.Random(seed)
    out: list[bytes] = []
    requests = 0
    malformed = 0
    for line in world.lines():
        if "request" in line:
            kind, value = items[requests]
            line["request"]["prompt"] = rng.choice([
                f"hi, my {kind} is {value}, where is my order?",
                f"{value}",
                f"please refund to {value}. thanks",
                f"contact me at {value} about title {requests}",
            ])
            if requests % 10 == 0 and line.get("teacher"):
                line["teacher"]["answer"] = f"I will write to {value} shortly."
                line["student"]["answer"] = f"Sure, {value} is noted."
            requests += 1
            raw = json.dumps(line).encode()
            if requests % 33 == 0:  # also as a malformed line: dead-lettered with its prompt
                cut = raw.index(b'"prompt"') + len(value) + 80
                out.append(raw[:cut])
                malformed += 1
            out.append(raw)
        else:
            out.append(json.dumps(line).encode())
    path.write_bytes(b"\n".join(out) + b"\n")
    return malformed


def all_cells(data: Path) -> dict[str, str]:
    """Every value of every column of every table of the database, as text, by table."""
    tables = [r[0] for r in stored(data, "SELECT name FROM system.tables WHERE database = 'distillwatch'")]
    out = {}
    for table in tables:
        rows: list[tuple[Any, ...]] = stored(data, f"SELECT * FROM distillwatch.{table}")
        out[table] = "\n".join("\t".join(str(v) for v in row) for row in rows)
    return out


def test_s2_planted_personal_data_is_never_stored_or_logged_raw(
        make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    cluster = make_cluster(DISTILLWATCH_PRIVACY__PAYLOAD_SHARE="1", DISTILLWATCH_PRIVACY__EXAMPLE_SHARE="1",
                           DISTILLWATCH_PRIVACY__FORENSIC_RATE="1")
    items = planted_items(seed=22)
    log = tmp_path / "pii.jsonl"
    malformed = build_log(log, items, seed=22)
    assert len(leaks_in(log.read_text(errors="replace"), items)) == PAIRS  # the search finds them all
    replay(cluster, log)
    _, port = cluster.start_monitor("--verbose")
    wait_until_quiet(port, PAIRS)
    cluster.stop_all()
    data = tmp_path / "data"

    cells = all_cells(data)
    (payloads, examples, dead), = stored(data, "SELECT (SELECT count() FROM distillwatch.shadow_payloads FINAL), "
                                               "(SELECT count() FROM distillwatch.distill_examples FINAL), "
                                               "(SELECT count() FROM distillwatch.dead_letters)")
    assert payloads == examples == PAIRS and dead == malformed  # every prompt stored (redacted)
    leaks = {table: leaks_in(text, items) for table, text in cells.items()}
    logs = monitor_output(cluster)
    leaks["monitor logs"] = leaks_in(logs, items)
    masks = {m: sum(text.count(m) for text in cells.values()) for m in ("[EMAIL]", "[PHONE]", "[CARD]")}
    report("S2", planted=len(items), kinds={k: sum(1 for i in items if i[0] == k) for k in ("email", "phone", "card")},
           tables_scanned=len(cells), bytes_scanned=sum(len(t) for t in cells.values()),
           log_bytes_scanned=len(logs), dead_letters=dead, masks_in_tables=masks,
           raw_matches={k: len(v) for k, v in leaks.items()})
    assert all(not v for v in leaks.values()), {k: v[:5] for k, v in leaks.items() if v}
    assert min(masks.values()) > 0
