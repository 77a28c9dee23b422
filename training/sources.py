"""Where training examples come from: a replay log, a Parquet snapshot, or a RetrainRequest.

* **Replay log** (DESIGN §4): read the way ``evaluate`` reads it (``evaluators.offline``):
  labels first, then catalog records applied in log order, each request judged once (the
  first valid line with its id) by ``evaluators.request.evaluate_request`` against the catalog
  as it stands at that line. That evaluation supplies the reference intent, the teacher's
  catalog verdict and evidence coverage, so the filter uses exactly the monitor's rules. The
  prompt is redacted before it is kept.
* **Parquet snapshot**: the columns of the ClickHouse table ``distill_examples``
  (``schemas/migrations/0001_initial.sql``), already redacted and judged by the monitor.
* **RetrainRequest** JSON: its ``dataset_snapshot`` names the Parquet file (a relative path
  is taken relative to the JSON file); its loss hints, slices and job id go to the job.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evaluators.catalog import Catalog
from evaluators.config import EvalConfig
from evaluators.offline import LogSummary, collect_labels
from evaluators.privacy import Redactor
from evaluators.request import evaluate_request
from schemas.errors import ConfigError, ContractError
from schemas.fastpath import parse_line_fast
from schemas.messages import RetrainRequest
from schemas.validation import decode_json, validate
from training.dataset import Example

PARQUET_COLUMNS = (
    "request_id", "ts", "slice", "prompt_redacted", "teacher_probs", "reference_intent",
    "reference_source", "teacher_supported", "teacher_fact_error", "evidence_covered",
)
"""Columns of ``distill_examples`` the job reads (``sample_reason`` and ``version`` are not needed)."""


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        yield from handle


def examples_from_log(path: Path, config: EvalConfig, redactor: Redactor | None = None,
                      summary: LogSummary | None = None) -> list[Example]:
    """Every valid, first-seen request of a replay log as an Example (invalid lines counted
    in ``summary``, as ``evaluate`` counts them)."""
    if not path.is_file():
        raise ConfigError(f"replay log {path} does not exist")
    redact = redactor or Redactor()
    summary = summary if summary is not None else LogSummary()
    labels = collect_labels(_lines(path), summary)
    catalog = Catalog()
    seen: set[str] = set()
    out: list[Example] = []
    for line_no, raw in enumerate(_lines(path), start=1):
        summary.lines += 1
        if not raw.strip():
            continue
        try:
            line = parse_line_fast(raw)
        except ContractError as exc:
            summary.reject(line_no, exc)
            continue
        if line.catalog is not None:
            summary.catalog_records += 1
            catalog.apply(line.catalog)
            continue
        request = line.request
        if request is None or request.request_id in seen:
            summary.duplicates += request is not None
            continue
        seen.add(request.request_id)
        summary.requests += 1
        ev = evaluate_request(request, line.teacher, line.student, catalog, config,
                              labels.for_request(request.request_id))
        teacher = line.teacher if ev.teacher.answered else None
        student = line.student if ev.student.answered else None
        out.append(Example(
            request_id=request.request_id, ts=request.ts, prompt=redact(request.prompt),
            teacher_probs=dict(teacher.intent_probs) if teacher and teacher.intent_probs else None,
            reference_intent=ev.reference_intent, reference_source=ev.reference_source,
            teacher_supported=ev.teacher.answered and ev.teacher.all_claims_correct,
            teacher_fact_error=ev.teacher.fact_error, evidence_covered=not ev.retrieval_miss,
            slice=dict(request.slice), multi_intent=request.multi_intent, new_title=ev.new_title,
            logged_student_probs=dict(student.intent_probs) if student and student.intent_probs else None,
        ))
    summary.orphan_labels = len(labels.request_ids() - seen)
    return out


def _map(value: Any) -> dict[str, Any]:
    """A Parquet map cell: pyarrow gives a list of (key, value) pairs (or a dict)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    return {k: v for k, v in value}


def _aware(ts: Any, where: str) -> datetime:
    if isinstance(ts, datetime):
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    raise ConfigError(f"{where}: ts is {ts!r}; expected a timestamp column")


def examples_from_parquet(path: Path) -> list[Example]:
    """Rows of a ``distill_examples`` snapshot as Examples."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise ConfigError(f"dataset snapshot {path} does not exist")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise ConfigError(f"dataset snapshot {path} is not a readable Parquet file: {exc}") from exc
    missing = [c for c in PARQUET_COLUMNS if c not in table.column_names]
    if missing:
        raise ConfigError(f"dataset snapshot {path} lacks columns {missing}; expected the columns "
                          "of the distill_examples table")
    out = []
    for i, row in enumerate(table.select(list(PARQUET_COLUMNS)).to_pylist()):
        probs = {k: float(v) for k, v in _map(row["teacher_probs"]).items()}
        reference = row["reference_intent"] or None
        out.append(Example(
            request_id=str(row["request_id"]), ts=_aware(row["ts"], f"{path} row {i}"),
            prompt=row["prompt_redacted"] or "",
            teacher_probs=probs or None,
            reference_intent=reference,
            reference_source=(row["reference_source"] or None) if reference else None,
            teacher_supported=bool(row["teacher_supported"]),
            teacher_fact_error=bool(row["teacher_fact_error"]),
            evidence_covered=bool(row["evidence_covered"]),
            slice={str(k): str(v) for k, v in _map(row["slice"]).items()},
        ))
    return out


def write_parquet(examples: list[Example], path: Path) -> None:
    """Examples as a ``distill_examples``-shaped snapshot (tests, and exporting a log)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("request_id", pa.string()), ("ts", pa.timestamp("ms", tz="UTC")),
        ("slice", pa.map_(pa.string(), pa.string())), ("prompt_redacted", pa.string()),
        ("teacher_probs", pa.map_(pa.string(), pa.float32())),
        ("reference_intent", pa.string()), ("reference_source", pa.string()),
        ("teacher_supported", pa.uint8()), ("teacher_fact_error", pa.uint8()),
        ("evidence_covered", pa.uint8()), ("sample_reason", pa.string()),
    ])
    rows = [{
        "request_id": ex.request_id, "ts": ex.ts, "slice": list(ex.slice.items()),
        "prompt_redacted": ex.prompt, "teacher_probs": list((ex.teacher_probs or {}).items()),
        "reference_intent": ex.reference_intent or "", "reference_source": ex.reference_source or "",
        "teacher_supported": int(ex.teacher_supported), "teacher_fact_error": int(ex.teacher_fact_error),
        "evidence_covered": int(ex.evidence_covered), "sample_reason": "sample",
    } for ex in examples]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def load_request(path: Path) -> tuple[RetrainRequest, Path]:
    """The RetrainRequest in ``path`` and the resolved path of its dataset snapshot."""
    if not path.is_file():
        raise ConfigError(f"retrain request {path} does not exist")
    request = validate(RetrainRequest, decode_json(path.read_bytes(), "retrain request"))
    if not request.dataset_snapshot:
        raise ConfigError(f"retrain request {path} has no dataset_snapshot; expected the path "
                          "of a Parquet snapshot of distill_examples")
    snapshot = Path(request.dataset_snapshot)
    if not snapshot.is_absolute():
        snapshot = path.parent / snapshot
    return request, snapshot
