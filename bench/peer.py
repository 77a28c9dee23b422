"""A peer measured beside distillwatch: Evidently's classification report per slice.

Evidently lives in its own virtualenv, created on demand under
``~/.cache/distillwatch/venvs/evidently-<hash>`` (never in the project's dependencies:
Evidently 0.7.23 needs pandas 2.x, see docs/performance.md). The same pairs are evaluated
by both: distillwatch's ``evaluate`` (JSON decoding, validation, every metric, every slice and
window) against Evidently's ClassificationPreset on all pairs and on each slice value, given a
ready table of joined pairs (target, predicted class, class probabilities, slice columns)
that distillwatch exports for it. Evidently has no windows, ECE, copied-error or fallback
metrics; the comparison is on what it computes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from evaluators.config import EvalConfig
from evaluators.offline import LogSummary, collect_labels, evaluated_requests
from schemas.errors import ContractError
from schemas.fastpath import parse_line_fast
from schemas.replay import open_log

REQUIREMENTS = ("evidently==0.7.23", "pandas==2.3.3")
WORKER = Path(__file__).with_name("peer_evidently_worker.py")
SLICE_COLUMNS = ("region", "device", "language")


def venv_dir() -> Path:
    spec = "\n".join(REQUIREMENTS) + f"\npython{sys.version_info.major}.{sys.version_info.minor}"
    digest = hashlib.sha256(spec.encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "distillwatch" / "venvs" / f"evidently-{digest}"


def ensure_venv(timeout_s: float = 1200) -> tuple[Path | None, str]:
    """The peer's interpreter, creating its virtualenv if needed; (None, why) when it cannot."""
    root = venv_dir()
    python = root / "bin" / "python"
    marker = root / ".complete"
    if marker.exists():
        return python, "cached"
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True,
                           timeout=300)
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
                              capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            return None, f"pip install {' '.join(REQUIREMENTS)} failed: {done.stderr.strip()[-300:]}"
        check = subprocess.run([str(python), "-c", "import evidently, pandas"], capture_output=True,
                               text=True, timeout=300)
        if check.returncode != 0:
            return None, f"evidently does not import: {check.stderr.strip()[-300:]}"
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not create the Evidently virtualenv at {root}: {exc}"
    marker.write_text("\n".join(REQUIREMENTS) + "\n")
    return python, "created"


def export_pairs(log: Path, out: Path, config: EvalConfig) -> int:
    """The joined pairs as Evidently reads them: slice columns, target (distillwatch's reference:
    a human label, else the request's reference, else the teacher's top-1), the student's top-1
    and its class probabilities. Pairs without a student answer or a reference are left out."""
    summary = LogSummary()
    with open_log(log) as handle:
        labels = collect_labels(handle, summary)
    probs: dict[str, dict[str, float]] = {}

    def lines() -> Any:  # keep the student's probabilities of each request on the way through
        with open_log(log) as handle:
            for raw in handle:
                if raw.startswith(b'{"request"'):
                    try:
                        line = parse_line_fast(raw)
                    except ContractError:
                        pass
                    else:
                        if line.request is not None and line.student is not None and line.student.intent_probs:
                            probs[line.request.request_id] = dict(line.student.intent_probs)
                yield raw

    rows = 0
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*SLICE_COLUMNS, "target", "prediction", *config.intents])
        for ev in evaluated_requests(lines(), labels, config, summary):
            p = probs.pop(ev.request_id, None)
            if p is None or not ev.student.answered or ev.reference_intent is None:
                continue
            writer.writerow([*(ev.slice.get(c, "") for c in SLICE_COLUMNS), ev.reference_intent,
                             ev.student.intent, *(p.get(c, 0.0) for c in config.intents)])
            rows += 1
    return rows


def run_peer(log: Path, work: Path, config: EvalConfig, timeout_s: float = 1800, repeat: int = 1
             ) -> dict[str, Any]:
    """Evidently's per-slice reports on the pairs of ``log`` (the fastest of ``repeat`` runs);
    ``available`` False with a reason when its virtualenv cannot be made."""
    python, how = ensure_venv()
    if python is None:
        return {"available": False, "reason": how}
    table = work / "peer-pairs.csv"
    rows = export_pairs(log, table, config)
    done = subprocess.run([str(python), str(WORKER), "--repeat", str(repeat), str(table), *config.intents],
                          capture_output=True, text=True, timeout=timeout_s * repeat)
    if done.returncode != 0:
        return {"available": False, "reason": f"Evidently failed: {done.stderr.strip()[-400:]}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"available": True, "venv": str(python.parent.parent), "venv_status": how, "exported_rows": rows,
            **result}
