"""What the evaluator emits for the sink: rows per table, and window partials.

``shadow_evaluations`` rows, one per request and most of the bytes, travel as
JSONCompactEachRow (values in EVALUATION_COLUMNS order, the column names once per message in
its headers): a third of the bytes of JSONEachRow and half of ClickHouse's insert CPU. The
other tables' rows are rare and travel as JSONEachRow.

Rows carry no raw customer text: the prompt as a keyed hash in ``shadow_evaluations``; a
redacted copy only in the sampled ``shadow_payloads`` and ``distill_examples`` rows.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from evaluators.config import EvalConfig
from evaluators.evaluation_codec import RECORD_FIELDS, RECORD_TAIL, to_values
from evaluators.privacy import Redactor, prompt_hash
from evaluators.windowing import ClosedWindow
from streams.evaluator.partition import Evaluated

SHADOW_EVALUATIONS = "shadow_evaluations"
SHADOW_PAYLOADS = "shadow_payloads"
DISTILL_EXAMPLES = "distill_examples"
DEAD_LETTERS = "dead_letters"
DEAD_LETTER_RAW_BYTES = 4096

ROW_EXTRA_COLUMNS: tuple[str, ...] = (
    "fallback", "fallback_naive", "prompt_hash", "student_margin", "teacher_correct",
    "student_correct", "teacher_fact_error", "student_fact_error", "freshness", "labels", "late",
    "kafka_partition", "kafka_offset", "version",
)
EVALUATION_COLUMNS: tuple[str, ...] = RECORD_FIELDS[:-RECORD_TAIL] + ROW_EXTRA_COLUMNS
"""The shadow_evaluations columns a row fills, in the order of its compact encoding: the
evaluation's record (evaluation_codec.to_values) less its tail, then what the row adds (the
table's other columns are defaults; the record's tz_offset_s and preferences are not stored)."""

COMPACT_FORMAT = "JSONCompactEachRow"
COMPACT_TABLES: dict[str, tuple[str, ...]] = {SHADOW_EVALUATIONS: EVALUATION_COLUMNS}


@dataclass(frozen=True)
class SamplingPolicy:
    """Deterministic by request id, so a replay samples the same requests."""

    payload_share: float = 0.004
    """Share of all requests whose redacted payload is kept."""
    forensic_rate: float = 0.01
    """Chance that a risky request (high-risk reference, wrong, or a fact error) is kept as a
    forensic sample: at 10 % risky traffic that is 0.1 % of all requests."""
    example_share: float = 0.05

    @staticmethod
    def unit(request_id: str, salt: str) -> float:
        """A uniform draw in [0, 1) from blake2b-64 of ``"{salt}:{request_id}"``."""
        salted = _SALTED.get(salt)
        if salted is None:
            salted = _SALTED[salt] = hashlib.blake2b(f"{salt}:".encode(), digest_size=8)
        digest = salted.copy()  # the salt hashed once (0.78 -> 0.60 µs a draw)
        digest.update(request_id.encode())
        return int.from_bytes(digest.digest(), "big") / 2**64


_SALTED: dict[str, Any] = {}
"""blake2b states that have hashed ``"{salt}:"``, per salt (a handful)."""


class RowBuilder:
    """Turns evaluations into table rows."""

    def __init__(self, config: EvalConfig, hash_key: bytes, policy: SamplingPolicy,
                 redactor: Redactor | None = None) -> None:
        self.config = config
        self.hash_key = hash_key
        self.policy = policy
        self.redact = redactor or Redactor()

    def rows(self, item: Evaluated, partition: int) -> dict[str, list[Any]]:
        """The item's rows per table: its shadow_evaluations row as a list in
        EVALUATION_COLUMNS order (see :func:`encode_rows`), rows of other tables as dicts."""
        ev = item.evaluation
        handle = item.handle
        meta = handle.meta
        if item.request is not None:  # first evaluation: things only the raw request has
            meta["prompt_hash"] = prompt_hash(item.request.prompt, self.hash_key)
        values = to_values(ev)
        handle.record = (ev, values)  # for the snapshot encoder (streams.evaluator.snapshot)
        s_top1, s_top2 = ev.student.top1, ev.student.top2
        labels = handle.labels
        row = values[:-RECORD_TAIL]
        row += (
            int(bool(ev.fallback)),
            int(bool(ev.fallback_naive)),
            meta.get("prompt_hash", "0" * 64),
            None if s_top1 is None or s_top2 is None else s_top1 - s_top2,
            _opt(ev.teacher_correct),
            _opt(ev.student_correct),
            int(ev.teacher.fact_error),
            int(ev.student.fact_error),
            "new" if ev.new_title else "established",
            orjson.dumps([{"source": lb.source, "preferred": lb.preferred}
                          for lb in labels]).decode() if labels else "[]",
            int(item.late),
            partition,
            meta.get("offset", -1),
            handle.revision,
        )
        out: dict[str, list[Any]] = {SHADOW_EVALUATIONS: [row]}
        if item.request is not None:
            out.update(self._samples(item, values[_TS], values[_SLICE]))
        return out

    def _samples(self, item: Evaluated, ts: float, slice_: dict[str, str]) -> dict[str, list[Any]]:
        ev, request = item.evaluation, item.request
        assert request is not None
        out: dict[str, list[Any]] = {}
        risky = (ev.reference_intent in self.config.high_risk or ev.student_correct is False
                 or ev.student.fact_error)
        reason = None
        if SamplingPolicy.unit(ev.request_id, "payload") < self.policy.payload_share:
            reason = "sample"
        elif risky and SamplingPolicy.unit(ev.request_id, "forensic") < self.policy.forensic_rate:
            reason = "forensic"
        example = SamplingPolicy.unit(ev.request_id, "example") < self.policy.example_share
        if reason is None and not example:
            return out
        prompt = self.redact(request.prompt)  # only for what is kept: redaction is not cheap
        if reason is not None:
            out[SHADOW_PAYLOADS] = [{
                "request_id": ev.request_id, "ts": ts, "sample_reason": reason,
                "slice": slice_, "prompt_redacted": prompt,
                "teacher_answer_redacted": self.redact((item.teacher.answer or "") if item.teacher else ""),
                "student_answer_redacted": self.redact((item.student.answer or "") if item.student else ""),
                "teacher_probs": (item.teacher.intent_probs or {}) if item.teacher else {},
                "student_probs": (item.student.intent_probs or {}) if item.student else {},
            }]
        if example:
            out[DISTILL_EXAMPLES] = [{
                "request_id": ev.request_id, "ts": ts, "slice": slice_,
                "prompt_redacted": prompt,
                "teacher_probs": (item.teacher.intent_probs or {}) if item.teacher else {},
                "reference_intent": ev.reference_intent or "",
                "reference_source": ev.reference_source or "",
                "teacher_supported": int(ev.teacher.answered and ev.teacher.all_claims_correct),
                "teacher_fact_error": int(ev.teacher.fact_error),
                "evidence_covered": int(not ev.retrieval_miss),
                "sample_reason": "sample",
                "version": item.handle.revision,
            }]
        return out


_TS = RECORD_FIELDS.index("ts")
_SLICE = RECORD_FIELDS.index("slice")


def _opt(value: bool | None) -> int | None:
    return None if value is None else int(value)


def dead_letter_row(topic: str, partition: int, offset: int, raw: bytes | None, error: str,
                    redact: Callable[[str], str]) -> dict[str, Any]:
    """The dead_letters row: a bad message is customer text too, so what is kept is redacted
    (the whole text, then cut, so no item survives half-cut)."""
    raw = raw or b""
    return {
        "topic": topic, "partition": partition, "offset": offset, "error": redact(error[:2000]),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "raw_truncated": redact(raw.decode("utf-8", "replace"))[:DEAD_LETTER_RAW_BYTES],
        "raw_size": len(raw), "received_at": time.time(),
    }


def partial_message(window: ClosedWindow, part: str, version: int, final: bool) -> bytes:
    """One partition's states of one window, for the sink to merge across partitions."""
    return orjson.dumps({
        "window_s": window.size, "window_start": window.start, "part": part,
        "version": version, "final": final,
        "states": {k: s.to_dict() for k, s in window.states.items()},
    }, option=orjson.OPT_SERIALIZE_NUMPY)


def json_each_row(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for r in rows)


def encode_rows(table: str, rows: list[Any]) -> bytes:
    """``rows`` of ``table`` as the sink inserts them (see :func:`row_headers`): a compact
    table's rows are lists in its columns' order, the others' dicts."""
    if table not in COMPACT_TABLES:
        return json_each_row(rows)
    return b"".join(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for r in rows)


def named_row(table: str, row: Any) -> dict[str, Any]:
    """A row by column name, whichever form :meth:`RowBuilder.rows` gave it in."""
    columns = COMPACT_TABLES.get(table)
    return row if columns is None else dict(zip(columns, row, strict=True))


def row_headers(table: str) -> dict[str, str]:
    """Headers of a rows message: its table and, for compact rows, their format and columns."""
    columns = COMPACT_TABLES.get(table)
    if columns is None:
        return {"table": table}
    return {"table": table, "format": COMPACT_FORMAT, "columns": ",".join(columns)}
